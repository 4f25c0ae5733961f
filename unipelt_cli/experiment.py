"""From a composed config to a finished run folder (train) or fresh metrics (eval).

This is the builder layer: it reads the OmegaConf config once and hands plain arguments to the
data, model and loop code, which never see OmegaConf.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import numpy as np
import torch

from unipelt_cli import checkpoint, memory, pelt, predictions, runs, runstate
from unipelt_cli import config as config_mod
from unipelt_cli.data.encode import Encoded, encode
from unipelt_cli.data.glue import load_task
from unipelt_cli.data.kshot import kshot_indices, rows_hash
from unipelt_cli.dropout import use_fast_dropout
from unipelt_cli.errors import UserError
from unipelt_cli.head import set_pooling
from unipelt_cli.loggers import Context, Loggers
from unipelt_cli.metrics import compute_metrics
from unipelt_cli.model import (
    WEIGHTS_FILE,
    BackboneArgs,
    check_max_length,
    count_params,
    load_backbone,
    load_state,
    load_tokenizer,
    load_weights,
    read_weights,
    resolve_path,
    save_weights,
    set_trainable,
    store_frozen_linears,
    trained_state,
)
from unipelt_cli.provenance import provenance
from unipelt_cli.train import Diverged, LoopArgs, fit, from_logits, predict_logits, seed_everything


@dataclass
class Data:
    train: Encoded
    dev: Encoded
    tests: dict[str, Encoded]  # "test", and "test_mismatched" for MNLI
    info: dict  # sizes, row hashes, sources: stored in the result
    rows: dict = field(default_factory=dict)  # split -> each example's row in its GLUE file (predictions)


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

    tests = {name: enc(split) for name, split in splits.items() if name.startswith("test")}
    if k is None:
        train, dev = enc(splits["train"]).subset(train_idx), tests["test"]
    else:  # K-shot: tokenise the K + dev_size rows it uses, not the whole train file (SST-2: 67k rows)
        used = encode(splits["train"].subset(np.concatenate([train_idx, dev_idx])), tokenizer, cfg.train.max_length,
                      None, key)  # fmt: skip
        train, dev = used.subset(np.arange(len(train_idx))), used.subset(np.arange(len(train_idx), len(used)))
    info = {
        "train_size": len(train),
        "dev_size": len(dev),
        "test_sizes": {name: len(e) for name, e in tests.items()},
        "train_rows_hash": rows_hash(train_idx),
        "dev_rows_hash": rows_hash(dev_idx),
        "selection_on_test": k is None,
        "sources": {name: split.source for name, split in splits.items()},
    }
    rows = {name: np.arange(len(e)) for name, e in tests.items()}
    rows["dev"] = np.asarray(dev_idx) if k is not None else rows["test"]
    return Data(train=train, dev=dev, tests=tests, info=info, rows=rows)


def build_model(cfg, spec):
    """Backbone + head pooling + PELT submodules, with exactly the method's tensors trainable."""
    model = load_backbone(
        BackboneArgs(
            name_or_path=cfg.backbone.name_or_path,
            num_labels=spec.num_labels,
            attn_implementation=cfg.backbone.attn_implementation,
            trust_remote_code=cfg.backbone.trust_remote_code,
        )
    )
    set_pooling(model, cfg.head.pooling)
    set_trainable(model, finetune=cfg.method.finetune, train_pooler=cfg.head.train_pooler)
    if not cfg.method.finetune:
        pelt.apply_pelt(model, config_mod.pelt_options(cfg), cfg.pelt.gate_pooling, config_mod.gate_options(cfg))
    return model


def is_pelt(model) -> bool:
    return hasattr(model, "pelt")


def has_gates(model) -> bool:
    return is_pelt(model) and bool(pelt.iter_gates(model))


def saved_tensors(model) -> dict[str, torch.Tensor]:
    """What a run keeps: PELT tensors in their saved form (Part.before_save) plus the trained head; or everything."""
    if not is_pelt(model):
        return trained_state(model)
    pelt.before_save(model)
    state = {k: v.detach().clone() for k, v in pelt.pelt_state_dict(model).items()}
    for name, p in model.named_parameters():
        if p.requires_grad and not name.startswith("pelt.") and name not in state:
            state[name] = p.detach().clone()
    return state


