"""An exponential moving average of the weights while training (Polyak & Juditsky 1992; as timm's ``ModelEma``):
the averaged copy is what is validated and kept, because on a few takes the last step's weights carry the noise of
the last few batches.

The average covers parameters and floating buffers (normalisation statistics), so the copy is a model that runs as
it is; integer buffers (batch counters) are copied. The decay warms up as ``(1 + n) / (10 + n)`` after ``n``
updates (timm's warm-up), so the early average is not the starting weights'.
"""

from __future__ import annotations

import copy

import torch


class WeightAverage:
    """An averaged copy of ``model``, updated after every optimiser step with ``update()``."""

    def __init__(self, model: torch.nn.Module, decay: float):
        if not 0.0 < decay < 1.0:
            raise ValueError(f"the averaging decay must lie between 0 and 1, not {decay}")
        self.decay = decay
        self.updates = 0
        self.model = copy.deepcopy(model).eval()
        self.model.requires_grad_(False)

    @torch.no_grad()
    def update(self, model: torch.nn.Module) -> None:
        self.updates += 1
        keep = min(self.decay, (1 + self.updates) / (10 + self.updates))
        mine, theirs = self.model.state_dict(), model.state_dict()
        floats = [k for k, v in mine.items() if v.is_floating_point()]
        torch._foreach_lerp_([mine[k] for k in floats], [theirs[k].detach() for k in floats], 1.0 - keep)
        for k, v in mine.items():
            if not v.is_floating_point():
                v.copy_(theirs[k])

    def state_dict(self) -> dict:
        return {"model": self.model.state_dict(), "updates": self.updates}

    def load_state_dict(self, state: dict) -> None:
        self.model.load_state_dict(state["model"])
        self.updates = state["updates"]
