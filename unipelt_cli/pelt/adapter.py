"""Bottleneck adapter, Pfeiffer placement after the FFN, gated (UniPELT, Mao et al. ACL 2022; Pfeiffer et al. 2021).

    h  = FFN output before residual and LayerNorm      a = attention-block output
    LN = the layer's own pretrained output LayerNorm (frozen), used twice as in the original
    z   = LN(h + a)                                             (B, T, d)
    up  = W_up act(W_down z + b_down) + b_up                    d -> d / reduction_factor -> d
    out = LN(h + G_A(z) * up + a)                               G_A = 1 when ungated

How it attaches: the layer already calls LN(h + a). A forward pre-hook on that LayerNorm turns its
input s = h + a into s + G_A(z) * up(z) with z = LN(s), so the layer's own call returns `out`.
No backbone module is replaced. Init N(0, 0.02), zero biases; no dropout.
"""

from dataclasses import dataclass

import torch
from torch import nn

from unipelt_cli.errors import UserError
from unipelt_cli.pelt import arch as archmod
from unipelt_cli.pelt.gate import GATES, make_gate
from unipelt_cli.pelt.registry import Context, PerLayer, check_choice, check_positive, register

ACTIVATIONS = {"relu": torch.relu, "gelu": nn.functional.gelu, "tanh": torch.tanh, "silu": nn.functional.silu}


@dataclass
class AdapterOptions:
    enabled: bool = False  # add a bottleneck adapter after every layer's FFN
    gate: bool = True  # scale its output by G_A (the original code's default; the Adapter baseline sets false)
    gate_type: str = "sigmoid_mean"  # which registered gate
    reduction_factor: int = 16  # bottleneck size = hidden size // reduction_factor (768 -> 48)
    activation: str = "relu"  # between down- and up-projection: relu, gelu, tanh or silu

    def __post_init__(self):
        check_positive("adapter.reduction_factor", self.reduction_factor)
        check_choice("adapter.activation", self.activation, ACTIVATIONS)
        check_choice("adapter.gate_type", self.gate_type, GATES)


class Adapter(nn.Module):
    def __init__(self, dim: int, bottleneck: int, activation: str, gate: nn.Module | None, ctx: Context):
        super().__init__()
        self.down = nn.Linear(dim, bottleneck)
        self.up = nn.Linear(bottleneck, dim)
        for linear in (self.down, self.up):
            nn.init.normal_(linear.weight, std=0.02)
            nn.init.zeros_(linear.bias)
        self.activation = activation
        self.gate = gate
        self.ctx = ctx

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        """z: (B, T, d) -> gated up-projection (B, T, d)."""
        up = self.up(ACTIVATIONS[self.activation](self.down(z)))
        if self.gate is not None:
            up = self.gate(z, self.ctx.mask) * up  # (B, 1, 1) * (B, T, d)
        return up

    def before_norm(self, norm: nn.Module, args: tuple) -> tuple:
        """Forward pre-hook on the output LayerNorm: s = h + a  ->  s + G_A * up(LN(s))."""
        s = args[0]
        z = norm.forward(s)  # .forward, not norm(s): calling the module would re-enter this hook
        return (s + self(z), *args[1:])


@register
class AdapterSet(PerLayer):
    name = "adapter"
    Options = AdapterOptions
    needs = ("layers", "ffn_norm")

    @classmethod
    def attach(cls, model, arch, options: AdapterOptions, ctx: Context) -> "AdapterSet":
        dim = model.config.hidden_size
        bottleneck = dim // options.reduction_factor
        if bottleneck < 1:
            raise UserError(
                f"adapter.reduction_factor {options.reduction_factor} leaves no bottleneck at hidden size {dim}: "
                f"set it to at most {dim}"
            )
        adapters = []
        for _ in archmod.layers(model, arch):
            gate = make_gate(options.gate_type, dim, ctx) if options.gate else None
            adapters.append(Adapter(dim, bottleneck, options.activation, gate, ctx))
        part = cls(adapters)
        for layer, adapter in zip(archmod.layers(model, arch), adapters, strict=True):
            norm = archmod.path(layer, arch.ffn_norm)
            part.hooks.append(norm.register_forward_pre_hook(adapter.before_norm))
        return part
