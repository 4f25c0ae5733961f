"""Dropout with cheaper random numbers on CPU (a drop-in for nn.Dropout in the backbone).

    keep_i = [r_i >= t],  r_i uniform 16-bit integers,  t = round(p * 2^16)
    y = x * keep / (1 - t / 2^16)

torch's CPU dropout draws one 32-bit Mersenne-Twister number per element, serially: on a 2-core CPU
that was ~14% of a UniPELT train step. Here one 64-bit draw gives four 16-bit numbers (the range
excludes one of 2^64 values), 4x fewer draws; the op measured 2.5x faster than F.dropout.
The drop rate is p rounded to a multiple of 1/65536 (0.1 -> 0.100006), and the mask comes from
torch's seeded generator, so runs stay reproducible.
Attention-probability dropout inside SDPA is left to torch.
"""

from __future__ import annotations

import torch
from torch import nn

LEVELS = 1 << 16


def fast_dropout(x: torch.Tensor, p: float) -> torch.Tensor:
    threshold = round(p * LEVELS)
    n = x.numel()
    draws = torch.randint(-(1 << 63), (1 << 63) - 1, (-(-n // 4),), dtype=torch.int64, device=x.device)
    r = draws.view(torch.int16)[:n].view(x.shape)  # four 16-bit numbers a draw, in [-2^15, 2^15)
    keep = r >= threshold - LEVELS // 2
    return torch.where(keep, x * (LEVELS / (LEVELS - threshold)), 0)


class FastDropout(nn.Module):
    def __init__(self, p: float):
        super().__init__()
        self.p = p

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0:
            return x
        return fast_dropout(x, self.p)

    def extra_repr(self) -> str:
        return f"p={self.p}"


def use_fast_dropout(model: nn.Module) -> int:
    """Replace every nn.Dropout submodule by FastDropout with the same p. Returns how many."""
    swaps = [(parent, name, child) for parent in model.modules() for name, child in parent.named_children()
             if type(child) is nn.Dropout]  # fmt: skip
    for parent, name, child in swaps:
        setattr(parent, name, FastDropout(child.p))
    return len(swaps)
