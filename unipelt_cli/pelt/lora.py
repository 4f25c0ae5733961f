"""LoRA on self-attention projections, optionally gated (UniPELT; Hu et al. 2021), and DoRA.

    for each target projection W, b (query and value by default), x: (B, T, d_in)
    ungated:  W x + b + s B A x              s = alpha / r
              A: (r, d_in) kaiming-uniform(a = sqrt 5), B: (d_out, r) = 0, so it starts as the backbone
    gated:    W x + b + G_L(x) B A x         the gate REPLACES s (UniPELT, section 3)
    gate_per  "matrix": one gate per adapted projection (the original code: Q and V gates a layer)
              "layer":  one gate a layer, shared by its projections (the paper's text)

DoRA (Liu et al. ICML 2024, section 4; `lora.dora=true`): the updated weight is split into a
magnitude m (one number per output row, init ||W||_row) and a direction:

    W' = m * (W + s B A) / ||W + s B A||_row          ||.||_row: L2 norm of each row (output unit)
    out = b + (m / n) * (W x + s B A x),  n = ||W + s B A||_row treated as a constant (detached,
          DoRA section 4.3), written as PEFT does: W x + b + (m/n - 1) W x + (m/n) s B A x
    gated DoRA: s -> G_L(x), per example; n_g = sqrt(||W||^2 + 2 g <W, BA> + g^2 ||BA||^2) row-wise,
          so the per-example norm costs three (d_out,) vectors, not a (d_out, d_in) matrix per example.
    With B = 0 at init, n = ||W|| = m: DoRA starts as the backbone.

How it attaches: a forward hook on each target Linear adds the update to its output. Gates read the
self-attention input x, so a forward pre-hook on the self-attention module computes them once a layer.
Ungated LoRA and DoRA fold into W (`merge`); a gated one cannot (its scale depends on x).
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
    dora: bool = field(default=False, metadata={"neutral": False})  # DoRA: magnitude x normalised W + BA

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
    """The LoRA matrices (DoRA magnitudes, gates) of one transformer layer."""

    def __init__(self, linears: dict[str, nn.Linear], options: LoRAOptions, ctx: Context):
        super().__init__()
        self.linears = linears  # target -> the backbone Linear (a plain dict: not registered here)
        self.A = nn.ParameterDict()
        self.B = nn.ParameterDict()
        self.magnitude = nn.ParameterDict() if options.dora else None
        for target, linear in linears.items():
            a = torch.empty(options.rank, linear.in_features)
            nn.init.kaiming_uniform_(a, a=math.sqrt(5))
            self.A[target] = nn.Parameter(a)
            self.B[target] = nn.Parameter(torch.zeros(linear.out_features, options.rank))
            if options.dora:
                self.magnitude[target] = nn.Parameter(linear.weight.detach().float().norm(dim=1))  # (d_out,)
        self.scaling = options.alpha / options.rank
        self.gate = None
        if options.gate:
            keys = list(linears) if options.gate_per == "matrix" else ["layer"]
            dim = next(iter(linears.values())).in_features
            self.gate = nn.ModuleDict({k: make_gate(options.gate_type, dim, ctx) for k in keys})
        self.ctx = ctx
        self.gate_values: dict[str, torch.Tensor] = {}  # gate values (B, 1, 1) for the running layer call

    def before_attention(self, attention: nn.Module, args: tuple, kwargs: dict) -> None:
        """Forward pre-hook on the self-attention module: compute this layer's gates from x (B, T, d)."""
        x = archmod.first_input(args, kwargs)
        self.gate_values = {key: gate(x, self.ctx.mask) for key, gate in self.gate.items()}

    def after_projection(self, target: str, linear: nn.Linear, args: tuple, output: torch.Tensor) -> torch.Tensor:
        """Forward hook on a target Linear: W x + b  ->  W x + b + scale * B A x (or DoRA's form)."""
        update = F.linear(F.linear(args[0], self.A[target]), self.B[target])  # (B, T, d_out)
        g = None if self.gate is None else self.gate_values[target if target in self.gate else "layer"]  # (B, 1, 1)
        if self.magnitude is None:
            return output + update * (self.scaling if g is None else g)
        wx = output if linear.bias is None else output - linear.bias.to(output.dtype)  # W x
        scale = self.magnitude[target] / self.row_norm(target, g)  # (d_out,) or (B, 1, d_out)
        s = self.scaling if g is None else g
        return output + (scale - 1).to(wx.dtype) * wx + scale.to(update.dtype) * update * s

    def row_norm(self, target: str, g: torch.Tensor | None) -> torch.Tensor:
        """||W + s B A||_row, detached: (d_out,) for a fixed s; (B, 1, d_out) for per-example gates g."""
        with torch.no_grad():
            w = self.linears[target].weight.float()
            ba = self.B[target].float() @ self.A[target].float()  # (d_out, d_in)
            if g is None:
                return (w + self.scaling * ba).norm(dim=1)
            ww, wb, bb = (w * w).sum(1), (w * ba).sum(1), (ba * ba).sum(1)  # (d_out,) each
            g = g.float()  # (B, 1, 1)
            return (ww + 2 * g * wb + g * g * bb).clamp_min(0).sqrt()  # (B, 1, d_out)

    def merged_weight(self, target: str) -> torch.Tensor:
        """The ungated update folded into W (fp32): W + s B A, or DoRA's m * (W + s B A) / n."""
        w = self.linears[target].weight.float() + self.scaling * (self.B[target].float() @ self.A[target].float())
        if self.magnitude is not None:
            w = w * (self.magnitude[target].float() / self.row_norm(target, None)).unsqueeze(1)
        return w


@register
class LoRASet(Part):
    name = "lora"
    Options = LoRAOptions
    needs = ("layers", "attention", "projections")

    def __init__(self, layers: list[LoRALayer]):
        super().__init__()
        self.layers = nn.ModuleList(layers)

    @classmethod
    def attach(cls, model, arch, options: LoRAOptions, ctx: Context) -> "LoRASet":
        hooks, lora_layers = [], []
        for layer in archmod.layers(model, arch):
            attention = archmod.path(layer, arch.attention)
            linears = {t: archmod.path(attention, arch.projections[t]) for t in options.targets}
            lora = LoRALayer(linears, options, ctx)
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

    @classmethod
    def merge_refusal(cls, options) -> str | None:
        if options is None or options.gate:
            return "gated LoRA's scale depends on the input (train with lora.gate=false to export it)"
        return None

    def merge(self, model: nn.Module) -> None:
        """Fold ungated LoRA (W += s B A) or DoRA (W = m (W + s B A) / n) into the projections."""
        if any(layer.gate is not None for layer in self.layers):
            raise UserError(f"{self.merge_refusal(None)}")
        with torch.no_grad():
            for layer in self.layers:
                for target, linear in layer.linears.items():
                    linear.weight.copy_(layer.merged_weight(target).to(linear.weight.dtype))
        self.remove_hooks()
