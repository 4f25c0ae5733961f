"""The UniPELT gate (Mao et al. ACL 2022, arXiv 2110.07577): one per layer and submodule, one scalar per example.

    G(u) = mean over tokens t of sigmoid(w . u_t + b)      u: (B, T, d)  ->  G(u): (B, 1, 1)
    w ~ N(0, 0.02), b = 0, so every gate starts near 0.5   (d + 1 parameters)

Pooling over tokens:
    "masked"  real tokens only (the batch's padding mask). Our default: with dynamic padding,
              pooling over every position would make the gate depend on how long the batch was padded.
    "all"     every position of the padded batch, padding included: the original code's formula.
              The original always padded to 128, so with "all" batches are padded to
              train.max_length (slower, but each gate then averages over the same positions).

Statistics: with `collecting` on, an eval-mode forward adds the per-example gate values to a
running count, sum and sum of squares (three float64 numbers, whatever the number of batches).
Training-mode forwards never record, and nothing is recorded while collecting is off.

Gate types are registered by name in GATES, like the submodules; "sigmoid_mean" is the paper's.
"""

import math

import torch
from torch import nn

GATE_POOLING = ("masked", "all")
GATES: dict[str, type[nn.Module]] = {}


def register_gate(name: str):
    """Class decorator: a gate class built as `cls(dim, pooling)`, called as `gate(u, mask)` -> (B, 1, 1).

    Subclass Gate to inherit `hold` and the statistics (`collecting`, `stats`, `reset_stats`)."""

    def add(cls):
        GATES[name] = cls
        return cls

    return add


def make_gate(kind: str, dim: int, pooling: str) -> nn.Module:
    return GATES[kind](dim, pooling)


@register_gate("sigmoid_mean")
class Gate(nn.Module):
    def __init__(self, dim: int, pooling: str = "masked"):
        super().__init__()
        if pooling not in GATE_POOLING:
            raise ValueError(f"gate pooling must be one of {GATE_POOLING}, got {pooling!r}")
        self.linear = nn.Linear(dim, 1)
        nn.init.normal_(self.linear.weight, std=0.02)
        nn.init.zeros_(self.linear.bias)
        self.pooling = pooling
        self.held: float | None = None  # when set, the gate outputs this value (tests, ablations)
        self.collecting = False
        self.sums: torch.Tensor | None = None  # float64 (3,): count, sum, sum of squares

    def forward(self, u: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """u: (B, T, d); mask: (B, T) with 1 for real tokens, or None. Returns (B, 1, 1)."""
        if self.held is not None:
            g = u.new_full((u.shape[0], 1, 1), self.held)
        else:
            s = torch.sigmoid(self.linear(u))  # (B, T, 1)
            if self.pooling == "masked" and mask is not None:
                m = mask.to(s.dtype).unsqueeze(-1)  # (B, T, 1)
                g = (s * m).sum(1, keepdim=True) / m.sum(1, keepdim=True).clamp_min(1)
            else:
                g = s.mean(1, keepdim=True)  # (B, 1, 1)
        if self.collecting and not self.training:
            self.record(g)
        return g

    def hold(self, value: float | None) -> None:
        """Fix the gate's output at `value` for every example; None releases it."""
        self.held = value

    def record(self, g: torch.Tensor) -> None:
        v = g.detach().reshape(-1).double()
        new = torch.stack([v.new_tensor(float(v.numel())), v.sum(), (v * v).sum()])
        self.sums = new if self.sums is None else self.sums + new.to(self.sums.device)

    def reset_stats(self) -> None:
        self.sums = None

    def stats(self) -> dict:
        """{"mean", "std", "n"} of the recorded per-example values (population std; None when n = 0)."""
        if self.sums is None:
            return {"mean": None, "std": None, "n": 0}
        n, total, squares = self.sums.tolist()
        mean = total / n
        return {"mean": mean, "std": math.sqrt(max(squares / n - mean * mean, 0.0)), "n": int(n)}
