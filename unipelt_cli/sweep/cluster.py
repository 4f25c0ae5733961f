"""The callable that submitit runs on a cluster node (imported only with a submitit back-end)."""

from __future__ import annotations

import submitit

from unipelt_cli.sweep.job import JobSpec, run_job


class SweepTask(submitit.helpers.Checkpointable):
    """run_job on a node. On pre-emption or timeout, Checkpointable re-queues the same call, and
    run_job skips the run if it finished meanwhile: a re-queued job never repeats finished work."""

    def __call__(self, spec: JobSpec) -> dict:
        return run_job(spec)
