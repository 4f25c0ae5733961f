"""The error boundary (boundary.py): known families become one line with exit 2, a bug stays
visible (exit 1, its traceback in the run's train.log), and a hub that never answers cannot hang us."""

from __future__ import annotations

import errno
import json
import socket
import threading
import time

import pytest
from conftest import tiny_overrides

from unipelt_cli.boundary import explain
from unipelt_cli.cli import main
from unipelt_cli.errors import UserError


def _safetensor_error():
    from safetensors import SafetensorError

    return SafetensorError("Error while deserializing header: header too large")


def _yaml_error():
    import yaml

    try:
        yaml.safe_load("a: !!python/name:os.system")
    except yaml.YAMLError as exc:
        return exc


def _oom():
    import torch

    return torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")


FAMILIES = {
    "user": (lambda: UserError("K too large: use budget=k100"), 2, "K too large: use budget=k100"),
    "disk full": (
        lambda: OSError(errno.ENOSPC, "No space left on device", "/o/r/result.json"),
        2,
        "no space left on the device (writing /o/r/result.json): free disk space, or pass --outputs DIR",
    ),
    "quota": (lambda: OSError(errno.EDQUOT, "Disk quota exceeded"), 2, "no space left on the device (writing a file)"),
    "permission": (
        lambda: PermissionError(errno.EACCES, "Permission denied", "/o/runs"),
        2,
        "permission denied on /o/runs (Permission denied): fix the permissions, or pass --outputs DIR",
    ),
    "read-only": (lambda: OSError(errno.EROFS, "Read-only file system", "/o"), 2, "permission denied on /o"),
    "missing": (
        lambda: FileNotFoundError(errno.ENOENT, "No such file or directory", "/x"),
        2,
        "No such file or directory: /x: check the path",
    ),
    "network": (lambda: TimeoutError("timed out"), 2, "network error (timed out): set HF_HUB_OFFLINE=1"),
    "refused": (lambda: ConnectionRefusedError(errno.ECONNREFUSED, "Connection refused"), 2, "network error"),
    "files": (lambda: OSError(errno.EMFILE, "Too many open files"), 2, "too many open files"),
    "no locks": (
        lambda: OSError(errno.ENOLCK, "cannot lock /o/r/.lock (No locks available): put --outputs on a filesystem"),
        2,
        "cannot lock /o/r/.lock (No locks available): put --outputs on a filesystem",
    ),
    "io": (lambda: OSError(errno.EIO, "Input/output error", "/d"), 2, "input/output error on /d: check the disk"),
    "odd errno": (lambda: OSError(errno.EINVAL, "Invalid argument"), 1, "internal error (OSError [Errno 22]"),
    "safetensors": (_safetensor_error, 2, "a safetensors file is damaged or not safetensors (Error while"),
    "yaml": (_yaml_error, 2, "a YAML file is not plain data (could not determine a constructor"),
    "gpu memory": (_oom, 2, "out of memory (CUDA out of memory. Tried to allocate 2.00 GiB): lower train.batch_size"),
    "cpu memory": (lambda: MemoryError(), 2, "out of memory (MemoryError): lower train.batch_size"),
    "bug": (lambda: KeyError("best"), 1, "internal error (KeyError: 'best'): this is a bug, please report it"),
    "ctrl-c": (lambda: KeyboardInterrupt(), 130, "interrupted (SIGINT)"),
}


@pytest.mark.parametrize("name", list(FAMILIES))
def test_each_family_has_its_code_and_line(name):
    make, code, start = FAMILIES[name]
    got_code, line = explain(make())
    assert (got_code, line[: len(start)]) == (code, start)
    assert "\n" not in line and (code == 130 or ": " in line)


def _a_bug(*args, **kwargs):
    raise ZeroDivisionError("division by zero")


def test_a_bug_stays_visible(tmp_path, tiny_backbone, tiny_glue, capsys, monkeypatch):
    monkeypatch.setattr("unipelt_cli.experiment.fit", _a_bug)
    monkeypatch.delenv("UNIPELT_DEBUG", raising=False)
    assert main(["train", "-q", "--outputs", str(tmp_path), *tiny_overrides(tiny_backbone, tiny_glue)]) == 1
    (run_dir,) = (tmp_path / "runs").iterdir()
    err = capsys.readouterr().err.strip()
    assert err == (
        "error: internal error (ZeroDivisionError: division by zero): this is a bug, please report it "
        f"(the traceback is in {run_dir / 'train.log'})"
    )
    log = (run_dir / "train.log").read_text()
    assert "Traceback (most recent call last)" in log and "in _a_bug" in log
    assert json.loads((run_dir / "status.json").read_text())["state"] == "failed"


def test_debug_prints_the_traceback_too(tmp_path, tiny_backbone, tiny_glue, capsys, monkeypatch):
    monkeypatch.setattr("unipelt_cli.experiment.fit", _a_bug)
    monkeypatch.setenv("UNIPELT_DEBUG", "1")
    assert main(["train", "-q", "--outputs", str(tmp_path), *tiny_overrides(tiny_backbone, tiny_glue)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err[0] == "Traceback (most recent call last):" and "in _a_bug" in "\n".join(err)
    assert err[-1].startswith("error: internal error (ZeroDivisionError: division by zero)")


def test_out_of_memory_is_the_users_to_fix(tmp_path, tiny_backbone, tiny_glue, capsys, monkeypatch):
    import torch

    def oom(*args, **kwargs):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB")

    monkeypatch.setattr("unipelt_cli.experiment.fit", oom)
    assert main(["train", "-q", "--outputs", str(tmp_path), *tiny_overrides(tiny_backbone, tiny_glue)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: out of memory (CUDA out of memory. Tried to allocate 20.00 GiB): lower train.batch")
    (run_dir,) = (tmp_path / "runs").iterdir()
    assert json.loads((run_dir / "status.json").read_text())["error"] == err.removeprefix("error: ")


@pytest.fixture()
def silent_hub(monkeypatch):
    """A local server that accepts connections and never says a word: HF_ENDPOINT points at it."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(16)
    held, stop = [], threading.Event()

    def accept():
        server.settimeout(0.2)
        while not stop.is_set():
            try:
                held.append(server.accept()[0])
            except OSError:
                pass

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    for name in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", *("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy")):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{server.getsockname()[1]}")
    yield held
    stop.set()
    thread.join()
    for conn in held:
        conn.close()
    server.close()


def test_a_hub_that_never_answers_fails_in_seconds(tmp_path, tiny_glue, capsys, silent_hub):
    t0 = time.monotonic()
    code = main(["train", "-q", "--outputs", str(tmp_path), "backbone.name_or_path=some-org/some-model",
                 f"data.dir={tiny_glue}"])  # fmt: skip
    took = time.monotonic() - t0
    err = capsys.readouterr().err.strip()
    assert code == 2 and took < 15, (took, err)  # before: over 150 s, then still waiting
    assert silent_hub, "the check did connect"
    assert err.startswith("error: could not load backbone 'some-org/some-model' from the Hugging Face hub (127.0.0.1:")
    assert "accepted the connection but did not answer within 5 s): set HF_HUB_OFFLINE=1" in err
    assert "backbone.name_or_path=PATH" in err
