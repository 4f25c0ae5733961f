"""Training touches only PELT tensors; save/load, fixed prefix, LoRA merge and PEFT agree; gate statistics."""

import copy

import pytest
import torch
from safetensors.torch import load_file, save_file

from unipelt_cli.errors import UserError
from unipelt_cli.pelt import (
    before_save,
    collect_gate_stats,
    gate_stats,
    iter_gates,
    load_pelt_state_dict,
    merge,
    pelt_state_dict,
    reset_gate_stats,
)

from .pelt_helpers import NAMES, logits, pelt_model, randomize, tiny_model

# every registered submodule alone, then all of them together: a new submodule is tested on arrival
EACH_AND_ALL = [[name] for name in NAMES] + [NAMES]
IDS = ["+".join(names) for names in EACH_AND_ALL]


def train_steps(model, batch, steps=3, lr=1e-2):
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=lr, weight_decay=0.0)  # no decay: only gradients move tensors
    labels = torch.tensor([0, 1])
    for _ in range(steps):
        optimizer.zero_grad()
        model(**batch, labels=labels).loss.backward()
        optimizer.step()
    model.eval()


def freeze_head(model):
    for p in [*model.classifier.parameters(), *model.bert.pooler.parameters()]:
        p.requires_grad_(False)


@pytest.mark.parametrize("names", EACH_AND_ALL, ids=IDS)
def test_only_pelt_tensors_train(names, batch):
    model = pelt_model(names)
    assert set(names) == set(model.pelt)
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    expected = {n for n, _ in model.named_parameters() if n.startswith(("pelt.", "classifier.", "bert.pooler."))}
    if "bitfit" in names:
        expected |= {n for n, _ in model.bert.named_parameters(prefix="bert") if n.endswith(".bias")}
    assert trainable == expected
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    train_steps(model, batch)
    for name, p in model.named_parameters():
        if p.requires_grad:
            assert not torch.equal(p, before[name]), f"{name} did not move"
        else:
            assert torch.equal(p, before[name]), f"frozen {name} changed"


@pytest.mark.parametrize("names", EACH_AND_ALL, ids=IDS)
def test_state_dict_round_trip(names, batch, tmp_path):
    model = pelt_model(names, seed=7)
    freeze_head(model)  # so a fresh model built from the same seed has the same head
    train_steps(model, batch)
    expected = logits(model, batch)
    state = pelt_state_dict(model)
    save_file(state, tmp_path / "pelt.safetensors")
    kept = {k: v.clone() for k, v in state.items()}
    train_steps(model, batch, steps=1)  # training on leaves the returned state alone
    assert all(torch.equal(state[k], kept[k]) for k in state)
    fresh = pelt_model(names, seed=7)
    assert not torch.equal(logits(fresh, batch), expected)
    load_pelt_state_dict(fresh, load_file(tmp_path / "pelt.safetensors"))
    assert torch.equal(logits(fresh, batch), expected)


def test_saved_keys_are_exactly_the_pelt_tensors():
    model = pelt_model(NAMES)
    keys = set()
    for i in range(2):
        for lin in ("down", "up", "gate.linear"):
            keys |= {f"pelt.adapter.layers.{i}.{lin}.weight", f"pelt.adapter.layers.{i}.{lin}.bias"}
        keys |= {f"pelt.prefix.layer_gates.{i}.linear.{w}" for w in ("weight", "bias")}
        for t in ("query", "value"):
            keys |= {f"pelt.lora.layers.{i}.A.{t}", f"pelt.lora.layers.{i}.B.{t}"}
            keys |= {f"pelt.lora.layers.{i}.gate.{t}.linear.{w}" for w in ("weight", "bias")}
        keys |= {f"pelt.ia3.layers.{i}.scales.{t}" for t in ("key", "value", "ffn")}
        for lin in ("down", "up", "gate.linear"):
            keys |= {f"pelt.parallel_adapter.places.ffn.{i}.{lin}.{w}" for w in ("weight", "bias")}
        keys |= {f"pelt.ia3.layers.{i}.gate.linear.{w}" for w in ("weight", "bias")}
        base = f"bert.encoder.layer.{i}."
        for bias in ("attention.self.query", "attention.self.key", "attention.self.value", "attention.output.dense"):
            keys.add(base + bias + ".bias")
        for bias in ("attention.output.LayerNorm", "intermediate.dense", "output.dense", "output.LayerNorm"):
            keys.add(base + bias + ".bias")
    keys |= {"pelt.prefix.vectors", "bert.embeddings.LayerNorm.bias", "bert.pooler.dense.bias"}
    state = pelt_state_dict(model)
    assert set(state) == keys
    assert state["pelt.prefix.vectors"].shape == (2, 2, 10, 32)


