"""MPNet (all-mpnet-base-v2's family): every submodule, prefix attention with the relative position
bias against a hand-written reference, the head, and exact counts at d = 768, 12 layers."""

import copy
import math
from types import MethodType

import pytest
import torch
from transformers import BertConfig, BertForSequenceClassification, MPNetConfig, MPNetForSequenceClassification

from unipelt_cli.errors import UserError
from unipelt_cli.head import set_pooling
from unipelt_cli.model import BackboneArgs, head_names, load_backbone, set_trainable
from unipelt_cli.pelt import apply_pelt, iter_gates, param_report, pelt_state_dict
from unipelt_cli.pelt.mpnet import attention_forward

from .pelt_helpers import NAMES, TINY, logits, pelt_model, randomize, tiny_model

MPNET = MPNetConfig(**TINY)  # hidden 32, 2 layers, 4 heads


@pytest.fixture
def batch(batch):
    """MPNet takes no token types; id 1 is its padding token, so keep real tokens off it."""
    ids = torch.where(batch["input_ids"] == 1, 2, batch["input_ids"])
    return {"input_ids": ids, "attention_mask": batch["attention_mask"]}


def relative_bias_nonzero(model, seed=7):
    torch.manual_seed(seed)
    with torch.no_grad():
        model.mpnet.encoder.relative_attention_bias.weight.normal_(std=1.0)


def test_mpnet_hosts_every_submodule(batch):
    model = pelt_model(NAMES, config=MPNET)
    randomize(model)
    relative_bias_nonzero(model)
    model.train()
    model(**batch, labels=torch.tensor([0, 1])).loss.backward()
    assert all(p.grad is not None for n, p in model.named_parameters() if n.startswith("pelt."))
    assert not model.mpnet.encoder.relative_attention_bias.weight.requires_grad  # frozen, as all backbone weights
    assert any(not n.startswith("pelt.") for n in pelt_state_dict(model))  # BitFit biases under model names


def test_routed_attention_equals_mpnet_own(batch):
    """The forward prefix-tuning installs computes MPNet's attention exactly (bias folded into the mask)."""
    own = tiny_model(config=MPNET)
    relative_bias_nonzero(own)
    routed = tiny_model(config=MPNET)
    routed.load_state_dict(own.state_dict())
    for layer in routed.mpnet.encoder.layer:
        layer.attention.attn.forward = MethodType(attention_forward, layer.attention.attn)
        layer.attention.attn.config = routed.config
    torch.testing.assert_close(logits(routed, batch), logits(own, batch), rtol=1e-5, atol=1e-6)
    unpadded = {k: v[1:] for k, v in batch.items()}
    torch.testing.assert_close(logits(routed, unpadded), logits(own, unpadded), rtol=1e-5, atol=1e-6)


def reference_mpnet_prefix_attention(attention, x, mask, bias, prefix, gate):
    """By hand: softmax(q [g P_K; K]^T / sqrt(dh) + [0 | R] + padding) [g P_V; V].
    x: (B, T, d); mask: (B, T); bias R: (B, heads, T, T); prefix: (2, L, d)."""
    b, t, d = x.shape
    heads = attention.num_attention_heads
    dh = d // heads
    length = prefix.shape[1]
    g = torch.sigmoid(x @ gate.linear.weight[0] + gate.linear.bias)  # (B, T)
    g = (g * mask).sum(1) / mask.sum(1)  # (B,), real tokens only
    keys = torch.cat([g[:, None, None] * prefix[0], attention.k(x)], dim=1)  # (B, L + T, d)
    values = torch.cat([g[:, None, None] * prefix[1], attention.v(x)], dim=1)
    q = attention.q(x).view(b, t, heads, dh).transpose(1, 2)  # (B, heads, T, dh)
    k = keys.view(b, -1, heads, dh).transpose(1, 2)  # (B, heads, L + T, dh)
    v = values.view(b, -1, heads, dh).transpose(1, 2)
    scores = q @ k.transpose(-1, -2) / math.sqrt(dh)  # (B, heads, T, L + T)
    scores = scores + torch.cat([torch.zeros(b, heads, t, length), bias], dim=-1)  # prefix columns: bias 0
    visible = torch.cat([torch.ones(b, length), mask], dim=1)  # (B, L + T)
    scores = scores.masked_fill(visible[:, None, None, :] == 0, float("-inf"))
    out = (scores.softmax(-1) @ v).transpose(1, 2).reshape(b, t, d)
    return attention.o(out)


