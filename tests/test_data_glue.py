"""GLUE loading: the shipped task YAMLs, every real task file, and each bad-input error message."""

from __future__ import annotations

import dataclasses
import os
import sys
import types
from pathlib import Path

import numpy as np
import pytest
import yaml

from unipelt_cli.data.glue import Split, file_sha256, load_task, read_split
from unipelt_cli.data.tasks import TaskSpec
from unipelt_cli.errors import UserError

REPO = Path(__file__).resolve().parents[1]
TASK_DIR = REPO / "conf" / "task"
TASKS = ("cola", "sst2", "mrpc", "stsb", "qqp", "mnli", "qnli", "rte")

# Rows (excluding header) of each file in /work/shared/data/glue, per PROVENANCE.md.
EXPECTED_ROWS = {
    "sst2": {"train": 67349, "test": 872},
    "cola": {"train": 8551, "test": 1043},
    "mrpc": {"train": 3668, "test": 408},
    "stsb": {"train": 5749, "test": 1500},
    "rte": {"train": 2490, "test": 277},
    "qnli": {"train": 9999, "test": 5463},
    "qqp": {"train": 18496, "test": 5000},
    "mnli": {"train": 9999, "test": 9815, "test_mismatched": 9832},
}
# HF nyu-mll/glue ClassLabel order, written as the strings the TSV files use.
HUB_LABEL_ORDER = {
    "cola": ["0", "1"],
    "sst2": ["0", "1"],
    "mrpc": ["0", "1"],
    "qqp": ["0", "1"],
    "stsb": [],
    "qnli": ["entailment", "not_entailment"],
    "rte": ["entailment", "not_entailment"],
    "mnli": ["entailment", "neutral", "contradiction"],
}


def spec_for(name: str) -> TaskSpec:
    return TaskSpec.from_dict(yaml.safe_load((TASK_DIR / f"{name}.yaml").read_text()))


def shared_glue_dir() -> Path | None:
    env = os.environ.get("UNIPELT_GLUE_DIR")
    for cand in ([Path(env)] if env else []) + [REPO.parent / "shared" / "data" / "glue"]:
        if cand.is_dir():
            return cand
    return None


# ---- the shipped task YAMLs ----


def test_task_yamls_are_exactly_the_eight_tasks():
    assert sorted(p.stem for p in TASK_DIR.glob("*.yaml")) == sorted(TASKS)


@pytest.mark.parametrize("name", TASKS)
def test_task_yaml_has_exactly_the_spec_fields(name):
    text = (TASK_DIR / f"{name}.yaml").read_text()
    assert text.startswith("# "), "each task file starts with a one-line comment"
    raw = yaml.safe_load(text)
    assert list(raw) == [f.name for f in dataclasses.fields(TaskSpec)]
    spec = TaskSpec.from_dict(raw)
    assert spec.name == name
    assert list(spec.labels) == HUB_LABEL_ORDER[name]
    assert spec.num_labels == (1 if name == "stsb" else len(HUB_LABEL_ORDER[name]))
    assert spec.is_regression == (name == "stsb")
    assert spec.hub_path == "nyu-mll/glue" and spec.hub_name == name


def test_from_dict_turns_lists_into_tuples():
    spec = spec_for("mnli")
    assert spec.text_columns == ("sentence1", "sentence2")
    assert spec.labels == ("entailment", "neutral", "contradiction")
    assert spec.extra_test_files == {"mismatched": "dev_mismatched.tsv"}
    assert spec_for("cola").columns == ("source", "label", "author_label", "sentence")


def test_from_dict_rejects_unknown_and_missing_fields():
    raw = yaml.safe_load((TASK_DIR / "sst2.yaml").read_text())
    with pytest.raises(UserError, match=r"unknown field\(s\) \['labelz'\]"):
        TaskSpec.from_dict({**raw, "labelz": []})
    del raw["metric"]
    with pytest.raises(UserError, match=r"missing field\(s\) \['metric'\]"):
        TaskSpec.from_dict(raw)