def load_saved_tensors(model, path: Path) -> None:
    if not is_pelt(model):
        load_weights(model, path)
        return
    state = read_weights(path)
    pelt.before_save(model)
    pelt_keys = set(pelt.pelt_state_dict(model))
    pelt.load_pelt_state_dict(model, {k: v for k, v in state.items() if k in pelt_keys})
    load_state(model, {k: v for k, v in state.items() if k not in pelt_keys}, path)


def param_breakdown(model) -> dict:
    """Parameter accounting, as the paper counts it and as the optimiser sees it.

    trainable: tensors the optimiser updates (prefix: its training-time MLP).
    stored: tensors the method needs at inference and saves (each Part's counts()["stored"]; the
      prefix: its fixed vectors) -- the paper's count; percent is stored / backbone (the
      pretrained model with its task head).
    submodules: per PELT submodule, gates apart; head: classifier (+ pooler when it trains).
    """
    trainable, total = count_params(model)
    report = {"trainable": trainable, "stored": trainable, "backbone": total}
    if is_pelt(model):
        parts = pelt.param_report(model)
        report["submodules"] = {k: v for k, v in parts.items() if k != "gates"}
        report["gates"] = parts["gates"]
        pelt_total = sum(v["params"] + v["gate_params"] for v in report["submodules"].values())
        added = sum(p.numel() for n, p in model.named_parameters() if n.startswith("pelt."))
        report["backbone"] = total - added
        report["head"] = trainable - pelt_total
        report["stored"] = trainable - sum(v["params"] - v["stored"] for v in report["submodules"].values())
    report["percent"] = round(100.0 * report["stored"] / report["backbone"], 4)
    return report


def describe_params(report: dict) -> str:
    text = f"trainable parameters {report['stored']:,} ({report['percent']:.2f}% of {report['backbone']:,})"
    if "submodules" in report:
        parts = [f"{name} {v['stored']:,}" for name, v in report["submodules"].items()]
        text += f": {', '.join(parts)}, gates {report['gates']:,}, head {report['head']:,}"
        if report["trainable"] != report["stored"]:
            differ = [name for name, v in report["submodules"].items() if v["params"] != v["stored"]]
            text += f"; {report['trainable']:,} while training ({', '.join(differ)} in training form)"
    return text


def evaluate_with_gates(model, encs: dict[str, Encoded], args) -> tuple[dict, dict, dict]:
    """Metrics per split, the logits behind them and, where the model has gates, mean/std of
    every gate per split."""
    metrics, stats, logits = {}, {}, {}
    gated = has_gates(model)
    for name, enc in encs.items():
        if gated:
            pelt.reset_gate_stats(model)
            pelt.collect_gate_stats(model, True)
        logits[name] = predict_logits(model, enc, args)
        metrics[name] = compute_metrics(args.metric, from_logits(logits[name], args.regression), enc.labels)
        if gated:
            pelt.collect_gate_stats(model, False)
            stats[name] = {str(layer): v for layer, v in pelt.gate_stats(model).items()}
    return metrics, stats, logits


def dev_evaluation(model, enc: Encoded, args) -> tuple[dict, tuple]:
    """The per-epoch dev evaluation: (metrics, (gate stats or None, logits)), for fit's dev_eval."""
    metrics, stats, logits = evaluate_with_gates(model, {"dev": enc}, args)
    return metrics["dev"], (stats.get("dev"), logits["dev"])


def final_evaluation(model, data: Data, best_dev: tuple | None, args) -> tuple[dict, dict, dict]:
    """evaluate_with_gates over dev and the test splits with the best tensors restored. Dev's gate
    stats and logits come from `best_dev`, what dev_evaluation returned at the best step (the same
    tensors on the same batches, so the same numbers), when fit has it; else dev is evaluated again."""
    if best_dev is None:
        return evaluate_with_gates(model, {"dev": data.dev, **data.tests}, args)
    metrics, stats, logits = evaluate_with_gates(model, data.tests, args)
    dev_stats, dev_logits = best_dev
    stats = {"dev": dev_stats, **stats} if dev_stats is not None else stats
    return metrics, stats, {"dev": dev_logits, **logits}


