"""Attach PELT submodules to a Hugging Face sequence classifier, and save, load and inspect them.

After `apply_pelt(model, options)` the model is called exactly as before; `model.pelt` holds the
attached Parts by name. Every backbone parameter is frozen except the pooler's (the caller decides
about the pooler and the head); only the submodules' parameters and, with BitFit, the backbone's
biases train.
"""

from collections.abc import Mapping

from torch import nn

from unipelt_cli.errors import UserError
from unipelt_cli.pelt.arch import arch_for, check_hosts, pooler
from unipelt_cli.pelt.gate import GATE_POOLING, gate_kind_options
from unipelt_cli.pelt.registry import SUBMODULES, Context


class PeltModules(nn.ModuleDict):
    """`model.pelt`: submodule name -> Part, and the Context their hooks share."""

    def __init__(self, ctx: Context):
        super().__init__()
        self.ctx = ctx

    def before_forward(self, base_model: nn.Module, args: tuple, kwargs: dict) -> None:
        """Forward pre-hook on the base model: keep its (B, T) padding mask for the gates."""
        mask = kwargs.get("attention_mask", args[1] if len(args) > 1 else None)
        if mask is not None and mask.dim() != 2 and self.ctx.pooling == "masked":
            raise UserError(
                f"masked gate pooling needs a (batch, tokens) attention mask, got shape {tuple(mask.shape)}: "
                "pass a 2D mask or use gate pooling 'all'"
            )
        self.ctx.mask = mask
        for start in self.ctx.on_forward:
            start()


def _chosen(options: dict) -> list[tuple[str, object]]:
    """The enabled (name, Options) pairs, in registry order; mappings are turned into Options."""
    chosen = []
    for name, opts in options.items():
        if name not in SUBMODULES:
            raise UserError(f"unknown PELT submodule {name!r}: use one of {', '.join(SUBMODULES)}")
        cls = SUBMODULES[name].Options
        if isinstance(opts, Mapping):
            try:
                opts = cls(**dict(opts))
            except TypeError as e:
                raise UserError(f"bad options for {name}: {e}: see conf/pelt/{name}.yaml for the keys") from None
        if not isinstance(opts, cls):
            raise UserError(
                f"options for {name} must be {cls.__name__}, got {type(opts).__name__}: pass {cls.__name__}"
            )
        if opts.enabled:
            chosen.append((name, opts))
    order = list(SUBMODULES)
    return sorted(chosen, key=lambda item: order.index(item[0]))


def apply_pelt(model: nn.Module, options: dict, gate_pooling: str = "masked", gate_options: dict | None = None) -> None:
    """Freeze the backbone (except the pooler) and attach the enabled submodules, in place.
    gate_options: {gate kind: its Options (or a mapping)} for gate kinds that have options."""
    if gate_pooling not in GATE_POOLING:
        raise UserError(f"gate pooling must be one of {', '.join(GATE_POOLING)}, got {gate_pooling!r}: pick one")
    if hasattr(model, "pelt"):
        raise UserError("PELT is already applied to this model: build a fresh model to apply it again")
    arch = arch_for(model)
    chosen = _chosen(options)
    check_hosts(model, {name: SUBMODULES[name].needs for name, _ in chosen})

    pooler_module = pooler(model, arch)
    keep = {id(p) for p in pooler_module.parameters()} if pooler_module is not None else set()
    for p in model.base_model.parameters():
        if id(p) not in keep:
            p.requires_grad_(False)

    root = PeltModules(Context(gate_pooling, gate_kind_options(gate_options or {})))
    model.add_module("pelt", root)
    reference = next(model.base_model.parameters())
    for name, opts in chosen:
        part = SUBMODULES[name].attach(model, arch, opts, root.ctx)
        root[name] = part.to(device=reference.device, dtype=reference.dtype)
    root.train(model.training)  # new modules start in training mode; follow the model's mode
    model.base_model.register_forward_pre_hook(root.before_forward, with_kwargs=True)


