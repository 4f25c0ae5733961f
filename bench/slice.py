"""One real slice of the paper grid timed end to end, beside the projection of bench/e2e.py.

slice       `unipelt sweep task=sst2 budget=k1000 method=<the paper's 7> seed=1 -j J` into a
            fresh outputs folder, for J = 1 (one run after another, as the projection assumes)
            and J = 2 (two workers with one thread each: what a user runs on 2 cores)
projection  the same 7 runs from costs measured in this process just before: UniPELT APL's
            SST-2 step and its dev and test seconds per example (bench/e2e.task_costs), and
            each method's step against APL's on the same K=1000 batches; once as the grid
            projection does it (every epoch: an upper bound), once with each run's own length
            (the steps and dev evaluations it made before early stopping, from its result.json)

run cost = steps * step_s * ratio + evals * dev_size * dev_s + (test_size + dev_size) * test_s + start_s
"""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys
import time

from bench.common import OUT, build, glue_dir, spread, train_batches
from bench.e2e import task_costs
from bench.steps import Stepper, interleaved

METHODS = ["finetune", "bitfit", "adapter", "prefix", "lora", "unipelt_ap", "unipelt_apl"]
SLICE = ["task=sst2", "budget=k1000", "seed=1"]


def step_ratios(rounds: int, n: int = 6) -> dict[str, float]:
    """Each method's train step against UniPELT APL's, default precision, same SST-2 K=1000 batches."""
    steppers, batches = {}, None
    for method in METHODS:
        _, data, model, args = build(*SLICE, f"method={method}")
        batches = batches or train_batches(data, args, n)
        steppers[method] = Stepper(model, args, batches)
        steppers[method].one_pass()  # warm-up
    times = {m: spread(t)["median"] for m, t in interleaved(steppers, rounds).items()}
    return {m: t / times["unipelt_apl"] for m, t in times.items()}


def run_cost(costs: dict, ratio: float, steps: int, evals: int, dev_size: int) -> float:
    return (steps * costs["step"] * ratio + evals * dev_size * costs["dev_s"]
            + (costs["test_size"] + dev_size) * costs["test_s"] + costs["start"])  # fmt: skip


def sweep_wall(jobs: int) -> tuple[float, list[dict]]:
    """Wall seconds of the slice's sweep with `jobs` workers in a fresh outputs folder, and its results."""
    out = OUT / f"slice-j{jobs}"
    shutil.rmtree(out, ignore_errors=True)
    cmd = [sys.executable, "-m", "unipelt_cli", "sweep", *SLICE, f"method={','.join(METHODS)}",
           "-j", str(jobs), "--outputs", str(out)]  # fmt: skip
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, env={**os.environ, "UNIPELT_GLUE_DIR": glue_dir()}, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"bench: {' '.join(cmd)} failed:\n{proc.stderr[-2000:]}")
    results = [json.loads(p.read_text()) for p in sorted((out / "runs").glob("*/result.json"))]
    if len(results) != len(METHODS):
        raise SystemExit(f"bench: the slice made {len(results)} runs, not {len(METHODS)}")
    return wall, results


def measure(rounds: int, jobs=(1, 2)) -> dict:
    costs = task_costs("sst2")
    ratios = step_ratios(rounds)
    _, data, _, args = build(*SLICE, "method=unipelt_apl")
    dev_size, per_epoch = len(data.dev), math.ceil(len(data.train) / args.batch_size)
    steps_max = args.max_steps or args.epochs * per_epoch
    evals_max = math.ceil(steps_max / (args.eval_every or per_epoch))
    walls, runs = {}, {}
    for j in jobs:
        walls[j], results = sweep_wall(j)
        runs[j] = {r["method"]: r for r in results}
    rows = []
    for method in METHODS:
        r = runs[jobs[0]][method]
        evals = len(r["history"])
        rows.append({
            "method": method, "ratio": ratios[method], "steps": r["steps"], "evals": evals,
            "upper": run_cost(costs, ratios[method], steps_max, evals_max, dev_size),
            "own_length": run_cost(costs, ratios[method], r["steps"], evals, dev_size),
            "run_s": r["train_seconds"] + r["eval_seconds"],
            "metric": {j: runs[j][method]["test"][r["primary_metric"]] for j in jobs},
        })  # fmt: skip
    return {"costs": costs, "rows": rows, "walls": walls, "steps_max": steps_max, "evals_max": evals_max}
