"""Load a GLUE task into plain Python lists and numpy labels, from classic GLUE TSVs or the HF hub.

Local files are read by hand rather than with pandas/csv defaults because GLUE files are not
consistent CSV: SST-2, MNLI and QNLI contain bare `"` characters inside unquoted fields (so the
only safe reading is a plain split on tab), while QQP uses CSV-style `""` quoting. Every problem
is reported as a one-line UserError naming the file and line, so a bad copy of the data fails
before any model is loaded.
"""

from __future__ import annotations

import csv
import hashlib
import importlib
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from unipelt_cli.data.tasks import TaskSpec
from unipelt_cli.errors import UserError

ENV_HINT = "set data.dir=PATH or UNIPELT_GLUE_DIR"


@dataclass
class Split:
    """One split of a task: raw text segments, label ids (or float scores) and where they came from."""

    texts: list[tuple[str, ...]]
    labels: np.ndarray
    source: str

    def __len__(self) -> int:
        return len(self.texts)

    def subset(self, idx: np.ndarray) -> Split:
        """Rows `idx` in that order (K-shot train/dev selection); `source` is kept for provenance."""
        idx = np.asarray(idx, dtype=np.int64)
        return Split([self.texts[i] for i in idx], self.labels[idx], self.source)


def file_sha256(path: str | Path) -> str:
    """Full sha256 of a data file, so a run records exactly which bytes it trained on."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def load_task(spec: TaskSpec, data_dir: str | Path | None) -> dict[str, Split]:
    """Return {"train", "test", "test_<extra>"...}; GLUE dev files (hub validation splits) are our test."""
    if data_dir is None:
        return _load_hub(spec)
    root = Path(data_dir).expanduser()
    layout = _layout(spec, root)
    if not root.is_dir():
        raise UserError(f"data folder not found: {root} (expected {layout}); {ENV_HINT}")
    task_dir = root / spec.glue_dir
    if not task_dir.is_dir():
        raise UserError(f"task folder not found: {task_dir} (expected {layout}){_folder_hint(spec, root)}; {ENV_HINT}")
    files = {"train": spec.train_file, "test": spec.test_file}
    files.update({f"test_{k}": v for k, v in spec.extra_test_files.items()})
    return {key: read_split(spec, task_dir / name, layout) for key, name in files.items()}


def _layout(spec: TaskSpec, root: Path) -> str:
    names = [spec.train_file, spec.test_file, *spec.extra_test_files.values()]
    return (
        f"{root}/{spec.glue_dir}/{{{','.join(n.removesuffix('.tsv') for n in names)}}}.tsv in the classic GLUE layout"
    )


def _folder_hint(spec: TaskSpec, root: Path) -> str:
    """Catch the two common slips: data.dir pointing at the task folder itself, or a renamed folder."""
    if (root / spec.train_file).is_file():
        return f"; data.dir should be the folder that contains {spec.glue_dir}/, not the task folder"
    want = spec.glue_dir.lower().replace("-", "")
    for p in sorted(root.iterdir()):
        if p.is_dir() and p.name.lower().replace("-", "") == want:
            return f"; found {p.name}/, rename it to {spec.glue_dir}/"
    return ""


def read_split(spec: TaskSpec, path: Path, layout: str = "the classic GLUE layout") -> Split:
    """Parse one GLUE TSV into a Split, checking header, field counts and label values."""
    if not path.exists():
        raise UserError(f"data file not found: {path} (expected {layout}); {ENV_HINT}")
    if not path.is_file():
        raise UserError(f"data file is not a regular file: {path}: put the GLUE .tsv file there ({layout})")
    rows = _read_rows(path, spec.quoting)
    if spec.columns is None:
        if not rows:
            raise UserError(f"empty data file: {path}: expected a header row and data rows; re-download the GLUE file")
        _, header = rows[0]
        rows = rows[1:]
        needed = [*spec.text_columns, spec.label_column]
        missing = [c for c in needed if c not in header]
        if missing:
            raise UserError(
                f"wrong header in {path}: missing column(s) {missing}, found {header}: "
                f"the {spec.name} file needs a header row with columns {needed} (classic GLUE TSV)"
            )
    else:
        header = list(spec.columns)
    if not rows:
        raise UserError(f"empty data file: {path} has no data rows: re-download the GLUE file")
    text_pos = [header.index(c) for c in spec.text_columns]
    label_pos = header.index(spec.label_column)
    label_ids = {s: i for i, s in enumerate(spec.labels)}
    texts, labels = [], []
    for line, fields in rows:
        if len(fields) != len(header):
            raise UserError(
                f"malformed row at {path}:{line}: {len(fields)} tab-separated fields, expected {len(header)} "
                f"({', '.join(header)}): fix or remove the line"
            )
        texts.append(tuple(fields[i] for i in text_pos))
        labels.append(_parse_label(spec, fields[label_pos], label_ids, f"{path}:{line}"))
    dtype = np.float32 if spec.is_regression else np.int64
    return Split(texts, np.asarray(labels, dtype=dtype), str(path))


def _parse_label(spec: TaskSpec, raw: str, label_ids: dict[str, int], where: str) -> int | float:
    if spec.is_regression:
        try:
            value = float(raw)
        except ValueError:
            value = math.nan
        if not math.isfinite(value):
            raise UserError(
                f"label is not a number at {where}: {spec.label_column}={raw!r}: "
                f"{spec.name} is a regression task, its label column must hold numbers"
            )
        check_score(spec, value, where)
        return value
    if raw not in label_ids:
        raise UserError(
            f"unknown label at {where}: {spec.label_column}={raw!r}: valid labels for {spec.name} are "
            f"{', '.join(spec.labels)}"
        )
    return label_ids[raw]


def check_score(spec: TaskSpec, value: float, where: str) -> None:
    """A regression score inside the task's range (STS-B: 0 to 5), else a one-line error naming the row."""
    bounds = spec.score_range
    if bounds is not None and not bounds[0] <= value <= bounds[1]:
        raise UserError(
            f"label out of range at {where}: {spec.label_column}={value:g}: {spec.name} scores lie in "
            f"[{bounds[0]:g}, {bounds[1]:g}]: fix or remove the row"
        )


