"""The catalogue of bad inputs: each ends with exit code 2 and ONE line on stderr that names the
problem and the fix; never a traceback. Run through `main()`, the console script's entry point.

The second half (issue 22) holds what a hostile user tried next: values that got past the config
checker, damaged or tampered files in a backbone or run folder, and requests without bounds."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
from conftest import tiny_overrides

from unipelt_cli import config, runs
from unipelt_cli.cli import main

# A python/object YAML tag that would create a file if anything constructed it.
EVIL_YAML = "seed: !!python/object/apply:os.system ['touch {marker}']\n"


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

    def edit_row(self, row: int, text: str, task: str = "SST-2", *extra: str) -> list[str]:
        path = self.glue / task / "train.tsv"
        lines = path.read_text().splitlines()
        lines[row] = text(lines[row]) if callable(text) else text
        path.write_text("\n".join(lines) + "\n")
        return self.train(*extra)

    def backbone_copy(self, name: str, file: str, data: bytes | None) -> Path:
        """The tiny backbone with one file replaced by `data` (None: cut to its first 1000 bytes)."""
        folder = self.tmp / name
        shutil.copytree(self.backbone, folder)
        path = folder / file
        path.write_bytes(path.read_bytes()[:1000] if data is None else data)
        return folder

    def run_folder(self, *extra: str, **files: str | bytes) -> Path:
        """The folder `train` would use for these overrides, holding a finished run's files
        (result.json, config.yaml, weights.safetensors) unless `files` replaces them."""
        cfg = config.compose(tiny_overrides(self.backbone, self.glue, *extra))
        folder = self.out / "runs" / runs.run_name(cfg, config.config_hash(cfg))
        folder.mkdir(parents=True)
        result = {"schema_version": runs.SCHEMA_VERSION, "task": "sst2", "method": "finetune", "budget": 40,
                  "seed": 1, "primary_metric": "accuracy", "dev": {"accuracy": 50.0}, "test": {"accuracy": 50.0},
                  "best_step": 5, "train_seconds": 1.0, "eval_seconds": 1.0}  # fmt: skip
        defaults = {"result.json": json.dumps(result), "config.yaml": config.to_yaml(cfg), "weights.safetensors": b""}
        for name, data in {**defaults, **files}.items():
            if data is not None:
                (folder / name).write_bytes(data if isinstance(data, bytes) else data.encode())
        return folder

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
    # -- issue 22 --------------------------------------------------------------------------------
    # values the checker let through: static ranges at compose time ...
    "negative seed": (lambda c: c.train("seed=-1"), "seed=-1 must be >= 0: pass a value of 0 or more"),
    "negative data seed": (lambda c: c.train("data_seed=-3"), "data_seed=-3 must be >= 0"),
    "seed beyond 64 bits": (lambda c: c.train(f"seed={2**64}"), f"seed={2**64} must be < 2**64"),
    "infinite lr": (lambda c: c.train("train.lr=inf"), "train.lr=inf must be a finite number"),
    "sweep job with a negative seed": (
        lambda c: ["sweep", "seed=1,-1", "--dry-run", "--outputs", str(c.out), *c.train()[4:]],
        "seed=-1 must be >= 0",
    ),
    # ... against the loaded backbone and the data, before training starts
    "max_length beyond the backbone": (
        lambda c: c.train("train.max_length=1024"),
        "train.max_length=1024 is longer than backbone",  # and says (max_position_embeddings: 512 tokens)
    ),
    "data file that is a folder": (
        lambda c: (c.glue / "SST-2" / "dev.tsv").unlink() or (c.glue / "SST-2" / "dev.tsv").mkdir() or c.train(),
        "data file is not a regular file",
    ),
    "regression score out of range": (
        lambda c: c.edit_row(4, lambda row: row.rsplit("\t", 1)[0] + "\t7.5", "STS-B", "task=stsb"),
        "STS-B/train.tsv:5: score=7.5: stsb scores lie in [0, 5]",
    ),
    "negative regression score": (
        lambda c: c.edit_row(2, lambda row: row.rsplit("\t", 1)[0] + "\t-1", "STS-B", "task=stsb"),
        "label out of range at",
    ),
    # damaged or tampered files in a backbone folder
    "truncated backbone weights": (
        lambda c: c.train(backbone=c.backbone_copy("cut", "model.safetensors", None)),
        "cut/model.safetensors are damaged or not safetensors",
    ),
    "backbone weights not safetensors": (
        lambda c: c.train(backbone=c.backbone_copy("text", "model.safetensors", b"<html>not found</html>")),
        "text/model.safetensors are damaged or not safetensors",
    ),
    "tokenizer file of another kind": (
        lambda c: c.train(backbone=c.backbone_copy("tok", "tokenizer.json", b'{"model": {"type": "Nope"}}')),
        "could not load the tokenizer of backbone",
    ),
    # ... and in a run folder
    "run config with a python tag": (
        lambda c: ["eval", str(c.run_folder(**{"config.yaml": EVIL_YAML.format(marker=c.tmp / "ran")}))],
        "config.yaml is not plain YAML data (could not determine a constructor for the tag",
    ),
    "run config that is a list": (
        lambda c: ["eval", str(c.run_folder(**{"config.yaml": "- 1\n- 2\n"}))],
        "config.yaml is not a config (a YAML mapping of keys): rerun that run",
    ),
    "run config with a wrong type": (
        lambda c: ["export", str(c.run_folder(**{"config.yaml": "train:\n  lr: fast\n"}))],
        "config.yaml does not fit the config schema",
    ),
    "truncated run weights": (
        lambda c: ["eval", str(c.run_folder(**{"weights.safetensors": b"\x08\x00\x00\x00\x00\x00\x00\x00{}"}))],
        "weights.safetensors is damaged or not a safetensors file",
    ),
    "eval on a partial result": (
        lambda c: ["eval", str(c.run_folder(**{"result.json": '{"schema_version": 1}'}))],
        "is not a finished run (no readable result.json and config.yaml)",
    ),
    "checkpoint that is not ours": (
        lambda c: (
            c.run_folder(**{"result.json": None, "checkpoint.pt": b"PK\x03\x04 not a zip"}) and c.train("--resume")
        ),
        "checkpoint.pt is not a checkpoint this run wrote",
    ),
    # requests without bounds
    "sweep of a million jobs": (
        lambda c: ["sweep", "seed=range(0,1000000)", "--dry-run", "--outputs", str(c.out)],
        "the grid has 1,000,000 jobs (seed 1,000,000), more than the 10,000 a sweep plans",
    ),
    "sweep grid multiplied past the limit": (
        lambda c: ["sweep", "seed=range(0,200)", "data_seed=range(0,100)", "--dry-run", "--outputs", str(c.out)],
        "the grid has 20,000 jobs (seed 200 x data_seed 100)",
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
    assert len(CASES) >= 70


def test_a_tampered_run_config_is_never_executed(tmp_path, tiny_backbone, tiny_glue, capsys):
    case = Case(tmp_path, tiny_backbone, tiny_glue)
    folder = case.run_folder(**{"config.yaml": EVIL_YAML.format(marker=tmp_path / "ran")})
    assert main(["eval", str(folder)]) == 2 and main(["export", str(folder)]) == 2
    assert not (tmp_path / "ran").exists()
    assert "rerun that run with unipelt train <its overrides> --force" in capsys.readouterr().err


def test_max_length_error_names_the_limit(tmp_path, tiny_backbone, tiny_glue, capsys):
    assert main(Case(tmp_path, tiny_backbone, tiny_glue).train("train.max_length=513")) == 2
    assert "(max_position_embeddings: 512 tokens): pass train.max_length=512 or less" in capsys.readouterr().err


def test_position_limit_of_roberta_counts_its_padding_offset():
    from transformers import BertConfig, RobertaConfig

    from unipelt_cli.model import position_limit

    assert position_limit(BertConfig(max_position_embeddings=512)) == 512
    assert position_limit(RobertaConfig(max_position_embeddings=514, pad_token_id=1)) == 512  # roberta-base
    assert position_limit(BertConfig(position_embedding_type="relative_key")) is None


def test_unreadable_data_file(tmp_path, tiny_backbone, tiny_glue, capsys, monkeypatch):
    path = tiny_glue / "SST-2" / "train.tsv"
    if os.geteuid() == 0:  # root reads anything: make the read itself fail as EACCES would
        import builtins

        real_open = builtins.open

        def denied(file, *args, **kwargs):
            if str(file) == str(path):
                raise PermissionError(13, "Permission denied", str(file))
            return real_open(file, *args, **kwargs)

        monkeypatch.setattr("unipelt_cli.data.glue.open", denied, raising=False)
    else:
        path.chmod(0)
    assert main(Case(tmp_path, tiny_backbone, tiny_glue).train()) == 2
    err = capsys.readouterr().err.strip()
    assert err == (
        f"error: cannot read data file {path} (Permission denied): check its permissions and the disk, or copy it again"
    )


def test_hub_labels_the_task_lacks_name_the_row(tmp_path, tiny_backbone, capsys, monkeypatch):
    """Hub splits carry label ids: GLUE's unlabelled test split holds -1, which would train silently."""
    import datasets

    class Split(dict):
        pass

    fake = {"train": Split(sentence=["a", "b", "c"], label=[0, 1, 1]),
            "validation": Split(sentence=["a", "b", "c"], label=[1, 0, -1])}  # fmt: skip
    monkeypatch.setattr(datasets, "load_dataset", lambda *a, **k: fake)
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")  # no reachability probe
    monkeypatch.delenv("UNIPELT_GLUE_DIR", raising=False)  # data.dir=null: the hub
    overrides = [o for o in tiny_overrides(tiny_backbone, tmp_path) if not o.startswith("data.dir")]
    assert main(["train", "-q", "--outputs", str(tmp_path / "out"), *overrides]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: unknown label at hf:nyu-mll/glue/sst2[validation] row 2: label id -1, but sst2 has 2")


def test_a_partial_or_older_result_does_not_stop_a_rerun(tmp_path, tiny_backbone, tiny_glue, capsys):
    case = Case(tmp_path, tiny_backbone, tiny_glue)
    folder = case.run_folder("train.epochs=1", **{"result.json": '{"schema_version": 1}'})
    older = {"task": "sst2", "test": {"accuracy": 1.0}}  # no schema_version: written before it existed
    assert runs.read_result(folder) is None
    (folder / "result.json").write_text(json.dumps(older))
    assert runs.read_result(folder) is None
    (folder / "result.json").write_text('{"schema_version": 1}')
    assert main(case.train("train.epochs=1")) == 0, capsys.readouterr().err
    assert runs.read_result(folder)["steps"] == 5  # trained again, and the new result is whole


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
