"""The speed paths change cost, not meaning: fast dropout's rate and scaling, frozen weights kept in
bf16 and attention inputs rounded once give the same logits as autocast, fused AdamW matches the
plain one, the prefix MLP skips autocast."""

from __future__ import annotations

import contextlib

import pytest
import torch
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode

from tests.pelt.pelt_helpers import make_batch, pelt_model, randomize, tiny_model
from unipelt_cli.dropout import FastDropout, fast_dropout, use_fast_dropout
from unipelt_cli.model import store_frozen_linears
from unipelt_cli.pelt.cast import cast_attention_inputs, to_autocast


@pytest.mark.parametrize("p", [0.1, 0.5])
def test_fast_dropout_rate_and_scale(p):
    torch.manual_seed(0)
    x = torch.ones(200_003)
    y = fast_dropout(x, p)
    dropped = (y == 0).float().mean().item()
    assert abs(dropped - p) < 4 * (p * (1 - p) / x.numel()) ** 0.5 + 1e-4  # within 4 standard errors
    kept = y[y != 0]
    assert torch.allclose(kept, torch.full_like(kept, 65536 / (65536 - round(p * 65536))))
    assert abs(y.mean().item() - 1) < 0.01  # inverted dropout keeps the expectation


def test_fast_dropout_is_seeded_and_identity_in_eval():
    x = torch.randn(4, 7, 5, dtype=torch.bfloat16, requires_grad=True)
    layer = FastDropout(0.3)
    torch.manual_seed(3)
    a = layer(x)
    torch.manual_seed(3)
    b = layer(x)
    assert torch.equal(a, b) and a.dtype == x.dtype and a.shape == x.shape
    a.sum().backward()
    assert torch.equal(x.grad != 0, a != 0)  # gradients flow through kept elements only
    assert layer.eval()(x) is x


def test_use_fast_dropout_swaps_every_dropout():
    from transformers import BertConfig

    model = tiny_model(config=BertConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                                         intermediate_size=64, vocab_size=100))  # fmt: skip
    n = sum(type(m) is nn.Dropout for m in model.modules())
    assert n > 0 and use_fast_dropout(model) == n
    assert not any(type(m) is nn.Dropout for m in model.modules())
    assert all(m.p == 0.1 for m in model.modules() if isinstance(m, FastDropout))


@pytest.mark.parametrize("names", [["adapter", "prefix", "lora"], ["bitfit"]])
def test_frozen_linears_in_bf16_give_autocast_logits(names):
    model = pelt_model(names).eval()
    ids = torch.randint(1, 100, (3, 9))
    mask = torch.ones_like(ids)
    mask[0, 6:] = 0
    with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16):
        before = model(input_ids=ids, attention_mask=mask).logits.float()
    assert store_frozen_linears(model, torch.bfloat16) > 0
    assert all(p.dtype == torch.float32 for p in model.parameters() if p.requires_grad)
    with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16):
        after = model(input_ids=ids, attention_mask=mask).logits.float()
    assert torch.equal(before, after)


def test_fused_adamw_matches_plain():
    torch.manual_seed(0)
    a = nn.Linear(6, 3)
    b = nn.Linear(6, 3)
    b.load_state_dict(a.state_dict())
    opts = [torch.optim.AdamW(m.parameters(), lr=1e-2, weight_decay=0.01, fused=f) for m, f in ((a, False), (b, True))]
    for _ in range(5):
        x = torch.randn(4, 6)
        for m, opt in zip((a, b), opts, strict=True):
            m(x).pow(2).sum().backward()
            opt.step()
            opt.zero_grad()
    assert torch.allclose(a.weight, b.weight, atol=1e-6)


class CastCounter(TorchDispatchMode):
    """Counts fp32 -> bf16 roundings of (B, T, d) activations and notes the shapes of all roundings."""

    def __init__(self):
        super().__init__()
        self.activations, self.shapes = 0, []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func is torch.ops.aten._to_copy.default and kwargs.get("dtype") == torch.bfloat16:
            self.shapes.append(tuple(args[0].shape))
            self.activations += args[0].dim() == 3 and args[0].dtype == torch.float32
        return func(*args, **kwargs)


def _autocast_forward(model, batch, counter=None):
    with torch.autocast("cpu", dtype=torch.bfloat16), counter or contextlib.nullcontext():
        return model(**batch).logits.float()


@pytest.mark.parametrize("names", [["adapter", "prefix", "lora"], ["parallel_adapter", "ia3"], []])
def test_attention_input_rounded_once_gives_the_same_forward(names):
    model = pelt_model(names) if names else tiny_model()
    randomize(model)
    store_frozen_linears(model, torch.bfloat16)
    batch = make_batch()
    before, counted_before = CastCounter(), CastCounter()
    with torch.no_grad():
        logits = _autocast_forward(model, batch, counted_before)
        assert cast_attention_inputs(model) == 2  # one hook a layer
        after = _autocast_forward(model, batch, before)
        again = _autocast_forward(model, batch)
    assert torch.equal(logits, after) and torch.equal(after, again)
    # q, k, v each rounded x before; now the hook does it once a layer (and LoRA, gates read it rounded)
    assert counted_before.activations - before.activations >= 2 * 2


def test_to_autocast_rounds_only_fp32_under_autocast():
    x = torch.randn(2, 3, 4)
    assert to_autocast(x) is x  # autocast off
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert to_autocast(x).dtype == torch.bfloat16 and torch.equal(to_autocast(x), x.to(torch.bfloat16))
        assert to_autocast(x.double()).dtype == torch.float64


def test_attention_input_rounded_once_keeps_gradients_within_bf16():
    """The one change: the consumers' input gradients add up in bf16 before the cast back."""
    grads = []
    for cast in (False, True):
        model = pelt_model(["adapter", "prefix", "lora"]).train()
        randomize(model)
        store_frozen_linears(model, torch.bfloat16)
        if cast:
            cast_attention_inputs(model)
        _autocast_forward(model, make_batch()).sum().backward()
        grads.append(torch.cat([p.grad.flatten() for p in model.parameters() if p.requires_grad]))
    assert not torch.equal(grads[0], grads[1])  # the hook is on: a test that would pass without it proves nothing
    assert torch.allclose(grads[0], grads[1], rtol=0.05, atol=1e-3 * grads[0].abs().max().item())


def test_prefix_mlp_runs_in_fp32_under_autocast():
    model = pelt_model(["prefix"])
    prefix = model.pelt["prefix"]
    plain = prefix.all_vectors()
    counter = CastCounter()
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16), counter:
        inside = prefix.all_vectors()
        prefix.begin()
    assert inside.dtype == torch.float32 and torch.equal(inside, plain)
    assert prefix.current.dtype == torch.bfloat16 and torch.equal(prefix.current, plain.to(torch.bfloat16))
    assert counter.shapes == [tuple(plain.shape)]  # the output rounded once; no MLP weight rounded
