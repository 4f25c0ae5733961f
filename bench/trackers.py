"""What the trackers (logger=..., unipelt_cli/loggers) add to a train step.

The same UniPELT APL model and batches (the gated preset: the trackers also read every gate's
mean each step) stepped with and without every installed tracker at once (csv always; tensorboard,
mlflow and wandb offline when installed); each pass ends with a dev-evaluation record, so MLflow's
buffered batch is sent as often as it would be with an evaluation every BATCHES steps. Rounds
interleave the two, so machine load hits both alike.
"""

from __future__ import annotations

import importlib.util
import os
import tempfile
import time
from pathlib import Path

from bench.common import BATCHES, build, spread, train_batches
from bench.steps import Stepper, interleaved
from unipelt_cli import config
from unipelt_cli.loggers import Context, Loggers


class LoggedStepper(Stepper):
    """Stepper plus what the training loop does for the trackers: loss and lr to loggers.step."""

    def __init__(self, model, args, batches, loggers: Loggers | None):
        super().__init__(model, args, batches)
        self.loggers = loggers
        self.n = 0
        self.in_loggers = 0.0  # seconds inside the trackers' calls: the overhead measured directly

    def step(self) -> None:
        super().step()
        self.n += 1
        loss = self.last_loss.item()
        if self.loggers is not None:
            t0 = time.perf_counter()
            self.loggers.step(self.n, loss, self.optimizer.param_groups[0]["lr"])
            self.in_loggers += time.perf_counter() - t0

    def one_pass(self) -> None:
        super().one_pass()
        if self.loggers is not None:
            t0 = time.perf_counter()
            self.loggers.evaluation({"step": self.n, "dev": {"accuracy": 50.0}})
            self.in_loggers += time.perf_counter() - t0


def trackers() -> list[str]:
    found = [name for name in ("tensorboard", "mlflow", "wandb") if importlib.util.find_spec(name)]
    return ["csv", *found]


def overhead(rounds: int) -> dict:
    names = trackers()
    os.environ.setdefault("WANDB_MODE", "offline")
    folder = Path(tempfile.mkdtemp(prefix="bench-loggers-"))
    cfg = config.compose(["task=sst2", "method=unipelt_apl", f"logger=[{','.join(names)}]"])
    steppers = {}
    batches = None
    for name in ("without", "with"):
        _, data, model, args = build("task=sst2", "method=unipelt_apl")
        batches = batches or train_batches(data, args, BATCHES)
        loggers = None
        if name == "with":
            loggers = Loggers(cfg.logger, Context(folder / "run", folder, config.to_dict(cfg), "bench"))
            (folder / "run").mkdir(exist_ok=True)
            loggers.start(model)
        steppers[name] = LoggedStepper(model, args, batches, loggers)
        steppers[name].one_pass()  # warm-up
    logged = steppers["with"]
    logged.in_loggers, n0 = 0.0, logged.n
    times = interleaved(steppers, rounds)
    t0 = time.perf_counter()
    logged.loggers.close(failed=False)  # what is still buffered is written here: part of the cost
    inside = (logged.in_loggers + time.perf_counter() - t0) / (logged.n - n0)
    base, with_ = spread(times["without"]), spread(times["with"])
    return {"trackers": names, "without": base, "with": with_, "inside": inside,
            "overhead": with_["median"] / base["median"] - 1}  # fmt: skip
