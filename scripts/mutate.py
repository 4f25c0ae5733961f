"""Mutation score of the core modules: `make mutate` (all of them) or `make mutate MODULES="a.py b.py"`.

Runs mutmut 3 (PyPI) in a scratch copy of the checkout, so neither `mutants/` nor a mutmut section
ever lands in the repository, and writes outputs/mutate/report.md (score per module, every
surviving mutant with its diff) plus outputs/mutate/score.json.

Why mutmut: it loads the test session once and forks a child per mutant, running only the tests
that reach the mutated function. Our tests import torch and transformers (seconds per start), so
a tool that starts a fresh test process per mutant (cosmic-ray, mutatest) spends most of its time
importing. mutmut mutates inside functions and methods only: module-level constants, class bodies
and decorated functions are not mutated (its documented limits; see docs/TESTING.md).

Each module is tested with its focused tests (MODULE_TESTS), not the whole suite: a mutant killed
only by a test elsewhere counts as a survivor here, so the score is a lower bound.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent

# module -> the tests that pin its meaning (paths relative to the repository root)
PELT = "tests/pelt/test_pelt_"
PELT_TESTS = [f"{PELT}gate.py", f"{PELT}math.py", f"{PELT}reference.py"]
MODULE_TESTS = {
    "unipelt_cli/pelt/gate.py": PELT_TESTS,
    "unipelt_cli/pelt/adapter.py": [*PELT_TESTS, f"{PELT}options.py"],
    "unipelt_cli/pelt/lora.py": [*PELT_TESTS, f"{PELT}options.py", f"{PELT}unified.py"],
    # prefix: also its counts (the stored form), save/load and fix (saved_state), MPNet (its routed forward and
    # the eager fallback) and the other families (attach on each, and its refusal of other implementations)
    "unipelt_cli/pelt/prefix.py": [
        *PELT_TESTS,
        f"{PELT}options.py",
        f"{PELT}counts.py",
        f"{PELT}training.py",
        f"{PELT}mpnet.py",
        f"{PELT}arch.py",
    ],
    "unipelt_cli/pelt/parallel_adapter.py": [*PELT_TESTS, f"{PELT}options.py", f"{PELT}unified.py"],
    "unipelt_cli/pelt/ia3.py": [*PELT_TESTS, f"{PELT}options.py", f"{PELT}unified.py"],
    "unipelt_cli/pelt/bitfit.py": [f"{PELT}counts.py", f"{PELT}training.py"],
    "unipelt_cli/pelt/apply.py": [f"{PELT}training.py", f"{PELT}counts.py", f"{PELT}options.py"],
    "unipelt_cli/pelt/arch.py": [f"{PELT}arch.py", f"{PELT}mpnet.py"],
    "unipelt_cli/pelt/registry.py": [f"{PELT}options.py", f"{PELT}counts.py", "tests/test_plugins.py"],
    "unipelt_cli/pelt/mpnet.py": [f"{PELT}mpnet.py"],
    "unipelt_cli/pelt/plugins.py": ["tests/test_plugins.py"],
    "unipelt_cli/metrics.py": ["tests/test_metrics.py", "tests/test_task_metrics.py"],
    "unipelt_cli/identity.py": ["tests/test_identity.py", "tests/test_config.py"],
    "unipelt_cli/data/tasks.py": ["tests/test_task_metrics.py", "tests/test_data_glue.py", "tests/test_bad_inputs.py"],
    "unipelt_cli/data/glue.py": ["tests/test_data_glue.py", "tests/test_kshot.py"],
    "unipelt_cli/data/kshot.py": ["tests/test_kshot.py"],
    "unipelt_cli/data/encode.py": ["tests/test_encode.py"],
    "unipelt_cli/train.py": ["tests/test_train_loop.py", "tests/test_resume.py"],
    "unipelt_cli/report/aggregate.py": ["tests/test_report.py", "tests/test_report_outputs.py"],
    "unipelt_cli/report/claims.py": ["tests/test_report_claims.py"],
}
CORE = list(MODULE_TESTS)


def scratch_copy(root: Path, work: Path, modules: list[str], tests: list[str]) -> None:
    """The checkout's code, config and tests in `work`, with a [tool.mutmut] section for `modules`."""
    if work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for name in ("unipelt_cli", "conf", "tests"):
        shutil.copytree(root / name, work / name, ignore=ignore)
    quoted = lambda items: "[" + ", ".join(json.dumps(i) for i in items) + "]"  # noqa: E731
    section = f"""
[tool.mutmut]
source_paths = ["unipelt_cli"]
only_mutate = {quoted(modules)}
also_copy = ["conf"]
pytest_add_cli_args_test_selection = {quoted(tests)}
pytest_add_cli_args = ["-q", "-x", "-p", "no:cacheprovider", "-m", "not slow"]
"""
    (work / "pyproject.toml").write_text((root / "pyproject.toml").read_text() + section)


