"""Run identity (unipelt_cli/identity.py): what changes a run changes it, nothing else does, the
framework can grow without re-keying finished runs, and runs of identity version 1 are still found."""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import shutil
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from unipelt_cli import config, identity, runs
from unipelt_cli.cli import app
from unipelt_cli.pelt import SUBMODULES
from unipelt_cli.pelt.registry import Part

REPO = Path(__file__).resolve().parent.parent
COMMITTED = REPO / "results" / "paper_lowres" / "runs"
METHODS = config.groups()["method"]


def all_identities() -> dict[str, str]:
    """Every method's identity, composed now (with whatever the test registered)."""
    with config.composer() as compose:
        return {m: config.config_hash(compose([f"method={m}"])) for m in METHODS}


@functools.cache
def _shipped_configs() -> dict[str, str]:
    """Every method's resolved config with the shipped registry, composed once per session (as JSON,
    so no test can change the cached copy). Only the configs are cached: identities are computed
    from them each time, so the identity code a test exercises is always the code under test."""
    with config.composer() as compose:
        return {m: json.dumps(config.to_dict(compose([f"method={m}"]))) for m in METHODS}


def shipped_config(method: str) -> dict:
    return json.loads(_shipped_configs()[method])


def shipped_identities() -> dict[str, str]:
    """all_identities() before any test registered anything: from the cached configs."""
    neutral = config.neutral_values()
    return {m: identity.digest(shipped_config(m), neutral) for m in METHODS}


def leaves(tree: dict, prefix: str = ""):
    for key, value in tree.items():
        if isinstance(value, dict) and value:
            yield from leaves(value, f"{prefix}{key}.")
        else:
            yield f"{prefix}{key}", value


def changed(value):
    if isinstance(value, bool):
        return not value
    if isinstance(value, int | float):
        return value + 1
    if isinstance(value, list):
        return [*value, "x"]
    return f"{value}-x"


def set_path(tree: dict, dotted: str, value) -> dict:
    tree = json.loads(json.dumps(tree))
    *parents, leaf = dotted.split(".")
    node = tree
    for part in parents:
        node = node[part]
    node[leaf] = value
    return tree


@pytest.mark.parametrize("method", METHODS)
def test_every_key_that_changes_a_run_changes_its_identity(method):
    """Each leaf of the resolved config, changed alone, for every method: bookkeeping and disabled
    submodules' options leave the identity alone, every other key moves it (seed alone, not only
    seed with data_seed), and every bookkeeping key leaves it alone."""
    data = shipped_config(method)
    base = identity.digest(data)
    enabled = {n for n, o in data["pelt"].items() if isinstance(o, dict) and o.get("enabled")}
    moved, kept = [], []
    for key, value in leaves(data):
        (moved if identity.digest(set_path(data, key, changed(value))) != base else kept).append(key)
    for key in kept:
        parts = key.split(".")
        bookkeeping = any(key == b or key.startswith(f"{b}.") for b in identity.BOOKKEEPING)
        disabled = parts[0] == "pelt" and parts[1] in SUBMODULES and parts[1] not in enabled
        unused_gate_kind = parts[:2] == ["pelt", "gate"]
        assert bookkeeping or disabled or unused_gate_kind, f"{key} does not change the identity"
    assert {"seed", "data_seed", "train.lr", "task.name", "backbone.name_or_path"} <= set(moved)
    bookkeeping = [k for k, _ in leaves(data) if any(k == b or k.startswith(f"{b}.") for b in identity.BOOKKEEPING)]
    assert {k.split(".")[0] for k in bookkeeping} == {"runtime", "data", "logger"}  # each bookkeeping group is there
    assert not set(bookkeeping) & set(moved), "a bookkeeping key changes the identity"


