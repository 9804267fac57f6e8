"""A progress bar on stderr for a replay or an evaluation that takes more than a moment (on a terminal only, so
logs and pipes stay clean): recording seconds done out of the recording's length."""

from __future__ import annotations

import sys
import time


class ReplayProgress:
    """Call :meth:`update` from the consumer loop and :meth:`close` at the end. Build it before the pipeline
    starts: the recording's length is read from the source, which the reader thread then owns."""

    REFRESH_S = 0.25

    def __init__(self, pipeline, enabled: bool | None = None, desc: str = "replay"):
        self.pipeline = pipeline
        self.bar = None
        self._next = 0.0
        if enabled is None:
            enabled = sys.stderr.isatty()
        if not enabled or pipeline.is_live:
            return
        duration_us = pipeline.source.info().duration_us or 0
        start_us = int(pipeline.clock.options.start_s * 1e6)
        from tqdm import tqdm

        self.bar = tqdm(total=round(max(duration_us - start_us, 0) / 1e6, 1), desc=desc, unit="s", leave=False,
                        file=sys.stderr, dynamic_ncols=True,
                        bar_format="{desc}: {percentage:3.0f}%|{bar}| {n:.1f}/{total:.1f} s of recording "
                                   "[{elapsed}<{remaining}]")
        self._start_us = start_us

    def update(self) -> None:
        if self.bar is None or time.monotonic() < self._next:
            return
        self._next = time.monotonic() + self.REFRESH_S
        done = max(self.pipeline.position_us - self._start_us, 0) / 1e6
        self.bar.n = min(round(done, 1), self.bar.total)
        self.bar.refresh()

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None
