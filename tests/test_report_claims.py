"""`unipelt report`: the claims table (Δ, SE, verdicts, the paper's Δ), where runs ran, and --doc."""

from __future__ import annotations

import math

import pytest
from report_helpers import write_run
from typer.testing import CliRunner

from unipelt_cli.cli import app
from unipelt_cli.report import build, claims, paper
from unipelt_cli.report.tables import claims_grid, where_grid
from unipelt_cli.report.write import DOC_END, DOC_START

runner = CliRunner()
# method -> task -> seed scores; every cell has 2 seeds, so each std is exact and easy to check
SCORES = {
    "finetune": {"sst2": [80.0, 82.0], "rte": [60.0, 62.0]},
    "adapter": {"sst2": [79.0, 81.0], "rte": [55.0, 57.0]},
    "prefix": {"sst2": [70.0, 72.0], "rte": [61.0, 63.0]},
    "lora": {"sst2": [83.0, 85.0], "rte": [54.0, 56.0]},
    "unipelt_ap": {"sst2": [80.0, 84.0], "rte": [60.0, 64.0]},
    "unipelt_apl": {"sst2": [90.0, 92.0], "rte": [70.0, 72.0]},
    "unipelt_apl_nogate": {"sst2": [84.0, 92.0], "rte": [62.0, 70.0]},
}


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    root = tmp_path_factory.mktemp("outputs")
    for method, by_task in SCORES.items():
        for task, scores in by_task.items():
            for seed, score in enumerate(scores, start=1):
                write_run(root, task=task, method=method, seed=seed, score=score)
    return build(root, compare_paper=True)


def rows(report) -> dict[str, dict]:
    return {r["claim"]: r for r in claims.claims(report.cells, "minilm-l6", 100)}


def test_apl_against_the_best_single_submodule_by_average(report):
    row = rows(report)["APL beats the best single submodule"]
    # averages: adapter (80+56)/2 = 68, prefix (71+62)/2 = 66.5, lora (84+55)/2 = 69.5 -> LoRA
    assert row["text"] == "81.00 vs 69.50 (LoRA)"
    assert row["delta"] == pytest.approx(11.5)
    # paired by seed: APL - LoRA is 7 on both SST-2 seeds and 16 on both RTE seeds, so SE is 0
    # (independent stds would have said 1.0: the shared K-shot sample moves both scores together)
    assert row["se"] == pytest.approx(0.0)
    assert row["wins"] == 2 and row["verdict"] == "holds"


def test_oracle_bound_takes_the_best_member_per_task(report):
    found = rows(report)
    row = found["APL beats the per-task best of {A, P, L}"]
    assert row["text"] == "81.00 vs 73.00 (oracle LP)"  # SST-2 LoRA 84, RTE prefix 62
    assert row["delta"] == pytest.approx(8.0)
    ap = found["AP beats the per-task best of {A, P}"]
    assert ap["text"] == "72.00 vs 71.00 (oracle AP)"  # SST-2 adapter 80, RTE prefix 62
    # per-seed differences: SST-2 vs adapter [1, 3], RTE vs prefix [-1, 1]: variances 2 and 2 over 2 seeds
    assert ap["se"] == pytest.approx(math.sqrt(2 / 2 + 2 / 2) / 2)
    assert ap["verdict"] == "within noise (Δ > 0)"
    # the paper's Δ against its own per-task best (K=100): {A, P, L} SST-2 LoRA 81.56, RTE prefix 55.96;
    # APL 82.36 + 55.45. {A, P}: SST-2 adapter 80.48, RTE prefix 55.96; AP 77.22 + 55.52
    assert row["paper"] == pytest.approx((82.36 + 55.45 - 81.56 - 55.96) / 2)  # +0.145
    assert ap["paper"] == pytest.approx((77.22 + 55.52 - 80.48 - 55.96) / 2)  # -1.85


