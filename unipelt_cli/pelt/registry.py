"""The submodule registry and the two small classes every submodule file uses.

A submodule is one file in this package that defines an `Options` dataclass and a `Part` subclass
decorated with `@register`; `conf/pelt/<name>.yaml` holds the Options defaults. The package imports
every file in it, and submodules of installed plugin packages arrive through the `unipelt.pelt`
entry point group (plugins.py), so nothing else needs to change to add one.

Everything the rest of unipelt needs from a submodule is on its Part: where it attaches (`attach`,
`needs`), its gates (`gates`), what it saves and how it is counted (`saved_state`, `before_save`,
`counts`), and whether it folds into the backbone's weights (`merge_refusal`, `merge`). Training,
export and the parameter accounting name no submodule.

    @register
    class AdapterSet(Part):
        name = "adapter"
        Options = AdapterOptions

        @classmethod
        def attach(cls, model, arch, options, ctx) -> "AdapterSet": ...

`apply_pelt` puts each attached Part at `model.pelt[name]`, so its parameters are named
`pelt.<name>.<...>` in the model and in `pelt_state_dict`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import torch
from torch import nn

from unipelt_cli.errors import UserError

SUBMODULES: dict[str, type[Part]] = {}
ORIGINS: dict[str, str] = {}  # name -> where it came from: "unipelt" or "plugin <dist> (<module>)"
RESERVED = ("gate", "gate_pooling")  # keys of the pelt config section that are not submodules


def register(cls: type[Part]) -> type[Part]:
    """Class decorator: make a Part subclass available under `cls.name`."""
    if cls.name in SUBMODULES:
        raise ValueError(f"PELT submodule {cls.name!r} is registered twice")
    if not cls.name.isidentifier() or cls.name in RESERVED:
        raise ValueError(f"PELT submodule name {cls.name!r} must be an identifier other than {RESERVED}")
    SUBMODULES[cls.name] = cls
    ORIGINS.setdefault(cls.name, "unipelt" if cls.__module__.startswith("unipelt_cli.") else cls.__module__)
    return cls


class Context:
    """Per-model state the hooks share: the padding mask of the forward pass that is running.

    `mask` is the (B, T) attention mask given to the backbone (1 = real token), or None when the
    caller gave none. `on_forward` holds callables run once at the start of every forward pass.
    `gate_options` holds each gate kind's options (`pelt.gate.<kind>`), for `gate.make_gate`.
    """

    def __init__(self, pooling: str, gate_options: dict | None = None):
        self.pooling = pooling
        self.gate_options = gate_options or {}
        self.mask: torch.Tensor | None = None
        self.on_forward: list[Callable[[], None]] = []


class Part(nn.Module):
    """Base of one submodule's container (`model.pelt[name]`).

    Subclasses set `name` and `Options` and implement `attach`. The defaults below suit a Part
    whose trained tensors are exactly its own parameters.
    """

    name: str = ""
    Options: type = object
    needs: tuple[str, ...] = ()  # the Arch fields (pelt/arch.py) it attaches through

    def __init__(self):
        super().__init__()
        self.hooks: list[torch.utils.hooks.RemovableHandle] = []

    @classmethod
    def attach(cls, model: nn.Module, arch, options, ctx: Context) -> Part:
        """Build the Part for `model`, register its hooks on the backbone, and return it."""
        raise NotImplementedError

    def gates(self) -> Iterator[tuple[int, str, nn.Module]]:
        """(layer index, stats key, gate) for every gate this Part owns."""
        return iter(())

    def saved_state(self) -> dict[str, torch.Tensor]:
        """The tensors `pelt_state_dict` keeps, keyed by their names in the model."""
        return {f"pelt.{self.name}.{n}": p.detach() for n, p in self.named_parameters()}

    def before_save(self) -> None:
        """Put the Part into the form it saves and loads (e.g. the prefix MLP -> fixed vectors).
        Called before saving and before loading saved tensors; idempotent."""

    def counts(self) -> dict[str, int]:
        """Parameter counts for `param_report`: trained parameters without gates ("params"), gates,
        and "stored": the numbers it keeps for inference without gates (differs from "params"
        when training uses another form, e.g. the prefix's MLP against its fixed vectors)."""
        gate_ids = {id(p) for _, _, g in self.gates() for p in g.parameters()}
        params = sum(p.numel() for p in self.parameters() if id(p) not in gate_ids)
        gate_params = sum(p.numel() for _, _, g in self.gates() for p in g.parameters())
        return {"params": params, "gate_params": gate_params, "stored": params}

    @classmethod
    def merge_refusal(cls, options) -> str | None:
        """Why a run with these options cannot be folded into the backbone's own weights (for
        `unipelt export`), or None when `merge` can. The default: it changes the computation."""
        return f"{cls.name} changes the computation itself, not just the backbone's weights"

    def merge(self, model: nn.Module) -> None:
        """Fold this Part into the backbone's weights (in place) and remove its hooks. Parts whose
        `merge_refusal` is None implement it."""
        raise UserError(f"{self.name} cannot be merged: {self.merge_refusal(None)}")

    def remove_hooks(self) -> None:
        for handle in self.hooks:
            handle.remove()
        self.hooks.clear()


class PerLayer(Part):
    """A Part that holds one module per transformer layer (`self.layers`), each with an optional
    `gate`, reported under the Part's name: the shape of most submodules."""

    def __init__(self, layers: list[nn.Module]):
        super().__init__()
        self.layers = nn.ModuleList(layers)

    def gates(self) -> Iterator[tuple[int, str, nn.Module]]:
        for i, layer in enumerate(self.layers):
            if getattr(layer, "gate", None) is not None:
                yield i, self.name, layer.gate


def check_choice(what: str, value, choices) -> None:
    """Raise UserError unless `value` is one of `choices` (for Options.__post_init__)."""
    if value not in choices:
        raise UserError(f"{what} must be one of {', '.join(map(str, choices))}, got {value!r}: pick one of those")


def check_positive(what: str, value) -> None:
    """Raise UserError unless `value` > 0 (for Options.__post_init__)."""
    if not value > 0:
        raise UserError(f"{what} must be > 0, got {value!r}: set a positive value")
