"""Prefix-tuning in encoder self-attention, reparameterised and gated (UniPELT; Li & Liang 2021).

    E     = Embedding(L, d)                                   L = 10 prefix positions
    P_all = Linear(m -> 2 n d)(tanh(Linear(d -> m)(E)))       one MLP for all n layers, m = 512
            viewed as (n, 2, L, d): layer i, keys (0) / values (1)
    layer i:  P_K, P_V = P_all[i], each split into heads       (B, heads, L, d_head)
              G_P = G(x)                                      x = the self-attention input; one gate
              K' = concat(G_P P_K, K),  V' = concat(G_P P_V, V)   along the key axis: (B, heads, L + T, d_head)
              the mask gets L always-visible key columns in front

`fix()` runs the MLP once and keeps its output as the (n, 2, L, d) parameter `vectors`, the form
`pelt_state_dict` saves (BERT-base: 184,320 numbers, against 9,857,024 in the MLP).
Init N(0, 0.02), zero biases, as transformers initialises the backbone's own Linear/Embedding.

How it attaches (not through past_key_values, which cannot carry a per-example gate):
  - a family whose attention forward does not call the interface names one that does in the
    table (`Arch.attention_forward`; MPNet, whose prefix columns get relative position bias 0:
    pelt/mpnet.py), and it becomes each self-attention module's forward.
  - each self-attention module's `config` is replaced by a RoutedConfig that names the attention
    function "unipelt_prefix" (registered in transformers' AttentionInterface) and forwards every
    other attribute to the model's config. The model's config still says eager or sdpa, so
    transformers builds that implementation's mask.
  - a forward pre-hook on the self-attention module computes this layer's gated P_K, P_V from its
    input x; "unipelt_prefix" prepends them to K, V, extends the mask and runs the model's own
    eager or SDPA function.
"""

import sys
from dataclasses import dataclass
from functools import partial
from types import MethodType

import torch
from torch import nn

from unipelt_cli.errors import UserError
from unipelt_cli.pelt import arch as archmod
from unipelt_cli.pelt import mpnet
from unipelt_cli.pelt.gate import GATES, make_gate
from unipelt_cli.pelt.registry import Context, Part, check_choice, check_positive, register

PREFIX_ATTENTION = "unipelt_prefix"
INNER_ATTENTION = ("eager", "sdpa")


@dataclass
class PrefixOptions:
    enabled: bool = False  # prepend trained key/value vectors in every layer's self-attention
    gate: bool = True  # scale them by G_P (the original code's default; the Prefix baseline sets false)
    gate_type: str = "sigmoid_mean"  # which registered gate
    length: int = 10  # prefix positions L
    mid_dim: int = 512  # hidden width of the reparameterisation MLP

    def __post_init__(self):
        check_positive("prefix.length", self.length)
        check_positive("prefix.mid_dim", self.mid_dim)
        check_choice("prefix.gate_type", self.gate_type, GATES)


def extend_mask(mask: torch.Tensor | None, length: int) -> torch.Tensor | None:
    """Prepend `length` always-visible key columns to a mask (..., T_q, T_k) of any form transformers
    builds: None (nothing masked) stays None, bool (True = attend) gets True, float (additive) gets 0."""
    if mask is None:
        return None
    shape = (*mask.shape[:-1], length)
    pad = mask.new_ones(shape) if mask.dtype == torch.bool else mask.new_zeros(shape)
    return torch.cat([pad, mask], dim=-1)  # (..., T_q, L + T_k)


def inner_attention(module: nn.Module, name: str):
    """The model's own attention function for implementation `name` (eager or sdpa)."""
    if name == "eager":  # MPNet's module defines none: its routed forward (pelt/mpnet.py) uses BERT's
        return getattr(sys.modules[type(module).__module__], "eager_attention_forward", mpnet.eager_attention_forward)
    if name == "sdpa":
        from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS

        return ALL_ATTENTION_FUNCTIONS["sdpa"]
    raise UserError(f"prefix-tuning runs on eager or sdpa attention, not {name!r}: load the model with sdpa")


def prefix_attention(module, query, key, value, attention_mask, **kwargs):
    """query: (B, heads, T, d_head); key, value: (B, heads, T, d_head); returns what the inner function does."""
    route = module.config
    prefix_key, prefix_value = route.prefix.take(route.layer)  # (B, heads, L, d_head) each
    key = torch.cat([prefix_key.to(key.dtype), key], dim=2)  # (B, heads, L + T, d_head)
    value = torch.cat([prefix_value.to(value.dtype), value], dim=2)
    attention_mask = extend_mask(attention_mask, prefix_key.shape[2])
    inner = inner_attention(module, route.base._attn_implementation)
    return inner(module, query, key, value, attention_mask, **kwargs)


class RoutedConfig:
    """Stands in for a self-attention module's `config`: names the prefix attention function and
    forwards every other attribute to the model's config `base`."""

    _attn_implementation = PREFIX_ATTENTION

    def __init__(self, base, prefix: "PrefixSet", layer: int):
        self.base = base
        self.prefix = prefix
        self.layer = layer

    def __getattr__(self, name):  # only reached for names not set above
        base = self.__dict__.get("base")  # (absent while copy/pickle rebuilds the object)
        if base is None:
            raise AttributeError(name)
        return getattr(base, name)


