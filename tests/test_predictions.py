"""predictions/<split>.jsonl: one line per example of the selected checkpoint, reproduced by `unipelt eval`."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
from conftest import tiny_overrides
from typer.testing import CliRunner

from unipelt_cli.cli import app
from unipelt_cli.metrics import compute_metrics

MNLI_LABELS = ["entailment", "neutral", "contradiction"]


def train(tmp_path, backbone, glue, *extra):
    out = tmp_path / "out"
    args = ["train", "--quiet", "--outputs", str(out), *tiny_overrides(backbone, glue, *extra)]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    (run,) = (out / "runs").iterdir()
    return run, json.loads((run / "result.json").read_text())


def read(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_mnli_run_writes_dev_test_and_mismatched_predictions_that_eval_reproduces(tmp_path, tiny_backbone, tiny_glue):
    run, result = train(tmp_path, tiny_backbone, tiny_glue, "task=mnli", "method=lora")
    assert sorted(p.name for p in (run / "predictions").iterdir()) == [
        "dev.jsonl",
        "test.jsonl",
        "test_mismatched.jsonl",
    ]
    with open(tiny_glue / "MNLI" / "train.tsv", newline="") as fh:
        train_labels = [MNLI_LABELS.index(r["gold_label"]) for r in csv.DictReader(fh, delimiter="\t")]
    dev = read(run / "predictions" / "dev.jsonl")
    assert len(dev) == result["data"]["dev_size"] == 24
    assert len({r["idx"] for r in dev}) == 24 and all(r["label"] == train_labels[r["idx"]] for r in dev)
    for split, rows in (("dev", dev), ("test", read(run / "predictions" / "test.jsonl")),
                        ("test_mismatched", read(run / "predictions" / "test_mismatched.jsonl"))):  # fmt: skip
        assert all(len(r["probs"]) == 3 and abs(sum(r["probs"]) - 1) < 1e-3 for r in rows)
        assert all(r["pred"] == int(np.argmax(r["probs"])) for r in rows)
        recomputed = compute_metrics(
            "accuracy", np.array([r["pred"] for r in rows]), np.array([r["label"] for r in rows])
        )
        assert recomputed == result[split], split  # the selected checkpoint's numbers, from the file
    test = read(run / "predictions" / "test.jsonl")
    assert [r["idx"] for r in test] == list(range(result["data"]["test_sizes"]["test"]))

    before = {p.name: p.read_bytes() for p in (run / "predictions").iterdir()}
    for split, names in (("test", ["test", "test_mismatched"]), ("dev", ["dev"])):
        out = CliRunner().invoke(app, ["eval", str(run), "--split", split])
        assert out.exit_code == 0, out.output
        for name in names:
            assert f"predictions/{name}.jsonl: identical to the stored file" in out.output
    assert before == {p.name: p.read_bytes() for p in (run / "predictions").iterdir()}  # eval writes nothing

    (run / "predictions" / "test.jsonl").write_text("".join(f"{json.dumps(r)}\n" for r in test[1:]))
    out = CliRunner().invoke(app, ["eval", str(run), "--split", "test", "--json"])
    assert json.loads(out.output)["predictions"] == {"test": "differs", "test_mismatched": "identical"}


def test_stsb_predictions_hold_scores(tmp_path, tiny_backbone, tiny_glue):
    run, result = train(tmp_path, tiny_backbone, tiny_glue, "task=stsb", "method=lora")
    rows = read(run / "predictions" / "test.jsonl")
    assert set(rows[0]) == {"idx", "label", "pred"}
    preds, labels = np.array([r["pred"] for r in rows]), np.array([r["label"] for r in rows])
    recomputed = compute_metrics("spearman", preds, labels)
    assert recomputed["pearson"] == pytest.approx(result["test"]["pearson"], abs=1e-5)  # exact to float32
