"""Where the PELT submodules attach in each backbone family: attribute paths as data, one entry a family.

Paths are dotted attribute names. `layers` starts at the base model (`model.base_model`, e.g.
`model.bert`); `attention`, `ffn_norm` start at one layer; `projections` at the self-attention module.

    attention    the module whose forward computes q, k, v (B, heads, T, d_head) and calls
                 transformers' attention interface (prefix hooks here; LoRA gates read its input,
                 which is the layer's input)
    projections  the q/k/v Linear layers inside it (LoRA, DoRA and (IA)^3 targets)
    attn_norm    the LayerNorm that receives attention output + layer input (parallel adapter, attention)
    ffn_in       the FFN's first module: its input is the FFN sublayer's input (parallel adapter reads it)
    ffn_out      the FFN's output Linear: its input is the intermediate activation ((IA)^3 scales it)
    ffn_norm     the LayerNorm that receives FFN output + attention-block output (adapter hooks here)
    pooler       the pooler under the base model, or None when the head has its own
    classifier   name prefixes (in the *ForSequenceClassification model) of the classifier's parameters
    head_dense   name prefixes of a dense + tanh layer inside the head, which trains like a pooler
    attention_forward  a forward for `attention` that calls the attention interface, for a family whose
                 own does not (MPNet: pelt/mpnet.py); prefix-tuning installs it
    cannot_host  submodule name -> why this family cannot take it

A submodule names the fields it uses in `Part.needs`; `check_hosts` refuses a family that lacks one.
BitFit needs no entry: it takes every bias under the base model.
"""

from collections.abc import Callable
from dataclasses import dataclass, field

from torch import nn

from unipelt_cli.errors import UserError
from unipelt_cli.pelt import mpnet


@dataclass(frozen=True)
class Arch:
    layers: str
    attention: str
    projections: dict[str, str]
    ffn_norm: str
    pooler: str | None
    attn_norm: str | None = "attention.output.LayerNorm"
    ffn_in: str | None = "intermediate"
    ffn_out: str | None = "output.dense"
    classifier: tuple[str, ...] = ("classifier.",)
    head_dense: tuple[str, ...] = ()
    attention_forward: Callable | None = None
    cannot_host: dict[str, str] = field(default_factory=dict)


_BERT_QKV = {"query": "query", "key": "key", "value": "value"}
_ROBERTA_HEAD = {"classifier": ("classifier.out_proj.",), "head_dense": ("classifier.dense.",)}

ARCHS: dict[str, Arch] = {
    "bert": Arch("encoder.layer", "attention.self", _BERT_QKV, "output.LayerNorm", "pooler"),
    "roberta": Arch("encoder.layer", "attention.self", _BERT_QKV, "output.LayerNorm", "pooler", **_ROBERTA_HEAD),
    "electra": Arch("encoder.layer", "attention.self", _BERT_QKV, "output.LayerNorm", None, **_ROBERTA_HEAD),
    "distilbert": Arch(
        "transformer.layer",
        "attention",
        {"query": "q_lin", "key": "k_lin", "value": "v_lin"},
        "output_layer_norm",
        None,
        attn_norm="sa_layer_norm",
        ffn_in="ffn",
        ffn_out="ffn.lin2",
        head_dense=("pre_classifier.",),
    ),
    # MPNet: BERT's layout under other names; relative position bias in attention (see pelt/mpnet.py);
    # a RoBERTa-style head (<s> -> classifier.dense + tanh -> classifier.out_proj) and no base pooler.
    "mpnet": Arch(
        "encoder.layer",
        "attention.attn",
        {"query": "q", "key": "k", "value": "v"},
        "output.LayerNorm",
        None,
        attn_norm="attention.LayerNorm",
        attention_forward=mpnet.attention_forward,
        **_ROBERTA_HEAD,
    ),
    "deberta-v2": Arch(
        "encoder.layer",
        "attention.self",
        {"query": "query_proj", "key": "key_proj", "value": "value_proj"},
        "output.LayerNorm",
        None,
        classifier=("classifier.",),
        head_dense=("pooler.dense.",),
        cannot_host={
            "prefix": "its disentangled attention does not go through transformers' attention interface",
            "lora": "its query/key projections are also applied to the relative-position embeddings",
        },
    ),
}


def arch_for(model: nn.Module) -> Arch:
    model_type = getattr(model.config, "model_type", None)
    if model_type not in ARCHS:
        raise UserError(
            f"PELT does not know backbone type {model_type!r}: "
            f"use one of {', '.join(ARCHS)} (or add an entry to unipelt_cli/pelt/arch.py)"
        )
    return ARCHS[model_type]


# A model type missing from ARCHS can still be fine-tuned: its head is found with these names.
GENERIC_HEAD = Arch("", "", {}, "", "pooler", classifier=("classifier.",), head_dense=("classifier.dense.",))


def head_arch(model: nn.Module) -> Arch:
    """The table entry that names the head's parameters (any model type: fine-tuning needs no entry)."""
    return ARCHS.get(getattr(model.config, "model_type", None), GENERIC_HEAD)


def check_hosts(model: nn.Module, needs: dict[str, tuple[str, ...]]) -> None:
    """Raise UserError if the backbone cannot take one of the submodules in `needs` (name -> the
    Arch fields it uses)."""
    arch = arch_for(model)
    for name, fields in needs.items():
        missing = [f for f in fields if not getattr(arch, f)]
        reason = arch.cannot_host.get(name) or (f"its table entry has no {', '.join(missing)}" if missing else None)
        if reason:
            raise UserError(
                f"{model.config.model_type} cannot host {name}: {reason}; "
                f"disable {name} or use a bert/roberta/electra backbone"
            )


def path(module: nn.Module, dotted: str) -> nn.Module | None:
    for attr in dotted.split("."):
        module = getattr(module, attr, None)
        if module is None:
            return None
    return module


def layers(model: nn.Module, arch: Arch) -> list[nn.Module]:
    return list(path(model.base_model, arch.layers))


def pooler(model: nn.Module, arch: Arch) -> nn.Module | None:
    return path(model.base_model, arch.pooler) if arch.pooler else None


def first_input(args: tuple, kwargs: dict):
    """The hidden states a hooked module was called with: its first argument, however passed."""
    if args:
        return args[0]
    for name in ("hidden_states", "query", "input"):
        if name in kwargs:
            return kwargs[name]
    raise RuntimeError(f"cannot find the hidden states among the arguments {sorted(kwargs)}")
