"""`unipelt report` outputs: every format written and read back, plot sizes, the command line."""

from __future__ import annotations

import csv
import io
import json
import re
from html.parser import HTMLParser
from pathlib import Path

import pytest
from report_helpers import gates, png_size, write_run
from typer.testing import CliRunner

from unipelt_cli.cli import app
from unipelt_cli.report import build
from unipelt_cli.report.plots import figure_size
from unipelt_cli.report.write import FILES, LONG_CSV, render_as, write_all

runner = CliRunner()
SCORES = {  # method -> task -> seed scores
    "finetune": {"sst2": [80.0, 82.0, 84.0], "rte": [60.0, 62.0, 64.0]},
    "lora": {"sst2": [81.0, 83.0], "rte": [59.0]},
    "unipelt_apl": {"sst2": [85.0, 85.0, 88.0], "rte": [61.0, 65.0, 66.0]},
}
GATES = gates({"adapter": [0.3, 0.5], "lora_q": [0.6, 0.7], "prefix": [0.4, 0.45]})


@pytest.fixture(scope="module")
def runs_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("outputs")
    for method, by_task in SCORES.items():
        for task, scores in by_task.items():
            for seed, score in enumerate(scores, start=1):
                write_run(
                    root, task=task, method=method, seed=seed, score=score, gates=GATES if "unipelt" in method else None
                )
    write_run(root, task="rte", method="lora", seed=2, state="failed")
    bad = root / "runs" / "broken"
    bad.mkdir()
    (bad / "result.json").write_text("{")
    return root


@pytest.fixture(scope="module")
def written(runs_root, tmp_path_factory):
    report = build(runs_root, compare_paper=True)
    out = tmp_path_factory.mktemp("report")
    files, images = write_all(report, out)
    return report, out, files, images


def test_every_file_is_written(written):
    _, out, files, images = written
    names = {p.relative_to(out).as_posix() for p in files}
    assert {*FILES.values(), LONG_CSV} <= names
    assert {"plots/score-vs-k-minilm-l6.png", "plots/score-vs-params-minilm-l6-100.png"} <= names
    assert "plots/gates-minilm-l6-100-sst2.png" in names and "plots/gates-minilm-l6-100-rte.png" in names
    assert all(p.is_file() and p.stat().st_size > 0 for p in files)
    assert len(images) == 4


def test_plots_have_the_expected_size(written):
    _, out, _, images = written
    assert figure_size(2) == (1020, 300) and figure_size(5) == (1820, 600)
    for image in images:
        assert png_size(out / image.path) == image.size
    sizes = {i.path: i.size for i in images}
    assert sizes["plots/score-vs-k-minilm-l6.png"] == (1020, 300)  # two tasks, one legend column
    assert sizes["plots/gates-minilm-l6-100-sst2.png"] == (620, 300)  # one gated method


def test_long_csv_round_trip_one_row_per_run(written):
    report, out, _, _ = written
    rows = list(csv.DictReader(io.StringIO((out / LONG_CSV).read_text())))
    assert len(rows) == len(report.runs) == 16  # 15 completed + 1 failed; the broken file is not a run
    failed = [r for r in rows if r["state"] == "failed"]
    assert len(failed) == 1 and failed[0]["test"] == ""
    by_run = {r.path.name: r for r in report.runs}
    for row in rows:
        run = by_run[row["run_id"]]
        if run.done:
            assert float(row["test"]) == run.score and int(row["seed"]) == run.seed
            assert float(row["stored_params"]) == 1000 and row["shown"] == "True"


def test_wide_csv_round_trip(written):
    report, out, _, _ = written
    rows = list(csv.DictReader(io.StringIO((out / FILES["csv"]).read_text())))
    assert [r["method"] for r in rows] == ["finetune", "lora", "unipelt_apl"]
    for row in rows:
        for task in ("sst2", "rte"):
            group = report.cells[("minilm-l6", 100, row["method"], task)]
            assert float(row[f"{task}_mean"]) == pytest.approx(group.mean)
            assert int(row[f"{task}_n"]) == group.n
            assert (row[f"{task}_std"] == "") == (group.std is None)
    lora = rows[1]
    assert lora["rte_flags"] == "n=1/3;1 failed" and lora["sst2_flags"] == "n=2/3" and lora["sst2_variant"] == ""
    assert float(rows[0]["avg"]) == pytest.approx((82.0 + 62.0) / 2) and rows[0]["avg_tasks"] == "2"


def test_markdown_tables_have_a_consistent_shape(written):
    _, out, _, _ = written
    text = (out / FILES["md"]).read_text()
    tables, current = [], []
    for line in text.splitlines():
        if line.startswith("|"):
            current.append(line)
        elif current:
            tables.append(current)
            current = []
    assert len(tables) >= 6
    for table in tables:
        widths = {len(re.findall(r"(?<!\\)\|", line)) for line in table}
        assert len(widths) == 1, table  # header, separator and rows have the same number of columns
        assert re.fullmatch(r"\|(---:?\|)+", table[1]), table[1]
    assert "| Fine-tuning | 82.00 (2.00) | 62.00 (2.00) | 72.00 |" in text
    assert "| LoRA | 82.00 (1.41) [n=2/3] | 59.00 [n=1/3, 1 failed] | 70.50 |" in text
    assert "**86.00 (1.73)**" in text
    for image in re.findall(r"!\[[^]]*\]\(([^)]+)\)", text):
        assert (out / image).is_file()


