"""From sweep overrides to a list of jobs, each with its run identity.

Hydra's sweep grammar, as `hydra --multirun` reads it (BasicSweeper):

    task=sst2,rte            a choice: one job per value
    seed=range(1,6)          1, 2, 3, 4, 5 (end excluded)
    method=glob(unipelt_*)   every option of a config group that matches
    train.lr=1e-4            a fixed value: the same in every job

The grid is the Cartesian product of the keys, in the order given (the last key varies fastest).
A preset, `+sweep=NAME`, is conf/sweep/NAME.yaml: a `params:` mapping in the same grammar that
comes first, so a key on the command line replaces the preset's key (`+sweep=smoke seed=3`).

Planning checks every job's config (types and values, before anything runs) and names its run
folder from the config hash. A Hydra compose is slow (0.05-0.2 s), so the first job is composed in
full and one more config per value of each axis; every job's config is derived from those
(derive.py, which falls back to a compose per job where deriving would not be exact). The plan is
cached in <outputs>/sweeps/plan-cache.json, keyed by a fingerprint of conf/ and of the code behind
a config, and the identities of the run folders already there in index-cache.json (runs.index).
"""

from __future__ import annotations

import hashlib
import itertools
import json
import re
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

from unipelt_cli.errors import UserError
from unipelt_cli.sweep import bounds

PRESET_GROUP = "sweep"  # conf/sweep/*.yaml, selected with +sweep=NAME
CACHE_FILE = "plan-cache.json"


@dataclass(frozen=True)
class Job:
    overrides: tuple[str, ...]  # one value per key, in Hydra's override syntax
    run_id: str  # the run folder's name: <task>-<method>-<budget>-s<seed>-d<data_seed>-<hash8>
    config_hash: str


def preset_names() -> list[str]:
    from unipelt_cli.config import conf_dir

    return sorted(p.stem for p in (conf_dir() / PRESET_GROUP).glob("*.yaml"))


def preset_overrides(name: str) -> list[str]:
    """conf/sweep/NAME.yaml's `params:` as overrides (`task=sst2,rte`, `seed=range(1,6)`, ...)."""
    from omegaconf import OmegaConf

    from unipelt_cli.config import conf_dir

    path = conf_dir() / PRESET_GROUP / f"{name}.yaml"
    if not path.is_file():
        raise UserError(
            f"unknown sweep preset '{name}': choose one of {', '.join(preset_names())} (see: unipelt ls sweep)"
        )
    params = OmegaConf.to_container(OmegaConf.load(path)).get("params")
    if not isinstance(params, dict) or not params:
        raise UserError(f"{path} has no `params:` mapping: write one key per line, e.g. `task: sst2,rte`")
    return [f"{key}={_as_override_value(value)}" for key, value in params.items()]


def _as_override_value(value) -> str:
    if isinstance(value, list):
        return ",".join(_as_override_value(v) for v in value)
    if isinstance(value, bool):
        return str(value).lower()
    return "null" if value is None else str(value)


def split_preset(overrides: list[str]) -> tuple[str | None, list[str]]:
    """(`+sweep=NAME`'s NAME or None, the other overrides)."""
    names, rest = [], []
    for ov in overrides:
        m = re.fullmatch(rf"\+?{PRESET_GROUP}=(.*)", ov)
        (names if m else rest).append(m.group(1) if m else ov)
    if len(names) > 1 or any("," in n for n in names):
        raise UserError(f"one sweep preset at a time, got {', '.join(names)}: combine grids with key=a,b overrides")
    return (names[0] if names else None), rest


def expand(overrides: list[str]) -> list[list[str]]:
    """Every combination of the sweep overrides, as lists of single-valued overrides."""
    return [list(combo) for combo in itertools.product(*axes(overrides))]


