"""Neuron dynamics on hand-computed values, surrogate gradients, step modes, state helpers."""

import math

import pytest
import torch

from evapp.snn import (
    LIF,
    ParametricLIF,
    atan_surrogate,
    firing_rates,
    get_state,
    reset_spike_counts,
    reset_state,
    set_spike_recording,
    set_state,
    sigmoid_surrogate,
)


def test_lif_charge_fire_reset_by_hand():
    # tau 2, decay_input: v <- v + (x - v) / 2; spike when v >= 1; hard reset to 0.
    lif = LIF(tau=2.0)
    x = torch.tensor([1.5, 0.5, 2.0, 0.0, 2.0]).view(5, 1)
    s = lif(x)
    # v: 0.75, 0.625, 1.3125 -> spike -> 0, 0, 1.0 -> spike (H(0) = 1) -> 0
    assert s.flatten().tolist() == [0.0, 0.0, 1.0, 0.0, 1.0]
    assert lif.v.item() == 0.0


def test_lif_membrane_values_by_hand():
    lif = LIF(tau=2.0, step_mode="s")
    expected_v = [0.75, 0.625, 0.0]
    for xi, ev in zip([1.5, 0.5, 2.0], expected_v, strict=True):
        lif(torch.tensor([xi]))
        assert lif.v.item() == pytest.approx(ev)


def test_attention_threshold_half():
    lif = LIF(tau=2.0, v_threshold=0.5)
    assert lif(torch.tensor([[1.0], [0.9]])).flatten().tolist() == [1.0, 0.0]  # v = 0.5 fires; 0.45 not


def test_plif_by_hand_and_learnable_tau():
    plif = ParametricLIF(init_tau=2.0)
    assert plif.w.item() == pytest.approx(0.0)  # w0 = -ln(init_tau - 1)
    with torch.no_grad():
        plif.w.fill_(math.log(1 / 3))  # sigmoid(w) = 0.25, i.e. tau 4
    s = plif(torch.full((3, 1), 2.0))
    # v: 0.5, 0.875, 1.15625 -> spike
    assert s.flatten().tolist() == [0.0, 0.0, 1.0]
    plif.reset()
    x = torch.full((3, 1), 2.0, requires_grad=True)
    plif(x).sum().backward()
    assert plif.w.grad is not None and plif.w.grad.abs().item() > 0


def test_plif_init_tau_other():
    plif = ParametricLIF(init_tau=3.0)
    assert torch.sigmoid(plif.w).item() == pytest.approx(1 / 3)


@pytest.mark.parametrize("alpha", [4.0, 2.5])
def test_sigmoid_surrogate_gradient(alpha):
    x = torch.linspace(-2, 2, 41, requires_grad=True)
    y = sigmoid_surrogate(x, alpha)
    assert y.tolist() == (x >= 0).float().tolist()
    y.sum().backward()
    sg = torch.sigmoid(alpha * x.detach())
    torch.testing.assert_close(x.grad, alpha * sg * (1 - sg))


@pytest.mark.parametrize("alpha", [2.0, 3.0])
def test_atan_surrogate_gradient(alpha):
    x = torch.linspace(-2, 2, 41, requires_grad=True)
    y = atan_surrogate(x, alpha)
    assert y.tolist() == (x >= 0).float().tolist()
    y.sum().backward()
    torch.testing.assert_close(x.grad, (alpha / 2) / (1 + (math.pi / 2 * alpha * x.detach()) ** 2))


def test_neuron_gradient_uses_surrogate_on_v_minus_threshold():
    lif = LIF(tau=2.0)  # v = x / 2 on the first step, s = H(v - 1)
    x = torch.tensor([[1.6]], requires_grad=True)
    lif(x).sum().backward()
    sg = torch.sigmoid(torch.tensor(4.0 * (0.8 - 1.0)))
    assert x.grad.item() == pytest.approx((4 * sg * (1 - sg) * 0.5).item())


