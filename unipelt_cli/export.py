"""`unipelt export RUN_DIR`: fold a run's trained tensors into a plain Hugging Face model folder.

Only what can live inside the backbone's own weights is exportable: each PELT submodule says
whether it can be folded in (`Part.merge_refusal`, e.g. ungated LoRA/DoRA, ungated (IA)^3, BitFit),
or full fine-tuning saved with train.save_full_weights=true. Adapters, prefixes and gated
submodules change the computation itself, so they are refused with a clear error.

The folder holds `save_pretrained` weights, the tokenizer and `unipelt_head.json` (the head's
pooling). With `head.pooling=pooler` it loads in plain transformers; for `cls`/`mean` pooling use
`load_exported`, which puts the same pooling back. Export checks itself: it reloads the folder and
compares logits with the run's model on test examples.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from unipelt_cli import config as config_mod
from unipelt_cli import pelt, runs
from unipelt_cli.data.encode import batches
from unipelt_cli.errors import UserError
from unipelt_cli.head import set_pooling
from unipelt_cli.model import WEIGHTS_FILE, load_tokenizer

HEAD_FILE = "unipelt_head.json"


def check_exportable(cfg) -> None:
    if cfg.method.finetune:
        return
    reason = pelt.merge_refusal(config_mod.pelt_options(cfg))
    if reason:
        raise UserError(
            f"this run cannot be merged into the backbone's weights: {reason}; "
            f"runs of {', '.join(pelt.mergeable())} without gates can be exported (e.g. method=lora)"
        )


def load_exported(folder: str | Path):
    """Load an exported folder with the pooling it was trained with."""
    from transformers import AutoModelForSequenceClassification

    model = AutoModelForSequenceClassification.from_pretrained(str(folder))
    head = json.loads((Path(folder) / HEAD_FILE).read_text())
    set_pooling(model, head["pooling"])
    return model


def export_run(run_dir: Path, out: Path, outputs: Path, n_check: int = 64) -> float:
    """Write the merged model to `out`; returns the largest |logit difference| found on reload."""
    from unipelt_cli.experiment import load_saved_tensors, setup

    runs.require_finished(run_dir)
    cfg = runs.load_config(run_dir)  # plain, typed data only
    check_exportable(cfg)
    if not (run_dir / WEIGHTS_FILE).is_file():
        raise UserError(f"{run_dir} kept no weights: rerun it with train.save_full_weights=true to export it")
    cfg.train.precision = "fp32"  # the export is a plain fp32 model: compare it with the run's model in fp32
    spec, data, model, args = setup(cfg, outputs)
    load_saved_tensors(model, run_dir / WEIGHTS_FILE)
    model.eval()
    sample = data.tests["test"].subset(np.arange(min(n_check, len(data.tests["test"]))))
    before = _logits(model, sample)
    if hasattr(model, "pelt"):
        pelt.merge(model)
    state = {k: v for k, v in model.state_dict().items() if not k.startswith("pelt.")}
    try:
        out.mkdir(parents=True, exist_ok=True)
        fresh = _fresh_backbone(cfg, spec)
        missing, unexpected = fresh.load_state_dict(state, strict=False)
        if unexpected or any(".pooler." not in k for k in missing):
            raise UserError(
                f"export could not map the run's tensors ({unexpected[:2]}, {missing[:2]}): please report it"
            )
        fresh.save_pretrained(str(out))
        load_tokenizer(cfg.backbone.name_or_path, cfg.backbone.trust_remote_code).save_pretrained(str(out))
        (out / HEAD_FILE).write_text(json.dumps({"pooling": cfg.head.pooling, "run": run_dir.name}) + "\n")
    except OSError as exc:
        raise UserError(f"cannot write the export to {out} ({exc.strerror}): pass a writable --out DIR") from None
    after = _logits(load_exported(out).eval(), sample)
    return float((before - after).abs().max())


def _fresh_backbone(cfg, spec):
    from unipelt_cli.model import BackboneArgs, load_backbone

    return load_backbone(
        BackboneArgs(cfg.backbone.name_or_path, spec.num_labels, cfg.backbone.attn_implementation,
                     cfg.backbone.trust_remote_code)
    )  # fmt: skip


@torch.inference_mode()
def _logits(model, enc) -> torch.Tensor:
    out = torch.zeros(len(enc), model.config.num_labels)
    for idx, batch in batches(enc, 32, shuffle=False):
        batch.pop("labels")
        out[idx] = model(**batch).logits.float()
    return out