def prediction_lines(data: Data, encs: dict[str, Encoded], logits: dict, args) -> dict[str, list[str]]:
    """{split: predictions/<split>.jsonl's lines} (see unipelt_cli/predictions.py)."""
    return {
        name: predictions.lines(logits[name], encs[name].labels, data.rows[name], args.regression) for name in logits
    }


def loop_args(cfg, spec, device: torch.device, pad_id: int = 0) -> LoopArgs:
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
        group=t.length_grouping,
        pad_id=pad_id,
        # the original code's gate formula averages over all max_length padded positions
        pad_to=t.max_length if cfg.pelt.gate_pooling == "all" else 0,
    )


def setup(cfg, outputs: Path):
    """Everything train and eval share: threads, device, task, tokenizer, data, model, loop args."""
    memory.limit_primitive_cache()  # before the first matmul, which is when oneDNN reads it
    if cfg.runtime.threads > 0:
        torch.set_num_threads(cfg.runtime.threads)
    device = pick_device(cfg.runtime.device)
    spec = config_mod.task_spec(cfg)
    tokenizer = load_tokenizer(cfg.backbone.name_or_path, cfg.backbone.trust_remote_code)
    cache_dir = runs.inside(outputs, cfg.runtime.cache_dir or "cache", "runtime.cache_dir")
    data = prepare_data(cfg, spec, tokenizer, cache_dir)
    seed_everything(cfg.seed)
    model = build_model(cfg, spec).to(device)
    check_max_length(model, cfg.train.max_length, cfg.backbone.name_or_path)
    args = loop_args(cfg, spec, device, tokenizer.pad_token_id or 0)
    if args.bf16:
        store_frozen_linears(model, torch.bfloat16)
    if cfg.train.fast_dropout and device.type == "cpu":
        use_fast_dropout(model)
    return spec, data, model, args


def train_run(cfg, run_dir: Path, outputs: Path, reporter, resume: bool = False, group: str = "") -> dict:
    """Train, select on dev, test; write weights and result.json. Returns the result.
    resume: continue from the run's checkpoint when it has one (else start from the beginning).
    group: the sweep the run belongs to (the trackers' experiment or group)."""
    loggers = Loggers(cfg.logger, Context(run_dir, outputs, config_mod.to_dict(cfg), group))
    try:
        runs.atomic_write(run_dir / runs.CONFIG_FILE, config_mod.to_yaml(cfg))
    except OSError as exc:
        raise UserError(
            f"cannot write to {run_dir} ({exc.strerror or exc}): free disk space or fix permissions"
        ) from None
    try:
        identity = _identity_fields(config_mod.config_hash(cfg))
        with runstate.tracked(run_dir, run_dir / runs.LOG_FILE, identity):  # status.json, however the run ends
            try:
                return _train(cfg, run_dir, outputs, reporter, resume, loggers)
            except BaseException:
                loggers.close(failed=True)
                raise
    except Diverged as exc:
        raise UserError(f"run diverged ({exc}): lower train.lr or try train.precision=fp32") from None


