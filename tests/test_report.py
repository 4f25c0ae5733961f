"""`unipelt report` aggregation on synthetic run folders: means, stds, flags, variants, bounds, cost, gates."""

from __future__ import annotations

import csv
import io
import json
import math
import os
from pathlib import Path

import pytest
from report_helpers import gates, write_run

from unipelt_cli.errors import UserError
from unipelt_cli.report import aggregate, build, paper
from unipelt_cli.report.tables import cost_grid, scores_grid, upper_bound_grid, variants_grid
from unipelt_cli.report.write import render_as


def cell_texts(grid):
    return {row[0].text: [c.text for c in row[1:]] for row in grid.rows}


def test_mean_and_sample_std_over_seeds(tmp_path):
    for seed, score in zip((1, 2, 3), (70.0, 72.0, 77.0), strict=True):
        write_run(tmp_path, seed=seed, score=score)
    report = build(tmp_path)
    (group,) = report.cells.values()
    assert group.n == 3 and group.seeds == ["1/1", "2/2", "3/3"]
    assert group.mean == pytest.approx(73.0)
    assert group.std == pytest.approx(math.sqrt(13.0))  # sample std: sum of squares 26 over n - 1 = 2
    assert cell_texts(scores_grid(report, "minilm-l6", 100))["LoRA"][0] == "73.00 (3.61)"


def test_single_seed_has_no_std():
    assert aggregate.mean_std([5.0]) == (5.0, None)
    assert aggregate.mean_std([]) == (None, None)


def test_missing_and_failed_seeds_are_flagged_not_averaged_away(tmp_path):
    for seed in (1, 2, 3):
        write_run(tmp_path, method="adapter", seed=seed, score=80.0)
    write_run(tmp_path, seed=1, score=70.0)
    write_run(tmp_path, seed=2, score=74.0)
    write_run(tmp_path, seed=3, state="failed")
    write_run(tmp_path, method="prefix", seed=1, score=60.0)
    write_run(tmp_path, method="prefix", seed=2, state="diverged")
    report = build(tmp_path)
    texts = cell_texts(scores_grid(report, "minilm-l6", 100))
    assert texts["Adapter"][0] == "80.00 (0.00)"
    assert texts["LoRA"][0] == "72.00 (2.83) [n=2/3, 1 failed]"
    assert texts["Prefix-tuning"][0] == "60.00 [n=1/3, 1 diverged]"
    assert "Seeds per cell: 1 to 3." in scores_grid(report, "minilm-l6", 100).notes
    lora = report.cells[("minilm-l6", 100, "lora", "sst2")]
    assert lora.mean == pytest.approx(72.0) and lora.attempted == 3 and lora.not_done == {"failed": 1}


def test_latest_completed_attempt_per_run_identity(tmp_path):
    old = write_run(tmp_path, score=60.0, finished=100.0, folder="copy-a")
    write_run(tmp_path, score=65.0, finished=200.0, folder="copy-b")
    newest_failed = write_run(tmp_path, state="failed", finished=300.0, folder="copy-c")
    report = build(tmp_path)
    (group,) = report.cells.values()
    assert group.scores == [65.0] and group.not_done == {}  # same identity: one run, the latest completed
    assert any("copy-b" in note and "copy-a" in note for note in report.notes)
    assert old.exists() and newest_failed.exists()


def test_a_later_failed_attempt_keeps_the_completed_result(tmp_path):
    run_dir = write_run(tmp_path, score=66.0)
    (run_dir / "status.json").write_text(json.dumps({"state": "failed", "finished": 5.0}))
    report = build(tmp_path)
    assert next(iter(report.cells.values())).scores == [66.0]
    assert any("a later attempt is failed" in note for note in report.notes)


