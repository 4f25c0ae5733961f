"""The paper's claims about UniPELT, checked on a report's cells (one table per backbone and budget).

A comparison of X against Y runs over the tasks T where both have runs with the same (seed,
data_seed), and per task on those seeds only (a cell with more seeds than the other is cut to the
shared ones, and the row says how many):

    Δ = (1/|T|) * sum_t (mean_X(t) - mean_Y(t))
    SE(Δ) = sqrt(sum_t s_d(t)^2 / n_d(t)) / |T|,   d(t, seed) = X(t, seed) - Y(t, seed)

paired by seed: runs with the same (seed, data_seed) share the K-shot sample, which moves both
scores together, so the spread of the per-seed differences is the noise that matters (s_d: their
sample std, n_d: seeds both have; SE is None where a task has fewer than 2 such seeds). Y is one
method or, for the paper's upper bound, the best member per task (its runs pair with X's).
Verdict: "holds" when Δ > 2 SE(Δ), "reversed" when Δ < -2 SE(Δ), else "within noise (Δ > 0)"
or "within noise (Δ ≤ 0)"; "untested" when there is no SE (a task with fewer than 2 shared seeds).

Seed variance: the mean over T of each method's sample std, and on how many tasks X's std is lower.
The paper column repeats the comparison on the paper's own numbers over the same tasks.
Where the runs kept predictions, each comparison also gets a per-example paired p-value
(report/paired.py: a paired bootstrap of the metric, combined over seeds and tasks).
"""

from __future__ import annotations

import math

from unipelt_cli.report import aggregate, paper
from unipelt_cli.report import paired as per_example
from unipelt_cli.report.aggregate import CellKey, Group
from unipelt_cli.report.names import method_label, task_key

SINGLES = ("adapter", "prefix", "lora")
# The unified-view claims (He et al. 2022, DoRA, (IA)^3) and the gated mixes against their members:
# (claim, X, Y) with Y a method, or a tuple of members meaning the member with the best average.
UNIFIED = (
    ("The parallel adapter beats the sequential adapter", "parallel_adapter", "adapter"),
    ("Scaling helps the parallel adapter (s = 4 vs 1)", "scaled_parallel_adapter", "parallel_adapter"),
    ("MAM beats the scaled parallel adapter", "mam", "scaled_parallel_adapter"),
    ("MAM beats prefix-tuning", "mam", "prefix"),
    ("DoRA beats LoRA", "dora", "lora"),
    ("(IA)^3 beats LoRA", "ia3", "lora"),
    ("Gates help MAM", "unipelt_mam", "mam"),
    ("Gated MAM beats its best member", "unipelt_mam", ("prefix", "scaled_parallel_adapter")),
    ("Gated APL+(IA)^3 beats its best member", "unipelt_apli", ("adapter", "prefix", "lora", "ia3")),
    ("Adding (IA)^3 helps gated APL", "unipelt_apli", "unipelt_apl"),
)


def pairs(x: Group, y: Group) -> list[tuple[float, float]]:
    """(X score, Y score) for every (seed, data_seed) both have: comparisons use only these."""
    ys = {(r.seed, r.data_seed): r.score for r in y.done if r.score is not None}
    return [(r.score, ys[(r.seed, r.data_seed)]) for r in x.done if r.score is not None and (r.seed, r.data_seed) in ys]


def _var(values: list[float]) -> float:
    mean = sum(values) / len(values)
    return sum((v - mean) ** 2 for v in values) / (len(values) - 1)


def paired_se(paired: list[list[tuple[float, float]]]) -> float | None:
    """SE of the task-averaged difference, from each task's seed pairs (see the module docstring)."""
    total = 0.0
    for p in paired:
        diffs = [a - b for a, b in p]
        if len(diffs) < 2:
            return None
        total += _var(diffs) / len(diffs)
    return math.sqrt(total) / len(paired)


