"""Sweeps end to end on the tiny random BERT: resume, kill -9, two sweeps at once, failures, back-ends.

Each tiny run takes ~2 s; the tests that need a real process boundary (kill -9, Ctrl-C, two
sweeps at once) start `python -m unipelt_cli sweep`, the others run the command in-process.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import tiny_overrides
from typer.testing import CliRunner

from unipelt_cli.cli import app
from unipelt_cli.sweep.backends import available_cpus
from unipelt_cli.sweep.lock import holder

WAIT_S = 180


@pytest.fixture(autouse=True)
def keep_torch_threads():
    """In-process sweeps set torch's thread count (runtime.threads); give the next tests theirs back."""
    import torch

    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


def one_thread(args) -> list[str]:
    """One torch thread a run unless the test divides threads itself (-j): several processes share
    2 cores here, and torch's threads slow to a crawl when they outnumber the free cores."""
    return [*args, *(["runtime.threads=1"] if "-j" not in args else [])]


def sweep(out: Path, backbone, glue, *args, expect=0):
    overrides = tiny_overrides(backbone, glue)
    result = CliRunner().invoke(app, ["sweep", "--outputs", str(out), *overrides, *one_thread(args)])
    assert result.exit_code == expect, result.output
    return result


def start_sweep(out: Path, backbone, glue, *args) -> subprocess.Popen:
    """The sweep as a terminal starts it: SIGINT at its default even where the tests run as a shell's
    background job (`cmd &` in a script ignores SIGINT, and children inherit that: Ctrl-C would be lost)."""
    cmd = [sys.executable, "-m", "unipelt_cli", "sweep", "--outputs", str(out), *tiny_overrides(backbone, glue)]
    return subprocess.Popen(
        cmd + one_thread(args),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )


def run_dirs(out: Path) -> list[Path]:
    return sorted(p for p in (out / "runs").iterdir() if p.is_dir())


def results(out: Path) -> dict[str, float]:
    """run name -> result.json mtime, for the runs that finished."""
    return {p.parent.name: p.stat().st_mtime_ns for p in (out / "runs").glob("*/result.json")}


def trainings(run_dir: Path) -> int:
    """How many times a run started training (each start logs `run <folder>`)."""
    log = run_dir / "train.log"
    return sum(" run " in line for line in log.read_text().splitlines()) if log.exists() else 0


def status(run_dir: Path) -> str | None:
    try:
        return json.loads((run_dir / "status.json").read_text())["state"]
    except (OSError, ValueError):
        return None


def manifests(out: Path) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted((out / "sweeps").glob("*/manifest.json"))]


def wait_for(condition, proc: subprocess.Popen):
    deadline = time.time() + WAIT_S
    while not condition():
        if proc.poll() is not None:
            pytest.fail(f"the sweep ended before the test could interrupt it:\n{proc.stdout.read()}")
        assert time.time() < deadline, "timed out"
        time.sleep(0.05)


def test_sweep_runs_a_grid_then_skips_what_finished(tmp_path, tiny_backbone, tiny_glue):
    out = tmp_path / "out"
    first = sweep(out, tiny_backbone, tiny_glue, "task=sst2,stsb")
    assert "2 jobs in" in first.output and "2 done, 0 skipped (already finished), 0 failed" in first.output
    done = results(out)
    assert len(done) == 2 and all(status(d) == "done" for d in run_dirs(out))
    (manifest,) = manifests(out)
    assert manifest["state"] == "finished" and manifest["counts"]["done"] == 2
    assert manifest["command"].startswith("unipelt sweep") and "task=sst2,stsb" in manifest["command"]
    assert {j["run_id"] for j in manifest["jobs"]} == set(done) and "git_commit" in manifest

    again = sweep(out, tiny_backbone, tiny_glue, "task=sst2,stsb")
    assert "0 done, 2 skipped (already finished), 0 failed" in again.output
    assert results(out) == done and all(trainings(d) == 1 for d in run_dirs(out))
    dry = sweep(out, tiny_backbone, tiny_glue, "task=sst2,stsb", "--dry-run")
    assert dry.output.count("done ") == 2
    assert "2 jobs: 2 done, 0 failed, 0 running, 0 pending; 0 would run" in dry.output

    forced = sweep(out, tiny_backbone, tiny_glue, "task=sst2", "--force")
    assert "1 done, 0 skipped" in forced.output
    assert sum(trainings(d) for d in run_dirs(out)) == 3