def test_gates_mean_and_seed_spread(report):
    found = rows(report)
    assert found["Gates help UniPELT (APL)"]["delta"] == pytest.approx(81.0 - 77.0)
    assert found["Gates help UniPELT (APL)"]["text"] == "81.00 vs 77.00 (no gate)"
    spread = found["Gates lower UniPELT (APL)'s seed std"]
    assert spread["text"] == f"std {math.sqrt(2):.2f} vs {math.sqrt(32):.2f} (no gate)"
    assert spread["delta"] == pytest.approx(math.sqrt(2) - math.sqrt(32))  # X's std minus Y's: -4.24
    assert spread["wins"] == 2 and spread["verdict"] == "lower"
    assert "Gates help UniPELT (AP)" not in found  # no AP no-gate runs: no row, never a made-up one


def test_paired_se_needs_two_shared_seeds(tmp_path):
    for seed, score in ((1, 70.0), (2, 74.0)):
        write_run(tmp_path, method="unipelt_apl", seed=seed, score=score)
    for seed, score in ((2, 60.0), (3, 61.0)):
        write_run(tmp_path, method="finetune", seed=seed, score=score)
    report = build(tmp_path)
    x, y = report.cells[("minilm-l6", 100, "unipelt_apl", "sst2")], report.cells[("minilm-l6", 100, "finetune", "sst2")]
    assert claims.pairs(x, y) == [(74.0, 60.0)]  # only seed 2 in common
    assert claims.paired_se([claims.pairs(x, y)]) is None
    row = claims.compare({"sst2": x}, {"sst2": y})
    assert row["delta"] == pytest.approx(74.0 - 60.0) and row["se"] is None  # seed 2 only, never 72 vs 60.5
    assert row["note"] == ", 1 shared seeds"
    assert claims.spread({"sst2": x}, {"sst2": y}) is None  # a std needs 2 shared seeds
    assert claims.verdict(row["delta"], row["se"]) == "untested (Δ > 0, < 2 shared seeds)"


def test_verdicts_at_the_two_se_edges():
    assert claims.verdict(2.01, 1.0) == "holds"
    assert claims.verdict(-2.01, 1.0) == "reversed"
    assert claims.verdict(1.99, 1.0) == "within noise (Δ > 0)"
    assert claims.verdict(5.0, None) == "untested (Δ > 0, < 2 shared seeds)"  # no SE (one seed): never "holds"
    # exactly 2 SE is not enough either way: "holds" needs Δ > 2 SE, "reversed" Δ < -2 SE
    assert claims.verdict(2.0, 1.0) == "within noise (Δ > 0)"
    assert claims.verdict(-2.0, 1.0) == "within noise (Δ ≤ 0)"
    assert claims.verdict(-1.01, 0.5) == "reversed" and claims.verdict(-0.99, 0.5) == "within noise (Δ ≤ 0)"
    assert claims.verdict(1.01, 0.5) == "holds" and claims.verdict(0.99, 0.5) == "within noise (Δ > 0)"
    # Δ = 0 is no gain: the sign reads ≤
    assert claims.verdict(0.0, 1.0) == "within noise (Δ ≤ 0)"
    assert claims.verdict(0.0, None) == "untested (Δ ≤ 0, < 2 shared seeds)"


def test_paper_delta_on_the_same_tasks(report):
    found = rows(report)
    apl = {t: paper.score(100, "unipelt_apl", t)[0] for t in ("sst2", "rte")}
    ft = {t: paper.score(100, "finetune", t)[0] for t in ("sst2", "rte")}
    expected = (apl["sst2"] + apl["rte"] - ft["sst2"] - ft["rte"]) / 2
    assert found["APL beats fine-tuning"]["paper"] == pytest.approx(expected)
    assert found["APL beats fine-tuning"]["text"] == "81.00 vs 71.00 (Fine-tuning)"
    singles = {m: sum(paper.score(100, m, t)[0] for t in ("sst2", "rte")) for m in claims.SINGLES}
    best = max(singles.values())
    assert found["APL beats the best single submodule"]["paper"] == pytest.approx((sum(apl.values()) - best) / 2)
    assert found["Gates help UniPELT (APL)"]["paper"] is None


