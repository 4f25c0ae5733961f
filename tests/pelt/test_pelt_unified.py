"""The unified-view submodules: parallel adapter, (IA)^3 and DoRA. Identity at init, equality with
PEFT and with a hand-written reference at non-trivial weights, held gates equal static scaling,
merge equals unmerged, exact BERT-base counts."""

import pytest
import torch
from transformers import BertConfig, BertForSequenceClassification

from unipelt_cli.errors import UserError
from unipelt_cli.pelt import SUBMODULES, apply_pelt, iter_gates, merge, param_report
from unipelt_cli.pelt.ia3 import IA3Layer, IA3Options
from unipelt_cli.pelt.registry import Context

from .pelt_helpers import logits, make_batch, pelt_model, randomize, tiny_model

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
    torch.manual_seed(2)
    with torch.no_grad():  # real backbone biases (BERT initialises them to 0): (IA)^3 must scale b_k, b_v too
        for module in model.bert.encoder.modules():
            if isinstance(module, torch.nn.Linear):
                module.bias.normal_(0, 0.5)
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


def test_parallel_adapter_learned_scale_starts_at_scale_and_trains(batch):
    """learn_scale: s is one trained scalar per adapter, starting at `scale`; it computes as a fixed s."""
    options = {"placement": BOTH, "gate": False, "scale": 4.0}
    learned = pelt_model(["parallel_adapter"], parallel_adapter={**options, "learn_scale": True})
    adapters = [a for found in learned.pelt["parallel_adapter"].places.values() for a in found]
    assert len(adapters) == 4
    for adapter in adapters:
        assert isinstance(adapter.scale, torch.nn.Parameter) and adapter.scale.requires_grad
        assert adapter.scale.shape == () and adapter.scale.item() == 4.0
    shake(learned)  # moves each s too
    fixed = pelt_model(["parallel_adapter"], parallel_adapter=options)
    pa = 2 * 2 * (32 * 512 + 512 + 512 * 32 + 32)
    assert param_report(learned)["parallel_adapter"]["params"] == param_report(fixed)["parallel_adapter"]["params"] + 4
    assert param_report(fixed)["parallel_adapter"]["params"] == pa
    fixed.load_state_dict(learned.state_dict(), strict=False)  # same adapters and head; s is not saved there
    others = [a for found in fixed.pelt["parallel_adapter"].places.values() for a in found]
    with torch.no_grad():
        for adapter, other in zip(adapters, others, strict=True):
            other.scale.copy_(adapter.scale)
    out = logits(learned, batch)
    assert (out - logits(same_head(learned), batch)).abs().max() > 1e-2
    torch.testing.assert_close(out, logits(fixed, batch), rtol=0, atol=1e-6)
    with torch.no_grad():
        for adapter in adapters:
            adapter.scale.fill_(0.0)  # s = 0: the backbone
    torch.testing.assert_close(logits(learned, batch), logits(same_head(learned), batch), rtol=0, atol=1e-6)


def test_parallel_adapter_refuses_a_norm_called_without_its_sublayer_input():
    """The LayerNorm hook needs the input its reader hook kept in the same pass; without it (a table
    entry naming the wrong modules) it says so instead of adding a stale or missing input."""
    model = pelt_model(["parallel_adapter"], parallel_adapter={"placement": ["attention"]})
    norm = model.bert.encoder.layer[0].attention.output.LayerNorm
    message = r"^parallel adapter: the sublayer input was not captured before its LayerNorm$"
    with pytest.raises(RuntimeError, match=message):
        norm(torch.randn(2, 6, 32))  # a fresh model: nothing kept yet
    logits(model, make_batch())
    with pytest.raises(RuntimeError, match=message):
        norm(torch.randn(2, 6, 32))  # each kept input is used once


@pytest.mark.parametrize("name", ["adapter", "parallel_adapter", "lora", "ia3"])
def test_remove_hooks_gives_back_the_backbone(name, batch):
    """A Part keeps the handle of every hook it registers (`Part.hooks`): removing them detaches it."""
    model = pelt_model([name], **{name: {"placement": BOTH} if name == "parallel_adapter" else {}})
    shake(model)
    backbone = logits(same_head(model), batch)
    assert (logits(model, batch) - backbone).abs().max() > 1e-2
    model.pelt[name].remove_hooks()
    assert not any(m._forward_hooks or m._forward_pre_hooks for m in model.bert.encoder.modules())
    torch.testing.assert_close(logits(model, batch), backbone, rtol=0, atol=1e-6)


def test_gated_ia3_refuses_to_merge_and_says_why():
    ia3 = SUBMODULES["ia3"]
    why = "gated (IA)^3 scales by an input-dependent amount (train with ia3.gate=false to export it)"
    assert ia3.merge_refusal(ia3.Options(enabled=True)) == ia3.merge_refusal(None) == why
    assert ia3.merge_refusal(ia3.Options(enabled=True, gate=False)) is None
    model = pelt_model(["ia3"])
    with pytest.raises(UserError, match=r"^gated \(IA\)\^3 scales by an input-dependent amount \(train with ia3"):
        model.pelt["ia3"].merge(model)


def test_ia3_vectors_are_as_wide_as_what_they_scale():
    """l_k, l_v scale the projection's output (d_out wide), l_ff the FFN output Linear's input (d_ff wide):
    shown on projections that are not square, as grouped-query attention's are."""
    modules = {"key": torch.nn.Linear(32, 16), "value": torch.nn.Linear(32, 8), "ffn": torch.nn.Linear(64, 32)}
    layer = IA3Layer(modules, IA3Options(enabled=True, gate=False), 32, Context("masked"))
    assert {t: tuple(v.shape) for t, v in layer.scales.items()} == {"key": (16,), "value": (8,), "ffn": (64,)}


def test_ia3_keeps_activations_in_the_autocast_dtype(batch):
    """Under bf16 autocast (train.precision=bf16) the scaled K, V and FFN activation stay bf16: the
    fp32 vectors are cast to the activation's dtype, not the activation promoted to fp32."""
    model = pelt_model(["ia3"], ia3={"gate": False})
    shake(model)
    layer, seen = model.bert.encoder.layer[0], {}
    for target in ("key", "value"):  # registered after (IA)^3's hooks, so they see what those return
        getattr(layer.attention.self, target).register_forward_hook(lambda m, a, o, t=target: seen.update({t: o.dtype}))
    layer.output.dense.register_forward_pre_hook(lambda m, a: seen.update(ffn=a[0].dtype))
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        model(**batch)
    assert seen == {"key": torch.bfloat16, "value": torch.bfloat16, "ffn": torch.bfloat16}