@pytest.mark.parametrize(
    "change, message",
    [
        ({"quoting": "tsv"}, "quoting='tsv' is not supported"),
        ({"metric": "auc"}, "unknown metric 'auc'"),
        ({"metric": "spearman"}, "does not fit labels"),
        ({"text_columns": ["a", "b", "c"], "hub_text_columns": ["a", "b", "c"]}, "1 or 2 columns"),
        ({"hub_text_columns": ["sentence", "x"]}, "differ in length"),
    ],
)
def test_spec_validation(change, message):
    raw = yaml.safe_load((TASK_DIR / "sst2.yaml").read_text())
    with pytest.raises(UserError, match=message):
        TaskSpec.from_dict({**raw, **change})


TASK_FIELDS = ", ".join(f.name for f in dataclasses.fields(TaskSpec))


@pytest.mark.parametrize(
    "change, message",
    [
        ({"quoting": "tsv"}, "quoting='tsv' is not supported: use one of none, csv"),
        ({"metric": "auc"}, "unknown metric 'auc': use one of accuracy, f1, matthews, spearman"),
        (
            {"text_columns": ["a", "b", "c"], "hub_text_columns": ["a", "b", "c"]},
            "text_columns must name 1 or 2 columns: got ['a', 'b', 'c']",
        ),
        (
            {"hub_text_columns": ["sentence", "x"]},
            "hub_text_columns ['sentence', 'x'] and text_columns ['sentence'] differ in length: "
            "give one hub column per text column",
        ),
        (
            {"metric": "spearman"},
            "metric 'spearman' does not fit labels ['0', '1']: a regression task has labels: [] and "
            "metric: spearman, a classification task lists its labels",
        ),
        ({"labels": ["0", "0"]}, "labels ['0', '0'] contain duplicates: list each label once"),
        (
            {"columns": ["x", "label"]},
            "column(s) ['sentence'] are not in columns ['x', 'label']: fix the column names",
        ),
        (
            {"extra_test_files": {"mismatched": "dev_mismatched.tsv"}},
            "extra_test_files and hub_extra_test_splits must have the same keys: got ['mismatched'] and []",
        ),
        (
            {"hub_extra_test_splits": {"b": "x", "a": "y"}},
            "extra_test_files and hub_extra_test_splits must have the same keys: got [] and ['a', 'b']",
        ),
        ({"labels": "01"}, "labels must be a list: got '01'"),  # a string is not a list of labels
        ({"text_columns": 5}, "text_columns must be a list: got 5"),
        ({"extra_test_files": ["a"]}, "extra_test_files must be a mapping (or {}): got ['a']"),
        ({"metric": None}, "metric must be a single value: got None"),
        ({"metric": ["accuracy"]}, "metric must be a single value: got ['accuracy']"),
    ],
)
def test_spec_error_is_one_exact_line(change, message):
    """The whole message a user sees for each bad task file, naming the task."""
    raw = yaml.safe_load((TASK_DIR / "sst2.yaml").read_text())
    with pytest.raises(UserError) as e:
        TaskSpec.from_dict({**raw, **change})
    assert str(e.value) == f"task config 'sst2': {message}"


def test_field_errors_are_one_exact_line():
    raw = yaml.safe_load((TASK_DIR / "sst2.yaml").read_text())
    with pytest.raises(UserError) as e:
        TaskSpec.from_dict({**raw, "labelz": []})
    assert str(e.value) == (
        f"task config 'sst2': unknown field(s) ['labelz']: a task file lists exactly these fields: {TASK_FIELDS}"
    )
    del raw["name"]
    with pytest.raises(UserError) as e:  # no name to show: '?', and both problems in one line
        TaskSpec.from_dict({**raw, "labelz": [], "zz": 1})
    assert str(e.value) == (
        "task config '?': unknown field(s) ['labelz', 'zz']; missing field(s) ['name']: "
        f"a task file lists exactly these fields: {TASK_FIELDS}"
    )


