"""The paper's low-resource protocol: which train rows form the K-shot train and selection-dev sets.

UniPELT (section 4.1, reference notes section 2): shuffle the whole GLUE train split with
`data_seed`, train on the first K rows (not class-balanced), use the NEXT `dev_size` rows (1,000 in
the paper) as the dev set for model selection and early stopping; the GLUE dev set is the test set.
The original code shuffles with HF `Dataset.shuffle(seed=data_seed)`, which is exactly
`np.random.default_rng(data_seed).permutation(n)`, so we use that directly and get the same rows.
"""

from __future__ import annotations

import hashlib

import numpy as np

from unipelt_cli.errors import UserError

PAPER_BUDGETS = (100, 500, 1000)


def kshot_indices(
    n: int, k: int | None, dev_size: int, data_seed: int, *, task: str | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Return (train_idx, dev_idx) into a train split of `n` rows.

    k=None means full data: every row in file order (the training loop shuffles per epoch with
    `seed`) and no dev rows, because the caller then selects on the GLUE dev set as the paper did.
    `task` only makes the error message name the task.
    """
    if k is None:
        return np.arange(n, dtype=np.int64), np.zeros(0, dtype=np.int64)
    name = task or "this task"
    if k <= 0:
        raise UserError(f"budget K={k} must be a positive number of training rows: use e.g. K=100, 500 or 1000")
    if dev_size < 0:
        raise UserError(f"dev size {dev_size} is negative: use the paper's 1000 dev rows")
    if k + dev_size > n:
        fit = [b for b in PAPER_BUDGETS if b + dev_size <= n]
        suggest = f", e.g. {', '.join(f'K={b}' for b in fit)}" if fit else ""
        raise UserError(
            f"budget K={k} is too large for {name}: K + {dev_size} dev rows = {k + dev_size} > {n} train rows: "
            f"choose a smaller budget (K <= {n - dev_size}{suggest}) or train on the full data"
        )
    perm = np.random.default_rng(data_seed).permutation(n).astype(np.int64)
    return perm[:k], perm[k : k + dev_size]


def rows_hash(idx: np.ndarray) -> str:
    """Short sha256 of the selected row indices (as little-endian int64), to record which rows a run used."""
    data = np.ascontiguousarray(np.asarray(idx, dtype="<i8")).tobytes()
    return hashlib.sha256(data).hexdigest()[:16]
