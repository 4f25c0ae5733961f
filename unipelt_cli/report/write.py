"""One report in every format: render one to a string, or write them all (and the plots) to a folder."""

from __future__ import annotations

from pathlib import Path

from unipelt_cli import runs as runs_mod
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