def test_empty_extra_test_mappings_may_be_null():
    raw = yaml.safe_load((TASK_DIR / "sst2.yaml").read_text())
    spec = TaskSpec.from_dict({**raw, "extra_test_files": None, "hub_extra_test_splits": None})
    assert spec.extra_test_files == {} and spec.hub_extra_test_splits == {}


# ---- the real GLUE files ----


@pytest.mark.parametrize("name", TASKS)
def test_real_task_files_load(name):
    root = shared_glue_dir()
    if root is None:
        pytest.skip("shared GLUE data not found: set UNIPELT_GLUE_DIR or put it at <repo>/../shared/data/glue")
    spec = spec_for(name)
    splits = load_task(spec, root)
    assert {k: len(v) for k, v in splits.items()} == EXPECTED_ROWS[name]
    for split in splits.values():
        assert all(len(t) == len(spec.text_columns) for t in split.texts)
        assert all(s.strip() for t in split.texts for s in t), "no empty text segment"
        if spec.is_regression:
            assert split.labels.dtype == np.float32
            assert 0.0 <= split.labels.min() and split.labels.max() <= 5.0
        else:
            assert split.labels.dtype == np.int64
            assert set(np.unique(split.labels)) == set(range(spec.num_labels))


def test_real_files_keep_quotes_and_drop_bom():
    root = shared_glue_dir()
    if root is None:
        pytest.skip("shared GLUE data not found: set UNIPELT_GLUE_DIR or put it at <repo>/../shared/data/glue")
    qqp = load_task(spec_for("qqp"), root)["train"]
    quoted = [t[1] for t in qqp.texts if "positive atheism" in t[1]]
    assert quoted and quoted[0].endswith('with "positive atheism"?')  # CSV "" unescaped
    qnli = load_task(spec_for("qnli"), root)["test"]
    assert any(t[1].startswith('"') for t in qnli.texts)  # bare leading quote kept verbatim
    mrpc = load_task(spec_for("mrpc"), root)["train"]  # header starts with a UTF-8 BOM
    assert mrpc.labels[:3].tolist() == [1, 0, 1]


# ---- small files: layout, format and error messages ----


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def sst2_dir(tmp_path, train='sentence\tlabel\na b\t1\nc " d\t0\n', dev="sentence\tlabel\ne\t1\n"):
    write(tmp_path / "SST-2" / "train.tsv", train)
    write(tmp_path / "SST-2" / "dev.tsv", dev)
    return tmp_path


def test_small_sst2_loads(tmp_path):
    splits = load_task(spec_for("sst2"), sst2_dir(tmp_path))
    assert splits["train"].texts == [("a b",), ('c " d',)]
    assert splits["train"].labels.tolist() == [1, 0]
    assert splits["train"].source == str(tmp_path / "SST-2" / "train.tsv")
    assert set(splits) == {"train", "test"}


def test_crlf_bom_and_missing_final_newline(tmp_path):
    write(tmp_path / "x.tsv", "\ufeffsentence\tlabel\r\na\t1\r\nb\t0")
    split = read_split(spec_for("sst2"), tmp_path / "x.tsv")
    assert split.texts == [("a",), ("b",)] and split.labels.tolist() == [1, 0]


def test_headerless_cola(tmp_path):
    write(tmp_path / "CoLA" / "train.tsv", "gj04\t1\t\tGood.\ngj04\t0\t*\tBad good.")
    write(tmp_path / "CoLA" / "dev.tsv", "gj04\t1\t\tFine.\n")
    splits = load_task(spec_for("cola"), tmp_path)
    assert splits["train"].texts == [("Good.",), ("Bad good.",)]
    assert splits["train"].labels.tolist() == [1, 0]


