"""GLUE metrics in plain numpy, on the paper's percent scale (accuracy 82.36, not 0.8236).

Written out rather than imported from scikit-learn/scipy so the runtime needs neither. Degenerate
inputs that would make a correlation undefined (0/0) score 0 instead of NaN, without a warning:
- Matthews correlation is 0 when all predictions (or all labels) are one class; this is
  scikit-learn's convention too, and it is what the paper's "CoLA 0.00" entries mean.
- Pearson and Spearman are 0 when either the predictions or the labels are constant.
- F1 is 0 when there are no true positives (no positive predictions, or no positive labels).
"""

from __future__ import annotations

import numpy as np

from unipelt_cli.errors import UserError

PRIMARY_METRICS = ("accuracy", "f1", "matthews", "spearman")


def compute_metrics(metric: str, preds: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    """Primary metric `metric` plus the usual secondaries, as python floats in percent.

    accuracy -> accuracy; f1 (MRPC, QQP; class 1 is positive) -> f1, accuracy, acc_and_f1;
    matthews (CoLA) -> matthews, accuracy; spearman (STS-B) -> spearman, pearson, corr.
    `preds` are class ids, or float scores for spearman.
    """
    preds = np.asarray(preds).ravel()
    labels = np.asarray(labels).ravel()
    if preds.shape != labels.shape:
        raise ValueError(f"preds and labels differ in length: {preds.shape[0]} vs {labels.shape[0]}")
    if preds.size == 0:
        raise ValueError("cannot compute metrics on zero examples")
    if metric == "accuracy":
        return {"accuracy": accuracy(preds, labels)}
    if metric == "f1":
        acc, f = accuracy(preds, labels), f1(preds, labels)
        return {"f1": f, "accuracy": acc, "acc_and_f1": (acc + f) / 2}
    if metric == "matthews":
        return {"matthews": matthews(preds, labels), "accuracy": accuracy(preds, labels)}
    if metric == "spearman":
        s, p = spearman(preds, labels), pearson(preds, labels)
        return {"spearman": s, "pearson": p, "corr": (s + p) / 2}
    raise UserError(f"unknown metric {metric!r} in the task config: use one of {', '.join(PRIMARY_METRICS)}")


def accuracy(preds: np.ndarray, labels: np.ndarray) -> float:
    return float(np.mean(preds == labels) * 100)


def f1(preds: np.ndarray, labels: np.ndarray, positive: int = 1) -> float:
    """Binary F1 of class `positive`: 2TP / (2TP + FP + FN)."""
    p, y = preds == positive, labels == positive
    tp = int(np.sum(p & y))
    denom = 2 * tp + int(np.sum(p & ~y)) + int(np.sum(~p & y))
    return 0.0 if tp == 0 else float(200 * tp / denom)


def matthews(preds: np.ndarray, labels: np.ndarray) -> float:
    """Multiclass Matthews correlation (Gorodkin's R_K, as scikit-learn), from the confusion matrix."""
    classes, inv = np.unique(np.concatenate([labels, preds]), return_inverse=True)
    k, n = len(classes), len(labels)
    conf = np.zeros((k, k), dtype=np.float64)
    np.add.at(conf, (inv[:n], inv[n:]), 1)
    t_sum, p_sum = conf.sum(axis=1), conf.sum(axis=0)
    cov_tp = np.trace(conf) * n - t_sum @ p_sum
    cov_pp = n * n - p_sum @ p_sum
    cov_tt = n * n - t_sum @ t_sum
    if cov_pp == 0 or cov_tt == 0:
        return 0.0
    return float(cov_tp / np.sqrt(cov_tt * cov_pp) * 100)


def pearson(x: np.ndarray, y: np.ndarray) -> float:
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    # Test constancy on the raw values: after centring, rounding can leave a tiny nonzero spread.
    if np.all(x == x[0]) or np.all(y == y[0]):
        return 0.0
    x, y = x - x.mean(), y - y.mean()
    sxx, syy = float(x @ x), float(y @ y)
    r = float(x @ y) / np.sqrt(sxx * syy)
    return float(np.clip(r, -1.0, 1.0) * 100)


def spearman(x: np.ndarray, y: np.ndarray) -> float:
    """Pearson correlation of the ranks, tied values sharing their average rank (scipy's default)."""
    return pearson(rank_average(x), rank_average(y))


def rank_average(a: np.ndarray) -> np.ndarray:
    """1-based ranks; a run of equal values gets the mean of the ranks it spans."""
    _, inv, counts = np.unique(np.asarray(a), return_inverse=True, return_counts=True)
    ends = np.cumsum(counts)  # rank of the last member of each tie group
    avg = ends - (counts - 1) / 2.0
    return avg[inv.ravel()]
