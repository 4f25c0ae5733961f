"""Run a planned sweep to the end: schedule jobs on a back-end, record outcomes, keep the manifest.

Resume is the default, not an option: a job whose run finished is skipped, a job whose run failed
or whose owner died runs again, and a job whose run another process holds (its lock) waits until
that process lets go, then is skipped if it finished there and run here if not. One failing job
never stops the sweep; Ctrl-C (or SIGTERM) interrupts the runs in flight, which mark themselves
interrupted, and ends with the summary. kill -9 loses only the runs in flight: their results were
never written, their locks die with them, and the next sweep runs them again.

The manifest, <outputs>/sweeps/<time>-<grid hash>/manifest.json, holds the command, the expanded
jobs with their run ids and states, the git commit and the times; it is rewritten atomically as
jobs finish.
"""

from __future__ import annotations

import hashlib
import os
import socket
import sys
import time
from collections import deque
from dataclasses import asdict, dataclass
from pathlib import Path

from unipelt_cli import runs
from unipelt_cli.sweep.grid import Job
from unipelt_cli.sweep.job import JobSpec, finished, job_state
from unipelt_cli.sweep.lock import describe, format_seconds, holder

MANIFEST = "manifest.json"
STATES = ("done", "skipped", "failed", "running", "waiting", "pending", "interrupted")
WAIT_RECHECK_S = 2.0
MANIFEST_EVERY_S = 2.0


@dataclass
class Record:
    """One job of this sweep, as the manifest keeps it."""

    run_id: str
    config_hash: str
    overrides: list[str]
    before: str  # the run's state when the sweep started: done | failed | running | pending
    state: str = "pending"  # one of STATES
    reason: str = ""  # failed: why; waiting: who holds the run
    summary: str = ""  # done/skipped: the test and dev metric
    seconds: float = 0.0
    started: float = 0.0
    finished: float = 0.0


def sweep_id(jobs: list[Job]) -> str:
    grid = hashlib.sha256("\n".join(sorted(j.config_hash for j in jobs)).encode()).hexdigest()
    return f"{time.strftime('%Y%m%d-%H%M%S')}-{grid[:8]}"


def new_sweep_dir(outputs: Path, jobs: list[Job]) -> Path:
    base = sweep_id(jobs)
    for n in range(1, 1000):  # two sweeps of one grid started in the same second get two folders
        folder = outputs / "sweeps" / (base if n == 1 else f"{base}-{n}")
        try:
            folder.mkdir(parents=True)
            return folder
        except FileExistsError:
            continue
    raise RuntimeError(f"could not create a sweep folder under {outputs / 'sweeps'}")


def states(jobs: list[Job], outputs: Path) -> list[tuple[Job, str, str]]:
    """(job, done | failed | running | pending, detail) for every job, read from its run folder."""
    return [(job, *job_state(outputs / "runs" / job.run_id)) for job in jobs]


