"""Per-step gate means for the trackers: a forward hook on every gate keeps its last training-mode
output (the batch mean, a detached tensor: no sync per call); `means()` reads them all at once."""

from __future__ import annotations

import torch


class GateMeans:
    def __init__(self, gates: list):
        self.last: dict[str, torch.Tensor] = {}
        self.handles = [m.register_forward_hook(self._hook(f"gate/{name}/layer{layer}")) for layer, name, m in gates]

    @classmethod
    def watch(cls, model) -> GateMeans | None:
        if not hasattr(model, "pelt"):
            return None
        from unipelt_cli import pelt

        gates = pelt.iter_gates(model)
        return cls(gates) if gates else None

    def _hook(self, key: str):
        def keep(module, args, out):
            if module.training:
                self.last[key] = out.detach().mean()

        return keep

    def means(self) -> dict[str, float]:
        if not self.last:
            return {}
        keys = sorted(self.last)
        values = torch.stack([self.last[k].float() for k in keys]).tolist()
        return dict(zip(keys, values, strict=True))

    def remove(self) -> None:
        for handle in self.handles:
            handle.remove()