def test_csv_quoting_qqp(tmp_path):
    head = "id\tqid1\tqid2\tquestion1\tquestion2\tis_duplicate\n"
    write(tmp_path / "q.tsv", head + '1\t2\t3\t"Is ""x"" y?"\tplain\t1\n4\t5\t6\ta\tb\t0\n')
    split = read_split(spec_for("qqp"), tmp_path / "q.tsv")
    assert split.texts == [('Is "x" y?', "plain"), ("a", "b")]
    write(tmp_path / "bad.tsv", head + '1\t2\t3\t"a"b\tq\t1\n')
    with pytest.raises(UserError, match=r"malformed row at .*bad\.tsv:2: bad quoting"):
        read_split(spec_for("qqp"), tmp_path / "bad.tsv")


def test_regression_labels_are_float(tmp_path):
    head = "index\tgenre\tfilename\tyear\told_index\tsource1\tsource2\tsentence1\tsentence2\tscore\n"
    write(tmp_path / "s.tsv", head + "0\tg\tf\ty\t0\tn\tn\tA.\tB.\t3.800\n")
    split = read_split(spec_for("stsb"), tmp_path / "s.tsv")
    assert split.labels.dtype == np.float32 and split.labels.tolist() == [pytest.approx(3.8)]
    write(tmp_path / "bad.tsv", head + "0\tg\tf\ty\t0\tn\tn\tA.\tB.\t3.8\n1\tg\tf\ty\t0\tn\tn\tA.\tB.\thigh\n")
    with pytest.raises(UserError, match=r"label is not a number at .*bad\.tsv:3: score='high'"):
        read_split(spec_for("stsb"), tmp_path / "bad.tsv")


def test_missing_data_folder(tmp_path):
    with pytest.raises(UserError) as e:
        load_task(spec_for("sst2"), tmp_path / "nope")
    msg = str(e.value)
    assert msg.startswith(f"data folder not found: {tmp_path / 'nope'}")
    assert "SST-2/{train,dev}.tsv" in msg and "UNIPELT_GLUE_DIR" in msg and "\n" not in msg


def test_missing_task_folder_hints(tmp_path):
    write(tmp_path / "sst2" / "train.tsv", "sentence\tlabel\n")
    with pytest.raises(UserError, match=r"task folder not found: .*SST-2 .*found sst2/, rename it to SST-2/"):
        load_task(spec_for("sst2"), tmp_path)
    with pytest.raises(UserError, match="not the task folder"):
        load_task(spec_for("sst2"), tmp_path / "sst2")


def test_missing_file(tmp_path):
    write(tmp_path / "MNLI" / "train.tsv", "sentence1\tsentence2\tgold_label\na\tb\tneutral\n")
    write(tmp_path / "MNLI" / "dev_matched.tsv", "sentence1\tsentence2\tgold_label\na\tb\tneutral\n")
    with pytest.raises(UserError) as e:
        load_task(spec_for("mnli"), tmp_path)
    msg = str(e.value)
    assert msg.startswith(f"data file not found: {tmp_path / 'MNLI' / 'dev_mismatched.tsv'}")
    assert "MNLI/{train,dev_matched,dev_mismatched}.tsv in the classic GLUE layout" in msg


@pytest.mark.parametrize("text", ["", "sentence\tlabel\n"])
def test_empty_file(tmp_path, text):
    sst2_dir(tmp_path, train=text)
    with pytest.raises(UserError, match=r"empty data file: .*SST-2/train\.tsv"):
        load_task(spec_for("sst2"), tmp_path)


def test_wrong_header(tmp_path):
    sst2_dir(tmp_path, dev="text\tlabel\na\t1\n")
    with pytest.raises(UserError) as e:
        load_task(spec_for("sst2"), tmp_path)
    msg = str(e.value)
    assert "wrong header in" in msg and "SST-2/dev.tsv" in msg
    assert "missing column(s) ['sentence']" in msg and "['sentence', 'label']" in msg


