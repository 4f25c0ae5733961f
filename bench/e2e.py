"""End-to-end wall time of `unipelt train` in a fresh process, and a projection of a sweep grid.

Projection: for every task of the grid, the default run's costs are measured on that task's own
data (train step of UniPELT APL on its batches, evaluation seconds per example on its K-shot dev
rows and on its test set); every other method's step is scaled by its step ratio to APL measured
on SST-2. A run then costs

    steps  = epochs * ceil(K / batch)                              (no early stopping: an upper bound)
    evals  = epochs                                                (one dev evaluation per epoch)
    cost   = steps * step_s + evals * dev_size * dev_s_per_example
             + (test_size + dev_size) * test_s_per_example + start_s   (final test, dev again for gate stats)
"""

from __future__ import annotations

import math
import os
import subprocess
import sys
import time

from bench.common import OUT, build, glue_dir, spread, timed, train_batches
from bench.steps import Stepper
from unipelt_cli import config
from unipelt_cli.sweep.grid import expand, sweep_overrides
from unipelt_cli.train import predict


def train_wall(overrides: list[str]) -> dict:
    """Seconds for `unipelt train OVERRIDES --force` in a new process, and the run's own split of them."""
    import json

    env = {**os.environ, "UNIPELT_GLUE_DIR": glue_dir()}
    cmd = [
        sys.executable,
        "-m",
        "unipelt_cli",
        "train",
        *overrides,
        "--outputs",
        str(OUT / "e2e"),
        "--force",
        "--quiet",
    ]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"bench: {' '.join(cmd)} failed:\n{proc.stderr[-2000:]}")
    runs = sorted((OUT / "e2e" / "runs").glob("*/result.json"), key=lambda p: p.stat().st_mtime)
    result = json.loads(runs[-1].read_text())
    return {"command": "unipelt train " + " ".join(overrides), "wall": wall, "train": result["train_seconds"],
            "eval": result["eval_seconds"], "metric": result["test"][result["primary_metric"]],
            "precision": result["precision"]}  # fmt: skip


def task_costs(task: str) -> dict:
    """Measured per-task costs of the default method (UniPELT APL) at the default precision."""
    t0 = time.perf_counter()
    _, data, model, args = build(f"task={task}", "method=unipelt_apl")
    start = time.perf_counter() - t0
    stepper = Stepper(model, args, train_batches(data, args, 6))
    stepper.step()
    step = spread(timed(stepper.step, 6))["median"]
    dev = data.dev.subset(range(min(400, len(data.dev))))
    test = data.tests["test"]
    test = test.subset(range(min(1500, len(test))))
    dev_s = min(timed(lambda: predict(model, dev, args), 2)) / len(dev)
    test_s = min(timed(lambda: predict(model, test, args), 2)) / len(test)
    sizes = {name: len(e) for name, e in data.tests.items()}
    return {"task": task, "step": step, "dev_s": dev_s, "test_s": test_s, "start": start,
            "test_size": sizes["test"], "batch": args.batch_size}  # fmt: skip


def project(grid: str, step_ratio: dict[str, float]) -> dict:
    """Seconds for every run of a sweep preset, one run after another on this machine."""
    _, overrides = sweep_overrides([f"+sweep={grid}", f"data.dir={glue_dir()}"])
    with config.composer() as compose:
        cfgs = [compose(combo) for combo in expand(overrides)]
    tasks = sorted({c.task.name for c in cfgs})
    costs = {t: task_costs(t) for t in tasks}
    per_task: dict[str, float] = {}
    for c in cfgs:
        m = costs[c.task.name]
        k = c.budget.k
        steps = c.train.epochs * math.ceil(k / c.train.batch_size)
        dev = c.budget.dev_size
        seconds = (
            steps * m["step"] * step_ratio.get(c.method.name, 1.0)
            + c.train.epochs * dev * m["dev_s"]
            + (m["test_size"] + dev) * m["test_s"]
            + m["start"]
        )
        per_task[c.task.name] = per_task.get(c.task.name, 0.0) + seconds
    return {"grid": grid, "runs": len(cfgs), "costs": costs, "per_task": per_task, "total": sum(per_task.values())}
