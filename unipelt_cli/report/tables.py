"""The report as sections of plain grids: what the text, Markdown, LaTeX and HTML renderers share.

Every number shown is built here once; renderers only escape and lay out. A cell's text carries
its flags, so no format can lose them: `n=1/3` (fewer seeds than the table's most complete cell),
`1 failed` (runs that failed, diverged or are still running), `†` (its cell held several config
variants; see Variants), `mixed` (its runs differ in a merged key). The best cell per column is
marked `best` (bold, or `*` in plain text).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from unipelt_cli.report import Report, aggregate, claims, paper
from unipelt_cli.report import paired as per_example
from unipelt_cli.report.names import (
    FAMILIES,
    METRIC_LABELS,
    UNIFIED_VIEW,
    budget_key,
    budget_label,
    method_key,
    method_label,
    task_key,
    task_label,
)

N_GLUE = len(paper.TASKS)
LEGEND = (
    "Test score (GLUE dev), mean (sample std) over seeds; * or bold: best in column; "
    "n=a/b: fewer seeds than the most complete cell; 'failed'/'diverged'/'running': seeds without a result; "
    "†: one of several config variants (see Variants); mixed: runs differ in a merged key."
)


@dataclass
class Cell:
    text: str
    value: float | None = None
    best: bool = False


@dataclass
class Grid:
    id: str  # a file- and anchor-safe name
    title: str
    header: list[str]
    rows: list[list[Cell]]
    notes: list[str] = field(default_factory=list)

    def __post_init__(self):
        assert all(len(row) == len(self.header) for row in self.rows), f"ragged grid {self.id}"

    def numeric(self) -> list[bool]:
        """Per column: does it hold numbers (right-aligned) rather than text."""
        return [i > 0 and any(row[i].value is not None for row in self.rows) for i in range(len(self.header))]


@dataclass
class Image:
    path: str  # relative to the report folder
    caption: str
    size: tuple[int, int]  # pixels (width, height)


@dataclass
class Section:
    title: str
    text: list[str] = field(default_factory=list)
    grids: list[Grid] = field(default_factory=list)
    images: list[Image] = field(default_factory=list)


def fmt(value: float | None, digits: int = 2) -> str:
    return "—" if value is None else f"{value:.{digits}f}"


def mark_best(rows: list[list[Cell]], columns: range) -> None:
    for col in columns:
        values = [row[col].value for row in rows if row[col].value is not None]
        if len(values) > 1:
            top = max(values)
            for row in rows:
                row[col].best = row[col].value == top


def score_cell(group: aggregate.Group | None, expected: int, dagger: bool = True) -> Cell:
    if group is None:
        return Cell("—")
    flags = []
    if group.n < expected:
        flags.append(f"n={group.n}/{expected}")
    flags += [f"{count} {state}" for state, count in sorted(group.not_done.items())]
    text = fmt(group.mean) + (f" ({group.std:.2f})" if group.std is not None else "")
    if flags:
        text += f" [{', '.join(flags)}]"
    if dagger and group.variants > 1:
        text += " †"
    if group.mixes:
        text += " mixed"
    return Cell(text, group.mean)


def avg_header(tasks: list[str]) -> str:
    return "Avg" if len(tasks) >= N_GLUE else f"Avg ({len(tasks)} of {N_GLUE} tasks)"


def avg_cell(values: dict[str, float | None], tasks: list[str]) -> Cell:
    avg, k = aggregate.average(values, tasks)
    if avg is None:
        return Cell("—")
    if k < len(tasks):
        return Cell(f"{avg:.2f} (partial {k}/{len(tasks)})")  # value None: never "best"
    return Cell(f"{avg:.2f}", avg)


def task_header(report: Report, backbone: str, budget, task: str) -> str:
    metrics = {g.metric for (b, k, _, t), g in report.cells.items() if (b, k, t) == (backbone, budget, task)}
    metrics.discard(None)
    return task_label(task) + (f" ({METRIC_LABELS.get(metrics.pop(), '?')})" if len(metrics) == 1 else "")


RULES = {
    "shared": "one variant per method on every task: the most tasks, then the most seeds, then the best dev "
    "score averaged over tasks",
    "cell": "per cell, the most seeds, then the best mean dev score",
}


def slug(*parts) -> str:
    return "-".join(str(p).replace("_", "-").replace(" ", "-").lower() for p in parts)


def scores_grid(report: Report, backbone: str, budget) -> Grid:
    tasks, methods = report.tasks(backbone, budget), report.methods(backbone, budget)
    expected = report.expected()[(backbone, budget)]
    rows, notes = [], []
    for method in methods:
        groups = {t: report.cells.get((backbone, budget, method, t)) for t in tasks}
        cells = [score_cell(groups[t], expected) for t in tasks]
        rows.append([Cell(method_label(method)), *cells, avg_cell({t: g and g.mean for t, g in groups.items()}, tasks)])
        split = {t: g for t, g in groups.items() if g is not None and g.variants > 1}
        if split:
            keys = sorted({k for g in split.values() for k in g.split_keys})
            texts = {t: _variant_text(g) for t, g in split.items()}
            shown = "; ".join(f"{task_label(t)} {v}" for t, v in texts.items())
            if len(set(texts.values())) == 1 and len(texts) == len(tasks):
                shown = f"{next(iter(texts.values()))} on every task"
            notes.append(f"† {method_label(method)}: variants differ in {', '.join(keys)}; shown: {shown}.")
    if notes:
        notes.insert(0, f"† shown: {RULES[report.select]} (--select {report.select}); all variants under Variants.")
    on_test = [g for (b, k, _, _), g in report.cells.items() if (b, k) == (backbone, budget) and _selected_on_test(g)]
    if on_test:
        notes.append(
            f"{len(on_test)} cell(s) selected their checkpoint on the test split (full data, as the paper did)."
        )
    mark_best(rows, range(1, len(tasks) + 2))
    header = ["Method", *(task_header(report, backbone, budget, t) for t in tasks), avg_header(tasks)]
    title = f"Scores: {backbone}, {budget_label(budget)}"
    return Grid(
        slug("scores", backbone, budget), title, header, rows, [LEGEND, _seed_count(report, backbone, budget), *notes]
    )


def _seed_count(report: Report, backbone: str, budget) -> str:
    """How many seeds the cells have, so a table of single runs does not read as a finished study."""
    counts = [g.n for (b, k, _, _), g in report.cells.items() if (b, k) == (backbone, budget)]
    low, high = min(counts), max(counts)
    return f"Seeds per cell: {low}." if low == high else f"Seeds per cell: {low} to {high}."


def _selected_on_test(group: aggregate.Group) -> bool:
    return any(r.result.get("selection_on_test") for r in group.done)


def _variant_text(group: aggregate.Group) -> str:
    return ", ".join(f"{k}={group.sig.get(k, aggregate.MISSING)}" for k in group.split_keys)


def upper_bound_grid(report: Report, backbone: str, budget) -> Grid:
    tasks = report.tasks(backbone, budget)
    rows = []
    for row in aggregate.upper_bound(report.cells, backbone, budget, tasks):
        cells = [Cell(row["label"])]
        for task in tasks:
            if task in row["values"]:
                source = row["sources"][task]
                text = fmt(row["values"][task]) + (f" ({aggregate.SHORT[source]})" if len(row["members"]) > 1 else "")
                cells.append(Cell(text, row["values"][task]))
            else:
                cells.append(Cell(f"— (no {', '.join(row['missing'][task])})"))
        partial = " (partial)" if row["avg"] is not None and not row["complete"] else ""
        cells.append(Cell(fmt(row["avg"]) + partial, row["avg"] if not partial else None))
        rows.append(cells)
    notes = [
        "best of {...}: per task, the single submodule with the best mean test score (an oracle upper bound, "
        "as in the paper's Table 2); the letter names it. A bound needs every member's score for that task."
    ]
    if report.compare_paper and budget in paper.UPPER_BOUND:
        values = ", ".join(
            f"{r[0]} {v:.2f}" for r, v in zip(aggregate.UPPER_BOUND_ROWS, paper.UPPER_BOUND[budget], strict=True)
        )
        notes.append(f"Paper (BERT-base, 8 tasks, Avg): {values}.")
    header = ["", *(task_label(t) for t in tasks), avg_header(tasks)]
    title = f"Upper bound vs UniPELT: {backbone}, {budget_label(budget)}"
    return Grid(slug("upper-bound", backbone, budget), title, header, rows, notes)


def _params(n: float | None) -> str:
    if n is None:
        return "—"
    for unit, size in (("M", 1e6), ("K", 1e3)):
        if n >= size:
            return f"{n / size:.1f}{unit}" if n < 10 * size else f"{n / size:.0f}{unit}"
    return f"{n:.0f}"


def _percent(value: float | None) -> str:
    return fmt(value, 0) + ("%" if value is not None else "")


def cost_grid(report: Report, backbone: str, budget) -> Grid:
    tasks, methods = report.tasks(backbone, budget), report.methods(backbone, budget)
    rows = []
    for row in aggregate.cost(report.cells, backbone, budget, tasks, methods):
        lo, hi = row["params_min"], row["params_max"]
        params = _params(lo) if lo == hi else f"{_params(lo)}–{_params(hi)}"
        pct = "—" if row["percent"] is None else f"{row['percent']:.2f}%"
        part = f" [{row['relative_tasks']}/{row['tasks']} tasks]" if 0 < row["relative_tasks"] < row["tasks"] else ""
        cells = [
            Cell(method_label(row["method"])),
            Cell(f"{params} ({pct})", lo),
            Cell(_percent(row["train_rel"]) + part, row["train_rel"]),
            Cell(_percent(row["infer_rel"]) + part, row["infer_rel"]),
            Cell(fmt(row["train_s_per_step"], 4), row["train_s_per_step"]),
            Cell(fmt(row["infer_ms_per_example"], 3), row["infer_ms_per_example"]),
        ]
        if report.compare_paper and row["method"] in paper.COST:
            p = paper.COST[row["method"]]
            cells.append(Cell(f"{p[0]} ({p[1]:.2f}%), {p[2]}%, {p[3]}%"))
        elif report.compare_paper:
            cells.append(Cell("—"))
        rows.append(cells)
    header = ["Method", "Stored params (% of backbone)", "Train time", "Inference time", "s/step", "ms/example"]
    if report.compare_paper:
        header.append("Paper (BERT-base)")
    notes = [
        "Train and inference time relative to fine-tuning on the same backbone, task, budget and device (mean of "
        "the per-task ratios): train seconds per step and evaluation seconds per example, since early stopping "
        "makes runs differ in length. Stored params: what the method keeps (prefix: its fixed vectors)."
    ]
    devices = {
        aggregate.device(r.result) for k, g in report.cells.items() if k[:2] == (backbone, budget) for r in g.done
    }
    if len(devices) > 1:
        notes.append(
            f"These runs ran on {len(devices)} devices ({', '.join(sorted(devices))}): a ratio pairs runs on one "
            "device only ([k/n tasks]: tasks where the method and fine-tuning share one); s/step and ms/example "
            "average over devices, so they do not compare across methods."
        )
    if not any(report.cells.get((backbone, budget, "finetune", t)) for t in tasks):
        notes.append("No fine-tuning runs here, so no relative times.")
    title = f"Parameters and cost: {backbone}, {budget_label(budget)}"
    return Grid(slug("cost", backbone, budget), title, header, rows, notes)


def gate_grids(report: Report) -> list[Grid]:
    grids = []
    order = sorted(report.cells, key=lambda k: (k[0], budget_key(k[1]), task_key(k[3]), method_key(k[2])))
    for key in order:
        group = report.cells[key]
        split, means = aggregate.gate_means(group)
        if not means:
            continue
        names = sorted({name for layer in means.values() for name in layer})
        rows = [[Cell(str(layer)), *(Cell(fmt(v.get(n), 3), v.get(n)) for n in names)] for layer, v in means.items()]
        backbone, budget, method, task = key
        title = f"Gates: {task_label(task)}, {method_label(method)}, {backbone}, {budget_label(budget)}"
        note = f"Mean gate value per layer on the {split} split, averaged over {group.n} seed(s)."
        grids.append(Grid(slug("gates", backbone, budget, task, method), title, ["Layer", *names], rows, [note]))
    return grids


def variants_grid(report: Report) -> Grid | None:
    split = [g for g in report.groups if g.variants > 1]
    if not split:
        return None
    rows = []
    for g in split:
        picked = report.cells.get(g.key) is g
        rows.append(
            [
                Cell(f"{task_label(g.task)}, {method_label(g.method)}, {budget_label(g.budget)}"),
                Cell(", ".join(f"{k}={g.sig.get(k, aggregate.MISSING)}" for k in g.split_keys)),
                score_cell(g, 0, dagger=False),
                Cell(str(g.n), g.n),
                Cell(fmt(g.dev_mean), g.dev_mean),
                Cell("yes" if picked else ""),
            ]
        )
    notes = [
        "Cells whose runs differ in config keys beyond the seeds. "
        f"Shown in the tables: {RULES[report.select]} (--select {report.select})."
    ]
    header = ["Cell", "Variant", "Test", "n", "Dev", "Shown"]
    return Grid("variants", "Variants", header, rows, notes)


def paper_grid(report: Report, backbone: str, budget) -> Grid | None:
    if budget not in paper.SCORES:
        return None
    tasks = report.tasks(backbone, budget)
    rows = []
    for method in report.methods(backbone, budget):
        if method not in paper.SCORES[budget]:
            continue
        cells, ours, theirs = [Cell(method_label(method))], {}, {}
        for task in tasks:
            group, ref = report.cells.get((backbone, budget, method, task)), paper.score(budget, method, task)
            if group is None or group.mean is None or ref is None:
                cells.append(Cell("—" if ref is None else f"— / {ref[0]:.2f}"))
                continue
            ours[task], theirs[task] = group.mean, ref[0]
            cells.append(Cell(f"{group.mean:.2f} / {ref[0]:.2f} ({group.mean - ref[0]:+.2f})", group.mean - ref[0]))
        a, _ = aggregate.average(ours, list(ours))
        b, _ = aggregate.average(theirs, list(theirs))
        cells.append(Cell("—" if a is None else f"{a:.2f} / {b:.2f} ({a - b:+.2f})", None if a is None else a - b))
        rows.append(cells)
    if not rows:
        return None
    notes = [
        f"ours / paper (difference). The paper used {paper.BACKBONE} and 5 seeds; ours: {backbone}, so the "
        "backbone differs unless it is BERT-base. Avg: over the tasks both have."
    ]
    header = ["Method", *(task_label(t) for t in tasks), "Avg (shared tasks)"]
    title = f"Ours vs the paper: {backbone}, {budget_label(budget)}"
    return Grid(slug("paper", backbone, budget), title, header, rows, notes)


def _delta_text(row: dict) -> str:
    """A claim's Δ with its SE where it has one: "+1.25 (SE 0.61)"."""
    return f"{row['delta']:+.2f}" + (f" (SE {row['se']:.2f})" if row["se"] is not None else "")


