"""Two levers the round-two issue asked to weigh, measured on the UniPELT APL train step (bf16).

    packing  R runs packed into one process share every frozen matmul, so each sees R times the
             rows. Its upper bound on this CPU: the step time per example at batch 16 R against
             batch 16 (one run's data R times over; per-run parameters, optimisers and clipping
             only add to the packed cost, so the real gain is at most this).
    compile  torch.compile (inductor, dynamic shapes for length-grouped batches) of the whole
             model: seconds to compile, and the step time afterwards against eager.
Rounds interleave the configurations, as in bench/steps.py.
"""

from __future__ import annotations

import time

import torch

from bench.common import build, spread, train_batches
from bench.steps import Stepper, interleaved


def _stacked(batches: list[dict], r: int) -> list[dict]:
    """Each batch R times along the batch axis (padded to the longest, as one packed batch would be)."""
    return [{k: v.repeat(r, *([1] * (v.dim() - 1))) for k, v in b.items()} for b in batches]


def packing(rounds: int, sizes=(1, 2, 4), n: int = 4) -> list[dict]:
    steppers = {}
    for r in sizes:
        _, data, model, args = build("task=sst2", "budget=k1000", "method=unipelt_apl")
        batches = train_batches(data, args, n)
        steppers[r] = Stepper(model, args, _stacked(batches, r))
        steppers[r].one_pass()  # warm-up
    times = interleaved(steppers, rounds)
    rows = sum(b["input_ids"].shape[0] for b in steppers[1].batches) / n
    base = spread(times[1])["median"] / rows
    out = []
    for r in sizes:
        s = spread([t / (rows * r) for t in times[r]])
        out.append({"runs": r, "batch": int(rows * r), "ms_per_example": s, "vs_one": s["median"] / base})
    return out


def compiled(rounds: int, n: int = 6) -> dict:
    _, data, model, args = build("task=sst2", "method=unipelt_apl")
    batches = train_batches(data, args, n)
    eager = Stepper(model, args, batches)
    eager.one_pass()
    _, _, model2, args2 = build("task=sst2", "method=unipelt_apl")
    compiled_model = torch.compile(model2, dynamic=True)
    fast = Stepper(model2, args2, batches, forward=lambda b: compiled_model(**b).logits)
    t0 = time.perf_counter()
    fast.one_pass()  # compiles (and recompiles for new shapes) here
    first = time.perf_counter() - t0
    times = interleaved({"eager": eager, "compiled": fast}, rounds)
    e, c = spread(times["eager"]), spread(times["compiled"])
    return {"first_pass_s": first, "eager": e, "compiled": c, "ratio": c["median"] / e["median"]}
