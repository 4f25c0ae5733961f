"""Choose the default head and each method's learning rate on the K-shot dev split, then run the
final seeds. Every run is a plain `unipelt train` command, so every number can be reproduced.

    python scripts/select_defaults.py --outputs outputs/selection --jobs 4 [-- extra overrides]

    phase 0  head: head.pooling in {pooler, cls, mean} for a few methods, seed 1, each method at
             its preset learning rate; pick the pooling with the best mean dev score.
    phase 1  learning rate: every method over its grid, seed 1, chosen head; per method pick the
             rate with the best mean dev score over the tasks (ties: the smaller rate).
    phase 2  final: every method at its chosen rate over all seeds.

Selection reads only `dev` (the 1,000 K-shot selection rows), never `test`. The choices and every
dev score go to <outputs>/selection.json; the commands run go to <outputs>/commands.txt.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

LR_GRID = {
    "finetune": ["2e-5", "5e-5", "1e-4"],
    "bitfit": ["3e-4", "1e-3", "3e-3"],
    "adapter": ["1e-4", "3e-4", "1e-3"],
    "prefix": ["1e-4", "3e-4", "1e-3"],
    "lora": ["2e-4", "5e-4", "1e-3"],
    "unipelt_ap": ["2e-4", "5e-4", "1e-3"],
    "unipelt_apl": ["2e-4", "5e-4", "1e-3"],
    "unipelt_ap_nogate": ["2e-4", "5e-4", "1e-3"],
    "unipelt_apl_nogate": ["2e-4", "5e-4", "1e-3"],
}
HEAD_METHODS = ["finetune", "adapter", "lora", "unipelt_apl"]
HEADS = ["pooler", "cls", "mean"]


class Runner:
    def __init__(self, outputs: Path, jobs: int, extra: list[str], deadline: float):
        self.outputs, self.jobs, self.extra, self.deadline = outputs, jobs, extra, deadline
        self.log = open(outputs / "commands.txt", "a")

    def one(self, overrides: list[str]) -> dict | None:
        if time.time() > self.deadline:
            return None
        cmd = [sys.executable, "-m", "unipelt_cli", "train", "-q", "--outputs", str(self.outputs), *overrides]
        cmd += self.extra
        self.log.write(" ".join(cmd[2:]) + "\n")
        self.log.flush()
        done = subprocess.run(cmd, capture_output=True, text=True)
        line = (done.stdout.strip().splitlines() or [done.stderr.strip()[-300:]])[-1]
        print(f"[{time.strftime('%H:%M:%S')}] {' '.join(overrides)} -> {line}", flush=True)
        if done.returncode != 0:
            return None
        run_dir = Path(line.rsplit("; ", 1)[-1])
        return json.loads((run_dir / "result.json").read_text())

    def many(self, jobs: list[list[str]]) -> list[dict | None]:
        with ThreadPoolExecutor(self.jobs) as pool:
            return list(pool.map(self.one, jobs))


def dev_score(result: dict | None) -> float | None:
    return None if result is None else result["dev"][result["primary_metric"]]


def best(scores: dict[str, list[float | None]]) -> str:
    """Key with the best mean score (missing runs count as absent; ties keep the first key)."""
    means = {
        k: statistics.mean([s for s in v if s is not None]) for k, v in scores.items() if any(s is not None for s in v)
    }
    return max(means, key=lambda k: (means[k], -list(scores).index(k)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--outputs", type=Path, default=Path("outputs/selection"))
    parser.add_argument("--tasks", default="sst2,rte")
    parser.add_argument("--seeds", default="1,2,3")
    parser.add_argument("--methods", default=",".join(LR_GRID))
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--minutes", type=float, default=1e9, help="start no run after this many minutes")
    parser.add_argument("extra", nargs="*", help="overrides added to every run (after --)")
    args = parser.parse_args()
    args.outputs.mkdir(parents=True, exist_ok=True)
    runner = Runner(args.outputs, args.jobs, args.extra, time.time() + 60 * args.minutes)
    tasks, seeds, methods = args.tasks.split(","), args.seeds.split(","), args.methods.split(",")
    record: dict = {"tasks": tasks, "seeds": seeds, "extra": args.extra}

    head_jobs = [(m, h, t) for m in HEAD_METHODS if m in methods for h in HEADS for t in tasks]
    results = runner.many([[f"method={m}", f"head.pooling={h}", f"task={t}", "seed=1"] for m, h, t in head_jobs])
    head_scores: dict[str, list] = {h: [] for h in HEADS}
    for (_, h, _), r in zip(head_jobs, results, strict=True):
        head_scores[h].append(dev_score(r))
    head = best(head_scores)
    record["head"] = {"scores": head_scores, "chosen": head}
    print(f"head: {head} (dev scores {head_scores})", flush=True)

    lr_jobs = [(m, lr, t) for m in methods for lr in LR_GRID[m] for t in tasks]
    results = runner.many([[f"method={m}", f"train.lr={lr}", f"head.pooling={head}", f"task={t}", "seed=1"]
                           for m, lr, t in lr_jobs])  # fmt: skip
    lr_scores: dict[str, dict[str, list]] = {m: {lr: [] for lr in LR_GRID[m]} for m in methods}
    for (m, lr, _), r in zip(lr_jobs, results, strict=True):
        lr_scores[m][lr].append(dev_score(r))
    chosen = {m: best(lr_scores[m]) for m in methods}
    record["lr"] = {"scores": lr_scores, "chosen": chosen}
    print(f"learning rates: {chosen}", flush=True)

    final_jobs = [(m, t, s) for m in methods for t in tasks for s in seeds]
    results = runner.many([[f"method={m}", f"train.lr={chosen[m]}", f"head.pooling={head}", f"task={t}", f"seed={s}"]
                           for m, t, s in final_jobs])  # fmt: skip
    table: dict = {}
    for (m, t, _), r in zip(final_jobs, results, strict=True):
        if r is not None:
            table.setdefault(m, {}).setdefault(t, []).append(r["test"][r["primary_metric"]])
    record["final_test"] = table
    (args.outputs / "selection.json").write_text(json.dumps(record, indent=2) + "\n")
    for m, per_task in table.items():
        cells = [f"{t} {statistics.mean(v):.2f} ({statistics.stdev(v) if len(v) > 1 else 0:.2f}, n={len(v)})"
                 for t, v in per_task.items()]  # fmt: skip
        print(f"{m:<20} lr {chosen[m]:<6} " + "  ".join(cells))


if __name__ == "__main__":
    main()