def claims_grid(report: Report, backbone: str, budget, found: list[dict] | None = None) -> Grid | None:
    """found: claims.claims' rows for this table, when the caller has them already."""
    rows = []
    found = claims.claims(report.cells, backbone, budget) if found is None else found
    with_p = any(row.get("paired") for row in found)  # runs from before predictions: the table as it was
    for row in found:
        cells = [Cell(row["claim"]), Cell(row["text"]), Cell(_delta_text(row), row["delta"])]
        if with_p:
            cells.append(_p_cell(row["paired"], len(row["tasks"])) if "paired" in row else Cell("—"))
        cells += [Cell(f"{row['wins']}/{len(row['tasks'])}"), Cell(row["verdict"])]
        if report.compare_paper:
            cells.append(Cell(fmt(row["paper"]) if row["paper"] is None else f"{row['paper']:+.2f}", row["paper"]))
        rows.append(cells)
    if not rows:
        return None
    header = ["Claim", "Ours: mean over tasks", "Δ", *(["Per-example p"] if with_p else []), "Tasks won", "Verdict"]
    if report.compare_paper:
        header.append("Paper Δ (same tasks)")
    notes = [
        "Δ = X's average over the tasks both have minus Y's; SE from the per-seed differences (runs with the "
        "same seed share the K-shot sample). holds: Δ > 2 SE; reversed: Δ < -2 SE; else within noise; "
        "untested: no SE (a task has < 2 shared seeds). "
        "Tasks won: tasks where X's mean is >= Y's (for seed std: where X's std is lower). "
        "Oracle: the best single submodule per task, "
        "chosen on test (letters in task order)."
    ]
    if with_p:
        notes.append(PAIRED_NOTE)
    title = f"Claims: {backbone}, {budget_label(budget)}"
    return Grid(slug("claims", backbone, budget), title, header, rows, notes)