def test_keys_outside_the_identity_do_not_split_a_cell(tmp_path):
    """A run logged to trackers, or one whose config lists a submodule it leaves disabled (run after
    that submodule was added), is the same variant as one without: one group over both seeds."""
    write_run(tmp_path, seed=1, score=70.0)
    later = {"logger": {"csv": {}}, "pelt": {"ia3": {"enabled": False, "targets": ["key"]}}}
    write_run(tmp_path, seed=2, score=74.0, config=later)
    write_run(tmp_path, seed=3, score=72.0, config={"logger": None})
    report = build(tmp_path)
    (group,) = report.groups
    assert group.n == 3 and group.variants == 1 and group.split_keys == []
    assert scores_grid(report, "minilm-l6", 100).rows[0][1].text == "72.00 (2.00)"


def test_cells_split_by_differing_keys_and_the_variant_shown(tmp_path):
    for seed in (1, 2, 3):
        write_run(tmp_path, seed=seed, lr=1e-3, score=70.0, dev=75.0)
    write_run(tmp_path, seed=1, lr=1e-4, score=90.0, dev=95.0)  # better dev, fewer seeds
    report = build(tmp_path)
    assert len(report.groups) == 2
    group = report.cells[("minilm-l6", 100, "lora", "sst2")]
    assert group.sig["train.lr"] == "0.001" and group.split_keys == ["train.lr"] and group.variants == 2
    grid = scores_grid(report, "minilm-l6", 100)
    assert grid.rows[0][1].text.endswith("†")
    assert any("variants differ in train.lr" in note and "train.lr=0.001" in note for note in grid.notes)
    variants = variants_grid(report)
    assert [row[1].text for row in variants.rows] == ["train.lr=0.0001", "train.lr=0.001"]
    assert [row[-1].text for row in variants.rows] == ["", "yes"]
    wide = next(csv.DictReader(io.StringIO(render_as(report, "csv"))))
    assert wide["sst2_variant"] == "train.lr=0.001" and wide["sst2_flags"] == "variant"


def test_shared_policy_keeps_one_variant_on_every_task(tmp_path):
    write_run(tmp_path, task="sst2", lr=1e-3, score=80.0, dev=80.0)
    write_run(tmp_path, task="rte", lr=1e-3, score=50.0, dev=50.0)
    write_run(tmp_path, task="sst2", lr=1e-4, score=70.0, dev=70.0)
    write_run(tmp_path, task="rte", lr=1e-4, score=55.0, dev=55.0)
    shared = build(tmp_path, select="shared").cells
    assert {shared[("minilm-l6", 100, "lora", t)].sig["train.lr"] for t in ("sst2", "rte")} == {"0.001"}
    cell = build(tmp_path, select="cell").cells
    assert cell[("minilm-l6", 100, "lora", "rte")].sig["train.lr"] == "0.0001"


def test_merged_keys_do_not_split_but_are_reported_as_mixed(tmp_path):
    write_run(tmp_path, seed=1, score=70.0)
    write_run(tmp_path, seed=2, score=72.0, config={"backbone": {"name_or_path": "/models/minilm"}})
    report = build(tmp_path)
    (group,) = report.cells.values()
    assert group.n == 2 and "backbone.name_or_path" in group.mixes
    assert scores_grid(report, "minilm-l6", 100).rows[0][1].text.endswith("mixed")
    assert any("mixes runs that differ in backbone.name_or_path" in note for note in report.notes)
    assert len(build(tmp_path, merge=()).groups) == 2  # without the merge: two variants


def test_average_only_over_complete_rows_and_best_per_column(tmp_path):
    write_run(tmp_path, method="adapter", task="sst2", score=80.0)
    write_run(tmp_path, method="adapter", task="rte", score=60.0)
    write_run(tmp_path, method="prefix", task="sst2", score=50.0)
    write_run(tmp_path, method="prefix", task="rte", score=70.0)
    write_run(tmp_path, method="lora", task="sst2", score=90.0)  # no RTE
    grid = scores_grid(build(tmp_path), "minilm-l6", 100)
    assert grid.header == ["Method", "SST-2 (acc)", "RTE (acc)", "Avg (2 of 8 tasks)"]
    adapter, prefix, lora = grid.rows
    assert adapter[3].text == "70.00" and adapter[3].best and prefix[3].text == "60.00"
    assert lora[3].text == "90.00 (partial 1/2)" and not lora[3].best
    assert lora[1].best and not adapter[1].best and prefix[2].best and lora[2].text == "—"
    assert sum(c.best for row in grid.rows for c in row) == 3


