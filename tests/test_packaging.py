"""The config tree ships inside the wheel: an installed (non-editable) package composes configs."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def test_wheel_carries_the_config_tree(tmp_path):
    wheel_dir, target = tmp_path / "wheel", tmp_path / "site"
    pip = [sys.executable, "-m", "pip", "-q"]
    subprocess.run([*pip, "wheel", "--no-deps", "--no-build-isolation", "-w", wheel_dir, REPO], check=True)
    (wheel,) = wheel_dir.glob("unipelt_cli-*.whl")
    subprocess.run([*pip, "install", "--no-deps", "--target", target, wheel], check=True)
    code = (
        "import unipelt_cli, unipelt_cli.config as c; "
        f"assert unipelt_cli.__file__.startswith({str(target)!r}), unipelt_cli.__file__; "
        "assert c.conf_dir().parent.name == 'unipelt_cli', c.conf_dir(); "
        "cfg = c.compose(['method=unipelt_apl', 'task=rte', 'budget=k500']); "
        "assert (cfg.method.name, cfg.task.name, cfg.budget.k, cfg.pelt.lora.rank) == ('unipelt_apl', 'rte', 500, 8); "
        "print(sorted(c.groups()))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, env={"PYTHONPATH": str(target)}, capture_output=True, text=True
    )
    assert out.returncode == 0, out.stderr
    assert "'method'" in out.stdout and "'task'" in out.stdout


def test_every_package_is_listed_for_the_wheel():
    import tomllib

    listed = set(tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    found = {".".join(p.parent.relative_to(REPO).parts) for p in (REPO / "unipelt_cli").rglob("__init__.py")} | {
        "unipelt_cli.conf"
    }
    assert listed == found
