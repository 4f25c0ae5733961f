"""The catalogue of bad inputs: each ends with exit code 2 and ONE line on stderr that names the
problem and the fix; never a traceback. Run through `main()`, the console script's entry point."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from conftest import tiny_overrides

from unipelt_cli.cli import main


class Case:
    def __init__(self, tmp: Path, backbone: Path, glue: Path):
        self.tmp, self.backbone, self.glue = tmp, backbone, glue
        self.out = tmp / "out"

    def train(self, *extra: str, backbone: Path | None = None, glue: Path | None = None) -> list[str]:
        overrides = tiny_overrides(backbone or self.backbone, glue or self.glue, *extra)
        return ["train", "-q", "--outputs", str(self.out), *overrides]

    def data_file(self, text: str, name: str = "train.tsv") -> list[str]:
        (self.glue / "SST-2" / name).write_text(text)
        return self.train()

    def edit_row(self, row: int, text: str) -> list[str]:
        path = self.glue / "SST-2" / "train.tsv"
        lines = path.read_text().splitlines()
        lines[row] = text
        return self.data_file("\n".join(lines) + "\n")

    def folder(self, name: str, files: dict[str, str]) -> str:
        path = self.tmp / name
        path.mkdir(parents=True, exist_ok=True)
        for file, text in files.items():
            (path / file).write_text(text)
        return str(path)


CASES = {
    # unknown groups, options and keys
    "unknown task": (lambda c: c.train("task=sst3"), "unknown task 'sst3': choose one of"),
    "unknown method": (lambda c: c.train("method=lorax"), "unknown method 'lorax'"),
    "unknown group": (lambda c: ["ls", "tasks"], "unknown config group 'tasks'"),
    "unknown key": (lambda c: c.train("train.lrr=1"), "unknown config key 'train.lrr'"),
    "added key": (lambda c: c.train("+foo=1"), "foo"),
    "unknown option": (lambda c: ["train", "--bogus"], "No such option: --bogus"),
    "unknown command": (lambda c: ["trian"], "No such command 'trian'. Did you mean 'train'?: see unipelt -h"),
    "missing argument": (lambda c: ["eval"], "Missing argument"),
    # wrong types and out-of-range values
    "lr not a number": (lambda c: c.train("train.lr=abc"), "wrong type for train.lr"),
    "seed not a number": (lambda c: c.train("seed=abc"), "wrong type for seed"),
    "K = 0": (lambda c: c.train("budget.k=0"), "budget.k=0 must be > 0"),
    "K too large": (lambda c: c.train("budget.k=70"), "budget K=70 is too large for sst2"),
    "lr = 0": (lambda c: c.train("train.lr=0"), "train.lr=0.0 must be > 0"),
    "negative lr": (lambda c: c.train("train.lr=-1e-3"), "must be > 0"),
    "LoRA rank 0": (lambda c: c.train("method=lora", "pelt.lora.rank=0"), "lora.rank must be > 0"),
    "prefix length 0": (lambda c: c.train("method=prefix", "pelt.prefix.length=0"), "prefix.length must be > 0"),
    "negative patience": (lambda c: c.train("train.patience=-1"), "train.patience=-1 must be >= 0"),
    "batch size 0": (lambda c: c.train("train.batch_size=0"), "train.batch_size=0 must be > 0"),
    "precision fp16": (lambda c: c.train("train.precision=fp16"), "train.precision=fp16 is not allowed"),
    "warm-up ratio 1": (lambda c: c.train("train.warmup_ratio=1.0"), "train.warmup_ratio=1.0 must be in [0, 1)"),
    "nothing to train": (lambda c: c.train("train.epochs=0"), "leave nothing to train"),
    "no GPU": (lambda c: c.train("runtime.device=cuda"), "no CUDA GPU is visible"),
    # contradictory settings
    "gate on a disabled submodule": (
        lambda c: c.train("method=lora", "pelt.prefix.gate=true"),
        "pelt.prefix.gate=true sets an option of prefix, which method lora does not enable",
    ),
    "finetune with PELT": (lambda c: c.train("method=finetune", "pelt.lora.enabled=true"), "make no sense"),
    "PELT method with nothing enabled": (
        lambda c: c.train("method=lora", "pelt.lora.enabled=false"),
        "enables no PELT submodule",
    ),
    "submodule the backbone cannot host": (
        lambda c: c.train("method=prefix", "backbone.attn_implementation=flash_attention_2"),
        "backbone.attn_implementation=flash_attention_2 is not allowed",
    ),
    "train with a sweep preset": (lambda c: c.train("+sweep=smoke"), "use unipelt sweep +sweep=smoke"),
    "--force with --resume": (lambda c: [*c.train(), "--force", "--resume"], "pass one of them"),
    # safety: no objects from configs, no writes outside the outputs folder
    "object instantiation in a config": (lambda c: c.train("+train._target_=os.system"), "_target_"),
    "cache folder outside the outputs": (
        lambda c: c.train("runtime.cache_dir=/tmp/elsewhere"),
        "runtime.cache_dir=/tmp/elsewhere is outside the outputs folder",
    ),
    "cache folder escaping with ..": (
        lambda c: c.train("runtime.cache_dir=../../x"),
        "is outside the outputs folder",
    ),
    "run name escaping the outputs": (lambda c: c.train("task.name=../../etc"), "cannot name a run folder"),
    # data files
    "missing data folder": (lambda c: c.train(glue=c.tmp / "nowhere"), "data folder not found"),
    "missing data file": (lambda c: (c.glue / "SST-2" / "dev.tsv").unlink() or c.train(), "dev.tsv"),
    "empty data file": (lambda c: c.data_file(""), "train.tsv"),
    "header only": (lambda c: c.data_file("sentence\tlabel\n"), "train.tsv"),
    "wrong header": (lambda c: c.data_file("text\ttarget\nfine\t1\n"), "train.tsv"),
    "truncated row": (lambda c: c.edit_row(5, "a row without a label"), "train.tsv:6"),
    "label out of range": (lambda c: c.edit_row(3, "the film was fine\t7"), "train.tsv:4"),
    "label not a number": (lambda c: c.edit_row(3, "the film was fine\tgood"), "train.tsv:4"),
    # backbones and output folders
    "backbone folder without a model": (
        lambda c: c.train(backbone=Path(c.folder("empty", {}))),
        "is not a model folder (no config.json)",
    ),
    "backbone path that does not exist": (
        lambda c: c.train(backbone=c.tmp / "no-model"),
        "does not exist: pass a model folder or a hub id",
    ),
    "broken backbone config": (
        lambda c: c.train(backbone=Path(c.folder("broken", {"config.json": "{not json"}))),
        "could not load",
    ),
    "outputs not writable": (
        lambda c: (c.tmp / "file").write_text("") or ["train", "-q", "--outputs", str(c.tmp / "file"), *c.train()[4:]],
        "pass a writable folder with --outputs DIR",
    ),
    # eval and report on folders without (good) results
    "eval on a missing folder": (lambda c: ["eval", str(c.tmp / "nope")], "no run folder at"),
    "eval on an empty folder": (lambda c: ["eval", c.folder("runs/empty", {})], "is not a finished run"),
    "eval on a broken result": (
        lambda c: ["eval", c.folder("runs/broken", {"result.json": "{trunc", "config.yaml": "seed: 1\n"})],
        "is not a finished run",
    ),
    "eval with a bad split": (lambda c: ["eval", ".", "--split", "train"], "--split train is not a split"),
    "report on a folder with no runs": (lambda c: ["report", c.folder("nothing", {})], "no finished runs"),
    "report on broken results": (
        lambda c: ["report", c.folder("bad/runs/r1", {"result.json": "{trunc"}) and str(c.tmp / "bad")],
        "no finished runs",
    ),
}


@pytest.mark.parametrize("name", list(CASES))
def test_bad_input_gives_one_line_and_exit_2(name, tmp_path, tiny_backbone, tiny_glue, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    build, needle = CASES[name]
    args = build(Case(tmp_path, tiny_backbone, tiny_glue))
    code = main(args)
    err = capsys.readouterr().err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert code == 2, err
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert needle in lines[0], lines[0]
    assert ": " in lines[0][len("error: ") :]  # problem, then what to do


def test_the_catalogue_is_large():
    assert len(CASES) >= 30


def test_not_writable_for_a_normal_user(tmp_path, tiny_backbone, tiny_glue, capsys):
    if os.geteuid() == 0:
        pytest.skip("root writes anywhere; the case above covers a file in the way")
    ro = tmp_path / "ro"
    ro.mkdir(mode=0o500)
    assert main(["train", "-q", "--outputs", str(ro), *tiny_overrides(tiny_backbone, tiny_glue)]) == 2
    assert "writable" in capsys.readouterr().err


def test_results_are_json_after_an_error(tmp_path, tiny_backbone, tiny_glue, capsys):
    """A failed run leaves a readable status, never a half-written result."""
    code = main(["train", "-q", "--outputs", str(tmp_path), *tiny_overrides(tiny_backbone, tiny_glue, "budget.k=70")])
    assert code == 2
    for path in tmp_path.rglob("*.json"):
        json.loads(path.read_text())