def test_paper_column_and_row_order_and_budgets_by_k(tmp_path):
    for task in ("qqp", "cola", "sst2"):
        for method in ("unipelt_apl", "finetune", "lora"):
            for budget in (1000, "full", 100):
                write_run(tmp_path, task=task, method=method, budget=budget)
    report = build(tmp_path)
    assert report.tables() == [("minilm-l6", 100), ("minilm-l6", 1000), ("minilm-l6", "full")]
    assert report.tasks("minilm-l6", 100) == ["sst2", "cola", "qqp"]
    assert report.methods("minilm-l6", 100) == ["finetune", "lora", "unipelt_apl"]
    assert "9 cell(s) selected their checkpoint on the test split" in scores_grid(report, "minilm-l6", "full").notes[-1]
    assert "test split" not in " ".join(scores_grid(report, "minilm-l6", 100).notes)


def _bound_runs(root: Path, scores: dict[str, dict[str, float]]) -> None:
    for method, by_task in scores.items():
        for task, score in by_task.items():
            write_run(root, method=method, task=task, score=score)


def test_upper_bound_best_single_submodule_per_task(tmp_path):
    _bound_runs(
        tmp_path,
        {
            "adapter": {"sst2": 80.0, "rte": 50.0},
            "prefix": {"sst2": 70.0, "rte": 60.0},
            "lora": {"sst2": 85.0, "rte": 55.0},
            "unipelt_ap": {"sst2": 82.0, "rte": 58.0},
            "unipelt_apl": {"sst2": 84.0, "rte": 61.0},
        },
    )
    report = build(tmp_path)
    rows = {r["label"]: r for r in aggregate.upper_bound(report.cells, "minilm-l6", 100, ["sst2", "rte"])}
    assert rows["best of {A, P}"]["values"] == {"sst2": 80.0, "rte": 60.0}
    assert rows["best of {A, P}"]["sources"] == {"sst2": "adapter", "rte": "prefix"}
    assert rows["best of {A, P}"]["avg"] == pytest.approx(70.0)
    assert rows["best of {A, P, L}"]["values"] == {"sst2": 85.0, "rte": 60.0}
    assert rows["UniPELT (APL)"]["avg"] == pytest.approx(72.5) and rows["UniPELT (APL)"]["complete"]
    texts = cell_texts(upper_bound_grid(report, "minilm-l6", 100))
    assert texts["best of {A, P, L}"] == ["85.00 (L)", "60.00 (P)", "72.50"]


def test_upper_bound_needs_every_member(tmp_path):
    _bound_runs(tmp_path, {"adapter": {"sst2": 80.0, "rte": 50.0}, "prefix": {"sst2": 70.0}})
    report = build(tmp_path)
    texts = cell_texts(upper_bound_grid(report, "minilm-l6", 100))
    assert texts["best of {A, P}"] == ["80.00 (A)", "— (no prefix)", "80.00 (partial)"]
    assert texts["UniPELT (AP)"][0] == "— (no unipelt_ap)"


def test_cost_relative_to_finetune_per_step_and_per_example(tmp_path):
    # examples evaluated: (4 evaluations + 1 final) * 1000 dev + 872 test = 5872
    write_run(tmp_path, method="finetune", train_seconds=10.0, steps=100, eval_seconds=5.872, stored=22_000_000)
    write_run(tmp_path, method="lora", train_seconds=3.0, steps=50, eval_seconds=11.744, stored=74_000, percent=0.33)
    rows = {
        r["method"]: r for r in aggregate.cost(build(tmp_path).cells, "minilm-l6", 100, ["sst2"], ["finetune", "lora"])
    }
    assert rows["finetune"]["train_rel"] == pytest.approx(100.0)
    assert rows["lora"]["train_s_per_step"] == pytest.approx(0.06)
    assert rows["lora"]["train_rel"] == pytest.approx(60.0)  # 0.06 s/step vs 0.1 s/step
    assert rows["finetune"]["infer_ms_per_example"] == pytest.approx(1.0)
    assert rows["lora"]["infer_rel"] == pytest.approx(200.0)
    texts = cell_texts(cost_grid(build(tmp_path), "minilm-l6", 100))
    assert texts["LoRA"][:3] == ["74K (0.33%)", "60%", "200%"]
    assert texts["Fine-tuning"][0] == "22M (1.00%)"


