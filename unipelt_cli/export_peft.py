"""`unipelt export RUN --format peft`: a run's LoRA as a Hugging Face PEFT adapter folder.

PEFT's LoRA is our ungated LoRA exactly: W x + (lora_alpha / r) B A x on the same projections
(lora_A.weight = A (r, d_in), lora_B.weight = B (d_out, r), no dropout at inference). So an ungated
LoRA run, alone, becomes `adapter_config.json` + `adapter_model.safetensors`, written by PEFT's
own `save_pretrained`, with the trained head (classifier, and the pooler when it trained) as
`modules_to_save`. Everything else is refused with one line: a gate scales B A x per example, and
adapters, prefixes and BitFit are other PEFT types or none; `--format hf` merges ungated
LoRA/BitFit into plain weights, and the run's weights.safetensors holds the rest for `unipelt eval`.

The folder also holds the tokenizer and `unipelt_head.json` (head.pooling): with pooling=mean or
cls, load with `load_peft`, which puts the same pooling on the base model first. The export checks
itself: it reloads the folder with `PeftModel.from_pretrained` and compares logits with the run's
model on test examples (the largest difference is returned).
"""

from __future__ import annotations

import importlib.util
import json
import warnings
from pathlib import Path

import numpy as np
import torch

from unipelt_cli import config as config_mod
from unipelt_cli import runs
from unipelt_cli.errors import UserError
from unipelt_cli.model import WEIGHTS_FILE, BackboneArgs, load_backbone, load_tokenizer, resolve_path

HEAD_FILE = "unipelt_head.json"  # as export.HEAD_FILE
INSTEAD = (
    "use --format hf (merges ungated LoRA/BitFit into a plain Hugging Face model), or keep the run's "
    "weights.safetensors, which `unipelt eval` loads"
)


def check_representable(cfg) -> None:
    """One line unless the run is ungated LoRA and nothing else."""
    if cfg.method.finetune:
        raise UserError(f"method {cfg.method.name} fine-tunes every weight, so there is no PEFT adapter: {INSTEAD}")
    enabled = {name: opts for name, opts in config_mod.pelt_options(cfg).items() if opts.enabled}
    if list(enabled) != ["lora"] or enabled["lora"].gate:
        what = ", ".join(f"{n}{' (gated)' if getattr(o, 'gate', False) else ''}" for n, o in enabled.items())
        raise UserError(f"this run uses {what}, which PEFT cannot represent (only ungated LoRA alone): {INSTEAD}")


def export_peft(run_dir: Path, out: Path, outputs: Path, n_check: int = 64) -> float:
    """Write the PEFT adapter folder to `out`; returns the largest |logit difference| after reload."""
    from omegaconf import OmegaConf

    from unipelt_cli.experiment import load_saved_tensors, setup

    runs.require_finished(run_dir)
    cfg = OmegaConf.load(run_dir / runs.CONFIG_FILE)
    check_representable(cfg)
    if importlib.util.find_spec("peft") is None:
        raise UserError("--format peft needs the peft package, which is not installed: pip install 'unipelt-cli[peft]'")
    from peft import LoraConfig, get_peft_model

    cfg.train.precision = "fp32"  # PEFT loads fp32 weights: compare in fp32
    spec, data, model, args = setup(cfg, outputs)
    load_saved_tensors(model, run_dir / WEIGHTS_FILE)
    model.eval()
    sample = data.tests["test"].subset(np.arange(min(n_check, len(data.tests["test"]))))
    before = _logits(model, sample)

    names = {id(module): name for name, module in model.named_modules()}
    lora = config_mod.pelt_options(cfg)["lora"]
    trained = [n for n, p in model.named_parameters() if p.requires_grad and not n.startswith("pelt.")]
    head = sorted({n.rsplit(".", 1)[0] for n in trained})  # classifier, and the pooler when it trained
    base = _base(cfg.backbone.name_or_path, spec.num_labels, cfg.head.pooling, cfg.backbone.attn_implementation)
    base.load_state_dict({n: p.detach() for n, p in model.named_parameters() if n in trained}, strict=False)
    peft_config = LoraConfig(
        task_type="SEQ_CLS", r=lora.rank, lora_alpha=lora.alpha, lora_dropout=0.0, target_modules=list(lora.targets),
        modules_to_save=head, base_model_name_or_path=resolve_path(cfg.backbone.name_or_path),
    )  # fmt: skip
    with warnings.catch_warnings():  # transformers' deprecation notices from inside PEFT: nothing to act on
        warnings.simplefilter("ignore", FutureWarning)
        wrapped = get_peft_model(base, peft_config)
    with torch.no_grad():
        for layer in model.pelt["lora"].layers:
            for target, linear in layer.linears.items():
                module = wrapped.base_model.model.get_submodule(names[id(linear)])
                module.lora_A["default"].weight.copy_(layer.A[target])
                module.lora_B["default"].weight.copy_(layer.B[target])
    try:
        out.mkdir(parents=True, exist_ok=True)
        wrapped.save_pretrained(str(out))
        load_tokenizer(cfg.backbone.name_or_path, cfg.backbone.trust_remote_code).save_pretrained(str(out))
        head_info = {"pooling": cfg.head.pooling, "num_labels": spec.num_labels, "run": run_dir.name,
                     "backbone": cfg.backbone.name_or_path}  # fmt: skip
        (out / HEAD_FILE).write_text(json.dumps(head_info) + "\n")
    except OSError as exc:
        raise UserError(f"cannot write the export to {out} ({exc.strerror}): pass a writable --out DIR") from None
    after = _logits(load_peft(out).eval(), sample)
    return float((before - after).abs().max())


def _base(name_or_path: str, num_labels: int, pooling: str, attn_implementation: str = "sdpa"):
    """The pretrained backbone with a fresh head and the run's pooling (remote code never runs)."""
    from unipelt_cli.head import set_pooling

    model = load_backbone(BackboneArgs(name_or_path, num_labels, attn_implementation, False))
    set_pooling(model, pooling)
    return model


def load_peft(folder: str | Path):
    """The base backbone with the run's pooling, then `PeftModel.from_pretrained(base, folder)`."""
    from peft import PeftModel

    info = json.loads((Path(folder) / HEAD_FILE).read_text())
    base = _base(info["backbone"], info["num_labels"], info["pooling"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        return PeftModel.from_pretrained(base, str(folder))


def _logits(model, enc) -> torch.Tensor:
    from unipelt_cli.export import _logits as logits  # one batched forward for both export formats

    return logits(model, enc)
