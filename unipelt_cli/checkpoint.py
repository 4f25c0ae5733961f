"""Resumable training: the loop's whole state every N steps, so a run continued with
`unipelt train ... --resume` ends with the same metrics as one that was never stopped.

    saved after step s (s % every == 0):  step, epoch, batches done in that epoch,
        trainable tensors, AdamW and schedule state, best-so-far (metrics, step, tensors),
        evaluations without improvement, history, seconds so far, torch / numpy / python RNG states
    resume:  rebuild the run as at the start (frozen weights reload from the backbone), load the
        state, skip the epoch's first batches (the order is a function of seed and epoch), go on

The file is written with torch.save to a temporary name and renamed (a crash while saving keeps the
previous checkpoint) and read with weights_only=True (no pickled code runs on load).
"""

from __future__ import annotations

import os
import random
from pathlib import Path

import numpy as np
import torch

FILE = "checkpoint.pt"


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
        torch.save({**state, "rng": rng_state()}, tmp)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def load(path: Path) -> dict | None:
    """The saved state, or None when there is no readable checkpoint."""
    if not path.is_file():
        return None
    try:
        return torch.load(path, weights_only=True)
    except Exception:  # a damaged checkpoint means "start from the beginning", never a crash
        return None
