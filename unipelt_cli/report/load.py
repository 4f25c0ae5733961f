"""Reading run folders for the report: result.json, config.yaml and status.json (never torch).

A folder of runs is `<dir>/runs/<run>/` (an outputs folder, or a committed results folder such as
results/selection-k100-h100) or a folder that holds run folders itself. Every run folder becomes a
`Run`: a completed one carries its result, a failed/diverged/running one only its config and state,
so the report can flag missing seeds instead of averaging them away. Unreadable, older-schema or
incomplete files are skipped with a warning that names them.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from unipelt_cli import identity as identity_mod
from unipelt_cli import runs as runs_mod
from unipelt_cli import trees
from unipelt_cli.errors import UserError

REQUIRED_KEYS = ("task", "method", "budget", "seed", "primary_metric", "test")
# filter aliases: what a user types -> the Run attribute it means
ALIASES = {"task": "task", "method": "method", "budget": "budget", "backbone": "backbone", "seed": "seed"}
ALIASES |= {"data_seed": "data_seed", "task.name": "task", "method.name": "method", "backbone.name": "backbone"}


@dataclass
class Run:
    path: Path
    identity: str  # unipelt_cli/identity.py: one run identity, whatever its folder is called or hash era
    backbone: str
    task: str
    method: str
    budget: int | str  # K, or "full"
    seed: int
    data_seed: int
    state: str  # done | failed | diverged | running | interrupted | unknown
    config: dict[str, Any] = field(default_factory=dict)  # flattened config.yaml ("train.lr": 0.001)
    # flattened identity.canonical(config.yaml): what tells variants apart (no logger, no disabled submodule)
    canonical: dict[str, Any] = field(default_factory=dict)
    result: dict | None = None
    time: float = 0.0  # when this attempt finished (for "latest attempt")
    note: str = ""

    @property
    def done(self) -> bool:
        return self.result is not None

    @property
    def metric(self) -> str | None:
        return self.result["primary_metric"] if self.result else None

    @property
    def score(self) -> float | None:
        return _number(self.result["test"].get(self.metric)) if self.result else None

    @property
    def dev_score(self) -> float | None:
        return _number((self.result.get("dev") or {}).get(self.metric)) if self.result else None


def _number(value) -> float | None:
    return float(value) if isinstance(value, int | float) and value == value else None


def runs_folder(path: Path) -> Path:
    """The folder whose subfolders are runs: DIR/runs when it exists, else DIR itself."""
    if not path.is_dir():
        raise UserError(f"no folder at {path}: pass --outputs DIR (an outputs folder, or one that holds runs/)")
    return path / "runs" if (path / "runs").is_dir() else path


def _read_json(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8"))


def _read_config(folder: Path, warnings: list[str]) -> dict | None:
    path = folder / runs_mod.CONFIG_FILE
    if not path.is_file():
        return None
    import yaml

    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        warnings.append(f"{path}: unreadable config ({type(exc).__name__}); grouping this run by its result only")
        return None
    return data if isinstance(data, dict) else None


def _check_result(data: Any) -> str | None:
    """Why a parsed result.json cannot be used, or None."""
    if not isinstance(data, dict):
        return "not a JSON object"
    version = data.get("schema_version")
    if version is None:
        return "older schema (no schema_version)"
    if version != runs_mod.SCHEMA_VERSION:
        return f"schema_version {version} (this report reads {runs_mod.SCHEMA_VERSION})"
    missing = [key for key in REQUIRED_KEYS if key not in data]
    if missing:
        return f"missing {', '.join(missing)}"
    if not isinstance(data["test"], dict) or data["primary_metric"] not in data["test"]:
        return f"no test {data['primary_metric']} score"
    return None


def read_run(folder: Path, warnings: list[str]) -> Run | None:
    """One run folder as a Run, or None (with a warning when the folder looked like a run)."""
    result_path, status_path = folder / runs_mod.RESULT_FILE, folder / runs_mod.STATUS_FILE
    status = {}
    if status_path.is_file():
        try:
            status = _read_json(status_path)
        except (OSError, ValueError):
            warnings.append(f"{status_path}: unreadable status; ignored")
        status = status if isinstance(status, dict) else {}
    config = _read_config(folder, warnings)
    result = None
    if result_path.is_file():
        try:
            result = _read_json(result_path)
            problem = _check_result(result)
        except (OSError, ValueError) as exc:
            problem = f"unreadable ({type(exc).__name__})"
        if problem:
            warnings.append(f"skipped {result_path}: {problem}")
            return None
    elif config is None:
        if status:
            warnings.append(f"skipped {folder}: {status.get('state', 'no result')} run without {runs_mod.CONFIG_FILE}")
        return None
    return _make_run(folder, result, config, status)


def _make_run(folder: Path, result: dict | None, config: dict | None, status: dict) -> Run:
    flat = trees.dotted(config) if config else {}
    canonical = trees.dotted(identity_mod.canonical(config)) if config else {}
    state = status.get("state", "unknown")
    if result is not None:
        budget = result["budget"]
        run = Run(
            path=folder,
            identity=identity_mod.of_run_files(result, status, config) or result.get("config_hash") or folder.name,
            backbone=str(result.get("backbone") or flat.get("backbone.name", "?")),
            task=result["task"],
            method=result["method"],
            budget=budget if budget == "full" else int(budget),
            seed=int(result["seed"]),
            data_seed=int(result.get("data_seed", result["seed"])),
            state="done",
            config=flat,
            canonical=canonical,
            result=result,
            time=_finish_time(folder / runs_mod.RESULT_FILE, status, state == "done"),
        )
        if state in ("failed", "diverged", "running", "interrupted"):
            run.note = f"a later attempt is {state}; the completed result is reported"
        return run
    k = flat.get("budget.k")
    return Run(
        path=folder,
        identity=identity_mod.of_run_files(None, status, config),
        backbone=str(flat.get("backbone.name", "?")),
        task=str(flat.get("task.name", "?")),
        method=str(flat.get("method.name", "?")),
        budget="full" if k is None else int(k),
        seed=int(flat.get("seed", -1)),
        data_seed=int(flat.get("data_seed", flat.get("seed", -1))),
        state=state,
        config=flat,
        canonical=canonical,
        time=float(status.get("finished") or status.get("time") or 0.0),
    )


def _finish_time(path: Path, status: dict, status_is_this_attempt: bool) -> float:
    if status_is_this_attempt and isinstance(status.get("finished"), int | float):
        return float(status["finished"])
    return os.path.getmtime(path)


def load_runs(path: Path) -> tuple[list[Run], list[str]]:
    """Every readable run under PATH (see runs_folder), and the warnings about what was skipped."""
    root = runs_folder(path)
    warnings: list[str] = []
    found = []
    for folder in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        run = read_run(folder, warnings)
        if run is not None:
            found.append(run)
    return found, warnings


def latest_attempts(found: list[Run]) -> tuple[list[Run], list[str]]:
    """One Run per identity: the latest completed attempt, else the latest attempt (to flag it)."""
    by_id: dict[str, list[Run]] = {}
    for run in found:
        by_id.setdefault(run.identity, []).append(run)
    kept, notes = [], []
    for attempts in by_id.values():
        attempts.sort(key=lambda r: (r.done, r.time))
        kept.append(attempts[-1])
        if len(attempts) > 1:
            others = ", ".join(r.path.name for r in attempts[:-1])
            notes.append(f"{attempts[-1].path.name}: same run as {others}; the latest completed attempt is used")
    kept.sort(key=lambda r: r.path.name)
    return kept, notes


def parse_filters(items: list[str]) -> dict[str, list[str]]:
    """task=sst2,rte method=lora budget=100 -> {"task": ["sst2", "rte"], ...}."""
    filters: dict[str, list[str]] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key or not value:
            raise UserError(f"filter '{item}' is not key=value: write e.g. task=sst2,rte method=lora budget=100")
        filters.setdefault(key.strip(), []).extend(v.strip() for v in value.split(",") if v.strip())
    return filters


def _same(actual, wanted: str, key: str) -> bool:
    if key == "budget":
        wanted = wanted.lower().removeprefix("k")
        return str(actual) == wanted
    if actual is None:
        return wanted.lower() in ("null", "none")
    if isinstance(actual, bool):
        return wanted.lower() == str(actual).lower()
    try:
        return float(actual) == float(wanted)
    except (TypeError, ValueError):
        return str(actual) == wanted


def apply_filters(found: list[Run], filters: dict[str, list[str]]) -> list[Run]:
    for key in filters:
        if key not in ALIASES and not any(key in run.config for run in found) and found:
            raise UserError(
                f"unknown filter key '{key}': use task, method, budget, backbone, seed, data_seed "
                "or a config key such as train.lr or head.pooling"
            )

    def keep(run: Run) -> bool:
        for key, wanted in filters.items():
            actual = getattr(run, ALIASES[key]) if key in ALIASES else run.config.get(key)
            if not any(_same(actual, value, ALIASES.get(key, key)) for value in wanted):
                return False
        return True

    return [run for run in found if keep(run)]