def test_claims_grid_and_where_grid(report):
    grid = claims_grid(report, "minilm-l6", 100)
    assert grid.header[-1] == "Paper Δ (same tasks)"
    first = [c.text for c in grid.rows[0]]
    assert first[:5] == [
        "APL beats the best single submodule",
        "81.00 vs 69.50 (LoRA)",
        "+11.50 (SE 0.00)",
        "2/2",
        "holds",
    ]
    where = where_grid(report)
    assert [[c.text for c in row] for row in where.rows] == [["minilm-l6", "K=100", "cpu", "fp32", "?", "28"]]


def test_no_claims_without_unipelt_runs(tmp_path):
    write_run(tmp_path, method="lora", task="sst2")
    assert claims_grid(build(tmp_path), "minilm-l6", 100) is None


def test_doc_block_is_replaced_and_the_rest_kept(report, tmp_path):
    source = report.source
    doc = tmp_path / "docs" / "RESULTS.md"
    doc.parent.mkdir()
    doc.write_text(f"# Results\n\nprose before\n\n{DOC_START}\nSTALE BLOCK\n{DOC_END}\n\nprose after\n")
    out = tmp_path / "docs" / "results"
    args = ["report", str(source), "--compare-paper", "--out", str(out), "--doc", str(doc)]
    for _ in range(2):  # twice: the second run replaces the first block, never nests it
        result = runner.invoke(app, args)
        assert result.exit_code == 0, result.output
    text = doc.read_text()
    assert text.startswith("# Results\n\nprose before\n\n") and text.endswith(f"{DOC_END}\n\nprose after\n")
    assert "STALE BLOCK" not in text and text.count(DOC_START) == 1
    assert "## unipelt report" in text and "#### Claims: minilm-l6, K=100" in text
    links = [line[line.index("](") + 2 : -1] for line in text.splitlines() if line.startswith("![")]
    assert links and all(link.startswith("results/plots/") for link in links)
    assert all((doc.parent / link).is_file() for link in links)


def test_doc_errors(report, tmp_path):
    doc = tmp_path / "notes.md"
    doc.write_text("no markers here\n")
    result = runner.invoke(app, ["report", str(report.source), "--out", str(tmp_path / "r"), "--doc", str(doc)])
    assert result.exit_code != 0 and "has no report block" in result.output
    assert doc.read_text() == "no markers here\n"
    result = runner.invoke(app, ["report", str(report.source), "--no-files", "--doc", str(doc)])
    assert result.exit_code != 0 and "--no-files" in result.output
    fresh = tmp_path / "new.md"
    result = runner.invoke(app, ["report", str(report.source), "--out", str(tmp_path / "r2"), "--doc", str(fresh)])
    assert result.exit_code == 0 and fresh.read_text().startswith(DOC_START)


def test_seed_std_is_compared_on_the_shared_seeds(tmp_path):
    for seed, score in ((1, 70.0), (2, 74.0), (3, 90.0)):
        write_run(tmp_path, method="unipelt_apl", seed=seed, score=score)
    for seed, score in ((1, 60.0), (2, 61.0)):
        write_run(tmp_path, method="unipelt_apl_nogate", seed=seed, score=score)
    report = build(tmp_path)
    found = {r["claim"]: r for r in claims.claims(report.cells, "minilm-l6", 100)}
    spread = found["Gates lower UniPELT (APL)'s seed std"]
    assert spread["x"] == pytest.approx(math.sqrt(8)) and spread["y"] == pytest.approx(math.sqrt(0.5))
    assert spread["text"] == f"std {math.sqrt(8):.2f} vs {math.sqrt(0.5):.2f} (no gate, 2 shared seeds)"
    assert found["Gates help UniPELT (APL)"]["delta"] == pytest.approx(72.0 - 60.5)  # seed 3 left out


UNIFIED_SCORES = {  # in a second folder, beside the paper methods of `report`
    "unipelt_apli": {"sst2": [86.0, 88.0], "rte": [60.0, 66.0]},
    "ia3": {"sst2": [75.0, 77.0], "rte": [58.0, 58.0]},
    "dora": {"sst2": [84.0, 88.0], "rte": [55.0, 55.0]},
}