def test_cost_ratios_pair_runs_on_the_same_device(tmp_path):
    # fine-tuning: sst2 on a GPU (seed 1) and the CPU (seed 2); rte on the GPU only
    write_run(tmp_path, method="finetune", seed=1, train_seconds=1.0, steps=100, device="gpu")
    write_run(tmp_path, method="finetune", seed=2, train_seconds=20.0, steps=100, device="cpu")
    write_run(tmp_path, task="rte", method="finetune", seed=1, train_seconds=2.0, steps=100, device="gpu")
    # LoRA: sst2 on both (GPU 0.5 s, CPU 12 s for 100 steps); rte on the CPU only, so no ratio there
    write_run(tmp_path, method="lora", seed=1, train_seconds=0.5, steps=100, device="gpu")
    write_run(tmp_path, method="lora", seed=2, train_seconds=12.0, steps=100, device="cpu")
    write_run(tmp_path, task="rte", method="lora", seed=1, train_seconds=30.0, steps=100, device="cpu")
    report = build(tmp_path)
    (lora,) = [r for r in aggregate.cost(report.cells, "minilm-l6", 100, ["sst2", "rte"], ["lora"])]
    assert lora["train_rel"] == pytest.approx(55.0)  # sst2 only: mean of 50% (GPU) and 60% (CPU)
    assert lora["relative_tasks"] == 1 and lora["tasks"] == 2
    grid = cost_grid(report, "minilm-l6", 100)
    assert cell_texts(grid)["LoRA"][1] == "55% [1/2 tasks]"
    assert any("2 devices (cpu, gpu)" in note for note in grid.notes)
    # pooled over devices it would read 12.25 / 10.5 = 117%: the mixed-device figure this guards against


def test_gate_means_over_seeds(tmp_path):
    write_run(tmp_path, method="unipelt_ap", seed=1, gates=gates({"adapter": [0.2, 0.4], "prefix": [0.6, 0.6]}))
    write_run(tmp_path, method="unipelt_ap", seed=2, gates=gates({"adapter": [0.4, 0.8], "prefix": [0.5, 0.7]}))
    (group,) = build(tmp_path).cells.values()
    split, means = aggregate.gate_means(group)
    assert split == "test"
    assert means[0] == pytest.approx({"adapter": 0.3, "prefix": 0.55})
    assert means[1] == pytest.approx({"adapter": 0.6, "prefix": 0.65})


def test_corrupt_older_and_partial_files_are_skipped_with_a_named_warning(tmp_path):
    write_run(tmp_path, seed=1, score=70.0)
    bad = write_run(tmp_path, seed=2, score=71.0)
    (bad / "result.json").write_text("{not json")
    old = write_run(tmp_path, seed=3, score=72.0)
    data = json.loads((old / "result.json").read_text())
    del data["schema_version"]
    (old / "result.json").write_text(json.dumps(data))
    newer = write_run(tmp_path, seed=4, score=73.0)
    (newer / "result.json").write_text(json.dumps(data | {"schema_version": 2}))
    missing = write_run(tmp_path, seed=5, score=74.0)
    (missing / "result.json").write_text(json.dumps({"schema_version": 1, "task": "sst2"}))
    orphan = tmp_path / "runs" / "orphan"
    orphan.mkdir()
    (orphan / "status.json").write_text(json.dumps({"state": "failed"}))
    (tmp_path / "runs" / "empty").mkdir()
    (tmp_path / "runs" / "stray.txt").write_text("x")
    report = build(tmp_path)
    (group,) = report.cells.values()
    assert group.scores == [70.0]
    text = "\n".join(report.warnings)
    assert f"{bad / 'result.json'}: unreadable" in text
    assert f"{old / 'result.json'}: older schema" in text
    assert f"{newer / 'result.json'}: schema_version 2" in text
    assert f"{missing / 'result.json'}: missing" in text
    assert f"{orphan}: failed run without config.yaml" in text
    assert len(report.warnings) == 5


