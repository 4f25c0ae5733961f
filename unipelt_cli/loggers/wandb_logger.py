"""logger=wandb: one W&B run per unipelt run, its files in <run>/wandb/. Online when you are logged
in; offline (local run files, `wandb sync <run>/wandb/offline-run-*` later) with WANDB_MODE=offline
or logger.wandb.mode=offline. A sweep's runs share the W&B group named after the sweep's id.
Config: the resolved config. History: train/loss, train/lr, gate means per step, dev/<metric> per
evaluation; summary: test/<metric>; files: result.json, config.yaml, train.log, predictions."""

from __future__ import annotations

import shutil
from pathlib import Path


class WandbLogger:
    def __init__(self, project: str = "unipelt", entity: str | None = None, mode: str | None = None):
        self.project, self.entity, self.mode = project, entity, mode
        self.run = None

    def start(self, ctx) -> None:
        import wandb

        cfg = ctx.config
        try:
            self.run = self._init(wandb, ctx, cfg)
        except wandb.errors.UsageError as exc:
            from unipelt_cli.errors import UserError

            raise UserError(
                f"W&B: {str(exc).splitlines()[0].rstrip('.')}: run `wandb login`, "
                "or log offline with WANDB_MODE=offline (or logger.wandb.mode=offline)"
            ) from None

    def _init(self, wandb, ctx, cfg):
        return wandb.init(
            project=self.project,
            entity=self.entity,
            mode=self.mode,
            group=ctx.group or None,
            name=ctx.run_dir.name,
            dir=str(ctx.run_dir),
            config={k: v for k, v in cfg.items() if k != "logger"},
            tags=[str(cfg[key]["name"]) for key in ("task", "method") if cfg.get(key, {}).get("name")],
            reinit="create_new",  # a sweep's workers train many runs in one process
            settings=wandb.Settings(silent=True, console="off"),
        )

    def log_step(self, step: int, values: dict) -> None:
        self.run.log(values, step=step)

    def log_eval(self, step: int, values: dict) -> None:
        self.run.log(values, step=step)

    def finish(self, result: dict, files: list) -> None:
        from unipelt_cli.loggers import test_values

        self.run.summary.update({**test_values(result), "best_step": result["best_step"]})
        folder = Path(self.run.dir)  # what is in the run's files folder is synced with the run
        for path in files:
            target = folder / path.parent.name / path.name if path.parent.name == "predictions" else folder / path.name
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, target)

    def close(self, failed: bool) -> None:
        if self.run is not None:
            self.run.finish(exit_code=1 if failed else 0)
            self.run = None
