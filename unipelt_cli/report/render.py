"""Sections of grids -> plain text, Markdown, LaTeX (booktabs) and one self-contained HTML page."""

from __future__ import annotations

import html

from unipelt_cli.report.tables import Cell, Grid, Section

# --- plain text -----------------------------------------------------------------------------------


def _text_cell(cell) -> str:
    return cell.text + ("*" if cell.best else "")


def text_grid(grid: Grid) -> str:
    table = [grid.header, *([_text_cell(c) for c in row] for row in grid.rows)]
    widths = [max(len(row[i]) for row in table) for i in range(len(grid.header))]

    numeric = grid.numeric()

    def line(row):
        return "  ".join(c.rjust(w) if num else c.ljust(w) for c, w, num in zip(row, widths, numeric, strict=True))

    out = [grid.title, "=" * len(grid.title), line(grid.header), "  ".join("-" * w for w in widths)]
    out += [line(row) for row in table[1:]]
    out += [f"  {note}" for note in grid.notes]
    return "\n".join(out)


def to_text(sections: list[Section]) -> str:
    parts = []
    for section in sections:
        parts += section.text
        parts += [text_grid(g) for g in section.grids]
        parts += [f"[plot] {img.path}: {img.caption}" for img in section.images]
    return "\n\n".join(parts) + "\n"


# --- Markdown -------------------------------------------------------------------------------------


def _md(text: str) -> str:
    return text.replace("|", "\\|").replace("*", "\\*")


def md_grid(grid: Grid, depth: int = 0) -> str:
    def cell(c):
        return f"**{_md(c.text)}**" if c.best else _md(c.text)

    out = [f"{'#' * (3 + depth)} {_md(grid.title)}", ""]
    out.append("| " + " | ".join(_md(h) for h in grid.header) + " |")
    out.append("|" + "|".join("---:" if num else "---" for num in grid.numeric()) + "|")
    out += ["| " + " | ".join(cell(c) for c in row) + " |" for row in grid.rows]
    if grid.notes:
        out += ["", *(f"{_md(note)}  " for note in grid.notes)]
    return "\n".join(out)


def to_markdown(sections: list[Section], depth: int = 0) -> str:
    """depth: extra heading levels, for a report placed inside another document."""
    parts = []
    for i, section in enumerate(sections):
        parts.append(f"{'#' * ((1 if i == 0 else 2) + depth)} {section.title}")
        parts += [_md(t) for t in section.text]
        parts += [md_grid(g, depth) for g in section.grids]
        parts += [f"![{_md(img.caption)}]({img.path})" for img in section.images]
    return "\n\n".join(parts) + "\n"


# --- LaTeX ----------------------------------------------------------------------------------------

_TEX = {
    "\\": r"\textbackslash{}",
    "&": r"\&",
    "%": r"\%",
    "$": r"\$",
    "#": r"\#",
    "_": r"\_",
    "{": r"\{",
    "}": r"\}",
    "~": r"\textasciitilde{}",
    "^": r"\textasciicircum{}",
    "—": "---",
    "–": "--",
    "†": r"\dag{}",
    "±": r"$\pm$",
    "Δ": r"$\Delta$",
    "≤": r"$\le$",
    "≥": r"$\ge$",
    "<": r"\textless{}",
    ">": r"\textgreater{}",
}


def tex(text: str) -> str:
    return "".join(_TEX.get(ch, ch) for ch in text)


def latex_grid(grid: Grid) -> str:
    def cell(c):
        return f"\\textbf{{{tex(c.text)}}}" if c.best else tex(c.text)

    spec = "".join("r" if num else "l" for num in grid.numeric())
    out = [
        r"\begin{table}[ht]",
        r"\centering\small",
        f"\\caption{{{tex(grid.title)}}}",
        f"\\label{{tab:{grid.id}}}",
        r"\resizebox{\textwidth}{!}{%",
        f"\\begin{{tabular}}{{{spec}}}",
        r"\toprule",
        " & ".join(tex(h) for h in grid.header) + r" \\",
        r"\midrule",
        *(" & ".join(cell(c) for c in row) + r" \\" for row in grid.rows),
        r"\bottomrule",
        r"\end{tabular}}",
    ]
    if grid.notes:
        out += [r"\par\smallskip\footnotesize", *(tex(n) + r"\par" for n in grid.notes)]
    out.append(r"\end{table}")
    return "\n".join(out)


