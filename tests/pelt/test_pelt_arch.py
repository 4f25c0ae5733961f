"""Other backbone families from the table, and the errors apply_pelt raises."""

import dataclasses
from types import SimpleNamespace

import pytest
import torch
from transformers import DebertaV2Config, DistilBertConfig, ElectraConfig, GPT2Config, RobertaConfig, XLMRobertaConfig

from unipelt_cli.errors import UserError
from unipelt_cli.model import head_names
from unipelt_cli.pelt import apply_pelt, arch, pelt_state_dict
from unipelt_cli.pelt.arch import GENERIC_HEAD, arch_for, check_hosts, first_input, head_arch

from .pelt_helpers import NAMES, TINY, logits, options, pelt_model, randomize, tiny_model

FAMILIES = {
    "roberta": RobertaConfig(**TINY),
    "electra": ElectraConfig(**TINY, embedding_size=16),
    "distilbert": DistilBertConfig(
        dim=32, n_layers=2, n_heads=4, hidden_dim=64, vocab_size=100, dropout=0.0, attention_dropout=0.0
    ),
}


def no_token_types(batch):
    return {k: v for k, v in batch.items() if k != "token_type_ids"}


@pytest.mark.parametrize("family", list(FAMILIES))
def test_family_hosts_every_submodule(family, batch):
    batch = no_token_types(batch)
    models = {impl: pelt_model(NAMES, impl, config=FAMILIES[family]) for impl in ("eager", "sdpa")}
    for model in models.values():
        randomize(model)
    torch.testing.assert_close(logits(models["eager"], batch), logits(models["sdpa"], batch), rtol=1e-5, atol=1e-6)
    model = models["sdpa"]
    model.train()
    model(**batch, labels=torch.tensor([0, 1])).loss.backward()
    assert all(p.grad is not None for n, p in model.named_parameters() if n.startswith("pelt."))
    assert any(not n.startswith("pelt.") for n in pelt_state_dict(model))  # BitFit biases under model names


def test_deberta_hosts_adapter_and_bitfit_only(batch):
    config = DebertaV2Config(**TINY)
    model = pelt_model(["adapter", "bitfit"], config=config)
    randomize(model)
    logits(model, batch)
    for name in ("prefix", "lora"):
        with pytest.raises(UserError, match=f"cannot host {name}"):
            apply_pelt(tiny_model(config=config), options([name]))


def test_unknown_backbone():
    config = GPT2Config(n_embd=32, n_layer=2, n_head=4, vocab_size=100, pad_token_id=0)
    with pytest.raises(UserError) as e:
        apply_pelt(tiny_model(config=config), options(["adapter"]))
    assert str(e.value) == (
        "PELT does not know backbone type 'gpt2': use one of bert, roberta, electra, distilbert, mpnet, deberta-v2 "
        "(or add an entry to unipelt_cli/pelt/arch.py)"
    )
    typeless = torch.nn.Module()
    typeless.config = SimpleNamespace()  # not a transformers config: no model_type at all
    with pytest.raises(UserError, match="^PELT does not know backbone type None: "):
        arch_for(typeless)
    assert head_arch(typeless) is GENERIC_HEAD


def test_usage_errors(batch):
    model = pelt_model(["adapter"])
    with pytest.raises(UserError, match="already applied"):
        apply_pelt(model, options(["lora"]))
    with pytest.raises(UserError, match="unknown PELT submodule"):
        apply_pelt(tiny_model(), {"no_such_method": {"enabled": True}})
    with pytest.raises(UserError, match="bad options for lora"):
        apply_pelt(tiny_model(), {"lora": {"enabled": True, "ranks": 4}})
    with pytest.raises(UserError, match="gate pooling"):
        apply_pelt(tiny_model(), options(["adapter"]), gate_pooling="max")
    with pytest.raises(UserError, match="reduction_factor"):
        apply_pelt(tiny_model(), options(["adapter"], adapter={"reduction_factor": 64}))
    four_d = batch["attention_mask"][:, None, None, :].expand(2, 1, 6, 6).bool()
    with pytest.raises(UserError, match="2D mask"):
        model(input_ids=batch["input_ids"], attention_mask=four_d)