def axes(overrides: list[str]) -> list[list[str]]:
    """The grid's axes in order: for each key, its single-valued overrides (`task=sst2`, `task=rte`)."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.core.override_parser.types import Glob
    from hydra.errors import HydraException

    from unipelt_cli.config import groups

    try:
        parsed = OverridesParser.create().parse_overrides(overrides)
    except HydraException as exc:
        first = str(exc).strip().splitlines()[0]
        raise UserError(f"{first}: sweep overrides look like task=sst2,rte seed=range(1,6)") from None
    bounds.check(parsed, lambda key: groups().get(key))  # before any value is listed: range(0,1000000)
    found: dict[str, list[str]] = {}  # a later key replaces an earlier one (command line over preset)
    for ov in parsed:
        key = ov.get_key_element()
        if not ov.is_sweep_override():
            found[key] = [ov.input_line or f"{key}={ov.get_value_element_as_str()}"]
        elif isinstance(ov.value(), Glob):
            options = groups().get(key)
            if options is None:
                raise UserError(f"glob() picks options of a config group, and {key} is not one: list values a,b,c")
            found[key] = [f"{key}={name}" for name in ov.value().filter(options)]
        elif ov.is_discrete_sweep():
            found[key] = [f"{key}={value}" for value in ov.sweep_string_iterator()]
        else:
            raise UserError(f"{ov.input_line}: a sweep needs a finite list of values: use a,b,c or range(start,stop)")
        if not found[key]:
            raise UserError(f"{ov.input_line} gives no value: check the list, range or glob pattern")
    return list(found.values())


def sweep_overrides(overrides: list[str]) -> tuple[str | None, list[str]]:
    """(preset name, the preset's params followed by the command line's overrides)."""
    name, rest = split_preset(list(overrides))
    return name, (preset_overrides(name) if name else []) + rest


def plan(overrides: list[str], outputs: Path | None = None, notify=None, write: bool = True) -> list[Job]:
    """The sweep's jobs, configs checked, identical configs merged; cached under <outputs>/sweeps
    unless `write` is false (a dry run writes nothing). A job whose identity an existing run folder
    has (a folder named by identity version 1, say) gets that folder. `notify(text)` hears about long plans."""
    _, merged = sweep_overrides(overrides)
    grid = axes(merged)
    combos = [list(combo) for combo in itertools.product(*grid)]
    cache = _Cache(outputs / "sweeps" / CACHE_FILE if outputs else None)
    missing = [c for c in combos if cache.get(c) is None]
    if missing:
        from unipelt_cli import config, runs
        from unipelt_cli.sweep import derive

        derived = derive.plan(grid, combos) if derive.pays(grid, missing) else None
        if derived is not None:
            for combo, (run_id, digest) in zip(combos, derived, strict=True):
                cache.put(combo, run_id, digest)
        else:
            if notify and len(missing) >= 50:
                notify(f"planning {len(missing)} jobs: composing and checking every config (cached for next time) ...")
            with config.composer() as compose:
                for combo in missing:
                    cfg = derive.compose_job(compose, combo)
                    digest = config.config_hash(cfg)
                    cache.put(combo, runs.run_name(cfg, digest), digest)
        if write:
            cache.save()
    from unipelt_cli import runs

    known = runs.index(outputs, write_cache=write) if outputs else {}
    jobs, seen = [], set()
    for combo in combos:
        run_id, digest = cache.get(combo)
        if digest not in seen:  # e.g. seed=1,1, or an override equal to the default
            seen.add(digest)
            jobs.append(Job(tuple(combo), known.get(digest, run_id), digest))
    return jobs


def varying(jobs: list[Job]) -> list[str]:
    """The override keys whose values differ between jobs (what tells the jobs apart)."""
    values: dict[str, set] = {}
    for job in jobs:
        for ov in job.overrides:
            key, _, value = ov.partition("=")
            values.setdefault(key, set()).add(value)
    return [key for key, seen in values.items() if len(seen) > 1]


class _Cache:
    """{combo: (run_id, hash)} for one fingerprint of the code and config tree; any change empties it."""

    def __init__(self, path: Path | None):
        self.path, self.fingerprint, self.entries, self.dirty = path, _fingerprint(), {}, False
        if path is None:
            return
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return
        if isinstance(data, dict) and data.get("fingerprint") == self.fingerprint:
            self.entries = data.get("jobs", {})

    @staticmethod
    def _key(combo: list[str]) -> str:
        return "\x1f".join(combo)

    def get(self, combo: list[str]) -> tuple[str, str] | None:
        found = self.entries.get(self._key(combo))
        return tuple(found) if found else None

    def put(self, combo: list[str], run_id: str, digest: str) -> None:
        self.entries[self._key(combo)] = [run_id, digest]
        self.dirty = True

    def save(self) -> None:
        if self.path is None or not self.dirty:
            return
        from unipelt_cli import runs

        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            runs.write_json(self.path, {"fingerprint": self.fingerprint, "jobs": self.entries})
        except OSError:
            pass  # a cache only: the next sweep plans again


# what composes, validates and names a run
IDENTITY_CODE = ("config.py", "identity.py", "runs.py", "pelt", "data/tasks.py", "sweep/derive.py")


def _fingerprint() -> str:
    """What a run's identity can depend on: conf/, the code that composes and names a config, and
    Hydra's and OmegaConf's versions. (A job also re-checks its identity before it trains.)"""
    from unipelt_cli.config import conf_dir

    package = Path(__file__).resolve().parent.parent
    files = sorted(conf_dir().rglob("*.yaml"))
    for name in IDENTITY_CODE:
        path = package / name
        files += sorted(path.rglob("*.py")) if path.is_dir() else [path]
    digest = hashlib.sha256()
    for name in ("hydra-core", "omegaconf"):
        digest.update(metadata.version(name).encode())
    for path in files:
        digest.update(f"{path.parent.name}/{path.name}".encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()