def test_a_failing_run_is_recorded_and_the_others_finish(tmp_path, tiny_backbone, tiny_glue):
    out = tmp_path / "out"
    # the tiny GLUE folder has no RTE: that run fails when it loads its data
    result = sweep(out, tiny_backbone, tiny_glue, "task=sst2,rte,stsb", expect=1)
    assert "2 done, 0 skipped (already finished), 1 failed" in result.output
    (failed,) = [line for line in result.output.splitlines() if line.startswith("  failed rte-")]
    assert "folder not found" in failed
    states = {d.name.split("-")[0]: status(d) for d in run_dirs(out)}
    assert states == {"sst2": "done", "rte": "failed", "stsb": "done"}
    (manifest,) = manifests(out)
    (rte,) = [j for j in manifest["jobs"] if j["run_id"].startswith("rte-")]
    assert rte["state"] == "failed" and "folder not found" in rte["reason"]

    dry = sweep(out, tiny_backbone, tiny_glue, "task=sst2,rte,stsb", "-n")
    assert "1 failed" in dry.output and "would run" in dry.output
    retry = sweep(out, tiny_backbone, tiny_glue, "task=sst2,rte,stsb", expect=1)  # failed runs run again
    assert "0 done, 2 skipped (already finished), 1 failed" in retry.output


def test_a_diverging_run_is_recorded_and_the_sweep_carries_on(tmp_path, tiny_backbone, tiny_glue):
    out = tmp_path / "out"
    # train.lr=1e30: the first AdamW step makes weights ~1e30 and the next loss NaN
    result = sweep(out, tiny_backbone, tiny_glue, "train.lr=1e30,1e-3", expect=1)
    assert "1 done, 0 skipped (already finished), 1 failed" in result.output
    by_state = {status(d): d for d in run_dirs(out)}
    assert sorted(by_state) == ["diverged", "done"]
    assert (by_state["done"] / "result.json").is_file() and not (by_state["diverged"] / "result.json").exists()
    assert "diverged: loss became" in sweep(out, tiny_backbone, tiny_glue, "train.lr=1e30,1e-3", "-n").output


def test_kill_9_mid_run_then_resume_completes_every_run_once(tmp_path, tiny_backbone, tiny_glue):
    out = tmp_path / "out"
    grid = ("task=sst2", "seed=1,2,3")
    proc = start_sweep(out, tiny_backbone, tiny_glue, *grid)

    def one_done_one_training():
        runs = run_dirs(out) if (out / "runs").is_dir() else []
        finished = [d for d in runs if (d / "result.json").exists()]
        training = [d for d in runs if status(d) == "running" and not (d / "result.json").exists()]
        return finished and training

    wait_for(one_done_one_training, proc)
    proc.kill()
    proc.wait()
    before = results(out)
    assert len(before) == 1
    (killed,) = [d for d in run_dirs(out) if status(d) == "running"]
    assert holder(killed) is None and not (killed / "result.json").exists()  # no lock left, no half result
    dry = sweep(out, tiny_backbone, tiny_glue, *grid, "-n")
    assert "its owner died" in dry.output and "3 jobs: 1 done, 0 failed, 0 running, 2 pending" in dry.output

    resumed = sweep(out, tiny_backbone, tiny_glue, *grid)
    assert "2 done, 1 skipped (already finished), 0 failed" in resumed.output
    after = results(out)
    assert len(after) == 3 and all(after[name] == mtime for name, mtime in before.items())
    assert all(status(d) == "done" for d in run_dirs(out))
    counts = {d.name: trainings(d) for d in run_dirs(out)}
    assert all(n == 1 for name, n in counts.items() if name != killed.name), counts  # none repeated
    assert 1 <= counts[killed.name] <= 2  # the killed run again (once more if it had got that far)


