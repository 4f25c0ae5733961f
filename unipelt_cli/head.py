"""How the classification head reads the encoder: the choice every run records (`head.pooling`).

    pooler  [CLS] -> the backbone's pooler (dense + tanh) -> dropout -> classifier   (HF default)
    cls     [CLS] hidden state -> dropout -> classifier                               (pooler dropped)
    mean    mean of the real tokens' hidden states -> dropout -> classifier           (pooler dropped)

all-MiniLM-L6-v2 was trained as a sentence encoder with mean pooling, and its pooler weights were
never trained (near zero), which is why the choice matters for PELT methods, where the backbone
stays frozen. `cls` and `mean` replace the BERT-family `pooler` attribute of the base model.

A RoBERTa-style head (RoBERTa, ELECTRA, MPNet: the base model has no pooler; the head module
`classifier` reads <s> -> dense -> tanh -> out_proj) reads the same three ways: `pooler` is the head
as built, `cls` and `mean` replace its dense + tanh by the token pooling (-> dropout -> out_proj), so
the dense layer plays the pooler's part in every family. For MPNet (all-mpnet-base-v2, trained as a
sentence encoder on the masked mean of its token states) the default `mean` is that sentence
embedding under a linear classifier; its dense layer would be freshly initialised anyway.
"""

from __future__ import annotations

import torch
from torch import nn

from unipelt_cli.errors import UserError

POOLINGS = ("pooler", "cls", "mean")


class TokenPooling(nn.Module):
    """Stands in for a BERT pooler: (B, T, d) hidden states -> (B, d)."""

    def __init__(self, mode: str):
        super().__init__()
        self.mode = mode
        self.mask: torch.Tensor | None = None  # (B, T) padding mask of the running forward pass

    def remember_mask(self, module: nn.Module, args: tuple, kwargs: dict) -> None:
        self.mask = kwargs.get("attention_mask", args[1] if len(args) > 1 else None)

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        if self.mode == "cls" or self.mask is None:
            return hidden[:, 0] if self.mode == "cls" else hidden.mean(dim=1)
        mask = self.mask.to(hidden.dtype).unsqueeze(-1)  # (B, T, 1)
        return (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1.0)


class PooledHead(nn.Module):
    """Stands in for a RoBERTa-style head: (B, T, d) -> pooling -> dropout -> out_proj (the head's own)."""

    def __init__(self, pooling: TokenPooling, dropout: nn.Module, out_proj: nn.Linear):
        super().__init__()
        self.pooling = pooling
        self.dropout = dropout
        self.out_proj = out_proj  # same name as in the head: saved weights keep `classifier.out_proj.*`

    def forward(self, features: torch.Tensor, **kwargs) -> torch.Tensor:
        return self.out_proj(self.dropout(self.pooling(features)))


def set_pooling(model: nn.Module, mode: str) -> None:
    """Replace the pooler for `cls`/`mean`; `pooler` leaves the model as Hugging Face built it."""
    if mode not in POOLINGS:
        raise UserError(f"head.pooling={mode} is not allowed: choose one of {', '.join(POOLINGS)}")
    if mode == "pooler":
        return
    base = model.base_model
    head = getattr(model, "classifier", None)
    pooling = TokenPooling(mode)
    if getattr(base, "pooler", None) is not None:
        base.pooler = pooling
    elif all(hasattr(head, name) for name in ("dense", "dropout", "out_proj")):  # RoBERTa-style head
        model.classifier = PooledHead(pooling, head.dropout, head.out_proj)
    else:
        raise UserError(
            f"head.pooling={mode} needs a base model with a pooler (BERT family) or a RoBERTa-style head "
            f"(dense + out_proj); {type(model).__name__} has neither: use head.pooling=pooler"
        )
    base.register_forward_pre_hook(pooling.remember_mask, with_kwargs=True)
