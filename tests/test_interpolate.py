"""``evapp finetune --interpolate``: the weight mix with the base (WiSE-FT) and the held-out guard that keeps it."""

from __future__ import annotations

import pytest
import torch

from evapp.nets import create_model
from evapp.nets.base import classifier
from evapp.train.finetune import adapted_model
from evapp.train.interpolate import HELD_OUT_TOLERANCE, interpolate_if_harmless, interpolated_state

BASE = ("hand_clapping", "right_hand_wave", "left_hand_wave")
TUNED = ("right_hand_wave", "both_arms_raise", "hand_clapping")  # one row moved, one new, one dropped


def models():
    torch.manual_seed(3)
    base = create_model("saformer-2-256", num_classes=3, class_names=BASE, embed_dims=(32,), num_heads=(2,),
                        input_size=(32, 32), T=2, events_per_frame=100)
    tuned = adapted_model(base, TUNED)
    with torch.no_grad():  # what training does: every weight moves
        for p in tuned.parameters():
            p.add_(torch.randn_like(p))
    return base.eval(), tuned.eval()


@pytest.mark.parametrize("alpha", [0.0, 0.3, 1.0])
def test_the_mix_is_weight_by_weight_with_classifier_rows_matched_by_class_name(alpha):
    base, tuned = models()
    mixed = interpolated_state(base, tuned, alpha)
    b, t = base.state_dict(), tuned.state_dict()
    w = [k for k, p in tuned.named_parameters() if p is classifier(tuned).weight][0]
    for key in t:
        if key in (w, w.replace("weight", "bias")):
            continue
        if torch.is_floating_point(t[key]):
            torch.testing.assert_close(mixed[key], alpha * t[key] + (1 - alpha) * b[key])
        else:
            assert torch.equal(mixed[key], t[key])
    torch.testing.assert_close(mixed[w][0], alpha * t[w][0] + (1 - alpha) * b[w][1])  # right_hand_wave
    torch.testing.assert_close(mixed[w][2], alpha * t[w][2] + (1 - alpha) * b[w][0])  # hand_clapping
    assert torch.equal(mixed[w][1], t[w][1])  # both_arms_raise: the base has no row for it
    tuned.load_state_dict(mixed)  # a loadable state of the tuned model's shapes


@pytest.mark.parametrize("loss, kept", [(HELD_OUT_TOLERANCE / 2, True), (HELD_OUT_TOLERANCE * 2, False)])
def test_a_mix_is_kept_only_while_the_held_out_takes_lose_at_most_the_tolerance(loss, kept):
    base, tuned = models()
    tuned_state = {k: v.clone() for k, v in tuned.state_dict().items()}
    expected = interpolated_state(base, tuned, 0.8)
    seen = []

    def held_out(model):  # the tuned weights score 0.9; any other weights 0.9 - loss
        is_tuned = all(torch.equal(v, tuned_state[k]) for k, v in model.state_dict().items())
        seen.append(is_tuned)
        return {"clip_accuracy": 0.9 if is_tuned else 0.9 - loss}

    metrics, record = interpolate_if_harmless(tuned, base, 0.8, held_out(tuned), held_out)
    assert seen == [True, False] and record["kept"] is kept and record["alpha"] == 0.8
    final = tuned.state_dict()
    target = expected if kept else tuned_state
    assert all(torch.equal(final[k], target[k]) for k in final)
    assert metrics["clip_accuracy"] == pytest.approx(0.9 - loss if kept else 0.9)


def test_alpha_one_or_nothing_held_out_leaves_the_decision_to_the_weights():
    base, tuned = models()
    metrics, record = interpolate_if_harmless(tuned, base, 1.0, None, lambda m: None)
    assert metrics is None and record == {"alpha": 1.0, "kept": False}
    metrics, record = interpolate_if_harmless(tuned, base, 0.5, None, lambda m: None)
    assert metrics is None and record["kept"] is True  # nothing held out: the mix asked for is kept


def test_a_weight_training_left_alone_stays_exactly_the_base_weight():
    base, tuned = models()
    key = next(k for k, v in tuned.state_dict().items() if torch.is_floating_point(v) and v.dim() == 4)
    tuned.load_state_dict({**tuned.state_dict(), key: base.state_dict()[key].clone()})  # a frozen convolution
    for alpha in (0.8, 0.9, 0.3):
        assert torch.equal(interpolated_state(base, tuned, alpha)[key], base.state_dict()[key])
