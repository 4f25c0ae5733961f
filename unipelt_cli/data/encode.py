"""Tokenise a split once per (backbone, task file, max length), cache it, and batch it with dynamic padding.

Tokenising SST-2 train takes seconds and is identical for every method and seed of a sweep, so the
ids are cached as one flat int32 array plus row offsets in an .npz file. The cache name hashes
everything that changes the ids: the caller's backbone key, the file (path, size, mtime) or hub id,
max_length, the row count and the text itself (so a K-shot subset never collides with another).
Labels are not cached; they always come from the split. Batches are padded only to the longest
row in the batch, which at max_length 128 on GLUE roughly halves the work of fixed padding.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from unipelt_cli.data.glue import Split

log = logging.getLogger(__name__)
CACHE_VERSION = 1  # bump when the cache file format changes


@dataclass
class Encoded:
    """Token ids per example (special tokens added, truncated to max_length), plus labels."""

    input_ids: list[np.ndarray]
    token_type_ids: list[np.ndarray] | None
    labels: np.ndarray

    def __len__(self) -> int:
        return len(self.input_ids)

    def subset(self, idx: np.ndarray) -> Encoded:
        idx = np.asarray(idx, dtype=np.int64)
        tt = None if self.token_type_ids is None else [self.token_type_ids[i] for i in idx]
        return Encoded([self.input_ids[i] for i in idx], tt, self.labels[idx])

    def lengths(self) -> np.ndarray:
        return np.fromiter((len(x) for x in self.input_ids), dtype=np.int64, count=len(self.input_ids))


def encode(split: Split, tokenizer, max_length: int, cache_dir: Path | None, cache_key: str) -> Encoded:
    """Tokenise every row in one batched call (truncation=True, no padding), reusing the cache if valid."""
    path = None
    if cache_dir is not None:
        path = Path(cache_dir) / f"tok-{_cache_name(split, max_length, cache_key)}.npz"
        cached = _load(path, len(split))
        if cached is not None:
            ids, tt = cached
            return Encoded(ids, tt, split.labels)
    if len(split) == 0:
        return Encoded([], None, split.labels)
    segments = list(zip(*split.texts, strict=True))
    out = tokenizer(*[list(s) for s in segments], truncation=True, max_length=max_length, padding=False)
    ids = [np.asarray(x, dtype=np.int32) for x in out["input_ids"]]
    tt = None
    if "token_type_ids" in out:
        tt = [np.asarray(x, dtype=np.int8) for x in out["token_type_ids"]]
    if path is not None:
        _save(path, ids, tt)
    return Encoded(ids, tt, split.labels)


def _cache_name(split: Split, max_length: int, cache_key: str) -> str:
    src = Path(split.source)
    stat = None
    if src.is_file():
        st = src.stat()
        stat = [st.st_size, st.st_mtime_ns]
    h = hashlib.sha256()
    meta = [CACHE_VERSION, cache_key, split.source, stat, max_length, len(split)]
    h.update(json.dumps(meta).encode())
    h.update("\x1e".join("\x1f".join(t) for t in split.texts).encode("utf-8", "surrogatepass"))
    return h.hexdigest()[:24]


def _save(path: Path, ids: list[np.ndarray], tt: list[np.ndarray] | None) -> None:
    """Write via a temp file + os.replace, so a killed run never leaves a half-written cache."""
    offsets = np.zeros(len(ids) + 1, dtype=np.int64)
    offsets[1:] = np.cumsum([len(x) for x in ids])
    arrays = {"ids": np.concatenate(ids) if ids else np.zeros(0, np.int32), "offsets": offsets}
    if tt is not None:
        arrays["token_type_ids"] = np.concatenate(tt) if tt else np.zeros(0, np.int8)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as f:
                np.savez(f, **arrays)
            os.replace(tmp, path)
        except BaseException:
            os.unlink(tmp)
            raise
    except OSError as e:
        log.warning("could not write token cache %s (%s); continuing without it", path, e)


def _load(path: Path, n: int) -> tuple[list[np.ndarray], list[np.ndarray] | None] | None:
    """Cached (ids, token_type_ids), or None if missing or unreadable (then we re-tokenise)."""
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as z:
            ids, offsets = z["ids"], z["offsets"]
            tt = z["token_type_ids"] if "token_type_ids" in z.files else None
        ok = len(offsets) == n + 1 and offsets[0] == 0 and offsets[-1] == len(ids) and np.all(np.diff(offsets) >= 0)
        if not ok or (tt is not None and len(tt) != len(ids)):
            raise ValueError("inconsistent arrays")
    except Exception as e:  # any damage (truncated zip, bad arrays) just means "tokenise again"
        log.warning("ignoring unreadable token cache %s (%s); re-tokenising", path, e)
        return None
    cuts = offsets[1:-1]
    return np.split(ids, cuts), (None if tt is None else np.split(tt, cuts))


def batches(
    enc: Encoded,
    batch_size: int,
    *,
    shuffle: bool,
    seed: int | None = None,
    by_length: bool = False,
    group: int = 1,
    pad_id: int = 0,
    pad_to: int = 0,
) -> Iterator[tuple[np.ndarray, dict[str, torch.Tensor]]]:
    """Yield (indices into enc, batch) with input_ids/attention_mask/[token_type_ids]/labels.

    shuffle: order from np.random.default_rng(seed).permutation (deterministic for a seed).
    group (with shuffle): length-grouped batches. The permutation is cut into chunks of
      group * batch_size rows, each chunk is sorted by length and cut into batches, and the batches
      are shuffled. Rows of like length share a batch (less padding) while batch membership still
      changes with the seed. group=1 is the plain shuffle.
    by_length: longest rows first, for evaluation (little padding, and an out-of-memory error shows
    up on the first batch); map predictions back with the yielded indices.
    pad_to: pad every batch to at least this width (the original UniPELT code padded to 128, and its
      gates average over every position; `pelt.gate_pooling=all` uses this to match it exactly).
    Labels are long for class ids, float32 for regression scores.
    """
    if shuffle and by_length:
        raise ValueError("batches: shuffle and by_length are exclusive")
    if batch_size <= 0 or group <= 0:
        raise ValueError(f"batches: batch_size and group must be positive, got {batch_size} and {group}")
    n = len(enc)
    if shuffle:
        rng = np.random.default_rng(seed)
        order = rng.permutation(n)
        if group > 1:
            order = _length_grouped(order, enc.lengths(), batch_size, group, rng)
    elif by_length:
        order = np.argsort(-enc.lengths(), kind="stable")
    else:
        order = np.arange(n)
    regression = np.issubdtype(enc.labels.dtype, np.floating)
    for start in range(0, n, batch_size):
        idx = order[start : start + batch_size]
        rows = [enc.input_ids[i] for i in idx]
        width = max(pad_to, *(len(r) for r in rows))
        ids = np.full((len(idx), width), pad_id, dtype=np.int64)
        mask = np.zeros((len(idx), width), dtype=np.int64)
        for j, r in enumerate(rows):
            ids[j, : len(r)] = r
            mask[j, : len(r)] = 1
        batch = {"input_ids": torch.from_numpy(ids), "attention_mask": torch.from_numpy(mask)}
        if enc.token_type_ids is not None:
            tt = np.zeros((len(idx), width), dtype=np.int64)
            for j, i in enumerate(idx):
                tt[j, : len(enc.token_type_ids[i])] = enc.token_type_ids[i]
            batch["token_type_ids"] = torch.from_numpy(tt)
        labels = enc.labels[idx]
        batch["labels"] = torch.from_numpy(labels.astype(np.float32 if regression else np.int64))
        yield idx, batch


def _length_grouped(order: np.ndarray, lengths: np.ndarray, batch_size: int, group: int, rng) -> np.ndarray:
    """`order` regrouped: chunks of group * batch_size sorted by length, cut into batches, batches shuffled.
    The last, short batch (if any) stays last, so every other batch has batch_size rows."""
    chunk = group * batch_size
    parts = []
    for start in range(0, len(order), chunk):
        rows = order[start : start + chunk]
        parts.append(rows[np.argsort(-lengths[rows], kind="stable")])
    regrouped = np.concatenate(parts) if parts else order
    full = len(regrouped) // batch_size
    cut = [regrouped[i * batch_size : (i + 1) * batch_size] for i in range(full)]
    tail = regrouped[full * batch_size :]
    cut = [cut[i] for i in rng.permutation(full)]
    return np.concatenate([*cut, tail]) if cut or len(tail) else regrouped
