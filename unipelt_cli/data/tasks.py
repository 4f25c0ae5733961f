"""What a GLUE task looks like on disk and on the hub, as plain data.

A TaskSpec is built from `conf/task/<name>.yaml`, so a new task (or a differently laid out copy of a
GLUE file) is a YAML file, not code. The reader in `glue.py` and the metric code only look at the
spec; nothing branches on the task name.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields

from unipelt_cli.errors import UserError

# The score range of each regression task, by task name. Kept out of the task YAML on purpose: a new
# key there would change the run identity (config hash) of every STS-B run already on disk.
SCORE_RANGES = {"stsb": (0.0, 5.0)}  # GLUE STS-B: similarity from 0 (unrelated) to 5 (same meaning)
QUOTING_MODES = ("none", "csv")
METRICS = ("accuracy", "f1", "matthews", "spearman")

# Fields that hold tuples of strings; YAML gives lists.
_TUPLE_FIELDS = ("text_columns", "labels", "hub_text_columns")
_DICT_FIELDS = ("extra_test_files", "hub_extra_test_splits")


@dataclass(frozen=True)
class TaskSpec:
    """One GLUE task: file layout, columns, label set, primary metric and hub location.

    `labels` lists the label strings as they appear in the TSV, in the hub's ClassLabel order, so a
    class id means the same thing whether the data came from local files or from the hub.
    """

    name: str
    glue_dir: str
    train_file: str
    test_file: str
    extra_test_files: dict[str, str] = field(hash=False)
    columns: tuple[str, ...] | None
    text_columns: tuple[str, ...]
    label_column: str
    labels: tuple[str, ...]
    quoting: str
    metric: str
    hub_path: str
    hub_name: str
    hub_text_columns: tuple[str, ...]
    hub_test_split: str
    hub_extra_test_splits: dict[str, str] = field(hash=False)

    def __post_init__(self) -> None:
        where = f"task config {self.name!r}"
        if self.quoting not in QUOTING_MODES:
            raise UserError(
                f"{where}: quoting={self.quoting!r} is not supported: use one of {', '.join(QUOTING_MODES)}"
            )
        if self.metric not in METRICS:
            raise UserError(f"{where}: unknown metric {self.metric!r}: use one of {', '.join(METRICS)}")
        if len(self.text_columns) not in (1, 2):
            raise UserError(f"{where}: text_columns must name 1 or 2 columns: got {list(self.text_columns)}")
        if len(self.hub_text_columns) != len(self.text_columns):
            raise UserError(
                f"{where}: hub_text_columns {list(self.hub_text_columns)} and text_columns "
                f"{list(self.text_columns)} differ in length: give one hub column per text column"
            )
        if (self.metric == "spearman") != self.is_regression:
            raise UserError(
                f"{where}: metric {self.metric!r} does not fit labels {list(self.labels)}: "
                "a regression task has labels: [] and metric: spearman, a classification task lists its labels"
            )
        if len(set(self.labels)) != len(self.labels):
            raise UserError(f"{where}: labels {list(self.labels)} contain duplicates: list each label once")
        if self.columns is not None:
            missing = [c for c in (*self.text_columns, self.label_column) if c not in self.columns]
            if missing:
                raise UserError(
                    f"{where}: column(s) {missing} are not in columns {list(self.columns)}: fix the column names"
                )
        if set(self.extra_test_files) != set(self.hub_extra_test_splits):
            raise UserError(
                f"{where}: extra_test_files and hub_extra_test_splits must have the same keys: "
                f"got {sorted(self.extra_test_files)} and {sorted(self.hub_extra_test_splits)}"
            )

    @property
    def is_regression(self) -> bool:
        """STS-B style tasks have no label strings; the label column is a float score."""
        return len(self.labels) == 0

    @property
    def score_range(self) -> tuple[float, float] | None:
        """(low, high) of a regression task's scores, where known; None for classification."""
        return SCORE_RANGES.get(self.name) if self.is_regression else None

    @property
    def num_labels(self) -> int:
        """Size of the classifier output: 1 for regression."""
        return 1 if self.is_regression else len(self.labels)

    @classmethod
    def from_dict(cls, d: Mapping) -> TaskSpec:
        """Build from a plain mapping (the parsed task YAML): lists become tuples, ids become strings."""
        name = d.get("name", "?")
        known = [f.name for f in fields(cls)]
        unknown = sorted(set(d) - set(known))
        missing = [k for k in known if k not in d]
        if unknown or missing:
            parts = []
            if unknown:
                parts.append(f"unknown field(s) {unknown}")
            if missing:
                parts.append(f"missing field(s) {missing}")
            raise UserError(
                f"task config {name!r}: {'; '.join(parts)}: a task file lists exactly these fields: {', '.join(known)}"
            )
        values = {}
        for key in known:
            v = d[key]
            if key in _TUPLE_FIELDS or (key == "columns" and v is not None):
                if isinstance(v, str) or not hasattr(v, "__iter__"):
                    raise UserError(f"task config {name!r}: {key} must be a list: got {v!r}")
                v = tuple(str(x) for x in v)
            elif key in _DICT_FIELDS:
                if v is None:
                    v = {}
                if not isinstance(v, Mapping):
                    raise UserError(f"task config {name!r}: {key} must be a mapping (or {{}}): got {v!r}")
                v = {str(k): str(x) for k, x in v.items()}
            elif key != "columns":
                if v is None or isinstance(v, (list, tuple, Mapping)):
                    raise UserError(f"task config {name!r}: {key} must be a single value: got {v!r}")
                v = str(v)
            values[key] = v
        return cls(**values)