def test_wrong_field_count(tmp_path):
    sst2_dir(tmp_path, train="sentence\tlabel\na\t1\nb\tc\t0\n")
    with pytest.raises(UserError, match=r"malformed row at .*SST-2/train\.tsv:3: 3 tab-separated fields, expected 2"):
        load_task(spec_for("sst2"), tmp_path)


def test_blank_line_is_malformed(tmp_path):
    sst2_dir(tmp_path, train="sentence\tlabel\na\t1\n\nb\t0\n")
    with pytest.raises(UserError, match=r"train\.tsv:3: 1 tab-separated fields"):
        load_task(spec_for("sst2"), tmp_path)


def test_unknown_label(tmp_path):
    write(tmp_path / "r.tsv", "index\tsentence1\tsentence2\tlabel\n0\ta\tb\tentailment\n1\ta\tb\tneutral\n")
    with pytest.raises(UserError) as e:
        read_split(spec_for("rte"), tmp_path / "r.tsv")
    msg = str(e.value)
    assert f"unknown label at {tmp_path / 'r.tsv'}:3: label='neutral'" in msg
    assert "entailment, not_entailment" in msg


def test_split_subset_and_sha(tmp_path):
    split = Split([("a",), ("b",), ("c",)], np.array([0, 1, 0]), "x")
    sub = split.subset(np.array([2, 0]))
    assert sub.texts == [("c",), ("a",)] and sub.labels.tolist() == [0, 0] and len(sub) == 2
    p = write(tmp_path / "f.txt", "abc")
    assert file_sha256(p) == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"


# ---- hub path (no network here: the datasets module is faked) ----


def fake_datasets(monkeypatch, load):
    """Stand in for `datasets` and for a reachable hub (the reachability probe is tested in test_cli)."""
    mod = types.ModuleType("datasets")
    mod.load_dataset = load
    monkeypatch.setitem(sys.modules, "datasets", mod)
    monkeypatch.setattr("unipelt_cli.hub.unreachable_reason", lambda timeout=3.0: None)


def test_hub_maps_columns_and_splits(monkeypatch):
    rows = {"premise": ["p"], "hypothesis": ["h"], "label": [2], "idx": [0]}
    calls = []

    def load(path, name):
        calls.append((path, name))
        return {"train": rows, "validation_matched": rows, "validation_mismatched": rows, "test_matched": rows}

    fake_datasets(monkeypatch, load)
    splits = load_task(spec_for("mnli"), None)
    assert calls == [("nyu-mll/glue", "mnli")]
    assert set(splits) == {"train", "test", "test_mismatched"}
    assert splits["test"].texts == [("p", "h")] and splits["test"].labels.tolist() == [2]
    assert splits["test_mismatched"].source == "hf:nyu-mll/glue/mnli[validation_mismatched]"


@pytest.mark.parametrize("exc", [ConnectionError("Couldn't reach 'nyu-mll/glue' on the Hub\nmore"), TimeoutError()])
def test_hub_unreachable(monkeypatch, exc):
    def load(path, name):
        raise exc

    fake_datasets(monkeypatch, load)
    with pytest.raises(UserError) as e:
        load_task(spec_for("rte"), None)
    msg = str(e.value)
    assert msg.startswith("could not load GLUE rte from the Hugging Face hub (")
    assert msg.endswith("point at local files with data.dir=PATH or UNIPELT_GLUE_DIR (classic GLUE TSV layout)")
    assert "\n" not in msg


def test_hub_library_errors_are_user_errors(monkeypatch):
    hub_errors = pytest.importorskip("huggingface_hub.errors")
    ds_errors = pytest.importorskip("datasets.exceptions")
    import datasets

    for exc in (ds_errors.DatasetNotFoundError("gone"), hub_errors.OfflineModeIsEnabled("offline")):

        def load(path, name, exc=exc):
            raise exc

        monkeypatch.setattr(datasets, "load_dataset", load)
        with pytest.raises(UserError, match="could not load GLUE sst2"):
            load_task(spec_for("sst2"), None)
