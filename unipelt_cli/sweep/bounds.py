"""How many jobs a sweep may have, counted from the parsed overrides before anything is expanded.

    jobs = product over keys of len(values(key))     range(a,b,s): ceil((b - a) / s); a,b,c: 3;
                                                     glob(p): matching options; a fixed value: 1
A later key replaces an earlier one (the command line over a preset), as in grid.expand.

Planning composes and checks every job's config (0.1-0.3 s each, once; then cached) and keeps the
whole plan in memory, so `seed=range(0,1000000)` would compose for days. Above MAX_JOBS the sweep
is refused at once, before a single value is listed.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable

from unipelt_cli.errors import UserError

MAX_JOBS = 10_000  # ~12x the paper's 840-run grid; UNIPELT_MAX_JOBS=N raises it
LIMIT_ENV = "UNIPELT_MAX_JOBS"


def max_jobs() -> int:
    raw = os.environ.get(LIMIT_ENV, "")
    try:
        return int(raw) if raw else MAX_JOBS
    except ValueError:
        raise UserError(f"{LIMIT_ENV}={raw} is not a number: set it to the largest grid a sweep may plan") from None


def axis_size(override, options: Callable[[str], list[str] | None]) -> int:
    """How many values one parsed override gives, without listing them."""
    from hydra.core.override_parser.types import ChoiceSweep, Glob, RangeSweep

    if not override.is_sweep_override():
        return 1
    value = override.value()
    if isinstance(value, ChoiceSweep):
        return len(value.list)
    if isinstance(value, Glob):
        return len(value.filter(options(override.get_key_element()) or []))
    if isinstance(value, RangeSweep):
        if value.step == 0:
            raise UserError(f"{override.input_line}: a range needs a step other than 0, e.g. range(1,6)")
        if all(isinstance(v, int) for v in (value.start, value.stop, value.step)):
            return len(range(value.start, value.stop, value.step))
        return max(0, math.ceil((value.stop - value.start) / value.step))
    return 1  # an interval: grid.expand refuses it


def check(parsed: list, options: Callable[[str], list[str] | None]) -> int:
    """The grid's size; UserError when it is above the limit."""
    sizes: dict[str, int] = {}
    for override in parsed:
        sizes[override.get_key_element()] = axis_size(override, options)
    total, limit = math.prod(sizes.values()), max_jobs()
    if total > limit:
        axes = " x ".join(f"{key} {n:,}" for key, n in sizes.items() if n > 1)
        raise UserError(
            f"the grid has {total:,} jobs ({axes}), more than the {limit:,} a sweep plans: "
            f"split it into smaller sweeps (or raise the limit with {LIMIT_ENV}=N)"
        )
    return total