def _train(cfg, run_dir: Path, outputs: Path, reporter, resume: bool, loggers: Loggers) -> dict:
    config_hash = config_mod.config_hash(cfg)
    ckpt_path = run_dir / checkpoint.FILE
    spec, data, model, args = setup(cfg, outputs)
    args.checkpoint_every, args.checkpoint_path = cfg.runtime.checkpoint_every, ckpt_path
    state = checkpoint.load(ckpt_path) if resume else None
    if state is not None:
        checkpoint.check_fits(state, model, ckpt_path)
    params = param_breakdown(model)
    reporter.start(run_dir, describe_params(params), data.info, args)
    if resume:
        found = f"resuming from the checkpoint at step {state['step']}" if state else "no checkpoint: from the start"
        reporter.note(found)
    loggers.start(model)
    on_eval = _both(reporter.evaluation, loggers.evaluation) if loggers else reporter.evaluation
    dev_eval = partial(dev_evaluation, enc=data.dev, args=args)  # its logits and gate stats are kept for the best step
    loop = fit(model, data.train, data.dev, args, on_step=reporter.step, on_eval=on_eval, resume=state,
               on_log=loggers.step if loggers else None, dev_eval=dev_eval)  # fmt: skip
    t0 = time.perf_counter()
    weights = saved_tensors(model) if is_pelt(model) or cfg.train.save_full_weights else None
    tests, gates, logits = final_evaluation(model, data, loop.best_extra, args)
    lines = prediction_lines(data, {"dev": data.dev, **data.tests}, logits, args)
    tests.pop("dev", None)
    test_seconds = time.perf_counter() - t0
    result = {
        "schema_version": runs.SCHEMA_VERSION,
        "run_id": run_dir.name,
        **_identity_fields(config_hash),
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
        "trainable_params": params["stored"],
        "total_params": params["backbone"],
        "trainable_percent": params["percent"],
        "params": params,
        "pelt": pelt_summary(cfg),
        "gates": gates,
        "train_seconds": round(loop.train_seconds, 3),
        "eval_seconds": round(loop.eval_seconds + test_seconds, 3),
        "precision": "bf16" if args.bf16 else "fp32",
        "head": dict(config_mod.to_dict(cfg)["head"]),
        "data": data.info,
        "provenance": provenance(args.device),
    }
    save_outputs(run_dir, result, weights, lines)
    loggers.finish(result)
    ckpt_path.unlink(missing_ok=True)
    return result  # runstate marks the run done


def _identity_fields(config_hash: str) -> dict:
    from unipelt_cli import identity

    return {"config_hash": config_hash, "identity_version": identity.VERSION}


def _both(first, second):
    def call(record):
        first(record)
        second(record)

    return call


def save_outputs(run_dir: Path, result: dict, weights: dict | None, lines: dict | None = None) -> None:
    """Weights, then result.json, each to a temporary name first: a failed write (disk full,
    permissions) leaves a previous result and its weights as they were; runstate.py marks the run
    failed and removes the temporary files. Stop signals wait until both are in place."""
    new_weights = run_dir / f".{WEIGHTS_FILE}.new"
    try:
        with runstate.stop_signals_held():
            if weights is not None:
                save_weights(weights, new_weights)
            for name, rows in (lines or {}).items():  # predictions/<split>.jsonl, each in one rename
                predictions.write(run_dir, name, rows)
            runs.write_json(run_dir / runs.RESULT_FILE, result)
            if weights is not None:
                new_weights.replace(run_dir / WEIGHTS_FILE)
    except OSError as exc:
        raise UserError(
            f"could not save the results ({exc.strerror or exc}) in {run_dir}: free disk space or fix permissions, "
            "then run the same command again"
        ) from None


def pelt_summary(cfg) -> dict:
    """The enabled submodules with their options, and the gate pooling: what the method really was."""
    if cfg.method.finetune:
        return {}
    options = config_mod.to_dict(cfg)["pelt"]
    enabled = {name: opts for name, opts in options.items() if isinstance(opts, dict) and opts.get("enabled")}
    return {"gate_pooling": options["gate_pooling"], "submodules": enabled}


def eval_run(run_dir: Path, outputs: Path, split: str) -> tuple[dict, dict, dict]:
    """Rebuild the model on a fresh backbone, load the run's weights, evaluate.
    (metrics, stored metrics, {split: identical | differs | missing} for predictions/<split>.jsonl)."""
    stored = runs.require_finished(run_dir)
    if not (run_dir / WEIGHTS_FILE).is_file():
        raise UserError(
            f"{run_dir} kept no weights (full fine-tuning saves them only with train.save_full_weights=true): "
            "rerun it with that override to evaluate it later"
        )
    cfg = runs.load_config(run_dir)
    spec, data, model, args = setup(cfg, outputs)
    load_saved_tensors(model, run_dir / WEIGHTS_FILE)
    encs = {"dev": data.dev} if split == "dev" else data.tests
    metrics, _, logits = evaluate_with_gates(model, encs, args)
    same = {
        name: predictions.compare(run_dir, name, rows)
        for name, rows in prediction_lines(data, encs, logits, args).items()
    }
    return metrics, {name: stored.get(name) for name in metrics}, same