def test_two_sweeps_at_once_share_the_work(tmp_path, tiny_backbone, tiny_glue):
    out = tmp_path / "out"
    grid = ("task=sst2,stsb", "seed=1,2")  # both take the jobs in the same order: they collide on each
    procs = [start_sweep(out, tiny_backbone, tiny_glue, *grid) for _ in range(2)]
    outputs = [p.communicate(timeout=WAIT_S)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outputs
    assert len(results(out)) == 4
    assert all(status(d) == "done" and trainings(d) == 1 for d in run_dirs(out)), outputs  # nothing ran twice
    first, second = manifests(out)
    assert first["sweep_id"] != second["sweep_id"]
    by_run = {}
    for manifest in (first, second):
        for job in manifest["jobs"]:
            by_run.setdefault(job["run_id"], []).append(job["state"])
    assert all(sorted(s) == ["done", "skipped"] for s in by_run.values()), by_run


def test_parallel_workers_stop_on_ctrl_c_and_resume(tmp_path, tiny_backbone, tiny_glue):
    out = tmp_path / "out"
    # runs of several seconds: Ctrl-C lands while they train, well after the test sees them start
    grid = ("task=sst2", "seed=1,2,3", "train.epochs=120", "train.patience=1000", "-j", "2")
    proc = start_sweep(out, tiny_backbone, tiny_glue, *grid)

    def in_flight():
        # both workers training, or (on a machine where one worker starts slower than a whole tiny run
        # takes) one training after the other finished: Ctrl-C lands while a run is in flight, never after
        states = [status(d) for d in run_dirs(out)] if (out / "runs").is_dir() else []
        return states.count("running") == 2 or ("running" in states and "done" in states)

    wait_for(in_flight, proc)
    training = [d for d in run_dirs(out) if status(d) == "running"]
    proc.send_signal(signal.SIGINT)
    text = proc.communicate(timeout=60)[0]
    assert proc.returncode == 130, text
    assert "interrupted with" in text and "run the same command again to resume" in text
    # each run in flight was stopped (or, had it just finished, is done); no lock or worker is left
    assert {status(d) for d in training} <= {"interrupted", "done"} and "interrupted" in {status(d) for d in training}
    for run_dir in training:
        assert holder(run_dir) is None and (status(run_dir) == "done") == (run_dir / "result.json").exists()
        pid = json.loads((run_dir / "status.json").read_text())["pid"]
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
    (manifest,) = manifests(out)
    assert manifest["state"] == "interrupted"

    resumed = sweep(out, tiny_backbone, tiny_glue, *grid[:-2])  # resume in-process: no worker start-up
    assert "0 failed" in resumed.output and len(results(out)) == 3
    assert all(status(d) == "done" for d in run_dirs(out))


def test_workers_divide_the_cpu_threads(tmp_path, tiny_backbone, tiny_glue):
    out = tmp_path / "out"
    result = sweep(out, tiny_backbone, tiny_glue, "task=sst2,stsb", "-j", "2")
    assert "2 done" in result.output and "local workers (2 at a time)" in result.output
    threads = max(1, available_cpus() // 2)
    for path in (out / "runs").glob("*/result.json"):
        assert f"({threads} threads)" in json.loads(path.read_text())["provenance"]["device"]


def test_submitit_local_executor_runs_a_small_grid(tmp_path, tiny_backbone, tiny_glue):
    pytest.importorskip("submitit")
    out = tmp_path / "out"
    result = sweep(out, tiny_backbone, tiny_glue, "task=sst2,stsb", "--backend", "submitit-local", "-j", "2")
    assert "2 done, 0 skipped" in result.output and "submitit local executor" in result.output
    assert len(results(out)) == 2
    (manifest,) = manifests(out)
    assert manifest["backend"] == "submitit local executor"
    assert list((Path(manifest["outputs"]) / "sweeps" / manifest["sweep_id"] / "submitit").glob("*_result.pkl"))
    again = sweep(out, tiny_backbone, tiny_glue, "task=sst2,stsb", "--backend", "submitit-local")
    assert "0 done, 2 skipped" in again.output
