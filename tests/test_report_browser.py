"""The HTML report in a real browser (headless Chromium): every image loads, the console has no
error, nothing overflows the page, plots keep their aspect ratio; a screenshot goes in the report folder."""

from __future__ import annotations

import pytest
from browser import chromium, inspect
from report_helpers import gates, write_run

from unipelt_cli.report import build
from unipelt_cli.report.write import write_all

BROWSER = chromium()
pytestmark = pytest.mark.skipif(
    BROWSER is None, reason="Debian's chromium is not installed (apt-get install chromium): no browser to check in"
)
GATES = gates({"adapter": [0.3, 0.5], "lora_q": [0.6, 0.7], "lora_v": [0.5, 0.6], "prefix": [0.4, 0.45]})


def test_report_html_reads_well_in_chromium(tmp_path):
    for budget in (100, 500):
        for method in ("finetune", "adapter", "prefix", "lora", "unipelt_apl", "unipelt_apl_nogate"):
            for task in ("cola", "sst2", "mrpc", "stsb", "rte"):
                for seed in (1, 2, 3):
                    score = 60 + 3 * seed + len(method) + len(task) + budget / 100
                    write_run(tmp_path, task=task, method=method, budget=budget, seed=seed, score=score,
                              gates=GATES if method == "unipelt_apl" else None)  # fmt: skip
    out = tmp_path / "report"
    _, images = write_all(build(tmp_path, compare_paper=True), out)
    assert len(images) >= 4

    found = inspect(BROWSER, out / "report.html", out / "report-screenshot.png")

    assert found["errors"] == []
    assert sorted(i["src"] for i in found["images"]) == sorted(i.path for i in images)
    assert all(i["loaded"] for i in found["images"]), [i["src"] for i in found["images"] if not i["loaded"]]
    for image in found["images"]:  # shown at the PNG's own aspect ratio, whatever the page width
        (w, h), (nw, nh) = image["shown"], image["natural"]
        assert abs(w / h - nw / nh) < 0.02, image
    assert found["overflow"] <= 0, f"the page is {found['overflow']} px wider than the window"
    shot = out / "report-screenshot.png"
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 20_000