def test_a_results_folder_holding_runs_or_the_runs_folder_itself(tmp_path):
    write_run(tmp_path)
    assert len(build(tmp_path).runs) == 1
    assert len(build(tmp_path / "runs").runs) == 1
    empty = tmp_path / "nothing"
    empty.mkdir()
    report = build(empty)
    assert report.runs == [] and report.cells == {}
    with pytest.raises(UserError, match="no folder at"):
        build(tmp_path / "missing")


def test_filters_by_alias_and_config_key(tmp_path):
    for task in ("sst2", "rte", "cola"):
        for method, lr in (("lora", 1e-3), ("adapter", 1e-4)):
            write_run(tmp_path, task=task, method=method, lr=lr)
    write_run(tmp_path, task="sst2", method="lora", budget=500)
    keys = lambda **kw: sorted(build(tmp_path, **kw).cells)  # noqa: E731
    assert len(keys(filters=["task=sst2,rte", "method=lora", "budget=100"])) == 2
    assert len(keys(filters=["budget=k500"])) == 1
    assert {k[2] for k in keys(filters=["train.lr=0.0001"])} == {"adapter"}
    assert {k[2] for k in keys(filters=["train.lr=1e-4"])} == {"adapter"}
    with pytest.raises(UserError, match="unknown filter key 'lr'"):
        build(tmp_path, filters=["lr=1"])
    with pytest.raises(UserError, match="is not key=value"):
        build(tmp_path, filters=["task="])


def test_paper_numbers_are_consistent():
    assert set(paper.SCORES) == {100, 500, 1000, "full"}
    for budget, table in paper.SCORES.items():
        for method, row in table.items():
            mean = sum(row[t][0] for t in paper.TASKS) / len(paper.TASKS)
            assert abs(mean - row["avg"]) < 0.011, (budget, method)  # the paper's Avg is the mean of its columns
    assert paper.score(100, "unipelt_apl", "cola") == (23.62, 8.83)
    assert paper.score("full", "lora", "rte") == (71.48, None)
    assert paper.score(100, "unipelt_ap_nogate", "rte") is None


def test_paper_numbers_match_the_reference_copy():
    ref = Path(__file__).resolve().parents[2] / "shared" / "reference" / "UNIPELT.md"
    if not ref.is_file():
        pytest.skip("shared/reference/UNIPELT.md not present")
    text = ref.read_text(encoding="utf-8")
    for block in paper._SCORES.values():
        for line in block.strip().splitlines():
            assert f"| {line} |" in text, line


def test_report_reads_no_torch(tmp_path):
    import subprocess
    import sys

    write_run(tmp_path, method="unipelt_ap", gates=gates({"adapter": [0.5]}))
    code = (
        "import sys; from typer.testing import CliRunner; from unipelt_cli.cli import app; "
        f"r = CliRunner().invoke(app, ['report', {str(tmp_path)!r}, '--format', 'md']); "
        "assert r.exit_code == 0, r.output; "
        "assert 'torch' not in sys.modules and 'transformers' not in sys.modules, 'heavy import'"
    )
    subprocess.run([sys.executable, "-c", code], check=True, env={**os.environ, "MPLBACKEND": "Agg"})


def _drop_dev(run_dir: Path) -> None:
    """A result without dev scores (a run that never evaluated on dev)."""
    data = json.loads((run_dir / "result.json").read_text())
    del data["dev"]
    (run_dir / "result.json").write_text(json.dumps(data))


