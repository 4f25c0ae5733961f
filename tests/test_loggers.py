"""logger=: each tracker's files read back with the tool's own reader equal result.json's history."""

from __future__ import annotations

import csv
import importlib.util
import json
from pathlib import Path

import pytest
from conftest import tiny_overrides, write_tiny_glue
from typer.testing import CliRunner

from unipelt_cli.cli import app

HAVE = {name: importlib.util.find_spec(name) is not None for name in ("tensorboard", "mlflow", "wandb")}
STEPS = 15  # 40 rows / batch 8 = 5 steps an epoch, 3 epochs; one dev evaluation per epoch


def needs(package: str):
    why = f"{package} is not installed: pip install 'unipelt-cli[{package}]'"
    return pytest.mark.skipif(not HAVE[package], reason=why)


@pytest.fixture(scope="module")
def logged(tmp_path_factory, tiny_backbone) -> tuple[Path, dict, Path]:
    """One tiny gated run with every installed tracker at once: (run folder, result, outputs)."""
    root = tmp_path_factory.mktemp("loggers")
    glue = write_tiny_glue(root / "glue")
    names = ["csv", *(name for name, ok in HAVE.items() if ok)]
    outputs = root / "out"
    mp = pytest.MonkeyPatch()
    mp.setenv("WANDB_MODE", "offline")
    mp.setenv("WANDB_DIR", str(root))  # wandb's own settings and caches stay in the test's folder
    mp.setenv("WANDB_CONFIG_DIR", str(root / "wandb-config"))
    mp.setenv("WANDB_CACHE_DIR", str(root / "wandb-cache"))
    try:
        args = ["train", "--quiet", "--outputs", str(outputs), f"logger=[{','.join(names)}]"]
        result = CliRunner().invoke(app, [*args, *tiny_overrides(tiny_backbone, glue, "method=unipelt_apl")])
    finally:
        mp.undo()
    assert result.exit_code == 0, result.output
    (run,) = (outputs / "runs").iterdir()
    return run, json.loads((run / "result.json").read_text()), outputs


def test_csv_has_every_step_and_every_evaluation(logged):
    run, result, _ = logged
    with open(run / "logs" / "steps.csv", newline="") as fh:
        steps = list(csv.DictReader(fh))
    with open(run / "logs" / "evals.csv", newline="") as fh:
        evals = list(csv.DictReader(fh))
    assert [int(r["step"]) for r in steps] == list(range(1, STEPS + 1))
    gates = [k for k in steps[0] if k.startswith("gate/")]
    assert len(gates) == 8  # 2 layers x (adapter, prefix, lora_q, lora_v)
    for g in gates:  # each step's gate value: it starts near 0.5 (w ~ N(0, 0.02), b = 0) and moves as it trains
        values = [float(r[g]) for r in steps]
        assert abs(values[0] - 0.5) < 0.05 and len(set(values)) > 1
    assert float(steps[0]["train/lr"]) == pytest.approx(1e-3)  # warm-up of 6% of 15 steps is 0 steps
    by_step = {int(r["step"]): r for r in steps}
    history = result["history"]
    assert [int(r["step"]) for r in evals] == [h["step"] for h in history] == [5, 10, 15]
    for row, h in zip(evals, history, strict=True):
        assert float(row["dev/accuracy"]) == h["dev"]["accuracy"]
        assert float(by_step[h["step"]]["train/loss"]) == h["loss"]


@needs("tensorboard")
def test_tensorboard_events_read_back(logged):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    run, result, _ = logged
    events = EventAccumulator(str(run / "tensorboard"))
    events.Reload()
    tags = events.Tags()["scalars"]
    assert {"train/loss", "train/lr", "dev/accuracy", "test/accuracy", "gate/adapter/layer0"} <= set(tags)
    dev = events.Scalars("dev/accuracy")
    assert [e.step for e in dev] == [h["step"] for h in result["history"]]
    assert [e.value for e in dev] == pytest.approx([h["dev"]["accuracy"] for h in result["history"]], rel=1e-6)
    loss = {e.step: e.value for e in events.Scalars("train/loss")}
    assert len(loss) == STEPS
    assert [loss[h["step"]] for h in result["history"]] == pytest.approx([h["loss"] for h in result["history"]])
    (test,) = events.Scalars("test/accuracy")
    assert (test.step, test.value) == (result["best_step"], pytest.approx(result["test"]["accuracy"]))


@needs("mlflow")
def test_mlflow_run_read_back_with_its_client(logged):
    from mlflow.tracking import MlflowClient

    run, result, outputs = logged
    client = MlflowClient(tracking_uri=f"sqlite:///{outputs.resolve() / 'mlflow.db'}")
    (found,) = client.search_runs([client.get_experiment_by_name("unipelt").experiment_id])
    assert found.info.run_name == run.name and found.info.status == "FINISHED"
    assert found.data.params["train.lr"] == "0.001" and found.data.params["task.name"] == "sst2"
    dev = client.get_metric_history(found.info.run_id, "dev/accuracy")
    assert [(m.step, m.value) for m in dev] == [(h["step"], h["dev"]["accuracy"]) for h in result["history"]]
    loss = {m.step: m.value for m in client.get_metric_history(found.info.run_id, "train/loss")}
    assert len(loss) == STEPS and all(loss[h["step"]] == h["loss"] for h in result["history"])
    assert found.data.metrics["test/accuracy"] == result["test"]["accuracy"]
    gate = client.get_metric_history(found.info.run_id, "gate/adapter/layer0")  # per evaluation in MLflow
    assert [m.step for m in gate] == [h["step"] for h in result["history"]]
    files = {f.path for f in client.list_artifacts(found.info.run_id)}
    assert {"result.json", "config.yaml", "train.log"} <= files
    local = client.download_artifacts(found.info.run_id, "result.json", str(outputs.parent))
    assert json.loads(Path(local).read_text()) == result


