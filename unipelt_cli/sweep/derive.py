"""Planning a grid with one Hydra compose per axis value instead of one per job.

A Hydra compose takes 0.05-0.2 s, so composing each of paper_lowres's 840 jobs took minutes. A grid
is a product of axes (`task=...`, `method=...`, `seed=...`). The planner composes the first job in
full, and one more config for every other value of each axis, the other axes at their first value.
What a value changes against the first job (its delta: leaves set, added or removed) is applied to
the first job's resolved config to derive every job's config as a plain dict:

    config(task=b, method=c, seed=d) = first + delta(task=b) + delta(method=c) + delta(seed=d)

That is the full compose's result when no two axes change the same key: a value override is applied
after every config group, and each group's file is merged on its own, so changes to disjoint keys
commute. The planner checks that the deltas of different axes are disjoint, that no option file
has a defaults list of its own (through which one choice could pull in files that depend on
another), and that at most one of the groups the primary defaults link (`lr: ${backbone}_${method}`)
varies in the grid; every derived config gets the value checks a composed one gets (`config.validate`); and
the grid's last job, which differs from the first on every axis, is composed in full and compared.
If any of that fails, `plan` gives None and the caller composes every job as before.

A job whose config is an error is composed in full, so the error is the same one line the full
compose gives, for the same (first failing) job.
"""

from __future__ import annotations

import json
import re

from unipelt_cli import trees
from unipelt_cli.errors import UserError

REMOVED = object()  # a delta's mark for a leaf the value removes


def compose_job(compose, combo: list[str]):
    """compose(combo), with the job named in its error."""
    try:
        return compose(combo)
    except UserError as exc:
        raise UserError(f"job {' '.join(combo)}: {exc}") from None


def pays(axes: list[list[str]], missing: list[list[str]]) -> bool:
    """Whether deriving needs fewer composes than the jobs left to plan (and the config tree allows it)."""
    composes = 2 + sum(len(values) - 1 for values in axes)  # the first job, one per other value, the check
    if len(missing) <= composes:
        return False
    linked = _linked_groups()
    if linked is None:
        return False
    varying = {values[0].partition("=")[0] for values in axes if len(values) > 1}
    return len(varying & linked) <= 1


def plan(axes: list[list[str]], combos: list[list[str]]) -> list[tuple[str, str]] | None:
    """(run id, identity) for every combo of the grid, in order; None where deriving is not exact."""
    from unipelt_cli import config, identity, runs

    derived = configs(axes, combos)
    if derived is None:
        return None
    neutral = config.neutral_values()
    digests = [identity.digest(data, neutral) for data in derived]
    return [(runs.run_name(data, digest), digest) for data, digest in zip(derived, digests, strict=True)]


def configs(axes: list[list[str]], combos: list[list[str]]) -> list[dict] | None:
    """The resolved config (`config.to_dict`'s form) of every combo, in order; None where deriving is
    not exact. A combo whose config is an error raises that error, as the full compose would."""
    from unipelt_cli import config

    first = [values[0] for values in axes]
    with config.composer() as compose:
        try:
            flat = trees.leaves(config.to_dict(compose(first)))
        except UserError:
            return _first_error(compose, combos)
        deltas: dict[tuple[int, str], dict] = {}  # (axis, override) -> {path: value or REMOVED}
        failed: set[tuple[int, str]] = set()
        for i, values in enumerate(axes):
            for value in dict.fromkeys(values[1:]):
                if value == values[0]:
                    continue
                try:
                    composed = config.to_dict(compose([*first[:i], value, *first[i + 1 :]]))
                except UserError:
                    failed.add((i, value))
                    continue
                deltas[(i, value)] = _delta(flat, trees.leaves(composed))
        if not _disjoint(deltas):
            return None
        out = []
        for n, combo in enumerate(combos):
            if any((i, ov) in failed for i, ov in enumerate(combo)):
                return _first_error(compose, combos[n:])
            data = _derive(flat, [deltas.get((i, ov), {}) for i, ov in enumerate(combo)])
            try:
                config.validate(data)
            except UserError:
                return _first_error(compose, combos[n:])
            out.append(data)
        if len(combos) > 1:  # the last job differs from the first on every axis: compose it to compare
            try:
                if not _same(out[-1], config.to_dict(compose(combos[-1]))):
                    return None
            except UserError:
                return None
    return out


def _first_error(compose, combos: list[list[str]]) -> None:
    """Compose the first job whose config could not be derived or failed its checks: the error is
    the full compose's, for the same job; None (compose every job) if it composes after all."""
    compose_job(compose, combos[0])
    return None


def _linked_groups() -> set[str] | None:
    """The groups whose choices the primary config's defaults interpolate (`lr: ${backbone}_${method}`
    picks a file by two choices), or None when some option file has a defaults list of its own.

    Deriving is exact while each option's file is merged on its own: no option file pulls in others,
    and at most one linked group varies in the grid (its delta is then taken at the others' fixed
    choices, so the linked file it picks is in it). `pays` checks the second part against the grid."""
    import yaml

    from unipelt_cli.config import NOT_GROUPS, conf_dir

    root = conf_dir()
    primary = yaml.safe_load((root / "config.yaml").read_text(encoding="utf-8")) or {}
    linked = set(re.findall(r"\$\{(\w+)\}", json.dumps(primary.get("defaults", []))))
    for path in root.rglob("*.yaml"):
        group = path.relative_to(root).parts[0]
        if group not in NOT_GROUPS and path.parent != root:
            if re.search(r"^defaults\s*:", path.read_text(encoding="utf-8"), re.M):
                return None
    return linked


def _same(a, b) -> bool:
    """Equal with types: 1, 1.0 and true hash differently in a run's identity."""
    return json.dumps(a, sort_keys=True) == json.dumps(b, sort_keys=True)


def _delta(base: dict, other: dict) -> dict:
    delta = {path: value for path, value in other.items() if path not in base or not _same(base[path], value)}
    delta.update({path: REMOVED for path in base if path not in other})
    return delta


def _disjoint(deltas: dict) -> bool:
    """No leaf that one axis changes is, or lies above or below, a leaf another axis changes."""
    leaves: dict[int, set] = {}
    above: dict[int, set] = {}  # each changed leaf and every dict above it
    for (i, _), delta in deltas.items():
        leaves.setdefault(i, set()).update(delta)
        above.setdefault(i, set()).update(path[:depth] for path in delta for depth in range(1, len(path) + 1))
    return not any(i != j and leaves[i] & above[j] for i in leaves for j in above)


def _derive(flat: dict, deltas: list[dict]) -> dict:
    leaves = dict(flat)
    for delta in deltas:
        for path, value in delta.items():
            if value is REMOVED:
                leaves.pop(path, None)
            else:
                leaves[path] = value
    tree: dict = {}
    for path, value in leaves.items():
        node = tree
        for key in path[:-1]:
            node = node.setdefault(key, {})
        node[path[-1]] = {} if isinstance(value, dict) else value  # an empty dict: a fresh one per job
    return tree