def test_latex_environments_are_balanced(written):
    _, out, _, _ = written
    text = (out / FILES["latex"]).read_text()
    stack = []
    for kind, name in re.findall(r"\\(begin|end)\{(\w+)\}", text):
        if kind == "begin":
            stack.append(name)
        else:
            assert stack and stack.pop() == name, name
    assert stack == []
    assert r"\toprule" in text and r"\midrule" in text and r"\bottomrule" in text
    assert text.count(r"\begin{tabular}") == text.count(r"\bottomrule") >= 6
    assert r"UniPELT (APL)" in text and r"\textbf{86.00 (1.73)}" in text
    assert text.isascii()  # every special character spelled in LaTeX: compiles without utf8 input
    assert "_" not in re.sub(r"\\_|\\includegraphics\[[^]]*\]\{[^}]*\}|\\label\{[^}]*\}", "", text)


class _Html(HTMLParser):
    VOID = {"meta", "img", "br", "hr", "link", "input"}

    def __init__(self):
        super().__init__()
        self.stack, self.images, self.errors, self.tables = [], [], [], 0

    def handle_starttag(self, tag, attrs):
        if tag == "img":
            self.images.append(dict(attrs)["src"])
        elif tag not in self.VOID:
            self.stack.append(tag)
        self.tables += tag == "table"

    def handle_endtag(self, tag):
        if not self.stack or self.stack.pop() != tag:
            self.errors.append(tag)


def test_html_parses_and_references_existing_images(written):
    _, out, _, images = written
    parser = _Html()
    parser.feed((out / FILES["html"]).read_text())
    assert parser.errors == [] and parser.stack == []
    assert parser.tables >= 6
    assert sorted(parser.images) == sorted(i.path for i in images)
    assert all((out / src).is_file() for src in parser.images)


def test_json_holds_cells_groups_and_warnings(written):
    report, out, _, _ = written
    data = json.loads((out / FILES["json"]).read_text())
    assert data["summary"]["runs"] == 16 and data["summary"]["skipped_files"] == 1
    lora_rte = next(c for c in data["cells"] if (c["method"], c["task"]) == ("lora", "rte"))
    assert lora_rte["n"] == 1 and lora_rte["std"] is None and lora_rte["not_done"] == {"failed": 1}
    assert any("broken" in w for w in data["warnings"])
    assert data["gates"][0]["layers"]["1"]["lora_q"] == pytest.approx(0.7)
    assert data["paper"]["scores"]["100"]["finetune"]["sst2"] == [79.61, 4.25]
    assert {t["id"] for t in data["tables"]} >= {
        "scores-minilm-l6-100",
        "upper-bound-minilm-l6-100",
        "paper-minilm-l6-100",
    }


def test_compare_paper_puts_the_paper_beside_ours(written):
    report, *_ = written
    text = render_as(report, "table")
    assert "82.00 / 79.61 (+2.39)" in text  # fine-tuning SST-2, K=100
    assert "Paper (BERT-base, 8 tasks, Avg): best of {A, P} 58.86" in text


def test_cli_prints_the_format_and_writes_files(runs_root, tmp_path):
    out = tmp_path / "rep"
    result = runner.invoke(app, ["report", "--outputs", str(runs_root), "--format", "csv", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "backbone,budget,method,sst2_mean" in result.stdout
    assert "warning: skipped" in result.stderr and f"wrote 11 files to {out}" in result.stderr
    assert (out / "report.md").is_file()


def test_cli_filters_and_no_files(runs_root, tmp_path):
    result = runner.invoke(app, ["report", str(runs_root), "method=lora", "task=sst2", "--no-files", "-f", "md"])
    assert result.exit_code == 0, result.output
    assert "| LoRA | 82.00 (1.41) | 82.00 |" in result.stdout and "Fine-tuning" not in result.stdout
    assert not (runs_root / "report").exists()


def test_cli_on_an_empty_folder(tmp_path):
    result = runner.invoke(app, ["report", str(tmp_path), "--format", "json", "--out", str(tmp_path / "r")])
    assert result.exit_code == 2, result.output
    assert "no finished runs in" in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "r").exists()  # nothing written for nothing


@pytest.mark.parametrize(
    "args,needle",
    [
        (["--format", "pdf"], "--format pdf is not a format"),
        (["--select", "best"], "--select best is not a policy"),
        (["/nonexistent/folder"], "is not a folder of runs nor a key=value filter"),
        (["task="], "is not key=value"),
        (["nokey=1"], "unknown filter key 'nokey'"),
    ],
)
def test_cli_user_errors(runs_root, args, needle):
    result = runner.invoke(app, ["report", "--outputs", str(runs_root), "--no-files", *args])
    assert result.exit_code == 2, result.output
    lines = [ln for ln in result.output.splitlines() if ln.strip() and not ln.startswith("warning:")]
    assert len(lines) == 1 and lines[0].startswith("error: ") and needle in lines[0], result.output


def test_cli_missing_outputs_folder(tmp_path):
    result = runner.invoke(app, ["report", "--outputs", str(tmp_path / "none")])
    assert result.exit_code == 2 and "no folder at" in result.output


def test_nan_scores_and_gates_do_not_break_the_exports(tmp_path):
    write_run(tmp_path, seed=1, score=70.0)
    write_run(tmp_path, seed=2, score=float("nan"), method="unipelt_ap", gates=gates({"adapter": [float("nan")]}))
    report = build(tmp_path)
    data = json.loads(render_as(report, "json"))
    ap = next(c for c in data["cells"] if c["method"] == "unipelt_ap")
    assert ap["n"] == 0 and ap["mean"] is None and data["gates"][0]["layers"]["0"]["adapter"] is None
    assert "| UniPELT (AP) | — [n=0/1] | — |" in render_as(report, "md")