def _root(model: nn.Module) -> PeltModules:
    if not isinstance(getattr(model, "pelt", None), PeltModules):
        raise UserError("this model has no PELT submodules: call apply_pelt(model, options) first")
    return model.pelt


def merge_refusal(options: dict) -> str | None:
    """Why the enabled submodules in `options` cannot all be folded into the backbone, or None."""
    reasons = [SUBMODULES[name].merge_refusal(opts) for name, opts in _chosen(options)]
    return "; ".join(r for r in reasons if r) or None


def mergeable() -> list[str]:
    """The submodules that fold into the backbone's weights when they are not gated."""
    names = []
    for name, part in SUBMODULES.items():
        fields = {f for f in getattr(part.Options, "__dataclass_fields__", {})}
        options = part.Options(enabled=True, **({"gate": False} if "gate" in fields else {}))
        if part.merge_refusal(options) is None:
            names.append(name)
    return names


def merge(model: nn.Module) -> None:
    """Fold every attached submodule into the backbone's weights and remove it (see Part.merge)."""
    root = _root(model)
    for name in list(root):
        root[name].merge(model)
        del root[name]


def param_report(model: nn.Module) -> dict:
    """{submodule: {"params", "gate_params", "stored"}, "gates": all gate parameters}."""
    report = {name: part.counts() for name, part in _root(model).items()}
    report["gates"] = sum(counts["gate_params"] for counts in report.values())
    return report


def _live_state(model: nn.Module) -> dict:
    """Like pelt_state_dict, but the tensors share storage with the model's."""
    state = {}
    for part in _root(model).values():
        state.update(part.saved_state())
    return state


def pelt_state_dict(model: nn.Module) -> dict:
    """Copies of the trained PELT tensors only, keyed by model name: `pelt.*` (prefix as fixed
    vectors) and BitFit biases. Copies, so a best-so-far state kept in memory stays put."""
    return {key: tensor.detach().clone() for key, tensor in _live_state(model).items()}


def load_pelt_state_dict(model: nn.Module, state: dict) -> None:
    """Load `pelt_state_dict` output into a model built with the same options. Strict on keys and shapes."""
    root = _root(model)
    for part in root.values():
        part.before_save()
    targets = _live_state(model)
    missing, unexpected = sorted(targets.keys() - state.keys()), sorted(state.keys() - targets.keys())
    if missing or unexpected:
        raise UserError(
            f"PELT weights do not match this model (missing {missing[:3]}, unexpected {unexpected[:3]}): "
            "build the model with the options the weights were trained with"
        )
    for key, target in targets.items():
        if target.shape != state[key].shape:
            raise UserError(
                f"PELT weight {key} has shape {tuple(state[key].shape)}, the model expects {tuple(target.shape)}: "
                "build the model with the options the weights were trained with"
            )
    for key, target in targets.items():
        target.copy_(state[key])


def before_save(model: nn.Module) -> None:
    """Put every submodule into the form it saves (the prefix MLP becomes fixed vectors)."""
    for part in _root(model).values():
        part.before_save()


def iter_gates(model: nn.Module) -> list[tuple[int, str, nn.Module]]:
    """(layer, key, gate) for every gate; keys: adapter, prefix, lora_q / lora_v (or lora when shared)."""
    return [gate for part in _root(model).values() for gate in part.gates()]


def collect_gate_stats(model: nn.Module, on: bool = True) -> None:
    """Switch gate statistics on or off (they record in eval mode only)."""
    for _, _, gate in iter_gates(model):
        gate.collecting = on


def reset_gate_stats(model: nn.Module) -> None:
    for _, _, gate in iter_gates(model):
        gate.reset_stats()


def gate_stats(model: nn.Module) -> dict[int, dict[str, dict]]:
    """{layer: {key: {"mean", "std", "n"}}} over the per-example gate values recorded so far."""
    stats: dict[int, dict[str, dict]] = {}
    for layer, key, gate in iter_gates(model):
        stats.setdefault(layer, {})[key] = gate.stats()
    return stats
