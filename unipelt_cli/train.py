"""One readable training loop: AdamW, linear warm-up and decay, evaluation every N steps, early
stopping on the task's primary metric, the best-on-dev weights restored before the test evaluation.

    for each step:  loss = L(model(batch));  backward;  clip;  AdamW step;  schedule step
    every eval_every steps (0 = each epoch):  dev metric; keep the trained tensors if it improved
    stop after `patience` evaluations without a strict improvement
    restore the best tensors; evaluate test (and MNLI mismatched)
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch.nn import functional as F

from unipelt_cli import checkpoint, memory
from unipelt_cli.data.encode import Encoded, batches
from unipelt_cli.metrics import compute_metrics
from unipelt_cli.model import restore_state, trained_state


class Diverged(Exception):
    """The loss became NaN or infinite: recorded as status `diverged`, not a crash."""


@dataclass
class LoopArgs:
    lr: float
    weight_decay: float
    warmup_ratio: float
    batch_size: int
    epochs: int
    max_steps: int
    eval_every: int
    patience: int
    max_grad_norm: float
    eval_batch_size: int
    metric: str  # the task's primary metric
    regression: bool
    seed: int
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    bf16: bool = False
    group: int = 1  # length-grouped training batches (see data.encode.batches)
    checkpoint_every: int = 0  # steps between checkpoints (0 = none); needs checkpoint_path
    checkpoint_path: Path | None = None
    pad_id: int = 0  # the tokenizer's padding id (BERT 0, RoBERTa 1)
    pad_to: int = 0  # pad batches to this width (gate_pooling=all: max_length, as the original code)


@dataclass
class LoopResult:
    best_dev: dict
    best_step: int
    steps: int
    epochs_run: float
    stopped_early: bool
    history: list[dict]
    train_seconds: float
    eval_seconds: float
    best_extra: object = None  # what dev_eval returned beside the best metrics (None: not from this process)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def autocast(device: torch.device, bf16: bool):
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=bf16)


def loss_fn(logits: torch.Tensor, labels: torch.Tensor, regression: bool) -> torch.Tensor:
    logits = logits.float()
    if regression:
        return F.mse_loss(logits.squeeze(-1), labels.float())
    return F.cross_entropy(logits, labels)


@torch.inference_mode()
def predict_logits(model, enc: Encoded, args: LoopArgs) -> np.ndarray:
    """Logits (N, num_labels) as float32, in the order of `enc`.

    Batches are sorted by length, so little compute goes to padding; no autograd state is kept.
    """
    model.eval()
    out = None
    with autocast(args.device, args.bf16):  # one context: autocast casts each trainable weight once, not per batch
        for idx, batch in batches(
            enc, args.eval_batch_size, shuffle=False, by_length=True, pad_id=args.pad_id, pad_to=args.pad_to
        ):
            batch = {k: v.to(args.device) for k, v in batch.items() if k != "labels"}
            logits = model(**batch).logits.float()
            if out is None:
                out = np.zeros((len(enc), logits.shape[-1]), dtype=np.float32)
            out[idx] = logits.cpu().numpy()
    memory.release()  # the evaluation's freed blocks go back to the OS, not into the training steps' heap
    return out if out is not None else np.zeros((0, 1), dtype=np.float32)


def from_logits(logits: np.ndarray, regression: bool) -> np.ndarray:
    """Class ids, or scores for regression."""
    return logits[:, 0] if regression else logits.argmax(-1)


def predict(model, enc: Encoded, args: LoopArgs) -> np.ndarray:
    """Predictions in the order of `enc`: class ids, or scores for regression."""
    return from_logits(predict_logits(model, enc, args), args.regression)


def evaluate(model, enc: Encoded, args: LoopArgs) -> dict[str, float]:
    return compute_metrics(args.metric, predict(model, enc, args), enc.labels)


def total_steps(n_train: int, args: LoopArgs) -> int:
    if args.max_steps > 0:
        return args.max_steps
    return args.epochs * math.ceil(n_train / args.batch_size)


def make_optimizer(model, args: LoopArgs, steps: int):
    params = [p for p in model.parameters() if p.requires_grad]
    fused = all(p.dtype in (torch.float32, torch.bfloat16) for p in params)  # one kernel for all tensors
    optimizer = torch.optim.AdamW(params, lr=args.lr, weight_decay=args.weight_decay, fused=fused)
    warmup = int(args.warmup_ratio * steps)

    def schedule(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        return max(0.0, (steps - step) / max(1, steps - warmup))

    return optimizer, torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)


def fit(
    model,
    train: Encoded,
    dev: Encoded,
    args: LoopArgs,
    on_step: Callable[[int, int, float], None] | None = None,
    on_eval: Callable[[dict], None] | None = None,
    resume: dict | None = None,
    on_log: Callable[[int, float, float], None] | None = None,
    dev_eval: Callable[[object], tuple[dict, object]] | None = None,
) -> LoopResult:
    """Train with early stopping on `dev`; leaves the best-on-dev tensors in `model`.
    `resume`: a state from checkpoint.load, to continue where it was saved.
    `on_log(step, loss, lr)`: after every step, for the trackers (unipelt_cli/loggers).
    `dev_eval(model) -> (metrics, extra)`: the dev evaluation (default: metrics only, extra None); the
    best evaluation's extra is returned as `best_extra`, so the caller need not evaluate dev again
    with the restored tensors (None when that evaluation happened before a resumed checkpoint)."""
    dev_eval = dev_eval or (lambda m: (evaluate(m, dev, args), None))
    steps = total_steps(len(train), args)
    optimizer, scheduler = make_optimizer(model, args, steps)
    params = [p for p in model.parameters() if p.requires_grad]
    per_epoch = math.ceil(len(train) / args.batch_size)
    eval_every = args.eval_every or per_epoch
    primary = args.metric
    best, best_step, best_state, bad_evals, best_extra = None, 0, None, 0, None
    history: list[dict] = []
    step, epoch, skip, stopped_early = 0, 0, 0, False
    t0, eval_seconds = time.perf_counter(), 0.0
    if resume is not None:
        restore_state(model, resume["trained"])
        optimizer.load_state_dict(resume["optimizer"])
        scheduler.load_state_dict(resume["scheduler"])
        step, epoch, skip = resume["step"], resume["epoch"], resume["batches_done"]
        best, best_step, best_state = resume["best"], resume["best_step"], resume["best_state"]
        bad_evals, history = resume["bad_evals"], resume["history"]
        t0, eval_seconds = t0 - resume["train_seconds"] - resume["eval_seconds"], resume["eval_seconds"]
        checkpoint.set_rng_state(resume["rng"])
    while step < steps and not stopped_early:
        model.train()
        epoch_batches = batches(
            train,
            args.batch_size,
            shuffle=True,
            seed=args.seed * 100_003 + epoch,
            group=args.group,
            pad_id=args.pad_id,
            pad_to=args.pad_to,
        )
        for done_in_epoch, (_, batch) in enumerate(epoch_batches, start=1):
            if done_in_epoch <= skip:  # resumed: these batches were trained before the checkpoint
                continue
            batch = {k: v.to(args.device) for k, v in batch.items()}
            labels = batch.pop("labels")
            with autocast(args.device, args.bf16):
                logits = model(**batch).logits
            loss = loss_fn(logits, labels, args.regression)
            if not torch.isfinite(loss):
                raise Diverged(f"loss became {loss.item()} at step {step + 1}")
            loss.backward()
            if args.max_grad_norm > 0:
                torch.nn.utils.clip_grad_norm_(params, args.max_grad_norm, foreach=True)
            lr = optimizer.param_groups[0]["lr"]  # the rate this step uses
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            step += 1
            if on_step:
                on_step(step, steps, loss.item())
            if on_log:
                on_log(step, loss.item(), lr)
            if step % eval_every == 0 or step == steps:
                t_eval = time.perf_counter()
                metrics, extra = dev_eval(model)
                eval_seconds += time.perf_counter() - t_eval
                improved = best is None or metrics[primary] > best[primary]
                if improved:
                    best, best_step, best_state, bad_evals = metrics, step, trained_state(model), 0
                    best_extra = extra
                else:
                    bad_evals += 1
                record = {"step": step, "epoch": round(step / per_epoch, 3), "loss": loss.item(), "dev": metrics}
                history.append(record)
                if on_eval:
                    on_eval(record)
                model.train()
                if bad_evals >= args.patience > 0:
                    stopped_early = True
            if step >= steps or stopped_early:
                break
            if args.checkpoint_every and step % args.checkpoint_every == 0:
                elapsed = time.perf_counter() - t0
                checkpoint.save(args.checkpoint_path, {
                    "step": step, "epoch": epoch, "batches_done": done_in_epoch,
                    "trained": trained_state(model), "optimizer": optimizer.state_dict(),
                    "scheduler": scheduler.state_dict(), "best": best, "best_step": best_step,
                    "best_state": best_state, "bad_evals": bad_evals, "history": history,
                    "train_seconds": elapsed - eval_seconds, "eval_seconds": eval_seconds,
                })  # fmt: skip
        skip = 0
        epoch += 1
    restore_state(model, best_state)
    return LoopResult(
        best_dev=best,
        best_step=best_step,
        steps=step,
        epochs_run=round(step / per_epoch, 3),
        stopped_early=stopped_early,
        history=history,
        train_seconds=time.perf_counter() - t0 - eval_seconds,
        eval_seconds=eval_seconds,
        best_extra=best_extra,
    )
