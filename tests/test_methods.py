"""Every method preset trains end to end on a tiny model, saves only what it trained, and
`unipelt eval` rebuilds it on a fresh backbone with the identical test metric."""

from __future__ import annotations

import json

import pytest
from conftest import tiny_overrides
from safetensors.torch import load_file
from typer.testing import CliRunner

from unipelt_cli import config
from unipelt_cli.cli import app

METHODS = config.groups()["method"]
PAPER_METHODS = {
    "finetune", "bitfit", "adapter", "prefix", "lora",
    "unipelt_ap", "unipelt_apl", "unipelt_ap_nogate", "unipelt_apl_nogate",
}  # fmt: skip


UNIFIED_VIEW = {  # He et al. 2022, (IA)^3, DoRA and the gated mixes: preset -> {submodule: gated}
    "parallel_adapter": {"parallel_adapter": False},
    "scaled_parallel_adapter": {"parallel_adapter": False},
    "mam": {"prefix": False, "parallel_adapter": False},
    "unipelt_mam": {"prefix": True, "parallel_adapter": True},
    "ia3": {"ia3": False},
    "dora": {"lora": False},
    "unipelt_apli": {"adapter": True, "prefix": True, "lora": True, "ia3": True},
}


def test_presets_cover_the_paper():
    assert PAPER_METHODS | set(UNIFIED_VIEW) <= set(METHODS)


@pytest.mark.parametrize("method", sorted(UNIFIED_VIEW))
def test_unified_view_preset_composition(method):
    opts = config.pelt_options(config.compose([f"method={method}"]))
    assert {n: o.gate for n, o in opts.items() if o.enabled} == UNIFIED_VIEW[method]
    if "parallel_adapter" in UNIFIED_VIEW[method]:
        pa = opts["parallel_adapter"]
        assert (pa.placement, pa.bottleneck, pa.scale) == (["ffn"], 512, 1.0 if method == "parallel_adapter" else 4.0)
    if "mam" in method:
        assert opts["prefix"].length == 30
    assert opts["lora"].dora == (method == "dora")


@pytest.mark.parametrize("method", sorted(PAPER_METHODS - {"finetune"}))
def test_preset_composition(method):
    cfg = config.compose([f"method={method}"])
    opts = config.pelt_options(cfg)
    enabled = {name for name, o in opts.items() if o.enabled}
    letters = {"adapter": "a", "prefix": "p", "lora": "l"}
    if method.startswith("unipelt"):
        want = {name for name, c in letters.items() if c in method.split("_")[1]}
        assert enabled == want
        assert all(opts[name].gate == ("nogate" not in method) for name in enabled)
    else:
        assert enabled == {method}
        assert all(getattr(opts[name], "gate", False) is False for name in enabled)  # baselines: no gate
    assert not cfg.method.finetune


def gate_stats_from_saved_weights(run_dir, outputs) -> dict:
    from unipelt_cli import experiment, runs

    cfg = runs.load_config(run_dir)
    _, data, model, args = experiment.setup(cfg, outputs)
    experiment.load_saved_tensors(model, run_dir / "weights.safetensors")
    _, stats, _ = experiment.evaluate_with_gates(model, {"test": data.tests["test"]}, args)
    return stats["test"]


def run(*args):
    result = CliRunner().invoke(app, [str(a) for a in args])
    assert result.exit_code == 0, result.output
    return result


