"""Per-example paired tests between two methods, from the runs' predictions/test.jsonl (no torch).

Which test, and why: a **paired bootstrap of the task's metric** (Koehn 2004; Berg-Kirkpatrick et
al. 2012), not McNemar. McNemar tests accuracy only, while GLUE's metrics include Matthews
correlation (CoLA), F1 (MRPC, QQP) and Spearman correlation (STS-B), which are not sums over
examples; the bootstrap resamples the test examples and recomputes whatever the metric is, so one
procedure covers the 8 tasks.

    Δ   = mean over shared seeds s of  m(X_s) - m(Y_s)       on the whole test set
    Δ*b = the same on resample b: N test examples drawn with replacement, the SAME draw for every
          seed and both methods (they predicted the same GLUE dev rows), b = 1..B (B = 1000)
    p   = two-sided: 2 * min(#{Δ*b <= 0} + 1, #{Δ*b >= 0} + 1) / (B + 1), at most 1

Combined over seeds by averaging within each resample; over tasks (the claims) by averaging the
tasks' Δ*b, each task resampled on its own. Pairs are runs with the same (seed, data_seed), as the
seed-level SE pairs them. What it measures: how much Δ could move with another test sample of
the same size, for these trained models; the seed-level SE measures how much it moves with
another K-shot sample and initialisation. A difference worth claiming should pass both.

Resamples are multinomial weights, so each metric is computed for all B resamples at once
(Spearman: average ranks of the weighted sample, exact with ties). The seed is fixed: the same
report prints the same p-values.
"""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path

B = 1000
SEED = 20_221_017


@lru_cache(maxsize=4096)
def _read(path: Path, mtime: float):
    import numpy as np

    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line]
    idx = np.array([r["idx"] for r in rows])
    order = np.argsort(idx, kind="stable")
    return idx[order], np.array([r["label"] for r in rows])[order], np.array([r["pred"] for r in rows])[order]


def predictions(run) -> tuple | None:
    """(rows, labels, preds) of a run's test predictions sorted by row, or None (an older run)."""
    path = run.path / "predictions" / "test.jsonl"
    try:
        return _read(path, path.stat().st_mtime)
    except (OSError, ValueError, KeyError):
        return None


def has_predictions(group) -> bool:
    return bool(group.done) and all(predictions(r) is not None for r in group.done)


def seed_pairs(x, y) -> list[tuple]:
    """[(X predictions, Y predictions)] for the (seed, data_seed) both have, each with predictions
    of the same test rows."""
    ys = {(r.seed, r.data_seed): r for r in y.done}
    out = []
    for r in x.done:
        other = ys.get((r.seed, r.data_seed))
        a, b = predictions(r), other and predictions(other)
        if a is not None and b is not None and len(a[0]) == len(b[0]) and (a[0] == b[0]).all():
            out.append((a, b))
    return out


def weights(n: int, rng):
    """(B, n) multinomial counts: resample b takes example i weights[b, i] times."""
    import numpy as np

    draws = rng.integers(0, n, size=(B, n)) + n * np.arange(B)[:, None]
    return np.bincount(draws.ravel(), minlength=B * n).reshape(B, n).astype(np.float64)


