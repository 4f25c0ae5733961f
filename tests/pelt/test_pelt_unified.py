"""The unified-view submodules: parallel adapter, (IA)^3 and DoRA. Identity at init, equality with
PEFT and with a hand-written reference at non-trivial weights, held gates equal static scaling,
merge equals unmerged, exact BERT-base counts."""

import pytest
import torch
from transformers import BertConfig, BertForSequenceClassification

from unipelt_cli.pelt import apply_pelt, iter_gates, merge, param_report

from .pelt_helpers import logits, pelt_model, randomize, tiny_model

BOTH = ["attention", "ffn"]


def hold(model, value):
    for _, _, gate in iter_gates(model):
        gate.hold(value)


def shake(model, size=0.5, seed=1):
    """Non-identity PELT tensors, far enough from init that a wrong formula shows in the logits."""
    torch.manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            if p.requires_grad:
                p.add_(torch.randn_like(p) * size)


def same_head(model, impl="eager"):
    """The backbone alone, with `model`'s head (and any BitFit-free backbone weights)."""
    reference = tiny_model(impl)
    reference.load_state_dict({k: v for k, v in model.state_dict().items() if not k.startswith("pelt.")}, strict=False)
    return reference


@pytest.mark.parametrize("gate", [False, True])
@pytest.mark.parametrize(
    "name,opts",
    [("ia3", {}), ("parallel_adapter", {"placement": BOTH}), ("lora", {"dora": True})],
    ids=["ia3", "parallel_adapter", "dora"],
)
def test_identity_at_init(name, opts, gate, batch):
    """(IA)^3 vectors = 1, parallel adapter up = 0, DoRA with B = 0: the backbone's logits."""
    model = pelt_model([name], **{name: {"gate": gate, **opts}})
    with torch.no_grad():  # a trained head and gates, so the check is not about zeros elsewhere
        for n, p in model.named_parameters():
            if p.requires_grad and ("gate" in n or n.startswith("classifier")):
                p.add_(torch.randn_like(p) * 0.5)
    torch.testing.assert_close(logits(model, batch), logits(same_head(model), batch), rtol=0, atol=2e-6)


def masked_gate(gate, x, mask):
    """The paper's gate by hand: mean over real tokens of sigmoid(w . x_t + b)."""
    s = torch.sigmoid(x @ gate.linear.weight.T + gate.linear.bias)  # (B, T, 1)
    m = mask.unsqueeze(-1).to(s.dtype)
    return (s * m).sum(1, keepdim=True) / m.sum(1, keepdim=True)


@pytest.mark.parametrize("gate", [False, True])
def test_parallel_adapter_matches_hand_written_reference(gate, batch):
    """LN(dense(h) + x + G(x) s up(relu(down(x)))) for both sublayers, gate read from the sublayer input x."""
    ours = pelt_model(["parallel_adapter"], parallel_adapter={"placement": BOTH, "gate": gate, "scale": 4.0})
    randomize(ours, seed=3)
    with torch.no_grad():
        for _, _, g in iter_gates(ours):
            g.linear.weight.mul_(40)  # gates far from 0.5, so a wrong input would show
    reference = same_head(ours)
    places = ours.pelt["parallel_adapter"].places
    mask = batch["attention_mask"]

    def sublayer_output(module, adapter):
        def forward(hidden_states, input_tensor):
            h = module.dropout(module.dense(hidden_states))
            pa = 4.0 * adapter.up(torch.relu(adapter.down(input_tensor)))
            if gate:
                pa = masked_gate(adapter.gate, input_tensor, mask) * pa
            return module.LayerNorm(h + input_tensor + pa)

        return forward

    for i, layer in enumerate(reference.bert.encoder.layer):
        layer.attention.output.forward = sublayer_output(layer.attention.output, places["attention"][i])
        layer.output.forward = sublayer_output(layer.output, places["ffn"][i])
    out = logits(ours, batch)
    assert (out - logits(same_head(ours), batch)).abs().max() > 1e-2  # the adapters do something
    torch.testing.assert_close(out, logits(reference, batch), rtol=1e-5, atol=1e-6)


def test_ia3_matches_peft(batch):
    peft = pytest.importorskip("peft", reason="peft is the test-only (IA)^3 reference")
    ours = pelt_model(["ia3"], ia3={"gate": False})
    shake(ours)
    reference = same_head(ours)
    ffn = r".*layer\.\d+\.output\.dense$"
    config = peft.IA3Config(target_modules=rf".*\.(key|value)$|{ffn}", feedforward_modules=ffn)
    reference = peft.get_peft_model(reference, config).eval()
    with torch.no_grad():
        for i, layer in enumerate(reference.base_model.model.bert.encoder.layer):
            scales = ours.pelt["ia3"].layers[i].scales
            layer.attention.self.key.ia3_l["default"].copy_(scales["key"].view(-1, 1))
            layer.attention.self.value.ia3_l["default"].copy_(scales["value"].view(-1, 1))
            layer.output.dense.ia3_l["default"].copy_(scales["ffn"].view(1, -1))
    out = logits(ours, batch)
    assert (out - logits(same_head(ours), batch)).abs().max() > 1e-3
    torch.testing.assert_close(out, logits(reference, batch), rtol=1e-5, atol=1e-6)


