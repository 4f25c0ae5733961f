"""Every gated submodule against a hand-written reference of its sublayer, gate computed by hand
from the tensor the spec says it reads (docs: ../shared/reference/UNIPELT.md section 1, and each
module's docstring).

The weights are far from init on purpose: every PELT tensor is randomised (LoRA B and the parallel
adapter's up-projection are non-zero), every LayerNorm gets gamma in (0.5, 2) and beta ~ N(0, 0.5)
(so LN(s) is far from s), and every gate's w ~ N(0, 0.5) with b centring its logits on the batch,
so the per-token gate values spread over (0, 1) and the gate of one tensor is far from the gate of another (and
sigmoid-then-mean far from mean-then-sigmoid: see test_gates_here_are_far_from_their_alternatives).
Each reference reads only backbone tensors captured by hooks and the PELT parameters.
"""

import pytest
import torch
from torch.nn import functional as F

from unipelt_cli.pelt import SUBMODULES, iter_gates

from .pelt_helpers import make_batch, pelt_model, randomize

LAYER = 1  # the second layer: its input already carries the first layer's PELT changes
TOL = dict(rtol=1e-5, atol=1e-5)  # float32 round-off on O(1) activations; the effects below are >= 1e-2


def spread_gates(model, seed=7):
    """w ~ N(0, 0.5); b centres each gate's logits on the batch, so its tokens spread around 0.5."""
    torch.manual_seed(seed)
    inputs, hooks = {}, []
    for _, _, gate in iter_gates(model):
        hooks.append(gate.register_forward_pre_hook(lambda g, args: inputs.setdefault(g, args[0])))
    with torch.no_grad():
        for _, _, gate in iter_gates(model):
            gate.linear.weight.normal_(0, 0.5)
        model(**make_batch())
        for gate, u in inputs.items():
            gate.linear.bias.fill_(-(u @ gate.linear.weight[0]).mean().item())
    for hook in hooks:
        hook.remove()


def ref_gate(gate, u, mask, pooling):
    """G(u) = pool over tokens of sigmoid(w . u_t + b), by hand: (B, T, d) -> (B, 1, 1)."""
    s = torch.sigmoid(u @ gate.linear.weight[0] + gate.linear.bias[0])  # (B, T)
    if pooling == "masked":
        m = mask.to(s.dtype)
        g = (s * m).sum(1) / m.sum(1)
    else:
        g = s.mean(1)
    return g.view(-1, 1, 1)


def build(names, pooling, **overrides):
    model = pelt_model(names, pooling=pooling, **overrides)
    randomize(model)
    torch.manual_seed(11)
    with torch.no_grad():  # a pretrained LayerNorm is no identity (LN(s) must differ from s); biases are not 0
        for module in model.modules():
            if isinstance(module, torch.nn.LayerNorm):
                module.weight.uniform_(0.5, 2.0)
                module.bias.normal_(0, 0.5)
            elif isinstance(module, torch.nn.Linear) and module.bias is not None:
                module.bias.normal_(0, 0.1)
    spread_gates(model)
    return model, model.bert.encoder.layer[LAYER]


def capture(module, store, key, pre=False):
    """Record a module's (args, kwargs, output) on every call, after the PELT hooks already on it."""
    if pre:
        module.register_forward_pre_hook(lambda m, a, k: store.update({key: (a, k)}), with_kwargs=True)
    else:
        module.register_forward_hook(lambda m, a, k, o: store.update({key: (a, k, o)}), with_kwargs=True)


def first(args, kwargs, name="hidden_states"):
    return args[0] if args else kwargs[name]


def second(args, kwargs, name="input_tensor"):
    return args[1] if len(args) > 1 else kwargs[name]