def test_cell_policy_ranks_seeds_then_dev_then_fewer_unfinished(tmp_path):
    # variants sort by label (lr=0.0001 before lr=0.001): each winner below is the one that comes second
    sst2 = {"task": "sst2"}
    write_run(tmp_path, **sst2, lr=1e-4, seed=1, score=90.0, dev=60.0)
    write_run(tmp_path, **sst2, lr=1e-3, seed=1, score=70.0, dev=80.0)  # same seeds, better dev: picked
    rte = {"task": "rte"}
    write_run(tmp_path, **rte, lr=1e-4, seed=1, score=90.0, dev=60.0)
    write_run(tmp_path, **rte, lr=1e-4, seed=2, state="failed")
    write_run(tmp_path, **rte, lr=1e-3, seed=1, score=70.0, dev=60.0)  # same seeds and dev, none failed: picked
    cola = {"task": "cola"}
    _drop_dev(write_run(tmp_path, **cola, lr=1e-4, seed=1, score=90.0))  # no dev score ranks below any
    write_run(tmp_path, **cola, lr=1e-3, seed=1, score=70.0, dev=10.0)
    mrpc = {"task": "mrpc"}
    write_run(tmp_path, **mrpc, lr=1e-4, seed=1, score=90.0, dev=99.0)
    for seed in (1, 2):  # more seeds beat a better dev, even with no dev score at all
        _drop_dev(write_run(tmp_path, **mrpc, lr=1e-3, seed=seed, score=70.0))
    cells = build(tmp_path, select="cell").cells
    for task in ("sst2", "rte", "cola", "mrpc"):
        group = cells[("minilm-l6", 100, "lora", task)]
        assert group.sig["train.lr"] == "0.001", task
        assert group.variants == 2
    assert cells[("minilm-l6", 100, "lora", "cola")].dev_mean == pytest.approx(10.0)
    assert (
        cells[("minilm-l6", 100, "lora", "mrpc")].dev_mean is None and cells[("minilm-l6", 100, "lora", "mrpc")].n == 2
    )


def test_timing_and_parameter_fields_that_a_result_may_lack():
    step = aggregate.seconds_per_step
    assert step({"train_seconds": 5.0, "steps": 50}) == pytest.approx(0.1)
    assert step({"train_seconds": 5.0, "steps": 0}) is None  # stopped before its first step
    assert step({"train_seconds": 5.0}) is None and step({"steps": 50}) is None
    assert step({"train_seconds": None, "steps": 50}) is None
    example = aggregate.seconds_per_example
    data = {"dev_size": 100, "test_sizes": {"test": 50, "test_mm": 50}}
    # (2 evaluations during training + the final one) * 100 dev + 100 test = 400 examples
    assert example({"eval_seconds": 2.0, "history": [{}, {}], "data": data}) == pytest.approx(0.005)
    assert example({"history": [{}], "data": data}) is None  # no eval time
    assert example({"eval_seconds": 2.0, "data": {"test_sizes": {"test": 50}}}) is None  # no dev size
    assert example({"eval_seconds": 2.0, "data": {"dev_size": 100}}) is None  # no test sizes
    assert example({"eval_seconds": 2.0, "data": {"dev_size": 100, "test_sizes": 50}}) is None  # not per split
    # results from before the params block kept the trainable count at the top level
    assert aggregate.stored_params({"trainable_params": 5000}) == 5000
    assert aggregate.stored_params({"params": {"stored": 7000}, "trainable_params": 5000}) == 7000
    assert aggregate.stored_params({}) is None
    assert aggregate.percent_params({"trainable_percent": 0.3}) == 0.3
    assert aggregate.percent_params({"params": {"percent": 0.5}, "trainable_percent": 0.3}) == 0.5
    assert aggregate.percent_params({}) is None
    # timings pair runs by device; a result that does not name one is on the unknown device "?"
    assert aggregate.device({"provenance": {"device": "cuda"}}) == "cuda"
    assert aggregate.device({}) == "?" and aggregate.device({"provenance": {"device": None}}) == "?"


