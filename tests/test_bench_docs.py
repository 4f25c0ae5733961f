"""`python bench/run.py SECTION ... --update-docs` replaces only the sections it measured."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.run import merge_sections  # noqa: E402

OLD = """Machine: M.
Measured 2026-12-03 18:04 UTC with `make bench` (5 rounds).

## 4. Peak
p4
## 1. Train step
s1
## 7. Before the work
old 7
(benchmark wall time 1725 s)"""

NEW = """Machine: M.
Measured 2026-12-04 10:00 UTC with `make bench` (5 rounds).

## 7. Before the work
new 7
(benchmark wall time 300 s)"""


def test_only_the_measured_sections_are_replaced_and_the_date_of_each_is_kept():
    merged = merge_sections(OLD, NEW, "python bench/run.py cfg plan startup")
    assert merged.splitlines() == [
        "Machine: M.",
        "Measured 2026-12-03 18:04 UTC with `make bench` (5 rounds).",
        "Section 7 re-measured 2026-12-04 10:00 UTC with `python bench/run.py cfg plan startup --update-docs`.",
        "",
        "## 4. Peak",
        "p4",
        "## 1. Train step",
        "s1",
        "## 7. Before the work",
        "new 7",
        "(benchmark wall time 300 s)",
    ]


def test_a_section_the_block_lacks_is_added_at_the_end():
    merged = merge_sections(OLD.replace("## 7. Before the work\nold 7\n", ""), NEW, "python bench/run.py startup")
    assert merged.splitlines()[-3:] == ["## 7. Before the work", "new 7", "(benchmark wall time 300 s)"]
    assert "Section 7 re-measured 2026-12-04 10:00 UTC" in merged


def test_a_section_measured_again_keeps_only_its_latest_date():
    once = merge_sections(OLD, NEW, "python bench/run.py startup")
    twice = merge_sections(once, NEW.replace("2026-12-04 10:00", "2026-12-05 09:00"), "python bench/run.py startup")
    notes = [ln for ln in twice.splitlines() if "re-measured" in ln]
    assert notes == ["Section 7 re-measured 2026-12-05 09:00 UTC with `python bench/run.py startup --update-docs`."]
    other = merge_sections(once, NEW.replace("## 7. Before the work", "## 2. Eval"), "python bench/run.py eval")
    assert sum("re-measured" in ln for ln in other.splitlines()) == 2  # section 7's date stays
