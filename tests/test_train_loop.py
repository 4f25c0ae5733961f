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


# --- what the loop feeds the model, counts and reports (each test named by the bug it catches) ---


def padded_toy(n: int, seed: int) -> Encoded:
    """Rows of 3-8 tokens (so batches pad), with token type ids, two classes."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 2, n)
    ids = [np.array([2, *rng.integers(10, 20, rng.integers(1, 7)) + 10 * (1 - y), 3]) for y in labels]
    return Encoded(ids, [np.zeros(len(i), dtype=np.int64) for i in ids], labels.astype(np.int64))


class Recorder(torch.nn.Module):
    """Wraps a model and keeps every batch it is given while training."""

    def __init__(self, model):
        super().__init__()
        self.model, self.seen = model, []

    def forward(self, **batch):
        if self.training:
            self.seen.append({k: v.clone() for k, v in batch.items()})
        return self.model(**batch)


def test_each_epoch_trains_the_batches_of_its_seed_in_order():
    """Epoch e trains exactly batches(train, shuffle, seed = seed * 100003 + e, group, pad_id, pad_to):
    the data order of every committed run is this function of (seed, epoch)."""
    from unipelt_cli.data.encode import batches

    torch.set_num_threads(1)
    train = padded_toy(20, 0)  # 20 rows, batch 4, group 2: 5 batches an epoch
    loop = args(batch_size=4, epochs=3, eval_every=0, group=2, pad_id=7, pad_to=9, seed=5)
    model = Recorder(tiny_model())
    result = fit(model, train, padded_toy(8, 1), loop)
    expected = [
        b for e in range(3)
        for _, b in batches(train, 4, shuffle=True, seed=5 * 100_003 + e, group=2, pad_id=7, pad_to=9)
    ]  # fmt: skip
    assert result.steps == len(model.seen) == len(expected) == 15
    for seen, want in zip(model.seen, expected, strict=True):
        want = {k: v for k, v in want.items() if k != "labels"}
        assert seen.keys() == want.keys() and all(torch.equal(seen[k], want[k]) for k in want)
    assert all(b["input_ids"].shape[1] >= 9 for b in model.seen) and (model.seen[0]["input_ids"] == 7).any()


def test_evaluation_every_epoch_and_the_epochs_it_reports():
    """eval_every=0 evaluates at each epoch's end; `epoch` is steps / batches-per-epoch to 3 places."""
    torch.set_num_threads(1)
    result = fit(tiny_model(), toy(24, 0), toy(8, 1), args(epochs=2, eval_every=0))  # 3 batches an epoch
    assert [h["step"] for h in result.history] == [3, 6]
    assert [h["epoch"] for h in result.history] == [1.0, 2.0]
    result = fit(tiny_model(), toy(24, 0), toy(8, 1), args(epochs=2, eval_every=2))
    assert [h["epoch"] for h in result.history] == [0.667, 1.333, 2.0]  # step 6 is also the last
    assert result.epochs_run == 2.0
    result = fit(tiny_model(), toy(24, 0), toy(8, 1), args(max_steps=4, eval_every=2))
    assert result.steps == 4 and result.epochs_run == 1.333  # stops mid-epoch, at max_steps exactly


def test_max_steps_of_one_is_one_step():
    torch.set_num_threads(1)
    result = fit(tiny_model(), toy(24, 0), toy(8, 1), args(max_steps=1, eval_every=5))
    assert result.steps == 1 and [h["step"] for h in result.history] == [1]


def test_patience_of_one_stops_at_the_first_evaluation_without_improvement():
    torch.set_num_threads(1)
    result = fit(tiny_model(), toy(32, 0), toy(24, 1), args(patience=1))
    dev = [h["dev"]["accuracy"] for h in result.history]
    first_flat = next(i for i in range(1, len(dev)) if dev[i] <= max(dev[:i]))
    assert result.stopped_early and len(dev) == first_flat + 1


def test_callbacks_get_the_step_total_loss_and_the_rate_used():
    """on_step(step, total steps, loss) and on_log(step, loss, lr) after every step; lr is the rate
    that step used (warm-up then decay), not the one after it."""
    torch.set_num_threads(1)
    steps, logs = [], []
    loop = args(lr=0.1, warmup_ratio=0.25, max_steps=8, eval_every=4)
    fit(tiny_model(), toy(32, 0), toy(8, 1), loop, on_step=lambda *a: steps.append(a), on_log=lambda *a: logs.append(a))
    assert [s[:2] for s in steps] == [(i, 8) for i in range(1, 9)]
    assert [lg[0] for lg in logs] == list(range(1, 9))
    warm_then_decay = [0.05, 0.1, 0.1, 5 / 6 * 0.1, 4 / 6 * 0.1, 0.05, 2 / 6 * 0.1, 0.1 / 6]
    assert [lg[2] for lg in logs] == pytest.approx(warm_then_decay)
    assert all(isinstance(s[2], float) and s[2] == lg[1] and s[2] > 0 for s, lg in zip(steps, logs, strict=True))


