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


def hub_error(monkeypatch, exc, task="rte"):
    def load(path, name):
        raise exc

    fake_datasets(monkeypatch, load)
    with pytest.raises(UserError) as e:
        load_task(spec_for(task), None)
    return str(e.value)


HUB_FIX = "point at local files with data.dir=PATH or UNIPELT_GLUE_DIR (classic GLUE TSV layout)"


@pytest.mark.parametrize(
    "exc, shown",
    [
        (
            ConnectionError("Couldn't reach 'nyu-mll/glue' on the Hub\nmore"),
            "ConnectionError: Couldn't reach 'nyu-mll/glue' on the Hub",
        ),
        (TimeoutError(), "TimeoutError: TimeoutError"),  # no message: the class names the problem
        (ConnectionError("x" * 200), "ConnectionError: " + "x" * 160),  # cut to 160 characters
    ],
)
def test_hub_error_message_is_exact(monkeypatch, exc, shown):
    assert hub_error(monkeypatch, exc) == f"could not load GLUE rte from the Hugging Face hub ({shown}): {HUB_FIX}"


@pytest.mark.parametrize("module", ["httpx", "httpx2"])
def test_hub_http_client_errors_are_user_errors(monkeypatch, module):
    """huggingface_hub's HTTP client errors (httpx2 now, httpx before) are not OSErrors: caught by name."""
    client = pytest.importorskip(module)
    assert not issubclass(client.HTTPError, OSError)
    msg = hub_error(monkeypatch, client.HTTPError("502 Bad Gateway"))
    assert msg == f"could not load GLUE rte from the Hugging Face hub (HTTPError: 502 Bad Gateway): {HUB_FIX}"


def test_unreachable_hub_is_reported_before_loading(monkeypatch):
    def load(path, name):
        raise AssertionError("not called when the hub is unreachable")

    fake_datasets(monkeypatch, load)
    reason = "huggingface.co:443 unreachable: Network is unreachable"
    monkeypatch.setattr("unipelt_cli.hub.unreachable_reason", lambda timeout=3.0: reason)
    with pytest.raises(UserError) as e:
        load_task(spec_for("rte"), None)
    assert str(e.value) == f"could not load GLUE rte from the Hugging Face hub ({reason}): {HUB_FIX}"


def test_hub_without_the_test_split(monkeypatch):
    rows = {"sentence1": ["a"], "sentence2": ["b"], "label": [0]}
    fake_datasets(monkeypatch, lambda path, name: {"train": rows, "test": rows})
    with pytest.raises(UserError) as e:
        load_task(spec_for("rte"), None)
    assert str(e.value) == (
        "hub dataset nyu-mll/glue/rte has no split 'validation' (has ['test', 'train']): "
        "fix hub_test_split / hub_extra_test_splits in the task config"
    )


def test_hub_label_dtypes(monkeypatch):
    cls = {"sentence1": ["a", "b"], "sentence2": ["c", "d"], "label": [1, 0]}
    fake_datasets(monkeypatch, lambda path, name: {"train": cls, "validation": cls})
    labels = load_task(spec_for("rte"), None)["test"].labels
    assert labels.dtype == np.int64 and labels.tolist() == [1, 0]
    reg = {"sentence1": ["a", "b"], "sentence2": ["c", "d"], "label": [3.8, 0.25]}
    fake_datasets(monkeypatch, lambda path, name: {"train": reg, "validation": reg})
    labels = load_task(spec_for("stsb"), None)["test"].labels
    assert labels.dtype == np.float32 and labels.tolist() == [pytest.approx(3.8), 0.25]  # not cut to ints


@pytest.mark.parametrize(
    "task, test_labels, message",
    [
        # the first bad row is named: a class id one past the last, before GLUE's unlabelled -1
        (
            "rte",
            [0, 1, 2, -1],
            "unknown label at hf:nyu-mll/glue/rte[validation] row 2: label id 2, but rte has 2 classes "
            "(entailment, not_entailment): use a labelled split (hub_test_split)",
        ),
        (
            "stsb",
            [0.0, 5.0, -1.0, 7.0],  # both ends of [0, 5] are scores
            "label out of range at hf:nyu-mll/glue/stsb[validation] row 2: score=-1: stsb scores lie in [0, 5]: "
            "fix or remove the row",
        ),
        (
            "stsb",
            [2.5, float("nan")],
            "label is not a number at hf:nyu-mll/glue/stsb[validation] row 1: nan: use a labelled split",
        ),
    ],
)
def test_bad_hub_labels_name_the_row(monkeypatch, task, test_labels, message):
    n = len(test_labels)
    train = {"sentence1": ["a"], "sentence2": ["b"], "label": [1]}
    test = {"sentence1": ["a"] * n, "sentence2": ["b"] * n, "label": test_labels}
    fake_datasets(monkeypatch, lambda path, name: {"train": train, "validation": test})
    with pytest.raises(UserError) as e:
        load_task(spec_for(task), None)
    assert str(e.value) == message


# ---- exact messages and edge cases of the file reader ----

STSB_HEAD = "index\tgenre\tfilename\tyear\told_index\tsource1\tsource2\tsentence1\tsentence2\tscore\n"


