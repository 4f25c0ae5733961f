"""The cached PELT declarations (unipelt_cli/declared.py): equal to the live registry, keyed by the
files that can change them, and what lets `unipelt train --cfg` and sweep planning skip torch."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import typing

import pytest

from unipelt_cli import config, declared


@pytest.fixture
def cache(tmp_path, monkeypatch):
    """An empty cache folder and no entry loaded in this process (restored after the test)."""
    monkeypatch.setenv("UNIPELT_CACHE", str(tmp_path / "cache"))
    saved = dict(declared._loaded)
    declared._loaded.clear()
    yield tmp_path / "cache"
    declared._loaded.clear()
    declared._loaded.update(saved)


def _fields(cls) -> list:
    hints = typing.get_type_hints(cls)
    out = []
    for f in dataclasses.fields(cls):
        default = f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
        out.append((f.name, hints[f.name], default, dict(f.metadata)))
    return out


def test_cached_declarations_equal_the_live_registry(cache):
    live = declared._live()
    entry = declared._write_fresh()
    assert entry is not None and json.loads(declared.cache_file().read_text())["entries"][entry["key"]]
    rebuilt = declared._from_json(entry["declared"])
    assert not rebuilt.live and live.live
    assert set(rebuilt.submodules) == set(live.submodules) >= {"adapter", "prefix", "lora", "bitfit", "ia3"}
    for name, options in live.submodules.items():
        assert _fields(rebuilt.submodules[name]) == _fields(options), name
    assert {k: v is None for k, v in rebuilt.gates.items()} == {k: v is None for k, v in live.gates.items()}
    for kind, options in live.gates.items():
        if options is not None:
            assert _fields(rebuilt.gates[kind]) == _fields(options), kind
    assert rebuilt.gate_pooling == live.gate_pooling == ("masked", "all")
    lora = {f[0]: f for f in _fields(rebuilt.submodules["lora"])}
    assert lora["rank"][1:3] == (int, 8) and lora["targets"][1:3] == (list[str], ["query", "value"])
    assert lora["dora"][3] == {"neutral": False}  # identity's neutral value survives the round trip


def test_schema_and_neutral_values_are_the_same_from_the_cache(cache, monkeypatch):
    from omegaconf import OmegaConf

    live_schema, live_neutral = OmegaConf.to_yaml(config.pelt_schema()), config.neutral_values()
    declared._write_fresh()
    monkeypatch.setattr(declared, "live_registry_imported", lambda: False)
    assert not declared.declared().live
    assert OmegaConf.to_yaml(config.pelt_schema()) == live_schema
    assert config.neutral_values() == live_neutral == {"pelt.lora.dora": False}


def test_option_values_are_checked_for_real_unless_accepted_before(cache, monkeypatch):
    from unipelt_cli.errors import UserError
    from unipelt_cli.pelt import SUBMODULES

    declared._write_fresh()
    monkeypatch.setattr(declared, "live_registry_imported", lambda: False)
    good = {"enabled": True, "rank": 4}
    declared.check_options("lora", good)
    assert declared._token("lora", good) in declared._loaded["accepted"]
    with pytest.raises(UserError, match="lora.rank must be > 0"):
        declared.check_options("lora", {"enabled": True, "rank": 0})
    assert declared._token("lora", {"enabled": True, "rank": 0}) not in declared._loaded["accepted"]

    calls = []

    class Counting(SUBMODULES["lora"].Options):
        def __post_init__(self):
            calls.append(1)
            super().__post_init__()

    monkeypatch.setattr(SUBMODULES["lora"], "Options", Counting)
    declared.check_options("lora", good)  # remembered: not checked again
    declared.check_options("lora", {"enabled": True, "rank": 5})  # new values: checked
    assert calls == [1]
    key = declared._loaded["key"]
    stored = json.loads(declared.cache_file().read_text())["entries"][key]["accepted"]
    assert declared._token("lora", {"enabled": True, "rank": 5}) not in stored  # written at exit
    declared._save()
    stored = json.loads(declared.cache_file().read_text())["entries"][key]
    assert declared._token("lora", {"enabled": True, "rank": 5}) in stored["accepted"]
    assert "save_at_exit" not in stored


def test_key_changes_with_plugin_files_and_installs(tmp_path, monkeypatch):
    plugin, site = tmp_path / "plugin", tmp_path / "site"
    plugin.mkdir()
    site.mkdir()
    (plugin / "part.py").write_text("x = 1\n")
    monkeypatch.setattr(sys, "path", [sys.path[0], str(site), *sys.path[1:]])
    key = declared._key([str(plugin)])
    assert declared._key([str(plugin)]) == key
    (plugin / "part.py").write_text("x = 22\n")  # a plugin's source edited
    edited = declared._key([str(plugin)])
    assert edited != key
    (site / "new_pkg-1.0.dist-info").mkdir()  # a package installed
    os.utime(site, ns=(1, 1))
    assert declared._key([str(plugin)]) != edited
    assert declared._key([]) != declared._key([str(plugin)])


def test_a_type_the_cache_cannot_hold_falls_back_to_the_live_registry(cache, monkeypatch):
    @dataclasses.dataclass
    class Odd:
        enabled: bool = False
        shape: tuple[int, int] = (1, 2)

    live = declared._live()
    live.submodules["odd"] = Odd
    monkeypatch.setattr(declared, "_live", lambda: live)
    assert declared._write_fresh() is None
    assert not declared.cache_file().exists()


def test_an_unwritable_cache_is_only_slower(tmp_path, monkeypatch):
    blocker = tmp_path / "file"
    blocker.write_text("")
    monkeypatch.setenv("UNIPELT_CACHE", str(blocker / "cache"))  # under a file: cannot be created
    saved = dict(declared._loaded)
    declared._loaded.clear()
    try:
        assert declared._write_fresh() is not None
        declared._remember("lora:{}")
    finally:
        declared._loaded.clear()
        declared._loaded.update(saved)


COMPOSE = """
import sys
from unipelt_cli import config
for method in ("unipelt_apl", "unipelt_mam", "dora", "ia3", "finetune"):
    cfg = config.compose(["task=rte", f"method={method}"])
    print(method, config.config_hash(cfg), config.to_yaml(cfg).count("\\n"))
print("torch imported:", "torch" in sys.modules)
"""


def test_compose_skips_torch_once_the_cache_is_written(tmp_path):
    """A fresh process composes and hashes configs without importing torch, with the same results."""
    env = {**os.environ, "UNIPELT_CACHE": str(tmp_path / "cache")}

    def run() -> list[str]:
        out = subprocess.run([sys.executable, "-c", COMPOSE], env=env, capture_output=True, text=True, check=True)
        return out.stdout.splitlines()

    first, second, third = run(), run(), run()
    assert first[-1] == "torch imported: True"  # nothing cached yet: the registry is imported
    assert second[-1] == third[-1] == "torch imported: False"
    assert first[:-1] == second[:-1] == third[:-1]
    with pytest.raises(subprocess.CalledProcessError) as err:  # a new bad value still fails
        subprocess.run(
            [sys.executable, "-m", "unipelt_cli", "train", "method=lora", "pelt.lora.rank=0", "--cfg"],
            env=env, capture_output=True, text=True, check=True,
        )  # fmt: skip
    assert "lora.rank must be > 0" in err.value.stderr
