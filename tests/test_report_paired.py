"""report/paired.py: the bootstrap's metrics are the task metrics, and the test separates real gaps from noise."""

from __future__ import annotations

import json

import numpy as np
import pytest

from unipelt_cli.metrics import compute_metrics
from unipelt_cli.report import paired


@pytest.mark.parametrize("name", ["accuracy", "f1", "matthews", "spearman"])
def test_weighted_metric_equals_the_metric_on_the_resampled_examples(name):
    rng = np.random.default_rng(0)
    n = 300
    if name == "spearman":
        labels = rng.integers(0, 11, n) / 2.0  # STS-B-like: many ties
        preds = np.round(labels + rng.normal(0, 1, n), 1)  # ties in the predictions too
    else:
        labels = rng.integers(0, 3 if name == "matthews" else 2, n)
        preds = np.where(rng.random(n) < 0.7, labels, rng.integers(0, 3 if name == "matthews" else 2, n))
    full = paired.metric(name, preds, labels, np.ones((1, n)))[0]
    assert full == pytest.approx(compute_metrics(name, preds, labels)[name], abs=1e-9)
    w = paired.weights(n, rng)
    boot = paired.metric(name, preds, labels, w)
    for b in (0, 1, 7):
        take = np.repeat(np.arange(n), w[b].astype(int))
        assert boot[b] == pytest.approx(compute_metrics(name, preds[take], labels[take])[name], abs=1e-9)


class FakeRun:
    def __init__(self, folder, seed, labels, preds):
        self.path, self.seed, self.data_seed = folder, seed, seed
        (folder / "predictions").mkdir(parents=True)
        rows = [{"idx": i, "label": int(y), "pred": int(p)} for i, (y, p) in enumerate(zip(labels, preds, strict=True))]
        (folder / "predictions" / "test.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))


class FakeGroup:
    metric = "accuracy"

    def __init__(self, runs):
        self.done = runs


def groups(tmp_path, name, accuracy_by_seed, labels, swap: int = 0):
    """Runs whose predictions are right with probability `accuracy`; swap > 0: then `swap` right
    answers made wrong and `swap` wrong ones made right (the same accuracy, other examples)."""
    rng = np.random.default_rng(len(name))
    runs = []
    for seed, acc in accuracy_by_seed.items():
        wrong = np.random.default_rng(seed).random(len(labels)) > acc
        if swap:
            wrong[rng.choice(np.flatnonzero(~wrong), swap, replace=False)] = True
            wrong[rng.choice(np.flatnonzero(wrong), swap, replace=False)] = False
        runs.append(FakeRun(tmp_path / f"{name}-{seed}", seed, labels, np.where(wrong, 1 - labels, labels)))
    return FakeGroup(runs)


def test_a_real_gap_is_significant_and_equal_methods_are_not(tmp_path):
    labels = np.random.default_rng(1).integers(0, 2, 800)
    strong = groups(tmp_path, "strong", {1: 0.90, 2: 0.90, 3: 0.90}, labels)
    weak = groups(tmp_path, "weak", {1: 0.80, 2: 0.80, 3: 0.80}, labels)
    twin = groups(tmp_path, "twin", {1: 0.90, 2: 0.90, 3: 0.90}, labels, swap=40)  # other errors, same count
    found = paired.test({"sst2": strong}, {"sst2": weak}, ["sst2"])
    assert found["seeds"] == 3 and found["tasks"] == ["sst2"]
    assert found["delta"] == pytest.approx(10, abs=3) and found["p"] < 0.01
    same = paired.test({"sst2": strong}, {"sst2": twin}, ["sst2"])
    assert same["delta"] == 0 and same["p"] > 0.9
    assert paired.test({"sst2": strong}, {"sst2": strong}, ["sst2"])["p"] == 1.0  # identical predictions
    assert paired.test({"sst2": strong}, {"rte": weak}, ["sst2"]) is None  # no shared task


def test_runs_without_predictions_are_left_out(tmp_path):
    labels = np.zeros(50, dtype=int)
    x = groups(tmp_path, "x", {1: 0.9}, labels)
    old = FakeGroup([type("Old", (), {"path": tmp_path / "old", "seed": 1, "data_seed": 1})()])
    assert not paired.has_predictions(old) and paired.has_predictions(x)
    assert paired.test({"t": x}, {"t": old}, ["t"]) is None


def write_predictions(run_dir, labels, accuracy, seed):
    rng = np.random.default_rng(seed)
    wrong = rng.random(len(labels)) > accuracy
    preds = np.where(wrong, 1 - labels, labels)
    (run_dir / "predictions").mkdir()
    rows = enumerate(zip(labels.tolist(), preds.tolist(), strict=True))
    lines = [json.dumps({"idx": i, "label": y, "pred": p}) for i, (y, p) in rows]
    (run_dir / "predictions" / "test.jsonl").write_text("\n".join(lines) + "\n")
    return float(np.mean(preds == labels) * 100)


def test_report_prints_p_values_beside_the_seed_se_and_names_the_cells_with_predictions(tmp_path):
    import subprocess
    import sys

    from report_helpers import write_run

    labels = np.random.default_rng(0).integers(0, 2, 600)
    for seed in (1, 2, 3):
        for method, acc in (("unipelt_apl", 0.9), ("unipelt_apl_nogate", 0.8), ("lora", 0.85)):
            run = write_run(tmp_path, method=method, seed=seed, score=0.0, finished=seed)
            score = write_predictions(run, labels, acc, seed * 10 + len(method))
            result = json.loads((run / "result.json").read_text())
            result["test"]["accuracy"] = score
            (run / "result.json").write_text(json.dumps(result))
        write_run(tmp_path, method="adapter", seed=seed, score=70.0 + seed)  # an older run: no predictions
    code = (
        "import sys; from typer.testing import CliRunner; from unipelt_cli.cli import app; "
        f"r = CliRunner().invoke(app, ['report', {str(tmp_path)!r}, '--format', 'md', '--no-files']); "
        "assert r.exit_code == 0, r.output; print(r.output); "
        "assert 'torch' not in sys.modules, 'heavy import'"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env={"MPLBACKEND": "Agg"})
    assert out.returncode == 0, out.stderr
    text = out.stdout
    assert "## Per-example paired tests" in text
    section = text.split("## Per-example paired tests")[1].split("\n## ")[0]
    print(section)
    lora = next(line for line in section.splitlines() if line.startswith("| LoRA"))
    assert "(SE " in lora and ("p = " in lora or "p ≤ 0.002" in lora)
    adapter = next(line for line in section.splitlines() if line.startswith("| Adapter"))
    assert "(SE " in adapter and "no predictions" in adapter
    assert "Cells with per-example predictions for every run: 3 of 4" in text
    gates = next(line for line in text.splitlines() if "Gates help" in line)
    assert "p ≤ 0.002" in gates  # 90% vs 80% on 600 examples and 3 seeds: every resample agrees
    assert "Per-example p" in text


def test_a_report_without_predictions_is_as_before(tmp_path):
    from report_helpers import write_run

    from unipelt_cli.report import build
    from unipelt_cli.report.write import render_as

    for seed in (1, 2):
        for method in ("unipelt_apl", "unipelt_apl_nogate", "lora"):
            write_run(tmp_path, method=method, seed=seed, score=70.0 + seed + len(method))
    text = render_as(build(tmp_path), "md")
    assert "Gates help" in text and "Per-example" not in text and "no predictions" not in text
