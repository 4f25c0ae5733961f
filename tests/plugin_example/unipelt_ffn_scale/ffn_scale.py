"""FFN output scaling: a learned vector rescaling each layer's FFN output, optionally gated.

    h = W_out a + b_out          the FFN output Linear, before dropout, residual and LayerNorm
    h <- l * h                   l: (d,), init 1, so the model starts as the backbone
    gated: l -> 1 + G(x) (l - 1), G read from the FFN's input x (one gate a layer)

(IA)^3 rescales the FFN's *inner* activation; this rescales its output, one vector a layer.
"""

from dataclasses import dataclass

import torch
from torch import nn

from unipelt_cli.pelt import arch as archmod
from unipelt_cli.pelt.gate import GATES, make_gate
from unipelt_cli.pelt.registry import Context, PerLayer, check_choice, register


@dataclass
class FFNScaleOptions:
    enabled: bool = False  # rescale every layer's FFN output
    gate: bool = False  # interpolate l with 1 by a gate read from the FFN input
    gate_type: str = "sigmoid_mean"  # which registered gate

    def __post_init__(self):
        check_choice("ffn_scale.gate_type", self.gate_type, GATES)


class FFNScale(nn.Module):
    def __init__(self, dim: int, options: FFNScaleOptions, ctx: Context):
        super().__init__()
        self.scale = nn.Parameter(torch.ones(dim))
        self.gate = make_gate(options.gate_type, dim, ctx) if options.gate else None
        self.ctx = ctx
        self.g = None

    def keep_gate(self, module: nn.Module, args: tuple, kwargs: dict) -> None:
        self.g = self.gate(archmod.first_input(args, kwargs), self.ctx.mask)  # (B, 1, 1)

    def after_ffn_out(self, linear: nn.Module, args: tuple, output: torch.Tensor) -> torch.Tensor:
        scale = self.scale if self.gate is None else 1 + self.g * (self.scale - 1)
        return output * scale.to(output.dtype)  # (B, T, d)


@register
class FFNScaleSet(PerLayer):  # one FFNScale a layer; its gates are reported as "ffn_scale"
    name = "ffn_scale"
    Options = FFNScaleOptions
    needs = ("layers", "ffn_in", "ffn_out")

    @classmethod
    def attach(cls, model, arch, options: FFNScaleOptions, ctx: Context) -> "FFNScaleSet":
        found, hooks = [], []
        for layer in archmod.layers(model, arch):
            scale = FFNScale(model.config.hidden_size, options, ctx)
            hooks.append(archmod.path(layer, arch.ffn_out).register_forward_hook(scale.after_ffn_out))
            if scale.gate is not None:
                reader = archmod.path(layer, arch.ffn_in)
                hooks.append(reader.register_forward_pre_hook(scale.keep_gate, with_kwargs=True))
            found.append(scale)
        part = cls(found)
        part.hooks = hooks
        return part
