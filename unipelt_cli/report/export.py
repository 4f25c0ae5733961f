"""Machine-readable exports: CSV in long form (one row per run) and wide form (one row per table row),
and JSON (every cell, every variant, the derived tables, warnings)."""

from __future__ import annotations

import csv
import io
import json
import math

from unipelt_cli.report import Report, aggregate, paper
from unipelt_cli.report.names import budget_key, method_key, task_key
from unipelt_cli.report.tables import Grid, Image

LONG_COLUMNS = [
    "run_id", "state", "backbone", "task", "method", "budget", "seed", "data_seed", "config_hash", "variant",
    "shown", "metric", "test", "dev", "test_extra", "stored_params", "trainable_params", "backbone_params",
    "percent", "train_seconds", "eval_seconds", "steps", "best_step", "train_s_per_step",
    "infer_ms_per_example", "selection_on_test", "precision", "device", "path", "note",
]  # fmt: skip


def _csv(rows: list[dict], columns: list[str]) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: "" if row.get(k) is None else row[k] for k in columns})
    return buffer.getvalue()


def long_rows(report: Report) -> list[dict]:
    group_of = {id(run): g for g in report.groups for run in g.runs}
    rows = []
    for run in report.runs:
        group = group_of.get(id(run))
        row = {
            "run_id": run.path.name,
            "state": run.state,
            "backbone": run.backbone,
            "task": run.task,
            "method": run.method,
            "budget": run.budget,
            "seed": run.seed,
            "data_seed": run.data_seed,
            "config_hash": (run.result or {}).get("config_hash") or run.identity,  # the hash it was recorded under
            "variant": group.label if group else "",
            "shown": group is not None and report.cells.get(group.key) is group,
            "path": str(run.path),
            "note": run.note,
        }
        r = run.result
        if r is not None:
            params = r.get("params") or {}
            extra = {k.removeprefix("test_"): v.get(run.metric) for k, v in r.items() if k.startswith("test_")}
            row |= {
                "metric": run.metric,
                "test": run.score,
                "dev": run.dev_score,
                "test_extra": ";".join(f"{k}={v}" for k, v in extra.items() if isinstance(v, int | float)),
                "stored_params": aggregate.stored_params(r),
                "trainable_params": params.get("trainable", r.get("trainable_params")),
                "backbone_params": params.get("backbone", r.get("total_params")),
                "percent": aggregate.percent_params(r),
                "train_seconds": r.get("train_seconds"),
                "eval_seconds": r.get("eval_seconds"),
                "steps": r.get("steps"),
                "best_step": r.get("best_step"),
                "train_s_per_step": aggregate.seconds_per_step(r),
                "infer_ms_per_example": (lambda s: None if s is None else 1000 * s)(aggregate.seconds_per_example(r)),
                "selection_on_test": r.get("selection_on_test"),
                "precision": r.get("precision"),
                "device": (r.get("provenance") or {}).get("device"),
            }
        rows.append(row)
    return rows


def to_long_csv(report: Report) -> str:
    return _csv(long_rows(report), LONG_COLUMNS)


def all_tasks(report: Report) -> list[str]:
    return sorted({key[3] for key in report.cells}, key=task_key)


def wide_rows(report: Report) -> tuple[list[dict], list[str]]:
    tasks = all_tasks(report)
    columns = ["backbone", "budget", "method"]
    for task in tasks:
        columns += [f"{task}_mean", f"{task}_std", f"{task}_n", f"{task}_flags", f"{task}_variant"]
    columns += ["avg", "avg_tasks"]
    expected = report.expected()
    rows = []
    for backbone, budget in report.tables():
        table_tasks = report.tasks(backbone, budget)
        for method in report.methods(backbone, budget):
            row = {"backbone": backbone, "budget": budget, "method": method}
            means = {}
            for task in tasks:
                group = report.cells.get((backbone, budget, method, task))
                if group is None:
                    continue
                means[task] = group.mean
                flags = (
                    [f"n={group.n}/{expected[(backbone, budget)]}"] if group.n < expected[(backbone, budget)] else []
                )
                flags += [f"{c} {s}" for s, c in sorted(group.not_done.items())]
                flags += ["variant"] if group.variants > 1 else []
                flags += ["mixed"] if group.mixes else []
                row |= {f"{task}_mean": group.mean, f"{task}_std": group.std, f"{task}_n": group.n}
                row[f"{task}_flags"], row[f"{task}_variant"] = ";".join(flags), group.label
            row["avg"], row["avg_tasks"] = aggregate.average(means, table_tasks)
            rows.append(row)
    return rows, columns