def test_scores_at_both_ends_of_the_range_load_and_outside_do_not(tmp_path):
    row = "0\tg\tf\ty\t0\tn\tn\tA.\tB.\t{}\n"
    write(tmp_path / "s.tsv", STSB_HEAD + row.format("0") + row.format("5.000"))
    assert read_split(spec_for("stsb"), tmp_path / "s.tsv").labels.tolist() == [0.0, 5.0]
    write(tmp_path / "bad.tsv", STSB_HEAD + row.format("4") + row.format("5.5"))
    with pytest.raises(UserError) as e:
        read_split(spec_for("stsb"), tmp_path / "bad.tsv")
    assert str(e.value) == (
        f"label out of range at {tmp_path / 'bad.tsv'}:3: score=5.5: stsb scores lie in [0, 5]: fix or remove the row"
    )


def test_missing_data_folder_message_is_exact(tmp_path):
    root = tmp_path / "nope"
    with pytest.raises(UserError) as e:
        load_task(spec_for("sst2"), root)
    assert str(e.value) == (
        f"data folder not found: {root} (expected {root}/SST-2/{{train,dev}}.tsv in the classic GLUE layout); "
        "set data.dir=PATH or UNIPELT_GLUE_DIR"
    )


def test_task_folder_hints_only_a_folder_of_that_name(tmp_path):
    write(tmp_path / "other" / "x.tsv", "")
    write(tmp_path / "sst2", "a file, not the folder")
    layout = f"{tmp_path}/SST-2/{{train,dev}}.tsv in the classic GLUE layout"
    expected = f"task folder not found: {tmp_path}/SST-2 (expected {layout})"
    with pytest.raises(UserError) as e:
        load_task(spec_for("sst2"), tmp_path)
    assert str(e.value) == f"{expected}; set data.dir=PATH or UNIPELT_GLUE_DIR"  # no hint
    (tmp_path / "sst2").unlink()
    (tmp_path / "sst-2").mkdir()  # lower case, dash kept
    with pytest.raises(UserError) as e:
        load_task(spec_for("sst2"), tmp_path)
    assert str(e.value) == f"{expected}; found sst-2/, rename it to SST-2/; set data.dir=PATH or UNIPELT_GLUE_DIR"


def test_read_split_messages_without_a_layout(tmp_path):
    with pytest.raises(UserError) as e:
        read_split(spec_for("sst2"), tmp_path / "x.tsv")
    assert str(e.value) == (
        f"data file not found: {tmp_path / 'x.tsv'} (expected the classic GLUE layout); "
        "set data.dir=PATH or UNIPELT_GLUE_DIR"
    )
    (tmp_path / "d.tsv").mkdir()
    with pytest.raises(UserError) as e:
        read_split(spec_for("sst2"), tmp_path / "d.tsv")
    assert str(e.value) == (
        f"data file is not a regular file: {tmp_path / 'd.tsv'}: put the GLUE .tsv file there (the classic GLUE layout)"
    )


def test_malformed_row_message_is_exact(tmp_path):
    path = write(tmp_path / "t.tsv", "sentence\tlabel\na\t1\nb\tc\t0\n")
    with pytest.raises(UserError) as e:
        read_split(spec_for("sst2"), path)
    assert str(e.value) == (
        f"malformed row at {path}:3: 3 tab-separated fields, expected 2 (sentence, label): fix or remove the line"
    )


def test_not_utf8_message_is_exact(tmp_path):
    path = tmp_path / "t.tsv"
    path.write_bytes(b"sentence\tlabel\n\xff\t1\n")
    with pytest.raises(UserError) as e:
        read_split(spec_for("sst2"), path)
    assert str(e.value) == f"data file is not UTF-8 text: {path} (invalid start byte at byte 15): re-download it"


def test_unreadable_file_message_is_exact(tmp_path, monkeypatch):
    path = write(tmp_path / "t.tsv", "sentence\tlabel\na\t1\n")

    def denied(file, *args, **kwargs):
        raise PermissionError(13, "Permission denied", str(file))

    monkeypatch.setattr("unipelt_cli.data.glue.open", denied, raising=False)  # root would read it anyway
    with pytest.raises(UserError) as e:
        read_split(spec_for("sst2"), path)
    assert str(e.value) == (
        f"cannot read data file {path} (Permission denied): check its permissions and the disk, or copy it again"
    )


def test_a_carriage_return_inside_a_field_is_text(tmp_path):
    """Only the line end's \\r is dropped (CRLF files); a \\r inside a field stays, the row stays one row."""
    path = write(tmp_path / "t.tsv", "sentence\tlabel\r\na\rb\t1\r\n")
    split = read_split(spec_for("sst2"), path)
    assert split.texts == [("a\rb",)] and split.labels.tolist() == [1]


def test_bad_quoting_on_the_first_line_names_line_1(tmp_path):
    path = write(tmp_path / "q.tsv", 'id\t"qid1"x\tqid2\tquestion1\tquestion2\tis_duplicate\n')
    with pytest.raises(UserError, match=rf"^malformed row at {path}:1: bad quoting \("):
        read_split(spec_for("qqp"), path)


def test_class_labels_are_int64_and_a_subset_keeps_its_source(tmp_path):
    split = load_task(spec_for("sst2"), sst2_dir(tmp_path))["train"]
    assert split.labels.dtype == np.int64
    sub = split.subset(np.array([1], dtype=np.int32))
    assert sub.source == split.source and sub.texts == [('c " d',)] and sub.labels.dtype == np.int64
    empty = split.subset([])  # no rows (a K-shot dev set of size 0)
    assert len(empty) == 0 and empty.labels.tolist() == [] and empty.source == split.source
