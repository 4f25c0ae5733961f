"""Each submodule computes its formula: identity at init, held gates equal static scaling,
prefix attention equals a hand-written reference, eager equals SDPA."""

import math

import pytest
import torch
from transformers import BertConfig

from unipelt_cli.errors import UserError
from unipelt_cli.pelt import iter_gates
from unipelt_cli.pelt.prefix import PREFIX_ATTENTION, RoutedConfig, inner_attention, prefix_attention

from .pelt_helpers import COMBOS, TINY, logits, pelt_model, randomize, tiny_model


def hold(model, value):
    for _, _, gate in iter_gates(model):
        gate.hold(value)


@pytest.mark.parametrize("impl", ["eager", "sdpa"])
def test_ungated_lora_is_identity_at_init(impl, batch):
    model = pelt_model(["lora"], impl, lora={"gate": False, "targets": ["query", "key", "value"]})
    assert torch.equal(logits(model, batch), logits(tiny_model(impl), batch))


@pytest.mark.parametrize("gate", [False, True])
def test_adapter_with_zero_up_projection_is_identity(gate, batch):
    model = pelt_model(["adapter"], adapter={"gate": gate})
    randomize(model)
    with torch.no_grad():
        for adapter in model.pelt["adapter"].layers:
            adapter.up.weight.zero_()
            adapter.up.bias.zero_()
    reference = tiny_model()
    reference.load_state_dict(model.state_dict(), strict=False)  # same head and pooler as `model`
    assert torch.equal(logits(model, batch), logits(reference, batch))


def test_held_lora_gate_equals_alpha_over_r(batch):
    for gate_per in ("matrix", "layer"):
        gated = pelt_model(["lora"], lora={"gate_per": gate_per})
        randomize(gated)
        hold(gated, 0.375)
        plain = pelt_model(["lora"], lora={"gate": False, "alpha": 0.375 * 8})
        plain.load_state_dict(gated.state_dict(), strict=False)  # A, B, head
        torch.testing.assert_close(logits(gated, batch), logits(plain, batch), rtol=0, atol=1e-6)


def test_held_adapter_gate_scales_up_projection(batch):
    gated = pelt_model(["adapter"])
    randomize(gated)
    hold(gated, 0.375)
    plain = pelt_model(["adapter"], adapter={"gate": False})
    plain.load_state_dict(gated.state_dict(), strict=False)
    with torch.no_grad():
        for adapter in plain.pelt["adapter"].layers:
            adapter.up.weight.mul_(0.375)
            adapter.up.bias.mul_(0.375)
    torch.testing.assert_close(logits(gated, batch), logits(plain, batch), rtol=0, atol=1e-6)


def test_held_prefix_gate_scales_prefix(batch):
    gated = pelt_model(["prefix"])
    randomize(gated)
    gated.pelt["prefix"].fix()
    hold(gated, 0.375)
    plain = pelt_model(["prefix"], prefix={"gate": False})
    plain.pelt["prefix"].fix()
    plain.load_state_dict(gated.state_dict(), strict=False)
    with torch.no_grad():
        plain.pelt["prefix"].vectors.mul_(0.375)
    torch.testing.assert_close(logits(gated, batch), logits(plain, batch), rtol=0, atol=1e-6)


def reference_prefix_attention(attention, x, mask, prefix, gate):
    """Softmax attention by hand over concat(g * prefix, K). x: (B, T, d); prefix: (2, L, d)."""
    b, t, d = x.shape
    heads = attention.num_attention_heads
    dh = d // heads
    g = torch.sigmoid(x @ gate.linear.weight[0] + gate.linear.bias)  # (B, T)
    g = (g * mask).sum(1) / mask.sum(1)  # (B,), real tokens only
    keys = torch.cat([g[:, None, None] * prefix[0], attention.key(x)], dim=1)  # (B, L + T, d)
    values = torch.cat([g[:, None, None] * prefix[1], attention.value(x)], dim=1)
    q = attention.query(x).view(b, t, heads, dh).transpose(1, 2)  # (B, heads, T, dh)
    k = keys.view(b, -1, heads, dh).transpose(1, 2)  # (B, heads, L + T, dh)
    v = values.view(b, -1, heads, dh).transpose(1, 2)
    visible = torch.cat([torch.ones(b, prefix.shape[1]), mask.float()], dim=1)  # (B, L + T)
    scores = q @ k.transpose(-1, -2) / math.sqrt(dh)  # (B, heads, T, L + T)
    scores = scores.masked_fill(visible[:, None, None, :] == 0, float("-inf"))
    return (scores.softmax(-1) @ v).transpose(1, 2).reshape(b, t, d)


