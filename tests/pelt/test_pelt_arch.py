"""Other backbone families from the table, and the errors apply_pelt raises."""

import pytest
import torch
from transformers import DebertaV2Config, DistilBertConfig, ElectraConfig, GPT2Config, RobertaConfig

from unipelt_cli.errors import UserError
from unipelt_cli.pelt import apply_pelt, pelt_state_dict

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
    with pytest.raises(UserError, match="does not know backbone type 'gpt2'"):
        apply_pelt(tiny_model(config=config), options(["adapter"]))


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
