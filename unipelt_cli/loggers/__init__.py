"""Experiment trackers, chosen with the `logger=` config group (conf/logger/<name>.yaml), as in
lightning-hydra-template:

    logger=csv                         <run>/logs/steps.csv and evals.csv
    logger=[csv,tensorboard]           several at once (Hydra's list of a group's options)
    logger=mlflow logger.mlflow.tracking_uri=http://host:5000

A run always writes its own files (result.json, train.log); trackers are extra copies for the
tools researchers browse. They are bookkeeping: the `logger` key is not part of a run's identity,
so adding a tracker never makes a finished run train again.

Each tracker is one file in this package with a class registered in TRACKERS by name. It gets
  start(ctx)              ctx: run folder, outputs folder, resolved config (dict), group (a sweep's id)
  log_step(step, values)  after every train step: train/loss, train/lr, gate/<submodule>/layer<L>
  log_eval(step, values)  every dev evaluation: dev/<metric>
  finish(result, files)   test/<metric> at the selected step; the run's result files
  close(failed)           always last
Tracker packages are optional extras; a missing one is a one-line error naming the extra.
"""

from __future__ import annotations

import importlib
import importlib.util
from dataclasses import dataclass
from pathlib import Path

from unipelt_cli.errors import UserError

# name -> (module in this package, class, the package it needs or None, the pip extra that installs it)
TRACKERS = {
    "csv": ("csv_logger", "CsvLogger", None, None),
    "tensorboard": ("tensorboard_logger", "TensorBoardLogger", "tensorboard", "tensorboard"),
    "mlflow": ("mlflow_logger", "MlflowLogger", "mlflow", "mlflow"),
    "wandb": ("wandb_logger", "WandbLogger", "wandb", "wandb"),
}


@dataclass
class Context:
    run_dir: Path
    outputs: Path
    config: dict  # the resolved config
    group: str = ""  # the sweep's id when the run is part of one


def chosen(logger_cfg) -> dict[str, dict]:
    """{name: options} from the config's `logger` node (None: no tracker)."""
    if not logger_cfg:
        return {}
    options = dict(logger_cfg)
    unknown = [name for name in options if name not in TRACKERS]
    if unknown:
        raise UserError(f"unknown logger '{unknown[0]}': choose from {', '.join(TRACKERS)} (see: unipelt ls logger)")
    return {name: dict(opts or {}) for name, opts in options.items()}


def check_installed(logger_cfg) -> None:
    """One line naming the extra when a chosen tracker's package is missing (before anything runs)."""
    for name in chosen(logger_cfg):
        _, _, package, extra = TRACKERS[name]
        if package and importlib.util.find_spec(package) is None:
            raise UserError(
                f"logger={name} needs the {package} package, which is not installed: pip install 'unipelt-cli[{extra}]'"
            )


class Loggers:
    """Every chosen tracker behind one object; with none chosen each call does nothing."""

    def __init__(self, logger_cfg, ctx: Context):
        check_installed(logger_cfg)
        self.ctx = ctx
        self.trackers = []
        for name, opts in chosen(logger_cfg).items():
            module, cls, _, _ = TRACKERS[name]
            tracker_cls = getattr(importlib.import_module(f"{__name__}.{module}"), cls)
            try:
                self.trackers.append(tracker_cls(**opts))
            except TypeError as exc:
                raise UserError(f"bad logger.{name} options ({exc}): see conf/logger/{name}.yaml") from None
        self.gates = None

    def __bool__(self) -> bool:
        return bool(self.trackers)

    def start(self, model=None) -> None:
        if not self.trackers:
            return
        if model is not None:
            from unipelt_cli.loggers.gates import GateMeans

            self.gates = GateMeans.watch(model)
        for tracker in self.trackers:
            tracker.start(self.ctx)

    def step(self, step: int, loss: float, lr: float) -> None:
        if not self.trackers:
            return
        values = {"train/loss": loss, "train/lr": lr}
        if self.gates is not None:
            values.update(self.gates.means())
        for tracker in self.trackers:
            tracker.log_step(step, values)

    def evaluation(self, record: dict) -> None:
        values = {f"dev/{name}": value for name, value in record["dev"].items()}
        for tracker in self.trackers:
            tracker.log_eval(record["step"], values)

    def finish(self, result: dict) -> None:
        """The test metrics (at the selected step) and the run's result files, then close."""
        if not self.trackers:
            return
        run_dir = self.ctx.run_dir
        files = [run_dir / name for name in ("result.json", "config.yaml", "train.log") if (run_dir / name).is_file()]
        files += sorted((run_dir / "predictions").glob("*.jsonl"))
        for tracker in self.trackers:
            tracker.finish(result, files)
        self.close(failed=False)

    def close(self, failed: bool = True) -> None:
        if self.gates is not None:
            self.gates.remove()
            self.gates = None
        trackers, self.trackers = self.trackers, []
        for tracker in trackers:
            tracker.close(failed)


def test_values(result: dict) -> dict[str, float]:
    """test/<metric> (and test_mismatched/<metric> for MNLI) from a result."""
    out = {}
    for split, metrics in result.items():
        if split.startswith("test") and isinstance(metrics, dict):
            out.update({f"{split}/{name}": value for name, value in metrics.items()})
    return out


def check_overrides(overrides: list[str]) -> None:
    """`unipelt sweep ... logger=[mlflow,csv]`: the missing-package error once, before any job runs."""
    for ov in overrides:
        key, _, value = ov.lstrip("+~").partition("=")
        if key == "logger" and value not in ("", "null"):
            check_installed({name: {} for name in value.strip("[]").split(",") if name})
