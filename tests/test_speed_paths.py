"""The speed paths change cost, not meaning: fast dropout's rate and scaling, frozen weights kept in
bf16 give the same logits as autocast, fused AdamW matches the plain one."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from tests.pelt.pelt_helpers import pelt_model, tiny_model
from unipelt_cli.dropout import FastDropout, fast_dropout, use_fast_dropout
from unipelt_cli.model import store_frozen_linears


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