def test_disabled_submodule_options_do_not_count():
    with config.composer() as compose:
        base = config.config_hash(compose(["method=lora"]))
        assert config.config_hash(compose(["method=lora", "pelt.prefix.length=3", "pelt.adapter.gate=true"])) == base
        assert config.config_hash(compose(["method=lora", "pelt.lora.rank=4"])) != base
        assert config.config_hash(compose(["method=lora", "pelt.gate.scalar.init=1.0"])) == base  # kind unused
        used = ["method=lora", "pelt.lora.gate=true", "pelt.lora.gate_type=scalar"]
        assert config.config_hash(compose([*used, "pelt.gate.scalar.init=1.0"])) != config.config_hash(compose(used))


@dataclasses.dataclass
class ThrowawayOptions:
    enabled: bool = False
    gate: bool = True
    width: int = 7


class Throwaway(Part):
    name = "throwaway"
    Options = ThrowawayOptions


def test_registering_a_submodule_changes_no_identity(monkeypatch):
    before = shipped_identities()
    monkeypatch.setitem(SUBMODULES, "throwaway", Throwaway)
    cfg = config.compose(["method=lora"])
    assert "throwaway" in cfg.pelt  # it is really part of the config now
    assert all_identities() == before


def test_a_new_option_at_its_neutral_value_changes_no_identity(monkeypatch):
    before = shipped_identities()
    lora = SUBMODULES["lora"]

    @dataclasses.dataclass
    class Grown(lora.Options):
        dropout: float = dataclasses.field(default=0.0, metadata={"neutral": 0.0})

    monkeypatch.setattr(lora, "Options", Grown)
    assert config.to_dict(config.compose(["method=lora"]))["pelt"]["lora"]["dropout"] == 0.0
    assert all_identities() == before
    assert config.config_hash(config.compose(["method=lora", "pelt.lora.dropout=0.1"])) != before["lora"]


def test_options_added_after_v1_declare_a_neutral_value():
    """A key absent from every v1 config must say at which value it does nothing; otherwise adding it
    would re-key every finished run that uses its submodule."""
    if not COMMITTED.is_dir():
        pytest.skip("committed results not present")
    v1_keys = set()
    for folder in sorted(COMMITTED.iterdir())[::40]:
        v1_keys |= {k for k, _ in leaves(yaml.safe_load((folder / "config.yaml").read_text()))}
    now = {k for k, _ in leaves(config.to_dict(config.compose([])))}
    neutral = config.neutral_values()
    for key in sorted(now - v1_keys):
        parts = key.split(".")
        if parts[0] in identity.BOOKKEEPING:
            continue  # never part of an identity (e.g. logger)
        new_submodule = parts[0] == "pelt" and parts[1] not in {
            k.split(".")[1] for k in v1_keys if k.startswith("pelt.")
        }
        assert key in neutral or new_submodule or parts[:2] == ["pelt", "gate"], f"{key} needs a neutral value"
    assert not set(neutral) & v1_keys  # a v1 key with a neutral value would re-key v1 runs


