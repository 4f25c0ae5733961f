"""What the PELT registry declares, without importing torch when a cached copy is current.

Composing a config needs every submodule's and gate kind's `Options` (field names, types,
defaults, neutral values) and runs each submodule's own checks on its option values. All of that
lives in the submodule files, which import torch (about 2 s). So the declarations are kept in
`<cache>/declared-<checkout>.json` (the cache of unipelt_cli/fetch.py), written the first time from
the live registry and keyed by the stat of every file that can change them:

    key = stat (name, size, mtime) of unipelt_cli/pelt/*.py, of each plugin module's folder's *.py,
          and of every sys.path folder (installing or removing a package changes its folder),
          plus the Python version and this checkout's path

With a current cache, `Options` classes are rebuilt as plain dataclasses (same fields, types,
defaults and metadata, no checks), and option values are checked only if they are not among the
values the real `Options` already accepted (remembered in the same file); anything new imports the
registry and checks it for real. Wherever unipelt_cli.pelt is imported already (training, tests
that register their own submodules), the live registry is used and nothing is cached.
"""

from __future__ import annotations

import atexit
import dataclasses
import functools
import hashlib
import json
import os
import sys
import typing
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent
FORMAT = 1
MEMO_LIMIT = 4096  # option values remembered as accepted, per entry
ENTRIES = 4  # keys kept per cache file
_TYPES = {
    repr(t): t
    for base in (bool, int, float, str, list[str], list[int], list[float])
    for t in (base, base | None, typing.Optional[base])  # noqa: UP045 (older files spell it so)
}


@dataclasses.dataclass
class Declared:
    submodules: dict[str, type]  # name -> Options dataclass
    gates: dict[str, type | None]  # gate kind -> its Options dataclass, None if it has none
    gate_pooling: tuple[str, ...]
    plugin_defaults: dict[str, str]  # plugin submodule name -> its YAML defaults file
    live: bool  # the real registry (its Options run their checks) or the cached declarations

    def defaults_file(self, name: str, conf_dir: Path) -> Path:
        """A submodule's YAML defaults: conf/pelt/<name>.yaml for ours, the plugin's own file otherwise."""
        return Path(self.plugin_defaults[name]) if name in self.plugin_defaults else conf_dir / "pelt" / f"{name}.yaml"


_loaded: dict = {}  # this process's cache entry: {"key", "plugin_dirs", "declared", "accepted": [...]}


def live_registry_imported() -> bool:
    return "unipelt_cli.pelt" in sys.modules


def declared() -> Declared:
    """The registry's declarations: live if it is imported or the cache is stale, else cached."""
    if not live_registry_imported():
        cached = _read_cache()
        if cached is not None:
            return _rebuilt(cached["key"])
    return _live()


@functools.lru_cache(maxsize=4)
def _rebuilt(key: str) -> Declared:
    """The cached entry's declarations as dataclasses, built once per process (`key` names the entry)."""
    return _from_json(_loaded["declared"])


def check_options(name: str, values: dict) -> None:
    """Run submodule `name`'s own Options checks on `values` (UserError on a bad value), unless
    the same values were accepted before under the current cache key."""
    token = _token(name, values)
    if not live_registry_imported() and _read_cache() is not None and token in _loaded["accepted"]:
        return
    from unipelt_cli.pelt import SUBMODULES

    SUBMODULES[name].Options(**values)
    if _loaded.get("key") and name in _loaded["declared"]["submodules"]:  # one the cache declares
        _remember(token)


def _live() -> Declared:
    from unipelt_cli.pelt import GATE_POOLING, GATES, SUBMODULES
    from unipelt_cli.pelt.plugins import DEFAULTS

    return Declared(
        submodules={name: part.Options for name, part in SUBMODULES.items()},
        gates={kind: cls.Options for kind, cls in GATES.items()},
        gate_pooling=tuple(GATE_POOLING),
        plugin_defaults={name: str(path) for name, path in DEFAULTS.items()},
        live=True,
    )


def _token(name: str, values: dict) -> str:
    return name + ":" + json.dumps(values, sort_keys=True)


def cache_file() -> Path:
    from unipelt_cli.fetch import cache_root

    checkout = hashlib.sha1(str(PACKAGE).encode()).hexdigest()[:12]
    return cache_root() / f"declared-{checkout}.json"


def _stat(path: Path) -> list:
    try:
        st = path.stat()
    except OSError:
        return [str(path), None]
    return [str(path), st.st_size, st.st_mtime_ns]


def _key(plugin_dirs: list[str]) -> str:
    files = sorted((PACKAGE / "pelt").glob("*.py"))
    for folder in plugin_dirs:
        files += sorted(Path(folder).glob("*.py"))
    parts = [FORMAT, sys.version, str(PACKAGE), [_stat(f) for f in files]]
    # sys.path[0] is the script's folder or the working directory, which changes with every file
    # written there and is not where packages are installed
    parts.append([_stat(Path(p)) for p in sys.path[1:] if p and os.path.isdir(p)])
    return hashlib.sha256(json.dumps(parts).encode()).hexdigest()


