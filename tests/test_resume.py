"""Checkpoints and --resume: a run stopped after a checkpoint and resumed ends with exactly the
metrics of a run that was never stopped; damaged checkpoints and failed saves never lose results."""

from __future__ import annotations

import errno
import json

import pytest
from conftest import tiny_overrides
from typer.testing import CliRunner

from unipelt_cli import checkpoint, config, runs
from unipelt_cli.cli import app
from unipelt_cli.errors import UserError
from unipelt_cli.experiment import train_run

LONG = ("train.epochs=6", "train.patience=100", "runtime.checkpoint_every=4", "train.eval_every=3")


class Reporter:
    """A quiet reporter that can stop the run (like Ctrl-C or a kill) at a given step."""

    def __init__(self, stop_at: int | None = None):
        self.stop_at, self.notes = stop_at, []

    def start(self, *args):
        pass

    def note(self, text):
        self.notes.append(text)

    def step(self, step, total, loss):
        if step == self.stop_at:
            raise KeyboardInterrupt

    def evaluation(self, record):
        pass


def run(out, cfg, reporter, resume=False):
    run_dir = out / "runs" / runs.run_name(cfg, config.config_hash(cfg))
    runs.prepare(run_dir)
    return run_dir, train_run(cfg, run_dir, out, reporter, resume=resume)


@pytest.mark.parametrize("method", ["finetune", "unipelt_apl"])
def test_resumed_run_equals_uninterrupted_run(tmp_path, tiny_backbone, tiny_glue, method):
    cfg = config.compose(tiny_overrides(tiny_backbone, tiny_glue, f"method={method}", *LONG))
    _, whole = run(tmp_path / "a", cfg, Reporter())
    out = tmp_path / "b"
    with pytest.raises(KeyboardInterrupt):
        run(out, cfg, Reporter(stop_at=19))  # 6 epochs x 5 steps = 30; checkpoints at 4, 8, 12, 16
    run_dir = out / "runs" / whole["run_id"]
    assert json.loads((run_dir / "status.json").read_text())["state"] == "interrupted"
    assert checkpoint.load(run_dir / checkpoint.FILE)["step"] == 16
    reporter = Reporter()
    _, resumed = run(out, cfg, reporter, resume=True)
    assert reporter.notes == ["resuming from the checkpoint at step 16"]
    for key in ("dev", "test", "best_step", "steps", "history", "stopped_early"):
        assert resumed[key] == whole[key], key
    assert not (run_dir / checkpoint.FILE).exists()  # removed once the run is done


def test_resume_without_checkpoint_starts_from_the_beginning(tmp_path, tiny_backbone, tiny_glue):
    cfg = config.compose(tiny_overrides(tiny_backbone, tiny_glue, "train.epochs=1"))
    reporter = Reporter()
    _, result = run(tmp_path, cfg, reporter, resume=True)
    assert reporter.notes == ["no checkpoint: from the start"] and result["steps"] == 5


def test_damaged_checkpoint_is_reported_not_ignored(tmp_path):
    path = tmp_path / checkpoint.FILE
    path.write_bytes(b"not a checkpoint")
    with pytest.raises(UserError, match="checkpoint.pt is not a checkpoint this run wrote .*rerun with --force"):
        checkpoint.load(path)


def test_checkpoint_refuses_pickled_code(tmp_path, capsys):
    import pickle

    class Evil:
        def __reduce__(self):
            return (print, ("code ran",))

    path = tmp_path / checkpoint.FILE
    path.write_bytes(pickle.dumps({"step": Evil()}))
    with pytest.raises(UserError, match="not a torch file of plain tensors"):
        checkpoint.load(path)  # weights_only=True refuses it
    assert "code ran" not in capsys.readouterr().out


def test_checkpoint_of_other_keys_is_refused(tmp_path):
    import torch

    path = tmp_path / checkpoint.FILE
    torch.save({"step": 3, "trained": {}}, path)  # a plain torch file, but not this loop's state
    with pytest.raises(UserError, match=r"missing bad_evals, batches_done, best, best_state"):
        checkpoint.load(path)


def test_cli_resume_and_force_conflict(tmp_path, tiny_backbone, tiny_glue):
    args = ["train", "--outputs", str(tmp_path), "--force", "--resume", *tiny_overrides(tiny_backbone, tiny_glue)]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 2 and "pass one of them" in result.output


def test_failed_save_keeps_the_previous_result(tmp_path, tiny_backbone, tiny_glue, monkeypatch):
    overrides = tiny_overrides(tiny_backbone, tiny_glue, "method=lora", "train.epochs=1")
    out = tmp_path / "out"
    first = CliRunner().invoke(app, ["train", "--quiet", "--outputs", str(out), *overrides])
    assert first.exit_code == 0, first.output
    (run_dir,) = (out / "runs").iterdir()
    before = {name: (run_dir / name).read_bytes() for name in ("result.json", "weights.safetensors")}

    write_json = runs.write_json

    def disk_full(path, data):
        if path.name == "result.json":
            raise OSError(errno.ENOSPC, "No space left on device")
        write_json(path, data)

    monkeypatch.setattr(runs, "write_json", disk_full)
    again = CliRunner().invoke(app, ["train", "--quiet", "--force", "--outputs", str(out), *overrides])
    assert again.exit_code == 2
    assert again.output.strip().splitlines()[-1].startswith("error: could not save the results (No space left")
    assert "Traceback" not in again.output
    assert {name: (run_dir / name).read_bytes() for name in before} == before
    assert not list(run_dir.glob(".*.new"))
    status = json.loads((run_dir / "status.json").read_text())
    assert status["state"] == "failed" and status["error"].startswith("could not save the results")
