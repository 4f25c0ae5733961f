"""Where jobs run. Every back-end runs the same self-contained `run_job` (see job.py).

    InProcess   one job at a time in the sweep's own process (the default, -j 1)
    Workers     N local worker processes (-j N), each running one job at a time
    Submitit    Slurm job arrays through submitit (--backend slurm), or submitit's local executor
                (--backend submitit-local) to try that path on one machine

A back-end starts jobs, says when one has an outcome, and stops what runs on Ctrl-C:

    handles = backend.start(specs)     # at most backend.slots jobs in flight
    backend.poll(handle) -> outcome dict, or None while the job runs
    backend.stop(handles)              # interrupt, wait for the runs to mark themselves, then kill
    backend.close()
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from unipelt_cli.errors import UserError
from unipelt_cli.sweep.job import JobSpec, run_job

STOP_GRACE_S = 30  # how long an interrupted run may take to mark itself before it is killed
RESIGNAL_S = 3.0  # a worker still running this long after SIGINT gets another one


def available_cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


class InProcess:
    """Jobs one after another in this process; `start` returns when the job has its outcome."""

    name = "in-process"
    slots = 1
    poll_interval = 0.0

    def start(self, specs: list[JobSpec]) -> list[dict]:
        return [run_job(spec) for spec in specs]

    def poll(self, handle: dict) -> dict:
        return handle

    def stop(self, handles) -> None:
        pass

    def close(self) -> None:
        pass


class _Worker:
    def __init__(self, log_dir: Path, index: int, env: dict):
        read_fd, write_fd = os.pipe()
        self.log_path = log_dir / f"worker-{index}.log"
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "unipelt_cli.sweep.worker", str(write_fd)],
                stdin=subprocess.PIPE,
                stdout=log,
                stderr=subprocess.STDOUT,
                pass_fds=(write_fd,),
                env=env,
                text=True,
                start_new_session=True,  # Ctrl-C reaches the sweep, which interrupts workers one by one
            )
        os.close(write_fd)
        os.set_blocking(read_fd, False)
        self.read_fd, self.buffer, self.job = read_fd, b"", None

    def send(self, spec: JobSpec) -> None:
        from unipelt_cli.sweep.worker import encode

        self.proc.stdin.write(encode(spec))
        self.proc.stdin.flush()
        self.job = spec

    def read(self) -> dict | None:
        try:
            while chunk := os.read(self.read_fd, 65536):
                self.buffer += chunk
        except BlockingIOError:
            pass
        if b"\n" not in self.buffer:
            return None
        line, self.buffer = self.buffer.split(b"\n", 1)
        self.job = None
        return json.loads(line)

    def died(self) -> str | None:
        code = self.proc.poll()
        if code is None:
            return None
        how = f"signal {signal.Signals(-code).name}" if code < 0 else f"exit code {code}"
        return f"the worker process died ({how}); see {self.log_path}"

    def close(self) -> None:
        try:
            self.proc.stdin.close()
        except OSError:
            pass
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        os.close(self.read_fd)


class Workers:
    """N worker processes; each imports torch once and runs its jobs one at a time."""

    name = "local workers"
    poll_interval = 0.2

    def __init__(self, slots: int, log_dir: Path, threads: int | None):
        self.slots, self.log_dir, self.workers, self.spawned = slots, log_dir, [], 0
        self.env = dict(os.environ, UNIPELT_SWEEP_PARENT=str(os.getpid()), TOKENIZERS_PARALLELISM="false")
        if threads:
            self.env.update(OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
        log_dir.mkdir(parents=True, exist_ok=True)

    def start(self, specs: list[JobSpec]) -> list[_Worker]:
        started = []
        for spec in specs:
            worker = next((w for w in self.workers if w.job is None and w.died() is None), None)
            try:
                worker = worker or self._spawn()
                worker.send(spec)
            except BrokenPipeError:  # it died while idle: a fresh one takes the job
                worker = self._spawn()
                worker.send(spec)
            started.append(worker)
        return started

    def _spawn(self) -> _Worker:
        self.workers = [w for w in self.workers if w.died() is None]
        self.spawned += 1
        worker = _Worker(self.log_dir, self.spawned, self.env)
        self.workers.append(worker)
        return worker

    def poll(self, worker: _Worker) -> dict | None:
        result = worker.read()
        if result is not None:
            return result
        reason = worker.died()
        if reason is None:
            return None
        result = worker.read()  # its last line may have arrived as it exited
        if result is not None:
            return result
        spec, worker.job = worker.job, None
        return {"run_id": spec.run_id, "state": "failed", "reason": reason}

    def stop(self, handles: list[_Worker]) -> None:
        """SIGINT every worker in flight, again every few seconds (Python drops a KeyboardInterrupt
        raised inside a __del__), until it exits; kill what is left after STOP_GRACE_S."""
        alive = [w for w in handles if w.proc.poll() is None]
        for worker in alive:  # one that finishes its job anyway then exits instead of waiting for more
            try:
                worker.proc.stdin.close()
            except OSError:
                pass
        deadline, next_signal = time.time() + STOP_GRACE_S, 0.0
        try:
            while alive and time.time() < deadline:
                if time.time() >= next_signal:
                    for worker in alive:
                        worker.proc.send_signal(signal.SIGINT)
                    next_signal = time.time() + RESIGNAL_S
                time.sleep(0.1)
                alive = [w for w in alive if w.proc.poll() is None]
        except KeyboardInterrupt:  # a second Ctrl-C: no more waiting
            pass
        for worker in alive:
            worker.proc.kill()
            worker.proc.wait()

    def close(self) -> None:
        for worker in self.workers:
            worker.close()
        self.workers = []


GENERIC_SUBMITIT_KEYS = {
    "name",
    "timeout_min",
    "mem_gb",
    "nodes",
    "cpus_per_task",
    "gpus_per_node",
    "tasks_per_node",
    "stderr_to_stdout",
}


def submitit_parameters(pairs: list[str]) -> dict:
    """`--slurm partition=gpu timeout_min=60` -> {slurm_partition: 'gpu', timeout_min: 60}."""
    params = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise UserError(f"--slurm {pair}: write KEY=VALUE, e.g. --slurm partition=gpu --slurm timeout_min=120")
        if key not in GENERIC_SUBMITIT_KEYS and not key.startswith("slurm_"):
            key = f"slurm_{key}"
        for convert in (int, float):
            try:
                value = convert(value)
                break
            except ValueError:
                pass
        params[key] = value
    return params


class Submitit:
    """Jobs through submitit: a Slurm job array, or submitit's local executor (one process a job).

    Each job is a submitit Checkpointable: on pre-emption or timeout Slurm re-queues it, and the
    re-queued job re-checks completion first, so it never repeats finished work."""

    poll_interval = 1.0

    def __init__(self, cluster: str, slots: int, folder: Path, params: dict):
        try:
            import submitit
        except ImportError:
            raise UserError(
                f"--backend {cluster} needs submitit: pip install 'unipelt-cli[cluster]' (or pip install submitit)"
            ) from None
        from unipelt_cli.sweep.cluster import SweepTask

        self.task = SweepTask()
        self.name = "Slurm (submitit)" if cluster == "slurm" else "submitit local executor"
        try:
            self.executor = submitit.AutoExecutor(folder=folder, cluster=cluster)
            defaults = {"name": "unipelt-sweep"}
            if cluster == "local":
                defaults["timeout_min"] = 24 * 60
            else:  # Slurm runs the whole array, `slots` at a time
                defaults["slurm_array_parallelism"] = slots
            self.executor.update_parameters(**{**defaults, **params})
        except (ValueError, NameError, RuntimeError) as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise UserError(
                f"submitit refused the {cluster} set-up ({first}): check the --slurm KEY=VALUE options"
            ) from None
        self.slots = slots if cluster == "local" else 10**9

    def start(self, specs: list[JobSpec]) -> list:
        with self.executor.batch():
            jobs = [self.executor.submit(self.task, spec) for spec in specs]
        return jobs

    def poll(self, job) -> dict | None:
        if not job.done():
            return None
        try:
            return job.result()
        except Exception as exc:  # the job process crashed, was killed, or timed out
            text = str(exc).strip()
            first = text.splitlines()[0] if text else type(exc).__name__
            return {"state": "failed", "reason": f"submitit job {job.job_id}: {first}; see {job.paths.stderr}"}

    def stop(self, handles) -> None:
        for job in handles:
            try:
                job.cancel(check=False)
            except Exception:
                pass

    def close(self) -> None:
        pass
