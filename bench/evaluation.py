"""Evaluation throughput: examples per second of `predict` (length-sorted batches, inference mode,
autocast when bf16) on a task's GLUE dev set, per method and precision."""

from __future__ import annotations

from bench.common import build, spread, timed
from unipelt_cli.train import predict


def throughput(
    task: str, methods: list[str], repeat: int, limit: int | None = None, extra=(), precisions=("fp32", "bf16")
) -> list[dict]:
    rows = []
    for method in methods:
        for precision in precisions:
            _, data, model, args = build(f"task={task}", f"method={method}", f"train.precision={precision}", *extra)
            enc = data.tests["test"]
            if limit and len(enc) > limit:
                enc = enc.subset(range(limit))
            predict(model, enc.subset(range(min(64, len(enc)))), args)  # warm-up
            seconds = timed(lambda: predict(model, enc, args), repeat)  # noqa: B023
            rows.append({"task": task, "method": method, "precision": precision, "examples": len(enc),
                         "tokens": int(enc.lengths().sum()),
                         "per_second": spread([len(enc) / s for s in seconds])})  # fmt: skip
    return rows
