"""`unipelt sweep`: run a grid of configs (Hydra's sweep grammar or a conf/sweep preset), resumably."""

from __future__ import annotations

import signal
from pathlib import Path
from typing import Annotated

import typer

from unipelt_cli.cli import OutputsOpt, QuietOpt, app, user_errors
from unipelt_cli.errors import UserError

BACKENDS = ("local", "slurm", "submitit-local")


@app.command(
    context_settings={"allow_extra_args": False},
    epilog=(
        "Examples: unipelt sweep task=sst2,rte method=adapter,lora seed=range(1,4) --dry-run | "
        "unipelt sweep +sweep=smoke -j 2 | unipelt sweep +sweep=paper_lowres task=rte | "
        "unipelt sweep +sweep=paper_lowres --backend slurm -j 64 --slurm partition=gpu --slurm gpus_per_node=1 "
        "--slurm timeout_min=120 | unipelt ls sweep"
    ),
)
@user_errors
def sweep(
    overrides: Annotated[
        list[str] | None,
        typer.Argument(
            help="Overrides in Hydra's sweep grammar: task=sst2,rte budget=k100,k500 seed=range(1,6) "
            "method=glob(unipelt_*) train.lr=1e-4; +sweep=NAME starts from a preset in conf/sweep."
        ),
    ] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", "-n", help="List every job with its state (done, failed, running, pending).")
    ] = False,
    jobs: Annotated[
        int,
        typer.Option(
            "--jobs",
            "-j",
            min=1,
            help="Runs at a time. local: 1 trains in this process, N starts N worker processes that share "
            "the CPU threads; slurm: the job array's parallelism.",
        ),
    ] = 1,
    backend: Annotated[
        str,
        typer.Option(
            "--backend", help="local | slurm (submitit) | submitit-local (submitit's local executor, to try it)."
        ),
    ] = "local",
    slurm: Annotated[
        list[str] | None,
        typer.Option(
            "--slurm",
            help="A submitit/Slurm setting, KEY=VALUE, repeatable: partition=gpu timeout_min=120 gpus_per_node=1 "
            "cpus_per_task=8 mem_gb=32 account=... (Slurm-only keys may leave out their slurm_ prefix).",
        ),
    ] = None,
    outputs: OutputsOpt = None,
    force: Annotated[bool, typer.Option("--force", help="Rerun every job, even those already finished.")] = False,
    quiet: QuietOpt = False,
) -> None:
    """Run a grid of runs; finished runs are skipped, so the same command resumes after any crash."""
    from unipelt_cli import runs
    from unipelt_cli.sweep import grid

    if not overrides:
        raise UserError("a sweep needs a grid: e.g. unipelt sweep +sweep=smoke, or task=sst2,rte seed=range(1,4)")
    if backend not in BACKENDS:
        raise UserError(f"--backend {backend} is not a back-end: choose one of {', '.join(BACKENDS)}")
    out = runs.outputs_dir(outputs)
    preset, _ = grid.split_preset(list(overrides or []))
    planned = grid.plan(
        list(overrides or []), out, notify=None if quiet else lambda text: typer.echo(text, err=True), write=not dry_run
    )
    if dry_run:
        _list(planned, out, force)
        return
    from unipelt_cli.loggers import check_overrides

    check_overrides(list(overrides or []))  # a tracker's missing package: one line before any job
    runtime = _runtime_overrides(overrides or [], backend, jobs, slurm or [])
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UserError(f"cannot create {out} ({exc.strerror}): pass a writable folder with --outputs DIR") from None

    from unipelt_cli.sweep.runner import Sweep, new_sweep_dir

    folder = new_sweep_dir(out, planned)
    chosen = _backend(backend, jobs, folder, runtime, slurm or [])
    from unipelt_cli.sweep.display import Display

    job = Sweep(
        planned,
        out,
        chosen,
        folder,
        command=_command(overrides or [], dry_run, jobs, backend, slurm or [], outputs, force, quiet),
        preset=preset,
        force=force,
        runtime=runtime,
    )
    previous = signal.signal(signal.SIGTERM, _terminate)  # kill / scancel: stop like Ctrl-C
    try:
        code = job.run(Display(job, quiet=quiet))
    finally:
        signal.signal(signal.SIGTERM, previous)
    for line in job.summary():
        typer.echo(line)
    if code:
        raise typer.Exit(code)


def _command(overrides, dry_run, jobs, backend, slurm, outputs, force, quiet) -> str:
    """The command line as typed (give or take quoting), for the manifest."""
    import shlex

    words = ["unipelt", "sweep", *overrides, *(["-j", str(jobs)] if jobs != 1 else [])]
    words += [*(["--backend", backend] if backend != "local" else []), *[f"--slurm={kv}" for kv in slurm]]
    words += [*(["--outputs", str(outputs)] if outputs else []), *(["--force"] if force else [])]
    return shlex.join(words + (["--quiet"] if quiet else []))


def _terminate(signum, frame):
    raise KeyboardInterrupt


def _runtime_overrides(overrides: list[str], backend: str, jobs: int, slurm: list[str]) -> list[str]:
    """runtime.threads for each job: the CPU threads divided between the jobs that run side by side."""
    from unipelt_cli.sweep.backends import available_cpus, submitit_parameters

    if any(ov.lstrip("+").startswith("runtime.threads=") for ov in overrides):
        return []
    if backend == "slurm":
        cpus = submitit_parameters(slurm).get("cpus_per_task")
        return [f"runtime.threads={cpus}"] if isinstance(cpus, int) else []
    if jobs == 1 and backend == "local":
        return []  # one run in this process: torch's default (every core)
    return [f"runtime.threads={max(1, available_cpus() // jobs)}"]


def _backend(name: str, jobs: int, folder: Path, runtime: list[str], slurm: list[str]):
    from unipelt_cli.sweep import backends

    if name == "local":
        if jobs == 1:
            return backends.InProcess()
        threads = int(runtime[0].split("=")[1]) if runtime else None
        return backends.Workers(jobs, folder / "workers", threads)
    cluster = "slurm" if name == "slurm" else "local"
    if cluster == "slurm":
        import shutil

        if shutil.which("sbatch") is None:
            raise UserError("--backend slurm needs Slurm (sbatch not found): run on a login node, or use -j N locally")
    return backends.Submitit(cluster, jobs, folder / "submitit", backends.submitit_parameters(slurm))


def _list(planned, out: Path, force: bool) -> None:
    from unipelt_cli.sweep.grid import varying
    from unipelt_cli.sweep.runner import states

    named = {"task", "method", "budget", "seed"}  # already in the run name
    extra = [key for key in varying(planned) if key not in named]
    counts = {"done": 0, "failed": 0, "running": 0, "pending": 0}
    width = max((len(j.run_id) for j in planned), default=0)
    for job, state, detail in states(planned, out):
        counts[state] += 1
        shown = " ".join(ov for ov in job.overrides if ov.split("=", 1)[0] in extra)
        text = f"{state:<8} {job.run_id:<{width}}"
        text += f"  [{shown}]" if shown else ""
        typer.echo(f"{text}  {detail}".rstrip())
    would = len(planned) if force else counts["failed"] + counts["pending"]
    typer.echo(
        f"{len(planned)} jobs: {counts['done']} done, {counts['failed']} failed, {counts['running']} running, "
        f"{counts['pending']} pending; {would} would run{' (--force)' if force else ''}"
    )
