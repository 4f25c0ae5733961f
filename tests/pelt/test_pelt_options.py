"""Options dataclasses: YAML defaults match, validation raises UserError, OmegaConf accepts them."""

import dataclasses
from pathlib import Path

import pytest
import yaml

from unipelt_cli.errors import UserError
from unipelt_cli.pelt import SUBMODULES

CONF = Path(__file__).resolve().parents[2] / "conf" / "pelt"


@pytest.mark.parametrize("name", list(SUBMODULES))
def test_yaml_matches_options(name):
    options = SUBMODULES[name].Options
    with open(CONF / f"{name}.yaml") as f:
        values = yaml.safe_load(f)
    defaults = dataclasses.asdict(options())
    assert values == defaults
    assert values["enabled"] is False
    text = (CONF / f"{name}.yaml").read_text()
    for key in values:  # every key carries a comment
        line = next(line for line in text.splitlines() if line.startswith(f"{key}:"))
        assert "#" in line, key


@pytest.mark.parametrize("name", list(SUBMODULES))
def test_options_are_structured_configs(name):
    omegaconf = pytest.importorskip("omegaconf")
    schema = omegaconf.OmegaConf.structured(SUBMODULES[name].Options)
    merged = omegaconf.OmegaConf.merge(schema, omegaconf.OmegaConf.load(CONF / f"{name}.yaml"))
    assert omegaconf.OmegaConf.to_object(merged) == SUBMODULES[name].Options()


@pytest.mark.parametrize(
    "name, bad",
    [
        ("adapter", {"reduction_factor": 0}),
        ("adapter", {"reduction_factor": -4}),
        ("adapter", {"activation": "softplus"}),
        ("adapter", {"gate_type": "nope"}),
        ("prefix", {"length": 0}),
        ("prefix", {"mid_dim": 0}),
        ("lora", {"rank": 0}),
        ("lora", {"alpha": 0.0}),
        ("lora", {"targets": ["query", "output"]}),
        ("lora", {"targets": []}),
        ("lora", {"targets": ["query", "query"]}),
        ("lora", {"gate_per": "head"}),
    ],
)
def test_out_of_range_options_raise(name, bad):
    with pytest.raises(UserError) as e:
        SUBMODULES[name].Options(**bad)
    assert "\n" not in str(e.value) and ": " in str(e.value)
