"""One sweep job, self-contained: every back-end (this process, local workers, Slurm) runs `run_job`.

A job checks for itself whether its run is already finished, takes the run's lock, checks again
(another sweep may have finished it meanwhile), composes its config, checks that the config still
has the identity the sweep planned, and trains. So a job that is re-queued, run twice, or started
by two sweeps at once never repeats finished work, and a crash anywhere leaves no half-written
result (result.json appears in one rename, see runs.py).

Outcomes are plain dicts (they cross process boundaries): state is one of
  done         trained now
  skipped      already finished (before the sweep, or by another process while it waited)
  failed       the run raised; `reason` is the first line
  busy         another process holds the run's lock: the scheduler comes back to it later
  interrupted  Ctrl-C / SIGTERM while it trained
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

from unipelt_cli import runs, runstate
from unipelt_cli.boundary import explain
from unipelt_cli.sweep.lock import RunLock, describe, holder


@dataclass
class JobSpec:
    run_id: str
    overrides: list[str]
    outputs: str
    sweep_id: str = ""
    # --force: rerun unless the result is newer than this time (the sweep's start), so a forced
    # sweep that is restarted or re-queued still runs each job once.
    force_since: float | None = None
    runtime: list[str] = field(default_factory=list)  # runtime.* overrides (threads): not identity
    identity: str = ""  # the run identity the sweep planned (unipelt_cli/identity.py)


def finished(run_dir: Path, force_since: float | None = None) -> dict | None:
    """The run's result, if it finished (and, with force_since, finished after that time)."""
    result = runs.read_result(run_dir)
    if result is None or force_since is None:
        return result
    try:
        return result if (run_dir / runs.RESULT_FILE).stat().st_mtime >= force_since else None
    except OSError:
        return None


def outcome(spec: JobSpec, state: str, **info) -> dict:
    return {"run_id": spec.run_id, "state": state, "pid": os.getpid(), **info}


def summarise(result: dict) -> str:
    metric = result["primary_metric"]
    return f"test {metric} {result['test'][metric]:.2f} (dev {result['dev'][metric]:.2f})"


def run_job(spec: JobSpec) -> dict:
    """Run one job to an outcome; raises only KeyboardInterrupt (after marking the run interrupted)."""
    outputs = Path(spec.outputs)
    run_dir = outputs / "runs" / spec.run_id
    done = finished(run_dir, spec.force_since)
    if done is not None:
        return outcome(spec, "skipped", summary=summarise(done))
    started = time.time()
    try:
        runs.prepare(run_dir)
    except Exception as exc:
        return outcome(spec, "failed", reason=_reason(exc), seconds=0.0)
    lock = RunLock(run_dir)
    try:
        acquired = lock.acquire(sweep=spec.sweep_id)
    except OSError as exc:
        return outcome(spec, "failed", reason=_reason(exc), seconds=0.0)
    if not acquired:
        info = holder(run_dir)
        return outcome(spec, "busy", holder=describe(info) if info else "another process")
    try:
        done = finished(run_dir, spec.force_since)
        if done is not None:
            return outcome(spec, "skipped", summary=summarise(done))
        return _train(spec, run_dir, outputs, started)
    finally:
        lock.release()


def _train(spec: JobSpec, run_dir: Path, outputs: Path, started: float) -> dict:
    from unipelt_cli import config

    training = False
    try:
        cfg = config.compose([*spec.overrides, *spec.runtime], strict=False)
        digest = config.config_hash(cfg)
        planned = spec.identity or spec.run_id.rsplit("-", 1)[-1]
        if not digest.startswith(planned):
            raise RuntimeError(
                f"the config of {' '.join(spec.overrides)} is now run {runs.run_name(cfg, digest)}, not the planned "
                f"{spec.run_id} (conf/ or the code changed since the sweep was planned): start the sweep again"
            )
        from unipelt_cli.experiment import train_run
        from unipelt_cli.progress import Reporter

        reporter = Reporter(run_dir / runs.LOG_FILE, quiet=True, metric=cfg.task.metric)
        training = True
        try:
            # a retried run goes on from its checkpoint (--force starts it again and replaces a bad one);
            # the trackers group a sweep's runs
            result = train_run(cfg, run_dir, outputs, reporter, resume=spec.force_since is None, group=spec.sweep_id)
        finally:
            reporter.close()
    except KeyboardInterrupt:
        raise  # train_run has marked the run interrupted; the lock goes with the caller's finally
    except Exception as exc:
        if not training:  # train_run records its own ending in status.json
            runstate.record_failure(run_dir, exc, run_dir / runs.LOG_FILE)
        return outcome(spec, "failed", reason=_reason(exc), seconds=round(time.time() - started, 3))
    return outcome(spec, "done", summary=summarise(result), seconds=round(time.time() - started, 3))


def _reason(exc: BaseException) -> str:
    """The one line the CLI would print (boundary.py): `failed: no space left on the device ...`."""
    return explain(exc)[1]


def job_state(run_dir: Path) -> tuple[str, str]:
    """(done | failed | running | pending, detail) of a run folder, for --dry-run and the plan."""
    result = runs.read_result(run_dir)
    if result is not None:
        return "done", summarise(result)
    info = holder(run_dir)
    if info is not None:
        return "running", describe(info)
    try:
        status = json.loads((run_dir / runs.STATUS_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return "pending", ""
    if not isinstance(status, dict):
        return "pending", ""
    state = status.get("state")
    if state in ("failed", "diverged"):
        return "failed", f"{state}: {status.get('error', '?')}"
    if state == "interrupted":
        return "pending", "interrupted before, will run again"
    if state == "running":
        return "pending", f"its owner died ({describe(status)}), will run again"
    return "pending", ""