@pytest.mark.parametrize("impl", ["eager", "sdpa"])
def test_prefix_attention_matches_hand_written_reference(impl, batch):
    model = pelt_model(["prefix"], impl, prefix={"length": 3})
    part = model.pelt["prefix"]
    randomize(model)
    part.fix()
    torch.manual_seed(5)
    with torch.no_grad():
        part.vectors.normal_()
    attention = model.bert.encoder.layer[1].attention.self
    seen = {}
    attention.register_forward_hook(lambda m, args, out: seen.update(x=args[0], out=out[0]))
    logits(model, batch)
    with torch.no_grad():
        expected = reference_prefix_attention(
            attention, seen["x"], batch["attention_mask"].float(), part.vectors[1], part.layer_gates[1]
        )
    real = batch["attention_mask"].bool()  # padded query rows are never read downstream
    torch.testing.assert_close(seen["out"][real], expected[real], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("names", COMBOS, ids=["+".join(c) for c in COMBOS])
def test_eager_equals_sdpa(names, batch):
    eager, sdpa = pelt_model(names, "eager"), pelt_model(names, "sdpa")
    randomize(eager)
    randomize(sdpa)
    torch.testing.assert_close(logits(eager, batch), logits(sdpa, batch), rtol=1e-5, atol=1e-6)
    unpadded = {k: v[1:] for k, v in batch.items()}  # no padding: both implementations get mask None
    torch.testing.assert_close(logits(eager, unpadded), logits(sdpa, unpadded), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("impl", ["eager", "sdpa"])
def test_masked_pooling_makes_outputs_independent_of_padding(impl, batch):
    alone = {k: v[:1, :4] for k, v in batch.items()}  # example 0 without its 2 padding positions
    for pooling, independent in (("masked", True), ("all", False)):
        model = pelt_model(["adapter", "prefix", "lora"], impl, pooling=pooling)
        randomize(model)
        same = torch.allclose(logits(model, batch)[:1], logits(model, alone), rtol=0, atol=1e-5)
        assert same == independent, pooling


@pytest.mark.parametrize("impl", ["eager", "sdpa"])
def test_prefix_attention_keeps_the_backbones_attention_dropout(impl, batch):
    """The routed attention hands the backbone's keyword arguments (dropout, scaling) to the inner function:
    in training, attention dropout still drops (here the only dropout), so train and eval outputs differ."""
    config = BertConfig(**{**TINY, "attention_probs_dropout_prob": 0.5})
    model = pelt_model(["prefix"], impl, config=config)
    randomize(model)
    seen = []
    model.bert.encoder.layer[0].attention.self.register_forward_hook(lambda m, args, out: seen.append(out[0]))
    logits(model, batch)
    model.train()
    torch.manual_seed(0)
    logits(model, batch)
    model.eval()
    logits(model, batch)
    evaluated, trained, again = seen
    assert (trained - evaluated).abs().max() > 1e-2  # context vectors here are O(0.1); eval repeats exactly
    assert torch.equal(again, evaluated)


def test_attach_registers_the_prefix_attention_function(monkeypatch, batch):
    """A fresh process knows no "unipelt_prefix" attention: attaching the prefix registers it."""
    from transformers import AttentionInterface
    from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS

    monkeypatch.delitem(AttentionInterface._global_mapping, PREFIX_ATTENTION, raising=False)
    model = pelt_model(["prefix"])
    assert ALL_ATTENTION_FUNCTIONS[PREFIX_ATTENTION] is prefix_attention
    randomize(model)
    assert (logits(model, batch) - logits(tiny_model(), batch)).abs().max() > 1e-3


def test_routed_config_forwards_to_the_model_config():
    """Each self-attention's config names the prefix attention and reads everything else from the model's
    config; a half-built one (as copy/pickle make it) raises AttributeError naming the attribute."""
    model = pelt_model(["prefix"])
    routed = model.bert.encoder.layer[1].attention.self.config
    assert isinstance(routed, RoutedConfig) and routed.layer == 1 and routed.prefix is model.pelt["prefix"]
    assert routed._attn_implementation == PREFIX_ATTENTION and model.config._attn_implementation == "eager"
    assert routed.hidden_size == 32 and routed.num_attention_heads == 4 and routed.base is model.config
    with pytest.raises(AttributeError, match="no_such_key"):
        getattr(routed, "no_such_key")  # noqa: B009 (the access is the test)
    with pytest.raises(AttributeError, match="^hidden_size$"):
        getattr(RoutedConfig.__new__(RoutedConfig), "hidden_size")  # noqa: B009


def test_prefix_attention_without_its_pre_hook_says_so(batch):
    """The prefix keys come from the self-attention pre-hook (kept in `Part.hooks`); with the hooks
    removed, the routed attention says what is missing instead of attending without them."""
    model = pelt_model(["prefix"])
    logits(model, batch)
    model.pelt["prefix"].remove_hooks()
    assert not any(m._forward_pre_hooks for m in model.bert.encoder.modules())
    message = r"^prefix keys for layer 0 are missing: the self-attention pre-hook did not run$"
    with pytest.raises(RuntimeError, match=message):
        logits(model, batch)


def test_inner_attention_is_eager_or_sdpa_only():
    """The model's implementation is checked at attach; switched afterwards, the routed attention refuses it."""
    attention = tiny_model().bert.encoder.layer[0].attention.self
    message = r"^prefix-tuning runs on eager or sdpa attention, not 'flex_attention': load the model with sdpa$"
    with pytest.raises(UserError, match=message):
        inner_attention(attention, "flex_attention")
