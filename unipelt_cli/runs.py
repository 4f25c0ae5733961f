"""Run folders: identity, naming, status and atomic result files.

A run lives in `<outputs>/runs/<task>-<method>-<budget>-s<seed>-d<data_seed>-<hash8>/`:

    config.yaml         the resolved config (read back as plain YAML data only: load_config)
    status.json         running | done | failed | diverged | interrupted, with pid, host, times, error
                        (written by runstate.py alone)
    train.log           one line per evaluation
    result.json         written atomically, only when the run succeeded
    weights.safetensors the trained tensors (PELT: only what trained; finetune: when asked)

`result.json` is the marker of a finished run: it appears in one rename, never half-written. One
that is partial, or from an older schema, counts as no result: the run can simply be trained again.
"""

from __future__ import annotations

import json
import os
import socket
import time
from pathlib import Path

from unipelt_cli.errors import UserError

SCHEMA_VERSION = 1
# What a reader of result.json needs (cli._summary, sweep.job.summarise, eval): a result without them is no result.
RESULT_KEYS = (
    "task", "method", "budget", "seed", "primary_metric", "dev", "test", "best_step", "train_seconds", "eval_seconds",
)  # fmt: skip
RESULT_FILE = "result.json"
STATUS_FILE = "status.json"
CONFIG_FILE = "config.yaml"
LOG_FILE = "train.log"


def outputs_dir(path: str | os.PathLike | None) -> Path:
    """--outputs, else $UNIPELT_OUTPUTS, else ./outputs."""
    return Path(path or os.environ.get("UNIPELT_OUTPUTS") or "outputs").expanduser()


def inside(outputs: Path, path: str, key: str) -> Path:
    """`path` (relative to the outputs folder, or absolute) if it lies inside the outputs folder:
    nothing a config says makes unipelt write elsewhere."""
    root = Path(outputs).expanduser().resolve()
    target = (root / Path(path).expanduser()).resolve()
    if target != root and root not in target.parents:
        raise UserError(f"{key}={path} is outside the outputs folder {root}: use a path under it (or --outputs DIR)")
    return target


def run_name(cfg, config_hash: str) -> str:
    """<task>-<method>-<budget>-s<seed>-d<data_seed>-<hash8>, from a config or its plain dict."""
    k = cfg["budget"]["k"]
    budget = "full" if k is None else f"k{k}"  # the real K, even when overridden
    return (
        f"{cfg['task']['name']}-{cfg['method']['name']}-{budget}-s{cfg['seed']}-d{cfg['data_seed']}-{config_hash[:8]}"
    )


def _read_data(path: Path):
    """A JSON or YAML file as plain data, or None when absent or unreadable (YAML with the safe
    loader: a file's tags never build objects or run code)."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError:
        return None
    if path.suffix == ".json":
        try:
            return json.loads(text)
        except ValueError:
            return None
    import yaml

    try:
        return yaml.load(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    except yaml.YAMLError:
        return None


def folder_identity(run_dir: Path) -> str | None:
    """The identity a run folder was trained under (unipelt_cli/identity.py), from its files."""
    return _identity(run_dir, _read_data(run_dir / RESULT_FILE))


def _identity(run_dir: Path, result) -> str | None:
    """folder_identity, given the folder's result.json as already read (any data, or None)."""
    from unipelt_cli import identity

    status = _read_data(run_dir / STATUS_FILE)
    result, status = (x if isinstance(x, dict) else None for x in (result, status))
    found = identity.of_run_files(result, status, None)
    if found is None:
        config = _read_data(run_dir / CONFIG_FILE)
        found = identity.of_run_files(None, None, config if isinstance(config, dict) else None)
    return found


INDEX_CACHE = "index-cache.json"  # in <outputs>/sweeps: each run folder's identity, by its files' stat


def index(outputs: Path, write_cache: bool = False) -> dict[str, str]:
    """{identity: run folder name} for the run folders under <outputs>/runs. Where two folders share
    an identity (a v1 folder and a later rerun), a finished one wins, then one that recorded its
    identity (trained under version 2), then the first name. A folder whose files are unchanged
    since <outputs>/sweeps/index-cache.json was written is not read again (a v1 folder's identity
    is recomputed from its config.yaml: ~1 s for 650 folders); `write_cache` updates that file."""
    best: dict[str, tuple[tuple[bool, bool], str]] = {}
    root = Path(outputs) / "runs"
    try:
        folders = sorted(p for p in root.iterdir() if p.is_dir())
    except OSError:
        return {}
    cache_path, stamp = Path(outputs) / "sweeps" / INDEX_CACHE, _index_stamp()
    cached = _read_data(cache_path) if cache_path.is_file() else None
    known = cached.get("folders", {}) if isinstance(cached, dict) and cached.get("stamp") == stamp else {}
    seen = {}
    for folder in folders:
        signature = _signature(folder)
        hit = known.get(folder.name)
        if isinstance(hit, list) and len(hit) == 3 and hit[0] == signature:
            key, rank = hit[1], (bool(hit[2][0]), bool(hit[2][1]))
        else:  # result.json read once: for the identity a v2 run recorded, and for whether it finished
            raw = _read_data(folder / RESULT_FILE)
            key, result = _identity(folder, raw), usable_result(raw)
            rank = (result is not None, bool(result and result.get("identity_version")))
        seen[folder.name] = [signature, key, list(rank)]
        if key is None:
            continue
        if key not in best or rank > best[key][0]:
            best[key] = (rank, folder.name)
    if write_cache and seen != known:
        try:
            cache_path.parent.mkdir(parents=True, exist_ok=True)
            write_json(cache_path, {"stamp": stamp, "folders": seen})
        except OSError:
            pass  # a cache only
    return {key: name for key, (_, name) in best.items()}


