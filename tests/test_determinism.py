"""The same config and seeds give bit-identical metrics in two fresh processes (CPU, default precision)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from conftest import tiny_overrides


@pytest.mark.parametrize("method", ["unipelt_apl", "finetune"])
def test_two_fresh_processes_agree_bit_for_bit(tmp_path, tiny_backbone, tiny_glue, method):
    overrides = tiny_overrides(tiny_backbone, tiny_glue, f"method={method}", "train.epochs=2", "train.eval_every=2")
    results = []
    for name in ("a", "b"):
        out = tmp_path / name
        cmd = [sys.executable, "-m", "unipelt_cli", "train", "--quiet", "--outputs", str(out), *overrides]
        proc = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
        assert proc.returncode == 0, proc.stderr
        (path,) = (out / "runs").glob("*/result.json")
        results.append(json.loads(path.read_text()))
    a, b = results
    assert a["precision"] == b["precision"]
    for key in ("dev", "test", "history", "best_step", "gates"):
        assert a[key] == b[key], key  # floats compared exactly, history holds every loss and dev metric
    assert len(a["history"]) == 5