def test_unified_view_claims_and_families_from_two_folders(report, tmp_path):
    from unipelt_cli.report.tables import families_grid

    extra = tmp_path / "unified"
    for method, by_task in UNIFIED_SCORES.items():
        for task, scores in by_task.items():
            for seed, score in enumerate(scores, start=1):
                write_run(extra, task=task, method=method, seed=seed, score=score)
    both = build([report.source, extra])
    found = rows(both)
    member = found["Gated APL+(IA)^3 beats its best member"]
    # members by average: adapter 68, prefix 66.5, lora 69.5, ia3 (76 + 58) / 2 = 67 -> LoRA
    assert member["text"] == "75.00 vs 69.50 (LoRA)" and member["delta"] == pytest.approx(5.5)
    # per seed: SST-2 86-83, 88-85 (3, 3); RTE 60-54, 66-56 (6, 10): SE = sqrt(0/2 + 8/2) / 2 = 1
    assert member["se"] == pytest.approx(1.0) and member["verdict"] == "holds"
    dora = found["DoRA beats LoRA"]
    assert dora["delta"] == pytest.approx((86 - 84 + 55 - 55) / 2) and dora["verdict"].startswith("within noise")
    assert found["Adding (IA)^3 helps gated APL"]["delta"] == pytest.approx((87 + 63 - 91 - 71) / 2)
    assert "Gates help MAM" not in found  # no MAM runs: no row
    assert set(rows(report)) < set(found)  # the paper's claims are all still there
    grid = families_grid(both, "minilm-l6", 100)
    sst2 = {h: c.text for h, c in zip(grid.header, grid.rows[0], strict=True)}
    assert sst2["Mixes, gated"] == "91.00 UniPELT (APL)" and sst2["Low-rank"] == "86.00 DoRA"
    assert [c.best for c in grid.rows[0]].count(True) == 1 and grid.rows[0][grid.header.index("Mixes, gated")].best
    assert families_grid(report, "minilm-l6", 100) is None  # the paper's methods alone: no such table


