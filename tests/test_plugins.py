"""A PELT submodule from an installed package (the `unipelt.pelt` entry point group): the example
plugin in tests/plugin_example is pip-installed into a temporary folder, listed with its origin,
and trains a tiny run; without the install nothing of it is loaded. In process (so that mutation testing
sees them): `load_plugins` on distributions written into a temporary folder, and `register`."""

from __future__ import annotations

import importlib
import json
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

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


# In process: `load_plugins` and `defaults_file` with entry points of a distribution written into a
# temporary folder (a dist-info beside its package, as pip installs one), so that mutation testing sees
# the code run. The subprocess tests above show the same through the CLI.

PART = """
from dataclasses import dataclass

from unipelt_cli.pelt.registry import Part, register


@dataclass
class Options:
    enabled: bool = False
    scale: float = 1.0

{parts}
"""


def part_source(*names: str) -> str:
    parts = "\n".join(f"@register\nclass P_{n}(Part):\n    name = {n!r}\n    Options = Options\n" for n in names)
    return PART.format(parts=parts)


def distribution(root: Path, name: str, version: str, entry_points: str, files: dict[str, str]) -> Path:
    """`name` `version` installed into `root`: its files, and a dist-info with `entry_points` (entry_points.txt)."""
    for rel, text in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    info = root / f"{name.replace('-', '_')}-{version}.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")
    (info / "entry_points.txt").write_text(entry_points)
    return root


@pytest.fixture
def registry_state(monkeypatch):
    """The registry's and load_plugins' tables, and sys.modules, as they were before the test."""
    from unipelt_cli.pelt import plugins, registry

    tables = [registry.SUBMODULES, registry.ORIGINS, plugins.DEFAULTS, plugins.FAILED]
    saved = [dict(t) for t in tables]
    sets = [plugins.LOADED, plugins.FOLDERS]
    kept, modules = [set(t) for t in sets], set(sys.modules)
    yield plugins
    for table, before in zip(tables, saved, strict=True):
        table.clear()
        table.update(before)
    for table, before in zip(sets, kept, strict=True):
        table.clear()
        table.update(before)
    for name in set(sys.modules) - modules:
        del sys.modules[name]


def test_entry_points_load_with_their_origin_and_defaults(registry_state, tmp_path, monkeypatch):
    plugins = registry_state
    from unipelt_cli.pelt.registry import ORIGINS, SUBMODULES

    site = distribution(tmp_path / "site", "fake-pelt", "0.3.1", (
        "[unipelt.pelt]\n"
        "fake_two = fake_pelt.two\n"  # one module may register several submodules
        "fake_one = fake_pelt.one:P_fake_one\n"  # module:attribute imports the module
    ), {
        "fake_pelt/__init__.py": "",
        "fake_pelt/two.py": part_source("fake_b", "fake_a"),
        "fake_pelt/one.py": part_source("fake_one"),
        "fake_pelt/fake_a.yaml": "enabled: false\nscale: 2.5\n",
    })  # fmt: skip
    monkeypatch.syspath_prepend(str(site))
    plugins.load_plugins()
    assert ORIGINS["fake_a"] == ORIGINS["fake_b"] == "plugin fake-pelt 0.3.1 (fake_pelt.two)"
    assert ORIGINS["fake_one"] == "plugin fake-pelt 0.3.1 (fake_pelt.one:P_fake_one)"
    assert ORIGINS["adapter"] == "unipelt"
    assert SUBMODULES["fake_one"] is sys.modules["fake_pelt.one"].P_fake_one
    assert plugins.DEFAULTS == {name: site / "fake_pelt" / f"{name}.yaml" for name in ("fake_a", "fake_b", "fake_one")}
    assert plugins.FAILED == {}
    assert plugins.plugin_dirs() == [str(site / "fake_pelt")]  # whose files key the cached declarations
    conf = Path("/no/such/conf")
    from unipelt_cli.declared import declared

    known = declared()
    assert known.live
    assert known.defaults_file("fake_a", conf) == site / "fake_pelt" / "fake_a.yaml"
    assert known.defaults_file("adapter", conf) == conf / "pelt" / "adapter.yaml"

    from unipelt_cli.config import pelt_schema

    schema = pelt_schema()
    assert schema["fake_a"].scale == 2.5  # the plugin's own YAML gives the defaults
    assert schema["fake_b"].scale == 1.0  # no YAML: the Options dataclass's


def test_each_entry_point_is_imported_once(registry_state, tmp_path, monkeypatch):
    plugins = registry_state
    site = distribution(tmp_path / "site", "fake-pelt", "1.0", (
        "[unipelt.pelt]\nfake_c = fake_pelt2.c\nalias = fake_pelt2.c\nfake_d = fake_pelt2.d\n"
    ), {
        "fake_pelt2/__init__.py": "",
        "fake_pelt2/c.py": part_source("fake_c"),
        "fake_pelt2/d.py": part_source("fake_d"),
    })  # fmt: skip
    monkeypatch.syspath_prepend(str(site))
    imported = []
    real = importlib.import_module
    monkeypatch.setattr(plugins, "importlib", SimpleNamespace(import_module=lambda n: imported.append(n) or real(n)))
    plugins.load_plugins()
    plugins.load_plugins()
    assert imported == ["fake_pelt2.c", "fake_pelt2.d"]  # the alias is skipped, not the entry points after it
    assert plugins.ORIGINS["fake_c"] == "plugin fake-pelt 1.0 (fake_pelt2.c)"
    assert plugins.ORIGINS["fake_d"] == "plugin fake-pelt 1.0 (fake_pelt2.d)"


