"""From runs to cells: groups over seeds, one picked variant per cell, mean and sample std.

A *cell* is (backbone, budget, method, task). Its runs may still differ in other config keys (a
learning-rate search, another head pooling): runs are grouped by their canonical config
(identity.py) minus seed/data_seed, so each *group* is one variant measured over seeds. When a cell
has several groups, one is picked (see `pick`) and the report says which keys split it. Keys given with
--merge do not split groups; a group whose runs differ in them is reported as mixing.
"""

from __future__ import annotations

import json
import statistics
from collections import defaultdict
from dataclasses import dataclass, field
from functools import cached_property

from unipelt_cli.report.load import Run
from unipelt_cli.report.names import budget_key, method_key, task_key

NOT_VARIANT = ("seed", "data_seed", "data.dir")  # never split a group
NOT_VARIANT_PREFIXES = ("runtime.",)
CELL_PREFIXES = ("task.", "budget.")  # differ between cells by definition
CELL_KEYS = ("method.name", "backbone.name")
DEFAULT_MERGE = ("backbone.name_or_path",)  # where the weights were read from, not what they are
POLICIES = ("shared", "cell")
MISSING = "<missing>"

CellKey = tuple  # (backbone, budget, method, task)


def mean_std(values: list[float]) -> tuple[float | None, float | None]:
    """Mean and sample standard deviation (n - 1); std is None below two values."""
    if not values:
        return None, None
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else None


def show(value) -> str:
    return MISSING if value is MISSING else json.dumps(value) if isinstance(value, list | dict) else str(value)


@dataclass
class Group:
    """The runs of one variant in one cell: same config except seeds."""

    key: CellKey
    sig: dict[str, str]  # the variant's identifying config (values as text)
    runs: list[Run]
    label: str = ""  # the keys that tell it from the other variants of its method, e.g. "train.lr=0.001"
    split_keys: list[str] = field(default_factory=list)  # keys that split its cell into several groups
    variants: int = 1  # how many groups its cell had
    mixes: dict[str, list[str]] = field(default_factory=dict)  # merged keys whose values differ

    backbone = property(lambda self: self.key[0])
    budget = property(lambda self: self.key[1])
    method = property(lambda self: self.key[2])
    task = property(lambda self: self.key[3])

    @cached_property
    def done(self) -> list[Run]:
        return sorted((r for r in self.runs if r.done), key=lambda r: (r.seed, r.data_seed))

    @cached_property
    def not_done(self) -> dict[str, int]:
        counts: dict[str, int] = defaultdict(int)
        for run in self.runs:
            if not run.done:
                counts[run.state] += 1
        return dict(counts)

    @cached_property
    def scores(self) -> list[float]:
        return [r.score for r in self.done if r.score is not None]

    @property
    def n(self) -> int:
        return len(self.scores)

    @property
    def attempted(self) -> int:
        return len(self.runs)

    @cached_property
    def mean(self) -> float | None:
        return mean_std(self.scores)[0]

    @cached_property
    def std(self) -> float | None:
        return mean_std(self.scores)[1]

    @cached_property
    def dev_mean(self) -> float | None:
        return mean_std([r.dev_score for r in self.done if r.dev_score is not None])[0]

    @property
    def metric(self) -> str | None:
        return self.done[0].metric if self.done else None

    @property
    def seeds(self) -> list[str]:
        return [f"{r.seed}/{r.data_seed}" for r in self.done]

    def result_mean(self, fn) -> float | None:
        """Mean over completed runs of fn(result), skipping runs where it is None."""
        values = [v for v in (fn(r.result) for r in self.done) if v is not None]
        return statistics.fmean(values) if values else None


def variant_sig(run: Run, merge: tuple[str, ...]) -> dict[str, str]:
    """The config keys that make a variant: the run's canonical config (identity.py: no bookkeeping
    key such as logger, no disabled submodule), less seeds, runtime and merged keys."""
    return {
        key: show(value)
        for key, value in run.canonical.items()
        if key not in NOT_VARIANT and not key.startswith(NOT_VARIANT_PREFIXES) and key not in merge
    }


def _differing(sigs: list[dict[str, str]], skip_cell_keys: bool = True) -> list[str]:
    keys = sorted({k for sig in sigs for k in sig})
    out = []
    for key in keys:
        if skip_cell_keys and (key.startswith(CELL_PREFIXES) or key in CELL_KEYS):
            continue
        if len({sig.get(key, MISSING) for sig in sigs}) > 1:
            out.append(key)
    return out


