"""`unipelt export RUN --format peft`: PeftModel.from_pretrained gives the run's logits; other runs get one line."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest
import torch
from conftest import tiny_overrides
from typer.testing import CliRunner

from unipelt_cli.cli import app

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("peft") is None, reason="peft is not installed: pip install 'unipelt-cli[peft]'"
)


def train(tmp_path, backbone, glue, *extra):
    out = tmp_path / "out"
    args = ["train", "--quiet", "--outputs", str(out), *tiny_overrides(backbone, glue, *extra)]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    (run,) = (out / "runs").iterdir()
    return run, out


def test_a_lora_run_loads_in_plain_peft_with_the_same_logits(tmp_path, tiny_backbone, tiny_glue):
    from omegaconf import OmegaConf
    from peft import PeftModel
    from transformers import AutoModelForSequenceClassification

    from unipelt_cli.experiment import load_saved_tensors, setup
    from unipelt_cli.export_peft import _logits

    run, out = train(
        tmp_path, tiny_backbone, tiny_glue, "method=lora", "head.pooling=pooler", "train.lr=1e-2", "train.max_steps=5"
    )
    result = CliRunner().invoke(app, ["export", str(run), "--format", "peft", "--out", str(tmp_path / "peft")])
    assert result.exit_code == 0, result.output
    assert "as a PEFT adapter" in result.output
    folder = tmp_path / "peft"
    assert {"adapter_config.json", "adapter_model.safetensors"} <= {p.name for p in folder.iterdir()}

    cfg = OmegaConf.load(run / "config.yaml")
    cfg.train.precision = "fp32"
    _, data, ours, _ = setup(cfg, out)
    load_saved_tensors(ours, run / "weights.safetensors")
    batch = data.tests["test"].subset(np.arange(16))
    expected = _logits(ours.eval(), batch)

    # what a PEFT user writes: the base model from the hub or a folder, then the adapter
    base = AutoModelForSequenceClassification.from_pretrained(str(tiny_backbone), num_labels=2)
    plain = _logits(base.eval(), batch)
    loaded = _logits(PeftModel.from_pretrained(base, str(folder)).eval(), batch)
    assert (loaded - expected).abs().max() < 1e-5
    assert (plain - expected).abs().max() > 1e-3  # the adapter and the trained head matter
    assert torch.equal(loaded.argmax(-1), expected.argmax(-1))


def test_runs_peft_cannot_represent_get_one_line_naming_format_hf(tmp_path, tiny_backbone, tiny_glue):
    run, _ = train(tmp_path, tiny_backbone, tiny_glue, "method=unipelt_apl", "train.max_steps=1")
    result = CliRunner().invoke(app, ["export", str(run), "--format", "peft"])
    assert result.exit_code == 2
    (line,) = result.output.strip().splitlines()
    assert line.startswith("error: this run uses adapter (gated), lora (gated), prefix (gated), which PEFT cannot")
    assert "--format hf" in line
    bad = CliRunner().invoke(app, ["export", str(run), "--format", "onnx"])
    assert bad.exit_code == 2 and "use --format hf or --format peft" in bad.output
