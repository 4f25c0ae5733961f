"""A local sweep worker (`unipelt sweep -j N` starts N): `python -m unipelt_cli.sweep.worker OUTCOME_FD`.

Reads one JobSpec (JSON) per line on stdin and writes one outcome (JSON) per line to the pipe
OUTCOME_FD, which only the sweep reads; stdout and stderr go to the worker's log file. A worker
runs many jobs, so torch is imported once per worker, not once per job.
"""

from __future__ import annotations

import json
import os
import signal
import sys
from dataclasses import asdict

from unipelt_cli.sweep.job import JobSpec, outcome, run_job

PARENT_ENV = "UNIPELT_SWEEP_PARENT"


def die_with_parent(parent: int) -> None:
    """Ask Linux to kill this worker when the sweep dies (kill -9 included): no orphans train on."""
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # 1 = PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        return
    if os.getppid() != parent:  # the sweep died before prctl took effect
        os._exit(1)


def _interrupt(signum, frame):
    raise KeyboardInterrupt


def main(argv: list[str]) -> int:
    out = os.fdopen(int(argv[0]), "w", buffering=1)
    die_with_parent(int(os.environ.get(PARENT_ENV, os.getppid())))
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        for line in sys.stdin:
            spec = JobSpec(**json.loads(line))
            try:
                result = run_job(spec)
            except KeyboardInterrupt:
                out.write(json.dumps(outcome(spec, "interrupted")) + "\n")
                return 130
            out.write(json.dumps(result) + "\n")
    except KeyboardInterrupt:
        return 130
    return 0


def encode(spec: JobSpec) -> str:
    return json.dumps(asdict(spec)) + "\n"


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
