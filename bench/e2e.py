"""End-to-end wall time of `unipelt train` in a fresh process, and a projection of a sweep grid.

Projection: for every task of the grid, the default run's costs are measured on that task's own
data (train step of UniPELT APL on its batches, evaluation seconds per example on its K-shot dev
rows and on its test set); every other method's step is scaled by its step ratio to APL measured
on SST-2. A run then costs

    steps  = epochs * ceil(K / batch)                              (no early stopping: an upper bound)
    evals  = epochs                                                (one dev evaluation per epoch)
    cost   = steps * step_s + evals * dev_size * dev_s_per_example
             + (test_size + dev_size) * test_s_per_example + start_s   (final test, dev again for gate stats)

and again with early stopping as it happened: steps and evals of the grid's committed run where
there is one (results/paper_lowres), else the mean fraction of the upper bound that the committed
runs of the same method and budget used.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path

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


def committed_lengths(folder: Path) -> dict[tuple, tuple[int, int]]:
    """(task, method, K, seed) -> (steps, dev evaluations) of every finished run under `folder`."""
    out = {}
    for path in sorted(folder.glob("runs/*/result.json")):
        r = json.loads(path.read_text())
        out[(r["task"], r["method"], r["budget"], r["seed"])] = (r["steps"], len(r["history"]))
    return out


def project(grid: str, step_ratio: dict[str, float], lengths: dict[tuple, tuple[int, int]] | None = None) -> dict:
    """Seconds for every run of a sweep preset, one run after another on this machine: each run for
    every epoch (`total`), and, given `lengths` (committed_lengths), each run for its committed length
    where there is one, else for the mean fraction of the upper bound that the committed runs of its
    method and budget used (`total_own`)."""
    _, overrides = sweep_overrides([f"+sweep={grid}", f"data.dir={glue_dir()}"])
    with config.composer() as compose:
        cfgs = [compose(combo) for combo in expand(overrides)]
    tasks = sorted({c.task.name for c in cfgs})
    costs = {t: task_costs(t) for t in tasks}
    lengths = lengths or {}
    fractions: dict[tuple, list[float]] = {}
    for c in cfgs:
        upper = c.train.epochs * math.ceil(c.budget.k / c.train.batch_size)
        own = lengths.get((c.task.name, c.method.name, c.budget.k, c.seed))
        if own:
            fractions.setdefault((c.method.name, c.budget.k), []).append(own[0] / upper)
    per_task: dict[str, float] = {}
    per_task_own: dict[str, float] = {}
    found = 0
    for c in cfgs:
        m, dev = costs[c.task.name], c.budget.dev_size
        per_epoch = math.ceil(c.budget.k / c.train.batch_size)
        steps, evals = c.train.epochs * per_epoch, c.train.epochs

        def cost(steps: int, evals: int, m=m, dev=dev, c=c) -> float:
            return (steps * m["step"] * step_ratio.get(c.method.name, 1.0) + evals * dev * m["dev_s"]
                    + (m["test_size"] + dev) * m["test_s"] + m["start"])  # fmt: skip

        per_task[c.task.name] = per_task.get(c.task.name, 0.0) + cost(steps, evals)
        own = lengths.get((c.task.name, c.method.name, c.budget.k, c.seed))
        found += own is not None
        if own is None:
            share = fractions.get((c.method.name, c.budget.k))
            f = sum(share) / len(share) if share else 1.0
            own = (round(f * steps), math.ceil(f * evals))
        per_task_own[c.task.name] = per_task_own.get(c.task.name, 0.0) + cost(*own)
    return {"grid": grid, "runs": len(cfgs), "costs": costs, "per_task": per_task, "total": sum(per_task.values()),
            "per_task_own": per_task_own, "total_own": sum(per_task_own.values()), "committed": found}  # fmt: skip
