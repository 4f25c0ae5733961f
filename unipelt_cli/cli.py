"""The `unipelt` command line. Typer owns argv; Hydra's compose API builds the config.

Heavy imports (torch, transformers) happen inside the commands that need them, so `--help` and
`ls` answer at once.
"""

from __future__ import annotations

import functools
import json
import os
import sys
from pathlib import Path
from typing import Annotated

import typer
from typer._click.exceptions import ClickException

from unipelt_cli import boundary
from unipelt_cli.errors import UserError

app = typer.Typer(
    name="unipelt",
    help=(
        "Run, compare and extend parameter-efficient tuning (UniPELT, adapters, prefix-tuning, LoRA, "
        "BitFit, fine-tuning) on GLUE.\n\n"
        "Examples:\n\n"
        "  unipelt train task=sst2                      # UniPELT (APL) on MiniLM, SST-2, K=100\n\n"
        "  unipelt train task=rte budget=k500 seed=3    # another task, budget and seed\n\n"
        "  unipelt train --cfg task=stsb train.lr=1e-4  # print the composed config only\n\n"
        "  unipelt ls task                              # what can go after task=\n\n"
        "  unipelt eval outputs/runs/<run>              # re-evaluate a finished run\n\n"
        "  unipelt export outputs/runs/<run>            # merge LoRA/BitFit into a plain HF model"
    ),
    no_args_is_help=True,
    add_completion=True,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)

OutputsOpt = Annotated[
    Path | None,
    typer.Option("--outputs", help="Folder of runs and caches [env: UNIPELT_OUTPUTS; default: ./outputs]"),
]
QuietOpt = Annotated[bool, typer.Option("--quiet", "-q", help="Print only the final summary line.")]