def test_mpnet_prefix_attention_matches_hand_written_reference(batch):
    model = pelt_model(["prefix"], config=MPNET, prefix={"length": 3})
    part = model.pelt["prefix"]
    randomize(model)
    relative_bias_nonzero(model)
    part.fix()
    torch.manual_seed(5)
    with torch.no_grad():
        part.vectors.normal_()
    attention = model.mpnet.encoder.layer[1].attention.attn
    seen = {}
    attention.register_forward_hook(lambda m, args, out: seen.update(x=args[0], bias=args[2], out=out[0]))
    logits(model, batch)
    with torch.no_grad():
        expected = reference_mpnet_prefix_attention(
            attention, seen["x"], batch["attention_mask"].float(), seen["bias"], part.vectors[1], part.layer_gates[1]
        )
    assert seen["bias"].abs().max() > 0.1  # the relative bias is really in play
    real = batch["attention_mask"].bool()  # padded query rows are never read downstream
    torch.testing.assert_close(seen["out"][real], expected[real], rtol=1e-5, atol=1e-5)


def test_mpnet_has_one_attention_path(tmp_path):
    """transformers gives MPNet no SDPA: asking for it is a one-line error naming eager."""
    tiny_model(config=MPNET).save_pretrained(tmp_path)
    with pytest.raises(UserError, match="backbone.attn_implementation=eager"):
        load_backbone(BackboneArgs(str(tmp_path), num_labels=2, attn_implementation="sdpa"))
    model = load_backbone(BackboneArgs(str(tmp_path), num_labels=2, attn_implementation="eager"))
    assert model.config._attn_implementation == "eager"


def test_mpnet_head_names_and_pooling(batch):
    model = tiny_model(config=MPNET)
    assert head_names(model) == (
        ["classifier.out_proj.weight", "classifier.out_proj.bias"],
        ["classifier.dense.weight", "classifier.dense.bias"],
    )
    set_trainable(model, finetune=False, train_pooler=False)
    apply_pelt(model, {"lora": {"enabled": True}})
    trained = {n for n, p in model.named_parameters() if p.requires_grad and not n.startswith("pelt.")}
    assert trained == {"classifier.out_proj.weight", "classifier.out_proj.bias"}

    for mode in ("mean", "cls"):
        pooled = tiny_model(config=MPNET)
        set_pooling(pooled, mode)
        assert head_names(pooled) == (["classifier.out_proj.weight", "classifier.out_proj.bias"], [])
        with torch.no_grad():
            hidden = pooled.mpnet(**batch).last_hidden_state  # (B, T, d)
            mask = batch["attention_mask"].float().unsqueeze(-1)
            features = (hidden * mask).sum(1) / mask.sum(1) if mode == "mean" else hidden[:, 0]
            expected = pooled.classifier.out_proj(features)
        torch.testing.assert_close(logits(pooled, batch), expected, rtol=1e-5, atol=1e-6)


def test_mean_pooling_ignores_padding(batch):
    model = tiny_model(config=MPNET)
    set_pooling(model, "mean")
    alone = {k: v[:1, :4] for k, v in batch.items()}  # example 0 without its 2 padding positions
    torch.testing.assert_close(logits(model, batch)[:1], logits(model, alone), rtol=1e-5, atol=1e-6)


@pytest.fixture(scope="module")
def base_models():
    """MPNet-base (MPNetConfig() defaults: d 768, 12 layers, FFN 3072) and BERT-base, on the meta device."""
    with torch.device("meta"):
        return MPNetForSequenceClassification(MPNetConfig(num_labels=2)), BertForSequenceClassification(
            BertConfig(num_labels=2)
        )


ALL_ON = {
    "adapter": {"enabled": True},
    "prefix": {"enabled": True},
    "lora": {"enabled": True},
    "bitfit": {"enabled": True},
    "parallel_adapter": {"enabled": True, "placement": ["attention", "ffn"], "gate": True},
    "ia3": {"enabled": True, "gate": True},
}


