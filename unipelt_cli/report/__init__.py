"""`unipelt report`: a folder of runs -> paper-style tables, plots and exports (reads JSON, never torch).

load.py       run folders -> Run (result.json, config.yaml, status.json); filters; latest attempts
aggregate.py  runs -> groups over seeds -> one picked group per cell; upper bound, cost, gates
tables.py     the report as sections of plain grids (what every text format renders)
render.py     grids -> text, Markdown, LaTeX (booktabs), HTML
export.py     CSV (long: one row per run; wide: one row per table row), JSON
plots.py      PNGs with matplotlib (Agg): score vs K, score vs parameters, gate heatmaps
write.py      one format to a string, or every format and plot to a folder
paper.py      the paper's numbers, for --compare-paper; names.py: labels and the paper's orders
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from unipelt_cli.report import aggregate
from unipelt_cli.report.aggregate import CellKey, Group
from unipelt_cli.report.load import Run, apply_filters, latest_attempts, load_runs, parse_filters
from unipelt_cli.report.names import budget_key, budget_label, method_key, method_label, task_key, task_label


@dataclass
class Report:
    source: Path | str  # the folder read, or "A + B" for several
    runs: list[Run]  # one per run identity (the latest completed attempt), failed ones included
    groups: list[Group]  # every variant of every cell
    cells: dict[CellKey, Group]  # the picked variant per cell
    warnings: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    filters: dict[str, list[str]] = field(default_factory=dict)
    select: str = "shared"
    merge: tuple[str, ...] = aggregate.DEFAULT_MERGE
    compare_paper: bool = False

    def tables(self) -> list[tuple[str, int | str]]:
        """(backbone, budget) pairs, budgets sorted by K."""
        keys = {(b, k) for b, k, _, _ in self.cells}
        return sorted(keys, key=lambda bk: (bk[0], budget_key(bk[1])))

    def tasks(self, backbone: str, budget) -> list[str]:
        found = {t for b, k, _, t in self.cells if (b, k) == (backbone, budget)}
        return sorted(found, key=task_key)

    def methods(self, backbone: str, budget) -> list[str]:
        found = {m for b, k, m, _ in self.cells if (b, k) == (backbone, budget)}
        return sorted(found, key=method_key)

    def expected(self) -> dict[tuple, int]:
        return aggregate.expected_seeds(self.cells)


def build(
    source: Path | list[Path],
    filters: list[str] | None = None,
    select: str = "shared",
    merge: tuple[str, ...] = aggregate.DEFAULT_MERGE,
    compare_paper: bool = False,
) -> Report:
    """Read, filter, keep the latest attempt per run, group over seeds and pick one variant per cell.
    source: one folder of runs, or several read as one (a run in two of them counts once)."""
    parsed = parse_filters(filters or [])
    sources = source if isinstance(source, list) else [source]
    found, warnings = [], []
    for folder in sources:
        more, said = load_runs(folder)
        found, warnings = found + more, warnings + said
    source = sources[0] if len(sources) == 1 else " + ".join(str(s) for s in sources)
    found = apply_filters(found, parsed)
    kept, notes = latest_attempts(found)
    notes += [f"{run.path.name}: {run.note}" for run in kept if run.note]
    groups = aggregate.group_runs(kept, merge)
    cells = aggregate.pick(groups, select)
    for group in cells.values():
        if group.mixes:
            mixed = "; ".join(f"{k} = {', '.join(v)}" for k, v in group.mixes.items())
            notes.append(f"{_where(group)} mixes runs that differ in {mixed}")
    return Report(
        source=source,
        runs=kept,
        groups=groups,
        cells=cells,
        warnings=warnings,
        notes=notes,
        filters=parsed,
        select=select,
        merge=merge,
        compare_paper=compare_paper,
    )


def _where(group: Group) -> str:
    return f"{task_label(group.task)} {method_label(group.method)} {budget_label(group.budget)} ({group.backbone})"