def check_adapter(pooling, batch):
    """out = LN(h + G_A(z) up(z) + a), z = LN(h + a): the gate reads the adapter input z."""
    model, layer = build(["adapter"], pooling)
    seen = {}
    capture(layer.output, seen, "out")  # BertOutput(intermediate, a) -> LN(dense(intermediate) + a)
    with torch.no_grad():
        model(**batch)
        args, kwargs, out = seen["out"]
        block = layer.output
        h, a = block.dense(first(args, kwargs)), second(args, kwargs)
        z = F.layer_norm(h + a, (h.shape[-1],), block.LayerNorm.weight, block.LayerNorm.bias, block.LayerNorm.eps)
        adapter = model.pelt["adapter"].layers[LAYER]
        up = adapter.up(torch.relu(adapter.down(z)))
        g = ref_gate(adapter.gate, z, batch["attention_mask"], pooling)
        expected = block.LayerNorm.forward(h + g * up + a)
    return out, expected


def lora_reference(lora, target, x, g, dora):
    """W x + b + g B A x; DoRA: b + (m / ||W + g B A||_row) (W x + g B A x), the norm per example."""
    linear = lora.linears[target]
    w, b = linear.weight, linear.bias
    ba = lora.B[target] @ lora.A[target]  # (d_out, d_in)
    if not dora:
        return x @ w.T + b + g * (x @ ba.T)
    rows = []
    for i in range(x.shape[0]):
        gi = g[i, 0, 0]
        norm = (w + gi * ba).norm(dim=1)  # (d_out,)
        rows.append(b + lora.magnitude[target] / norm * (x[i] @ w.T + gi * (x[i] @ ba.T)))
    return torch.stack(rows)


def check_lora(pooling, batch, gate_per="matrix", dora=False):
    """Each target: W x + b + G_L(x) B A x, x = the self-attention input (the layer input)."""
    model, layer = build(["lora"], pooling, lora={"gate_per": gate_per, "dora": dora})
    attention = layer.attention.self
    seen = {}
    capture(attention, seen, "x", pre=True)
    for target in ("query", "value"):
        capture(getattr(attention, target), seen, target)
    outs, expected = [], []
    with torch.no_grad():
        model(**batch)
        x = first(*seen["x"])
        lora = model.pelt["lora"].layers[LAYER]
        for target in ("query", "value"):
            gate = lora.gate[target if gate_per == "matrix" else "layer"]
            g = ref_gate(gate, x, batch["attention_mask"], pooling)
            outs.append(seen[target][2])
            expected.append(lora_reference(lora, target, x, g, dora))
    return torch.stack(outs, 1), torch.stack(expected, 1)  # (B, 2, T, d)


def check_parallel_adapter(pooling, batch):
    """Each placement: LN(h + x + G(x) s PA(x)), x = the sublayer input; s = 4 (scaled PA)."""
    options = {"placement": ["attention", "ffn"], "scale": 4.0, "bottleneck": 8}
    model, layer = build(["parallel_adapter"], pooling, parallel_adapter=options)
    seen = {}
    capture(layer.attention.output, seen, "attention")  # BertSelfOutput(context, x) -> LN(dense(context) + x)
    capture(layer.output, seen, "ffn")  # BertOutput(intermediate, x) -> LN(dense(intermediate) + x)
    outs, expected = [], []
    with torch.no_grad():
        model(**batch)
        for where, block in (("attention", layer.attention.output), ("ffn", layer.output)):
            args, kwargs, out = seen[where]
            h, x = block.dense(first(args, kwargs)), second(args, kwargs)
            pa = model.pelt["parallel_adapter"].places[where][LAYER]
            g = ref_gate(pa.gate, x, batch["attention_mask"], pooling)
            outs.append(out)
            expected.append(block.LayerNorm.forward(h + x + g * 4.0 * pa.up(torch.relu(pa.down(x)))))
    return torch.stack(outs, 1), torch.stack(expected, 1)


def check_ia3(pooling, batch):
    """K = l'_k (W_k x + b_k), V likewise, FFN out Linear input l'_ff act; l' = 1 + G(x)(l - 1),
    x = the self-attention input."""
    model, layer = build(["ia3"], pooling)
    attention = layer.attention.self
    seen = {}
    capture(attention, seen, "x", pre=True)
    capture(attention.key, seen, "key")
    capture(attention.value, seen, "value")
    capture(layer.intermediate, seen, "act")  # the activation before (IA)^3 scales it
    capture(layer.output.dense, seen, "ffn", pre=True)  # ... and after
    with torch.no_grad():
        model(**batch)
        x = first(*seen["x"])
        ia3 = model.pelt["ia3"].layers[LAYER]
        g = ref_gate(ia3.gate, x, batch["attention_mask"], pooling)
        outs, expected = [], []
        for target in ("key", "value"):
            linear = getattr(attention, target)
            outs.append(seen[target][2])
            expected.append((1 + g * (ia3.scales[target] - 1)) * (x @ linear.weight.T + linear.bias))
        outs.append(seen["ffn"][0][0])
        expected.append((1 + g * (ia3.scales["ffn"] - 1)) * seen["act"][2])
    return torch.cat(outs, -1), torch.cat(expected, -1)