def _shared(x: dict[str, Group], y: dict[str, Group], least: int) -> dict[str, list[tuple[float, float]]]:
    """Per task in both, the seed pairs, for tasks with at least `least` of them."""
    found = {t: pairs(x[t], y[t]) for t in x if t in y}
    return {t: p for t, p in found.items() if len(p) >= least}


def _note(x: dict[str, Group], y: dict[str, Group], paired: dict[str, list]) -> str:
    """'' when every run of both took part, else how many seeds the comparison shares."""
    if all(len(p) == max(x[t].n, y[t].n) for t, p in paired.items()):
        return ""
    return f", {min(len(p) for p in paired.values())} shared seeds"


def compare(x: dict[str, Group], y: dict[str, Group]) -> dict | None:
    """X against Y (task -> Group, Y may mix methods across tasks) on the seeds both have, per task."""
    paired = _shared(x, y, 1)
    if not paired:
        return None
    tasks = list(paired)
    mx = {t: sum(a for a, _ in p) / len(p) for t, p in paired.items()}
    my = {t: sum(b for _, b in p) / len(p) for t, p in paired.items()}
    avg_x, avg_y = sum(mx.values()) / len(tasks), sum(my.values()) / len(tasks)
    se = paired_se(list(paired.values()))
    wins = sum(mx[t] >= my[t] for t in tasks)
    found = {"tasks": tasks, "x": avg_x, "y": avg_y, "delta": avg_x - avg_y, "se": se, "wins": wins}
    return found | {"note": _note(x, y, paired)}


def verdict(delta: float, se: float | None) -> str:
    sign = ">" if delta > 0 else "≤"
    if se is None:
        return f"untested (Δ {sign} 0, < 2 shared seeds)"
    if delta > 2 * se:
        return "holds"
    if delta < -2 * se:
        return "reversed"
    return f"within noise (Δ {sign} 0)"


def spread(x: dict[str, Group], y: dict[str, Group]) -> dict | None:
    """Mean seed std of X and of Y on the seeds both have (tasks with 2+), and where X's is lower."""
    paired = _shared(x, y, 2)
    if not paired:
        return None
    sx = {t: math.sqrt(_var([a for a, _ in p])) for t, p in paired.items()}
    sy = {t: math.sqrt(_var([b for _, b in p])) for t, p in paired.items()}
    tasks = list(paired)
    found = {"tasks": tasks, "x": sum(sx.values()) / len(tasks), "y": sum(sy.values()) / len(tasks)}
    return found | {"lower": sum(sx[t] < sy[t] for t in tasks), "note": _note(x, y, paired)}


def _by_task(cells: dict[CellKey, Group], backbone: str, budget, method: str) -> dict[str, Group]:
    return {t: g for (b, k, m, t), g in cells.items() if (b, k, m) == (backbone, budget, method) and g.mean is not None}


def oracle(cells: dict[CellKey, Group], backbone: str, budget, members: tuple) -> tuple[dict[str, Group], str]:
    """The paper's Table 2 bound (aggregate.upper_bound): per task, the member's group it picks, and
    the members' letters in task order."""
    tasks = sorted({t for b, k, _, t in cells if (b, k) == (backbone, budget)}, key=task_key)
    row = next(r for r in aggregate.upper_bound(cells, backbone, budget, tasks) if tuple(r["members"]) == members)
    picked = {t: cells[(backbone, budget, m, t)] for t, m in row["sources"].items()}
    return picked, "".join(aggregate.SHORT[row["sources"][t]] for t in tasks if t in row["sources"])


def best_single(cells: dict[CellKey, Group], backbone: str, budget, tasks: list[str], members=SINGLES) -> str | None:
    """The member (default: single submodule) with the best average over `tasks` (all scored), if any."""
    full = {m: _by_task(cells, backbone, budget, m) for m in members}
    ok = [m for m in members if all(t in full[m] for t in tasks)]
    return max(ok, key=lambda m: sum(full[m][t].mean for t in tasks)) if ok and tasks else None