def test_load_is_strict(batch):
    model = pelt_model(["adapter", "lora"])
    state = pelt_state_dict(model)
    with pytest.raises(UserError, match="missing"):
        load_pelt_state_dict(pelt_model(["adapter", "lora"]), {k: v for k, v in state.items() if "lora" not in k})
    with pytest.raises(UserError, match="unexpected"):
        load_pelt_state_dict(pelt_model(["adapter"]), state)
    with pytest.raises(UserError, match="shape"):
        load_pelt_state_dict(pelt_model(["adapter", "lora"], lora={"rank": 4}), state)


def test_fixed_prefix_equals_mlp_form(batch):
    model = pelt_model(["prefix"])
    randomize(model)
    before = logits(model, batch)
    before_save(model)
    assert not hasattr(model.pelt["prefix"], "mlp")
    assert torch.equal(logits(model, batch), before)


def test_merge_lora(batch):
    model = pelt_model(["lora", "adapter"], lora={"gate": False, "targets": ["query", "key", "value"]})
    randomize(model)
    before = logits(model, batch)
    model.pelt["lora"].merge(model)
    del model.pelt["lora"]
    assert not model.bert.encoder.layer[0].attention.self.query._forward_hooks
    torch.testing.assert_close(logits(model, batch), before, rtol=1e-5, atol=1e-6)
    with pytest.raises(UserError, match="gated"):
        merge(pelt_model(["lora"]))
    with pytest.raises(UserError, match="adapter changes the computation"):
        merge(model)  # the adapter left in it cannot fold into the backbone


def test_ungated_lora_matches_peft(batch):
    peft = pytest.importorskip("peft", reason="peft is the test-only LoRA reference")
    ours = pelt_model(["lora"], lora={"gate": False})
    randomize(ours)
    reference = tiny_model()
    reference.load_state_dict(ours.state_dict(), strict=False)  # same head as ours
    config = peft.LoraConfig(r=8, lora_alpha=16, lora_dropout=0.0, target_modules=["query", "value"])
    reference = peft.get_peft_model(reference, config).eval()
    with torch.no_grad():
        for i, layer in enumerate(reference.base_model.model.bert.encoder.layer):
            for target in ("query", "value"):
                linear = getattr(layer.attention.self, target)
                linear.lora_A["default"].weight.copy_(ours.pelt["lora"].layers[i].A[target])
                linear.lora_B["default"].weight.copy_(ours.pelt["lora"].layers[i].B[target])
    torch.testing.assert_close(logits(ours, batch), logits(reference, batch), rtol=1e-5, atol=1e-6)


def test_deepcopy_gives_an_independent_model(batch):
    model = pelt_model(NAMES)
    randomize(model)
    twin = copy.deepcopy(model)
    assert torch.equal(logits(twin, batch), logits(model, batch))
    before = logits(model, batch)
    with torch.no_grad():
        for adapter in twin.pelt["adapter"].layers:
            adapter.up.bias.add_(1.0)
    assert torch.equal(logits(model, batch), before)
    assert not torch.equal(logits(twin, batch), before)