def to_latex(sections: list[Section]) -> str:
    out = [
        r"\documentclass{article}",
        r"\usepackage[utf8]{inputenc}",
        r"\usepackage[margin=2cm]{geometry}",
        r"\usepackage{booktabs}",
        r"\usepackage{graphicx}",
        r"\begin{document}",
    ]
    for section in sections:
        out.append(f"\\section*{{{tex(section.title)}}}")
        out += [tex(t) + "\n" for t in section.text]
        out += [latex_grid(g) for g in section.grids]
        for img in section.images:
            out += [
                r"\begin{figure}[ht]",
                r"\centering",
                f"\\includegraphics[width=\\textwidth]{{{img.path}}}",
                f"\\caption{{{tex(img.caption)}}}",
                r"\end{figure}",
            ]
        out.append(r"\clearpage" if section.images else "")
    out.append(r"\end{document}")
    return "\n".join(out) + "\n"


# --- HTML -----------------------------------------------------------------------------------------

_CSS = """
body { font-family: system-ui, sans-serif; margin: 2em auto; padding: 0 2em; max-width: 80em; color: #222; }
table { border-collapse: collapse; margin: 0.5em 0; font-variant-numeric: tabular-nums; font-size: 0.92em;
        display: block; max-width: 100%; overflow-x: auto; }
th, td { padding: 0.25em 0.6em; border-bottom: 1px solid #ddd; text-align: left; }
td:first-child { white-space: nowrap; }
.num { text-align: right; white-space: nowrap; }
thead th { border-bottom: 2px solid #444; }
td.best { font-weight: bold; background: #eef6ee; }
p.note { font-size: 0.85em; color: #555; margin: 0.2em 0; }
figure { display: inline-block; margin: 1em 1em 1em 0; }
figcaption { font-size: 0.85em; color: #555; }
img { max-width: 100%; height: auto; }
""".strip()


def html_grid(grid: Grid) -> str:
    e = html.escape
    numeric = grid.numeric()

    def attrs(cell, num: bool) -> str:
        classes = " ".join(name for name, on in (("num", num), ("best", cell.best)) if on)
        return f' class="{classes}"' if classes else ""

    head = "".join(f"<th{attrs(Cell(h), num)}>{e(h)}</th>" for h, num in zip(grid.header, numeric, strict=True))
    body = "".join(
        "<tr>" + "".join(f"<td{attrs(c, num)}>{e(c.text)}</td>" for c, num in zip(row, numeric, strict=True)) + "</tr>"
        for row in grid.rows
    )
    notes = "".join(f'<p class="note">{e(n)}</p>' for n in grid.notes)
    return (
        f'<h3 id="{e(grid.id)}">{e(grid.title)}</h3>\n'
        f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>\n{notes}"
    )


def to_html(sections: list[Section]) -> str:
    e = html.escape
    out = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8"><title>unipelt report</title>',
        f"<style>\n{_CSS}\n</style></head><body>",
    ]
    for i, section in enumerate(sections):
        out.append(f"<h{1 if i == 0 else 2}>{e(section.title)}</h{1 if i == 0 else 2}>")
        out += [f"<p>{e(t)}</p>" for t in section.text]
        out += [html_grid(g) for g in section.grids]
        for img in section.images:
            w, h = img.size
            out.append(
                f'<figure><img src="{e(img.path)}" width="{w}" height="{h}" alt="{e(img.caption)}">'
                f"<figcaption>{e(img.caption)}</figcaption></figure>"
            )
    out.append("</body></html>")
    return "\n".join(out) + "\n"
