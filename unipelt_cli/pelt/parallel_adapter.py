"""Parallel adapter and scaled parallel adapter beside a sublayer, optionally gated (He et al. ICLR 2022).

He et al., "Towards a Unified View of Parameter-Efficient Transfer Learning", section 3.2 and Table 1.

For a sublayer (attention or FFN) with input x and output h, both (B, T, d):

    h <- h + G(x) * s * W_up f(W_down x + b_down) + b_up           d -> bottleneck -> d, from the INPUT x
    s = 1: parallel adapter;  s = 4: scaled parallel adapter (He et al.);  learn_scale: s trains (init s)
    G(x) = 1 ungated; gated: the registered gate read from the sublayer input x, one per layer and placement
    W_down: kaiming-uniform (as nn.Linear), W_up = 0 and zero biases: the model starts as the backbone

Unlike the sequential (Pfeiffer) adapter in adapter.py, which reads the FFN *output*, this one runs
beside the sublayer. In a post-LN layer (BERT) "h +" means: added to the sublayer output before the
residual add and LayerNorm, i.e. LN(h + x) -> LN(h + x + G s PA(x)).

How it attaches, per layer and placement: a forward pre-hook keeps the sublayer input x (attention:
the self-attention module, whose input is the layer input; FFN: the FFN's first module), and a
forward pre-hook on that sublayer's output LayerNorm adds G s PA(x) to its input.
"""

from dataclasses import dataclass, field

import torch
from torch import nn

from unipelt_cli.errors import UserError
from unipelt_cli.pelt import arch as archmod
from unipelt_cli.pelt.adapter import ACTIVATIONS
from unipelt_cli.pelt.gate import GATES, make_gate
from unipelt_cli.pelt.registry import Context, Part, check_choice, check_positive, register

PLACEMENTS = {"attention": ("attention", "attn_norm"), "ffn": ("ffn_in", "ffn_norm")}  # (input at, add at)


@dataclass
class ParallelAdapterOptions:
    enabled: bool = False  # add a parallel adapter beside the chosen sublayers
    gate: bool = True  # scale its output by a gate read from the sublayer input
    gate_type: str = "sigmoid_mean"  # which registered gate
    placement: list[str] = field(default_factory=lambda: ["ffn"])  # attention and/or ffn
    bottleneck: int = 512  # hidden width of the adapter (He et al.: 512 for the FFN)
    scale: float = 1.0  # s: 1 = parallel adapter, 4 = scaled parallel adapter
    learn_scale: bool = False  # train s (one scalar per adapter), starting from `scale`
    activation: str = "relu"  # relu, gelu, tanh or silu

    def __post_init__(self):
        check_positive("parallel_adapter.bottleneck", self.bottleneck)
        check_positive("parallel_adapter.scale", self.scale)
        check_choice("parallel_adapter.activation", self.activation, ACTIVATIONS)
        check_choice("parallel_adapter.gate_type", self.gate_type, GATES)
        if not self.placement or len(set(self.placement)) != len(self.placement):
            raise UserError(
                f"parallel_adapter.placement must name each sublayer once, got {list(self.placement)}: e.g. [ffn]"
            )
        for where in self.placement:
            check_choice("parallel_adapter.placement entry", where, PLACEMENTS)


class ParallelAdapter(nn.Module):
    def __init__(self, dim: int, options: ParallelAdapterOptions, ctx: Context):
        super().__init__()
        self.down = nn.Linear(dim, options.bottleneck)
        self.up = nn.Linear(options.bottleneck, dim)
        nn.init.zeros_(self.down.bias)
        nn.init.zeros_(self.up.weight)
        nn.init.zeros_(self.up.bias)
        if options.learn_scale:
            self.scale = nn.Parameter(torch.tensor(float(options.scale)))
        else:
            self.register_buffer("scale", torch.tensor(float(options.scale)), persistent=False)
        self.activation = options.activation
        self.gate = make_gate(options.gate_type, dim, ctx) if options.gate else None
        self.ctx = ctx
        self.x: torch.Tensor | None = None  # the sublayer input of the running forward pass

    def keep_input(self, module: nn.Module, args: tuple, kwargs: dict) -> None:
        self.x = archmod.first_input(args, kwargs)  # (B, T, d)

    def before_norm(self, norm: nn.Module, args: tuple) -> tuple:
        """Forward pre-hook on the sublayer's output LayerNorm: s = h + x  ->  s + G(x) s PA(x)."""
        x, self.x = self.x, None
        if x is None:
            raise RuntimeError("parallel adapter: the sublayer input was not captured before its LayerNorm")
        out = self.up(ACTIVATIONS[self.activation](self.down(x))) * self.scale.to(x.dtype)  # (B, T, d)
        if self.gate is not None:
            out = self.gate(x, self.ctx.mask) * out  # (B, 1, 1) * (B, T, d)
        return (args[0] + out, *args[1:])


@register
class ParallelAdapterSet(Part):
    name = "parallel_adapter"
    Options = ParallelAdapterOptions
    needs = ("layers", "attention", "attn_norm", "ffn_in", "ffn_norm")

    def __init__(self, adapters: dict[str, list[ParallelAdapter]]):
        super().__init__()
        self.places = nn.ModuleDict({where: nn.ModuleList(found) for where, found in adapters.items()})

    @classmethod
    def attach(cls, model, arch, options: ParallelAdapterOptions, ctx: Context) -> "ParallelAdapterSet":
        dim = model.config.hidden_size
        adapters, hooks = {}, []
        for where in options.placement:
            read_at, add_at = (getattr(arch, f) for f in PLACEMENTS[where])
            adapters[where] = []
            for layer in archmod.layers(model, arch):
                adapter = ParallelAdapter(dim, options, ctx)
                reader = archmod.path(layer, read_at)
                hooks.append(reader.register_forward_pre_hook(adapter.keep_input, with_kwargs=True))
                hooks.append(archmod.path(layer, add_at).register_forward_pre_hook(adapter.before_norm))
                adapters[where].append(adapter)
        part = cls(adapters)
        part.hooks = hooks
        return part

    def gates(self):
        for where, found in self.places.items():
            for i, adapter in enumerate(found):
                if adapter.gate is not None:
                    yield i, f"parallel_adapter_{where}", adapter.gate
