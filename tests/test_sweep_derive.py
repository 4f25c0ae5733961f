"""Planning by derivation (unipelt_cli/sweep/derive.py) gives what a Hydra compose per job gives.

Composing all 840 paper_lowres jobs in full takes minutes, so the full compose is checked on every
distinct choice of the config groups (168 for paper_lowres: task x budget x method), each with a
seed that cycles through the grid's seeds; a seed changes only seed and data_seed, and every seed
value appears. Every job's derived config is still checked against the schema's values.
"""

from __future__ import annotations

import itertools
import json

import pytest
from typer.testing import CliRunner

from unipelt_cli import config, runs
from unipelt_cli.cli import app
from unipelt_cli.sweep import derive, grid


def _grid(*overrides):
    axes = grid.axes(grid.sweep_overrides(list(overrides))[1])
    return axes, [list(c) for c in itertools.product(*axes)]


def _sample(combos: list[list[str]]) -> list[int]:
    """One job for every distinct choice of the non-seed keys, the seed cycling; plus the first and last job."""
    by_rest: dict[tuple, list[int]] = {}
    for n, combo in enumerate(combos):
        by_rest.setdefault(tuple(ov for ov in combo if not ov.startswith("seed=")), []).append(n)
    picked = [jobs[k % len(jobs)] for k, jobs in enumerate(by_rest.values())]
    return sorted({0, len(combos) - 1, *picked})


@pytest.mark.parametrize("preset,distinct", [("paper_lowres", 168), ("unified_view", 35)])
def test_derived_configs_and_identities_equal_the_full_compose(preset, distinct):
    axes, combos = _grid(f"+sweep={preset}")
    derived = derive.configs(axes, combos)
    assert derived is not None and len(derived) == len(combos)  # the preset takes the fast path
    planned = derive.plan(axes, combos)
    picks = _sample(combos)
    assert len(picks) >= distinct
    neutral = config.neutral_values()
    with config.composer() as compose:
        for n in picks:
            cfg = compose(combos[n])
            full = config.to_dict(cfg)
            assert json.dumps(derived[n], sort_keys=True) == json.dumps(full, sort_keys=True), combos[n]
            digest = config.config_hash(cfg)
            assert planned[n] == (runs.run_name(cfg, digest), digest)
    # every job: its identity is the one of its own derived config, and no two jobs collide
    from unipelt_cli import identity

    assert [p[1] for p in planned] == [identity.digest(d, neutral) for d in derived]
    assert len({p[1] for p in planned}) == len(combos)


def test_a_wrong_derivation_is_caught_and_every_job_is_composed(monkeypatch, tmp_path):
    overrides = ["task=sst2,rte", "method=lora,adapter", "seed=1,2,3"]
    right = grid.plan(overrides, None)
    derive_one = derive._derive

    def wrong(flat, deltas):
        data = derive_one(flat, deltas)
        data["train"]["lr"] = 0.5
        return data

    monkeypatch.setattr(derive, "_derive", wrong)
    axes, combos = _grid(*overrides)
    assert derive.configs(axes, combos) is None  # the last job, composed in full, disagrees
    assert grid.plan(overrides, tmp_path) == right


def test_axes_that_change_the_same_key_are_not_derived():
    a = {("train", "lr"): 0.1}
    b = {("train", "lr"): 0.2}
    below = {("task", "extra_test_files", "mismatched"): "x", ("task", "extra_test_files"): derive.REMOVED}
    assert derive._disjoint({(0, "x"): a, (1, "y"): {("seed",): 2}})
    assert not derive._disjoint({(0, "x"): a, (1, "y"): b})
    assert not derive._disjoint({(0, "x"): below, (1, "y"): {("task", "extra_test_files"): {}}})
    assert derive._disjoint({(0, "x"): a, (0, "z"): b})  # values of one axis never meet


@pytest.mark.parametrize(
    "overrides",
    [
        ["task=sst2,sst3", "seed=range(1,10)"],  # a value that is wrong on its own
        ["seed=range(1,12)", "train.lr=1e-3,abc"],  # a wrong type, found by Hydra
        ["method=lora,finetune", "pelt.adapter.enabled=false,true", "seed=range(1,6)"],  # wrong only together
    ],
)
def test_errors_are_the_full_composes_for_the_same_job(overrides, tmp_path, monkeypatch):
    def invoke():
        return CliRunner().invoke(app, ["sweep", "--dry-run", "--outputs", str(tmp_path), *overrides])

    fast = invoke()
    monkeypatch.setattr(derive, "pays", lambda axes, missing: False)
    full = invoke()
    assert fast.exit_code == full.exit_code == 2
    assert fast.output == full.output and fast.output.startswith("error: job ") and fast.output.count("\n") == 1


def test_a_grid_that_varies_two_linked_choices_is_composed_per_job(conf_with_lr):
    """conf/lr/<backbone>_<method>.yaml links two groups: a rate for MPNet LoRA only would be missed by
    deltas taken at the first backbone (adapter) and the first method (MiniLM), and the grid's last job
    (MPNet, prefix) would not show it. Such a grid is composed job by job."""
    conf_with_lr({"mpnet-base_lora": 3e-4})
    overrides = ["backbone=minilm-l6,mpnet-base", "method=adapter,lora,prefix", "seed=1,2,3,4"]
    axes, combos = _grid(*overrides)
    assert not derive.pays(axes, combos)
    jobs = grid.plan(overrides, None)
    with config.composer() as compose:
        for job in jobs:
            cfg = compose(list(job.overrides))
            assert job.config_hash == config.config_hash(cfg), job.overrides
            if {"backbone=mpnet-base", "method=lora"} <= set(job.overrides):
                assert cfg.train.lr == 3e-4


def test_a_grid_that_varies_one_linked_choice_is_still_derived(conf_with_lr):
    conf_with_lr({"mpnet-base_lora": 3e-4, "mpnet-base_adapter": 2e-4})
    axes, combos = _grid("backbone=mpnet-base", "task=sst2,rte", "method=adapter,lora,prefix", "seed=1,2,3")
    assert derive.pays(axes, combos)
    derived = derive.configs(axes, combos)
    assert derived is not None
    with config.composer() as compose:
        for combo, data in zip(combos, derived, strict=True):
            assert json.dumps(data, sort_keys=True) == json.dumps(config.to_dict(compose(combo)), sort_keys=True)
    assert {d["method"]["name"]: d["train"]["lr"] for d in derived} == {"adapter": 2e-4, "lora": 3e-4, "prefix": 1e-3}
