"""From a composed config to a finished run folder (train) or fresh metrics (eval).

This is the builder layer: it reads the OmegaConf config once and hands plain arguments to the
data, model and loop code, which never see OmegaConf.
"""

from __future__ import annotations

import time
import traceback
from dataclasses import dataclass
from pathlib import Path

import torch

from unipelt_cli import config as config_mod
from unipelt_cli import runs
from unipelt_cli.data.encode import Encoded, encode
from unipelt_cli.data.glue import load_task
from unipelt_cli.data.kshot import kshot_indices, rows_hash
from unipelt_cli.errors import UserError
from unipelt_cli.model import (
    WEIGHTS_FILE,
    BackboneArgs,
    count_params,
    load_backbone,
    load_tokenizer,
    load_weights,
    resolve_path,
    save_weights,
    set_trainable,
    trained_state,
)
from unipelt_cli.provenance import provenance
from unipelt_cli.train import Diverged, LoopArgs, evaluate, fit, seed_everything


@dataclass
class Data:
    train: Encoded
    dev: Encoded
    tests: dict[str, Encoded]  # "test", and "test_mismatched" for MNLI
    info: dict  # sizes, row hashes, sources: stored in the result


def pick_device(name: str) -> torch.device:
    if name == "cuda" and not torch.cuda.is_available():
        raise UserError("runtime.device=cuda but no CUDA GPU is visible: use runtime.device=auto or cpu")
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def cpu_has_bf16() -> bool:
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "amx_bf16" in flags or "avx512_bf16" in flags


def use_bf16(precision: str, device: torch.device) -> bool:
    if precision == "fp32":
        return False
    if precision == "bf16":
        return True
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    return cpu_has_bf16()


def prepare_data(cfg, spec, tokenizer, cache_dir: Path) -> Data:
    """The paper's split: shuffle train with data_seed, first K train, next dev_size select;
    GLUE dev is the test set. Full data selects on the test set, and says so."""
    splits = load_task(spec, cfg.data.dir)
    k, dev_size = cfg.budget.k, cfg.budget.dev_size
    train_idx, dev_idx = kshot_indices(len(splits["train"]), k, dev_size, cfg.data_seed, task=spec.name)
    key = f"{resolve_path(cfg.backbone.name_or_path)}|{type(tokenizer).__name__}|{len(tokenizer)}"

    def enc(split):
        return encode(split, tokenizer, cfg.train.max_length, cache_dir, key)

    full_train = enc(splits["train"])
    tests = {name: enc(split) for name, split in splits.items() if name.startswith("test")}
    train = full_train.subset(train_idx)
    dev = full_train.subset(dev_idx) if k is not None else tests["test"]
    info = {
        "train_size": len(train),
        "dev_size": len(dev),
        "test_sizes": {name: len(e) for name, e in tests.items()},
        "train_rows_hash": rows_hash(train_idx),
        "dev_rows_hash": rows_hash(dev_idx),
        "selection_on_test": k is None,
        "sources": {name: split.source for name, split in splits.items()},
    }
    return Data(train=train, dev=dev, tests=tests, info=info)


def build_model(cfg, spec):
    model = load_backbone(
        BackboneArgs(
            name_or_path=cfg.backbone.name_or_path,
            num_labels=spec.num_labels,
            attn_implementation=cfg.backbone.attn_implementation,
            trust_remote_code=cfg.backbone.trust_remote_code,
        )
    )
    set_trainable(model, finetune=cfg.method.finetune, train_pooler=cfg.head.train_pooler)
    return model


def loop_args(cfg, spec, device: torch.device) -> LoopArgs:
    t = cfg.train
    return LoopArgs(
        lr=t.lr,
        weight_decay=t.weight_decay,
        warmup_ratio=t.warmup_ratio,
        batch_size=t.batch_size,
        epochs=t.epochs,
        max_steps=t.max_steps,
        eval_every=t.eval_every,
        patience=t.patience,
        max_grad_norm=t.max_grad_norm,
        eval_batch_size=t.eval_batch_size,
        metric=spec.metric,
        regression=spec.is_regression,
        seed=cfg.seed,
        device=device,
        bf16=use_bf16(t.precision, device),
    )


