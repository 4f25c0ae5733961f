"""Replay the planted bugs of docs/TESTING.md: each in a scratch copy of the checkout, with the tests
that must catch it. `python scripts/planted.py [ID ...]`; exits 1 if any bug passes its tests.

A bug is a list of (file, old text, new text) edits; its tests must fail with the bug in place (and
pass without it: the normal suite shows that).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
REF = "tests/pelt/test_pelt_reference.py"

BUGS = {
    "adapter-gate-input": (
        "the adapter's gate reads s = h + a instead of its input z = LN(s)",
        [
            ("unipelt_cli/pelt/adapter.py", "z = norm.forward(s)  #", "self.s = s\n        z = norm.forward(s)  #"),
            ("unipelt_cli/pelt/adapter.py", "self.gate(z, self.ctx.mask)", "self.gate(self.s, self.ctx.mask)"),
        ],
        [f"{REF}::test_gated_submodule_matches_its_reference"],
    ),
    "lora-gate-input": (
        "LoRA's gate reads the query projection's output W_q x + b_q instead of the self-attention input x",
        [
            (
                "unipelt_cli/pelt/lora.py",
                "x = archmod.first_input(args, kwargs)\n        self.gate_values",
                "x = archmod.first_input(args, kwargs)\n        q = next(iter(self.linears.values()))\n"
                "        x = F.linear(x, q.weight, q.bias)\n        self.gate_values",
            )
        ],
        [
            f"{REF}::test_gated_submodule_matches_its_reference",
            f"{REF}::test_gated_lora_and_dora_match_their_reference",
        ],
    ),
    "parallel-adapter-gate-input": (
        "the parallel adapter's gate reads the LayerNorm input h + x instead of the sublayer input x",
        [("unipelt_cli/pelt/parallel_adapter.py", "self.gate(x, self.ctx.mask)", "self.gate(args[0], self.ctx.mask)")],
        [f"{REF}::test_gated_submodule_matches_its_reference"],
    ),
    "ia3-gate-input": (
        "(IA)^3's gate reads the key projection's output W_k x + b_k instead of the self-attention input x",
        [
            (
                "unipelt_cli/pelt/ia3.py",
                "self.g = self.gate(archmod.first_input(args, kwargs), self.ctx.mask)",
                "key = self.linears['key']\n"
                "        x = F.linear(archmod.first_input(args, kwargs), key.weight, key.bias)\n"
                "        self.g = self.gate(x, self.ctx.mask)",
            ),
            (
                "unipelt_cli/pelt/ia3.py",
                "from torch import nn\n",
                "from torch import nn\nfrom torch.nn import functional as F\n",
            ),
        ],
        [f"{REF}::test_gated_submodule_matches_its_reference"],
    ),
    "prefix-gate-values": (
        "the prefix gate scales the prefix keys but not the values (the spec: one gate for both)",
        [
            (
                "unipelt_cli/pelt/prefix.py",
                "kv = kv * g.view(1, batch, 1, 1, 1)",
                "kv = torch.stack([kv[0] * g.view(batch, 1, 1, 1), kv[1]])",
            )
        ],
        [f"{REF}::test_gated_submodule_matches_its_reference"],
    ),
    "gate-mean-then-sigmoid": (
        "the gate pools the logits, then takes the sigmoid (mean-then-sigmoid)",
        [
            ("unipelt_cli/pelt/gate.py", "return torch.sigmoid(self.linear(u))  # (B, T, 1)", "return self.linear(u)"),
            (
                "unipelt_cli/pelt/gate.py",
                "g = (s * m).sum(1, keepdim=True) / m.sum(1, keepdim=True).clamp_min(1)",
                "g = torch.sigmoid((s * m).sum(1, keepdim=True) / m.sum(1, keepdim=True).clamp_min(1))",
            ),
            (
                "unipelt_cli/pelt/gate.py",
                "g = s.mean(1, keepdim=True)  #",
                "g = torch.sigmoid(s.mean(1, keepdim=True))  #",
            ),
        ],
        ["tests/pelt/test_pelt_gate.py::test_gate_formula_and_pooling"],
    ),
    "identity-no-seed": (
        "seed is left out of the run identity (two seeds would share one run folder and one report cell)",
        [
            (
                "unipelt_cli/identity.py",
                'BOOKKEEPING = ("runtime", "data.dir", "logger")',
                'BOOKKEEPING = ("runtime", "data.dir", "logger", "seed")',
            )
        ],
        ["tests/test_identity.py::test_every_key_that_changes_a_run_changes_its_identity"],
    ),
    "identity-hashes-bookkeeping": (
        "the logger (bookkeeping) is hashed into the identity: the same run under another tracker retrains",
        [
            (
                "unipelt_cli/identity.py",
                'BOOKKEEPING = ("runtime", "data.dir", "logger")',
                'BOOKKEEPING = ("runtime", "data.dir")',
            )
        ],
        ["tests/test_identity.py::test_every_key_that_changes_a_run_changes_its_identity"],
    ),
    "mrpc-wrong-metric": (
        "MRPC is scored by accuracy instead of the paper's F1",
        [("conf/task/mrpc.yaml", "metric: f1", "metric: accuracy")],
        ["tests/test_task_metrics.py"],
    ),
    "last-not-best-checkpoint": (
        "the last weights are tested instead of the best-on-dev ones (restore skipped)",
        [
            (
                "unipelt_cli/train.py",
                "    restore_state(model, best_state)\n    return LoopResult(",
                "    return LoopResult(",
            )
        ],
        ["tests/test_train_loop.py", "tests/test_train_e2e.py::test_a_run_that_learns_tests_its_best_on_dev_weights"],
    ),
}


def replay(bug_id: str) -> bool:
    """True when the bug's tests fail with the bug planted (the bug is caught)."""
    what, edits, tests = BUGS[bug_id]
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        for name in ("unipelt_cli", "conf", "tests"):
            shutil.copytree(REPO / name, root / name, ignore=shutil.ignore_patterns("__pycache__"))
        shutil.copy(REPO / "pyproject.toml", root)
        for file, old, new in edits:
            path = root / file
            text = path.read_text()
            if text.count(old) != 1:
                raise SystemExit(f"{bug_id}: {old!r} occurs {text.count(old)} times in {file}: update the bug")
            path.write_text(text.replace(old, new))
        env = {**os.environ, "PYTHONPATH": str(root)}
        command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *tests]
        result = subprocess.run(command, cwd=root, env=env, capture_output=True, text=True)
    caught = result.returncode == 1
    last = (result.stdout.strip().splitlines() or ["(no output)"])[-1]
    print(f"{'caught ' if caught else 'MISSED '} {bug_id}: {what}\n         {last}", flush=True)
    return caught


if __name__ == "__main__":
    ids = sys.argv[1:] or list(BUGS)
    missed = [b for b in ids if not replay(b)]
    sys.exit(1 if missed else 0)
