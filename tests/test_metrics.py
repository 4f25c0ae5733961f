"""Metrics against values worked out by hand, plus scipy/sklearn cross-checks where those are installed."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest

from unipelt_cli.errors import UserError
from unipelt_cli.metrics import compute_metrics, pearson, rank_average

# preds vs labels: TP = 2 (rows 0, 4), TN = 1 (row 2), FP = 1 (row 1), FN = 1 (row 3).
PREDS = np.array([1, 1, 0, 0, 1])
LABELS = np.array([1, 0, 0, 1, 1])


def test_accuracy():
    assert compute_metrics("accuracy", np.array([1, 0, 1, 1]), np.array([1, 0, 0, 1])) == {"accuracy": 75.0}


def test_f1():
    m = compute_metrics("f1", PREDS, LABELS)
    # F1 = 2TP / (2TP + FP + FN) = 4 / 6; accuracy = 3 / 5
    assert m["f1"] == pytest.approx(200 / 3)
    assert m["accuracy"] == pytest.approx(60.0)
    assert m["acc_and_f1"] == pytest.approx((60 + 200 / 3) / 2)
    assert set(m) == {"f1", "accuracy", "acc_and_f1"}


def test_f1_no_positive_predictions_is_zero():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        m = compute_metrics("f1", np.zeros(4, int), np.array([0, 1, 1, 0]))
    assert m["f1"] == 0.0 and m["accuracy"] == 50.0


def test_matthews():
    m = compute_metrics("matthews", PREDS, LABELS)
    # (TP*TN - FP*FN) / sqrt((TP+FP)(TP+FN)(TN+FP)(TN+FN)) = (2 - 1) / sqrt(3*3*2*2) = 1/6
    assert m["matthews"] == pytest.approx(100 / 6)
    assert m["accuracy"] == pytest.approx(60.0)
    assert compute_metrics("matthews", LABELS, LABELS)["matthews"] == pytest.approx(100.0)
    assert compute_metrics("matthews", 1 - LABELS, LABELS)["matthews"] == pytest.approx(-100.0)


def test_matthews_constant_predictions_is_zero():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert compute_metrics("matthews", np.ones(5, int), LABELS)["matthews"] == 0.0
        assert compute_metrics("matthews", PREDS, np.ones(5, int))["matthews"] == 0.0


def test_pearson_and_spearman_with_ties():
    # x = [1,2,3], y = [1,2,4]: centred x = [-1,0,1], y = [-4/3,-1/3,5/3]; r = 3 / sqrt(2 * 14/3) = sqrt(27/28)
    m = compute_metrics("spearman", np.array([1.0, 2.0, 3.0]), np.array([1.0, 2.0, 4.0]))
    assert m["pearson"] == pytest.approx(100 * math.sqrt(27 / 28))
    assert m["spearman"] == pytest.approx(100.0)
    assert m["corr"] == pytest.approx((100 + 100 * math.sqrt(27 / 28)) / 2)
    # ranks [1, 2.5, 2.5, 4] vs [1, 3, 2, 4]: sxy = 4.5, sxx = 4.5, syy = 5 -> rho = sqrt(0.9)
    m = compute_metrics("spearman", np.array([1.0, 2.0, 2.0, 3.0]), np.array([1.0, 3.0, 2.0, 4.0]))
    assert m["spearman"] == pytest.approx(100 * math.sqrt(0.9))


def test_rank_average():
    assert rank_average(np.array([10, 20, 20, 5])).tolist() == [2.0, 3.5, 3.5, 1.0]
    assert rank_average(np.array([7, 7, 7])).tolist() == [2.0, 2.0, 2.0]


def test_constant_regression_predictions_score_zero():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        m = compute_metrics("spearman", np.full(6, 0.1), np.array([0.0, 1, 2, 3, 4, 5]))
    assert m == {"spearman": 0.0, "pearson": 0.0, "corr": 0.0}


def test_values_are_python_floats():
    for metric in ("accuracy", "f1", "matthews", "spearman"):
        for v in compute_metrics(metric, PREDS, LABELS).values():
            assert type(v) is float


def test_bad_inputs():
    with pytest.raises(UserError, match="unknown metric 'auc' in the task config: use one of accuracy, f1, matthews, "):
        compute_metrics("auc", PREDS, LABELS)
    with pytest.raises(ValueError, match="differ in length"):
        compute_metrics("accuracy", PREDS[:3], LABELS)
    with pytest.raises(ValueError, match="^cannot compute metrics on zero examples$"):
        compute_metrics("accuracy", PREDS[:0], LABELS[:0])


def test_one_example():
    assert compute_metrics("accuracy", np.array([1]), np.array([1])) == {"accuracy": 100.0}
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert compute_metrics("spearman", np.array([0.5]), np.array([2.0]))["pearson"] == 0.0  # constant


def test_f1_edge_counts():
    # no positive anywhere: 0/0 scores 0; exactly one true positive: 2 / (2 + 0 + 1)
    assert compute_metrics("f1", np.array([0, 0]), np.array([0, 0]))["f1"] == 0.0
    assert compute_metrics("f1", np.array([1, 0]), np.array([1, 1]))["f1"] == pytest.approx(200 / 3)


def test_constant_labels_score_zero():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        m = compute_metrics("spearman", np.array([0.0, 1, 2, 3]), np.full(4, 2.5))
    assert m == {"spearman": 0.0, "pearson": 0.0, "corr": 0.0}


def test_perfect_correlation_is_exactly_100():
    """For these values the unclipped r is 1 + 2e-16 (and -1 - 2e-16): the clip keeps it at +-100."""
    x = np.array([5.23, 0.89, 9.82, 5.71, 0.06, 7.73])
    assert pearson(x, 2 * x + 1) == 100.0 and pearson(x, -(2 * x + 1)) == -100.0


def test_float32_scores_are_correlated_in_float64():
    """STS-B predictions arrive as float32; computed in float32 the centring loses digits."""
    rng = np.random.default_rng(0)
    x = (1000 + rng.random(50)).astype(np.float32)
    y = (1000 + x + rng.random(50)).astype(np.float32)
    x64, y64 = x.astype(np.float64), y.astype(np.float64)
    expected = 100 * np.corrcoef(x64, y64)[0, 1]
    assert pearson(x, y64) == pytest.approx(expected, rel=1e-12)
    assert pearson(x64, y) == pytest.approx(expected, rel=1e-12)


def test_against_sklearn_and_scipy():
    skm = pytest.importorskip("sklearn.metrics")
    stats = pytest.importorskip("scipy.stats")
    rng = np.random.default_rng(0)
    for _ in range(5):
        y, p = rng.integers(0, 2, 200), rng.integers(0, 2, 200)
        assert compute_metrics("f1", p, y)["f1"] == pytest.approx(100 * skm.f1_score(y, p))
        assert compute_metrics("matthews", p, y)["matthews"] == pytest.approx(100 * skm.matthews_corrcoef(y, p))
        y3, p3 = rng.integers(0, 3, 200), rng.integers(0, 3, 200)
        assert compute_metrics("matthews", p3, y3)["matthews"] == pytest.approx(100 * skm.matthews_corrcoef(y3, p3))
        # STS-B-like scores with many ties
        ys, ps = rng.integers(0, 11, 300) / 2, rng.normal(2.5, 1, 300).round(1)
        m = compute_metrics("spearman", ps, ys)
        assert m["spearman"] == pytest.approx(100 * stats.spearmanr(ps, ys)[0])
        assert m["pearson"] == pytest.approx(100 * stats.pearsonr(ps, ys)[0])
