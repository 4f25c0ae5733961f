"""`unipelt report`: a folder of runs -> paper-style tables, plots and exports. Reads JSON only."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from unipelt_cli.cli import OutputsOpt, app, user_errors
from unipelt_cli.errors import UserError

FORMATS = ("table", "md", "csv", "latex", "json", "html")  # as unipelt_cli.report.write.FORMATS


@app.command(
    "report",
    epilog=(
        "Examples: unipelt report | unipelt report results/selection-k100-h100 --format md | "
        "unipelt report task=sst2,rte method=lora budget=100 | unipelt report --compare-paper --out paper-tables"
    ),
)
@user_errors
def report_cmd(
    args: Annotated[
        list[str] | None,
        typer.Argument(
            help="Filters key=value[,value...] (task=sst2,rte method=lora budget=100 train.lr=1e-3); "
            "a folder instead reads the runs there (like --outputs); several folders are read as one.",
            show_default=False,
            metavar="KEY=VALUE|FOLDER",
        ),
    ] = None,
    outputs: OutputsOpt = None,
    fmt: Annotated[str, typer.Option("--format", "-f", help=f"What to print: {', '.join(FORMATS)}.")] = "table",
    out: Annotated[
        Path | None, typer.Option("--out", help="Folder for every format and the plots (default: FOLDER/report).")
    ] = None,
    no_files: Annotated[bool, typer.Option("--no-files", help="Print only; write no files or plots.")] = False,
    compare_paper: Annotated[
        bool, typer.Option("--compare-paper", help="Put the paper's numbers (BERT-base) beside ours.")
    ] = False,
    doc: Annotated[
        Path | None,
        typer.Option(
            "--doc",
            help="Also put the Markdown report into this file, between the lines <!-- unipelt report:start --> "
            "and <!-- unipelt report:end --> (a missing file is created); plot links point into --out.",
        ),
    ] = None,
    block: Annotated[
        str | None,
        typer.Option(
            "--block",
            help="With --doc: fill the block named NAME instead (<!-- unipelt report:start NAME --> ... "
            "<!-- unipelt report:end NAME -->), so one file can hold several reports.",
        ),
    ] = None,
    select: Annotated[
        str,
        typer.Option(
            "--select",
            help="Which config variant a cell shows when its runs differ beyond seeds: shared (one variant per "
            "method on every task: most tasks, most seeds, best dev averaged over tasks) or cell (per cell: most "
            "seeds, then best dev). Every variant is listed under Variants.",
        ),
    ] = "shared",
    merge: Annotated[
        list[str] | None,
        typer.Option(
            "--merge",
            help="A config key that does not split a cell into variants (repeatable); cells whose runs differ "
            "in it are marked 'mixed'. backbone.name_or_path always merges.",
        ),
    ] = None,
) -> None:
    """Tables over seeds (mean, sample std, n), upper bounds, cost, gates, plots, CSV/Markdown/LaTeX/JSON/HTML."""
    from unipelt_cli import runs
    from unipelt_cli.report import aggregate, build
    from unipelt_cli.report.write import FILES, render_as, update_doc, write_all

    if fmt not in FORMATS:
        raise UserError(f"--format {fmt} is not a format: use one of {', '.join(FORMATS)}")
    if doc is not None and no_files:
        raise UserError("--doc writes a file and --no-files writes none: drop one of them")
    if select not in aggregate.POLICIES:
        raise UserError(f"--select {select} is not a policy: use --select shared or --select cell")
    filters, folders = [], []
    for arg in args or []:
        (filters if "=" in arg else folders).append(arg)
    missing = [f for f in folders if not Path(f).is_dir()]
    if missing or (folders and outputs is not None):
        raise UserError(
            f"'{' '.join(missing or folders)}' is not a folder of runs nor a key=value filter: "
            "give folders of runs (or --outputs DIR, not both) and filters such as task=sst2"
        )
    if block is not None and doc is None:
        raise UserError("--block names a block of the --doc file: add --doc FILE")
    sources = [Path(f) for f in folders] if folders else [runs.outputs_dir(outputs)]
    source = sources[0]
    merged = tuple(dict.fromkeys((*aggregate.DEFAULT_MERGE, *(merge or []))))
    report = build(sources, filters, select=select, merge=merged, compare_paper=compare_paper)
    if not report.runs:
        matching = f" matching {' '.join(filters)}" if filters else ""
        skipped = f" ({len(report.warnings)} skipped, first: {report.warnings[0]})" if report.warnings else ""
        raise UserError(
            f"no finished runs in {source}{matching}{skipped}: point to a folder of finished runs "
            "(--outputs DIR or a results/ folder) or loosen the filters"
        )
    for line in report.warnings:
        typer.echo(f"warning: {line}", err=True)

    images = []
    if not no_files:
        target = out or source / "report"
        written, images = write_all(report, target)
        typer.echo(f"wrote {len(written)} files to {target}: see {target / FILES['md']}", err=True)
        if doc is not None:
            update_doc(report, doc, target, images, block)
            typer.echo(f"updated the report block{f' {block}' if block else ''} of {doc}", err=True)
    typer.echo(render_as(report, fmt, images), nl=False)
