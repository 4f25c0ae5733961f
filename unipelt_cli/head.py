"""How the classification head reads the encoder: the choice every run records (`head.pooling`).

    pooler  [CLS] -> the backbone's pooler (dense + tanh) -> dropout -> classifier   (HF default)
    cls     [CLS] hidden state -> dropout -> classifier                               (pooler dropped)
    mean    mean of the real tokens' hidden states -> dropout -> classifier           (pooler dropped)

all-MiniLM-L6-v2 was trained as a sentence encoder with mean pooling, and its pooler weights were
never trained (near zero), which is why the choice matters for PELT methods, where the backbone
stays frozen. `cls` and `mean` replace the BERT-family `pooler` attribute of the base model.
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


def set_pooling(model: nn.Module, mode: str) -> None:
    """Replace the pooler for `cls`/`mean`; `pooler` leaves the model as Hugging Face built it."""
    if mode not in POOLINGS:
        raise UserError(f"head.pooling={mode} is not allowed: choose one of {', '.join(POOLINGS)}")
    if mode == "pooler":
        return
    base = model.base_model
    if getattr(base, "pooler", None) is None:
        raise UserError(
            f"head.pooling={mode} needs a backbone whose base model has a pooler (BERT family); "
            f"{type(model).__name__} has none: use head.pooling=pooler"
        )
    pooling = TokenPooling(mode)
    base.pooler = pooling
    base.register_forward_pre_hook(pooling.remember_mask, with_kwargs=True)
