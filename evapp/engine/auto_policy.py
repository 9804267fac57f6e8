"""``--policy auto``: the most accurate staggered policy the machine keeps up with, chosen while streaming.

``staggered:K`` costs K model rows per frame and answers every T/K frames; ``persistent`` costs one row and
answers every frame. The governor watches how busy the inference thread is, from its own feed times against
the stream's frame rate, and steps down a rung (staggered:8 -> 4 -> 2 -> persistent, each K dividing T) before
the frame queue would start dropping, and back up when the measured (or, not yet measured, the per-row
estimated) cost of the rung above leaves room. The engine keeps the state of every row that stays
(``StreamingEngine.set_policy``), so the stream goes on.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

log = logging.getLogger(__name__)

RUNGS = (8, 4, 2)  # staggered:K rungs, then persistent


def ladder(T: int, top: int = RUNGS[0]) -> list[str]:
    """The rungs for a model of clip length T, most accurate (and most costly) first."""
    return [f"staggered:{k}" for k in RUNGS if T % k == 0 and k <= top] + ["persistent"]


def rows(policy: str) -> int:
    return int(policy.split(":")[1]) if policy.startswith("staggered:") else 1


@dataclass(frozen=True)
class PolicyChange:
    t_us: int  # stream time of the frame after which the change applied
    policy: str

    def to_json(self) -> dict:
        return {"t_us": self.t_us, "policy": self.policy}


class AutoPolicy:
    """Chooses K for a staggered engine; :meth:`observe` after every feed returns a change or None."""

    DOWN_ABOVE = 0.85  # busy fraction of the inference thread above which K steps down
    UP_BELOW = 0.55  # estimated busy fraction at the rung above, below which K steps up
    HOLD_S = 3.0  # seconds of stream at a rung before a step up (no flapping)
    SETTLE_FEEDS = 3  # feeds after a change that are not measured (first-step costs)
    SMOOTHING = 0.2  # weight of a new feed time in the running mean

    def __init__(self, engine):
        self.engine = engine
        self.rungs = ladder(engine.T)
        self.feed_ms: dict[str, float] = {}  # running mean feed time per rung
        self._settle = self.SETTLE_FEEDS
        self._since_us: int | None = None
        self.changes: list[PolicyChange] = []

    def busy(self, fps: float) -> float | None:
        ms = self.feed_ms.get(self.engine.policy_text)
        return None if ms is None else ms * fps / 1e3

    def observe(self, feed_ms: float, fps: float, t_us: int, dropped: bool = False) -> PolicyChange | None:
        engine = self.engine
        if self._since_us is None:
            self._since_us = t_us
        if self._settle:
            self._settle -= 1
        else:
            now = engine.policy_text
            mean = self.feed_ms.get(now)
            self.feed_ms[now] = feed_ms if mean is None else mean + self.SMOOTHING * (feed_ms - mean)
        busy = self.busy(fps)
        if busy is None or fps <= 0:
            return None
        now = engine.policy_text
        i = self.rungs.index(now) if now in self.rungs else 0
        if (dropped or busy > self.DOWN_ABOVE) and i + 1 < len(self.rungs):
            return self._change(self.rungs[i + 1], t_us)
        if i > 0 and (t_us - self._since_us) / 1e6 >= self.HOLD_S:
            up = self.rungs[i - 1]
            ms_up = self.feed_ms.get(up, self.feed_ms[now] * rows(up) / rows(now))
            if ms_up * fps / 1e3 < self.UP_BELOW:
                return self._change(up, t_us)
        return None

    def _change(self, policy: str, t_us: int) -> PolicyChange:
        self.engine.set_policy(policy)
        self._settle = self.SETTLE_FEEDS
        self._since_us = t_us
        change = PolicyChange(t_us, self.engine.policy_text)
        self.changes.append(change)
        log.info("policy auto: %s from %.2f s", change.policy, t_us / 1e6)
        return change
