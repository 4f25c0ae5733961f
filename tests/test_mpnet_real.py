"""The real all-mpnet-base-v2, where `unipelt fetch mpnet-base` has assembled it (skipped otherwise:
CI does not download 400 MB; the unit tests use a tiny random MPNet)."""

from __future__ import annotations

import json

import pytest

from unipelt_cli import fetch as fetchmod

MODEL = fetchmod.SPLIT_MODELS["mpnet-base"]
FOLDER = fetchmod.target_dir(MODEL)

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        not fetchmod.is_assembled(FOLDER, MODEL),
        reason=f"all-mpnet-base-v2 is not assembled at {FOLDER}: run `unipelt fetch mpnet-base` once",
    ),
]


def test_backbone_id_resolves_to_the_verified_cache(monkeypatch):
    from unipelt_cli.model import resolve_path

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert resolve_path("sentence-transformers/all-mpnet-base-v2") == str(FOLDER)
    marker = json.loads((FOLDER / fetchmod.MARKER).read_text())
    assert marker["sha256"] == MODEL.sha256
    assert (FOLDER / "model.safetensors").stat().st_size == 437_971_872


def test_real_mpnet_with_pelt_is_a_sentence_encoder(monkeypatch):
    """Loaded offline with every submodule attached: 109,488,002 backbone + head numbers (2 labels,
    before pooling drops the head's dense), and the mean-pooled states rank a paraphrase above an
    unrelated sentence, as the sentence encoder it is."""
    import torch

    from unipelt_cli.model import BackboneArgs, load_backbone, load_tokenizer
    from unipelt_cli.pelt import SUBMODULES, apply_pelt

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    model = load_backbone(BackboneArgs(MODEL.hub_id, num_labels=2, attn_implementation="eager")).eval()
    assert sum(p.numel() for p in model.parameters()) == 109_488_002
    tokenizer = load_tokenizer(MODEL.hub_id)
    batch = tokenizer(
        ["A man is playing a guitar.", "Someone plays the guitar.", "The stock market fell sharply today."],
        padding=True,
        return_tensors="pt",
    )
    with torch.no_grad():
        plain = model.mpnet(**batch).last_hidden_state
    apply_pelt(model, {name: {"enabled": True} for name in SUBMODULES})  # every submodule at its init
    with torch.no_grad():
        hidden = model.mpnet(**batch).last_hidden_state
        model(**batch)
    for states in (plain, hidden):
        mask = batch["attention_mask"].unsqueeze(-1).float()
        emb = torch.nn.functional.normalize((states * mask).sum(1) / mask.sum(1), dim=-1)
        assert emb[0] @ emb[1] > emb[0] @ emb[2] + 0.3
