"""Benchmarks, printed side by side from one process: `make bench` (or `python bench/run.py`).

1. train-step time on identical SST-2 batches (fp32 and bf16 autocast), median of N steps;
2. evaluation throughput (examples/s) on SST-2 dev, length-sorted batches under inference mode.

Figures are medians; the machine is noisy, so compare ratios measured in the same run.
Needs the real GLUE folder (UNIPELT_GLUE_DIR or ../shared/data/glue).
"""

from __future__ import annotations

import os
import statistics
import sys
import time
from pathlib import Path

import torch

from unipelt_cli import config
from unipelt_cli.data.encode import batches
from unipelt_cli.experiment import setup
from unipelt_cli.train import evaluate, loss_fn, make_optimizer

STEPS = int(os.environ.get("BENCH_STEPS", "12"))
OUT = Path(os.environ.get("BENCH_OUTPUTS", "outputs/bench"))


def glue_dir() -> str:
    for candidate in (os.environ.get("UNIPELT_GLUE_DIR"), Path(__file__).resolve().parents[2] / "shared/data/glue"):
        if candidate and Path(candidate, "SST-2", "train.tsv").is_file():
            return str(candidate)
    sys.exit("bench needs real GLUE: set UNIPELT_GLUE_DIR")


def step_times(model, data, args, bf16: bool) -> list[float]:
    """Seconds per optimisation step over the same batches (first two steps are warm-up)."""
    optimizer, _ = make_optimizer(model, args, STEPS)
    model.train()
    train_batches = list(batches(data.train, args.batch_size, shuffle=True, seed=0))
    times = []
    for i in range(STEPS + 2):
        _, batch = train_batches[i % len(train_batches)]
        batch = dict(batch)
        labels = batch.pop("labels")
        t0 = time.perf_counter()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            logits = model(**batch).logits
        loss_fn(logits, labels, args.regression).backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if i >= 2:
            times.append(time.perf_counter() - t0)
    return times


def main() -> None:
    overrides = [f"data.dir={glue_dir()}", "task=sst2", "budget=k100"]
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {STEPS} steps per figure")
    cfg = config.compose(overrides)
    _, data, model, args = setup(cfg, OUT)
    rows = []
    for bf16 in (False, True):
        t = step_times(model, data, args, bf16)
        rows.append(("finetune", "bf16" if bf16 else "fp32", statistics.median(t), min(t), max(t)))
    base = rows[0][2]
    print("\n1. train step, SST-2 K=100 batches of", args.batch_size)
    print(f"   {'method':<10} {'prec':<5} {'median s':>9} {'min':>7} {'max':>7} {'vs finetune fp32':>17}")
    for method, prec, med, lo, hi in rows:
        print(f"   {method:<10} {prec:<5} {med:9.4f} {lo:7.4f} {hi:7.4f} {med / base:16.2f}x")
    print("\n2. evaluation throughput, SST-2 dev (872 examples)")
    for bf16 in (False, True):
        args.bf16 = bf16
        runs = []
        for _ in range(3):
            t0 = time.perf_counter()
            evaluate(model, data.tests["test"], args)
            runs.append(len(data.tests["test"]) / (time.perf_counter() - t0))
        print(
            f"   {'bf16' if bf16 else 'fp32'}: median {statistics.median(runs):7.1f} examples/s "
            f"(min {min(runs):.1f}, max {max(runs):.1f})"
        )


if __name__ == "__main__":
    main()
