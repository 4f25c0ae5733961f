"""The gate: formula, pooling, holding, and bounded statistics."""

import math
from types import SimpleNamespace

import pytest
import torch

from unipelt_cli.pelt import gate as gate_module
from unipelt_cli.pelt.gate import (
    GATES,
    Gate,
    ScalarGate,
    ScalarGateOptions,
    SigmoidMeanGate,
    gate_kind_options,
    make_gate,
)


def test_gate_formula_and_pooling():
    """At init (w ~ N(0, 0.02)) sigmoid-then-mean and mean-then-sigmoid differ by ~4e-6, inside the
    default tolerance: at w ~ N(0, 1) they differ by > 0.05, and the tolerance is 1e-6."""
    torch.manual_seed(0)
    gate = SigmoidMeanGate(8, "masked")
    with torch.no_grad():
        gate.linear.weight.normal_(0, 1.0)
        gate.linear.bias.fill_(0.25)
    u = torch.randn(2, 5, 8)
    mask = torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]])
    logits = u @ gate.linear.weight[0] + gate.linear.bias  # (B, T)
    s = torch.sigmoid(logits)  # sigmoid first, then the mean
    masked = torch.stack([s[0, :3].mean(), s[1].mean()])
    mean_first = torch.sigmoid(torch.stack([logits[0, :3].mean(), logits[1].mean()]))
    assert (masked - mean_first).abs().min() > 0.05  # the alternative formula is far away here
    exact = dict(rtol=0, atol=1e-6)
    g = gate(u, mask)
    assert g.shape == (2, 1, 1)
    torch.testing.assert_close(g[:, 0, 0], masked, **exact)
    gate.pooling = "all"
    assert (s.mean(1) - masked)[0].abs() > 0.01  # padding changes the pooled value of example 0
    torch.testing.assert_close(gate(u, mask)[:, 0, 0], s.mean(1), **exact)
    torch.testing.assert_close(gate(u, None)[:, 0, 0], s.mean(1), **exact)


def test_masked_pooling_ignores_padding_length():
    torch.manual_seed(0)
    gate = SigmoidMeanGate(8, "masked")
    u = torch.randn(1, 3, 8)
    padded = torch.cat([u, torch.randn(1, 4, 8)], dim=1)
    mask = torch.tensor([[1, 1, 1, 0, 0, 0, 0]])
    torch.testing.assert_close(gate(padded, mask), gate(u, None))


def test_init_starts_near_half():
    torch.manual_seed(0)
    gate = SigmoidMeanGate(768)
    assert sum(p.numel() for p in gate.parameters()) == 769
    assert torch.all(gate.linear.bias == 0)
    assert abs(gate.linear.weight.std().item() - 0.02) < 0.003
    assert abs(gate(torch.randn(4, 7, 768)).mean().item() - 0.5) < 0.1


def test_hold():
    gate = SigmoidMeanGate(8)
    gate.hold(0.25)
    assert torch.equal(gate(torch.randn(3, 4, 8)), torch.full((3, 1, 1), 0.25))
    gate.hold(None)
    assert not torch.equal(gate(torch.randn(3, 4, 8)), torch.full((3, 1, 1), 0.25))


def test_stats_known_values_and_bounded_memory():
    gate = SigmoidMeanGate(4).eval()
    u = torch.zeros(2, 3, 4)
    assert gate.stats() == {"mean": None, "std": None, "n": 0}
    gate(u)  # off: records nothing
    assert gate.sums is None
    gate.collecting = True
    values = []
    for value in [0.125, 0.25, 0.5, 0.875] * 250:  # 1000 batches of 2 examples (exact in float32)
        gate.hold(value)
        gate(u)
        values += [value, value]
    stats = gate.stats()
    mean = sum(values) / len(values)
    std = math.sqrt(sum((v - mean) ** 2 for v in values) / len(values))
    assert stats["n"] == 2000
    assert math.isclose(stats["mean"], mean, rel_tol=1e-12)
    assert math.isclose(stats["std"], std, rel_tol=1e-9)
    assert gate.sums.shape == (3,)  # three numbers, however many batches
    gate.train()
    gate(u)  # training forwards never record
    assert gate.stats()["n"] == 2000
    gate.reset_stats()
    assert gate.stats()["n"] == 0