@needs("wandb")
def test_wandb_offline_run_file_read_back(logged):
    import wandb_files

    run, result, _ = logged
    (path,) = (run / "wandb").glob("offline-run-*/run-*.wandb")
    rows = wandb_files.history(path)
    assert [r["_step"] for r in rows] == list(range(1, STEPS + 1))
    evals = [(r["_step"], r["dev/accuracy"], r["train/loss"]) for r in rows if "dev/accuracy" in r]
    assert evals == [(h["step"], h["dev"]["accuracy"], h["loss"]) for h in result["history"]]
    assert wandb_files.summary(path)["test/accuracy"] == result["test"]["accuracy"]
    assert wandb_files.run_info(path)["name"] == run.name
    assert json.loads((path.parent / "files" / "result.json").read_text()) == result


def test_loggers_do_not_change_the_run_identity():
    from unipelt_cli import config
    from unipelt_cli.identity import digest

    plain = config.compose(["task=rte"])
    logged = config.compose(["task=rte", "logger=[csv,tensorboard,mlflow,wandb]"])
    assert set(logged.logger) == {"csv", "tensorboard", "mlflow", "wandb"}
    assert config.config_hash(plain) == config.config_hash(logged)
    assert digest(config.to_dict(logged), config.neutral_values()) == config.config_hash(plain)


def test_a_missing_tracker_package_is_one_line_naming_the_extra(monkeypatch, tmp_path):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "wandb" else real(name, *a))
    result = CliRunner().invoke(app, ["train", "--outputs", str(tmp_path), "logger=[csv,wandb]"])
    assert result.exit_code == 2
    assert result.output.strip().splitlines() == [
        "error: logger=wandb needs the wandb package, which is not installed: pip install 'unipelt-cli[wandb]'"
    ]
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").glob("*/result.json"))


def test_an_unknown_logger_lists_the_options(tmp_path):
    result = CliRunner().invoke(app, ["train", "--outputs", str(tmp_path), "logger=[csv,neptune]"])
    assert result.exit_code == 2
    assert "unknown logger 'neptune': choose one of csv, mlflow, tensorboard, wandb" in result.output


@needs("mlflow")
def test_a_sweep_is_one_mlflow_experiment(tmp_path, tiny_backbone):
    from mlflow.tracking import MlflowClient

    glue = write_tiny_glue(tmp_path / "glue")
    overrides = [o for o in tiny_overrides(tiny_backbone, glue) if not o.startswith("train.epochs")]
    args = ["sweep", "--quiet", "--outputs", str(tmp_path / "out"), *overrides, "train.max_steps=2", "seed=1,2"]
    result = CliRunner().invoke(app, [*args, "logger=mlflow"])
    assert result.exit_code == 0, result.output
    (sweep,) = (tmp_path / "out" / "sweeps").glob("*/manifest.json")
    client = MlflowClient(tracking_uri=f"sqlite:///{(tmp_path / 'out').resolve() / 'mlflow.db'}")
    experiment = client.get_experiment_by_name(f"unipelt sweep {sweep.parent.name}")
    found = client.search_runs([experiment.experiment_id])
    assert sorted(r.data.tags["seed"] for r in found) == ["1", "2"]


RACE = """
import sys, time
from pathlib import Path
from types import SimpleNamespace
import mlflow.tracking  # imported before the start line, so the processes reach the store together
from unipelt_cli.loggers.mlflow_logger import MlflowLogger
outputs, ready, name = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3]
ctx = SimpleNamespace(outputs=outputs, group="g1", run_dir=outputs / "runs" / name,
                      config={"seed": 1, "task": {"name": "rte"}})
(ready / name).touch()
while len(list(ready.iterdir())) < 4:  # all four imported: start together
    time.sleep(0.01)
logger = MlflowLogger()
logger.start(ctx)
logger.log_eval(1, {"dev/accuracy": 50.0})
logger.close(failed=False)
"""


@needs("mlflow")
def test_parallel_workers_share_one_fresh_mlflow_store(tmp_path):
    """A sweep's workers start together: without the store lock, their MLflow clients race in the
    new database's schema migration and every run fails ("table ... already exists")."""
    import subprocess
    import sys

    from mlflow.tracking import MlflowClient

    outputs, ready = tmp_path / "out", tmp_path / "ready"
    ready.mkdir()
    procs = [
        subprocess.Popen([sys.executable, "-c", RACE, str(outputs), str(ready), f"run{i}"], stderr=subprocess.PIPE)
        for i in range(4)
    ]
    errors = [p.communicate(timeout=120)[1].decode() for p in procs]
    assert [p.returncode for p in procs] == [0] * 4, "\n".join(errors)
    client = MlflowClient(tracking_uri=f"sqlite:///{outputs.resolve() / 'mlflow.db'}")
    (experiment,) = [e for e in client.search_experiments() if e.name == "unipelt sweep g1"]
    found = client.search_runs([experiment.experiment_id])
    assert sorted(r.info.run_name for r in found) == [f"run{i}" for i in range(4)]
    assert {r.info.status for r in found} == {"FINISHED"}