def test_named_doc_blocks_leave_each_other_alone(report, tmp_path):
    doc = tmp_path / "RESULTS.md"
    doc.write_text(
        f"{DOC_START}\nMAIN\n{DOC_END}\n\n<!-- unipelt report:start extra -->\nOLD\n<!-- unipelt report:end extra -->\n"
    )
    args = ["report", str(report.source), "--out", str(tmp_path / "r"), "--doc", str(doc), "--block", "extra"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    text = doc.read_text()
    assert text.startswith(f"{DOC_START}\nMAIN\n{DOC_END}\n") and "OLD" not in text and "## unipelt report" in text
    result = runner.invoke(app, ["report", str(report.source), "--no-files", "--block", "extra"])
    assert result.exit_code == 2 and "--block names a block of the --doc file" in result.output


def test_three_seeds_and_a_tied_task(tmp_path):
    scores = {  # method -> task -> scores of seeds 1, 2, ...
        "unipelt_apl": {"sst2": [70.0, 74.0, 90.0], "rte": [60.0, 62.0]},
        "lora": {"sst2": [69.0, 72.0, 84.0], "rte": [62.0, 60.0]},
    }
    for method, by_task in scores.items():
        for task, values in by_task.items():
            for seed, score in enumerate(values, start=1):
                write_run(tmp_path, task=task, method=method, seed=seed, score=score)
    cells = build(tmp_path).cells
    x, y = ({t: cells[("minilm-l6", 100, m, t)] for t in ("sst2", "rte")} for m in scores)
    row = claims.compare(x, y)
    # SST-2: means 78 vs 75, per-seed differences [1, 2, 6] (mean 3, sample variance (4 + 1 + 9) / 2 = 7);
    # RTE: means 61 vs 61 (a tie), differences [-2, 2] (variance 8)
    assert row["delta"] == pytest.approx((3.0 + 0.0) / 2)
    assert row["se"] == pytest.approx(math.sqrt(7 / 3 + 8 / 2) / 2)  # 1.258
    assert row["wins"] == 2  # a tie counts as won: tasks where X's mean is >= Y's
    assert claims.verdict(row["delta"], row["se"]) == "within noise (Δ > 0)"
    spread = claims.spread(x, y)
    # seed std: SST-2 X sqrt(((-8)^2 + (-4)^2 + 12^2) / 2) = sqrt(112), Y sqrt((36 + 9 + 81) / 2) = sqrt(63);
    # RTE sqrt(2) both: X is lower on neither task (equal is not lower)
    assert spread["x"] == pytest.approx((math.sqrt(112) + math.sqrt(2)) / 2)
    assert spread["y"] == pytest.approx((math.sqrt(63) + math.sqrt(2)) / 2)
    assert spread["lower"] == 0


def test_gated_ap_claims_and_an_equal_seed_std(tmp_path):
    for method, values in (("unipelt_ap", [70.0, 72.0]), ("unipelt_ap_nogate", [60.0, 62.0])):
        for seed, score in enumerate(values, start=1):
            write_run(tmp_path, method=method, seed=seed, score=score)
    found = {r["claim"]: r for r in claims.claims(build(tmp_path).cells, "minilm-l6", 100)}
    gate = found["Gates help UniPELT (AP)"]
    assert gate["text"] == "71.00 vs 61.00 (no gate)" and gate["delta"] == pytest.approx(10.0)
    assert gate["se"] == pytest.approx(0.0) and gate["verdict"] == "holds"
    spread = found["Gates lower UniPELT (AP)'s seed std"]
    # both stds are sqrt(2): equal, so the gate did not lower it
    assert spread["text"] == f"std {math.sqrt(2):.2f} vs {math.sqrt(2):.2f} (no gate)"
    assert spread["delta"] == 0.0 and spread["wins"] == 0 and spread["verdict"] == "not lower"


def test_best_single_needs_every_task_scored(report):
    cells = report.cells
    assert claims.best_single(cells, "minilm-l6", 100, ["sst2", "rte"]) == "lora"  # averages 68, 66.5, 69.5
    assert claims.best_single(cells, "minilm-l6", 100, ["sst2"], ("adapter", "prefix")) == "adapter"  # 80 vs 71
    assert claims.best_single(cells, "minilm-l6", 100, ["sst2"], ("adapter", "mam")) == "adapter"  # no MAM runs
    assert claims.best_single(cells, "minilm-l6", 100, ["sst2", "cola"]) is None  # no member has CoLA
    assert claims.best_single(cells, "minilm-l6", 100, []) is None  # no tasks: no average to rank by


def test_paper_delta_by_hand():
    # K=100 (Table 1): APL SST-2 82.36, RTE 55.45; adapter 80.48, 52.78; prefix 60.87, 55.96; LoRA 81.56, 55.02
    # best single by average: LoRA (136.58; adapter 133.26, prefix 116.83), whatever the task order; RTE first,
    # the best first task would be prefix's 55.96
    for tasks in (["sst2", "rte"], ["rte", "sst2"]):
        delta = claims._paper_delta(100, "unipelt_apl", list(claims.SINGLES), tasks)
        assert delta == pytest.approx((82.36 + 55.45 - 81.56 - 55.02) / 2)  # +0.615
    assert claims._paper_delta(100, "unipelt_apl", "finetune", []) is None  # no tasks: no mean
    assert claims._paper_delta(100, "unipelt_apl", "finetune", ["sst2", "wnli"]) is None  # the paper has no WNLI
    assert claims._paper_delta(100, "dora", "lora", ["sst2"]) is None  # nor DoRA


def test_claims_carry_the_per_example_test_where_runs_kept_predictions(tmp_path):
    import json

    for method, right in (("unipelt_apl", 9), ("unipelt_apl_nogate", 7)):  # 90% and 70% on both seeds
        for seed in (1, 2):
            run = write_run(tmp_path, method=method, seed=seed, score=10.0 * right)
            (run / "predictions").mkdir()
            preds = [1] * right + [0] * (10 - right)
            lines = [json.dumps({"idx": i, "label": 1, "pred": p}) for i, p in enumerate(preds)]  # every label 1
            (run / "predictions" / "test.jsonl").write_text("\n".join(lines) + "\n")
    report = build(tmp_path)
    row = {r["claim"]: r for r in claims.claims(report.cells, "minilm-l6", 100)}["Gates help UniPELT (APL)"]
    assert row["paired"]["delta"] == pytest.approx(20.0)  # 90 - 70 on the whole test set, each seed
    assert row["paired"]["tasks"] == ["sst2"] and row["paired"]["seeds"] == 2
    # Δ* <= 0 only in resamples that draw neither of the 2 discordant examples: P = 0.8^10 = 0.107 of
    # 1,000, so p = 2 (low + 1) / 1001 is about 0.217; 3 binomial SDs (9.8 draws) give 0.158 to 0.276.
    # A one-sided p (about 0.108) or a p without the +1 correction's factor 2 falls outside.
    assert 0.158 < row["paired"]["p"] < 0.276
    grid = claims_grid(report, "minilm-l6", 100)
    assert "Per-example p" in grid.header


def test_a_gated_mix_is_compared_with_its_own_best_member(tmp_path):
    scores = {
        "unipelt_mam": [80.0, 82.0],
        "prefix": [70.0, 72.0],
        "scaled_parallel_adapter": [75.0, 77.0],
        "lora": [90.0, 92.0],  # the best single overall, but not a member of MAM
    }
    for method, values in scores.items():
        for seed, score in enumerate(values, start=1):
            write_run(tmp_path, method=method, seed=seed, score=score)
    found = {r["claim"]: r for r in claims.claims(build(tmp_path).cells, "minilm-l6", 100)}
    row = found["Gated MAM beats its best member"]
    assert row["text"] == "81.00 vs 76.00 (Scaled PA)" and row["delta"] == pytest.approx(5.0)


def test_claims_side_by_side_across_backbones(tmp_path):
    """Two backbones at one budget: each claim's Δ on both, and the paper's Δ, in one table."""
    from unipelt_cli.report.tables import claims_across_grid, sections

    mpnet = {"backbone": {"name": "mpnet-base"}}
    for method, by_task in SCORES.items():
        for task, scores in by_task.items():
            for seed, score in enumerate(scores, start=1):
                write_run(tmp_path, task=task, method=method, seed=seed, score=score)
                bumped = score + (5.0 if method == "lora" else 0.0)
                write_run(tmp_path, task=task, method=method, seed=seed, score=bumped, config=mpnet)
    report = build(tmp_path)
    grid = claims_across_grid(report, 100, ["minilm-l6", "mpnet-base"])
    backbones = ["minilm-l6: Δ (SE), verdict", "mpnet-base: Δ (SE), verdict"]
    assert grid.header == ["Claim", *backbones, "Paper Δ (bert-base-uncased)"]
    by_claim = {row[0].text: row for row in grid.rows}
    mini, mp = rows(report), {r["claim"]: r for r in claims.claims(report.cells, "mpnet-base", 100)}
    assert list(by_claim) == list(mini)  # every claim, in the claims table's order
    best = by_claim["APL beats the best single submodule"]
    assert best[1].value == pytest.approx(mini["APL beats the best single submodule"]["delta"])
    assert best[2].value == pytest.approx(mp["APL beats the best single submodule"]["delta"])
    assert best[1].value != best[2].value  # LoRA is 5 points better on MPNet: APL's margin shrinks there
    assert best[3].text == f"{claims._paper_delta(100, 'unipelt_apl', list(claims.SINGLES), ['sst2', 'rte']):+.2f}"
    assert best[2].text.endswith(mp["APL beats the best single submodule"]["verdict"])
    titles = [g.title for s in sections(report) for g in s.grids]
    assert "Claims side by side: minilm-l6, mpnet-base, K=100" in titles
    assert claims_across_grid(report, 100, ["minilm-l6"]) is None  # one backbone: its own table says it all
