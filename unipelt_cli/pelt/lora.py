"""LoRA on self-attention projections, optionally gated (UniPELT; Hu et al. 2021).

    for each target projection W (query and value by default), x: (B, T, d_in)
    ungated:  W x + (alpha / r) B A x        A: (r, d_in) kaiming-uniform(a = sqrt 5), B: (d_out, r) = 0
    gated:    W x + G_L(x) B A x             the gate REPLACES alpha / r
    gate_per  "matrix": one gate per adapted projection (the original code: Q and V gates a layer)
              "layer":  one gate a layer, shared by its projections (the paper's text)

How it attaches: a forward hook on each target Linear adds the update to its output. Gates read the
self-attention input x, so a forward pre-hook on the self-attention module computes them once a layer.
Ungated LoRA can be folded into W with `merge_lora`; a gated one cannot (its scale depends on x).
"""

import math
from dataclasses import dataclass, field
from functools import partial

import torch
from torch import nn
from torch.nn import functional as F

from unipelt_cli.errors import UserError
from unipelt_cli.pelt import arch as archmod
from unipelt_cli.pelt.gate import GATES, make_gate
from unipelt_cli.pelt.registry import Context, Part, check_choice, check_positive, register

TARGETS = ("query", "key", "value")
GATE_PER = ("matrix", "layer")
SUFFIX = {"query": "q", "key": "k", "value": "v"}  # gate-statistics keys: lora_q, lora_v, ...


@dataclass
class LoRAOptions:
    enabled: bool = False  # add low-rank updates to self-attention projections
    gate: bool = True  # scale them by G_L instead of alpha / rank (the original code's default; LoRA baseline: false)
    gate_type: str = "sigmoid_mean"  # which registered gate
    gate_per: str = "matrix"  # "matrix": a gate per adapted projection (original code); "layer": one a layer (paper)
    rank: int = 8  # r, the inner dimension of B A
    alpha: float = 16.0  # ungated updates are scaled by alpha / rank (16 / 8 = 2)
    targets: list[str] = field(default_factory=lambda: ["query", "value"])  # any of query, key, value

    def __post_init__(self):
        check_positive("lora.rank", self.rank)
        check_positive("lora.alpha", self.alpha)
        check_choice("lora.gate_per", self.gate_per, GATE_PER)
        check_choice("lora.gate_type", self.gate_type, GATES)
        if not self.targets or len(set(self.targets)) != len(self.targets):
            raise UserError(
                f"lora.targets must name each projection once, got {list(self.targets)}: e.g. [query, value]"
            )
        for target in self.targets:
            check_choice("lora.targets entry", target, TARGETS)


class LoRALayer(nn.Module):
    """The LoRA matrices (and gates) of one transformer layer."""

    def __init__(self, linears: dict[str, nn.Linear], options: LoRAOptions, pooling: str, ctx: Context):
        super().__init__()
        self.linears = linears  # target -> the backbone Linear (a plain dict: not registered here)
        self.A = nn.ParameterDict()
        self.B = nn.ParameterDict()
        for target, linear in linears.items():
            a = torch.empty(options.rank, linear.in_features)
            nn.init.kaiming_uniform_(a, a=math.sqrt(5))
            self.A[target] = nn.Parameter(a)
            self.B[target] = nn.Parameter(torch.zeros(linear.out_features, options.rank))
        self.scaling = options.alpha / options.rank
        self.gate = None
        if options.gate:
            keys = list(linears) if options.gate_per == "matrix" else ["layer"]
            dim = next(iter(linears.values())).in_features
            self.gate = nn.ModuleDict({k: make_gate(options.gate_type, dim, pooling) for k in keys})
        self.ctx = ctx
        self.gate_values: dict[str, torch.Tensor] = {}  # gate values (B, 1, 1) for the running layer call

    def before_attention(self, attention: nn.Module, args: tuple, kwargs: dict) -> None:
        """Forward pre-hook on the self-attention module: compute this layer's gates from x (B, T, d)."""
        x = args[0] if args else kwargs["hidden_states"]
        self.gate_values = {key: gate(x, self.ctx.mask) for key, gate in self.gate.items()}

    def after_projection(self, target: str, linear: nn.Linear, args: tuple, output: torch.Tensor) -> torch.Tensor:
        """Forward hook on a target Linear: W x  ->  W x + scale * B A x."""
        update = F.linear(F.linear(args[0], self.A[target]), self.B[target])  # (B, T, d_out)
        if self.gate is None:
            return output + update * self.scaling
        g = self.gate_values[target if target in self.gate else "layer"]  # (B, 1, 1)
        return output + update * g


@register
class LoRASet(Part):
    name = "lora"
    Options = LoRAOptions

    def __init__(self, layers: list[LoRALayer]):
        super().__init__()
        self.layers = nn.ModuleList(layers)

    @classmethod
    def attach(cls, model, arch, options: LoRAOptions, ctx: Context) -> "LoRASet":
        hooks, lora_layers = [], []
        for layer in archmod.layers(model, arch):
            attention = archmod.path(layer, arch.attention)
            linears = {t: archmod.path(attention, arch.projections[t]) for t in options.targets}
            lora = LoRALayer(linears, options, ctx.pooling, ctx)
            for target, linear in linears.items():
                hooks.append(linear.register_forward_hook(partial(lora.after_projection, target)))
            if lora.gate is not None:
                hooks.append(attention.register_forward_pre_hook(lora.before_attention, with_kwargs=True))
            lora_layers.append(lora)
        part = cls(lora_layers)
        part.hooks = hooks
        return part

    def gates(self):
        for i, layer in enumerate(self.layers):
            for key, gate in (layer.gate or {}).items():
                yield i, "lora" if key == "layer" else f"lora_{SUFFIX[key]}", gate


def merge_lora(model: nn.Module) -> None:
    """Fold ungated LoRA into the projection weights (W += alpha / r * B A) and remove it from the model."""
    part = model.pelt["lora"] if hasattr(model, "pelt") and "lora" in model.pelt else None
    if part is None:
        raise UserError("this model has no LoRA to merge: enable lora before calling merge_lora")
    if any(layer.gate is not None for layer in part.layers):
        raise UserError("gated LoRA cannot be merged (its scale depends on the input): train with lora.gate=false")
    with torch.no_grad():
        for layer in part.layers:
            for target, linear in layer.linears.items():
                delta = (layer.B[target] @ layer.A[target]) * layer.scaling  # (d_out, d_in)
                linear.weight += delta.to(linear.weight.dtype)
    part.remove_hooks()
    del model.pelt["lora"]