def test_gate_stats_on_the_model(batch):
    model = pelt_model(["adapter", "prefix", "lora"])
    logits(model, batch)
    assert all(s["n"] == 0 for layer in gate_stats(model).values() for s in layer.values())  # off by default
    collect_gate_stats(model)
    for _, key, gate in iter_gates(model):
        gate.hold({"adapter": 0.25, "prefix": 0.5, "lora_q": 0.75, "lora_v": 0.125}[key])
    for _ in range(3):
        logits(model, batch)
    stats = gate_stats(model)
    assert set(stats) == {0, 1}
    assert set(stats[0]) == {"adapter", "prefix", "lora_q", "lora_v"}
    assert stats[1]["lora_q"] == {"mean": 0.75, "std": 0.0, "n": 6}
    assert stats[0]["adapter"] == {"mean": 0.25, "std": 0.0, "n": 6}
    train_steps(model, batch, steps=1)  # training forwards do not record
    assert gate_stats(model)[0]["prefix"]["n"] == 6
    reset_gate_stats(model)
    collect_gate_stats(model, on=False)
    logits(model, batch)
    assert gate_stats(model)[0]["prefix"]["n"] == 0


def test_load_errors_name_the_first_three_keys_and_the_shapes():
    model = pelt_model(["adapter"])
    state = {k: v for k, v in pelt_state_dict(model).items() if ".layers.1." not in k}  # layer 1's 6 tensors gone
    state.update({f"pelt.adapter.extra.{i}": torch.zeros(1) for i in range(5)})
    with pytest.raises(UserError) as e:
        load_pelt_state_dict(model, state)
    assert str(e.value) == (
        "PELT weights do not match this model (missing ['pelt.adapter.layers.1.down.bias', "
        "'pelt.adapter.layers.1.down.weight', 'pelt.adapter.layers.1.gate.linear.bias'], unexpected "
        "['pelt.adapter.extra.0', 'pelt.adapter.extra.1', 'pelt.adapter.extra.2']): "
        "build the model with the options the weights were trained with"
    )
    state = pelt_state_dict(model)
    state["pelt.adapter.layers.0.down.weight"] = torch.zeros(3, 32)
    with pytest.raises(UserError) as e:
        load_pelt_state_dict(model, state)
    assert str(e.value) == (
        "PELT weight pelt.adapter.layers.0.down.weight has shape (3, 32), the model expects (2, 32): "
        "build the model with the options the weights were trained with"
    )


def test_the_gates_read_the_mask_the_backbone_was_called_with(batch):
    """The base model's pre-hook keeps its attention mask, however passed, for the gates of that pass."""
    model = pelt_model(["adapter"])
    ctx, seen = model.pelt.ctx, []
    ctx.on_forward.append(lambda: seen.append(ctx.mask))
    mask = batch["attention_mask"]
    with torch.no_grad():
        model(**batch)  # *ForSequenceClassification passes it to the base model by keyword
        model.bert(batch["input_ids"], mask)  # positionally
        model(input_ids=batch["input_ids"])  # none: the gates read every token
    assert len(seen) == 3 and seen[0] is mask and seen[1] is mask and seen[2] is None

    four_d = mask[:, None, None, :].expand(2, 1, 6, 6).bool()
    with pytest.raises(UserError) as e:
        model(input_ids=batch["input_ids"], attention_mask=four_d)
    assert str(e.value) == (
        "masked gate pooling needs a (batch, tokens) attention mask, got shape (2, 1, 6, 6): "
        "pass a 2D mask or use gate pooling 'all'"
    )
    every = pelt_model(["adapter"], pooling="all")  # pools over every token: any mask the backbone takes
    with torch.no_grad():
        every(input_ids=batch["input_ids"], attention_mask=four_d)
    assert every.pelt.ctx.mask is four_d


def test_parts_take_the_backbones_dtype_and_device():
    from transformers import ElectraConfig

    from .pelt_helpers import TINY, options

    model = tiny_model(config=ElectraConfig(**TINY, embedding_size=16)).to(torch.bfloat16)  # no base pooler
    from unipelt_cli.pelt import apply_pelt

    apply_pelt(model, options(NAMES))
    assert {p.dtype for p in model.pelt.parameters()} == {torch.bfloat16}
    assert not any(p.requires_grad for p in model.electra.parameters() if p.dim() > 1)  # all frozen
    meta = tiny_model().to("meta")
    apply_pelt(meta, options(NAMES))
    assert {p.device.type for p in meta.pelt.parameters()} == {"meta"}