def test_gradients_are_clipped_to_max_grad_norm_and_not_when_it_is_zero(monkeypatch):
    from unipelt_cli import train as loop_mod

    calls = []
    real = torch.nn.utils.clip_grad_norm_

    def spy(params, max_norm, **kwargs):
        calls.append((max_norm, kwargs))
        return real(params, max_norm, **kwargs)

    monkeypatch.setattr(torch.nn.utils, "clip_grad_norm_", spy)
    fit(tiny_model(), toy(16, 0), toy(8, 1), args(max_grad_norm=1.0, max_steps=2))
    assert calls == [(1.0, {"foreach": True})] * 2  # every step; one kernel for all tensors
    calls.clear()
    result = fit(tiny_model(), toy(32, 0), toy(24, 1), args(max_grad_norm=0.0))
    assert calls == [] and max(h["dev"]["accuracy"] for h in result.history) == 100.0  # 0 = no clipping
    assert loop_mod.fit is fit


def test_time_is_split_into_training_and_evaluation_and_survives_a_resume(monkeypatch, tmp_path):
    """train_seconds + eval_seconds = the wall time since the start, evaluation apart; a resumed run
    adds to the time its checkpoint recorded. A fake clock: 1 s a step, 5 s an evaluation."""
    from unipelt_cli import train as loop_mod

    clock = [100.0]
    monkeypatch.setattr(loop_mod.time, "perf_counter", lambda: clock[0])
    real_evaluate = loop_mod.evaluate

    def slow_evaluate(*a, **k):
        clock[0] += 5.0
        return real_evaluate(*a, **k)

    monkeypatch.setattr(loop_mod, "evaluate", slow_evaluate)
    tick = lambda *a: clock.__setitem__(0, clock[0] + 1.0)  # noqa: E731
    torch.set_num_threads(1)
    result = fit(tiny_model(), toy(32, 0), toy(8, 1), args(max_steps=8, eval_every=4), on_step=tick)
    assert (result.train_seconds, result.eval_seconds) == (8.0, 10.0)

    saved = {}
    monkeypatch.setattr(loop_mod.checkpoint, "save", lambda path, state: saved.update(state))
    loop = args(max_steps=8, eval_every=4, checkpoint_every=6, checkpoint_path=tmp_path / "ckpt")
    fit(tiny_model(), toy(32, 0), toy(8, 1), loop, on_step=tick)
    assert (saved["step"], saved["train_seconds"], saved["eval_seconds"]) == (6, 6.0, 5.0)
    clock[0] = 1000.0  # a new process: its clock starts anywhere
    saved["rng"] = loop_mod.checkpoint.rng_state()  # what checkpoint.save adds to the state
    resumed = fit(tiny_model(), toy(32, 0), toy(8, 1), loop, on_step=tick, resume=saved)
    assert (resumed.steps, resumed.train_seconds, resumed.eval_seconds) == (8, 8.0, 10.0)


def reg_toy(n: int, seed: int) -> Encoded:
    """Regression: the score is 5 x the share of tokens 10-14 (the rest 15-19), as STS-B's 0-5."""
    rng = np.random.default_rng(seed)
    toks = rng.integers(10, 20, (n, 4))
    scores = (5 * (toks < 15).mean(1)).astype(np.float32)
    ids = [np.array([2, *t, 3], dtype=np.int64) for t in toks]
    return Encoded(ids, [np.zeros(6, dtype=np.int64) for _ in ids], scores)


def test_a_regression_task_trains_on_squared_error_and_predicts_scores():
    from transformers import BertConfig

    from unipelt_cli.train import loss_fn, predict

    logits, labels = torch.tensor([[1.0], [2.0], [4.0]]), torch.tensor([1.5, 2.0, 1.0])
    assert loss_fn(logits, labels, True).item() == pytest.approx((0.25 + 0 + 9) / 3)
    two = torch.tensor([[2.0, 0.0], [0.0, 1.0]])
    assert loss_fn(two, torch.tensor([0, 0]), False).item() == pytest.approx(
        float(-(torch.log_softmax(two, -1)[[0, 1], [0, 0]]).mean())
    )
    from pelt.pelt_helpers import TINY

    torch.set_num_threads(1)
    model = tiny_model(config=BertConfig(**TINY, num_labels=1))
    loop = args(metric="spearman", regression=True, lr=1e-2, epochs=12, eval_every=8, batch_size=8)
    result = fit(model, reg_toy(32, 0), reg_toy(32, 1), loop)
    assert result.best_dev["spearman"] > 80 and result.history[0]["dev"]["spearman"] < result.best_dev["spearman"]
    scores = predict(model, reg_toy(32, 1), loop)
    assert scores.shape == (32,) and scores.dtype == np.float32 and len(np.unique(scores)) > 4