def metric(name: str, preds, labels, w):
    """The metric (percent) on every resample at once: (B,) from weights w (B, N)."""
    import numpy as np

    n = w.sum(axis=1)
    if name == "accuracy":
        return 100 * (w @ (preds == labels)) / n
    if name == "f1":
        p, y = preds == 1, labels == 1
        tp, fp, fn = w @ (p & y), w @ (p & ~y), w @ (~p & y)
        return np.where(tp > 0, 200 * tp / np.maximum(2 * tp + fp + fn, 1e-12), 0.0)
    if name == "matthews":
        classes, inv = np.unique(np.concatenate([labels, preds]), return_inverse=True)
        k, m = len(classes), len(labels)
        onehot = np.zeros((m, k * k))
        onehot[np.arange(m), inv[:m] * k + inv[m:]] = 1
        conf = (w @ onehot).reshape(-1, k, k)  # (B, true, predicted)
        t_sum, p_sum = conf.sum(axis=2), conf.sum(axis=1)
        cov_tp = np.trace(conf, axis1=1, axis2=2) * n - (t_sum * p_sum).sum(1)
        cov_pp, cov_tt = n * n - (p_sum * p_sum).sum(1), n * n - (t_sum * t_sum).sum(1)
        ok = (cov_pp > 0) & (cov_tt > 0)
        return np.where(ok, 100 * cov_tp / np.sqrt(np.where(ok, cov_pp * cov_tt, 1.0)), 0.0)
    if name == "spearman":
        return _weighted_pearson(_weighted_ranks(preds, w), _weighted_ranks(labels, w), w)
    raise ValueError(f"no paired bootstrap for metric {name!r}")


def _weighted_ranks(values, w):
    """Average ranks (1-based) of each example within each weighted resample, ties shared."""
    import numpy as np

    uniq, inv = np.unique(values, return_inverse=True)
    onehot = np.zeros((len(values), len(uniq)))
    onehot[np.arange(len(values)), inv.ravel()] = 1
    per_value = w @ onehot  # (B, U): how many copies of each distinct value
    below = np.cumsum(per_value, axis=1) - per_value
    return (below + (per_value + 1) / 2)[:, inv.ravel()]


def _weighted_pearson(a, b, w):
    import numpy as np

    n = w.sum(axis=1, keepdims=True)
    a = a - (w * a).sum(1, keepdims=True) / n
    b = b - (w * b).sum(1, keepdims=True) / n
    saa, sbb, sab = (w * a * a).sum(1), (w * b * b).sum(1), (w * a * b).sum(1)
    ok = (saa > 1e-12) & (sbb > 1e-12)
    return np.where(ok, 100 * np.clip(sab / np.sqrt(np.where(ok, saa * sbb, 1.0)), -1, 1), 0.0)


def task_deltas(x, y, rng) -> tuple[float, object, int] | None:
    """(Δ on the full test set, Δ* on B resamples, shared seeds) for one task, or None."""
    import numpy as np

    pairs = seed_pairs(x, y)
    if not pairs:
        return None
    name = x.metric
    n = len(pairs[0][0][0])
    full = np.ones((1, n))
    w = weights(n, rng)
    observed, boot = 0.0, np.zeros(B)
    for (_, labels, px), (_, _, py) in pairs:
        observed += float(metric(name, px, labels, full)[0] - metric(name, py, labels, full)[0])
        boot += metric(name, px, labels, w) - metric(name, py, labels, w)
    return observed / len(pairs), boot / len(pairs), len(pairs)


def p_value(boot) -> float:
    low, high = int((boot <= 0).sum()), int((boot >= 0).sum())
    return min(1.0, 2 * (min(low, high) + 1) / (len(boot) + 1))


def test(x: dict, y: dict, tasks: list[str]) -> dict | None:
    """Paired bootstrap of the task-averaged Δ of X against Y (task -> Group), on the tasks where
    both have predictions for shared seeds: {"p", "delta", "tasks", "seeds"} or None."""
    import numpy as np

    rng = np.random.default_rng(SEED)
    found = {t: task_deltas(x[t], y[t], rng) for t in tasks if t in x and t in y}
    found = {t: v for t, v in found.items() if v is not None}
    if not found:
        return None
    delta = sum(v[0] for v in found.values()) / len(found)
    boot = sum(v[1] for v in found.values()) / len(found)
    return {"p": p_value(boot), "delta": delta, "tasks": list(found), "seeds": min(v[2] for v in found.values())}


def fmt_p(p: float) -> str:
    """The floor, 2 / (B + 1), means every resample kept Δ's sign: shown as p ≤ 0.002."""
    return "p ≤ 0.002" if p <= 2 / (B + 1) else f"p = {p:.3f}"
