"""Sweeps without training: grid expansion, presets, planning, locks and run states."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from typer.testing import CliRunner

from unipelt_cli import config, runs
from unipelt_cli.cli import app
from unipelt_cli.sweep import grid
from unipelt_cli.sweep.job import job_state
from unipelt_cli.sweep.lock import RunLock, holder


def combos(*overrides):
    return grid.expand(grid.sweep_overrides(list(overrides))[1])


def test_grid_is_the_product_in_the_given_order():
    methods = "method=adapter,prefix,lora,unipelt_apl"
    jobs = combos("task=sst2,rte", "budget=k100,k500,k1000", methods, "seed=range(1,6)")
    assert len(jobs) == 2 * 3 * 4 * 5 == len({tuple(j) for j in jobs})
    assert jobs[0] == ["task=sst2", "budget=k100", "method=adapter", "seed=1"]
    assert jobs[1] == ["task=sst2", "budget=k100", "method=adapter", "seed=2"]  # the last key varies fastest
    assert jobs[-1] == ["task=rte", "budget=k1000", "method=unipelt_apl", "seed=5"]


def test_grid_grammar_fixed_values_glob_range_step():
    jobs = combos("method=glob(unipelt_ap*)", "seed=range(1,6,2)", "train.lr=1e-4")
    methods = {j[0] for j in jobs}
    wanted = ("unipelt_ap", "unipelt_apl", "unipelt_ap_nogate", "unipelt_apl_nogate", "unipelt_apli")
    assert methods == {f"method={m}" for m in wanted}
    assert {j[1] for j in jobs} == {"seed=1", "seed=3", "seed=5"}
    assert all(j[2] == "train.lr=1e-4" for j in jobs) and len(jobs) == 15


def test_paper_lowres_preset_is_the_papers_840_runs():
    jobs = combos("+sweep=paper_lowres")
    assert len(jobs) == 840 == len({tuple(j) for j in jobs})
    axes = {}
    for job in jobs:
        for ov in job:
            key, value = ov.split("=")
            axes.setdefault(key, set()).add(value)
    assert axes["task"] == set(config.groups()["task"])
    assert axes["budget"] == {"k100", "k500", "k1000"}
    assert axes["method"] == {"finetune", "bitfit", "adapter", "prefix", "lora", "unipelt_ap", "unipelt_apl"}
    assert axes["seed"] == {"1", "2", "3", "4", "5"}
    assert jobs[0][0] == "seed=1" and jobs[len(jobs) // 5][0] == "seed=2"  # seed-major: all of seed 1 first


def test_unified_view_preset_is_175_runs_of_the_new_methods():
    from test_methods import UNIFIED_VIEW

    jobs = combos("+sweep=unified_view")
    assert len(jobs) == 175 == len({tuple(j) for j in jobs})
    methods = {ov.split("=")[1] for job in jobs for ov in job if ov.startswith("method=")}
    assert methods == set(UNIFIED_VIEW)
    assert jobs[0][0] == "seed=1" and jobs[35][0] == "seed=2"


def test_command_line_replaces_a_preset_key():
    jobs = combos("+sweep=paper_lowres", "task=rte", "seed=7", "train.epochs=3")
    assert len(jobs) == 3 * 7
    assert all("task=rte" in j and "seed=7" in j and "train.epochs=3" in j for j in jobs)


@pytest.mark.parametrize("name", grid.preset_names())
def test_every_preset_plans(name, tmp_path):
    # Composing all 840 paper jobs takes minutes: the first and last job, and one job per method
    # and per budget (every task and method YAML composes alone in test_config).
    jobs = combos(f"+sweep={name}")
    picks = {tuple(jobs[0]), tuple(jobs[-1])}
    by_value = {}
    for job in jobs:
        for ov in job:
            if ov.startswith(("method=", "budget=")):
                by_value.setdefault(ov, job)
    picks |= {tuple(j) for j in by_value.values()}
    with config.composer() as compose:
        for job in picks:
            compose(list(job))


def test_smoke_preset_is_twelve_distinct_runs(tmp_path):
    jobs = grid.plan(["+sweep=smoke"], tmp_path)
    assert len(jobs) == 12 == len({j.run_id for j in jobs}) == len({j.config_hash for j in jobs})


def test_plan_matches_compose_merges_duplicates_and_caches(tmp_path, monkeypatch):
    overrides = ["task=rte", "method=lora,bitfit", "seed=1,1,2"]
    jobs = grid.plan(overrides, tmp_path)
    assert len(jobs) == 4  # seed=1 twice is one run
    for job in jobs:
        cfg = config.compose(list(job.overrides))
        digest = config.config_hash(cfg)
        assert (job.run_id, job.config_hash) == (runs.run_name(cfg, digest), digest)
    assert (tmp_path / "sweeps" / grid.CACHE_FILE).is_file()

    def no_compose():
        raise AssertionError("the second plan should come from the cache")

    monkeypatch.setattr(config, "composer", no_compose)
    assert grid.plan(overrides, tmp_path) == jobs


@pytest.mark.parametrize(
    "overrides,needle",
    [
        (["+sweep=nope"], "unknown sweep preset 'nope': choose one of mpnet_k500_cpu, mpnet_lowres, paper_lowres"),
        (["+sweep=smoke", "+sweep=paper_lowres"], "one sweep preset at a time"),
        (["train.lr=interval(0,1)"], "a sweep needs a finite list of values"),
        (["train.lr=glob(*)"], "glob() picks options of a config group"),
        (["method=glob(zzz*)"], "gives no value"),
        (["task=sst2,sst3"], "unknown task 'sst3'"),
        (["task=sst2", "train.lrr=1,2"], "job task=sst2 train.lrr=1: unknown config key 'train.lrr'"),
        (["task=sst2,"], "sweep overrides look like"),
        ([], "a sweep needs a grid"),
    ],
)
def test_bad_sweeps_are_one_line_errors(overrides, needle, tmp_path):
    result = CliRunner().invoke(app, ["sweep", "--dry-run", "--outputs", str(tmp_path), *overrides])
    assert result.exit_code == 2 and result.output.startswith("error: ") and "Traceback" not in result.output
    assert needle in result.output and result.output.count("\n") == 1, result.output


def test_ls_lists_sweep_presets():
    runner = CliRunner()
    assert "sweep: mpnet_k500_cpu, mpnet_lowres, paper_lowres, smoke, unified_view" in runner.invoke(app, ["ls"]).output
    out = runner.invoke(app, ["ls", "sweep"]).output
    assert "840 runs" in out and out.count("\n") == len(grid.preset_names())


def test_sweep_help_does_not_import_torch():
    code = (
        "import sys; from typer.testing import CliRunner; from unipelt_cli.cli import app; "
        "r = CliRunner().invoke(app, ['sweep', '--help']); "
        "assert r.exit_code == 0 and '--dry-run' in r.output and '+sweep=' in r.output, r.output; "
        "assert 'torch' not in sys.modules, 'heavy import'"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_lock_has_one_owner_and_says_who(tmp_path):
    first, second = RunLock(tmp_path), RunLock(tmp_path)
    assert holder(tmp_path) is None
    assert first.acquire(sweep="s1")
    assert not second.acquire()
    info = holder(tmp_path)
    assert info["pid"] == os.getpid() and info["sweep"] == "s1"
    first.release()
    assert holder(tmp_path) is None and second.acquire()
    second.release()


def test_lock_dies_with_its_owner(tmp_path):
    code = (
        "import sys, time; from unipelt_cli.sweep.lock import RunLock; "
        f"assert RunLock({str(tmp_path)!r}).acquire(); print('locked', flush=True); time.sleep(60)"
    )
    child = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout.readline().strip() == "locked"
        assert holder(tmp_path)["pid"] == child.pid
        assert not RunLock(tmp_path).acquire()
    finally:
        child.kill()
        child.wait()
    assert holder(tmp_path) is None  # kill -9: the kernel dropped the lock, nothing is stale


def write_status(run_dir, **data):
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / runs.STATUS_FILE).write_text(json.dumps(data))


def test_job_states(tmp_path):
    assert job_state(tmp_path / "never") == ("pending", "")
    write_status(tmp_path / "failed", state="failed", error="boom")
    assert job_state(tmp_path / "failed") == ("failed", "failed: boom")
    write_status(tmp_path / "died", state="running", pid=4242, host="node7")
    state, detail = job_state(tmp_path / "died")
    assert state == "pending" and "owner died (pid 4242 on node7" in detail
    write_status(tmp_path / "stopped", state="interrupted")
    assert job_state(tmp_path / "stopped")[0] == "pending"
    lock = RunLock(tmp_path / "died")
    assert lock.acquire()
    assert job_state(tmp_path / "died")[0] == "running"
    lock.release()
    result = {"schema_version": 1, "primary_metric": "accuracy", "test": {"accuracy": 81.5}, "dev": {"accuracy": 80.0}}
    result |= {"task": "sst2", "method": "lora", "budget": 100, "seed": 1, "best_step": 5}  # runs.RESULT_KEYS
    result |= {"train_seconds": 1.0, "eval_seconds": 1.0}
    (tmp_path / "died" / runs.RESULT_FILE).write_text(json.dumps(result))
    assert job_state(tmp_path / "died") == ("done", "test accuracy 81.50 (dev 80.00)")


def test_dry_run_lists_jobs_states_and_total(tmp_path):
    jobs = grid.plan(["task=rte", "method=lora", "seed=1,2,3"], tmp_path)
    write_status(tmp_path / "runs" / jobs[1].run_id, state="failed", error="boom")
    out = CliRunner().invoke(app, ["sweep", "-n", "--outputs", str(tmp_path), "task=rte", "method=lora", "seed=1,2,3"])
    assert out.exit_code == 0, out.output
    lines = out.output.strip().splitlines()
    assert lines[0].startswith(f"pending  {jobs[0].run_id}") and lines[1].startswith(f"failed   {jobs[1].run_id}")
    assert lines[-1] == "3 jobs: 0 done, 1 failed, 0 running, 2 pending; 3 would run"