def test_optimizer_is_fused_adamw_with_decoupled_weight_decay():
    model = tiny_model()
    optimizer, _ = make_optimizer(model, args(lr=0.5, weight_decay=0.1), steps=4)
    assert isinstance(optimizer, torch.optim.AdamW) and optimizer.defaults["fused"] is True
    before = [p.detach().clone() for p in model.parameters()]
    for p in model.parameters():
        p.grad = torch.zeros_like(p)  # no gradient: only the decay moves the weights
    optimizer.step()
    assert all(torch.allclose(p, b * (1 - 0.5 * 0.1)) for p, b in zip(model.parameters(), before, strict=True))


def test_decay_over_a_single_step_after_warm_up():
    """steps=2, warm-up 1: step 0 warms up to 1.0, step 1 decays from (2 - 1) / (2 - 1) = 1.0."""
    optimizer, scheduler = make_optimizer(tiny_model(), args(lr=1.0, warmup_ratio=0.5), steps=2)
    seen = []
    for _ in range(2):
        seen.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    assert seen == [1.0, 1.0]


@pytest.mark.parametrize("seed", [12345, 2**32 + 7])
def test_seed_everything_seeds_python_numpy_and_torch(seed):
    import random

    from unipelt_cli.train import seed_everything

    seed_everything(seed)
    got = (random.random(), np.random.rand(), torch.rand(1).item())
    random.seed(seed)
    np.random.seed(seed % 2**32)  # numpy takes 32-bit seeds; torch and random take the whole seed
    torch.manual_seed(seed)
    assert got == (random.random(), np.random.rand(), torch.rand(1).item())
    seed_everything(seed + 1)
    assert random.random() != got[0] and np.random.rand() != got[1]


def test_autocast_is_bf16_only_when_asked():
    from unipelt_cli.train import autocast

    cpu = torch.device("cpu")
    with autocast(cpu, True):
        assert torch.is_autocast_enabled("cpu") and torch.get_autocast_dtype("cpu") == torch.bfloat16
        assert (torch.ones(2, 2) @ torch.ones(2, 2)).dtype == torch.bfloat16
    with autocast(cpu, False):
        assert not torch.is_autocast_enabled("cpu")
        assert (torch.ones(2, 2) @ torch.ones(2, 2)).dtype == torch.float32
    # bf16 on every device: CUDA's autocast would default to float16 (checked without a GPU: disabled)
    assert autocast(torch.device("cuda"), False).fast_dtype == torch.bfloat16


def test_a_loss_that_is_not_finite_stops_training_naming_the_step():
    from unipelt_cli.train import Diverged

    class BlowsUp(Recorder):
        def forward(self, **batch):
            out = super().forward(**batch)
            if self.training and len(self.seen) == 2:
                out.logits = out.logits * float("nan")
            return out

    torch.set_num_threads(1)
    with pytest.raises(Diverged, match=r"^loss became nan at step 2$"):
        fit(BlowsUp(tiny_model()), toy(32, 0), toy(8, 1), args())


def test_every_evaluation_gives_the_heap_back(monkeypatch):
    from unipelt_cli import memory

    calls = []
    monkeypatch.setattr(memory, "release", lambda: calls.append(1) or True)
    result = fit(tiny_model(), toy(16, 0), toy(8, 1), args(epochs=1, eval_every=1))
    assert len(calls) == len(result.history) == 2  # one trim after each dev evaluation


def test_release_calls_malloc_trim_where_the_c_library_has_it(monkeypatch):
    from unipelt_cli import memory

    asked = []
    monkeypatch.setattr(memory, "_trim", lambda: lambda pad: asked.append(pad) or 1)
    assert memory.release() is True and asked == [0]
    monkeypatch.setattr(memory, "_trim", lambda: lambda pad: 0)
    assert memory.release() is False  # nothing was given back
    monkeypatch.setattr(memory, "_trim", lambda: None)
    assert memory.release() is False  # no malloc_trim (not glibc)


def test_the_onednn_primitive_cache_is_capped_unless_the_user_chose(monkeypatch):
    from unipelt_cli import memory

    monkeypatch.delenv("ONEDNN_PRIMITIVE_CACHE_CAPACITY", raising=False)
    assert memory.limit_primitive_cache() == "64" == str(memory.PRIMITIVE_CACHE)
    monkeypatch.setenv("ONEDNN_PRIMITIVE_CACHE_CAPACITY", "1024")
    assert memory.limit_primitive_cache() == "1024"  # the user's setting wins
