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
        ("lora", {"gate_type": "nope"}),
        ("prefix", {"gate_type": "nope"}),
        ("parallel_adapter", {"bottleneck": 0}),
        ("parallel_adapter", {"scale": 0.0}),
        ("parallel_adapter", {"activation": "softplus"}),
        ("parallel_adapter", {"gate_type": "nope"}),
        ("parallel_adapter", {"placement": ["mlp"]}),
        ("parallel_adapter", {"placement": []}),
        ("ia3", {"targets": ["query"]}),
        ("ia3", {"targets": []}),
        ("ia3", {"gate_type": "nope"}),
    ],
)
def test_out_of_range_options_raise(name, bad):
    with pytest.raises(UserError) as e:
        SUBMODULES[name].Options(**bad)
    assert "\n" not in str(e.value) and ": " in str(e.value)
    assert str(e.value).startswith(f"{name}.{next(iter(bad))} ")  # the message names the key to fix


def test_adapter_bottleneck_of_one_is_allowed_and_of_zero_refused():
    from .pelt_helpers import pelt_model

    model = pelt_model(["adapter"], adapter={"reduction_factor": 32})  # hidden 32 -> bottleneck 1
    assert model.pelt["adapter"].layers[0].down.out_features == 1
    with pytest.raises(UserError, match="^adapter.reduction_factor 33 leaves no bottleneck at hidden size 32: set it"):
        pelt_model(["adapter"], adapter={"reduction_factor": 33})


def test_adapter_init_is_normal_002_with_zero_biases():
    import torch

    from unipelt_cli.pelt.adapter import Adapter

    torch.manual_seed(0)
    adapter = Adapter(768, 48, "relu", None, None)
    for linear in (adapter.down, adapter.up):
        assert abs(linear.weight.std().item() - 0.02) < 0.001 and abs(linear.weight.mean().item()) < 0.001
        assert torch.all(linear.bias == 0)


def test_prefix_init_is_normal_002_with_zero_biases():
    """The embedding and both MLP Linears: N(0, 0.02) weights, zero biases (as transformers inits BERT)."""
    import torch

    from .pelt_helpers import pelt_model

    torch.manual_seed(0)
    part = pelt_model(["prefix"]).pelt["prefix"]  # embedding (10, 32), mlp 32 -> 512 -> 2 * 2 * 32
    for module in (part.embedding, part.mlp[0], part.mlp[2]):
        w = module.weight
        assert abs(w.std().item() - 0.02) < 0.1 * 0.02 and abs(w.mean().item()) < 0.01, module
    for linear in (part.mlp[0], part.mlp[2]):
        assert torch.all(linear.bias == 0)


# The registry's helpers (pelt/registry.py): the choice message, the Context, the refusals of the base Part.


def test_a_bad_choice_names_every_choice():
    with pytest.raises(UserError) as e:
        SUBMODULES["adapter"].Options(activation="softplus")
    assert str(e.value) == "adapter.activation must be one of relu, gelu, tanh, silu, got 'softplus': pick one of those"


def test_context_gate_options_are_the_ones_gates_read():
    import torch

    from unipelt_cli.pelt.gate import ScalarGateOptions, make_gate
    from unipelt_cli.pelt.registry import Context

    bare = Context("masked")
    assert bare.gate_options == {} and bare.mask is None and bare.on_forward == []
    assert make_gate("scalar", 32, bare).logit.item() == 0.0  # no options given: each kind's defaults
    given = Context("all", {"scalar": ScalarGateOptions(init=1.5)})
    assert make_gate("scalar", 32, given).logit.item() == 1.5
    assert make_gate("scalar", 32, given).pooling == "all"
    assert torch.equal(make_gate("scalar", 32, given)(torch.zeros(2, 3, 32)), torch.sigmoid(torch.full((2, 1, 1), 1.5)))


def test_a_layer_called_outside_a_model_pass_pools_its_gate_over_every_token():
    """Before any pass no caller gave a mask (Context.mask is None): the gate reads every token."""
    import torch

    from .pelt_helpers import pelt_model, randomize

    model = pelt_model(["adapter"])
    randomize(model)
    layer = model.bert.encoder.layer[0]
    x = torch.randn(2, 6, 32)
    with torch.no_grad():
        alone = layer(x)[0]
        model.pelt.ctx.mask = torch.ones(2, 6)  # every token real: the same pooling
        assert torch.equal(layer(x)[0], alone)


