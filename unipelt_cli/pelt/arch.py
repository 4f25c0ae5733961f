"""Where the PELT submodules attach in each backbone family: attribute paths as data, one entry a family.

Paths are dotted attribute names. `layers` starts at the base model (`model.base_model`, e.g.
`model.bert`); `attention`, `ffn_norm` start at one layer; `projections` at the self-attention module.

    attention    the module whose forward computes q, k, v (B, heads, T, d_head) and calls
                 transformers' attention interface (prefix hooks here; LoRA gates read its input)
    projections  the q/k/v Linear layers inside it (LoRA targets)
    ffn_norm     the LayerNorm that receives FFN output + attention-block output (adapter hooks here)
    pooler       the pooler under the base model, or None when the head has its own
    cannot_host  submodule name -> why this family cannot take it

BitFit needs no entry: it takes every bias under the base model.
"""

from dataclasses import dataclass, field

from torch import nn

from unipelt_cli.errors import UserError


@dataclass(frozen=True)
class Arch:
    layers: str
    attention: str
    projections: dict[str, str]
    ffn_norm: str
    pooler: str | None
    cannot_host: dict[str, str] = field(default_factory=dict)


_BERT_QKV = {"query": "query", "key": "key", "value": "value"}

ARCHS: dict[str, Arch] = {
    "bert": Arch("encoder.layer", "attention.self", _BERT_QKV, "output.LayerNorm", "pooler"),
    "roberta": Arch("encoder.layer", "attention.self", _BERT_QKV, "output.LayerNorm", "pooler"),
    "electra": Arch("encoder.layer", "attention.self", _BERT_QKV, "output.LayerNorm", None),
    "distilbert": Arch(
        "transformer.layer",
        "attention",
        {"query": "q_lin", "key": "k_lin", "value": "v_lin"},
        "output_layer_norm",
        None,
    ),
    "deberta-v2": Arch(
        "encoder.layer",
        "attention.self",
        {"query": "query_proj", "key": "key_proj", "value": "value_proj"},
        "output.LayerNorm",
        None,
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


def check_hosts(model: nn.Module, names: list[str]) -> None:
    """Raise UserError if the backbone cannot take one of the submodules `names`."""
    arch = arch_for(model)
    for name in names:
        if name in arch.cannot_host:
            raise UserError(
                f"{model.config.model_type} cannot host {name}: {arch.cannot_host[name]}; "
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
