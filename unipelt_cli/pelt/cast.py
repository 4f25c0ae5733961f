"""Round once under bf16 autocast what autocast would round at every use.

Autocast runs each Linear in bf16 by rounding its fp32 input at that call. A layer's self-attention
input x (fp32: it comes out of a LayerNorm, which autocast keeps in fp32) feeds the q, k and v
projections and, with PELT, LoRA's A matrices and the LoRA and prefix gates: up to 8 roundings of
the same (B, T, d) tensor a layer, and as many gradient casts back to fp32 in the backward.

    to_autocast(x) = x.to(autocast dtype)   when autocast is on for x's device and x is fp32; else x
    cast_attention_inputs(model): a forward pre-hook on each layer's self-attention, ahead of every
        other hook there, replaces its input x by to_autocast(x)

Every consumer rounds x the same way, so the forward computes the same numbers. The backward
differs by one rounding: the consumers' gradients are summed in bf16 before the one cast back,
not in fp32 after each (docs/PERFORMANCE.md has the quality check).
"""

import torch
from torch import nn

from unipelt_cli.pelt import arch as archmod


def to_autocast(x: torch.Tensor) -> torch.Tensor:
    """x in the autocast dtype when autocast is on for its device and x is fp32; else x itself."""
    device = x.device.type
    if x.dtype == torch.float32 and torch.amp.is_autocast_available(device) and torch.is_autocast_enabled(device):
        return x.to(torch.get_autocast_dtype(device))
    return x


def _cast_first_input(module: nn.Module, args: tuple, kwargs: dict):
    if args:
        return (to_autocast(args[0]), *args[1:]), kwargs
    if "hidden_states" in kwargs:
        return args, {**kwargs, "hidden_states": to_autocast(kwargs["hidden_states"])}
    return None


def cast_attention_inputs(model: nn.Module) -> int:
    """Cast each self-attention input once (see the module docstring). Returns how many modules got the
    hook: 0 for a backbone family missing from the architecture table."""
    arch = archmod.ARCHS.get(getattr(model.config, "model_type", None))
    if arch is None:
        return 0
    layers = archmod.layers(model, arch)
    for layer in layers:
        attention = archmod.path(layer, arch.attention)
        attention.register_forward_pre_hook(_cast_first_input, with_kwargs=True, prepend=True)
    return len(layers)
