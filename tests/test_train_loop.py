"""The training loop on a tiny model that really learns: model selection restores the best-on-dev
weights (not the last ones), early stopping counts evaluations without a strict improvement, and
the learning-rate schedule is linear warm-up then linear decay to zero."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from pelt.pelt_helpers import tiny_model

from unipelt_cli.data.encode import Encoded
from unipelt_cli.model import trained_state
from unipelt_cli.train import LoopArgs, evaluate, fit, make_optimizer


def toy(n: int, seed: int) -> Encoded:
    """Class 1 sentences use tokens 10-19, class 0 tokens 20-29; [CLS] = 2, [SEP] = 3, no padding."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 2, n)
    ids = [np.array([2, *rng.integers(10, 20, 4) + 10 * (1 - y), 3], dtype=np.int64) for y in labels]
    return Encoded(ids, [np.zeros(6, dtype=np.int64) for _ in ids], labels.astype(np.int64))


def args(**changes) -> LoopArgs:
    base = dict(
        lr=1e-2, weight_decay=0.0, warmup_ratio=0.0, batch_size=8, epochs=6, max_steps=0, eval_every=2,
        patience=0, max_grad_norm=1.0, eval_batch_size=16, metric="accuracy", regression=False, seed=1,
    )  # fmt: skip
    return LoopArgs(**(base | changes))


@pytest.fixture(scope="module")
def trained():
    torch.set_num_threads(1)
    model = tiny_model()
    train, dev = toy(32, 0), toy(24, 1)
    snapshots = {}
    result = fit(model, train, dev, args(), on_eval=lambda r: snapshots.update({r["step"]: trained_state(model)}))
    return model, dev, result, snapshots


def test_the_tiny_model_learns(trained):
    _, _, result, _ = trained
    dev = [h["dev"]["accuracy"] for h in result.history]
    assert dev[0] < 70 and max(dev) == 100.0  # it starts near chance and ends perfect on dev


def test_the_best_on_dev_weights_are_restored_not_the_last(trained):
    model, dev, result, snapshots = trained
    dev_curve = [(h["step"], h["dev"]["accuracy"]) for h in result.history]
    first_best = next(step for step, acc in dev_curve if acc == max(a for _, a in dev_curve))
    assert result.best_step == first_best < result.steps == 24  # later ties are no strict improvement
    assert result.best_dev == next(h["dev"] for h in result.history if h["step"] == first_best)
    now = trained_state(model)
    assert all(torch.equal(now[k], v) for k, v in snapshots[result.best_step].items())
    assert not all(torch.equal(now[k], v) for k, v in snapshots[result.steps].items())  # best != last
    assert evaluate(model, dev, args()) == result.best_dev  # dev re-evaluated on the restored weights


def test_early_stopping_counts_evaluations_without_strict_improvement():
    torch.set_num_threads(1)
    model = tiny_model()
    result = fit(model, toy(32, 0), toy(24, 1), args(patience=2))
    assert result.stopped_early
    assert result.steps == result.best_step + 2 * 2  # two more evaluations, every 2 steps, then stop
    assert len(result.history) == result.best_step // 2 + 2


@pytest.mark.parametrize("warmup_ratio, expected", [(0.0, [1.0, 0.75, 0.5, 0.25]), (0.5, [0.5, 1.0, 1.0, 0.5])])
def test_learning_rate_schedule(warmup_ratio, expected):
    """4 steps: warm-up (step + 1) / warmup for int(ratio * 4) steps, then (4 - step) / (4 - warmup)."""
    model = tiny_model()
    optimizer, scheduler = make_optimizer(model, args(lr=1.0, warmup_ratio=warmup_ratio), steps=4)
    seen = []
    for _ in range(4):
        seen.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    assert seen == pytest.approx(expected, abs=1e-12)
    assert optimizer.param_groups[0]["lr"] == 0.0