def test_merging_a_part_that_changes_the_computation_is_refused():
    from unipelt_cli.pelt import merge

    from .pelt_helpers import pelt_model

    for name in ("adapter", "prefix"):
        with pytest.raises(UserError) as e:
            merge(pelt_model([name]))
        assert str(e.value) == (
            f"{name} cannot be merged: {name} changes the computation itself, not just the backbone's weights"
        )


# apply_pelt's checks of its arguments, and what folds into the backbone (pelt/apply.py).


def test_apply_pelt_refusals_are_exact():
    from unipelt_cli.pelt import apply_pelt, param_report

    from .pelt_helpers import options, tiny_model

    def message(*args, **kwargs) -> str:
        with pytest.raises(UserError) as e:
            apply_pelt(*args, **kwargs)
        return str(e.value)

    assert message(tiny_model(), {"no_such_method": {"enabled": True}}) == (
        "unknown PELT submodule 'no_such_method': use one of adapter, bitfit, ia3, lora, parallel_adapter, prefix"
    )
    assert message(tiny_model(), {"lora": {"enabled": True, "ranks": 4}}) == (
        "bad options for lora: LoRAOptions.__init__() got an unexpected keyword argument 'ranks': "
        "see conf/pelt/lora.yaml for the keys"
    )
    assert message(tiny_model(), {"lora": SUBMODULES["adapter"].Options(enabled=True)}) == (
        "options for lora must be LoRAOptions, got AdapterOptions: pass LoRAOptions"
    )
    assert message(tiny_model(), options(["adapter"]), gate_pooling="max") == (
        "gate pooling must be one of masked, all, got 'max': pick one"
    )
    model = tiny_model()
    apply_pelt(model, options(["adapter"]))
    assert message(model, options(["lora"])) == (
        "PELT is already applied to this model: build a fresh model to apply it again"
    )
    with pytest.raises(UserError) as e:
        param_report(tiny_model())
    assert str(e.value) == "this model has no PELT submodules: call apply_pelt(model, options) first"


def test_submodules_attach_in_registry_order(monkeypatch):
    """A plugin registered after the built-in ones attaches after them, whatever its name and the options' order."""
    from unipelt_cli.pelt import apply_pelt
    from unipelt_cli.pelt.registry import Part

    from .pelt_helpers import tiny_model

    @dataclasses.dataclass
    class LateOptions:
        enabled: bool = False

    class Late(Part):
        name = "a_late"
        Options = LateOptions

        @classmethod
        def attach(cls, model, arch, options, ctx):
            return cls()

    monkeypatch.setitem(SUBMODULES, "a_late", Late)
    for order in (["a_late", "lora", "adapter"], ["adapter", "lora", "a_late"]):
        model = tiny_model()
        apply_pelt(model, {name: {"enabled": True} for name in order})
        assert list(model.pelt) == ["adapter", "lora", "a_late"]


def test_gate_options_given_to_apply_pelt_reach_the_gates():
    from unipelt_cli.pelt import apply_pelt, iter_gates

    from .pelt_helpers import tiny_model

    for given, logit in ((None, 0.0), ({"scalar": {"init": 2.0}}, 2.0)):
        model = tiny_model()
        apply_pelt(model, {"adapter": {"enabled": True, "gate_type": "scalar"}}, gate_options=given)
        assert [g.logit.item() for _, _, g in iter_gates(model)] == [logit, logit]


def test_merge_refusal_and_mergeable(monkeypatch):
    from unipelt_cli.pelt import merge_refusal, mergeable
    from unipelt_cli.pelt.registry import Part

    assert merge_refusal({"lora": {"enabled": True, "gate": False}, "bitfit": {"enabled": True}}) is None
    assert merge_refusal({"ia3": {"enabled": True, "gate": False}, "lora": {"enabled": False}}) is None
    assert merge_refusal({"lora": {"enabled": True}, "bitfit": {"enabled": True}, "adapter": {"enabled": True}}) == (
        "adapter changes the computation itself, not just the backbone's weights; "
        "gated LoRA's scale depends on the input (train with lora.gate=false to export it)"
    )
    assert mergeable() == ["bitfit", "ia3", "lora"]  # each without its gate

    class PlainOptions:  # a plugin's Options need not be a dataclass
        def __init__(self, enabled=False):
            self.enabled = enabled

    monkeypatch.setitem(SUBMODULES, "plain", type("Plain", (Part,), {"name": "plain", "Options": PlainOptions}))
    assert mergeable() == ["bitfit", "ia3", "lora"]