def test_a_broken_plugin_is_skipped_with_a_one_line_warning(registry_state, tmp_path, monkeypatch, capsys):
    plugins = registry_state
    site = distribution(tmp_path / "site", "broken-pelt", "2.0", (
        "[unipelt.pelt]\nbroken = broken_pelt.bad\nsilent = broken_pelt.silent\nfine = broken_pelt.fine\n"
    ), {
        "broken_pelt/__init__.py": "",
        "broken_pelt/bad.py": "raise ImportError('  needs torch>=9\\nsecond line\\n')\n",
        "broken_pelt/silent.py": "raise RuntimeError()\n",
        "broken_pelt/fine.py": part_source("fake_fine"),
    })  # fmt: skip
    monkeypatch.syspath_prepend(str(site))
    plugins.load_plugins()
    assert plugins.FAILED == {
        "broken": "broken-pelt 2.0: ImportError: needs torch>=9",
        "silent": "broken-pelt 2.0: RuntimeError: ",
    }
    assert capsys.readouterr().err == (
        "warning: PELT plugin broken (broken-pelt 2.0) failed to load: broken-pelt 2.0: ImportError: needs torch>=9\n"
        "warning: PELT plugin silent (broken-pelt 2.0) failed to load: broken-pelt 2.0: RuntimeError: \n"
    )
    assert plugins.ORIGINS["fake_fine"] == "plugin broken-pelt 2.0 (broken_pelt.fine)"  # the rest still load
    assert "fake_fine" in plugins.SUBMODULES and "broken" not in plugins.SUBMODULES
    plugins.load_plugins()  # warned once, not at every call
    assert capsys.readouterr().err == ""


def test_an_entry_point_without_a_distribution(registry_state, tmp_path, monkeypatch, capsys):
    plugins = registry_state
    (tmp_path / "lone_pelt.py").write_text(part_source("fake_lone"))
    (tmp_path / "lone_bad.py").write_text("raise ValueError('bad value')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    found = [SimpleNamespace(name=n, value=v, dist=None) for n, v in (("lone", "lone_pelt"), ("bad", "lone_bad"))]
    monkeypatch.setattr(plugins, "metadata", SimpleNamespace(entry_points=lambda group: found))
    plugins.load_plugins()
    assert plugins.ORIGINS["fake_lone"] == "plugin ? (lone_pelt)"
    assert plugins.FAILED == {"bad": "?: ValueError: bad value"}
    assert capsys.readouterr().err == "warning: PELT plugin bad (?) failed to load: ?: ValueError: bad value\n"


def test_only_installed_entry_points_of_the_group_load(registry_state, tmp_path, monkeypatch):
    """A plugin in the working folder (a run folder, a config's folder) but not installed, or installed under
    another entry point group, is never imported."""
    plugins = registry_state
    before = set(plugins.SUBMODULES)
    here = distribution(tmp_path / "run", "here-pelt", "1.0", "[unipelt.pelt]\nfake_here = here_pelt\n", {
        "here_pelt.py": part_source("fake_here"),
    })  # fmt: skip
    monkeypatch.chdir(here)
    site = distribution(tmp_path / "site", "other-pelt", "1.0", (
        "[unipelt.other]\nfake_other = other_pelt\n[console_scripts]\nfake_other = other_pelt:main\n"
    ), {"other_pelt.py": part_source("fake_other")})  # fmt: skip
    monkeypatch.syspath_prepend(str(site))
    plugins.load_plugins()
    assert set(plugins.SUBMODULES) == before
    assert "here_pelt" not in sys.modules and "other_pelt" not in sys.modules
    assert plugins.FAILED == {}


def test_register_checks_the_name_and_records_the_origin(registry_state):
    from unipelt_cli.pelt.registry import ORIGINS, SUBMODULES, Part, register

    def part(name: str, module: str) -> type[Part]:
        return type(f"P_{name}", (Part,), {"name": name, "__module__": module})

    ours, theirs = part("fake_ours", "unipelt_cli.pelt.fake_ours"), part("fake_theirs", "their_pkg.pelt")
    assert register(ours) is ours and register(theirs) is theirs
    assert SUBMODULES["fake_ours"] is ours and SUBMODULES["fake_theirs"] is theirs
    assert ORIGINS["fake_ours"] == "unipelt"  # a module of unipelt_cli
    assert ORIGINS["fake_theirs"] == "their_pkg.pelt"  # elsewhere: its module, until load_plugins names the package
    ORIGINS["fake_later"] = "plugin later 1.0 (later)"
    register(part("fake_later", "later"))
    assert ORIGINS["fake_later"] == "plugin later 1.0 (later)"  # an origin already recorded is kept
    with pytest.raises(ValueError) as e:
        register(part("adapter", "their_pkg.pelt"))
    assert str(e.value) == "PELT submodule 'adapter' is registered twice"
    assert SUBMODULES["adapter"].__module__ == "unipelt_cli.pelt.adapter"
    for bad in ("gate", "gate_pooling", "no-dash", "2nd"):
        with pytest.raises(ValueError) as e:
            register(part(bad, "their_pkg.pelt"))
        assert str(e.value) == f"PELT submodule name {bad!r} must be an identifier other than ('gate', 'gate_pooling')"
        assert bad not in SUBMODULES and bad not in ORIGINS
