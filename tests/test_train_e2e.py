"""A tiny random BERT trains and evaluates end to end through the CLI, in seconds."""

from __future__ import annotations

import json
import random

import pytest
from conftest import WORDS_NEG, WORDS_POS, tiny_overrides
from typer.testing import CliRunner

from unipelt_cli.cli import app

REQUIRED = {
    "schema_version",
    "run_id",
    "config_hash",
    "task",
    "method",
    "budget",
    "seed",
    "data_seed",
    "primary_metric",
    "dev",
    "test",
    "history",
    "trainable_params",
    "total_params",
    "train_seconds",
    "eval_seconds",
    "precision",
    "provenance",
    "selection_on_test",
    "data",
}


def train(tmp_path, backbone, glue, *extra, outputs=None):
    outputs = outputs or tmp_path / "out"
    args = ["train", "--quiet", "--outputs", str(outputs), *tiny_overrides(backbone, glue, *extra)]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    runs = sorted((outputs / "runs").iterdir())
    return result, runs


def load(run_dir):
    return json.loads((run_dir / "result.json").read_text())


def test_tiny_run_writes_a_complete_run_folder(tmp_path, tiny_backbone, tiny_glue):
    result, runs = train(tmp_path, tiny_backbone, tiny_glue)
    assert len(runs) == 1
    run = runs[0]
    assert run.name.startswith("sst2-finetune-k40-s1-d1-")
    assert {"config.yaml", "result.json", "status.json", "train.log"} <= {p.name for p in run.iterdir()}
    data = load(run)
    assert REQUIRED <= set(data)
    assert data["budget"] == 40 and data["primary_metric"] == "accuracy"
    assert data["data"]["train_size"] == 40 and data["data"]["dev_size"] == 24
    assert data["data"]["selection_on_test"] is False
    assert data["trainable_params"] == data["total_params"]  # finetune trains everything
    assert len(data["history"]) == 3  # one evaluation per epoch, 40 rows / batch 8 = 5 steps each
    assert data["dev"] == max((h["dev"] for h in data["history"]), key=lambda m: m["accuracy"])
    # this run is too short to learn: it predicts one class, which is 8 of 24 dev rows and 13 of 24
    # test rows (test_a_run_that_learns_tests_its_best_on_dev_weights is the run that learns)
    assert [h["dev"]["accuracy"] for h in data["history"]] == pytest.approx([100 * 8 / 24] * 3)
    assert data["test"] == {"accuracy": pytest.approx(100 * 13 / 24)}
    assert json.loads((run / "status.json").read_text())["state"] == "done"
    assert "test accuracy" in result.output
    assert not (run / "weights.safetensors").exists()  # finetune keeps weights only when asked


def write_noisy_sst2(root, noise=0.15):
    """SST-2 that a tiny model learns only in part: 2 words of the label's list, 1 of either, and
    15% of the labels flipped, so dev rises and then falls again as the model fits the noise."""
    rng = random.Random(0)
    sst = root / "SST-2"
    sst.mkdir(parents=True)
    for name, n in (("train.tsv", 80), ("dev.tsv", 24)):
        lines = ["sentence\tlabel"]
        for _ in range(n):
            label = rng.randint(0, 1)
            words = rng.sample(WORDS_POS if label else WORDS_NEG, 2) + rng.sample(WORDS_POS + WORDS_NEG, 1)
            rng.shuffle(words)
            if rng.random() < noise:
                label = 1 - label
            lines.append(f"the film was {' '.join(words)}\t{label}")
        (sst / name).write_text("\n".join(lines) + "\n")
    return root


def test_a_run_that_learns_tests_its_best_on_dev_weights(tmp_path, tiny_backbone):
    """Dev goes 70.8 -> 83.3 (step 20) -> 75.0: the stored dev is the best, and the saved weights
    (the ones the test split was scored with) reproduce it on dev, not the last evaluation's 75.0."""
    glue = write_noisy_sst2(tmp_path / "noisy")
    extra = ("train.lr=1e-2", "train.epochs=8", "train.eval_every=5", "train.save_full_weights=true")
    _, (run,) = train(tmp_path, tiny_backbone, glue, *extra)
    data = load(run)
    dev = [round(h["dev"]["accuracy"], 2) for h in data["history"]]
    assert dev == [70.83, 70.83, 70.83, 83.33, 83.33, 75.0, 75.0, 75.0]  # learns, then fits the noise
    assert data["dev"]["accuracy"] == pytest.approx(100 * 20 / 24) and data["history"][3]["step"] == 20
    out = CliRunner().invoke(app, ["eval", str(run), "--split", "dev", "--json"])
    assert out.exit_code == 0, out.output
    assert json.loads(out.output)["metrics"]["dev"] == data["dev"]  # the weights kept are the best-on-dev ones
    test = CliRunner().invoke(app, ["eval", str(run), "--json"])
    assert json.loads(test.output)["metrics"]["test"] == data["test"] == {"accuracy": 75.0}


def test_same_seeds_give_identical_numbers(tmp_path, tiny_backbone, tiny_glue):
    _, (a,) = train(tmp_path, tiny_backbone, tiny_glue, outputs=tmp_path / "a")
    _, (b,) = train(tmp_path, tiny_backbone, tiny_glue, outputs=tmp_path / "b")
    ra, rb = load(a), load(b)
    assert ra["test"] == rb["test"] and ra["dev"] == rb["dev"]
    assert [h["loss"] for h in ra["history"]] == [h["loss"] for h in rb["history"]]
    _, (c,) = train(tmp_path, tiny_backbone, tiny_glue, "seed=2", outputs=tmp_path / "c")
    assert load(c)["data"]["train_rows_hash"] != ra["data"]["train_rows_hash"]  # data_seed follows seed