def claims_across_grid(report: Report, budget, backbones: list[str], found: dict | None = None) -> Grid | None:
    """One row a claim: its Δ (SE) and verdict on each backbone at this budget, and the paper's Δ.
    None unless two or more backbones have claims here. found: backbone -> claims.claims' rows, when
    the caller has them already."""
    if len(backbones) < 2:
        return None
    found = found or {b: claims.claims(report.cells, b, budget) for b in backbones}
    found = {b: {r["claim"]: r for r in found[b]} for b in backbones}
    backbones = [b for b in backbones if found[b]]
    if len(backbones) < 2:
        return None
    rows = []
    for name in dict.fromkeys(c for b in backbones for c in found[b]):  # first-seen order
        cells = [Cell(name)]
        for b in backbones:
            row = found[b].get(name)
            if row is None:
                cells.append(Cell("—"))
                continue
            cells.append(Cell(f"{_delta_text(row)}, {row['verdict']}", row["delta"]))
        ref = next((found[b][name]["paper"] for b in backbones if name in found[b]), None)
        cells.append(Cell(fmt(ref) if ref is None else f"{ref:+.2f}", ref))
        rows.append(cells)
    header = ["Claim", *(f"{b}: Δ (SE), verdict" for b in backbones), f"Paper Δ ({paper.BACKBONE})"]
    notes = [
        "Each backbone's Δ and verdict as in its own claims table (same tasks and seeds within a backbone). "
        "Paper Δ: the paper's means over the tasks of the first backbone with that claim; '—' where the paper "
        "has no such comparison."
    ]
    title = f"Claims side by side: {', '.join(backbones)}, {budget_label(budget)}"
    return Grid(slug("claims-across", budget), title, header, rows, notes)


