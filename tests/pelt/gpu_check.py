"""Device check, not a pytest test: PELT on a GPU with a random BERT-base-shaped backbone.

    python tests/pelt/gpu_check.py            # on a CUDA machine
    python tests/pelt/gpu_check.py --small    # a quick dry run on CPU

Prints eager-vs-SDPA differences in fp32 and bf16 for the paper's presets, checks that a few
AdamW steps move only PELT tensors, and times forward (inference) and forward+backward (training)
against the plain backbone.
"""

import argparse
import time

import torch
from transformers import BertConfig, BertForSequenceClassification

from unipelt_cli.pelt import SUBMODULES, apply_pelt, before_save, param_report

PRESETS = {
    "bitfit": ["bitfit"],
    "adapter": ["adapter"],
    "prefix": ["prefix"],
    "lora": ["lora"],
    "AP": ["adapter", "prefix"],
    "APL": ["adapter", "prefix", "lora"],
}


def build(config, impl, dtype, device, names, seed=0):
    torch.manual_seed(seed)
    config._attn_implementation = impl
    with torch.device(device):
        model = BertForSequenceClassification(config).to(dtype)
    if names is not None:
        gated = len(names) > 1
        apply_pelt(
            model, {n: SUBMODULES[n].Options(enabled=True, **({} if n == "bitfit" else {"gate": gated})) for n in names}
        )
        torch.manual_seed(seed + 1)
        with torch.no_grad():
            for n, p in model.named_parameters():
                if n.startswith("pelt."):
                    p.add_(torch.randn_like(p) * 0.02)
    return model.eval()


def make_batch(batch, length, device, vocab):
    torch.manual_seed(3)
    ids = torch.randint(1000, vocab, (batch, length), device=device)
    lengths = torch.randint(length // 4, length + 1, (batch,), device=device)
    mask = (torch.arange(length, device=device)[None] < lengths[:, None]).long()
    return {"input_ids": ids * mask, "attention_mask": mask, "token_type_ids": torch.zeros_like(ids)}


def timed(fn, device, repeats):
    for _ in range(3):
        fn()
    if device == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(repeats):
        fn()
    if device == "cuda":
        torch.cuda.synchronize()
    return (time.perf_counter() - start) / repeats * 1000


def check_equivalence(config, device, batch):
    for dtype in (torch.float32, torch.bfloat16):
        for preset, names in PRESETS.items():
            out = {}
            for impl in ("eager", "sdpa"):
                with torch.no_grad():
                    out[impl] = build(config, impl, dtype, device, names)(**batch).logits.float()
            diff = (out["eager"] - out["sdpa"]).abs().max().item()
            print(f"eager vs sdpa  {str(dtype):15s} {preset:7s} max|diff| = {diff:.2e}", flush=True)
            assert torch.isfinite(out["sdpa"]).all()


def check_training(config, device, batch):
    model = build(config, "sdpa", torch.bfloat16, device, ["adapter", "prefix", "lora", "bitfit"]).train()
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=1e-3, weight_decay=0.0)
    labels = torch.zeros(batch["input_ids"].shape[0], dtype=torch.long, device=device)
    for _ in range(3):
        optimizer.zero_grad()
        model(**batch, labels=labels).loss.backward()
        optimizer.step()
    frozen_same = all(torch.equal(p, before[n]) for n, p in model.named_parameters() if not p.requires_grad)
    moved = [n for n, p in model.named_parameters() if p.requires_grad and not torch.equal(p, before[n])]
    print(f"training: frozen unchanged={frozen_same}, moved {len(moved)}/{len(params)} trainable tensors")
    print("param_report:", param_report(model))
    assert frozen_same and len(moved) == len(params)


def time_presets(config, device, batch, repeats):
    labels = torch.zeros(batch["input_ids"].shape[0], dtype=torch.long, device=device)
    rows = {"plain": None, **PRESETS, "APL+fixed": ["adapter", "prefix", "lora"]}
    base = {}
    for preset, names in rows.items():
        model = build(config, "sdpa", torch.bfloat16, device, names)
        if preset == "APL+fixed":
            before_save(model)
        if names is None:
            for p in model.parameters():
                p.requires_grad_(True)

        def infer(model=model):
            with torch.no_grad():
                model(**batch)

        def train(model=model):
            model.train()
            model(**batch, labels=labels).loss.backward()
            model.eval()

        ms = (timed(infer, device, repeats), timed(train, device, repeats))
        base = base or {"infer": ms[0], "train": ms[1]}
        print(
            f"time bf16 sdpa {preset:9s} infer {ms[0]:7.2f} ms ({ms[0] / base['infer']:.0%})  "
            f"fwd+bwd {ms[1]:7.2f} ms ({ms[1] / base['train']:.0%})",
            flush=True,
        )


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--small", action="store_true", help="tiny model on CPU")
    args = parser.parse_args()
    if args.small:
        device, config = (
            "cpu",
            BertConfig(
                hidden_size=64,
                num_hidden_layers=2,
                num_attention_heads=4,
                intermediate_size=128,
                vocab_size=2000,
                num_labels=2,
            ),
        )
        batch, repeats = make_batch(4, 16, device, 2000), 2
    else:
        device, config = "cuda", BertConfig(num_labels=2)
        batch, repeats = make_batch(32, 128, device, 30000), 20
        print(torch.cuda.get_device_name(), "torch", torch.__version__)
    import transformers

    print("transformers", transformers.__version__)
    check_equivalence(config, device, make_batch(8, 64, device, config.vocab_size))
    check_training(config, device, batch)
    time_presets(config, device, batch, repeats)


if __name__ == "__main__":
    main()
