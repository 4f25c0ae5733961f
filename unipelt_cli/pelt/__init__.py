"""UniPELT submodules (adapter, prefix-tuning, LoRA, BitFit) and their gates, attached by hooks.

    from unipelt_cli.pelt import SUBMODULES, apply_pelt, pelt_state_dict
    options = {"adapter": SUBMODULES["adapter"].Options(enabled=True), ...}
    apply_pelt(model, options)          # freezes the backbone, attaches, trains only PELT tensors
    model(input_ids=..., attention_mask=...).logits

Every file in this package is imported here; a submodule file registers itself (see registry.py),
so adding one is that file plus conf/pelt/<name>.yaml. Installed plugin packages add theirs
through the `unipelt.pelt` entry point group (plugins.py).
"""

import importlib
import pkgutil

from unipelt_cli.pelt.apply import (
    apply_pelt,
    before_save,
    collect_gate_stats,
    gate_stats,
    iter_gates,
    load_pelt_state_dict,
    merge,
    merge_refusal,
    mergeable,
    param_report,
    pelt_state_dict,
    reset_gate_stats,
)
from unipelt_cli.pelt.gate import GATE_POOLING, GATES
from unipelt_cli.pelt.plugins import load_plugins
from unipelt_cli.pelt.registry import ORIGINS, SUBMODULES

for _module in sorted(m.name for m in pkgutil.iter_modules(__path__)):
    importlib.import_module(f"{__name__}.{_module}")
load_plugins()

__all__ = [
    "GATES",
    "GATE_POOLING",
    "ORIGINS",
    "SUBMODULES",
    "apply_pelt",
    "before_save",
    "collect_gate_stats",
    "gate_stats",
    "iter_gates",
    "load_pelt_state_dict",
    "load_plugins",
    "merge",
    "merge_refusal",
    "mergeable",
    "param_report",
    "pelt_state_dict",
    "reset_gate_stats",
]
