"""Shared by the benchmarks: the GLUE folder, building a run's model and batches, timing helpers."""

from __future__ import annotations

import os
import statistics
import sys
import time
from pathlib import Path

import torch

from unipelt_cli import config
from unipelt_cli.data.encode import batches
from unipelt_cli.experiment import setup

BATCHES = int(os.environ.get("BENCH_BATCHES", "6"))  # training batches per timed pass
OUT = Path(os.environ.get("BENCH_OUTPUTS", "outputs/bench"))
PRESETS = [
    "finetune", "bitfit", "adapter", "prefix", "lora",
    "unipelt_ap", "unipelt_apl", "unipelt_ap_nogate", "unipelt_apl_nogate",
]  # fmt: skip


def glue_dir() -> str:
    here = Path(__file__).resolve().parents[1]
    for candidate in (os.environ.get("UNIPELT_GLUE_DIR"), here.parent / "shared/data/glue"):
        if candidate and Path(candidate, "SST-2", "train.tsv").is_file():
            return str(candidate)
    sys.exit("the benchmarks need real GLUE: set UNIPELT_GLUE_DIR to the GLUE TSV folder")


def build(*overrides: str):
    """(spec, data, model, loop args) exactly as `unipelt train` builds them for these overrides."""
    cfg = config.compose([f"data.dir={glue_dir()}", *overrides])
    return setup(cfg, OUT)


def train_batches(data, args, n: int) -> list[dict]:
    """The first n shuffled training batches (seed 0): every method is timed on these same batches."""
    out = []
    for _, batch in batches(data.train, args.batch_size, shuffle=True, seed=0, group=args.group, pad_id=args.pad_id):
        out.append(batch)
        if len(out) == n:
            break
    return out


def spread(values: list[float]) -> dict:
    return {"median": statistics.median(values), "min": min(values), "max": max(values), "n": len(values)}


def timed(fn, repeat: int) -> list[float]:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return times


def matmul_peak(dtype: torch.dtype, sizes=(512, 1024, 2048), repeat: int = 9) -> float:
    """FLOP/s of square matrix multiplies in this process: the best size's median of `repeat`."""
    best = 0.0
    for n in sizes:
        a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
        for _ in range(2):
            a @ b
        best = max(best, 2 * n**3 / statistics.median(timed(lambda: a @ b, repeat)))  # noqa: B023
    return best


def fmt_spread(s: dict, scale: float = 1.0, digits: int = 1) -> str:
    return f"{s['median'] * scale:.{digits}f} ({s['min'] * scale:.{digits}f}-{s['max'] * scale:.{digits}f})"