def user_errors(fn):
    """The error boundary around every command: whatever it raises becomes one line on stderr and an
    exit code (2: the user can fix it, 1: a bug, 128 + N: signal N), as boundary.py decides."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except (typer.Exit, typer.Abort, ClickException, SystemExit):
            raise  # usage errors: main() prints them
        except BaseException as exc:
            raise typer.Exit(boundary.report(exc)) from None

    return wrapper


def _summary(result: dict, run_dir: Path) -> str:
    metric = result["primary_metric"]
    test, dev = result["test"][metric], result["dev"][metric]
    extra = "".join(
        f", {name.removeprefix('test_')} {m[metric]:.2f}"
        for name, m in result.items()
        if name.startswith("test_") and isinstance(m, dict)
    )
    budget = f"K={result['budget']}" if result["budget"] != "full" else "full data"
    return (
        f"{result['task']} {result['method']} {budget} seed {result['seed']}: "
        f"test {metric} {test:.2f}{extra} (dev {dev:.2f} at step {result['best_step']}); "
        f"train {result['train_seconds']:.1f}s, eval {result['eval_seconds']:.1f}s; {run_dir}"
    )


@app.command(
    context_settings={"allow_extra_args": False},
    epilog=(
        "Examples: unipelt train task=sst2 | unipelt train task=rte budget=k500 seed=3 | "
        "unipelt train task=mnli budget=full train.epochs=3 | unipelt train --cfg train.lr=1e-4"
    ),
)
@user_errors
def train(
    overrides: Annotated[
        list[str] | None,
        typer.Argument(help="Config overrides, key=value: task=rte budget=k500 seed=3 train.lr=1e-4 ..."),
    ] = None,
    cfg: Annotated[bool, typer.Option("--cfg", help="Print the composed config and exit.")] = False,
    outputs: OutputsOpt = None,
    force: Annotated[bool, typer.Option("--force", help="Rerun even if this exact run already finished.")] = False,
    resume: Annotated[
        bool,
        typer.Option("--resume", help="Continue a stopped run from its last checkpoint (runtime.checkpoint_every)."),
    ] = False,
    quiet: QuietOpt = False,
) -> None:
    """Train one run: compose the config, train, select on dev, test, write outputs/runs/<run>/."""
    if force and resume:
        raise UserError("--force starts the run again from the beginning and --resume continues it: pass one of them")
    from unipelt_cli import config as config_mod
    from unipelt_cli import runs

    composed = config_mod.compose(overrides or [])
    if cfg:
        typer.echo(config_mod.to_yaml(composed), nl=False)
        return
    out = runs.outputs_dir(outputs)
    run_dir = runs.run_dir_for(out, composed, config_mod.config_hash(composed))
    done = runs.read_result(run_dir)
    if done is not None and not force:
        typer.echo(f"already finished (use --force to rerun): {_summary(done, run_dir)}")
        return
    runs.prepare(run_dir)

    from unipelt_cli.sweep.lock import RunLock, describe, holder

    lock = RunLock(run_dir)  # the same per-run lock a sweep takes: one owner per run
    if not lock.acquire(command="unipelt train"):
        raise UserError(
            f"{run_dir.name} is being trained right now by {describe(holder(run_dir) or {})}: "
            "wait for it to finish, or change the seed or config"
        )
    try:
        done = runs.read_result(run_dir)
        if done is not None and not force:  # another process finished it while we waited
            typer.echo(f"already finished (use --force to rerun): {_summary(done, run_dir)}")
            return
        from unipelt_cli.experiment import train_run
        from unipelt_cli.progress import Reporter

        reporter = Reporter(run_dir / runs.LOG_FILE, quiet=quiet, metric=composed.task.metric)
        try:
            result = train_run(composed, run_dir, out, reporter, resume=resume)
        finally:
            reporter.close()
    finally:
        lock.release()
    line = _summary(result, run_dir)
    Reporter(run_dir / runs.LOG_FILE, quiet=True).summary(line)
    typer.echo(line)


PREDICTIONS_STATE = {
    "identical": "identical to the stored file",
    "differs": "DIFFERS from the stored file",
    "missing": "not stored (the run is older than per-example predictions)",
}


@app.command("eval", epilog="Example: unipelt eval outputs/runs/sst2-adapter-k100-s1-d1-0123abcd --split test")
@user_errors
def eval_cmd(
    run_dir: Annotated[str, typer.Argument(help="A finished run's folder (or its name under <outputs>/runs).")],
    split: Annotated[str, typer.Option("--split", help="dev (the selection split) or test.")] = "test",
    outputs: OutputsOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the metrics as JSON.")] = False,
    quiet: QuietOpt = False,
) -> None:
    """Re-evaluate a finished run from its saved weights on a freshly loaded backbone."""
    from unipelt_cli import runs

    if split not in ("dev", "test"):
        raise UserError(f"--split {split} is not a split: use --split dev or --split test")
    out = runs.outputs_dir(outputs)
    folder = runs.find_run(run_dir, out)
    runs.require_finished(folder)

    from unipelt_cli.experiment import eval_run

    metrics, stored, predictions = eval_run(folder, out, split)
    if as_json:
        typer.echo(
            json.dumps({"run": str(folder), "metrics": metrics, "stored": stored, "predictions": predictions}, indent=2)
        )
        return
    for name, values in metrics.items():
        same = values == stored.get(name)
        shown = ", ".join(f"{k} {v:.4f}" for k, v in values.items())
        typer.echo(f"{name}: {shown} ({'identical to' if same else 'DIFFERS from'} the stored result)")
    for name, state in predictions.items():
        typer.echo(f"predictions/{name}.jsonl: {PREDICTIONS_STATE[state]}")


@app.command("export", epilog="Example: unipelt export outputs/runs/sst2-lora-k100-s1-d1-0123abcd --out my-model")
@user_errors
def export_cmd(
    run_dir: Annotated[str, typer.Argument(help="A finished run (ungated LoRA, BitFit, or saved fine-tuning).")],
    out: Annotated[Path | None, typer.Option("--out", help="Folder to write [default: RUN_DIR/export].")] = None,
    outputs: OutputsOpt = None,
    fmt: Annotated[
        str,
        typer.Option(
            "--format",
            help="hf: LoRA/BitFit merged into a plain Hugging Face model; peft: a PEFT LoRA adapter folder "
            "(ungated LoRA runs; loads with PeftModel.from_pretrained).",
        ),
    ] = "hf",
) -> None:
    """Merge a run's LoRA/BitFit tensors into the backbone and save a plain Hugging Face model folder
    (--format peft: a PEFT adapter folder instead)."""
    from unipelt_cli import runs

    if fmt not in ("hf", "peft"):
        raise UserError(f"--format {fmt} is not an export format: use --format hf or --format peft")
    out_dir = runs.outputs_dir(outputs)
    folder = runs.find_run(run_dir, out_dir)
    runs.require_finished(folder)
    if fmt == "peft":  # unipelt_cli/export_peft.py
        from unipelt_cli.export_peft import export_peft

        target = out or folder / "export-peft"
        diff = export_peft(folder, target, out_dir)
        typer.echo(
            f"exported {folder.name} as a PEFT adapter to {target} (max |logit difference| after reload: {diff:.2e})"
        )
        return

    from unipelt_cli.export import export_run

    target = out or folder / "export"
    diff = export_run(folder, target, out_dir)
    typer.echo(f"exported {folder.name} to {target} (max |logit difference| after reload: {diff:.2e})")


@app.command("ls", epilog="Examples: unipelt ls | unipelt ls task | unipelt ls method | unipelt ls pelt")
@user_errors
def ls_cmd(
    group: Annotated[str | None, typer.Argument(help="A config group: task, budget, method ..., or pelt")] = None,
) -> None:
    """List config groups and their options (what can go after group=), the sweep presets, and
    (`ls pelt`) the PELT submodules and gate kinds with where each came from."""
    from unipelt_cli.config import conf_dir, groups
    from unipelt_cli.sweep.grid import preset_names

    known = {**groups(), "sweep": preset_names()}  # sweep: presets for `unipelt sweep +sweep=NAME`
    if group is None:
        for name, options in known.items():
            typer.echo(f"{name}: {', '.join(options)}")
        typer.echo("pelt: the submodules under pelt.<name> (see: unipelt ls pelt)")
        return
    if group == "pelt":
        _list_pelt()
        return
    if group not in known:
        raise UserError(f"unknown config group '{group}': choose one of {', '.join(known)}")
    for option in known[group]:
        typer.echo(f"{option:<22} {_first_comment(conf_dir() / group / f'{option}.yaml')}")


def _list_pelt() -> None:
    """Submodules (pelt.<name>.*) and gate kinds (<submodule>.gate_type), with their origin."""
    import inspect

    from unipelt_cli.pelt import GATES, ORIGINS, SUBMODULES
    from unipelt_cli.pelt.plugins import FAILED

    def first_line(obj) -> str:
        doc = inspect.getdoc(inspect.getmodule(obj)) or inspect.getdoc(obj) or ""
        return doc.splitlines()[0] if doc else ""

    typer.echo("submodules (pelt.<name>.enabled=true):")
    for name, part in SUBMODULES.items():
        typer.echo(f"  {name:<18} [{ORIGINS.get(name, '?')}] {first_line(part)}")
    typer.echo("gate kinds (<submodule>.gate_type=<kind>):")
    for kind, gate in GATES.items():
        options = f" (options: pelt.gate.{kind}.*)" if gate.Options is not None else ""
        typer.echo(f"  {kind:<18} {(inspect.getdoc(gate) or '').splitlines()[0]}{options}")
    for name, reason in FAILED.items():
        typer.echo(f"  {name:<18} [plugin failed to load] {reason}")


def _first_comment(path: Path) -> str:
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.startswith("#") and "@package" not in line:
            return line.lstrip("# ").strip()
    return ""


def _load_commands() -> None:
    """Import every module in unipelt_cli/commands: each registers one more command on `app`."""
    import importlib
    import pkgutil

    from unipelt_cli import commands

    for module in sorted(m.name for m in pkgutil.iter_modules(commands.__path__)):
        importlib.import_module(f"{commands.__name__}.{module}")


_load_commands()


def main(argv: list[str] | None = None) -> int:
    """The console script. Usage mistakes (unknown option, missing argument) also end in one line."""
    if os.environ.get("_UNIPELT_COMPLETE", "").startswith("complete_"):  # a shell asks for completions
        from unipelt_cli.completion import complete

        return complete()
    from typer._click.exceptions import ClickException, NoArgsIsHelpError

    try:
        code = app(args=argv, prog_name="unipelt", standalone_mode=False)
    except NoArgsIsHelpError as exc:
        typer.echo(exc.ctx.get_help())
        return 0
    except ClickException as exc:
        ctx = getattr(exc, "ctx", None)
        where = f"unipelt {ctx.info_name} -h" if ctx is not None and ctx.parent is not None else "unipelt -h"
        typer.echo(f"error: {exc.format_message().rstrip('.')}: see {where}", err=True)
        return 2
    except typer.Abort:
        typer.echo("interrupted", err=True)
        return 130
    except (Exception, KeyboardInterrupt) as exc:  # outside a command (option parsing, start-up)
        return boundary.report(exc)
    return code if isinstance(code, int) else 0


if __name__ == "__main__":
    sys.exit(main())