def test_a_ratio_needs_both_values_and_a_nonzero_base():
    assert aggregate._ratio(3.0, 2.0) == pytest.approx(1.5)
    assert aggregate._ratio(None, 2.0) is None
    assert aggregate._ratio(3.0, None) is None
    assert aggregate._ratio(3.0, 0.0) is None


def test_cost_of_runs_without_a_timing(tmp_path):
    write_run(tmp_path, method="finetune", train_seconds=10.0, steps=100)
    write_run(tmp_path, method="lora", train_seconds=3.0, steps=0, eval_seconds=None)  # no step, no eval time
    (row,) = aggregate.cost(build(tmp_path).cells, "minilm-l6", 100, ["sst2"], ["lora"])
    assert row["train_s_per_step"] is None and row["train_rel"] is None and row["relative_tasks"] == 0
    assert row["infer_ms_per_example"] is None and row["infer_rel"] is None
    assert row["tasks"] == 1 and row["params_min"] == 1000


def test_gate_split_prefers_test_then_the_first_split_all_runs_share(tmp_path):
    def group(*splits_per_run):
        root = tmp_path / str(len(list(tmp_path.iterdir())))
        for seed, splits in enumerate(splits_per_run, start=1):
            layout = {}
            for split in splits:
                layout |= gates({"adapter": [0.1 * seed]}, split=split)
            write_run(root, method="unipelt_ap", seed=seed, gates=layout)
        (found,) = build(root).cells.values()
        return found

    assert aggregate.gate_split(group(["dev", "test"], ["dev", "test"])) == "test"
    assert aggregate.gate_split(group(["dev"], ["dev"])) == "dev"
    assert aggregate.gate_split(group(["train", "dev"], ["dev", "train"])) == "dev"  # sorted: dev before train
    assert aggregate.gate_split(group(["dev", "test"], ["dev"])) == "dev"  # test is not in every run
    assert aggregate.gate_split(group(["test"], ["dev"])) is None  # no split in common
    assert aggregate.gate_means(group(["test"], ["dev"])) == (None, {})


def test_gate_means_skip_a_gate_without_a_mean(tmp_path):
    layout = gates({"adapter": [0.2], "prefix": [0.6]})
    layout["test"]["0"]["prefix"] = {"mean": None, "std": None, "n": 0}  # a gate that never ran
    write_run(tmp_path, method="unipelt_ap", seed=1, gates=layout)
    write_run(tmp_path, method="unipelt_ap", seed=2, gates=gates({"adapter": [0.4], "prefix": [0.8]}))
    (group,) = build(tmp_path).cells.values()
    split, means = aggregate.gate_means(group)
    assert split == "test" and means[0] == pytest.approx({"adapter": 0.3, "prefix": 0.8})


def test_cost_skips_the_tasks_a_method_has_not_finished(tmp_path):
    for task in ("sst2", "rte"):
        write_run(tmp_path, task=task, method="finetune", train_seconds=10.0, steps=100)
    write_run(tmp_path, task="sst2", method="lora", state="failed")  # the first task: no finished run
    run = write_run(tmp_path, task="rte", method="lora", train_seconds=3.0, steps=50)
    data = json.loads((run / "result.json").read_text())
    del data["params"]  # and no parameter counts in its result
    (run / "result.json").write_text(json.dumps(data))
    cells = build(tmp_path).cells
    # no CoLA runs at all, and no adapter runs (a method without a row does not end the table)
    (row,) = aggregate.cost(cells, "minilm-l6", 100, ["sst2", "rte", "cola"], ["adapter", "lora"])
    assert row["method"] == "lora" and row["tasks"] == 1 and row["relative_tasks"] == 1
    assert row["train_s_per_step"] == pytest.approx(0.06) and row["train_rel"] == pytest.approx(60.0)
    assert row["params_min"] is None and row["params_max"] is None and row["percent"] is None


