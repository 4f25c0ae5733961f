"""One report in every format: render one to a string, or write them all (and the plots) to a folder."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

from unipelt_cli import runs as runs_mod
from unipelt_cli.errors import UserError
from unipelt_cli.report import Report, export, render
from unipelt_cli.report.tables import Image, sections

FORMATS = ("table", "md", "csv", "latex", "json", "html")
FILES = {
    "table": "report.txt",
    "md": "report.md",
    "latex": "report.tex",
    "html": "report.html",
    "json": "report.json",
    "csv": "table_wide.csv",
}
LONG_CSV = "runs_long.csv"
DOC_START, DOC_END = "<!-- unipelt report:start -->", "<!-- unipelt report:end -->"


def render_as(report: Report, fmt: str, images: list[Image] | None = None) -> str:
    """The report in one format (csv: the wide table; the long form is written beside it)."""
    images = images or []
    doc = sections(report, images)
    if fmt == "csv":
        return export.to_wide_csv(report)
    if fmt == "json":
        return export.to_json(report, [g for s in doc for g in s.grids], images)
    return {"table": render.to_text, "md": render.to_markdown, "latex": render.to_latex, "html": render.to_html}[fmt](
        doc
    )


def write_all(report: Report, out: Path, plots: bool = True) -> tuple[list[Path], list[Image]]:
    """Every format and plot under OUT; returns the files written and the plot images."""
    out.mkdir(parents=True, exist_ok=True)
    images = []
    if plots and report.cells:
        from unipelt_cli.report.plots import make_all

        images = make_all(report, out)
    written = [out / image.path for image in images]
    for fmt, name in FILES.items():
        runs_mod.atomic_write(out / name, render_as(report, fmt, images))
        written.append(out / name)
    runs_mod.atomic_write(out / LONG_CSV, export.to_long_csv(report))
    written.append(out / LONG_CSV)
    return sorted(written), images


def markers(block: str | None = None) -> tuple[str, str]:
    """The lines around a report block in a document: unnamed, or named `block`."""
    if block is None:
        return DOC_START, DOC_END
    return f"<!-- unipelt report:start {block} -->", f"<!-- unipelt report:end {block} -->"


def update_doc(report: Report, doc: Path, out: Path, images: list[Image], block: str | None = None) -> None:
    """Put the Markdown report into DOC between its start and end lines (`markers(block)`; DOC is
    created with just that block if missing); headings one level down, plot links relative to DOC's folder."""
    first, last = markers(block)
    text = doc.read_text() if doc.exists() else f"{first}\n{last}\n"
    head, start, rest = text.partition(first)
    _, end, tail = rest.partition(last)
    if not start or not end:
        raise UserError(f"{doc} has no report block: add a line {first} and a line {last} where the report goes")
    moved = [dataclasses.replace(i, path=os.path.relpath(out / i.path, doc.parent)) for i in images]
    body = render.to_markdown(sections(report, moved), depth=1)
    runs_mod.atomic_write(doc, f"{head}{first}\n{body}{last}{tail}")