def results(work: Path, python: str, env: dict) -> dict[str, str]:
    out = subprocess.run(
        [python, "-m", "mutmut", "results", "--all", "true"], cwd=work, env=env, capture_output=True, text=True
    )
    found = {}
    for line in out.stdout.splitlines():
        m = re.match(r"\s+(\S+): (\S.*)$", line)
        if m:
            found[m.group(1)] = m.group(2).strip()
    return found


def run_module(module: str, root: Path, out: Path, max_children: int) -> tuple[dict, list[str]]:
    """Mutate one module in its own scratch copy, with its focused tests: (counts, report lines of survivors)."""
    tests = [t for t in MODULE_TESTS[module] if (root / t).exists()]
    work = out / "work" / Path(module).stem
    scratch_copy(root, work, [module], tests)
    # One thread per child: forked children must not inherit an OpenMP pool (and tiny models run fastest so).
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "PYTHONPATH": ""}
    start = time.time()
    with open(work / "mutmut.log", "w") as log:
        command = [sys.executable, "-m", "mutmut", "run", "--max-children", str(max_children)]
        code = subprocess.run(command, cwd=work, env=env, stdout=log, stderr=subprocess.STDOUT).returncode
    seconds = time.time() - start
    found = results(work, sys.executable, env)
    counts = {s: sum(1 for v in found.values() if v == s) for s in ("killed", "survived", "no tests")}
    # a timeout or a segfault ends the test run with the mutant in place: caught
    caught = counts["killed"] + sum(1 for v in found.values() if v in ("timeout", "segfault"))
    score = {
        "mutants": len(found),
        "caught": caught,
        **counts,
        "score": round(100 * caught / len(found), 1) if found else None,
        "seconds": round(seconds),
        "tests": tests,
        "exit_code": code,
    }
    survivors = {name: status for name, status in sorted(found.items()) if status in ("survived", "no tests")}
    diffs = json.loads(subprocess.run([sys.executable, "-c", DIFFS, *survivors], cwd=work, env=env,
                                      capture_output=True, text=True).stdout or "{}")  # fmt: skip
    lines = []
    for name, status in survivors.items():
        lines += [f"### {name} ({status})", "", "```diff", diffs.get(name, "?").strip(), "```", ""]
    return score, lines


# `mutmut show` for many mutants in one process (one start of mutmut, not one per survivor)
DIFFS = """
import json, sys
from mutmut.__main__ import find_mutant, get_diff_for_mutant
print(json.dumps({n: get_diff_for_mutant(n, path=find_mutant(n).path) for n in sys.argv[1:]}))
"""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("modules", nargs="*", help="module paths (default: every core module)")
    parser.add_argument("--out", default=str(REPO / "outputs" / "mutate"))
    parser.add_argument("--repo", default=str(REPO), help="the checkout to mutate (default: this one)")
    parser.add_argument("--max-children", type=int, default=max(1, (os.cpu_count() or 2) - 1))
    args = parser.parse_args()
    modules = args.modules or CORE
    unknown = [m for m in modules if m not in MODULE_TESTS]
    if unknown:
        print(f"no focused tests listed for {unknown}: add them to MODULE_TESTS in {__file__}", file=sys.stderr)
        return 2
    out, root = Path(args.out), Path(args.repo)
    out.mkdir(parents=True, exist_ok=True)
    scores, survivors = {}, []
    for module in modules:
        print(f"mutating {module} ...", flush=True)
        scores[module], lines = run_module(module, root, out, args.max_children)
        survivors += lines
        s = scores[module]
        print(f"  {s['caught']}/{s['mutants']} caught ({s['score']}%) in {s['seconds']} s", flush=True)
        write_report(out, root, scores, survivors)  # after each module: a long run can be read as it goes
    print(f"report: {out / 'report.md'}")
    return 0 if all(s["exit_code"] == 0 for s in scores.values()) else 1


def write_report(out: Path, root: Path, scores: dict, survivors: list[str]) -> None:
    table = [
        "# Mutation report",
        "",
        f"mutmut 3 over {root}; each module with its focused tests (scripts/mutate.py MODULE_TESTS).",
        "",
        "| module | mutants | killed | survived | no tests | score | minutes |",
        "|---|---|---|---|---|---|---|",
    ]
    for module, s in scores.items():
        shown = "-" if s["score"] is None else f"{s['score']:.1f}%"
        table.append(
            f"| {module} | {s['mutants']} | {s['killed']} | {s['survived']} | {s['no tests']} | {shown} "
            f"| {s['seconds'] / 60:.1f} |"
        )
    total = sum(s["mutants"] for s in scores.values())
    caught = sum(s["caught"] for s in scores.values())
    table += ["", f"Overall: {caught}/{total} = {100 * caught / max(total, 1):.1f}%", "", "## Survivors", ""]
    (out / "report.md").write_text("\n".join(table + survivors) + "\n")
    (out / "score.json").write_text(json.dumps(scores, indent=2) + "\n")


if __name__ == "__main__":
    sys.exit(main())