def setup(cfg, outputs: Path):
    """Everything train and eval share: threads, device, task, tokenizer, data, model, loop args."""
    if cfg.runtime.threads > 0:
        torch.set_num_threads(cfg.runtime.threads)
    device = pick_device(cfg.runtime.device)
    spec = config_mod.task_spec(cfg)
    tokenizer = load_tokenizer(cfg.backbone.name_or_path, cfg.backbone.trust_remote_code)
    cache_dir = Path(cfg.runtime.cache_dir) if cfg.runtime.cache_dir else outputs / "cache"
    data = prepare_data(cfg, spec, tokenizer, cache_dir)
    seed_everything(cfg.seed)
    model = build_model(cfg, spec).to(device)
    return spec, data, model, loop_args(cfg, spec, device)


def train_run(cfg, run_dir: Path, outputs: Path, reporter) -> dict:
    """Train, select on dev, test; write weights and result.json. Returns the result."""
    config_hash = config_mod.config_hash(cfg)
    runs.atomic_write(run_dir / runs.CONFIG_FILE, config_mod.to_yaml(cfg))
    runs.write_status(run_dir, "running", started=time.time())
    try:
        spec, data, model, args = setup(cfg, outputs)
        trainable, total = count_params(model)
        reporter.start(run_dir, trainable, total, data.info, args)
        loop = fit(model, data.train, data.dev, args, on_step=reporter.step, on_eval=reporter.evaluation)
        t0 = time.perf_counter()
        tests = {name: evaluate(model, enc, args) for name, enc in data.tests.items()}
        test_seconds = time.perf_counter() - t0
        if not cfg.method.finetune or cfg.train.save_full_weights:
            save_weights(trained_state(model), run_dir / WEIGHTS_FILE)
    except Diverged as exc:
        runs.write_status(run_dir, "diverged", error=str(exc), finished=time.time())
        raise UserError(f"run diverged ({exc}): lower train.lr or try train.precision=fp32") from None
    except BaseException as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        state = "interrupted" if isinstance(exc, KeyboardInterrupt) else "failed"
        runs.write_status(run_dir, state, error=reason, traceback=traceback.format_exc(), finished=time.time())
        raise
    result = {
        "schema_version": runs.SCHEMA_VERSION,
        "run_id": run_dir.name,
        "config_hash": config_hash,
        "task": spec.name,
        "method": cfg.method.name,
        "backbone": cfg.backbone.name,
        "budget": cfg.budget.k if cfg.budget.k is not None else "full",
        "seed": cfg.seed,
        "data_seed": cfg.data_seed,
        "primary_metric": spec.metric,
        "dev": loop.best_dev,
        "test": tests["test"],
        **{name: m for name, m in tests.items() if name != "test"},
        "selection_on_test": data.info["selection_on_test"],
        "best_step": loop.best_step,
        "steps": loop.steps,
        "epochs_run": loop.epochs_run,
        "stopped_early": loop.stopped_early,
        "history": loop.history,
        "trainable_params": trainable,
        "total_params": total,
        "trainable_percent": round(100.0 * trainable / total, 4),
        "train_seconds": round(loop.train_seconds, 3),
        "eval_seconds": round(loop.eval_seconds + test_seconds, 3),
        "precision": "bf16" if args.bf16 else "fp32",
        "head": dict(config_mod.to_dict(cfg)["head"]),
        "data": data.info,
        "provenance": provenance(args.device),
    }
    runs.write_json(run_dir / runs.RESULT_FILE, result)
    runs.write_status(run_dir, "done", finished=time.time())
    return result


def eval_run(run_dir: Path, outputs: Path, split: str) -> tuple[dict, dict]:
    """Rebuild the model on a fresh backbone, load the run's weights, evaluate. (metrics, stored)."""
    from omegaconf import OmegaConf

    stored = runs.require_finished(run_dir)
    if not (run_dir / WEIGHTS_FILE).is_file():
        raise UserError(
            f"{run_dir} kept no weights (full fine-tuning saves them only with train.save_full_weights=true): "
            "rerun it with that override to evaluate it later"
        )
    cfg = OmegaConf.load(run_dir / runs.CONFIG_FILE)
    spec, data, model, args = setup(cfg, outputs)
    load_weights(model, run_dir / WEIGHTS_FILE)
    if split == "dev":
        return {"dev": evaluate(model, data.dev, args)}, {"dev": stored["dev"]}
    metrics = {name: evaluate(model, enc, args) for name, enc in data.tests.items()}
    return metrics, {name: stored.get(name) for name in metrics}
