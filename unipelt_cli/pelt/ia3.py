"""(IA)^3: learned vectors rescaling keys, values and the FFN activation, optionally gated (Liu et al. 2022).

Liu et al. NeurIPS 2022, "Few-Shot Parameter-Efficient Fine-Tuning is Better and Cheaper than
In-Context Learning", section 3.3.

    K = l_k * (W_k x + b_k)        V = l_v * (W_v x + b_v)        l_k, l_v: (d,)
    FFN: W_out (l_ff * act(W_in x + b_in)) + b_out                 l_ff: (d_ff,)
    every l starts at 1, so the model starts as the backbone          (BERT-base: 12 (768 + 768 + 3072) = 55,296)
    gated: l -> 1 + G(x) (l - 1), so G = 0 is the backbone and G = 1 is (IA)^3; one gate a layer,
           read from the layer's input x (the self-attention input), as LoRA's gates are

The key/value vectors scale the projection's whole output (bias included) and l_ff scales the FFN
output Linear's input, as PEFT's IA3 does. Ungated, all three fold into the weights (`merge`):
W_k <- diag(l_k) W_k, b_k <- l_k b_k (same for V), W_out <- W_out diag(l_ff).
"""

from dataclasses import dataclass, field
from functools import partial

import torch
from torch import nn

from unipelt_cli.errors import UserError
from unipelt_cli.pelt import arch as archmod
from unipelt_cli.pelt.gate import GATES, make_gate
from unipelt_cli.pelt.registry import Context, PerLayer, check_choice, register

TARGETS = ("key", "value", "ffn")


@dataclass
class IA3Options:
    enabled: bool = False  # rescale keys, values and the FFN intermediate activation
    gate: bool = True  # interpolate each vector with 1 by a gate: 1 + G (l - 1)
    gate_type: str = "sigmoid_mean"  # which registered gate
    targets: list[str] = field(default_factory=lambda: ["key", "value", "ffn"])  # any of key, value, ffn

    def __post_init__(self):
        check_choice("ia3.gate_type", self.gate_type, GATES)
        if not self.targets or len(set(self.targets)) != len(self.targets):
            raise UserError(f"ia3.targets must name each target once, got {list(self.targets)}: e.g. [key, value, ffn]")
        for target in self.targets:
            check_choice("ia3.targets entry", target, TARGETS)


class IA3Layer(nn.Module):
    """The vectors (and the gate) of one transformer layer."""

    def __init__(self, modules: dict[str, nn.Linear], options: IA3Options, dim: int, ctx: Context):
        super().__init__()
        self.linears = modules  # target -> the backbone Linear it scales (plain dict: not registered)
        self.scales = nn.ParameterDict()
        for target, linear in modules.items():
            width = linear.in_features if target == "ffn" else linear.out_features
            self.scales[target] = nn.Parameter(torch.ones(width))
        self.gate = make_gate(options.gate_type, dim, ctx) if options.gate else None
        self.ctx = ctx
        self.g: torch.Tensor | None = None  # (B, 1, 1) for the running layer call

    def vector(self, target: str) -> torch.Tensor:
        """l, or 1 + G (l - 1) under a gate: (width,) or (B, 1, width)."""
        scale = self.scales[target]
        return scale if self.gate is None else 1 + self.g * (scale - 1)

    def before_attention(self, attention: nn.Module, args: tuple, kwargs: dict) -> None:
        self.g = self.gate(archmod.first_input(args, kwargs), self.ctx.mask)

    def after_projection(self, target: str, linear: nn.Linear, args: tuple, output: torch.Tensor) -> torch.Tensor:
        """Forward hook on W_k / W_v: (B, T, d) -> l * output."""
        return output * self.vector(target).to(output.dtype)

    def before_ffn_out(self, linear: nn.Linear, args: tuple) -> tuple:
        """Forward pre-hook on the FFN output Linear: its input (B, T, d_ff) -> l_ff * input."""
        return (args[0] * self.vector("ffn").to(args[0].dtype), *args[1:])


@register
class IA3Set(PerLayer):
    name = "ia3"
    Options = IA3Options
    needs = ("layers", "attention", "projections", "ffn_out")

    @classmethod
    def attach(cls, model, arch, options: IA3Options, ctx: Context) -> "IA3Set":
        dim = model.config.hidden_size
        hooks, found = [], []
        for layer in archmod.layers(model, arch):
            attention = archmod.path(layer, arch.attention)
            modules = {
                t: archmod.path(layer, arch.ffn_out) if t == "ffn" else archmod.path(attention, arch.projections[t])
                for t in options.targets
            }
            ia3 = IA3Layer(modules, options, dim, ctx)
            for target, linear in modules.items():
                if target == "ffn":
                    hooks.append(linear.register_forward_pre_hook(ia3.before_ffn_out))
                else:
                    hooks.append(linear.register_forward_hook(partial(ia3.after_projection, target)))
            if ia3.gate is not None:
                hooks.append(attention.register_forward_pre_hook(ia3.before_attention, with_kwargs=True))
            found.append(ia3)
        part = cls(found)
        part.hooks = hooks
        return part

    @classmethod
    def merge_refusal(cls, options) -> str | None:
        if options is None or options.gate:
            return "gated (IA)^3 scales by an input-dependent amount (train with ia3.gate=false to export it)"
        return None

    def merge(self, model: nn.Module) -> None:
        """W_k <- diag(l_k) W_k, b_k <- l_k b_k (and V); W_out <- W_out diag(l_ff)."""
        if any(layer.gate is not None for layer in self.layers):
            raise UserError(self.merge_refusal(None))
        with torch.no_grad():
            for layer in self.layers:
                for target, linear in layer.linears.items():
                    scale = layer.scales[target].to(linear.weight.dtype)
                    if target == "ffn":
                        linear.weight.mul_(scale.unsqueeze(0))
                    else:
                        linear.weight.mul_(scale.unsqueeze(1))
                        if linear.bias is not None:
                            linear.bias.mul_(scale.to(linear.bias.dtype))
        self.remove_hooks()
