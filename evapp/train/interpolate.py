"""Weight-space ensembling of a fine-tuned model with its base (WiSE-FT: Wortsman et al., "Robust fine-tuning of
zero-shot models", CVPR 2022): ``alpha * tuned + (1 - alpha) * base``, weight by weight. Fine-tuning moves the
weights only a little, so the line between the two keeps most of what the tuned end gained on the user's takes
and much of what the base end knew; ``evapp finetune --interpolate`` keeps such a mix only where the held-out
takes say it costs the user (almost) nothing.
"""

from __future__ import annotations

import torch

from evapp.nets.base import classifier_keys

# The held-out clip accuracy a mix may cost before the tuned weights are kept instead (a fraction, not points).
HELD_OUT_TOLERANCE = 0.01


def interpolated_state(base_model, tuned_model, alpha: float) -> dict[str, torch.Tensor]:
    """The tuned model's state mixed with the base's. A classifier row of a class the base has mixes with the base's
    row of the same name; a new class's row, and integer buffers (step counters), are the tuned model's."""
    base_state, tuned_state = base_model.state_dict(), tuned_model.state_dict()
    head_keys = classifier_keys(tuned_model)
    base_rows = {name: i for i, name in enumerate(base_model.cfg.class_names)}
    mixed = {}
    for key, tuned in tuned_state.items():
        if not torch.is_floating_point(tuned):
            mixed[key] = tuned.clone()
        elif key in head_keys:
            rows = tuned.clone()
            for row, name in enumerate(tuned_model.cfg.class_names):
                if name in base_rows:
                    rows[row] = torch.lerp(base_state[key][base_rows[name]], tuned[row], alpha)
            mixed[key] = rows
        else:
            mixed[key] = torch.lerp(base_state[key], tuned, alpha)  # a weight training left is left exactly
    return mixed


def interpolate_if_harmless(model, base_model, alpha: float, tuned: dict | None,
                            evaluate) -> tuple[dict | None, dict]:
    """Load the mix at ``alpha`` into ``model`` unless the held-out takes (``evaluate(model)``: a metrics dict or
    None when nothing is held out) lose more than HELD_OUT_TOLERANCE against the tuned weights (``tuned``: their
    metrics from the same check), which are then put back. Returns the held-out metrics of the weights kept and
    what was decided, for the lineage."""
    if alpha >= 1.0:
        return tuned, {"alpha": 1.0, "kept": False}
    tuned_state = {k: v.clone() for k, v in model.state_dict().items()}
    model.load_state_dict(interpolated_state(base_model, model, alpha))
    mixed = evaluate(model)
    record = {"alpha": alpha, "held_out_tuned": tuned and round(tuned["clip_accuracy"], 4),
              "held_out_interpolated": mixed and round(mixed["clip_accuracy"], 4)}
    if tuned is None or mixed["clip_accuracy"] >= tuned["clip_accuracy"] - HELD_OUT_TOLERANCE:
        return mixed, {**record, "kept": True}
    model.load_state_dict(tuned_state)
    return tuned, {**record, "kept": False}