@pytest.mark.parametrize("method", sorted(set(METHODS) - {"finetune"}))
def test_method_trains_saves_and_reloads(tmp_path, tiny_backbone, tiny_glue, method):
    out = tmp_path / "out"
    run("train", "-q", "--outputs", out, *tiny_overrides(tiny_backbone, tiny_glue, f"method={method}"))
    (run_dir,) = (out / "runs").iterdir()
    result = json.loads((run_dir / "result.json").read_text())
    assert result["method"] == method
    params = result["params"]
    saved = load_file(str(run_dir / "weights.safetensors"))
    assert sum(t.numel() for t in saved.values()) == params["stored"] == result["trainable_params"]
    pelt_keys = {k for k in saved if k.startswith("pelt.")}
    head_keys = {k for k in saved if k.startswith(("classifier.", "bert.pooler."))}
    bias_keys = set(saved) - pelt_keys - head_keys
    assert {k.split(".")[1] for k in pelt_keys} == set(result["pelt"]["submodules"]) - {"bitfit"}
    assert "classifier.weight" in saved and "classifier.bias" in saved
    assert all(k.endswith("bias") for k in bias_keys) and bool(bias_keys) == (method == "bitfit")
    if "prefix" in result["pelt"]["submodules"]:
        assert not any("mlp" in k or "embedding" in k for k in pelt_keys)  # saved as fixed vectors
    gated = [n for n, o in result["pelt"]["submodules"].items() if o.get("gate")]
    if gated:
        layer0 = result["gates"]["test"]["0"]
        assert all(v["n"] == 24 and v["std"] > 0 for v in layer0.values())  # a gate reads each example
        # the stored statistics are the gates of the saved weights on the 24 test rows, to the bit
        assert gate_stats_from_saved_weights(run_dir, out) == result["gates"]["test"]
    else:
        assert result["gates"] == {}
    report = json.loads(run("eval", run_dir, "--json").output)
    assert report["metrics"]["test"] == result["test"]


@pytest.mark.parametrize("method,pooling", [("lora", "mean"), ("bitfit", "pooler"), ("dora", "mean"), ("ia3", "mean")])
def test_export_merges_into_a_plain_model(tmp_path, tiny_backbone, tiny_glue, method, pooling):
    from transformers import AutoModelForSequenceClassification

    out = tmp_path / "out"
    run("train", "-q", "--outputs", out,
        *tiny_overrides(tiny_backbone, tiny_glue, f"method={method}", f"head.pooling={pooling}"))  # fmt: skip
    (run_dir,) = (out / "runs").iterdir()
    message = run("export", run_dir, "--out", tmp_path / "exported").output
    diff = float(message.rsplit(": ", 1)[1].rstrip(")\n"))
    assert diff < 1e-5, message
    if pooling == "pooler":  # a plain transformers load gives the same model
        AutoModelForSequenceClassification.from_pretrained(str(tmp_path / "exported"))


def test_export_refuses_what_cannot_be_merged(tmp_path, tiny_backbone, tiny_glue):
    out = tmp_path / "out"
    run("train", "-q", "--outputs", out, *tiny_overrides(tiny_backbone, tiny_glue, "method=unipelt_apl"))
    (run_dir,) = (out / "runs").iterdir()
    result = CliRunner().invoke(app, ["export", str(run_dir)])
    assert result.exit_code == 2
    assert "cannot be merged into the backbone's weights" in result.output


@pytest.mark.parametrize("train_pooler", [True, False])
def test_pooler_trains_only_when_asked(tmp_path, tiny_backbone, tiny_glue, train_pooler):
    out = tmp_path / "out"
    extra = ["method=lora", "head.pooling=pooler", f"head.train_pooler={str(train_pooler).lower()}"]
    run("train", "-q", "--outputs", out, *tiny_overrides(tiny_backbone, tiny_glue, *extra))
    (run_dir,) = (out / "runs").iterdir()
    saved = load_file(str(run_dir / "weights.safetensors"))
    assert {"bert.pooler.dense.weight", "bert.pooler.dense.bias"} <= set(saved) or not train_pooler
    assert not any(k.startswith("bert.pooler.") for k in saved) or train_pooler
    head = json.loads((run_dir / "result.json").read_text())["params"]["head"]
    assert head == 32 * 2 + 2 + (32 * 32 + 32 if train_pooler else 0)  # classifier (+ pooler), hidden 32
