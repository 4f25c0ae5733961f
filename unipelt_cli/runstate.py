"""A run's status.json, written here and nowhere else, for every way a run can end.

    with tracked(run_dir, log):      status: running
        ... train, test, save ...
    normal exit                      status: done
    Diverged (train.py)              status: diverged, error
    Ctrl-C, SIGTERM, SIGHUP          status: interrupted, error = the signal (the checkpoint stays for --resume)
    any other exception              status: failed, error = the one line the CLI prints (boundary.py),
                                     the traceback in status.json; train.log gets the line, or for a
                                     bug (boundary's exit 1) the whole traceback
    before training (sweep jobs)     record_failure(run_dir, exc): failed, the same way

On the way out, whatever the ending, the run's temporary files (`.<name>.*.tmp`, `.<name>.new`) are
removed: a result appears whole or not at all, and an earlier result.json and weights stay as they
were (writers write to temporary names and rename). Stop signals are held back while the final
status is written, so a second Ctrl-C cannot leave it half-written.

On a full disk the usual write (a temporary file, then a rename) fails; the status is then written
over the old file in place: a status.json of a few hundred bytes already owns its disk block, so
overwriting it needs no free space.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
import time
import traceback
from contextlib import contextmanager
from pathlib import Path

from unipelt_cli import runs
from unipelt_cli.boundary import Interrupted, explain
from unipelt_cli.errors import UserError

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
LEFTOVERS = (".*.tmp", ".*.new")  # runs.atomic_write, checkpoint.save, model.save_weights, save_outputs
SMALL_STATUS = 3000  # bytes: under one disk block, so an in-place overwrite needs no free space


@contextmanager
def tracked(run_dir: Path, log: Path | None = None, info: dict | None = None):
    """status.json says `running` inside the block and, on the way out, how the run ended.
    info: more fields for the `running` status (the run's identity, which later statuses keep)."""
    try:
        runs.write_status(run_dir, "running", started=time.time(), **(info or {}))
    except OSError as exc:
        raise UserError(
            f"cannot write to {run_dir} ({exc.strerror or exc}): free disk space or fix permissions"
        ) from None
    previous = _catch_stop_signals()
    try:
        yield
    except BaseException as exc:
        with stop_signals_held():
            record_failure(run_dir, exc, log)
        raise
    else:
        with stop_signals_held():
            _remove_leftovers(run_dir)
            _write(run_dir, "done", {"finished": time.time()})
    finally:
        _restore(previous)


def record_failure(run_dir: Path, exc: BaseException, log: Path | None = None) -> str:
    """Write the status that `exc` means (diverged, interrupted or failed); returns the state."""
    _remove_leftovers(run_dir)
    state = state_for(exc)
    info = {"error": _reason(exc), "finished": time.time()}
    if state == "failed":
        trace = "".join(traceback.format_exception(exc))
        info["traceback"] = trace
        bug = explain(exc)[0] == 1
        text = f"{time.strftime('%Y-%m-%d %H:%M:%S')} run failed: {info['error']}\n" + (trace if bug else "")
        if log is not None and _append(log, text) and bug:
            try:
                exc.run_log = str(log)  # the CLI's one line says where the traceback is
            except AttributeError:
                pass
    _write(run_dir, state, info)
    return state


def state_for(exc: BaseException) -> str:
    if isinstance(exc, KeyboardInterrupt):
        return "interrupted"
    train = sys.modules.get("unipelt_cli.train")  # not imported: it cannot have raised Diverged
    if train is not None and isinstance(exc, train.Diverged):
        return "diverged"
    return "failed"


def _reason(exc: BaseException) -> str:
    if isinstance(exc, KeyboardInterrupt):
        return f"stopped by {signal.Signals(getattr(exc, 'signum', signal.SIGINT)).name}"
    if state_for(exc) == "diverged":
        return str(exc)
    return explain(exc)[1]


def _write(run_dir: Path, state: str, info: dict) -> None:
    """The atomic write, else (disk full) an in-place overwrite of a short status; never raises."""
    try:
        runs.write_status(run_dir, state, **info)
        return
    except OSError:
        pass
    short = {k: (v[:500] if isinstance(v, str) else v) for k, v in info.items() if k != "traceback"}
    before = runs.read_status(run_dir)
    kept = {k: before[k] for k in runs.IDENTITY_KEYS if k in before}  # the report needs the identity
    data = {"state": state, "pid": os.getpid(), "time": time.time(), **kept, **short}
    blob = (json.dumps(data) + "\n").encode()[:SMALL_STATUS]
    try:
        fd = os.open(run_dir / runs.STATUS_FILE, os.O_WRONLY | os.O_CREAT, 0o644)
        try:
            os.pwrite(fd, blob, 0)
            os.ftruncate(fd, len(blob))
            os.fsync(fd)
        finally:
            os.close(fd)
    except OSError:
        pass  # nothing can be written; result.json (or its absence) still tells the truth


def _append(log: Path, text: str) -> bool:
    try:
        with open(log, "a", encoding="utf-8") as fh:
            fh.write(text)
        return True
    except OSError:
        return False


def _remove_leftovers(run_dir: Path) -> None:
    for pattern in LEFTOVERS:
        for path in Path(run_dir).glob(pattern):
            try:
                path.unlink()
            except OSError:
                pass


def _raise_interrupted(signum, frame):
    raise Interrupted(signum)


def _catch_stop_signals() -> dict | None:
    """SIGINT, SIGTERM, SIGHUP raise Interrupted inside the block (main thread only: Python's rule)."""
    if threading.current_thread() is not threading.main_thread():
        return None
    return {sig: signal.signal(sig, _raise_interrupted) for sig in STOP_SIGNALS}


def _restore(previous: dict | None) -> None:
    for sig, handler in (previous or {}).items():
        signal.signal(sig, handler if handler is not None else signal.SIG_DFL)


@contextmanager
def stop_signals_held():
    """Block the stop signals while the final status is written; one that came meanwhile is
    delivered afterwards."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    old = signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)