def families_grid(report: Report, backbone: str, budget) -> Grid | None:
    """Per task, each family's best method (by test mean) and the family that wins; only for tables
    that hold a unified-view method (names.UNIFIED_VIEW)."""
    methods = report.methods(backbone, budget)
    if not set(UNIFIED_VIEW) & set(methods):
        return None
    families = {f: [m for m in ms if m in methods] for f, ms in FAMILIES.items()}
    families = {f: ms for f, ms in families.items() if ms}
    tasks = report.tasks(backbone, budget)
    rows = []
    for task in tasks:
        cells = [Cell(task_label(task))]
        for members in families.values():
            scored = [
                (g.mean, m, g.n)
                for m in members
                if (g := report.cells.get((backbone, budget, m, task))) and g.mean is not None
            ]
            best = max(scored, default=None)
            seeds = "" if best is None or best[2] > 1 else " (1 seed)"
            cells.append(Cell("—") if best is None else Cell(f"{best[0]:.2f} {method_label(best[1])}{seeds}", best[0]))
        top = max((c.value for c in cells[1:] if c.value is not None), default=None)
        for cell in cells[1:]:
            cell.best = top is not None and cell.value == top
        rows.append(cells)
    notes = [
        "Each family's best method on the task (test mean over seeds; the family's methods: "
        + "; ".join(f"{f}: {', '.join(method_label(m) for m in ms)}" for f, ms in families.items())
        + "). Bold: the best family on the task. Picking the best member per task on test flatters a family "
        "with more members; the claims table compares fixed methods."
    ]
    header = ["Task", *families]
    return Grid(
        slug("families", backbone, budget), f"Method families: {backbone}, {budget_label(budget)}", header, rows, notes
    )


