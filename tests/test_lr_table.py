"""scripts/lr_table.py: the selection rule (best mean dev over the tasks, ties to the smaller rate)
and --write-conf, whose files the config then picks for that backbone and method."""

from __future__ import annotations

import json
from pathlib import Path

import yaml
from conftest import load_script

from unipelt_cli import config

REPO = Path(__file__).resolve().parent.parent


def selection(folder: Path, rows: list[tuple[str, float, str, float]], seed: int = 1) -> Path:
    for n, (method, lr, task, dev) in enumerate(rows):
        run = folder / "runs" / f"{task}-{method}-{n}"
        run.mkdir(parents=True)
        result = {"method": method, "task": task, "seed": seed, "primary_metric": "accuracy", "dev": {"accuracy": dev}}
        (run / "result.json").write_text(json.dumps(result))
        (run / "config.yaml").write_text(yaml.safe_dump({"train": {"lr": lr}}))
    return folder


def test_the_best_mean_dev_wins_ties_go_to_the_smaller_rate_and_incomplete_rates_do_not_count(tmp_path):
    lr_table = load_script("lr_table")
    rows = [
        ("adapter", 3e-4, "sst2", 80.0), ("adapter", 3e-4, "rte", 50.0),  # mean 65
        ("adapter", 1e-3, "sst2", 70.0), ("adapter", 1e-3, "rte", 62.0),  # mean 66: wins
        ("lora", 5e-4, "sst2", 70.0), ("lora", 5e-4, "rte", 60.0),  # mean 65
        ("lora", 1e-3, "sst2", 60.0), ("lora", 1e-3, "rte", 70.0),  # mean 65: a tie, the smaller rate wins
        ("prefix", 1e-3, "sst2", 99.0),  # no RTE run: not chosen
        ("prefix", 3e-4, "sst2", 70.0), ("prefix", 3e-4, "rte", 50.0),
    ]  # fmt: skip
    grid = lr_table.load(selection(tmp_path / "sel", rows))
    grid["adapter"][1e-4]["sst2"] = 99.0  # a seed-2 run would not be loaded; an incomplete rate never wins
    means, chosen = lr_table.choose(grid, ["rte", "sst2"])
    assert chosen == {"adapter": 1e-3, "lora": 5e-4, "prefix": 3e-4}
    assert means["adapter"] == {3e-4: 65.0, 1e-3: 66.0}


def test_seed_2_runs_are_not_selection_runs(tmp_path):
    lr_table = load_script("lr_table")
    grid = lr_table.load(selection(tmp_path / "sel", [("adapter", 1e-3, "sst2", 80.0)], seed=2))
    assert not grid


def test_written_rates_are_what_the_config_picks_for_that_backbone(tmp_path, conf_with_lr):
    lr_table = load_script("lr_table")
    root = conf_with_lr({})
    written = lr_table.write_conf("mpnet-base", {"adapter": 3e-4, "finetune": 2e-5}, tmp_path, root / "lr")
    assert sorted(p.name for p in written) == ["mpnet-base_adapter.yaml", "mpnet-base_finetune.yaml"]
    assert config.compose(["backbone=mpnet-base", "method=adapter"]).train.lr == 3e-4
    assert config.compose(["backbone=mpnet-base", "method=finetune"]).train.lr == 2e-5
    assert config.compose(["method=finetune"]).train.lr == 5e-5  # MiniLM: unchanged