def check_prefix(pooling, batch):
    """The gated prefix keys and values: G_P(x) P_K, G_P(x) P_V, x = the self-attention input."""
    model, layer = build(["prefix"], pooling, prefix={"length": 3})
    part = model.pelt["prefix"]
    part.fix()
    seen = {}
    capture(layer.attention.self, seen, "x", pre=True)
    kept = {}
    take = part.take
    part.take = lambda i: kept.setdefault(i, take(i))
    with torch.no_grad():
        model(**batch)
        x = first(*seen["x"])
        g = ref_gate(part.layer_gates[LAYER], x, batch["attention_mask"], pooling)  # (B, 1, 1)
        heads, (_, _, length, d) = part.heads, part.vector_shape
        p = part.vectors[LAYER].view(2, length, heads, d // heads).transpose(1, 2)  # (2, heads, L, d_head)
        expected = g.view(-1, 1, 1, 1, 1) * p.unsqueeze(0)  # (B, 2, heads, L, d_head)
    return torch.stack(kept[LAYER], 1), expected


CHECKS = {
    "adapter": check_adapter,
    "lora": check_lora,
    "parallel_adapter": check_parallel_adapter,
    "ia3": check_ia3,
    "prefix": check_prefix,
}


def test_every_gated_submodule_has_a_reference():
    gated = {name for name, cls in SUBMODULES.items() if hasattr(cls.Options(), "gate")}
    assert gated == set(CHECKS)


@pytest.mark.parametrize("pooling", ["masked", "all"])
@pytest.mark.parametrize("name", sorted(CHECKS))
def test_gated_submodule_matches_its_reference(name, pooling):
    batch = make_batch()
    out, expected = CHECKS[name](pooling, batch)
    real = batch["attention_mask"].bool()  # (B, T): padded rows are never read downstream
    if name == "prefix":  # prefix keys/values have no token axis
        torch.testing.assert_close(out, expected, **TOL)
    else:
        rows = real if out.dim() == 3 else real[:, None, :].expand(-1, out.shape[1], -1)
        torch.testing.assert_close(out[rows], expected[rows], **TOL)


@pytest.mark.parametrize("gate_per", ["matrix", "layer"])
@pytest.mark.parametrize("dora", [False, True])
def test_gated_lora_and_dora_match_their_reference(gate_per, dora):
    batch = make_batch()
    out, expected = check_lora("masked", batch, gate_per=gate_per, dora=dora)
    rows = batch["attention_mask"].bool()[:, None, :].expand(-1, 2, -1)
    torch.testing.assert_close(out[rows], expected[rows], **TOL)


def test_gates_here_are_far_from_their_alternatives():
    """At these weights the gate of the wrong tensor, or mean-then-sigmoid, is far outside TOL."""
    batch = make_batch()
    model, layer = build(["adapter"], "masked")
    seen = {}
    capture(layer.output, seen, "out")
    with torch.no_grad():
        model(**batch)
        args, kwargs, _ = seen["out"]
        h, a = layer.output.dense(first(args, kwargs)), second(args, kwargs)
        z = layer.output.LayerNorm.forward(h + a)
        gate = model.pelt["adapter"].layers[LAYER].gate
        mask = batch["attention_mask"]
        right = ref_gate(gate, z, mask, "masked")
        wrong_input = ref_gate(gate, h + a, mask, "masked")
        logits = z @ gate.linear.weight[0] + gate.linear.bias[0]  # (B, T)
        mean_first = torch.sigmoid((logits * mask).sum(1) / mask.sum(1)).view(-1, 1, 1)
    assert (right - wrong_input).abs().max() > 0.01  # 1000 x TOL
    assert (right - mean_first).abs().max() > 0.001  # 100 x TOL
    assert 0.05 < right.min() and right.max() < 0.95  # not saturated: the gate still moves the output


def test_lora_init_gate_names_and_merge_refusal():
    """A: kaiming-uniform with a = sqrt 5, i.e. U(-1/sqrt(d_in), 1/sqrt(d_in)); B = 0. Gate names:
    lora_q, lora_v per matrix, lora per layer. A gated LoRA refuses to merge, and says why."""
    from unipelt_cli.errors import UserError

    model = pelt_model(["lora"])
    layer = model.pelt["lora"].layers[0]
    bound = 1 / 32**0.5  # hidden 32
    for target in ("query", "value"):
        a = layer.A[target]
        assert 0.95 * bound < a.abs().max().item() <= bound and torch.all(layer.B[target] == 0)
    assert [name for _, name, _ in iter_gates(model)] == ["lora_q", "lora_v"] * 2
    per_layer = pelt_model(["lora"], lora={"gate_per": "layer"})
    assert [name for _, name, _ in iter_gates(per_layer)] == ["lora", "lora"]
    lora = SUBMODULES["lora"]
    why = "gated LoRA's scale depends on the input (train with lora.gate=false to export it)"
    assert lora.merge_refusal(lora.Options(enabled=True)) == lora.merge_refusal(None) == why
    assert lora.merge_refusal(lora.Options(enabled=True, gate=False)) is None
    with pytest.raises(UserError, match=r"^gated LoRA's scale depends on the input \(train with lora.gate=false"):
        model.pelt["lora"].merge(model)


@pytest.mark.parametrize("name", ["lora", "ia3", "prefix"])
def test_attention_hooks_read_the_input_passed_by_keyword(name):
    """A family may call its attention with hidden_states=... instead of positionally: the gates must
    read the same x either way (the hook's `first_input(args, kwargs)`)."""
    model, layer = build([name], "masked")
    attention, seen = layer.attention.self, {}
    capture(attention, seen, "x", pre=True)
    batch = make_batch()
    with torch.no_grad():
        model(**batch)
        args, kwargs = seen["x"]
        assert args, "BERT passes its hidden states positionally: nothing to move into the keywords"
        positional = attention(*args, **kwargs)[0]
        by_keyword = attention(*args[1:], hidden_states=args[0], **kwargs)[0]
        plain = attention(torch.zeros_like(args[0]), *args[1:], **kwargs)[0]
    torch.testing.assert_close(by_keyword, positional, **TOL)
    assert (plain - positional).abs().max() > 1e-2  # the input matters, so equality above is not vacuous


@pytest.mark.parametrize("where", ["attention", "ffn"])
def test_parallel_adapter_reads_the_sublayer_input_passed_by_keyword(where):
    """The parallel adapter keeps its input x with a pre-hook on the sublayer's first module (the
    self-attention, or the FFN's first Linear block); called with hidden_states=... it must keep the same x."""
    options = {"placement": [where], "bottleneck": 8}
    model, layer = build(["parallel_adapter"], "masked", parallel_adapter=options)
    reader, norm = (
        (layer.attention.self, layer.attention.output.LayerNorm)
        if where == "attention"
        else (layer.intermediate, layer.output.LayerNorm)
    )
    seen = {}
    capture(reader, seen, "x", pre=True)
    with torch.no_grad():
        model(**make_batch())
        args, kwargs = seen["x"]
        s = torch.randn_like(args[0])  # what the LayerNorm would get: h + x

        def normed(*call_args, **call_kwargs):
            reader(*call_args, **call_kwargs)  # keeps x for the LayerNorm's hook
            return norm(s)

        positional = normed(*args, **kwargs)
        by_keyword = normed(*args[1:], hidden_states=args[0], **kwargs)
        plain = normed(torch.zeros_like(args[0]), *args[1:], **kwargs)
    torch.testing.assert_close(by_keyword, positional, **TOL)
    assert (plain - positional).abs().max() > 1e-2  # the kept input matters