def _signature(folder: Path) -> list:
    """What changes when a run folder's identity or result can: its three files' inode, size and mtime."""
    out = []
    for name in (RESULT_FILE, STATUS_FILE, CONFIG_FILE):
        try:
            st = (folder / name).stat()
            out.append([st.st_ino, st.st_size, st.st_mtime_ns])
        except OSError:
            out.append(None)
    return out


def _index_stamp() -> str:
    """The code a folder's identity comes from: a cached index is void when it changes."""
    import hashlib

    from unipelt_cli import identity

    digest = hashlib.sha256(f"{identity.VERSION}|{SCHEMA_VERSION}".encode())
    for path in (Path(identity.__file__), Path(__file__)):
        digest.update(path.read_bytes())
    return digest.hexdigest()


def run_dir_for(outputs: Path, cfg, config_hash: str, known: dict[str, str] | None = None) -> Path:
    """The folder of the run with this identity: an existing one (whatever its name: folders of
    identity version 1 carry the old hash), else a new name from the config."""
    known = index(outputs) if known is None else known
    return Path(outputs) / "runs" / known.get(config_hash, run_name(cfg, config_hash))


def atomic_write(path: Path, text: str) -> None:
    """Write to a temporary file in the same folder, fsync, then rename over the target."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def write_json(path: Path, data: dict) -> None:
    atomic_write(path, json.dumps(data, indent=2, sort_keys=False) + "\n")


def prepare(run_dir: Path) -> None:
    """Create the run folder, with a clear error when the outputs folder is not writable."""
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        probe = run_dir / f".write-test-{os.getpid()}"
        probe.write_text("")
        probe.unlink()
    except OSError as exc:
        raise UserError(
            f"cannot write to {run_dir} ({exc.strerror}): pass a writable folder with --outputs DIR"
        ) from None


IDENTITY_KEYS = ("config_hash", "identity_version")  # kept from one status to the next


def read_status(run_dir: Path) -> dict:
    """status.json as a dict ({} when absent or unreadable)."""
    data = _read_data(run_dir / STATUS_FILE)
    return data if isinstance(data, dict) else {}


def write_status(run_dir: Path, state: str, **info) -> None:
    data = {"state": state, "pid": os.getpid(), "host": socket.gethostname(), "time": time.time()}
    before = read_status(run_dir)
    data.update({key: before[key] for key in IDENTITY_KEYS if key in before})
    data.update(info)
    write_json(run_dir / STATUS_FILE, data)


def read_result(run_dir: Path) -> dict | None:
    """The finished result, or None when the folder holds no usable result (none, unreadable,
    partial, or of another schema version)."""
    try:
        data = json.loads((run_dir / RESULT_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return usable_result(data)


def usable_result(data) -> dict | None:
    """`data` (a result.json as read, or None) if it is a usable finished result, else None."""
    if not isinstance(data, dict) or data.get("schema_version") != SCHEMA_VERSION:
        return None
    if not all(key in data for key in RESULT_KEYS):
        return None
    metric = data["primary_metric"]
    scores = [data[split].get(metric) if isinstance(data[split], dict) else None for split in ("dev", "test")]
    return data if all(isinstance(v, int | float) for v in scores) else None


def load_config(run_dir: Path):
    """A run's config.yaml as a typed config. Plain YAML data only: a tag (`!!python/object...`) is an
    error, never constructed, and the values must fit the schema, as a composed config's do."""
    import yaml
    from omegaconf import DictConfig, OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    from unipelt_cli import config

    path = run_dir / CONFIG_FILE
    fix = "rerun that run with unipelt train <its overrides> --force"
    try:
        cfg = OmegaConf.load(path)  # OmegaConf's loader is a yaml.SafeLoader: no Python objects
    except OSError as exc:
        raise UserError(f"cannot read {path} ({exc.strerror or exc}): {fix}") from None
    except yaml.YAMLError as exc:
        first = " ".join(str(exc).split())[:200]
        raise UserError(f"{path} is not plain YAML data ({first}): {fix}") from None
    if not isinstance(cfg, DictConfig):
        raise UserError(f"{path} is not a config (a YAML mapping of keys): {fix}")
    try:
        typed = OmegaConf.merge(config.schema_node(), cfg)
        OmegaConf.resolve(typed)
    except OmegaConfBaseException as exc:
        key = getattr(exc, "full_key", None)
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
        raise UserError(f"{path} does not fit the config schema ({key + ': ' if key else ''}{first}): {fix}") from None
    try:
        config.validate(typed)
    except UserError as exc:
        raise UserError(f"{path}: {exc}") from None
    return typed


def find_run(arg: str, outputs: Path) -> Path:
    """RUN_DIR as a path, or as a run name under <outputs>/runs."""
    for candidate in (Path(arg).expanduser(), outputs / "runs" / arg):
        if candidate.is_dir():
            return candidate
    raise UserError(f"no run folder at {arg}: pass a folder under {outputs / 'runs'} (see: ls {outputs / 'runs'})")


def require_finished(run_dir: Path) -> dict:
    result = read_result(run_dir)
    if result is None or not (run_dir / CONFIG_FILE).is_file():
        raise UserError(
            f"{run_dir} is not a finished run (no readable {RESULT_FILE} and {CONFIG_FILE}): "
            "pass the folder of a run that completed, or rerun it with unipelt train"
        )
    return result