def group_runs(found: list[Run], merge: tuple[str, ...] = DEFAULT_MERGE) -> list[Group]:
    """Runs -> groups (one per cell and variant), labelled by what tells the variants apart."""
    buckets: dict[tuple, list[Run]] = defaultdict(list)
    sigs: dict[tuple, dict[str, str]] = {}
    for run in found:
        sig = variant_sig(run, merge)
        cell = (run.backbone, run.budget, run.method, run.task)
        bucket = (cell, tuple(sorted(sig.items())))
        buckets[bucket].append(run)
        sigs[bucket] = sig
    groups = [Group(key=cell, sig=sigs[(cell, s)], runs=rs) for (cell, s), rs in buckets.items()]
    for group in groups:
        for key in merge:
            values = sorted({show(r.config.get(key, MISSING)) for r in group.runs})
            if len(values) > 1:
                group.mixes[key] = values
        precisions = sorted({str(r.result.get("precision")) for r in group.done})
        if len(precisions) > 1:
            group.mixes["precision"] = precisions
    _label(groups)
    groups.sort(key=lambda g: (g.backbone, budget_key(g.budget), method_key(g.method), task_key(g.task), g.label))
    return groups


def _label(groups: list[Group]) -> None:
    by_method: dict[tuple, list[Group]] = defaultdict(list)
    by_cell: dict[CellKey, list[Group]] = defaultdict(list)
    for group in groups:
        by_method[group.key[:3]].append(group)
        by_cell[group.key].append(group)
    for family in by_method.values():
        keys = _differing([g.sig for g in family])
        for group in family:
            group.label = ", ".join(f"{k}={group.sig.get(k, MISSING)}" for k in keys)
    for family in by_cell.values():
        keys = _differing([g.sig for g in family], skip_cell_keys=False)
        for group in family:
            group.split_keys, group.variants = keys, len(family)


def _cell_rank(group: Group) -> tuple:
    dev = group.dev_mean if group.dev_mean is not None else float("-inf")
    return (group.n, dev, -sum(group.not_done.values()))


def _shared_rank(variant: list[Group]) -> tuple:
    devs = [g.dev_mean for g in variant if g.dev_mean is not None]
    return (len(variant), min(g.n for g in variant), statistics.fmean(devs) if devs else float("-inf"))


def pick(groups: list[Group], policy: str = "shared") -> dict[CellKey, Group]:
    """One group per cell: the variant the tables show.

    cell: per cell, the most seeds, then the best mean dev score.
    shared: per method, one variant on every task (the paper: "the same hyperparameters on all
      tasks"): the variant covering the most tasks, then the most seeds (its fewest over tasks), then
      the best dev score averaged over tasks. Tasks it lacks keep their `cell` pick.
    """
    if policy not in POLICIES:
        raise ValueError(f"unknown policy {policy}")
    cells: dict[CellKey, Group] = {}
    for group in groups:
        best = cells.get(group.key)
        if best is None or _cell_rank(group) > _cell_rank(best):
            cells[group.key] = group
    if policy == "shared":
        families: dict[tuple, dict[str, list[Group]]] = defaultdict(lambda: defaultdict(list))
        for group in groups:
            families[group.key[:3]][group.label].append(group)
        for variants in families.values():
            for group in max(variants.values(), key=_shared_rank):
                cells[group.key] = group
    return cells


def expected_seeds(cells: dict[CellKey, Group]) -> dict[tuple, int]:
    """Per (backbone, budget): the most seeds any cell attempted; cells with fewer are flagged."""
    out: dict[tuple, int] = defaultdict(int)
    for (backbone, budget, _, _), group in cells.items():
        out[(backbone, budget)] = max(out[(backbone, budget)], group.attempted)
    return dict(out)


def average(values: dict[str, float | None], tasks: list[str]) -> tuple[float | None, int]:
    """Mean over the tasks that have a value, and how many had one (== len(tasks) when complete)."""
    present = [values[t] for t in tasks if values.get(t) is not None]
    return (statistics.fmean(present) if present else None), len(present)


# --- the paper's Table 2: upper bound of the single submodules -----------------------------------

UPPER_BOUND_ROWS = (
    ("best of {A, P}", ("adapter", "prefix")),
    ("UniPELT (AP)", ("unipelt_ap",)),
    ("best of {A, P, L}", ("adapter", "prefix", "lora")),
    ("UniPELT (APL)", ("unipelt_apl",)),
)
SHORT = {"adapter": "A", "prefix": "P", "lora": "L"}


def upper_bound(cells: dict[CellKey, Group], backbone: str, budget, tasks: list[str]) -> list[dict]:
    """Per task, the best (by mean test score) of the single submodules, beside UniPELT.

    A "best of" value exists only where every member has a score for that task; `missing` names
    what was absent, so a partial bound is never shown as a complete one.
    """
    rows = []
    for label, members in UPPER_BOUND_ROWS:
        values, sources, missing = {}, {}, {}
        for task in tasks:
            scored = {m: cells.get((backbone, budget, m, task)) for m in members}
            absent = [m for m, g in scored.items() if g is None or g.mean is None]
            if absent:
                missing[task] = absent
                continue
            method = max(members, key=lambda m: scored[m].mean)
            values[task], sources[task] = scored[method].mean, method
        avg, k = average(values, tasks)
        rows.append(
            {"label": label, "members": list(members), "values": values, "sources": sources, "missing": missing}
            | {"avg": avg, "complete": k == len(tasks)}
        )
    return rows