@register
class PrefixSet(Part):
    name = "prefix"
    Options = PrefixOptions
    needs = ("layers", "attention")

    def __init__(self, n_layers: int, dim: int, heads: int, options: PrefixOptions, gates, ctx: Context):
        super().__init__()
        self.vector_shape = (n_layers, 2, options.length, dim)
        self.heads = heads
        self.embedding = nn.Embedding(options.length, dim)
        self.mlp = nn.Sequential(
            nn.Linear(dim, options.mid_dim), nn.Tanh(), nn.Linear(options.mid_dim, 2 * n_layers * dim)
        )
        for module in (self.embedding, self.mlp[0], self.mlp[2]):
            nn.init.normal_(module.weight, std=0.02)
            if getattr(module, "bias", None) is not None:
                nn.init.zeros_(module.bias)
        self.vectors: nn.Parameter | None = None  # set by fix()
        self.layer_gates = nn.ModuleList(gates) if gates else None
        self.ctx = ctx
        self.current: torch.Tensor | None = None  # (n, 2, L, d) for the forward pass that is running
        self.pending: list = [None] * n_layers  # layer i: (P_K, P_V) from the pre-hook to the attention

    @classmethod
    def attach(cls, model, arch, options: PrefixOptions, ctx: Context) -> "PrefixSet":
        implementation = model.config._attn_implementation
        if implementation not in INNER_ATTENTION:
            raise UserError(
                f"prefix-tuning runs on eager or sdpa attention, not {implementation!r}: load the model with sdpa"
            )
        from transformers import AttentionInterface  # here, not at import: the config path needs no transformers

        AttentionInterface.register(PREFIX_ATTENTION, prefix_attention)
        layers = archmod.layers(model, arch)
        dim = model.config.hidden_size
        gates = [make_gate(options.gate_type, dim, ctx) for _ in layers] if options.gate else None
        part = cls(len(layers), dim, model.config.num_attention_heads, options, gates, ctx)
        ctx.on_forward.append(part.begin)
        for i, layer in enumerate(layers):
            attention = archmod.path(layer, arch.attention)
            if arch.attention_forward is not None:  # its own forward bypasses the attention interface
                attention.forward = MethodType(arch.attention_forward, attention)
            attention.config = RoutedConfig(getattr(attention, "config", model.config), part, i)
            hook = attention.register_forward_pre_hook(partial(part.before_attention, i), with_kwargs=True)
            part.hooks.append(hook)
        return part

    def all_vectors(self) -> torch.Tensor:
        """P_all: (n_layers, 2, L, d), from the MLP or the fixed vectors."""
        if self.vectors is not None:
            return self.vectors
        n_layers, _, length, dim = self.vector_shape
        p = self.mlp(self.embedding.weight)  # (L, 2 n d)
        return p.view(length, n_layers, 2, dim).permute(1, 2, 0, 3)

    def fix(self) -> None:
        """Replace the MLP by its output, kept as the trainable parameter `vectors`."""
        if self.vectors is not None:
            return
        with torch.no_grad():
            vectors = self.all_vectors().contiguous()
        del self.embedding, self.mlp
        self.vectors = nn.Parameter(vectors)
        self.current = None

    def begin(self) -> None:
        self.current = self.all_vectors()

    def before_attention(self, i: int, attention: nn.Module, args: tuple, kwargs: dict) -> None:
        """Forward pre-hook on layer i's self-attention: compute its gated prefix keys and values."""
        x = archmod.first_input(args, kwargs)  # (B, T, d)
        batch = x.shape[0]
        _, _, length, dim = self.vector_shape
        kv = self.current[i].reshape(2, length, self.heads, dim // self.heads).transpose(1, 2)  # (2, heads, L, d_head)
        kv = kv.unsqueeze(1).expand(2, batch, *kv.shape[1:])  # (2, B, heads, L, d_head)
        if self.layer_gates is not None:
            g = self.layer_gates[i](x, self.ctx.mask)  # (B, 1, 1)
            kv = kv * g.view(1, batch, 1, 1, 1)
        self.pending[i] = (kv[0], kv[1])

    def take(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        kv, self.pending[i] = self.pending[i], None
        if kv is None:
            raise RuntimeError(f"prefix keys for layer {i} are missing: the self-attention pre-hook did not run")
        return kv

    def gates(self):
        for i, gate in enumerate(self.layer_gates or ()):
            yield i, "prefix", gate

    def saved_state(self) -> dict[str, torch.Tensor]:
        mlp_keys = ("pelt.prefix.embedding.", "pelt.prefix.mlp.")
        state = {k: v for k, v in super().saved_state().items() if not k.startswith(mlp_keys)}
        if self.vectors is None:
            with torch.no_grad():
                state["pelt.prefix.vectors"] = self.all_vectors().contiguous()
        return state

    def before_save(self) -> None:
        self.fix()

    def counts(self) -> dict[str, int]:
        n_layers, two, length, dim = self.vector_shape
        return {**super().counts(), "stored": n_layers * two * length * dim}
