"""The command line: fast help, ls, --cfg, and one-line errors (exit 2) for every bad input."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from conftest import tiny_overrides
from typer.testing import CliRunner

from unipelt_cli.cli import app

runner = CliRunner()


def run(*args, env=None):
    return runner.invoke(app, list(args), env=env)


def test_help_and_ls_do_not_import_torch():
    code = (
        "import sys; from typer.testing import CliRunner; from unipelt_cli.cli import app; "
        "r = CliRunner(); "
        "cmds = (['--help'], ['train', '--help'], ['eval', '--help'], ['ls'], ['ls', 'task']); "
        "outs = [r.invoke(app, a) for a in cmds]; "
        "assert all(o.exit_code == 0 for o in outs), [o.output for o in outs]; "
        "assert 'torch' not in sys.modules and 'transformers' not in sys.modules, 'heavy import'"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_help_shows_examples():
    assert "unipelt train task=sst2" in run("--help").output
    out = run("train", "--help").output
    assert "task=rte budget=k500 seed=3" in out and "--cfg" in out and "--outputs" in out
    assert "--split" in run("eval", "--help").output


def test_ls():
    out = run("ls").output
    assert "task: cola, mnli, mrpc, qnli, qqp, rte, sst2, stsb" in out
    assert "budget: k100, k500, k1000, full" in out
    tasks = run("ls", "task").output
    assert tasks.count("\n") == 8 and "Spearman" in tasks


def test_cfg_prints_the_composed_config():
    out = run("train", "--cfg", "task=rte", "seed=3", "train.lr=1e-4")
    assert out.exit_code == 0
    assert "name: rte" in out.output and "seed: 3" in out.output and "lr: 0.0001" in out.output


def one_line_error(result, needle):
    assert result.exit_code == 2, result.output
    lines = [ln for ln in result.output.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), result.output
    assert needle in lines[0], lines[0]
    assert "Traceback" not in result.output


@pytest.mark.parametrize(
    "args,needle",
    [
        (["train", "task=sst3"], "unknown task 'sst3': choose one of cola"),
        (["train", "train.lrr=1"], "unknown config key 'train.lrr'"),
        (["train", "train.lr=abc"], "wrong type for train.lr"),
        (["ls", "tasks"], "unknown config group 'tasks'"),
        (["eval", "/nonexistent/run"], "no run folder at /nonexistent/run"),
        (["eval", ".", "--split", "train"], "--split train is not a split"),
    ],
)
def test_bad_input_without_data(args, needle):
    one_line_error(run(*args), needle)


def train_tiny(tmp_path, backbone, glue, *extra):
    return run("train", "-q", "--outputs", str(tmp_path / "out"), *tiny_overrides(backbone, glue, *extra))


def test_k_too_large(tmp_path, tiny_backbone, tiny_glue):
    one_line_error(train_tiny(tmp_path, tiny_backbone, tiny_glue, "budget.k=70"), "budget K=70 is too large for sst2")


def test_missing_data_folder(tmp_path, tiny_backbone):
    result = train_tiny(tmp_path, tiny_backbone, tmp_path / "nowhere")
    one_line_error(result, f"data folder not found: {tmp_path / 'nowhere'}")
    assert "SST-2/{train,dev}.tsv" in result.output


def test_missing_data_file(tmp_path, tiny_backbone, tiny_glue):
    (tiny_glue / "SST-2" / "dev.tsv").unlink()
    one_line_error(train_tiny(tmp_path, tiny_backbone, tiny_glue), f"{tiny_glue / 'SST-2' / 'dev.tsv'}")


def test_malformed_tsv_names_file_and_line(tmp_path, tiny_backbone, tiny_glue):
    path = tiny_glue / "SST-2" / "train.tsv"
    lines = path.read_text().splitlines()
    lines[5] = "a row without a label"
    path.write_text("\n".join(lines) + "\n")
    one_line_error(train_tiny(tmp_path, tiny_backbone, tiny_glue), f"{path}:6")


def test_hub_unreachable_without_data_dir(tmp_path, tiny_backbone, monkeypatch):
    # A closed local port stands in for an unreachable hub, whatever this machine's network.
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")
    monkeypatch.delenv("UNIPELT_GLUE_DIR", raising=False)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("HF_DATASETS_OFFLINE", raising=False)
    args = [a for a in tiny_overrides(tiny_backbone, tmp_path) if not a.startswith("data.dir")]
    result = run("train", "-q", "--outputs", str(tmp_path / "o"), *args)
    one_line_error(result, "could not load GLUE sst2 from the Hugging Face hub (127.0.0.1:9 unreachable")
    assert "data.dir=PATH or UNIPELT_GLUE_DIR" in result.output


def test_hub_backbone_unreachable(monkeypatch, tmp_path, tiny_glue):
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    result = run("train", "-q", "--outputs", str(tmp_path / "o"), "backbone=bert-base-uncased", f"data.dir={tiny_glue}")
    one_line_error(result, "could not load backbone 'google-bert/bert-base-uncased' from the Hugging Face hub")


def test_backbone_path_that_is_not_a_model(tmp_path, tiny_glue):
    (tmp_path / "empty").mkdir()
    result = train_tiny(tmp_path, tmp_path / "empty", tiny_glue)
    one_line_error(result, "is not a model folder (no config.json)")


def test_outputs_not_writable(tmp_path, tiny_backbone, tiny_glue):
    if os.geteuid() == 0:
        blocker = tmp_path / "file"
        blocker.write_text("")  # a file where a folder must go fails even for root
        outputs = blocker
    else:
        outputs = tmp_path / "ro"
        outputs.mkdir(mode=0o500)
    result = run("train", "-q", "--outputs", str(outputs), *tiny_overrides(tiny_backbone, tiny_glue))
    one_line_error(result, "pass a writable folder with --outputs DIR")


def test_eval_on_a_folder_that_is_not_a_finished_run(tmp_path):
    folder = tmp_path / "runs" / "half"
    folder.mkdir(parents=True)
    (folder / "status.json").write_text(json.dumps({"state": "running"}))
    one_line_error(run("eval", str(folder)), "is not a finished run")
    one_line_error(run("eval", "half", "--outputs", str(tmp_path)), "is not a finished run")
