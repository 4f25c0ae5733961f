"""The error boundary at the CLI's edge: whatever leaves a command becomes ONE line on stderr.

    UserError, and the known families a user can act on        -> exit 2
        OSError by errno (disk full, permissions, missing file, network), damaged safetensors,
        YAML that is not plain data, tokenizer/model loading (model.py names the folder), out of memory
    Ctrl-C, or a stop signal (runstate.py turns SIGTERM/SIGHUP into one) -> 128 + the signal
    anything else: a bug                                         -> exit 1, saying where the traceback is

UNIPELT_DEBUG=1 prints the traceback above the line. A run records its own ending (runstate.py)
before the exception gets here, so a bug is never swallowed: its traceback is in the run's train.log.
The families are recognised without importing torch, safetensors or yaml: a module that was never
imported cannot have raised.
"""

from __future__ import annotations

import errno
import os
import signal
import sys
import traceback

from unipelt_cli.errors import UserError

DEBUG_ENV = "UNIPELT_DEBUG"
HUB_HINT = (
    "set HF_HUB_OFFLINE=1 to use the local Hugging Face cache, or pass local paths "
    "(backbone.name_or_path=PATH, data.dir=PATH)"
)

NO_SPACE = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG}
DENIED = {errno.EACCES, errno.EPERM, errno.EROFS}
MISSING = {errno.ENOENT, errno.ENOTDIR, errno.EISDIR}
NETWORK = {
    errno.ETIMEDOUT, errno.ECONNREFUSED, errno.ECONNRESET, errno.ECONNABORTED,
    errno.EHOSTUNREACH, errno.ENETUNREACH, errno.ENETDOWN,
}  # fmt: skip
TOO_MANY_FILES = {errno.EMFILE, errno.ENFILE}
NO_LOCKS = {errno.ENOLCK}  # sweep/lock.py's message already says what to do


class Interrupted(KeyboardInterrupt):
    """A stop signal (SIGTERM, SIGHUP) raised like Ctrl-C, so every Ctrl-C path also handles it."""

    def __init__(self, signum: int):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


def explain(exc: BaseException) -> tuple[int, str]:
    """(exit code, one line "<what is wrong>: <what to do>") for any exception."""
    if isinstance(exc, UserError):
        return UserError.exit_code, _one_line(str(exc))
    if isinstance(exc, KeyboardInterrupt):
        signum = getattr(exc, "signum", signal.SIGINT)
        return 128 + signum, f"interrupted ({signal.Signals(signum).name})"
    if _is_out_of_memory(exc):
        return 2, (
            f"out of memory ({_first(exc)}): lower train.batch_size, train.eval_batch_size or "
            "train.max_length, or use a smaller backbone"
        )
    if isinstance(exc, OSError):
        return _os_error(exc)
    if _is_a(exc, "safetensors", "SafetensorError"):
        return 2, (
            f"a safetensors file is damaged or not safetensors ({_first(exc)}): "
            "re-download the backbone, or rerun the run with --force"
        )
    if _is_a(exc, "yaml", "YAMLError"):
        return 2, f"a YAML file is not plain data ({_first(exc)}): fix the file, or restore it (git checkout)"
    return 1, f"internal error ({type(exc).__name__}: {_first(exc)}): this is a bug, please report it"


def report(exc: BaseException) -> int:
    """Print the one line (after the traceback with UNIPELT_DEBUG=1); return the exit code."""
    code, message = explain(exc)
    if os.environ.get(DEBUG_ENV, "") not in ("", "0"):
        traceback.print_exception(exc, file=sys.stderr)
    if code == 1:
        log = getattr(exc, "run_log", None)
        where = f"the traceback is in {log}" if log else f"rerun with {DEBUG_ENV}=1 to see the traceback"
        message = f"{message} ({where})"
    print(message if isinstance(exc, KeyboardInterrupt) else f"error: {message}", file=sys.stderr, flush=True)
    return code


def _os_error(exc: OSError) -> tuple[int, str]:
    code = exc.errno
    name = f" {exc.filename}" if exc.filename else ""
    reason = exc.strerror or _first(exc)
    if code in NO_SPACE:
        return 2, (
            f"no space left on the device (writing{name or ' a file'}): free disk space, or pass --outputs DIR "
            "on another disk; then run the same command again"
        )
    if code in DENIED:
        where = f" on{name}" if name else ""
        return 2, f"permission denied{where} ({reason}): fix the permissions, or pass --outputs DIR"
    if code in MISSING:
        return 2, f"{reason}:{name or ' (a file or folder)'}: check the path"
    if code in NETWORK or isinstance(exc, TimeoutError | ConnectionError):
        return 2, f"network error ({reason}): {HUB_HINT}"
    if code in TOO_MANY_FILES:
        return 2, f"too many open files ({reason}): raise the limit, e.g. ulimit -n 4096"
    if code in NO_LOCKS:
        return 2, _one_line(reason)
    if code == errno.EIO:
        return 2, f"input/output error{' on' + name if name else ''}: check the disk, then run the same command again"
    return 1, f"internal error (OSError [Errno {code}] {reason}{name}): this is a bug, please report it"


def _is_out_of_memory(exc: BaseException) -> bool:
    if isinstance(exc, MemoryError):
        return True
    torch = sys.modules.get("torch")
    oom = getattr(torch, "OutOfMemoryError", None)
    return oom is not None and isinstance(exc, oom)


def _is_a(exc: BaseException, module: str, name: str) -> bool:
    cls = getattr(sys.modules.get(module), name, None)
    return isinstance(cls, type) and isinstance(exc, cls)


def _first(exc: BaseException) -> str:
    lines = [ln.strip() for ln in str(exc).strip().splitlines() if ln.strip()]
    return _one_line(" ".join(lines[:2]))[:240] if lines else type(exc).__name__


def _one_line(text: str) -> str:
    return " ".join(text.split())