class Sweep:
    def __init__(
        self,
        jobs: list[Job],
        outputs: Path,
        backend,
        folder: Path,
        *,
        command: str,
        preset: str | None = None,
        force: bool = False,
        runtime: list[str] | None = None,
    ):
        self.outputs, self.backend, self.folder = outputs, backend, folder
        self.sweep_id = folder.name
        self.command, self.preset, self.force, self.runtime = command, preset, force, runtime or []
        self.started = time.time()
        self.force_since = self.started if force else None
        self.records = [
            Record(job.run_id, job.config_hash, list(job.overrides), before=state)
            for job, state, _ in states(jobs, outputs)
        ]
        self.interrupted = False
        self._manifest_written = 0.0

    # ---- what the display reads ---------------------------------------------------------------
    def counts(self) -> dict[str, int]:
        counts = dict.fromkeys(STATES, 0)
        for record in self.records:
            counts[record.state] += 1
        return counts

    def eta(self) -> float | None:
        took = [r.seconds for r in self.records if r.state in ("done", "failed") and r.seconds > 0]
        if not took:
            return None
        mean = sum(took) / len(took)
        now = time.time()
        left = sum(1 for r in self.records if r.state in ("pending", "waiting"))
        running = [max(mean - (now - r.started), 0.0) for r in self.records if r.state == "running"]
        slots = max(1, min(self.backend.slots, left + len(running)))
        return (left * mean + sum(running)) / slots

    # ---- running --------------------------------------------------------------------------------
    def spec(self, record: Record) -> JobSpec:
        return JobSpec(
            run_id=record.run_id,
            overrides=record.overrides,
            outputs=str(self.outputs),
            sweep_id=self.sweep_id,
            force_since=self.force_since,
            runtime=self.runtime,
            identity=record.config_hash,
        )

    def run(self, display) -> int:
        """Run every job that needs it; 0 when all are done, 1 if any failed, 130 if interrupted."""
        queue = deque()
        for record in self.records:
            if record.before == "done" and not self.force:
                record.state = "skipped"
            else:
                queue.append(record)
        self.write_manifest(force=True)
        todo = len(queue)
        display.start(
            f"sweep {self.sweep_id}: {len(self.records)} jobs, {len(self.records) - todo} already finished, "
            f"{todo} to run on {self.backend.name} ({self.backend.slots if self.backend.slots < 10**6 else 'all'} "
            f"at a time); manifest {self.folder / MANIFEST}"
        )
        inflight: list[tuple[object, Record]] = []
        self._starting: list[Record] = []
        try:
            self._loop(queue, inflight, display)
        except KeyboardInterrupt:
            self.interrupted = True
            display.note(f"interrupted: stopping {len(inflight) + len(self._starting)} run(s) in flight ...")
            self._stop(inflight, display)
        finally:
            self.backend.close()
            display.stop()
            self.write_manifest(force=True, final=True)
        if self.interrupted:
            return 130
        return 1 if any(r.state == "failed" for r in self.records) else 0

    def _loop(self, queue: deque, inflight: list, display) -> None:
        waiting: list[Record] = []
        next_wait_check = 0.0
        while queue or waiting or inflight:
            progressed = False
            batch = []
            while queue and len(inflight) + len(batch) < self.backend.slots:
                record = queue.popleft()
                run_dir = self.outputs / "runs" / record.run_id
                done = finished(run_dir, self.force_since)
                if done is not None:  # another process finished it since the sweep started
                    self._end(record, {"state": "skipped"}, display)
                    continue
                info = holder(run_dir)
                if info is not None:
                    record.state, record.reason = "waiting", describe(info)
                    waiting.append(record)
                    continue
                batch.append(record)
            if batch:
                for record in batch:
                    record.state, record.started = "running", time.time()
                self._starting = batch
                handles = self.backend.start([self.spec(r) for r in batch])
                self._starting = []
                inflight.extend(zip(handles, batch, strict=True))
                progressed = True
            for item in list(inflight):
                outcome = self.backend.poll(item[0])
                if outcome is None:
                    continue
                inflight.remove(item)
                progressed = True
                if outcome["state"] == "busy":  # its lock was taken between our check and its start
                    item[1].state, item[1].reason = "waiting", outcome.get("holder", "")
                    waiting.append(item[1])
                else:
                    self._end(item[1], outcome, display)
            if waiting and time.time() >= next_wait_check:
                next_wait_check = time.time() + WAIT_RECHECK_S
                for record in list(waiting):
                    if holder(self.outputs / "runs" / record.run_id) is None:
                        waiting.remove(record)
                        record.state, record.reason = "pending", ""
                        queue.append(record)
                        progressed = True
            self.write_manifest()
            if not progressed:
                time.sleep(self.backend.poll_interval or 0.2)

    def _end(self, record: Record, outcome: dict, display) -> None:
        state = outcome["state"]
        if state == "interrupted":  # a worker interrupted from outside the sweep
            state, outcome = "failed", {**outcome, "reason": "interrupted"}
        record.state = state
        record.reason = outcome.get("reason", "")
        record.summary = outcome.get("summary", "")
        record.seconds = float(outcome.get("seconds") or 0.0)
        record.finished = time.time()
        display.finished(record)

    def _stop(self, inflight: list, display) -> None:
        """Interrupt the runs in flight and record how they ended."""
        for record in self._starting:  # in-process: the run that was training
            record.state = "interrupted"
        self.backend.stop([handle for handle, _ in inflight])
        for handle, record in inflight:
            try:
                outcome = self.backend.poll(handle)
            except Exception:
                outcome = None
            if outcome is not None and outcome["state"] in ("done", "skipped", "failed"):
                self._end(record, outcome, display)
            else:
                record.state = "interrupted"
        for record in self.records:
            if record.state == "waiting":
                record.state = "pending"

    # ---- manifest and summary ---------------------------------------------------------------
    def write_manifest(self, force: bool = False, final: bool = False) -> None:
        now = time.time()
        if not force and now - self._manifest_written < MANIFEST_EVERY_S:
            return
        self._manifest_written = now
        from unipelt_cli.provenance import git_commit

        if not hasattr(self, "_commit"):
            self._commit = git_commit()
        state = "interrupted" if self.interrupted else ("finished" if final else "running")
        manifest = {
            "sweep_id": self.sweep_id,
            "command": self.command,
            "cwd": os.getcwd(),
            "preset": self.preset,
            "backend": self.backend.name,
            "slots": self.backend.slots if self.backend.slots < 10**6 else None,
            "force": self.force,
            "runtime_overrides": self.runtime,
            "outputs": str(self.outputs),
            "git_commit": self._commit,
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "python": sys.executable,
            "started": self.started,
            "started_iso": time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(self.started)),
            "finished": now if final else None,
            "state": state,
            "counts": self.counts(),
            "jobs": [asdict(r) for r in self.records],
        }
        runs.write_json(self.folder / MANIFEST, manifest)

    def summary(self) -> list[str]:
        counts = self.counts()
        took = format_seconds(time.time() - self.started)
        parts = [f"{counts['done']} done", f"{counts['skipped']} skipped (already finished)"]
        parts.append(f"{counts['failed']} failed")
        lines = [f"sweep {self.sweep_id}: {len(self.records)} jobs in {took}: {', '.join(parts)}"]
        if self.interrupted:
            lines[0] += (
                f"; interrupted with {counts['interrupted']} run(s) stopped and {counts['pending']} not started: "
                "run the same command again to resume"
            )
        for record in self.records:
            if record.state == "failed":
                lines.append(f"  failed {record.run_id}: {record.reason}")
        lines.append(f"manifest: {self.folder / MANIFEST}")
        return lines
