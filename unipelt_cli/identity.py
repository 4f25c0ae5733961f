"""A run's identity: what determines its numbers, and nothing else, hashed. One place for train,
sweep and report (and no torch, no Hydra: the report and the sweep index read it from run files).

    identity(config) = sha256(json(canonical(config)))      (keys sorted, no spaces)

    canonical(config) is the resolved config without
      - bookkeeping keys (BOOKKEEPING: where and how fast a run happens, never what it computes),
      - every PELT submodule that is not enabled (`pelt.<name>` with enabled: false), whatever its options,
      - gate-kind options (`pelt.gate.<kind>`) that no enabled, gated submodule uses,
      - every option set to its *neutral* value: the value under which an option added after
        identity version 1 does nothing (it behaves as the code did before the option existed).
        An option declares it where it is defined: `field(default=..., metadata={"neutral": ...})`.

So registering a new submodule, adding a gate kind, or adding an option left at its neutral value
changes no existing identity; changing what a run computes always does.

Identity version 1 (before 2026-12) hashed every key, disabled submodules included. Runs of that
era are recognised by recomputing their identity from their stored config.yaml (their configs hold
no option added later, so no neutral value is needed): `of_run_files`. Their folder names and
result files are left exactly as written; `config_hash` in their result.json stays the v1 hash.
"""

from __future__ import annotations

import copy
import hashlib
import json
from collections.abc import Mapping
from typing import Any

VERSION = 2
BOOKKEEPING = ("runtime", "data.dir", "logger")


def _pop(tree: dict, dotted: str) -> None:
    *parents, leaf = dotted.split(".")
    node = tree
    for part in parents:
        node = node.get(part)
        if not isinstance(node, dict):
            return
    node.pop(leaf, None)


def lookup(tree: dict, dotted: str, missing: object = None) -> Any:
    """tree["a"]["b"] for "a.b", or `missing` where a key is absent or a parent is not a mapping."""
    node: Any = tree
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            return missing
        node = node[part]
    return node


def _prune_empty(tree: dict) -> dict:
    out = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            value = _prune_empty(value)
            if not value:
                continue
        out[key] = value
    return out


def canonical(config: Mapping, neutral: Mapping[str, Any] | None = None) -> dict:
    """The part of a resolved config (plain dict) that determines a run; see the module docstring."""
    data = copy.deepcopy(dict(config))
    for key in BOOKKEEPING:
        _pop(data, key)
    pelt = data.get("pelt")
    if isinstance(pelt, dict):
        subs = {name: opts for name, opts in pelt.items() if isinstance(opts, dict) and "enabled" in opts}
        for name, opts in subs.items():
            if not opts["enabled"]:
                del pelt[name]
        kinds_used = {opts.get("gate_type") for opts in subs.values() if opts["enabled"] and opts.get("gate")}
        gate_kinds = pelt.get("gate")
        if isinstance(gate_kinds, dict):
            pelt["gate"] = {kind: opts for kind, opts in gate_kinds.items() if kind in kinds_used}
    missing = object()
    for key, value in (neutral or {}).items():
        found = lookup(data, key, missing)
        if found is not missing and found == value and type(found) is type(value):
            _pop(data, key)
    return _prune_empty(data)


def digest(config: Mapping, neutral: Mapping[str, Any] | None = None) -> str:
    blob = json.dumps(canonical(config, neutral), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()


def of_run_files(result: dict | None, status: dict | None, config: dict | None) -> str | None:
    """The identity of a run folder from what it stored: the identity a v2 run recorded (in
    result.json or status.json), else (a v1 run) recomputed from its config.yaml; None if none."""
    for record in (result, status):
        if isinstance(record, dict) and record.get("identity_version") == VERSION and record.get("config_hash"):
            return str(record["config_hash"])
    if isinstance(config, dict):
        return digest(config)
    return None