def v1_hash(stored: dict) -> str:
    """Identity version 1, as it was: every key but runtime.* and data.dir, disabled submodules too."""
    data = {k: v for k, v in stored.items() if k != "runtime"}
    data["data"] = {k: v for k, v in data["data"].items() if k != "dir"}
    return hashlib.sha256(json.dumps(data, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def committed(pattern: str) -> Path:
    found = sorted(COMMITTED.glob(pattern)) if COMMITTED.is_dir() else []
    if not found:
        pytest.skip("committed results not present")
    return found[0]


def test_v1_runs_keep_their_identity_from_their_stored_config():
    folder = committed("rte-unipelt_apl-k500-s2-d2-*")
    stored = yaml.safe_load((folder / "config.yaml").read_text())
    result = json.loads((folder / "result.json").read_text())
    v1 = v1_hash(stored)
    assert result["config_hash"] == v1 and folder.name.endswith(v1[:8])  # written under v1, left as it was
    now = config.config_hash(config.compose(["task=rte", "method=unipelt_apl", "budget=k500", "seed=2"]))
    assert runs.folder_identity(folder) == identity.digest(stored) == now != v1


def test_train_finds_a_v1_run_and_a_dry_run_writes_nothing(tmp_path):
    folder = committed("sst2-lora-k100-s3-d3-*")
    outputs = tmp_path / "out"
    shutil.copytree(folder, outputs / "runs" / folder.name)
    before = {p: p.read_bytes() for p in outputs.rglob("*") if p.is_file()}
    result = CliRunner().invoke(app, ["train", "task=sst2", "method=lora", "seed=3", "--outputs", str(outputs)])
    assert result.exit_code == 0, result.output
    assert "already finished" in result.output and folder.name in result.output
    dry = CliRunner().invoke(
        app, ["sweep", "task=sst2", "method=lora", "seed=3,4", "--dry-run", "--outputs", str(outputs)]
    )
    assert dry.exit_code == 0, dry.output
    assert f"done     {folder.name}" in dry.output and "1 done" in dry.output and "1 pending" in dry.output
    assert {p: p.read_bytes() for p in outputs.rglob("*") if p.is_file()} == before


def test_a_v2_rerun_and_its_v1_run_share_one_identity(tmp_path):
    from unipelt_cli.report.load import read_run

    folder = committed("mrpc-adapter-k100-s1-d1-*")
    old = shutil.copytree(folder, tmp_path / folder.name)
    stored = yaml.safe_load((old / "config.yaml").read_text())
    digest = identity.digest(stored)
    new = shutil.copytree(folder, tmp_path / f"mrpc-adapter-k100-s1-d1-{digest[:8]}")
    result = json.loads((new / "result.json").read_text()) | {"config_hash": digest, "identity_version": 2}
    (new / "result.json").write_text(json.dumps(result))
    warnings: list[str] = []
    assert read_run(old, warnings).identity == read_run(new, warnings).identity == digest
    assert runs.index(_as_outputs(tmp_path)) == {digest: new.name}  # the one with the v2 record wins a tie


def _as_outputs(folder: Path) -> Path:
    """An outputs folder whose runs/ is `folder` (a symlink), for runs.index."""
    root = folder.parent / f"{folder.name}-outputs"
    root.mkdir()
    (root / "runs").symlink_to(folder)
    return root


def test_the_hash_of_a_canonical_config_is_pinned():
    """The identity is sha256 of the canonical config as compact JSON with sorted keys: a change of
    format would re-key every finished run, so the exact bytes are pinned (and key order is free)."""
    blob = '{"a":1,"b":{"c":[1,2],"d":"x"}}'
    expected = hashlib.sha256(blob.encode()).hexdigest()
    assert identity.digest({"b": {"d": "x", "c": [1, 2]}, "a": 1}) == expected  # no bookkeeping key: none to drop
    assert identity.digest({"a": 1, "b": {"c": [1, 2], "d": "x"}, "runtime": {"threads": 2}}) == expected


def test_a_gate_kind_counts_only_for_an_enabled_gated_submodule():
    pelt = {
        "lora": {"enabled": False, "gate": True, "gate_type": "scalar"},  # gated but off
        "adapter": {"enabled": True, "gate": False, "gate_type": "scalar"},  # on but ungated
        "gate": {"scalar": {"init": 1.0}},
    }
    assert identity.canonical({"pelt": pelt})["pelt"] == {"adapter": pelt["adapter"]}


def test_an_option_whose_neutral_value_is_null_is_dropped_at_null():
    config = {"pelt": {"lora": {"enabled": True, "init": None}}}
    assert identity.canonical(config, {"pelt.lora.init": None}) == {"pelt": {"lora": {"enabled": True}}}
    assert identity.canonical(config, {"pelt.lora.absent": None}) == config  # absent: nothing to drop


def test_a_run_folders_identity_from_its_files():
    config = {"seed": 1, "logger": ["csv"]}
    v2 = {"identity_version": identity.VERSION, "config_hash": "abc"}
    assert identity.of_run_files(v2, None, config) == "abc"  # what a v2 run recorded
    assert identity.of_run_files(None, v2, config) == "abc"  # a run still going: its status.json
    assert identity.of_run_files({"config_hash": "v1hash"}, None, config) == identity.digest(config)  # v1
    assert identity.of_run_files({**v2, "config_hash": ""}, None, config) == identity.digest(config)
    assert identity.of_run_files(None, None, None) is None