# --- the paper's Table 4: parameters and cost relative to fine-tuning -----------------------------


def seconds_per_step(result: dict) -> float | None:
    steps = result.get("steps")
    return result["train_seconds"] / steps if steps and result.get("train_seconds") is not None else None


def seconds_per_example(result: dict) -> float | None:
    """Evaluation time per example: every dev evaluation during training, then dev and test again."""
    data, seconds = result.get("data") or {}, result.get("eval_seconds")
    dev, tests = data.get("dev_size"), data.get("test_sizes")
    if seconds is None or not dev or not isinstance(tests, dict):
        return None
    examples = (len(result.get("history") or []) + 1) * dev + sum(tests.values())
    return seconds / examples if examples else None


def stored_params(result: dict) -> float | None:
    return (result.get("params") or {}).get("stored", result.get("trainable_params"))


def percent_params(result: dict) -> float | None:
    return (result.get("params") or {}).get("percent", result.get("trainable_percent"))


def _mean(values) -> float | None:
    known = [v for v in values if v is not None]
    return statistics.fmean(known) if known else None


def _ratio(value: float | None, base: float | None) -> float | None:
    return value / base if value is not None and base else None


def device(result: dict) -> str:
    return (result.get("provenance") or {}).get("device") or "?"


def same_device_ratio(group: Group, base: Group, fn) -> float | None:
    """mean over devices d that both ran on of mean(fn | group, d) / mean(fn | base, d).

    Timings from different machines do not compare, so a ratio only pairs runs on one device;
    None when the two share no device.
    """
    shared = {device(r.result) for r in group.done} & {device(r.result) for r in base.done}
    ratios = [
        _ratio(
            _mean(fn(r.result) for r in group.done if device(r.result) == d),
            _mean(fn(r.result) for r in base.done if device(r.result) == d),
        )
        for d in sorted(shared)
    ]
    return _mean(ratios)


def cost(cells: dict[CellKey, Group], backbone: str, budget, tasks: list[str], methods: list[str]) -> list[dict]:
    """Per method: stored parameters, and train time per step and inference time per example relative
    to fine-tuning on the same backbone, task, budget and device (percent; the mean of the per-task ratios).

    Times are normalised per step and per example because early stopping makes runs differ in length.
    A task whose runs share no device with fine-tuning's has no ratio ("relative_tasks" counts those that do).
    """
    rows = []
    for method in methods:
        per_task = []  # (params, percent, s/step, s/example, step ratio, example ratio)
        for task in tasks:
            group, base = cells.get((backbone, budget, method, task)), cells.get((backbone, budget, "finetune", task))
            if group is None or not group.done:
                continue
            step, example = group.result_mean(seconds_per_step), group.result_mean(seconds_per_example)
            has_base = base is not None and bool(base.done)
            per_task.append(
                (
                    group.result_mean(stored_params),
                    group.result_mean(percent_params),
                    step,
                    example,
                    same_device_ratio(group, base, seconds_per_step) if has_base else None,
                    same_device_ratio(group, base, seconds_per_example) if has_base else None,
                )
            )
        if not per_task:
            continue
        params, percent, step, example, rel_step, rel_example = zip(*per_task, strict=True)
        known = [p for p in params if p is not None]
        infer, train_rel, infer_rel = _mean(example), _mean(rel_step), _mean(rel_example)
        rows.append(
            {
                "method": method,
                "tasks": len(per_task),
                "params_min": min(known) if known else None,
                "params_max": max(known) if known else None,
                "percent": _mean(percent),
                "train_s_per_step": _mean(step),
                "infer_ms_per_example": None if infer is None else 1000 * infer,
                "train_rel": None if train_rel is None else 100 * train_rel,
                "infer_rel": None if infer_rel is None else 100 * infer_rel,
                "relative_tasks": sum(r is not None for r in rel_step),
            }
        )
    return rows


# --- gates ----------------------------------------------------------------------------------------


def gate_split(group: Group) -> str | None:
    splits = [set(r.result.get("gates") or {}) for r in group.done]
    splits = [s for s in splits if s]
    if not splits:
        return None
    common = set.intersection(*splits)
    return "test" if "test" in common else (sorted(common)[0] if common else None)


def gate_means(group: Group) -> tuple[str | None, dict[int, dict[str, float]]]:
    """(split, {layer: {gate: mean over seeds of the gate's mean value}}), {} when ungated."""
    split = gate_split(group)
    if split is None:
        return None, {}
    acc: dict[int, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    for run in group.done:
        for layer, gates in ((run.result.get("gates") or {}).get(split) or {}).items():
            for name, stats in gates.items():
                if isinstance(stats, dict) and isinstance(stats.get("mean"), int | float):
                    acc[int(layer)][name].append(float(stats["mean"]))
    return split, {layer: {k: statistics.fmean(v) for k, v in acc[layer].items()} for layer in sorted(acc)}