def test_stats_per_example():
    gate = SigmoidMeanGate(1).eval()
    gate.collecting = True
    with torch.no_grad():
        gate.linear.weight.fill_(1.0)
    x = torch.tensor([[[0.0], [0.0]], [[100.0], [100.0]]])  # example 0 -> 0.5, example 1 -> 1.0
    gate(x)
    stats = gate.stats()
    assert stats["n"] == 2 and math.isclose(stats["mean"], 0.75) and math.isclose(stats["std"], 0.25)


def test_a_registered_gate_type_is_usable(monkeypatch, batch):
    from unipelt_cli.pelt import GATES, iter_gates

    from .pelt_helpers import logits, pelt_model, randomize

    class HalfGate(Gate):
        """A gate type that always says 0.5 (it inherits hold and statistics from Gate)."""

        def score(self, u):
            return u.new_full((u.shape[0], 1, 1), 0.5)

    monkeypatch.setitem(GATES, "half", HalfGate)
    custom = pelt_model(["lora"], lora={"gate_type": "half"})
    randomize(custom)
    assert all(isinstance(g, HalfGate) for _, _, g in iter_gates(custom))
    reference = pelt_model(["lora"])
    reference.load_state_dict(custom.state_dict(), strict=False)
    for _, _, gate in iter_gates(reference):
        gate.hold(0.5)
    torch.testing.assert_close(logits(custom, batch), logits(reference, batch), rtol=0, atol=0)


def test_masked_pooling_of_a_single_real_token_is_that_token():
    torch.manual_seed(0)
    gate = SigmoidMeanGate(4)
    u = torch.randn(1, 3, 4)
    one = gate(u, torch.tensor([[1, 0, 0]]))
    torch.testing.assert_close(one, gate(u[:, :1], None), rtol=0, atol=0)


def test_gate_defaults_and_bad_pooling():
    gate = SigmoidMeanGate(4)
    assert gate.pooling == "masked" and gate.options is None and gate.collecting is False and gate.held is None
    with pytest.raises(ValueError, match="gate pooling must be one of .* got 'max'"):
        SigmoidMeanGate(4, "max")


def test_register_gate_adds_a_kind_once(monkeypatch):
    monkeypatch.setattr(gate_module, "GATES", dict(GATES))

    @gate_module.register_gate("twice")
    class Twice(Gate):
        pass

    assert gate_module.GATES["twice"] is Twice
    assert Twice(4).pooling == "masked"  # a kind that keeps the base __init__ pools over real tokens
    with pytest.raises(ValueError, match="gate kind 'twice' is registered twice"):
        gate_module.register_gate("twice")(Twice)


def test_scalar_gate_reads_no_input():
    """G = sigmoid(b): one parameter, the same value for every example and token."""
    gate = ScalarGate(8, options=ScalarGateOptions(init=1.5))
    assert [p.numel() for p in gate.parameters()] == [1]
    u = torch.randn(3, 5, 8)
    expected = torch.full((3, 1, 1), torch.sigmoid(torch.tensor(1.5)).item())
    torch.testing.assert_close(gate(u, torch.ones(3, 5)), expected, rtol=0, atol=1e-7)
    assert gate.score(u).shape == (1, 1, 1)  # the score of a gate that reads no token
    assert gate(u.double()).dtype == torch.float64
    assert ScalarGate(8).options == ScalarGateOptions() and ScalarGate(8).logit.item() == 0.0


def test_gate_options_reach_the_gate_a_submodule_builds():
    assert gate_kind_options({}) == {"scalar": ScalarGateOptions()}  # kinds without options are absent
    given = ScalarGateOptions(init=-2.0)
    assert gate_kind_options({"scalar": given})["scalar"] is given
    assert gate_kind_options({"scalar": {"init": 0.75}}) == {"scalar": ScalarGateOptions(init=0.75)}
    ctx = SimpleNamespace(pooling="all", gate_options=gate_kind_options({"scalar": {"init": 0.75}}))
    built = make_gate("scalar", 8, ctx)
    assert isinstance(built, ScalarGate) and built.pooling == "all" and built.logit.item() == 0.75
    assert make_gate("sigmoid_mean", 8, ctx).linear.in_features == 8