def test_dora_matches_peft(batch):
    peft = pytest.importorskip("peft", reason="peft is the test-only DoRA reference")
    ours = pelt_model(["lora"], lora={"gate": False, "dora": True})
    shake(ours)
    reference = same_head(ours)
    config = peft.LoraConfig(r=8, lora_alpha=16, lora_dropout=0.0, target_modules=["query", "value"], use_dora=True)
    reference = peft.get_peft_model(reference, config).eval()
    with torch.no_grad():
        for i, layer in enumerate(reference.base_model.model.bert.encoder.layer):
            mine = ours.pelt["lora"].layers[i]
            for target in ("query", "value"):
                linear = getattr(layer.attention.self, target)
                linear.lora_A["default"].weight.copy_(mine.A[target])
                linear.lora_B["default"].weight.copy_(mine.B[target])
                linear.lora_magnitude_vector["default"].weight.copy_(mine.magnitude[target])
    out = logits(ours, batch)
    assert (out - logits(same_head(ours), batch)).abs().max() > 1e-3
    torch.testing.assert_close(out, logits(reference, batch), rtol=1e-5, atol=1e-6)


def test_held_gates_equal_static_scaling(batch):
    """Parallel adapter: G = g is s -> g s. (IA)^3: G = 1 is ungated, G = 0 the backbone.
    DoRA: G = g replaces s = alpha / r, so it equals ungated DoRA with alpha = g r."""
    cases = [
        ("parallel_adapter", {"scale": 2.0}, 0.3, {"gate": False, "scale": 0.6}),
        ("ia3", {}, 1.0, {"gate": False}),
        ("lora", {"dora": True}, 0.3, {"gate": False, "dora": True, "alpha": 0.3 * 8}),
    ]
    for name, opts, g, plain_opts in cases:
        gated = pelt_model([name], **{name: opts})
        shake(gated)
        hold(gated, g)
        plain = pelt_model([name], **{name: plain_opts})
        plain.load_state_dict(gated.state_dict(), strict=False)
        torch.testing.assert_close(logits(gated, batch), logits(plain, batch), rtol=0, atol=2e-6, msg=name)
    gated = pelt_model(["ia3"])
    shake(gated)
    hold(gated, 0.0)
    torch.testing.assert_close(logits(gated, batch), logits(same_head(gated), batch), rtol=0, atol=2e-6)


@pytest.mark.parametrize("name,opts", [("ia3", {}), ("lora", {"dora": True})], ids=["ia3", "dora"])
def test_ungated_merge_equals_unmerged(name, opts, batch):
    model = pelt_model([name], **{name: {"gate": False, **opts}})
    shake(model)
    before = logits(model, batch)
    assert (before - logits(same_head(model), batch)).abs().max() > 1e-2
    merge(model)
    assert len(model.pelt) == 0
    assert not any(m._forward_hooks or m._forward_pre_hooks for m in model.bert.encoder.modules())
    torch.testing.assert_close(logits(model, batch), before, rtol=1e-5, atol=1e-6)


def test_scalar_gate_reads_no_input(batch):
    model = pelt_model(["parallel_adapter"], parallel_adapter={"gate_type": "scalar"})
    gates = [g for _, _, g in iter_gates(model)]
    assert all(sum(p.numel() for p in g.parameters()) == 1 for g in gates)
    x = torch.randn(3, 5, 32)
    assert torch.equal(gates[0](x), torch.full((3, 1, 1), 0.5))
    apply_pelt(
        tiny := tiny_model(), {"lora": {"enabled": True, "gate_type": "scalar"}}, gate_options={"scalar": {"init": 2.0}}
    )
    g = next(iter(iter_gates(tiny)))[2]
    torch.testing.assert_close(g(x), torch.full((3, 1, 1), torch.sigmoid(torch.tensor(2.0)).item()))


def test_bert_base_counts():
    """d = 768, 12 layers, FFN 3072; a gate is 769 numbers."""
    with torch.device("meta"):
        model = BertForSequenceClassification(BertConfig(num_labels=2))
    apply_pelt(
        model,
        {
            "parallel_adapter": {"enabled": True, "placement": BOTH},
            "ia3": {"enabled": True},
            "lora": {"enabled": True, "gate": False, "dora": True},
        },
    )
    report = param_report(model)
    pa = 2 * 12 * (768 * 512 + 512 + 512 * 768 + 768)
    assert report["parallel_adapter"] == {"params": pa, "gate_params": 24 * 769, "stored": pa}
    assert report["ia3"] == {"params": 55_296, "gate_params": 12 * 769, "stored": 55_296}
    assert report["lora"] == {"params": 294_912 + 12 * 2 * 768, "gate_params": 0, "stored": 294_912 + 18_432}
