"""Exact trainable-parameter counts on a BERT-base-shaped model (BertConfig() defaults, random weights)."""

import pytest
import torch
from transformers import BertConfig, BertForSequenceClassification

from unipelt_cli.pelt import apply_pelt, iter_gates, param_report
from unipelt_cli.pelt.lora import LoRAOptions


@pytest.fixture(scope="module")
def bert_base_apl():
    """BERT-base with A + P + L (per-matrix LoRA gates) + BitFit. Built on the meta device: shapes only."""
    with torch.device("meta"):
        model = BertForSequenceClassification(BertConfig(num_labels=2))
    apply_pelt(model, {name: {"enabled": True} for name in ("adapter", "prefix", "lora", "bitfit")})
    return model


def test_bert_base_counts(bert_base_apl):
    report = param_report(bert_base_apl)
    assert report["adapter"] == {"params": 894_528, "gate_params": 12 * 769, "stored": 894_528}
    assert report["prefix"] == {"params": 9_857_024, "gate_params": 12 * 769, "stored": 184_320}
    assert report["lora"] == {"params": 294_912, "gate_params": 24 * 769, "stored": 294_912}
    assert report["bitfit"] == {"params": 102_912, "gate_params": 0, "stored": 102_912}
    assert report["gates"] == 48 * 769


def test_bert_base_gates(bert_base_apl):
    keys = [key for _, key, _ in iter_gates(bert_base_apl)]
    assert keys.count("adapter") == keys.count("prefix") == keys.count("lora_q") == keys.count("lora_v") == 12
    assert all(sum(p.numel() for p in gate.parameters()) == 769 for _, _, gate in iter_gates(bert_base_apl))


def test_trainable_set_is_exactly_pelt_and_biases(bert_base_apl):
    report = param_report(bert_base_apl)
    head = sum(p.numel() for p in bert_base_apl.classifier.parameters())
    pooler_weight = bert_base_apl.bert.pooler.dense.weight.numel()  # untouched by apply_pelt: still trainable
    expected = sum(r["params"] + r["gate_params"] for k, r in report.items() if k != "gates")
    trainable = sum(p.numel() for p in bert_base_apl.parameters() if p.requires_grad)
    assert trainable == expected + head + pooler_weight


def test_fixed_prefix_count():
    with torch.device("meta"):
        model = BertForSequenceClassification(BertConfig(num_labels=2))
    apply_pelt(model, {"prefix": {"enabled": True, "gate": False}})
    model.pelt["prefix"].fix()
    assert param_report(model)["prefix"] == {"params": 184_320, "gate_params": 0, "stored": 184_320}


def test_lora_per_layer_gates_count():
    with torch.device("meta"):
        model = BertForSequenceClassification(BertConfig(num_labels=2))
    apply_pelt(model, {"lora": LoRAOptions(enabled=True, gate_per="layer")})
    assert param_report(model)["lora"] == {"params": 294_912, "gate_params": 12 * 769, "stored": 294_912}
    assert {key for _, key, _ in iter_gates(model)} == {"lora"}


def test_per_layer_parts_count_gates_only_where_a_layer_has_one():
    """PerLayer: one module a layer, its `gate` optional (an attribute set to None, or none at all)."""
    from torch import nn

    from unipelt_cli.pelt.gate import make_gate
    from unipelt_cli.pelt.registry import Context, PerLayer

    class Counted(PerLayer):
        name = "counted"

    plain = nn.Linear(4, 4)  # no `gate` attribute
    gated = nn.Linear(4, 4)
    gated.gate = make_gate("sigmoid_mean", 4, Context("masked"))
    ungated = nn.Linear(4, 4)
    ungated.gate = None
    part = Counted([plain, gated, ungated])
    assert [(i, key) for i, key, _ in part.gates()] == [(1, "counted")]
    assert part.counts() == {"params": 3 * 20, "gate_params": 5, "stored": 3 * 20}