def test_mpnet_base_counts_equal_the_papers_bert_base_figures(base_models):
    mpnet, bert = base_models
    apply_pelt(mpnet, ALL_ON)
    apply_pelt(bert, ALL_ON)
    report = param_report(mpnet)
    assert report["adapter"] == {"params": 894_528, "gate_params": 12 * 769, "stored": 894_528}
    assert report["prefix"] == {"params": 9_857_024, "gate_params": 12 * 769, "stored": 184_320}
    assert report["lora"] == {"params": 294_912, "gate_params": 24 * 769, "stored": 294_912}
    assert all(sum(p.numel() for p in gate.parameters()) == 769 for _, _, gate in iter_gates(mpnet))
    # every submodule but BitFit has BERT-base's shapes, so BERT-base's counts
    bert_report = param_report(bert)
    assert {k: v for k, v in report.items() if k not in ("bitfit", "gates")} == {
        k: v for k, v in bert_report.items() if k not in ("bitfit", "gates")
    }
    # BitFit: BERT-base's 102,912 biases less its pooler's 768 (MPNet's classifier has no base pooler;
    # its head's dense trains as the head). The relative position bias table, Embedding(32, 12) = 384
    # numbers shared by all layers, is not a bias term of an affine map: BitFit leaves it frozen.
    assert report["bitfit"] == {"params": 102_144, "gate_params": 0, "stored": 102_144}
    assert bert_report["bitfit"]["params"] - report["bitfit"]["params"] == 768
    assert mpnet.mpnet.encoder.relative_attention_bias.weight.numel() == 384
    assert not mpnet.mpnet.encoder.relative_attention_bias.weight.requires_grad


def test_mpnet_base_fixed_prefix_and_dora_counts():
    with torch.device("meta"):
        model = MPNetForSequenceClassification(MPNetConfig(num_labels=2))
    apply_pelt(model, {"prefix": {"enabled": True, "gate": False}, "lora": {"enabled": True, "dora": True}})
    model.pelt["prefix"].fix()
    report = param_report(model)
    assert report["prefix"] == {"params": 184_320, "gate_params": 0, "stored": 184_320}
    assert report["lora"]["params"] == 294_912 + 12 * 2 * 768  # DoRA: one magnitude per output row of W_q, W_v


def own_and_routed(seed=3):
    """Layer 0's self-attention of a tiny MPNet with attention dropout 0.5, its own forward and the routed one."""
    model = tiny_model(config=MPNetConfig(**{**TINY, "attention_probs_dropout_prob": 0.5}), seed=seed)
    attention = model.mpnet.encoder.layer[0].attention.attn
    attention.config = copy.deepcopy(model.config)  # what the routed forward reads: config._attn_implementation
    own = type(attention).forward.__get__(attention)
    return attention, own, MethodType(attention_forward, attention)


def test_routed_attention_called_directly_equals_mpnet_own(batch):
    """Called as MPNetSelfAttention.forward is: the additive mask or the same mask as booleans, with or without
    the position bias, the probabilities when asked; in eval no dropout under any attention interface."""
    attention, own, routed = own_and_routed()
    torch.manual_seed(0)
    x, bias = torch.randn(2, 6, 32), torch.randn(2, 4, 6, 6)
    real = batch["attention_mask"].bool()[:, None, None, :]  # (B, 1, 1, T)
    additive = (~real).float() * torch.finfo(torch.float32).min
    with torch.no_grad():
        expected = own(x, additive, bias, output_attentions=True)
        out = routed(x, additive, bias)
        assert len(out) == 1  # no probabilities unless asked, as MPNet's own
        torch.testing.assert_close(out[0], expected[0], rtol=1e-5, atol=1e-6)
        o, probs = routed(x, additive, bias, output_attentions=True)
        torch.testing.assert_close(o, expected[0], rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(probs, expected[1], rtol=1e-5, atol=1e-6)
        assert probs[0, :, :, 4:].abs().max() == 0  # the padded keys of example 0 get no weight
        torch.testing.assert_close(routed(x, real, bias)[0], expected[0], rtol=1e-5, atol=1e-6)  # boolean mask
        torch.testing.assert_close(routed(x, additive)[0], own(x, additive)[0], rtol=1e-5, atol=1e-6)  # no bias
        attention.config._attn_implementation = "sdpa"  # eval: no dropout through SDPA either
        torch.testing.assert_close(routed(x, additive, bias)[0], expected[0], rtol=1e-5, atol=1e-6)


def test_routed_attention_drops_attention_probabilities_in_training(batch):
    """In training, attention dropout as MPNet's own: the same draws at the same seed give the same output."""
    attention, own, routed = own_and_routed()
    attention.train()
    torch.manual_seed(0)
    x, bias = torch.randn(2, 6, 32), torch.randn(2, 4, 6, 6)
    additive = (1 - batch["attention_mask"][:, None, None, :].float()) * torch.finfo(torch.float32).min
    with torch.no_grad():
        torch.manual_seed(11)
        expected = own(x, additive, bias)[0]
        torch.manual_seed(11)
        out = routed(x, additive, bias)[0]
        attention.eval()
        undropped = own(x, additive, bias)[0]
    torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-6)
    assert (expected - undropped).abs().max() > 0.5 * undropped.abs().max()  # dropout 0.5 really changes it
