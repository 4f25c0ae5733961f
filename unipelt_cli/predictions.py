"""Per-example predictions of a run's selected checkpoint: <run>/predictions/<split>.jsonl.

One JSON object a line, in the split's order (test: the GLUE file's; dev: the K-shot draw's):

    {"idx": 17, "label": 1, "pred": 1, "probs": [0.0312, 0.9688]}      classification
    {"idx": 17, "label": 3.8, "pred": 3.4123702}                        regression (STS-B)

idx is the row in the GLUE file the example comes from (0 = the first row after the header): for
dev, a row of GLUE train (the K-shot dev set), for test and test_mismatched (MNLI) a row of GLUE
dev. probs are softmax probabilities rounded to 4 decimals (a few hundred KB for MNLI's 9,815
rows), pred is the argmax of the unrounded logits, so the metric recomputed from the file equals
the result's; a regression score is the float32 output in its shortest exact decimal.
`unipelt eval` rebuilds the model and checks that it writes the same lines.
These files let `unipelt report` compare methods example by example (report/paired.py).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

FOLDER = "predictions"


def lines(logits: np.ndarray, labels: np.ndarray, rows: np.ndarray, regression: bool) -> list[str]:
    """logits: (N, C) float32 in the order of `rows` (the GLUE file's row of each example)."""
    out = []
    if regression:
        for i, label, score in zip(rows.tolist(), labels.astype(np.float32), logits[:, 0], strict=True):
            out.append(json.dumps({"idx": i, "label": _short(label), "pred": _short(score)}))
        return out
    shifted = logits - logits.max(axis=1, keepdims=True)
    probs = np.exp(shifted) / np.exp(shifted).sum(axis=1, keepdims=True)
    preds = logits.argmax(axis=1)
    for i, label, pred, p in zip(rows.tolist(), labels.tolist(), preds.tolist(), probs.tolist(), strict=True):
        out.append(json.dumps({"idx": i, "label": label, "pred": pred, "probs": [round(x, 4) for x in p]}))
    return out


def _short(value: np.float32) -> float:
    """The shortest decimal that reads back as the same float32 (3.8, not 3.799999952316284)."""
    return float(str(np.float32(value)))


def text(rows: list[str]) -> str:
    return "".join(f"{row}\n" for row in rows)


def write(run_dir: Path, split: str, rows: list[str]) -> None:
    from unipelt_cli.runs import atomic_write

    folder = run_dir / FOLDER
    folder.mkdir(exist_ok=True)
    atomic_write(folder / f"{split}.jsonl", text(rows))


def stored(run_dir: Path, split: str) -> str | None:
    path = run_dir / FOLDER / f"{split}.jsonl"
    return path.read_text(encoding="utf-8") if path.is_file() else None


def compare(run_dir: Path, split: str, rows: list[str]) -> str:
    """identical | differs | missing (a run from before predictions were written)."""
    old = stored(run_dir, split)
    if old is None:
        return "missing"
    return "identical" if old == text(rows) else "differs"
