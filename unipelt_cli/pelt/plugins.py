"""PELT submodules from installed packages: the `unipelt.pelt` entry point group.

A plugin package declares, in its pyproject.toml,

    [project.entry-points."unipelt.pelt"]
    ia3_plus = "my_pelt.ia3_plus"          # a module that defines an Options dataclass and an @register'ed Part

and ships the module's defaults as `<name>.yaml` beside it (package data), like conf/pelt/<name>.yaml.
Importing the module registers the submodule; nothing else is needed. Only installed distributions
are read (importlib.metadata): no code is ever loaded from a config, a run folder or a path.

A plugin that fails to import is skipped with a warning and listed, with the reason, by
`unipelt ls pelt`; a config that names it then fails as an unknown key would.
"""

from __future__ import annotations

import importlib
import sys
from importlib import metadata
from pathlib import Path

from unipelt_cli.pelt.registry import ORIGINS, SUBMODULES

GROUP = "unipelt.pelt"
DEFAULTS: dict[str, Path] = {}  # plugin submodule name -> its YAML defaults
FAILED: dict[str, str] = {}  # entry point -> why it could not be loaded
LOADED: set[str] = set()  # entry point values already imported
FOLDERS: set[str] = set()  # folders of the plugin modules imported (their files key unipelt_cli/declared.py's cache)


def load_plugins() -> None:
    """Import every installed `unipelt.pelt` entry point once; record where each submodule came from."""
    for ep in metadata.entry_points(group=GROUP):
        if ep.name in FAILED or ep.value in LOADED:
            continue
        LOADED.add(ep.value)
        dist = f"{ep.dist.name} {ep.dist.version}" if ep.dist else "?"
        before = set(SUBMODULES)
        try:
            module = importlib.import_module(ep.value.split(":")[0])
        except Exception as exc:  # a broken plugin must not take the whole CLI down
            FAILED[ep.name] = f"{dist}: {type(exc).__name__}: {str(exc).strip().splitlines()[0] if str(exc) else ''}"
            print(f"warning: PELT plugin {ep.name} ({dist}) failed to load: {FAILED[ep.name]}", file=sys.stderr)
            continue
        FOLDERS.add(str(Path(module.__file__).resolve().parent))
        for name in sorted(set(SUBMODULES) - before):
            ORIGINS[name] = f"plugin {dist} ({ep.value})"
            DEFAULTS[name] = Path(module.__file__).with_name(f"{name}.yaml")


def plugin_dirs() -> list[str]:
    return sorted(FOLDERS)
