"""Fault injection: the outputs folder fills up while a rerun trains. The run must end `failed` with
the reason, say so in one line, leave no temporary file, and keep the earlier result and weights of
the same folder byte for byte.

Where the test may mount one (root with CAP_SYS_ADMIN), the folder is a real 4 MiB tmpfs, filled
to the last byte by a filler file; elsewhere a write wrapper makes every new write under the folder
fail with ENOSPC, as a full disk does (opening a file still works, writing to it does not)."""

from __future__ import annotations

import builtins
import errno
import json
import subprocess

import pytest
from conftest import tiny_overrides

from unipelt_cli.cli import main
from unipelt_cli.progress import Reporter

NO_SPACE = "No space left on device"


def mount_tmpfs(path) -> bool:
    path.mkdir()
    try:
        done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(path)], capture_output=True)
    except OSError:
        return False
    return done.returncode == 0


def fill_tmpfs(root) -> None:
    """Write zeros until the filesystem refuses: then it is full to the last block."""
    with open(root / "filler", "wb", buffering=0) as fh:
        for size in (1 << 20, 1 << 12, 1):
            try:
                while True:
                    fh.write(b"\0" * size)
            except OSError as exc:
                assert exc.errno == errno.ENOSPC


class WriteWrapper:
    """ENOSPC for every write under `root` from now on: Python files and the safetensors writer."""

    def __init__(self, root, monkeypatch):
        self.root, self.monkeypatch = str(root), monkeypatch

    def fill(self) -> None:
        import safetensors.torch
        from safetensors import SafetensorError

        real_open, root = builtins.open, self.root

        class FullFile:
            def __init__(self, fh):
                self.fh = fh

            def write(self, data):
                raise OSError(errno.ENOSPC, NO_SPACE)

            def __getattr__(self, name):
                return getattr(self.fh, name)

            def __enter__(self):
                return self

            def __exit__(self, *exc):
                self.fh.close()

        def open_full(file, mode="r", *args, **kwargs):
            fh = real_open(file, mode, *args, **kwargs)
            writing = any(flag in mode for flag in "wax+")
            return FullFile(fh) if writing and str(file).startswith(root) else fh

        def save_file_full(tensors, filename, metadata=None):
            with real_open(filename, "wb") as fh:
                fh.write(b"\x10\x00")  # a few bytes got out before the disk filled
            raise SafetensorError(f"Error while serializing: I/O error: {NO_SPACE} (os error 28)")

        self.monkeypatch.setattr(builtins, "open", open_full)
        self.monkeypatch.setattr(safetensors.torch, "save_file", save_file_full)


@pytest.fixture()
def small_disk(tmp_path, monkeypatch):
    """(outputs folder, fill()): a folder whose disk fill() makes full; a tmpfs where one mounts."""
    folder = tmp_path / "small"
    if mount_tmpfs(folder):
        yield folder, lambda: fill_tmpfs(folder)
        subprocess.run(["umount", "-l", str(folder)], check=False)
    else:
        yield folder, WriteWrapper(folder, monkeypatch).fill


def test_disk_fills_during_a_rerun(small_disk, tiny_backbone, tiny_glue, capsys, monkeypatch):
    out, fill = small_disk
    args = ["train", "-q", "--outputs", str(out), *tiny_overrides(tiny_backbone, tiny_glue, "method=lora")]
    assert main(args) == 0
    (run_dir,) = (out / "runs").iterdir()
    earlier = {name: (run_dir / name).read_bytes() for name in ("result.json", "weights.safetensors")}
    capsys.readouterr()

    start = Reporter.start

    def start_then_fill(self, *a, **k):  # the disk fills once training has begun
        start(self, *a, **k)
        fill()

    monkeypatch.setattr(Reporter, "start", start_then_fill)
    assert main([*args, "--force"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"error: could not save the results ({NO_SPACE}) in {run_dir}"), err
    assert err[0].endswith("free disk space or fix permissions, then run the same command again")
    status = json.loads((run_dir / "status.json").read_text())
    assert status["state"] == "failed" and status["error"] == err[0].removeprefix("error: ")
    assert {name: (run_dir / name).read_bytes() for name in earlier} == earlier
    assert sorted(p.name for p in run_dir.iterdir() if p.name.endswith((".tmp", ".new"))) == []