PAIRED_NOTE = (
    "Per-example p: paired bootstrap of the metric over test examples (1,000 resamples, the same draw for "
    "both methods and every shared seed; Δ averaged over seeds, then tasks), two-sided; it asks whether Δ "
    "survives another test sample, the SE whether it survives other seeds. A bootstrap rather than McNemar: "
    "CoLA's Matthews, MRPC/QQP's F1 and STS-B's Spearman are not per-example sums. 'no predictions': runs "
    "from before per-example predictions were kept; (k tasks): fewer tasks than Δ had predictions."
)


def _p_cell(found: dict | None, n_tasks: int) -> Cell:
    if not found:
        return Cell("no predictions")
    some = f" ({len(found['tasks'])} tasks)" if len(found["tasks"]) < n_tasks else ""
    return Cell(per_example.fmt_p(found["p"]) + some, found["p"])


def paired_grid(report: Report, backbone: str, budget) -> Grid | None:
    """Every method against UniPELT (APL) per task: Δ, the seed-level SE and the per-example p."""
    reference = "unipelt_apl"
    tasks, methods = report.tasks(backbone, budget), report.methods(backbone, budget)
    here = {(m, t): g for (b, k, m, t), g in report.cells.items() if (b, k) == (backbone, budget)}
    if reference not in methods or not any(per_example.has_predictions(g) for g in here.values()):
        return None
    rows = []
    for method in methods:
        if method == reference:
            continue
        cells = [Cell(method_label(method))]
        for task in tasks:
            x, y = here.get((method, task)), here.get((reference, task))
            found = claims.compare({task: x}, {task: y}) if x and y and x.done and y.done else None
            if found is None:
                cells.append(Cell("—"))
                continue
            text = f"{found['delta']:+.2f}" + (f" (SE {found['se']:.2f})" if found["se"] is not None else "")
            test = per_example.test({task: x}, {task: y}, [task])
            text += f", {per_example.fmt_p(test['p'])}" if test else ", no predictions"
            cells.append(Cell(text, found["delta"]))
        rows.append(cells)
    cells_with = sum(per_example.has_predictions(g) for g in here.values())
    notes = [
        f"Δ = method minus {method_label(reference)} on the seeds both have; SE from the per-seed differences. "
        + PAIRED_NOTE,
        f"Cells with per-example predictions for every run: {cells_with} of {len(here)}: "
        + (
            ", ".join(
                sorted(
                    f"{method_label(m)} {task_label(t)}" for (m, t), g in here.items() if per_example.has_predictions(g)
                )
            )
        ),
    ]
    header = ["Method", *(task_label(t) for t in tasks)]
    title = f"Paired tests against {method_label(reference)}: {backbone}, {budget_label(budget)}"
    return Grid(slug("paired", backbone, budget), title, header, rows, notes)


