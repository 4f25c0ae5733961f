"""Shell completion: the fast table matches the real commands, and bash, zsh and fish get answers."""

from __future__ import annotations

import os
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import typer

from unipelt_cli import completion
from unipelt_cli.cli import app
from unipelt_cli.config import groups

UNIPELT = str(Path(sys.executable).parent / "unipelt")


def test_the_fast_table_matches_the_real_commands():
    real = typer.main.get_command(app)
    assert set(completion.COMMANDS) == set(real.commands)
    for name, command in real.commands.items():
        declared = {o for p in command.params if p.param_type_name == "option" for o in p.opts}
        assert set(completion.options(name)) - {"--help", "-h"} == declared, name
        flags = {o for p in command.params if p.param_type_name == "option" and p.is_flag for o in p.opts}
        assert {o for o, v in completion.options(name).items() if v is None} - {"--help", "-h"} == flags, name
    from unipelt_cli.commands.report import FORMATS
    from unipelt_cli.commands.sweep import BACKENDS

    assert completion.options("report")["--format"] == list(FORMATS)
    assert completion.options("sweep")["--backend"] == list(BACKENDS)


def ask(shell: str, line: str) -> list[str]:
    env = {**os.environ, "_UNIPELT_COMPLETE": f"complete_{shell}", "_TYPER_COMPLETE_ARGS": line}
    env["_TYPER_COMPLETE_FISH_ACTION"] = "get-args"  # what fish's script asks first
    out = subprocess.run([UNIPELT], env=env, capture_output=True, text=True, check=True)
    return out.stdout.splitlines()


@pytest.mark.skipif(shutil.which("bash") is None, reason="bash is not installed")
def test_bash_completes_commands_groups_options_and_formats(tmp_path):
    # Typer finds the shell among the process's ancestors: ask from a bash, as a user would (a job
    # started without a shell above it, e.g. by nohup from a dead parent, would get "Shell  not supported")
    asked = f'"{UNIPELT}" --show-completion; status=$?; exit $status'  # not a lone command: bash would exec it
    shown = subprocess.run(["bash", "-c", asked], capture_output=True, text=True)
    assert shown.returncode == 0, shown.stderr  # say why, should it fail
    script = shown.stdout
    (tmp_path / "unipelt.sh").write_text(script)
    asks = {  # COMP_WORDS as bash splits them: '=' is a word break
        "unipelt tr": "train",
        "unipelt train task = s": "sst2 stsb",
        "unipelt train task = rte,s": "rte,sst2 rte,stsb",
        "unipelt train method = unipelt_apl": "unipelt_apl unipelt_apl_nogate unipelt_apli",
        "unipelt train logger = [csv,t": "[csv,tensorboard",
        "unipelt train --re": "--resume",
        "unipelt report --format x": "",
        "unipelt report -f ": "table md csv latex json html",
        "unipelt sweep +sweep = s": "smoke",
        "unipelt ls b": "backbone budget",
    }
    lines = [f"source {tmp_path / 'unipelt.sh'}"]
    for words in asks:
        lines.append(
            f"COMP_WORDS=({' '.join(repr(w) for w in words.split(' '))}); COMP_CWORD=$((${{#COMP_WORDS[@]}} - 1))"
        )
        lines.append('COMPREPLY=(); _unipelt_completion unipelt; echo "${COMPREPLY[*]}"')
    env = {**os.environ, "PATH": f"{Path(UNIPELT).parent}:{os.environ['PATH']}"}
    out = subprocess.run(["bash", "-c", "\n".join(lines)], env=env, capture_output=True, text=True, check=True)
    assert dict(zip(asks, out.stdout.splitlines(), strict=True)) == asks


def test_every_task_and_method_option_is_offered():
    assert [v for v, _ in completion.completions(["train"], "task=")] == [f"task={t}" for t in groups()["task"]]
    assert len(groups()["task"]) == 8
    assert [v for v, _ in completion.completions(["train"], "method=")] == [f"method={m}" for m in groups()["method"]]


def test_zsh_and_fish_get_the_whole_word():
    assert '"task=sst2"' in "".join(ask("zsh", "unipelt train task=s"))
    assert ask("fish", "unipelt train task=s") == ["task=sst2", "task=stsb"]
    assert ask("fish", "unipelt report --format ") == ["table", "md", "csv", "latex", "json", "html"]


def test_completion_imports_no_torch_hydra_or_pydantic_and_takes_under_0_3_s():
    code = (
        "import os, sys; "
        "os.environ.update(_UNIPELT_COMPLETE='complete_zsh', _TYPER_COMPLETE_ARGS='unipelt train ta'); "
        "from unipelt_cli.cli import main; main(); "
        "heavy = [m for m in ('torch', 'transformers', 'hydra', 'omegaconf', 'pydantic') if m in sys.modules]; "
        "assert not heavy, heavy"
    )
    subprocess.run([sys.executable, "-c", code], check=True, capture_output=True)
    env = {
        **os.environ,
        "_UNIPELT_COMPLETE": "complete_bash",
        "COMP_WORDS": "unipelt train method= ",
        "COMP_CWORD": "3",
    }
    walls, cpus = [], []  # CPU seconds too: on a loaded machine wall time waits for other processes
    for _ in range(5):
        t0, r0 = time.perf_counter(), resource.getrusage(resource.RUSAGE_CHILDREN)
        subprocess.run([UNIPELT], env=env, capture_output=True, check=True)
        r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
        walls.append(time.perf_counter() - t0)
        cpus.append(r1.ru_utime + r1.ru_stime - r0.ru_utime - r0.ru_stime)
    assert min(cpus) < 0.3, (cpus, walls)
