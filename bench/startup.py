"""What a command costs before it does its work, each in a fresh child process (CPU = user + sys).

    plan     `unipelt sweep +sweep=paper_lowres --dry-run`: on an empty outputs folder (every config
             planned), again with the plan cached, and on a copy of results/paper_lowres (the skip
             check of a finished grid: 525 of its jobs are done), uncached and cached
    cfg      `unipelt train task=sst2 --cfg`: compose, check and print a config
    startup  `unipelt train task=sst2` (SST-2 K=100, UniPELT APL) in a fresh outputs folder: seconds
             from process start to the end of the first train step, and the whole run's peak RSS

Every function takes `code`: a folder put first on PYTHONPATH (another checkout, to compare two
versions side by side); None measures this checkout.
"""

from __future__ import annotations

import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.common import glue_dir, spread

ROOT = Path(__file__).resolve().parents[1]
PAPER = ROOT / "results" / "paper_lowres"
PAPER_TASKS = "task=sst2,mrpc,cola,rte,stsb"  # the tasks whose K=100 runs results/paper_lowres holds

# Run the CLI in the child; with FIRST_STEP set, stop at the end of the first train step and report.
CHILD = """
import json, os, resource, sys, time
from unipelt_cli.cli import main
def peak_mib():
    # VmHWM: this process's own peak. ru_maxrss would also count the parent's pages before exec
    # (Linux carries the high-water mark across fork + exec), e.g. a bench process holding models.
    try:
        with open("/proc/self/status") as fh:
            return next(int(ln.split()[1]) for ln in fh if ln.startswith("VmHWM:")) / 1024
    except (OSError, StopIteration):
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
if os.environ.get("BENCH_FIRST_STEP"):
    import unipelt_cli.experiment as experiment
    fit = experiment.fit
    def first_step(*args, on_step=None, **kwargs):
        def step(*a, **k):
            print(json.dumps({"first_step": time.time() - float(os.environ["BENCH_START"]),
                              "rss_mib": peak_mib()}), flush=True)
            os._exit(0)
        return fit(*args, on_step=step, **kwargs)
    experiment.fit = first_step
code = main(sys.argv[1:])
print(json.dumps({"rss_mib": peak_mib()}), flush=True)
sys.exit(code)
"""


def _env(code: str | Path | None) -> dict:
    env = {**os.environ, "UNIPELT_GLUE_DIR": glue_dir()}
    path = [str(code or ROOT), env.get("PYTHONPATH", "")]
    env["PYTHONPATH"] = os.pathsep.join(p for p in path if p)
    return env


def run(args: list[str], code=None, env: dict | None = None) -> dict:
    """One `unipelt ARGS` in a child: CPU seconds (user + sys), wall seconds, its stdout and JSON lines."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    env = {**_env(code), **(env or {}), "BENCH_START": repr(time.time())}
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-P", "-c", CHILD, *args], env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        raise SystemExit(f"bench: unipelt {' '.join(args)} failed:\n{proc.stderr[-2000:]}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    found = {}
    for line in proc.stdout.splitlines():
        if line.startswith("{"):
            found.update(json.loads(line))
    lines = [ln for ln in proc.stdout.splitlines() if not ln.startswith("{")]
    return {"cpu": cpu, "wall": wall, "last": lines[-1] if lines else "", **found}


def plan(rounds: int, code=None) -> dict[str, dict]:
    """CPU seconds of the paper_lowres dry runs (see the module docstring), median (min-max) over rounds."""
    sweep = ["sweep", "+sweep=paper_lowres", "--dry-run", "--quiet"]
    out: dict[str, list] = {}
    with tempfile.TemporaryDirectory(prefix="bench-plan-") as tmp:
        empty, cached, copy = Path(tmp) / "empty", Path(tmp) / "cached", Path(tmp) / "copy"
        _write_plan_cache(["+sweep=paper_lowres"], cached, code)
        if PAPER.is_dir():
            shutil.copytree(PAPER, copy)
        for _ in range(rounds):
            shutil.rmtree(empty, ignore_errors=True)
            cases = [("empty outputs, uncached", sweep, empty), ("empty outputs, plan cached", sweep, cached)]
            if PAPER.is_dir():
                done = [*sweep, PAPER_TASKS]
                shutil.rmtree(copy / "sweeps", ignore_errors=True)
                cases.append(("copy of results/paper_lowres, uncached", done, copy))
            for name, args, where in cases:
                out.setdefault(name, []).append(run([*args, "--outputs", str(where)], code))
            if PAPER.is_dir():
                _write_plan_cache(["+sweep=paper_lowres", PAPER_TASKS], copy, code)
                name = "copy of results/paper_lowres, plan cached"
                out.setdefault(name, []).append(run([*done, "--outputs", str(copy)], code))
    return {name: {**spread([r["cpu"] for r in rows]), "wall": spread([r["wall"] for r in rows]),
                   "last": rows[-1]["last"]} for name, rows in out.items()}  # fmt: skip


def _write_plan_cache(overrides: list[str], outputs: Path, code=None) -> None:
    """What a sweep that ran leaves: <outputs>/sweeps/plan-cache.json (a dry run writes nothing)."""
    script = "import sys; from pathlib import Path; from unipelt_cli.sweep import grid; "
    script += "grid.plan(sys.argv[2:], Path(sys.argv[1]))"
    subprocess.run([sys.executable, "-P", "-c", script, str(outputs), *overrides], env=_env(code), check=True)


def cfg(rounds: int, code=None) -> dict:
    """CPU seconds of `unipelt train task=sst2 --cfg`."""
    rows = [run(["train", "task=sst2", "--cfg"], code) for _ in range(rounds)]
    return {**spread([r["cpu"] for r in rows]), "wall": spread([r["wall"] for r in rows])}


def startup(rounds: int, code=None, full: bool = True) -> dict:
    """Seconds from process start to the end of the first train step (fresh outputs folder: cold token
    cache), and with `full` one whole run: its peak RSS and its summary line."""
    first = []
    with tempfile.TemporaryDirectory(prefix="bench-start-") as tmp:
        for i in range(rounds):
            args = ["train", "task=sst2", "--outputs", str(Path(tmp) / f"first{i}"), "--quiet"]
            first.append(run(args, code, env={"BENCH_FIRST_STEP": "1"}))
        whole = run(["train", "task=sst2", "--outputs", str(Path(tmp) / "whole")], code) if full else None
    out = {"first_step": spread([r["first_step"] for r in first]), "cpu": spread([r["cpu"] for r in first]),
           "rss_first_mib": spread([r["rss_mib"] for r in first])}  # fmt: skip
    if whole:
        out.update(rss_mib=whole["rss_mib"], wall=whole["wall"], cpu_whole=whole["cpu"], last=whole["last"])
    return out
