"""Gates: one per layer and submodule, one scalar per example, switching the submodule on or off.

The UniPELT gate (Mao et al. ACL 2022, arXiv 2110.07577, section 3), kind "sigmoid_mean":

    G(u) = mean over tokens t of sigmoid(w . u_t + b)      u: (B, T, d)  ->  G(u): (B, 1, 1)
    w ~ N(0, 0.02), b = 0, so every gate starts near 0.5   (d + 1 parameters)

`Gate` is the base of every kind and owns what they share; a kind only computes its per-token
score in [0, 1] (`score`: (B, T, 1), or (B, 1, 1) for a score that does not read the tokens):

  pooling over tokens
    "masked"  real tokens only (the batch's padding mask). Our default: with dynamic padding,
              pooling over every position would make the gate depend on how long the batch was padded.
    "all"     every position of the padded batch, padding included: the original code's formula.
              The original always padded to 128, so with "all" batches are padded to
              train.max_length (slower, but each gate then averages over the same positions).
  holding     `hold(v)` fixes the output at v for every example (tests, ablations); None releases it.
  statistics  with `collecting` on, an eval-mode forward adds the per-example gate values to a
              running count, sum and sum of squares (three float64 numbers, whatever the number of
              batches). Training-mode forwards never record, nor does anything while collecting is off.

A gate kind is registered by name with `@register_gate("name")`; a kind with options sets
`Options` (a dataclass) and reads `self.options`; they are configured as `pelt.gate.<name>.*`
(defaults in conf/pelt/gate/<name>.yaml). A submodule picks its kind with `<submodule>.gate_type`.
"""

import math
from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import nn

GATE_POOLING = ("masked", "all")
GATES: dict[str, type["Gate"]] = {}


def register_gate(name: str):
    """Class decorator: a Gate subclass built as `cls(dim, pooling, options)`."""

    def add(cls):
        if name in GATES:
            raise ValueError(f"gate kind {name!r} is registered twice")
        GATES[name] = cls
        return cls

    return add


def gate_kind_options(given: dict) -> dict:
    """{kind: Options} for every kind that has options; a mapping in `given` fills its fields."""
    out = {}
    for kind, cls in GATES.items():
        if cls.Options is None:
            continue
        value = given.get(kind, {})
        out[kind] = value if isinstance(value, cls.Options) else cls.Options(**dict(value))
    return out


def make_gate(kind: str, dim: int, ctx) -> "Gate":
    """The one way a submodule builds a gate: kind, the width of the input it reads, its Context."""
    return GATES[kind](dim, ctx.pooling, ctx.gate_options.get(kind))


class Gate(nn.Module):
    """Base of every gate kind: pooling, holding and statistics (see the module docstring)."""

    Options: ClassVar[type | None] = None

    def __init__(self, dim: int, pooling: str = "masked", options=None):
        super().__init__()
        if pooling not in GATE_POOLING:
            raise ValueError(f"gate pooling must be one of {GATE_POOLING}, got {pooling!r}")
        self.pooling = pooling
        self.options = options if options is not None or self.Options is None else self.Options()
        self.held: float | None = None  # when set, the gate outputs this value (tests, ablations)
        self.collecting = False
        self.sums: torch.Tensor | None = None  # float64 (3,): count, sum, sum of squares

    def score(self, u: torch.Tensor) -> torch.Tensor:
        """u: (B, T, d) -> per-token score in [0, 1], (B, T, 1); or (B, 1, 1) when it reads no token."""
        raise NotImplementedError

    def forward(self, u: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """u: (B, T, d); mask: (B, T) with 1 for real tokens, or None. Returns (B, 1, 1)."""
        if self.held is not None:
            g = u.new_full((u.shape[0], 1, 1), self.held)
        else:
            s = self.score(u)  # (B, T, 1) or (B, 1, 1)
            if s.shape[1] == 1:
                g = s.expand(u.shape[0], 1, 1)
            elif self.pooling == "masked" and mask is not None:
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


@register_gate("sigmoid_mean")
class SigmoidMeanGate(Gate):
    """The paper's gate: sigmoid(w . u_t + b) per token, pooled by the base class."""

    def __init__(self, dim: int, pooling: str = "masked", options=None):
        super().__init__(dim, pooling, options)
        self.linear = nn.Linear(dim, 1)
        nn.init.normal_(self.linear.weight, std=0.02)
        nn.init.zeros_(self.linear.bias)

    def score(self, u: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.linear(u))  # (B, T, 1)


@dataclass
class ScalarGateOptions:
    init: float = 0.0  # the logit's starting value: sigmoid(0) = 0.5, where the paper's gates start


@register_gate("scalar")
class ScalarGate(Gate):
    """A learned per-layer weight that reads no input: G = sigmoid(b), one parameter. The ablation
    of the paper's input-dependent gate (does it matter that the gate reads the example?)."""

    Options = ScalarGateOptions

    def __init__(self, dim: int, pooling: str = "masked", options=None):
        super().__init__(dim, pooling, options)
        self.logit = nn.Parameter(torch.tensor(float(self.options.init)))

    def score(self, u: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.logit).to(u.dtype).view(1, 1, 1)