def check_hub_labels(spec: TaskSpec, labels: np.ndarray, where: str) -> None:
    """Hub splits bring label ids, not strings: each must be one of the task's classes (GLUE's
    unlabelled test splits hold -1), or a score in range; the first bad row is named."""
    if spec.is_regression:
        for row, value in enumerate(labels):
            if not math.isfinite(value):
                raise UserError(f"label is not a number at {where} row {row}: {value}: use a labelled split")
            check_score(spec, float(value), f"{where} row {row}")
        return
    bad = np.flatnonzero((labels < 0) | (labels >= spec.num_labels))
    if bad.size:
        raise UserError(
            f"unknown label at {where} row {int(bad[0])}: label id {int(labels[bad[0]])}, but {spec.name} has "
            f"{spec.num_labels} classes ({', '.join(spec.labels)}): use a labelled split (hub_test_split)"
        )


def _read_rows(path: Path, quoting: str) -> list[tuple[int, list[str]]]:
    """(1-based line number, fields) for each non-final-empty line. utf-8-sig drops MRPC's BOM."""
    try:
        with open(path, encoding="utf-8-sig", newline="") as f:
            if quoting == "csv":
                return _read_csv(f, path)
            text = f.read()
    except UnicodeDecodeError as e:
        raise UserError(f"data file is not UTF-8 text: {path} ({e.reason} at byte {e.start}): re-download it") from e
    except OSError as e:
        raise UserError(
            f"cannot read data file {path} ({e.strerror or e}): check its permissions and the disk, or copy it again"
        ) from None
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()  # final newline (CoLA dev has none, the other files do)
    return [(n, line.removesuffix("\r").split("\t")) for n, line in enumerate(lines, start=1)]


def _read_csv(f, path: Path) -> list[tuple[int, list[str]]]:
    """QQP: tab-separated with `""`-escaped quoted fields. Line numbers are where each row starts."""
    reader = csv.reader(f, delimiter="\t", quotechar='"', doublequote=True, strict=True)
    rows = []
    start = 1
    try:
        for fields in reader:
            rows.append((start, fields))
            start = reader.line_num + 1
    except csv.Error as e:
        raise UserError(f"malformed row at {path}:{start}: bad quoting ({e}): fix or remove the line") from e
    return rows


def _hub_errors() -> tuple[type[BaseException], ...]:
    """Exception classes that mean "the hub could not give us the data" (not a bug in our code)."""
    errors: list[type[BaseException]] = [OSError, ConnectionError, TimeoutError]
    try:
        from datasets.exceptions import DatasetsError

        errors.append(DatasetsError)
    except ImportError:
        pass
    try:
        from huggingface_hub.errors import HfHubHTTPError

        errors.append(HfHubHTTPError)
    except ImportError:
        pass
    # huggingface_hub's HTTP client (httpx2 in current releases; httpx or requests in older ones)
    for module, name in (("httpx2", "HTTPError"), ("httpx", "HTTPError"), ("requests", "RequestException")):
        try:
            errors.append(getattr(importlib.import_module(module), name))
        except (ImportError, AttributeError):
            pass
    return tuple(errors)


def _load_hub(spec: TaskSpec) -> dict[str, Split]:
    """Download via `datasets`; hub label ids are already in ClassLabel order, which spec.labels follows."""
    from unipelt_cli.hub import unreachable_reason

    hub_id = f"{spec.hub_path}/{spec.hub_name}"
    reason = unreachable_reason()
    if reason:
        raise UserError(
            f"could not load GLUE {spec.name} from the Hugging Face hub ({reason}): "
            f"point at local files with data.dir=PATH or UNIPELT_GLUE_DIR (classic GLUE TSV layout)"
        )
    import datasets

    try:
        ds = datasets.load_dataset(spec.hub_path, spec.hub_name)
    except _hub_errors() as e:
        reason = (str(e).strip().splitlines() or [type(e).__name__])[0][:160]
        raise UserError(
            f"could not load GLUE {spec.name} from the Hugging Face hub ({type(e).__name__}: {reason}): "
            f"point at local files with data.dir=PATH or UNIPELT_GLUE_DIR (classic GLUE TSV layout)"
        ) from e
    splits = {"train": "train", "test": spec.hub_test_split}
    splits.update({f"test_{k}": v for k, v in spec.hub_extra_test_splits.items()})
    out = {}
    for key, hub_split in splits.items():
        if hub_split not in ds:
            raise UserError(
                f"hub dataset {hub_id} has no split {hub_split!r} (has {sorted(ds)}): "
                "fix hub_test_split / hub_extra_test_splits in the task config"
            )
        d = ds[hub_split]
        cols = [d[c] for c in spec.hub_text_columns]
        dtype = np.float32 if spec.is_regression else np.int64
        labels = np.asarray(d["label"], dtype=dtype)
        check_hub_labels(spec, labels, f"hf:{hub_id}[{hub_split}]")
        out[key] = Split(list(zip(*cols, strict=True)), labels, f"hf:{hub_id}[{hub_split}]")
    return out
