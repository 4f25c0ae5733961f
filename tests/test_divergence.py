"""A NaN or infinite loss stops the run with status `diverged`: recorded, one line, never a crash
(the sweep side: test_sweep_runs.py)."""

from __future__ import annotations

import json

from conftest import tiny_overrides

from unipelt_cli.cli import main

BLOW_UP = "train.lr=1e30"  # the first AdamW step makes weights ~1e30: attention scores overflow to inf/NaN


def state(run_dir):
    return json.loads((run_dir / "status.json").read_text())


def test_train_stops_with_status_diverged(tmp_path, tiny_backbone, tiny_glue, capsys):
    code = main(["train", "-q", "--outputs", str(tmp_path), *tiny_overrides(tiny_backbone, tiny_glue, BLOW_UP)])
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert code == 2 and len(err) == 1 and "run diverged (loss became" in err[0] and "lower train.lr" in err[0]
    (run_dir,) = (tmp_path / "runs").iterdir()
    status = state(run_dir)
    assert status["state"] == "diverged" and status["error"].startswith("loss became")
    assert not (run_dir / "result.json").exists()
