"""`make mutate` is wired up (without running a mutation: that takes an hour, see docs/TESTING.md)."""

from __future__ import annotations

import tomllib
from pathlib import Path

from conftest import load_script

REPO = Path(__file__).resolve().parent.parent


def test_every_core_module_has_existing_focused_tests():
    mutate = load_script("mutate")
    core = {str(p.relative_to(REPO)) for d in ("pelt", "data") for p in (REPO / "unipelt_cli" / d).glob("*.py")}
    core = {p for p in core if not p.endswith("__init__.py")}
    core |= {f"unipelt_cli/{m}" for m in ("train.py", "metrics.py", "identity.py")}
    core |= {"unipelt_cli/report/aggregate.py", "unipelt_cli/report/claims.py"}
    assert set(mutate.MODULE_TESTS) == core
    for module, tests in mutate.MODULE_TESTS.items():
        assert (REPO / module).is_file()
        assert tests and all((REPO / t).is_file() for t in tests), module


def test_scratch_copy_configures_mutmut_for_the_chosen_module(tmp_path):
    mutate = load_script("mutate")
    work = tmp_path / "work"
    mutate.scratch_copy(REPO, work, ["unipelt_cli/metrics.py"], ["tests/test_metrics.py"])
    section = tomllib.loads((work / "pyproject.toml").read_text())["tool"]["mutmut"]
    assert section["only_mutate"] == ["unipelt_cli/metrics.py"]
    assert section["pytest_add_cli_args_test_selection"] == ["tests/test_metrics.py"]
    assert (work / "conf" / "config.yaml").is_file() and (work / "unipelt_cli" / "metrics.py").is_file()


def test_make_mutate_installs_the_tool_and_runs_the_script():
    makefile = (REPO / "Makefile").read_text()
    assert "scripts/mutate.py $(MODULES)" in makefile and "'.[mutate]'" in makefile
    extras = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    assert any(dep.startswith("mutmut") for dep in extras["mutate"])
    assert "mutate" not in (REPO / ".ci" / "run").read_text()  # too slow for CI