def test_config_values_are_shown_as_json_and_a_missing_key_by_name():
    assert aggregate.show(["query", "value"]) == '["query", "value"]'  # JSON, not Python's ['query', 'value']
    assert aggregate.show({"r": 8}) == '{"r": 8}'
    assert aggregate.show(True) == "True" and aggregate.show("eager") == "eager" and aggregate.show(0.001) == "0.001"
    assert aggregate.show(None) == "None" and aggregate.show(aggregate.MISSING) == "<missing>"


def test_a_group_mixing_a_merged_key_or_the_precision_names_the_values(tmp_path):
    write_run(tmp_path, seed=1, score=70.0, config={"train": {"warmup": 0.1}})
    run = write_run(tmp_path, seed=2, score=72.0)  # no train.warmup in its config
    data = json.loads((run / "result.json").read_text())
    (run / "result.json").write_text(json.dumps(data | {"precision": "bf16"}))
    (group,) = build(tmp_path, merge=("backbone.name_or_path", "train.warmup")).groups
    assert group.n == 2
    assert group.mixes == {"train.warmup": ["0.1", "<missing>"], "precision": ["bf16", "fp32"]}


def test_groups_are_ordered_by_method_then_task_in_the_papers_order(tmp_path):
    for method in ("lora", "adapter"):
        for task in ("rte", "sst2"):
            write_run(tmp_path, method=method, task=task)
    order = [g.key[2:] for g in build(tmp_path).groups]
    assert order == [("adapter", "sst2"), ("adapter", "rte"), ("lora", "sst2"), ("lora", "rte")]


def test_variant_labels_name_what_tells_a_methods_variants_apart(tmp_path):
    # LoRA: one variant per cell, but not the same one on both tasks: labelled across the method's cells
    write_run(tmp_path, method="lora", task="sst2", lr=1e-3)
    write_run(tmp_path, method="lora", task="rte", lr=1e-4)
    # adapter: two keys differ, both named
    write_run(tmp_path, method="adapter", lr=1e-3)
    write_run(tmp_path, method="adapter", lr=1e-4, config={"train": {"batch_size": 32}})
    # prefix: a key only one variant sets
    write_run(tmp_path, method="prefix")
    write_run(tmp_path, method="prefix", config={"train": {"warmup": 0.1}})
    # fine-tuning: a task key splits a cell (the label skips task keys, which differ between cells anyway)
    write_run(tmp_path, method="finetune")
    write_run(tmp_path, method="finetune", config={"task": {"max_length": 256}})
    groups = build(tmp_path).groups
    labels = {(g.method, g.task): [] for g in groups}
    for g in groups:
        labels[(g.method, g.task)].append(g.label)
    assert labels[("lora", "sst2")] == ["train.lr=0.001"] and labels[("lora", "rte")] == ["train.lr=0.0001"]
    assert sorted(labels[("adapter", "sst2")]) == [
        "train.batch_size=16, train.lr=0.001",
        "train.batch_size=32, train.lr=0.0001",
    ]
    assert sorted(labels[("prefix", "sst2")]) == ["train.warmup=0.1", "train.warmup=<missing>"]
    split = {(g.method, g.task): (g.split_keys, g.variants) for g in groups}
    assert split[("lora", "sst2")] == ([], 1)
    assert split[("adapter", "sst2")] == (["train.batch_size", "train.lr"], 2)
    assert split[("finetune", "sst2")] == (["task.max_length"], 2)


def test_pick_breaks_a_tie_by_the_first_variant_and_defaults_to_shared(tmp_path):
    write_run(tmp_path, lr=1e-4, score=60.0, dev=70.0)
    write_run(tmp_path, lr=1e-3, score=80.0, dev=70.0)  # the same seeds, dev and failures: a tie
    groups = build(tmp_path).groups
    assert [g.label for g in groups] == ["train.lr=0.0001", "train.lr=0.001"]
    assert aggregate.pick(groups, "cell")[("minilm-l6", 100, "lora", "sst2")] is groups[0]
    assert aggregate.pick(groups) == aggregate.pick(groups, "shared")
    with pytest.raises(ValueError, match="unknown policy best"):
        aggregate.pick(groups, "best")