def _read_file() -> dict:
    try:
        data = json.loads(cache_file().read_text())
        return data["entries"] if data.get("format") == FORMAT and isinstance(data.get("entries"), dict) else {}
    except (OSError, ValueError, KeyError, TypeError):
        return {}


def _read_cache() -> dict | None:
    """The cached entry whose key matches the files now, else a fresh one written from the live
    registry; None if the declarations cannot be cached (a type outside _TYPES, a broken plugin).
    The file keeps the ENTRIES most recently used keys (a checkout run with and without PYTHONPATH)."""
    if _loaded.get("key"):  # checked against the files once per process
        return _loaded
    for key, entry in _read_file().items():
        try:
            if key == _key(entry["plugin_dirs"]):
                _loaded.update(entry, key=key)
                return _loaded
        except (KeyError, TypeError):
            continue
    return _write_fresh()


def _write_fresh() -> dict | None:
    live = _live()
    from unipelt_cli.pelt.plugins import FAILED, plugin_dirs

    encoded = _to_json(live)
    if encoded is None or FAILED:  # a broken plugin's files are unknown: nothing could tell a fix
        return None
    dirs = plugin_dirs()
    _loaded.update(key=_key(dirs), plugin_dirs=dirs, declared=encoded, accepted=[])
    _save()
    return _loaded


def _remember(token: str) -> None:
    """Add `token` to the accepted values; the file is written once, when the process exits (a
    sweep plan checks hundreds of configs)."""
    if token in _loaded["accepted"]:
        return
    _loaded["accepted"] = (_loaded["accepted"] + [token])[-MEMO_LIMIT:]
    if not _loaded.get("save_at_exit"):
        _loaded["save_at_exit"] = True
        atexit.register(_save_at_exit)


def _save_at_exit() -> None:
    if _loaded.get("save_at_exit") and _loaded.get("key"):  # still this entry (tests swap it)
        _save()


def _save() -> None:
    """Write this process's entry into the file atomically (the other entries kept, oldest
    dropped); a cache that cannot be written is only slower, never an error."""
    entries = {k: v for k, v in _read_file().items() if k != _loaded["key"]}
    entries[_loaded["key"]] = {k: v for k, v in _loaded.items() if k not in ("key", "save_at_exit")}  # last: newest
    entries = dict(list(entries.items())[-ENTRIES:])
    path = cache_file()
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp.write_text(json.dumps({"format": FORMAT, "entries": entries}))
        os.replace(tmp, path)
    except OSError:
        try:
            tmp.unlink(missing_ok=True)
        except OSError:
            pass


def _fields_to_json(cls) -> list | None:
    hints = typing.get_type_hints(cls)
    out = []
    for f in dataclasses.fields(cls):
        kind = repr(hints[f.name])
        if kind not in _TYPES:
            return None
        default = f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
        if default is dataclasses.MISSING:
            return None
        out.append({"name": f.name, "type": kind, "default": default, "metadata": dict(f.metadata)})
    return out


def _to_json(live: Declared) -> dict | None:
    submodules = {name: _fields_to_json(cls) for name, cls in live.submodules.items()}
    gates = {kind: None if cls is None else _fields_to_json(cls) for kind, cls in live.gates.items()}
    if any(v is None for v in submodules.values()) or any(
        v is None for k, v in gates.items() if live.gates[k] is not None
    ):
        return None
    try:
        json.dumps([submodules, gates])
    except TypeError:  # a default or a metadata value JSON cannot hold
        return None
    return {
        "submodules": submodules,
        "gates": gates,
        "gate_pooling": list(live.gate_pooling),
        "plugin_defaults": live.plugin_defaults,
    }


def _rebuild(name: str, fields: list) -> type:
    spec = []
    for f in fields:
        default = f["default"]
        value = (
            dataclasses.field(default_factory=lambda d=default: list(d), metadata=f["metadata"])
            if isinstance(default, list)
            else dataclasses.field(default=default, metadata=f["metadata"])
        )
        spec.append((f["name"], _TYPES[f["type"]], value))
    return dataclasses.make_dataclass(name, spec)


def _from_json(data: dict) -> Declared:
    return Declared(
        submodules={name: _rebuild(f"{name}_options", f) for name, f in data["submodules"].items()},
        gates={kind: None if f is None else _rebuild(f"{kind}_gate_options", f) for kind, f in data["gates"].items()},
        gate_pooling=tuple(data["gate_pooling"]),
        plugin_defaults=data["plugin_defaults"],
        live=False,
    )
