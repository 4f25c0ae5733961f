"""Each GLUE task is scored with the paper's metric (UniPELT, Mao et al. 2022, section 4.1; see
../shared/reference/UNIPELT.md section 2), on the task config the runs really compose."""

from __future__ import annotations

import numpy as np
import pytest

from unipelt_cli import config
from unipelt_cli.metrics import compute_metrics

# CoLA Matthews correlation; MRPC and QQP F1; STS-B Spearman; SST-2, MNLI (matched), QNLI, RTE accuracy.
PAPER = {
    "cola": "matthews",
    "mrpc": "f1",
    "qqp": "f1",
    "stsb": "spearman",
    "sst2": "accuracy",
    "mnli": "accuracy",
    "qnli": "accuracy",
    "rte": "accuracy",
}


def test_the_shipped_tasks_are_the_papers_eight():
    assert set(config.groups()["task"]) == set(PAPER)  # no WNLI


@pytest.mark.parametrize("task", sorted(PAPER))
def test_each_task_is_scored_with_the_papers_metric(task):
    spec = config.task_spec(config.compose([f"task={task}"]))
    assert spec.metric == PAPER[task]
    assert spec.is_regression == (task == "stsb")
    if task == "mnli":  # the test split is matched; mismatched is reported beside it
        assert spec.test_file == "dev_matched.tsv" and spec.extra_test_files == {"mismatched": "dev_mismatched.tsv"}
    if PAPER[task] == "f1":  # F1 of class 1 ("equivalent" / "duplicate")
        assert spec.labels == ("0", "1")


def test_primary_metric_values_differ_where_the_metric_matters():
    """On one set of predictions the four metrics give four different numbers, so a task wired to
    the wrong one shows in every result (worked out by hand: TP 2, TN 1, FP 1, FN 1)."""
    preds, labels = np.array([1, 1, 0, 0, 1]), np.array([1, 0, 0, 1, 1])
    primary = {m: compute_metrics(m, preds, labels)[m] for m in ("accuracy", "f1", "matthews")}
    assert primary == pytest.approx({"accuracy": 60.0, "f1": 200 / 3, "matthews": 100 / 6})
