"""K-shot selection follows the paper: shuffle with data_seed, first K train, next dev_size dev."""

from __future__ import annotations

import numpy as np
import pytest

from unipelt_cli.data.kshot import kshot_indices, rows_hash
from unipelt_cli.errors import UserError


def test_sizes_and_disjoint():
    train, dev = kshot_indices(2490, 100, 1000, data_seed=42)
    assert len(train) == 100 and len(dev) == 1000
    assert train.dtype == np.int64 and dev.dtype == np.int64
    assert not set(train) & set(dev)
    assert len(set(train)) == 100 and len(set(dev)) == 1000
    assert 0 <= min(train.min(), dev.min()) and max(train.max(), dev.max()) < 2490


def test_matches_numpy_permutation():
    perm = np.random.default_rng(7).permutation(3000)
    train, dev = kshot_indices(3000, 500, 1000, data_seed=7)
    assert train.tolist() == perm[:500].tolist()
    assert dev.tolist() == perm[500:1500].tolist()


def test_matches_hf_dataset_shuffle():
    """The original code used Dataset.shuffle(seed=data_seed); check we select the same rows."""
    datasets = pytest.importorskip("datasets")
    ds = datasets.Dataset.from_dict({"i": list(range(1500))}).shuffle(seed=3, keep_in_memory=True)
    train, dev = kshot_indices(1500, 100, 1000, data_seed=3)
    assert train.tolist() == ds["i"][:100]
    assert dev.tolist() == ds["i"][100:1100]


def test_deterministic_and_seed_dependent():
    a = kshot_indices(5000, 100, 1000, data_seed=1)
    b = kshot_indices(5000, 100, 1000, data_seed=1)
    c = kshot_indices(5000, 100, 1000, data_seed=2)
    assert all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))
    assert not np.array_equal(a[0], c[0])


def test_smaller_k_is_prefix_of_larger_k_train():
    """Same data_seed: K=100 rows are the first 100 of the K=500 rows (the paper's nested budgets)."""
    small, _ = kshot_indices(5000, 100, 1000, data_seed=5)
    large, _ = kshot_indices(5000, 500, 1000, data_seed=5)
    assert small.tolist() == large[:100].tolist()


def test_full_data():
    train, dev = kshot_indices(10, None, 1000, data_seed=0)
    assert train.tolist() == list(range(10)) and len(dev) == 0


def test_k_too_large():
    with pytest.raises(UserError) as e:
        kshot_indices(2490, 5000, 1000, data_seed=0, task="rte")
    msg = str(e.value)
    assert msg.startswith("budget K=5000 is too large for rte: K + 1000 dev rows = 6000 > 2490 train rows")
    assert "K <= 1490, e.g. K=100, K=500, K=1000" in msg
    kshot_indices(2490, 1490, 1000, data_seed=0)  # exactly fits


@pytest.mark.parametrize("k", [0, -3])
def test_k_not_positive(k):
    with pytest.raises(UserError, match="must be a positive number"):
        kshot_indices(100, k, 10, data_seed=0)


def test_rows_hash():
    a = rows_hash(np.array([3, 1, 2]))
    assert a == rows_hash([3, 1, 2]) == rows_hash(np.array([3, 1, 2], dtype=np.int32))
    assert a != rows_hash(np.array([1, 2, 3]))
    assert len(a) == 16 and int(a, 16) >= 0


def test_full_data_indices_are_int64():
    train, dev = kshot_indices(5, None, 1000, data_seed=0)
    assert train.dtype == np.int64 and dev.dtype == np.int64  # both index arrays, even the empty one


def test_smallest_budget_and_no_dev_rows():
    """K=1 is a budget; dev_size=0 means no selection-dev rows (the caller selects on GLUE dev)."""
    train, dev = kshot_indices(10, 1, 0, data_seed=4)
    assert train.tolist() == np.random.default_rng(4).permutation(10)[:1].tolist()
    assert dev.dtype == np.int64 and dev.tolist() == []
    train, dev = kshot_indices(10, 10, 0, data_seed=4)  # K = n with no dev rows fits exactly
    assert sorted(train.tolist()) == list(range(10)) and len(dev) == 0


def test_negative_dev_size_message():
    with pytest.raises(UserError) as e:
        kshot_indices(100, 10, -1, data_seed=0)
    assert str(e.value) == "dev size -1 is negative: use the paper's 1000 dev rows"


def test_k_plus_dev_must_fit_even_when_k_alone_fits():
    """K=50 fits in 100 rows, but K + 60 dev rows do not: the dev set would be cut short."""
    with pytest.raises(UserError, match=r"^budget K=50 is too large for this task: K \+ 60 dev rows = 110 > 100"):
        kshot_indices(100, 50, 60, data_seed=0)


@pytest.mark.parametrize(
    "n, k, advice",
    [
        (1200, 500, "K <= 200, e.g. K=100"),  # only the paper budgets that fit beside the dev rows
        (1100, 200, "K <= 100, e.g. K=100"),  # K=100 + 1000 dev rows = 1100 fits exactly
        (1050, 100, "K <= 50"),  # no paper budget fits: no "e.g."
    ],
)
def test_too_large_message_suggests_the_paper_budgets_that_fit(n, k, advice):
    with pytest.raises(UserError) as e:
        kshot_indices(n, k, 1000, data_seed=0)
    assert str(e.value) == (
        f"budget K={k} is too large for this task: K + 1000 dev rows = {k + 1000} > {n} train rows: "
        f"choose a smaller budget ({advice}) or train on the full data"
    )