@pytest.mark.parametrize("detach", [True, False])
def test_detached_reset(detach):
    lif = LIF(tau=2.0, detach_reset=detach, step_mode="s")
    x = torch.tensor([2.5], requires_grad=True)
    lif(x)
    lif.v.sum().backward()  # v after reset = v * (1 - s) = 0
    if detach:
        assert x.grad.item() == 0.0
    else:
        sg = torch.sigmoid(torch.tensor(4.0 * 0.25))
        assert x.grad.item() == pytest.approx((-1.25 * 4 * sg * (1 - sg) * 0.5).item())


@pytest.mark.parametrize("cls", [LIF, ParametricLIF])
def test_single_step_equals_multi_step(cls):
    torch.manual_seed(0)
    x = torch.rand(8, 3, 4, 5) * 3
    m = cls()
    multi = m(x)
    v_multi = m.v.clone()
    s = cls(step_mode="s")
    single = torch.stack([s(x[t]) for t in range(8)])
    assert torch.equal(multi, single)
    assert torch.equal(v_multi, s.v)
    # chunked multi-step calls continue the state
    m.reset()
    chunks = torch.cat([m(x[:3]), m(x[3:])])
    assert torch.equal(multi, chunks)


@pytest.mark.parametrize("dtype", [torch.float64, torch.bfloat16])
@pytest.mark.parametrize(("threshold", "surrogate"), [(1.0, "sigmoid"), (0.5, "atan")])
def test_fused_training_sequence_equals_the_per_step_graph(dtype, threshold, surrogate):
    # A multi-step call with a gradient runs as one node with a hand-written backward; single steps build the
    # per-step autograd graph. Spikes, the final membrane and the input's gradient (through the spikes and the
    # final membrane both) must agree.
    torch.manual_seed(0)
    x0 = (torch.randn(8, 3, 4, 5, dtype=torch.float64) * 1.5 + 0.8).to(dtype)
    weights = torch.randn(8, 3, 4, 5, dtype=dtype)
    results = []
    for mode in ("m", "s"):
        lif = LIF(tau=2.0, v_threshold=threshold, surrogate=surrogate, step_mode=mode)
        x = x0.clone().requires_grad_()
        s = lif(x) if mode == "m" else torch.stack([lif(x[t]) for t in range(8)])
        ((s * weights).sum() + (lif.v * 0.3).sum()).backward()
        results.append((s.detach(), lif.v.detach(), x.grad))
    (s_m, v_m, g_m), (s_s, v_s, g_s) = results
    assert s_m.sum() > 0 and (s_m == 0).any()
    assert torch.equal(s_m, s_s) and torch.equal(v_m, v_s)
    assert g_m.abs().max() > 0
    torch.testing.assert_close(g_m, g_s, rtol=0.02 if dtype == torch.bfloat16 else 1e-12, atol=1e-12)


def test_shape_change_without_reset_raises():
    lif = LIF()
    lif(torch.rand(2, 3, 4))
    with pytest.raises(RuntimeError, match="reset"):
        lif(torch.rand(2, 5, 4))
    lif.reset()
    lif(torch.rand(2, 5, 4))


def test_state_roundtrip_and_row_reset():
    net = torch.nn.Sequential(LIF(), torch.nn.Identity(), LIF(v_threshold=0.5))
    x = torch.rand(3, 2, 6) * 2
    net(x)
    state = [t.clone() for t in get_state(net)]
    assert [t.shape for t in state] == [torch.Size([2, 6])] * 2
    y1 = net(x)
    set_state(net, state)
    assert torch.equal(net(x), y1)
    set_state(net, state)
    reset_state(net, rows=torch.tensor([False, True]))
    after = get_state(net)
    assert torch.equal(after[0][0], state[0][0]) and torch.all(after[0][1] == 0)
    reset_state(net)
    with pytest.raises(RuntimeError, match="materialised"):
        get_state(net)
    with pytest.raises(ValueError):
        set_state(net, state[:1])


def test_firing_rate_recording():
    lif = LIF()
    set_spike_recording(lif, True)
    s = lif(torch.tensor([[2.0, 0.0], [2.0, 0.0]]))
    assert firing_rates(lif)[""] == pytest.approx(s.mean().item()) == pytest.approx(0.5)
    reset_spike_counts(lif)
    assert firing_rates(lif) == {}
    set_spike_recording(lif, False)
    lif(torch.rand(1, 2))
    assert firing_rates(lif) == {}