def where_grid(report: Report) -> Grid:
    """Where and how the completed runs ran: device, precision, torch, per budget."""
    counts: dict[tuple, int] = {}
    for run in report.runs:
        if not run.done:
            continue
        prov = run.result.get("provenance") or {}
        key = (
            run.backbone,
            budget_key(run.budget),
            budget_label(run.budget),
            aggregate.device(run.result),
            str(run.result.get("precision") or "?"),
            (prov.get("versions") or {}).get("torch") or "?",
        )
        counts[key] = counts.get(key, 0) + 1
    rows = [
        [Cell(b), Cell(label), Cell(device), Cell(precision), Cell(torch), Cell(str(n), n)]
        for (b, _, label, device, precision, torch), n in sorted(counts.items())
    ]
    notes = ["Completed runs by where they ran (result.json: provenance.device, precision, torch version)."]
    header = ["Backbone", "Budget", "Device", "Precision", "torch", "Runs"]
    return Grid("where", "Where the runs ran", header, rows, notes)


def _has_submodules(report: Report, backbone: str, budget) -> bool:
    wanted = {m for _, members in aggregate.UPPER_BOUND_ROWS for m in members}
    return bool(wanted & set(report.methods(backbone, budget)))


def sections(report: Report, images: list[Image] | None = None) -> list[Section]:
    """The whole report, in reading order."""
    images = images or []
    done = sum(r.done for r in report.runs)
    summary = (
        f"{report.source}: {len(report.runs)} runs ({done} completed, {len(report.runs) - done} without a result), "
        f"{len(report.groups)} config groups in {len(report.cells)} cells; {len(report.warnings)} file(s) skipped."
    )
    if report.filters:
        summary += " Filters: " + " ".join(f"{k}={','.join(v)}" for k, v in report.filters.items()) + "."
    out = [Section("unipelt report", [summary])]
    if not report.cells:
        out[0].text.append("No completed or failed runs found: nothing to tabulate.")
    pairs = report.tables()
    out.append(Section("Scores", grids=[scores_grid(report, b, k) for b, k in pairs]))
    bounds = [upper_bound_grid(report, b, k) for b, k in pairs if _has_submodules(report, b, k)]
    out.append(Section("Upper bound (the paper's Table 2)", grids=bounds))
    checked = {(b, k): claims.claims(report.cells, b, k) for b, k in pairs}  # once: the bootstrap is not free
    found = [g for g in (claims_grid(report, b, k, checked[(b, k)]) for b, k in pairs) if g is not None]
    for k in dict.fromkeys(k for _, k in pairs):
        backbones = [b for b, kk in pairs if kk == k]
        found.append(claims_across_grid(report, k, backbones, {b: checked[(b, k)] for b in backbones}))
    found = [g for g in found if g is not None]
    if found:
        out.append(Section("The paper's claims, checked", grids=found))
    families = [g for g in (families_grid(report, b, k) for b, k in pairs) if g is not None]
    if families:
        out.append(Section("Method families (the unified view)", grids=families))
    tested = [g for g in (paired_grid(report, b, k) for b, k in pairs) if g is not None]
    if tested:
        out.append(Section("Per-example paired tests", grids=tested))
    out.append(Section("Parameters and cost (the paper's Table 4)", grids=[cost_grid(report, b, k) for b, k in pairs]))
    gates = gate_grids(report)
    if gates:
        out.append(Section("Gate analysis", grids=gates, images=[i for i in images if "gates" in i.path]))
    if report.compare_paper:
        grids = [g for g in (paper_grid(report, b, k) for b, k in pairs) if g is not None]
        out.append(Section("Comparison with the paper", grids=grids))
    if report.cells:
        out.append(Section("Where the runs ran", grids=[where_grid(report)]))
    variants = variants_grid(report)
    if variants is not None:
        out.append(Section("Variants", grids=[variants]))
    others = [i for i in images if "gates" not in i.path]
    if others:
        out.append(Section("Plots", images=others))
    if report.warnings or report.notes:
        out.append(Section("Warnings and notes", text=[*report.warnings, *report.notes]))
    return out
