"""Every shipped YAML composes; overrides are type-checked; the run identity ignores bookkeeping."""

from __future__ import annotations

import pytest

from unipelt_cli import config
from unipelt_cli.errors import UserError

GROUPS = config.groups()


def test_groups_cover_the_paper():
    assert set(GROUPS["task"]) == {"cola", "sst2", "mrpc", "stsb", "qqp", "mnli", "qnli", "rte"}
    assert {"k100", "k500", "k1000", "full"} <= set(GROUPS["budget"])
    assert "finetune" in GROUPS["method"]
    assert "minilm-l6" in GROUPS["backbone"]


@pytest.mark.parametrize(
    "group,option", [(g, o) for g, options in GROUPS.items() for o in options], ids=lambda x: str(x)
)
def test_every_yaml_composes(group, option):
    cfg = config.compose([f"{group}={option}"])
    node = cfg[group] if group in cfg else None
    if node is not None and "name" in node:
        assert node.name == option


def test_defaults():
    cfg = config.compose([])
    names = (cfg.task.name, cfg.budget.k, cfg.method.name, cfg.backbone.name)
    assert names == ("sst2", 100, "unipelt_apl", "minilm-l6")
    assert cfg.data_seed == cfg.seed == 1
    assert cfg.train.max_length == 128 and cfg.train.patience == 10
    assert (cfg.train.precision, cfg.train.length_grouping, cfg.train.fast_dropout) == ("auto", 4, True)


def test_budget_values():
    assert config.compose(["budget=k500"]).budget.k == 500
    full = config.compose(["budget=full"]).budget
    assert full.k is None


def test_data_seed_follows_seed_unless_set():
    assert config.compose(["seed=3"]).data_seed == 3
    assert config.compose(["seed=3", "data_seed=7"]).data_seed == 7


def test_env_sets_data_dir(monkeypatch, tmp_path):
    monkeypatch.setenv("UNIPELT_GLUE_DIR", str(tmp_path))
    assert config.compose([]).data.dir == str(tmp_path)
    assert config.compose([f"data.dir={tmp_path}/x"]).data.dir == f"{tmp_path}/x"


@pytest.mark.parametrize(
    "override,needle",
    [
        ("train.lr=abc", "wrong type for train.lr"),
        ("seed=x", "wrong type for seed"),
        ("budget.k=many", "wrong type for budget.k"),
        ("train.lrr=1", "unknown config key 'train.lrr'"),
        ("+foo=1", "unknown config key 'foo'"),
        ("task=sst3", "unknown task 'sst3': choose one of cola, mnli"),
        ("budget=k50", "unknown budget 'k50'"),
        ("method=lora2", "unknown method 'lora2'"),
        ("train.precision=fp16", "train.precision=fp16 is not allowed"),
        ("train.lr=0", "train.lr=0.0 must be > 0"),
        ("budget.k=0", "budget.k=0 must be > 0"),
        ("train.patience=-1", "train.patience=-1 must be >= 0"),
        ("train.batch_size=0", "train.batch_size=0 must be > 0"),
        ("runtime.device=tpu", "runtime.device=tpu is not allowed"),
        ("task=sst2,rte", "give each key one value"),
        ("notakeyvalue", "overrides look like key=value"),
        ("method.name=../../etc", "cannot name a run folder"),
        ("+sweep=smoke", "use unipelt sweep +sweep=smoke"),
        ("task.name=a/b", "cannot name a run folder"),
    ],
)
def test_bad_overrides_fail_at_compose_time(override, needle):
    with pytest.raises(UserError) as err:
        config.compose([override])
    message = str(err.value)
    assert needle in message
    assert "\n" not in message


def test_config_hash_ignores_bookkeeping_only():
    base = config.config_hash(config.compose([]))
    assert config.config_hash(config.compose(["runtime.threads=1"])) == base
    assert config.config_hash(config.compose(["data.dir=/somewhere/else"])) == base
    assert config.config_hash(config.compose(["seed=2"])) != base
    assert config.config_hash(config.compose(["train.lr=1e-4"])) != base
    assert config.config_hash(config.compose([])) == base  # stable across calls


def test_conf_dir_found_from_checkout():
    assert (config.conf_dir() / "config.yaml").is_file()


def test_a_learning_rate_chosen_for_a_backbone_applies_to_that_backbone_only(conf_with_lr):
    conf_with_lr({"mpnet-base_adapter": 3e-4})
    lr = lambda *overrides: config.compose(list(overrides)).train.lr  # noqa: E731
    assert lr("backbone=mpnet-base", "method=adapter") == 3e-4
    assert lr("method=adapter") == 1e-3  # MiniLM keeps the method's own rate
    assert lr("backbone=mpnet-base", "method=lora") == lr("method=lora") == 1e-3  # no file: the method's own
    assert lr("backbone=mpnet-base", "method=adapter", "train.lr=1e-5") == 1e-5  # the command line wins
    assert "lr" not in config.groups()  # picked by backbone and method, not a group to choose


def test_the_shipped_learning_rate_tables_change_no_minilm_run():
    """conf/lr holds rates for other backbones only: MiniLM's committed runs keep their identity."""
    shipped = sorted((config.conf_dir() / "lr").glob("*.yaml")) if (config.conf_dir() / "lr").is_dir() else []
    assert not [p.name for p in shipped if p.name.startswith("minilm-l6_")]
