"""logger=mlflow: one MLflow run per unipelt run, through MlflowClient (no global active run).

    tracking_uri: null  -> a local store in the outputs folder: sqlite:///<outputs>/mlflow.db with
                           artifacts in <outputs>/mlartifacts (`mlflow ui --backend-store-uri
                           sqlite:///outputs/mlflow.db`); MLflow 3 keeps its file store only in
                           maintenance mode, so the local default is its sqlite store
    experiment          -> the experiment's name; a sweep's runs go to "<experiment> sweep <sweep id>"
Params: the resolved config, flattened (train.lr, pelt.lora.rank, ...). Metrics: train/loss and
train/lr per step; dev/<metric> and the gate means per evaluation; test/<metric> at the selected
step. MLflow's store costs ~0.08 ms a metric on 2 CPUs, so the 18 gate means of every step (kept by
csv, tensorboard and wandb) would add ~1.5% to a MiniLM step: here they are the evaluation step's.
Metrics are buffered and sent in batches (see FLUSH_SECONDS), so a step costs no round trip. Artifacts:
result.json, config.yaml, train.log and predictions/.

A sqlite store is written under an exclusive flock on <db>.lock: a sweep's workers start at the same
instant, and two MLflow clients creating one database race in its schema migration and leave it
half-built for every later run; sqlite's own locking does not cover that.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import time
from pathlib import Path

from unipelt_cli import trees

BATCH = 1000  # MLflow's limit of metrics per log_batch call
# A call costs ~15 ms whatever its size (the sqlite store, 2 CPUs), a metric ~0.08 ms: send full
# batches, and at an evaluation only when the last send is this old, so the UI stays nearly live.
FLUSH_SECONDS = 30
PARAMS = 100  # and of params


def flatten(tree: dict) -> dict[str, str]:
    return {name: str(value)[:6000] for name, value in trees.dotted(tree).items()}


class MlflowLogger:
    def __init__(self, tracking_uri: str | None = None, experiment: str = "unipelt"):
        self.tracking_uri = tracking_uri
        self.experiment = experiment
        self.client = None
        self.pending: list = []
        self.gates: dict = {}
        self.lock_path: Path | None = None

    def start(self, ctx) -> None:
        outputs = ctx.outputs.expanduser().resolve()
        uri = self.tracking_uri or f"sqlite:///{outputs / 'mlflow.db'}"
        self.lock_path = sqlite_lock(uri)
        with self.locked():
            self._start(ctx, uri, outputs)

    @contextlib.contextmanager
    def locked(self):
        """Exclusive use of a sqlite store among processes (see the module docstring); no-op otherwise."""
        if self.lock_path is None:
            yield
            return
        fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # closing drops the flock

    def _start(self, ctx, uri: str, outputs: Path) -> None:
        from mlflow.entities import Metric, Param
        from mlflow.tracking import MlflowClient

        logging.getLogger("mlflow").setLevel(logging.WARNING)  # after the import, which sets INFO
        logging.getLogger("alembic").setLevel(logging.WARNING)

        self.client = MlflowClient(tracking_uri=uri)
        self.Metric, self.flushed = Metric, time.monotonic()
        name = f"{self.experiment} sweep {ctx.group}" if ctx.group else self.experiment
        found = self.client.get_experiment_by_name(name)
        if found is not None:
            experiment_id = found.experiment_id
        else:
            artifacts = (outputs / "mlartifacts").as_uri() if self.tracking_uri is None else None
            experiment_id = self.client.create_experiment(name, artifact_location=artifacts)
        cfg = ctx.config
        tags = {"run_dir": str(ctx.run_dir.resolve()), "sweep": ctx.group}
        tags |= {key: str(cfg[key]["name"]) for key in ("task", "method", "backbone", "budget") if key in cfg}
        tags["seed"] = str(cfg.get("seed"))
        self.run_id = self.client.create_run(experiment_id, run_name=ctx.run_dir.name, tags=tags).info.run_id
        params = [Param(k, v) for k, v in flatten({k: v for k, v in cfg.items() if k != "logger"}).items()]
        for i in range(0, len(params), PARAMS):
            self.client.log_batch(self.run_id, params=params[i : i + PARAMS])

    def log_step(self, step: int, values: dict) -> None:
        self.gates = values  # gate means go in at the next evaluation's step (see the module docstring)
        self._add(step, {k: v for k, v in values.items() if not k.startswith("gate/")})

    def _add(self, step: int, values: dict) -> None:
        now = int(time.time() * 1000)
        self.pending.extend(self.Metric(key, float(value), now, step) for key, value in values.items())
        if len(self.pending) >= BATCH:
            self.flush()

    def log_eval(self, step: int, values: dict) -> None:
        self._add(step, {**{k: v for k, v in self.gates.items() if k.startswith("gate/")}, **values})
        self.gates = {}
        if time.monotonic() - self.flushed > FLUSH_SECONDS:
            self.flush()

    def flush(self) -> None:
        self.flushed = time.monotonic()
        pending, self.pending = self.pending, []
        with self.locked():
            for i in range(0, len(pending), BATCH):
                self.client.log_batch(self.run_id, metrics=pending[i : i + BATCH])

    def finish(self, result: dict, files: list) -> None:
        from unipelt_cli.loggers import test_values

        self.log_eval(result["best_step"], test_values(result))
        for path in files:
            folder = "predictions" if path.parent.name == "predictions" else None
            self.client.log_artifact(self.run_id, str(path), artifact_path=folder)

    def close(self, failed: bool) -> None:
        if self.client is None or not hasattr(self, "run_id"):
            return
        self.flush()
        with self.locked():
            self.client.set_terminated(self.run_id, "FAILED" if failed else "FINISHED")
        self.client = None


def sqlite_lock(uri: str) -> Path | None:
    """The lock file beside a sqlite store's database (sqlite:///<path>), None for any other store."""
    if not uri.startswith("sqlite:///"):
        return None
    db = Path(uri.removeprefix("sqlite:///"))
    db.parent.mkdir(parents=True, exist_ok=True)
    return db.with_name(db.name + ".lock")