def to_wide_csv(report: Report) -> str:
    rows, columns = wide_rows(report)
    return _csv(rows, columns)


def group_dict(group: aggregate.Group, shown: bool) -> dict:
    return {
        "backbone": group.backbone,
        "budget": group.budget,
        "method": group.method,
        "task": group.task,
        "metric": group.metric,
        "mean": group.mean,
        "std": group.std,
        "n": group.n,
        "attempted": group.attempted,
        "not_done": group.not_done,
        "seeds": group.seeds,
        "scores": group.scores,
        "dev_mean": group.dev_mean,
        "variant": group.label,
        "split_keys": group.split_keys,
        "variants": group.variants,
        "mixes": group.mixes,
        "shown": shown,
        "runs": [r.path.name for r in group.runs],
    }


def to_json(report: Report, grids: list[Grid], images: list[Image]) -> str:
    done = sum(r.done for r in report.runs)
    tables = report.tables()
    data = {
        "source": str(report.source),
        "filters": report.filters,
        "select": report.select,
        "merge": list(report.merge),
        "summary": {
            "runs": len(report.runs),
            "completed": done,
            "without_result": len(report.runs) - done,
            "groups": len(report.groups),
            "cells": len(report.cells),
            "skipped_files": len(report.warnings),
        },
        "cells": [group_dict(g, True) for g in sorted(report.cells.values(), key=_order)],
        "groups": [group_dict(g, report.cells.get(g.key) is g) for g in report.groups],
        "upper_bound": [
            {"backbone": b, "budget": k, "rows": aggregate.upper_bound(report.cells, b, k, report.tasks(b, k))}
            for b, k in tables
        ],
        "cost": [
            {
                "backbone": b,
                "budget": k,
                "rows": aggregate.cost(report.cells, b, k, report.tasks(b, k), report.methods(b, k)),
            }
            for b, k in tables
        ],
        "gates": _gates(report),
        "tables": [
            {"id": g.id, "title": g.title, "header": g.header, "notes": g.notes}
            | {"rows": [[c.text for c in row] for row in g.rows], "best": [[c.best for c in row] for row in g.rows]}
            for g in grids
        ],
        "images": [{"path": i.path, "caption": i.caption, "size": list(i.size)} for i in images],
        "warnings": report.warnings,
        "notes": report.notes,
    }
    if report.compare_paper:
        data["paper"] = {
            "backbone": paper.BACKBONE,
            "scores": {str(k): v for k, v in paper.SCORES.items()},
            "upper_bound": {str(k): v for k, v in paper.UPPER_BOUND.items()},
            "cost": paper.COST,
        }
    return json.dumps(_finite(data), indent=2, allow_nan=False) + "\n"


def _finite(value):
    """NaN and infinities (a diverged metric) become null: JSON has no spelling for them."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value


def _order(group: aggregate.Group):
    return (group.backbone, budget_key(group.budget), method_key(group.method), task_key(group.task))


def _gates(report: Report) -> list[dict]:
    out = []
    for group in sorted(report.cells.values(), key=_order):
        split, means = aggregate.gate_means(group)
        if means:
            layers = {str(layer): values for layer, values in means.items()}
            where = {"backbone": group.backbone, "budget": group.budget, "method": group.method, "task": group.task}
            out.append(where | {"split": split, "seeds": group.n, "layers": layers})
    return out