def _paper_delta(budget, x: str, y, tasks: list[str]) -> float | None:
    """The same comparison on the paper's means over `tasks`. y: a method; a tuple of members (best
    per task, the upper bound); or a list of members (the one with the best average, as "best single")."""
    ref = {m: [paper.score(budget, m, t) for t in tasks] for m in (x, *([y] if isinstance(y, str) else y))}
    if not tasks or any(r is None for refs in ref.values() for r in refs):
        return None
    mean = {m: [r[0] for r in refs] for m, refs in ref.items()}
    if isinstance(y, tuple):
        other = [max(mean[m][i] for m in y) for i in range(len(tasks))]
    else:
        other = mean[y] if isinstance(y, str) else max((mean[m] for m in y), key=sum)
    return (sum(mean[x]) - sum(other)) / len(tasks)


def claims(cells: dict[CellKey, Group], backbone: str, budget) -> list[dict]:
    """Rows: claim, comparison text, Δ, SE, tasks won, verdict, the paper's Δ on the same tasks."""
    rows = []
    apl, ap = _by_task(cells, backbone, budget, "unipelt_apl"), _by_task(cells, backbone, budget, "unipelt_ap")

    def add(claim: str, x: str, xg: dict, y_label: str, yg: dict, paper_y) -> None:
        found = compare(xg, yg)
        if found is None:
            return
        ref = _paper_delta(budget, x, paper_y, found["tasks"]) if paper_y is not None else None
        rows.append(
            found
            | {"paired": per_example.test(xg, yg, found["tasks"])}  # per-example bootstrap, where predictions exist
            | {"claim": claim, "text": f"{found['x']:.2f} vs {found['y']:.2f} ({y_label}{found['note']})"}
            | {"verdict": verdict(found["delta"], found["se"]), "paper": ref}
        )

    if apl:
        tasks = [t for t in apl if all(t in _by_task(cells, backbone, budget, m) for m in SINGLES)]
        single = best_single(cells, backbone, budget, tasks)
        if single:
            yg = _by_task(cells, backbone, budget, single)
            add(
                "APL beats the best single submodule",
                "unipelt_apl",
                {t: apl[t] for t in tasks},
                method_label(single),
                yg,
                list(SINGLES),
            )
        bound, letters = oracle(cells, backbone, budget, SINGLES)
        add("APL beats the per-task best of {A, P, L}", "unipelt_apl", apl, f"oracle {letters}", bound, SINGLES)
        add(
            "APL beats fine-tuning",
            "unipelt_apl",
            apl,
            "Fine-tuning",
            _by_task(cells, backbone, budget, "finetune"),
            "finetune",
        )
    if ap:
        pair = ("adapter", "prefix")
        bound, letters = oracle(cells, backbone, budget, pair)
        add("AP beats the per-task best of {A, P}", "unipelt_ap", ap, f"oracle {letters}", bound, pair)
    for gated in ("unipelt_apl", "unipelt_ap"):
        xg, yg = _by_task(cells, backbone, budget, gated), _by_task(cells, backbone, budget, f"{gated}_nogate")
        add(f"Gates help {method_label(gated)}", gated, xg, "no gate", yg, None)
        found = spread(xg, yg)
        if found:
            lower = found["x"] < found["y"]
            rows.append(
                found
                | {"claim": f"Gates lower {method_label(gated)}'s seed std", "delta": found["x"] - found["y"]}
                | {
                    "text": f"std {found['x']:.2f} vs {found['y']:.2f} (no gate{found['note']})",
                    "se": None,
                    "paper": None,
                }
                | {"wins": found["lower"], "verdict": "lower" if lower else "not lower"}
            )
    for claim, x, y in UNIFIED:
        xg = _by_task(cells, backbone, budget, x)
        if isinstance(y, tuple):
            tasks = [t for t in xg if all(t in _by_task(cells, backbone, budget, m) for m in y)]
            y = best_single(cells, backbone, budget, tasks, y)
            xg = {t: xg[t] for t in tasks}
        if y is not None:
            add(claim, x, xg, method_label(y), _by_task(cells, backbone, budget, y), None)
    return rows
