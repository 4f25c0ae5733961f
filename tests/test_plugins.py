"""A PELT submodule from an installed package (the `unipelt.pelt` entry point group): the example
plugin in tests/plugin_example is pip-installed into a temporary folder, listed with its origin,
and trains a tiny run; without the install nothing of it is loaded."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import tiny_overrides
from safetensors.torch import load_file

EXAMPLE = Path(__file__).resolve().parent / "plugin_example"


def unipelt(*args, site: Path | None = None, cwd: Path | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(site) if site else ""}
    return subprocess.run(
        [sys.executable, "-m", "unipelt_cli", *map(str, args)], env=env, cwd=cwd, capture_output=True, text=True
    )


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    target = tmp_path_factory.mktemp("site")
    build = tmp_path_factory.mktemp("build")
    done = subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation", "--no-index",
         "--target", str(target), str(EXAMPLE)],
        capture_output=True, text=True, cwd=build,
    )  # fmt: skip
    if done.returncode != 0:
        pytest.skip(f"pip could not build the example plugin here: {done.stderr.strip().splitlines()[-1:]}")
    return target


def test_listed_with_its_origin_only_when_installed(site):
    listed = unipelt("ls", "pelt", site=site)
    assert listed.returncode == 0, listed.stderr
    line = next(x for x in listed.stdout.splitlines() if x.strip().startswith("ffn_scale"))
    assert "[plugin unipelt-ffn-scale 0.1.0 (unipelt_ffn_scale.ffn_scale)]" in line
    assert "FFN output scaling" in line
    assert "adapter            [unipelt]" in listed.stdout
    bare = unipelt("ls", "pelt")
    assert bare.returncode == 0 and "ffn_scale" not in bare.stdout


def test_a_plugin_submodule_trains_end_to_end(site, tmp_path, tiny_backbone, tiny_glue):
    out = tmp_path / "out"
    overrides = tiny_overrides(
        tiny_backbone, tiny_glue, "method=bitfit", "method.name=ffn_scale",
        "pelt.bitfit.enabled=false", "pelt.ffn_scale.enabled=true", "pelt.ffn_scale.gate=true",
    )  # fmt: skip
    done = unipelt("train", "-q", "--outputs", out, *overrides, site=site)
    assert done.returncode == 0, done.stderr
    (run_dir,) = (out / "runs").iterdir()
    result = json.loads((run_dir / "result.json").read_text())
    assert set(result["pelt"]["submodules"]) == {"ffn_scale"}
    assert result["params"]["submodules"]["ffn_scale"] == {"params": 2 * 32, "gate_params": 2 * 33, "stored": 64}
    saved = load_file(str(run_dir / "weights.safetensors"))
    assert {k for k in saved if k.startswith("pelt.")} == {
        f"pelt.ffn_scale.layers.{i}.{n}" for i in range(2) for n in ("scale", "gate.linear.weight", "gate.linear.bias")
    }
    assert set(result["gates"]["test"]["0"]) == {"ffn_scale"}
    again = unipelt("eval", run_dir, "--json", site=site)
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout)["metrics"]["test"] == result["test"]
    without = unipelt("eval", run_dir, site=None)  # the plugin is not installed: its run cannot be rebuilt
    assert without.returncode == 2
    assert "enables PELT submodule ffn_scale, which is not installed" in without.stderr + without.stdout