def test_prefix_needs_eager_or_sdpa():
    model = tiny_model()
    model.config._attn_implementation_internal = "flex_attention"
    with pytest.raises(UserError, match="eager or sdpa"):
        apply_pelt(model, options(["prefix"]))


def test_disabled_options_attach_nothing(batch):
    model = tiny_model()
    apply_pelt(model, {name: {"enabled": False} for name in NAMES})
    assert len(model.pelt) == 0
    assert torch.equal(logits(model, batch), logits(tiny_model(), batch))


def test_a_table_entry_without_a_field_refuses_the_submodules_that_need_it(monkeypatch):
    monkeypatch.setitem(arch.ARCHS, "bert", dataclasses.replace(arch.ARCHS["bert"], attn_norm=None, ffn_in=None))
    with pytest.raises(UserError) as e:
        apply_pelt(tiny_model(), options(["parallel_adapter"]))
    assert str(e.value) == (
        "bert cannot host parallel_adapter: its table entry has no attn_norm, ffn_in; "
        "disable parallel_adapter or use a bert/roberta/electra backbone"
    )
    check_hosts(tiny_model(), {"adapter": ("layers", "ffn_norm"), "lora": ("layers", "attention", "projections")})


OUT_PROJ = ["classifier.out_proj.weight", "classifier.out_proj.bias"]
DENSE = ["classifier.dense.weight", "classifier.dense.bias"]
HEADS = {  # family -> (classifier parameters, pooler parameters) of its *ForSequenceClassification
    "bert": (["classifier.weight", "classifier.bias"], ["bert.pooler.dense.weight", "bert.pooler.dense.bias"]),
    "roberta": (OUT_PROJ, DENSE),
    "distilbert": (["classifier.weight", "classifier.bias"], ["pre_classifier.weight", "pre_classifier.bias"]),
    "deberta-v2": (["classifier.weight", "classifier.bias"], ["pooler.dense.weight", "pooler.dense.bias"]),
    "xlm-roberta": (OUT_PROJ, DENSE),  # no table entry: the generic names find its RoBERTa-style head
}


@pytest.mark.parametrize("family", list(HEADS))
def test_each_family_head_is_found_by_the_table(family):
    config = {"bert": None, "deberta-v2": DebertaV2Config(**TINY), "xlm-roberta": XLMRobertaConfig(**TINY)}.get(
        family, FAMILIES.get(family)
    )
    model = tiny_model(config=config)
    assert model.config.model_type == family
    assert head_names(model) == HEADS[family]
    assert head_arch(model) is arch.ARCHS.get(family, GENERIC_HEAD)


def test_paths_and_poolers():
    model = tiny_model()
    assert arch.path(model.bert, "encoder.layer.0.attention.self") is model.bert.encoder.layer[0].attention.self
    assert arch.path(model.bert, "encoder.no_such.layer") is None
    assert arch.path(model.bert, "pooler.dense.no_such") is None
    assert arch.pooler(model, arch.ARCHS["bert"]) is model.bert.pooler
    electra = tiny_model(config=FAMILIES["electra"])
    assert arch.pooler(electra, arch.ARCHS["electra"]) is None  # no pooler field: its head has the dense layer


def test_first_input_finds_the_hidden_states_however_passed():
    a, b, c = torch.zeros(1), torch.ones(1), torch.full((1,), 2.0)
    assert first_input((a,), {"hidden_states": b}) is a  # positional first
    assert first_input((), {"hidden_states": a, "query": b, "input": c}) is a  # attention modules (BERT, MPNet)
    assert first_input((), {"query": b, "input": c, "mask": a}) is b  # DistilBERT's attention(query, key, value, mask)
    assert first_input((), {"input": c}) is c  # nn.Linear, nn.LayerNorm
    with pytest.raises(RuntimeError) as e:
        first_input((), {"mask": a, "key": b})
    assert str(e.value) == "cannot find the hidden states among the arguments ['key', 'mask']"
