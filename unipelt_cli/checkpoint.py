"""Resumable training: the loop's whole state every N steps, so a run continued with
`unipelt train ... --resume` ends with the same metrics as one that was never stopped.

    saved after step s (s % every == 0):  step, epoch, batches done in that epoch,
        trainable tensors, AdamW and schedule state, best-so-far (metrics, step, tensors),
        evaluations without improvement, history, seconds so far, torch / numpy / python RNG states
    resume:  rebuild the run as at the start (frozen weights reload from the backbone), load the
        state, skip the epoch's first batches (the order is a function of seed and epoch), go on

The file is written with torch.save to a temporary name and renamed (a crash while saving keeps the
previous checkpoint) and read with weights_only=True (no pickled code runs on load). A file that
cannot be read, or that is not a state this loop wrote (other keys, other tensors), is a one-line
error naming it, never a silent start from the beginning.
"""

from __future__ import annotations

import os
import random
from pathlib import Path

import numpy as np
import torch

from unipelt_cli.errors import UserError

FILE = "checkpoint.pt"
KEYS = {
    "step", "epoch", "batches_done", "trained", "optimizer", "scheduler", "best", "best_step", "best_state",
    "bad_evals", "history", "train_seconds", "eval_seconds", "rng",
}  # fmt: skip


def rng_state() -> dict:
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    return {
        "torch": torch.get_rng_state(),
        "numpy": {
            "kind": kind,
            "keys": torch.from_numpy(keys.astype(np.int64)),
            "pos": int(pos),
            "has_gauss": int(has_gauss),
            "gauss": float(gauss),
        },  # fmt: skip
        "python": random.getstate(),
    }


def set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    n = state["numpy"]
    np.random.set_state((n["kind"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["gauss"]))
    random.setstate(state["python"])


def save(path: Path, state: dict) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as fh:  # a Python file: a failed write surfaces as its OSError (disk full)
            torch.save({**state, "rng": rng_state()}, fh)
        os.replace(tmp, path)
    except RuntimeError as exc:  # torch's writer wraps the OSError of the file in a RuntimeError
        if isinstance(exc.__context__, OSError):
            raise exc.__context__ from None
        raise
    finally:
        if tmp.exists():
            tmp.unlink()


def load(path: Path) -> dict | None:
    """The saved state, or None when there is no checkpoint; UserError when the file is not one we wrote."""
    if not path.exists():
        return None
    try:
        state = torch.load(path, weights_only=True)
    except Exception as exc:  # damaged, truncated, or pickled objects that weights_only refuses
        plain = "not a torch file of plain tensors, so it was not loaded"
        raise _unusable(path, plain if "Unpickling" in type(exc).__name__ else _first_line(exc)) from None
    if not isinstance(state, dict) or not KEYS <= set(state):
        missing = sorted(KEYS - set(state)) if isinstance(state, dict) else [type(state).__name__]
        raise _unusable(path, f"missing {', '.join(missing[:4])}")
    return state


def check_fits(state: dict, model, path: Path) -> None:
    """The checkpoint's trained tensors are exactly the model's trainable ones, shape for shape."""
    trainable = {n: p.shape for n, p in model.named_parameters() if p.requires_grad}
    saved = state["trained"]
    if not isinstance(saved, dict) or {n: getattr(v, "shape", None) for n, v in saved.items()} != trainable:
        raise _unusable(path, "its tensors are not this run's trainable tensors")


def _unusable(path: Path, why: str) -> UserError:
    return UserError(
        f"{path} is not a checkpoint this run wrote ({why}): "
        "delete it, or rerun with --force, to start the run from the beginning"
    )


def _first_line(exc: Exception) -> str:
    """The first sentence of the first line: torch's reader errors go on with advice for its developers."""
    lines = str(exc).strip().splitlines()
    return lines[0].split(". ")[0][:160] if lines else "unreadable"
