"""One owner per run: an exclusive `flock` on <run>/.lock, held for as long as the run trains.

The kernel drops a flock when its holder exits or dies, `kill -9` and pre-emption included, so a
lock is never stale and nothing has to guess whether an owner is alive. The file itself stays (a
deleted lock file could be locked twice: once through the old inode, once through a new one); it
holds the owner's pid, host and start time, for `unipelt sweep --dry-run` to show.

On a shared filesystem, Linux NFS carries flock to the server (NFSv4 and NFSv3 with lockd);
Lustre and BeeGFS need their `flock` mount option.
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
import time
from pathlib import Path

LOCK_FILE = ".lock"

_held: dict[str, dict] = {}  # lock path -> holder info, for the locks this process holds


class RunLock:
    def __init__(self, run_dir: Path):
        self.path = Path(run_dir) / LOCK_FILE
        self.fd: int | None = None

    def acquire(self, **info) -> bool:
        """Take the lock without waiting; False when another process holds it."""
        if str(self.path) in _held:
            return False
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        except OSError as exc:  # e.g. ENOLCK: a filesystem without locks would let two owners in
            os.close(fd)
            raise OSError(
                exc.errno, f"cannot lock {self.path} ({exc.strerror}): put --outputs on a filesystem with flock"
            ) from None
        holder = {"pid": os.getpid(), "host": socket.gethostname(), "since": time.time(), **info}
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(holder).encode(), 0)
        self.fd = fd
        _held[str(self.path)] = holder
        return True

    def release(self) -> None:
        if self.fd is None:
            return
        _held.pop(str(self.path), None)
        os.ftruncate(self.fd, 0)
        fcntl.flock(self.fd, fcntl.LOCK_UN)
        os.close(self.fd)
        self.fd = None

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.release()


def holder(run_dir: Path) -> dict | None:
    """Who holds the run's lock ({pid, host, since, ...}; {} when unreadable), or None if nobody does.

    Probes with a shared lock that it drops at once; a run starting at that instant sees it as held
    and tries again later, never the other way round."""
    path = Path(run_dir) / LOCK_FILE
    if str(path) in _held:
        return dict(_held[str(path)])
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            try:
                return json.loads(os.pread(fd, 4096, 0) or b"{}")
            except ValueError:
                return {}
        except OSError:
            return None  # no locks on this filesystem: acquire() says so when a run starts
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)


def describe(info: dict) -> str:
    """`pid 123 on host-a for 2m05s` from a holder's info."""
    where = f"pid {info.get('pid', '?')} on {info.get('host', '?')}"
    since = info.get("since")
    return f"{where} for {format_seconds(time.time() - since)}" if since else where


def format_seconds(seconds: float) -> str:
    seconds = max(0, int(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{secs:02d}s" if minutes else f"{secs}s"