def test_finished_run_is_skipped_unless_forced(tmp_path, tiny_backbone, tiny_glue):
    _, (run,) = train(tmp_path, tiny_backbone, tiny_glue)
    before = (run / "result.json").stat().st_mtime_ns
    again, _ = train(tmp_path, tiny_backbone, tiny_glue)
    assert "already finished" in again.output
    assert (run / "result.json").stat().st_mtime_ns == before
    train(tmp_path, tiny_backbone, tiny_glue, "--force")
    assert (run / "result.json").stat().st_mtime_ns != before


def test_eval_reproduces_the_stored_metrics(tmp_path, tiny_backbone, tiny_glue):
    _, (run,) = train(tmp_path, tiny_backbone, tiny_glue, "train.save_full_weights=true")
    for split in ("test", "dev"):
        out = CliRunner().invoke(app, ["eval", str(run), "--split", split, "--json"])
        assert out.exit_code == 0, out.output
        report = json.loads(out.output)
        assert report["metrics"] == report["stored"]


def test_regression_task(tmp_path, tiny_backbone, tiny_glue):
    _, (run,) = train(tmp_path, tiny_backbone, tiny_glue, "task=stsb")
    data = load(run)
    assert data["primary_metric"] == "spearman"
    assert {"spearman", "pearson"} <= set(data["test"])


def test_full_budget_says_selection_used_the_test_split(tmp_path, tiny_backbone, tiny_glue):
    _, (run,) = train(tmp_path, tiny_backbone, tiny_glue, "budget=full", "budget.k=null", "budget.dev_size=0")
    data = load(run)
    assert data["budget"] == "full" and data["data"]["selection_on_test"] is True
    assert data["data"]["train_size"] == 80 and data["data"]["dev_size"] == 24


def test_max_steps_wins_over_epochs(tmp_path, tiny_backbone, tiny_glue):
    _, (run,) = train(tmp_path, tiny_backbone, tiny_glue, "train.max_steps=4", "train.eval_every=2")
    data = load(run)
    assert data["steps"] == 4 and [h["step"] for h in data["history"]] == [2, 4]


@pytest.mark.parametrize("precision", ["bf16"])
def test_bf16_runs_and_is_recorded(tmp_path, tiny_backbone, tiny_glue, precision):
    _, (run,) = train(tmp_path, tiny_backbone, tiny_glue, f"train.precision={precision}", "train.epochs=1")
    assert load(run)["precision"] == "bf16"


def test_mnli_reports_mismatched_beside_matched(tmp_path, tiny_backbone, tiny_glue):
    result, (run,) = train(tmp_path, tiny_backbone, tiny_glue, "task=mnli", "train.epochs=1")
    data = load(run)
    assert data["data"]["test_sizes"] == {"test": 24, "test_mismatched": 12}
    assert set(data["test"]) == {"accuracy"} and set(data["test_mismatched"]) == {"accuracy"}
    assert ", mismatched " in result.output  # the summary line shows both


def test_a_run_held_by_another_process_is_refused(tmp_path, tiny_backbone, tiny_glue):
    import subprocess
    import sys

    from unipelt_cli import config, runs

    outputs = tmp_path / "out"
    cfg = config.compose(tiny_overrides(tiny_backbone, tiny_glue))
    run_dir = outputs / "runs" / runs.run_name(cfg, config.config_hash(cfg))
    run_dir.mkdir(parents=True)
    holder = subprocess.Popen(  # another process holds the run's lock, as a sweep worker would
        [sys.executable, "-c", "import sys, time; from unipelt_cli.sweep.lock import RunLock; "
         f"RunLock({str(run_dir)!r}).acquire(); print('held', flush=True); time.sleep(60)"],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert holder.stdout.readline().strip() == "held"
        args = ["train", "-q", "--outputs", str(outputs), *tiny_overrides(tiny_backbone, tiny_glue)]
        result = CliRunner().invoke(app, args)
        assert result.exit_code == 2 and "is being trained right now by pid" in result.output
    finally:
        holder.kill()
        holder.wait()
    train(tmp_path, tiny_backbone, tiny_glue)  # once the holder is gone, the run goes ahead


def test_dev_predictions_and_gate_stats_come_from_the_best_evaluation(tmp_path, monkeypatch, tiny_backbone, tiny_glue):
    """The run keeps dev's logits and gate stats from the evaluation at its best step (same tensors,
    same batches) instead of evaluating dev again after training: one dev pass fewer, same files."""
    import dataclasses

    from unipelt_cli import experiment

    calls = []
    real_predict, real_fit = experiment.predict_logits, experiment.fit

    def counted(model, enc, args):
        calls.append(len(enc))
        return real_predict(model, enc, args)

    monkeypatch.setattr(experiment, "predict_logits", counted)
    _, (kept,) = train(tmp_path, tiny_backbone, tiny_glue, "method=unipelt_apl", outputs=tmp_path / "kept")
    reused_calls = len(calls)
    calls.clear()
    monkeypatch.setattr(experiment, "fit", lambda *a, **k: dataclasses.replace(real_fit(*a, **k), best_extra=None))
    _, (again,) = train(tmp_path, tiny_backbone, tiny_glue, "method=unipelt_apl", outputs=tmp_path / "again")
    assert len(calls) == reused_calls + 1  # the fallback evaluates dev once more
    a, b = load(kept), load(again)
    assert a["gates"]["dev"] and a["gates"] == b["gates"]
    assert a["dev"] == b["dev"] and a["test"] == b["test"]
    for split in ("dev", "test"):
        assert (kept / "predictions" / f"{split}.jsonl").read_text() == (
            again / "predictions" / f"{split}.jsonl"
        ).read_text()
