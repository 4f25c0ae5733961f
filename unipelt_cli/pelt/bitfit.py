"""BitFit (Ben Zaken et al. 2022): train every bias of the backbone and nothing else.

"Backbone" is the base model (`model.base_model`: embeddings, encoder, pooler), so the count
includes the pooler's dense bias and excludes the classification head. BERT-base: 102,912 biases.
No new parameters: the biases keep their names in the model and in `pelt_state_dict`.
"""

from dataclasses import dataclass

import torch

from unipelt_cli.pelt.registry import Context, Part, register


@dataclass
class BitFitOptions:
    enabled: bool = False  # train every bias of the backbone (embeddings, encoder, pooler)


@register
class BitFit(Part):
    name = "bitfit"
    Options = BitFitOptions
    needs = ()

    def __init__(self, biases: dict[str, torch.nn.Parameter]):
        super().__init__()
        self.biases = biases  # model name -> the backbone's bias (a plain dict: not registered here)

    @classmethod
    def attach(cls, model, arch, options: BitFitOptions, ctx: Context) -> "BitFit":
        in_backbone = {id(p) for p in model.base_model.parameters()}
        biases = {name: p for name, p in model.named_parameters() if id(p) in in_backbone and name.endswith("bias")}
        for p in biases.values():
            p.requires_grad_(True)
        return cls(biases)

    def saved_state(self) -> dict[str, torch.Tensor]:
        return {name: p.detach() for name, p in self.biases.items()}

    def counts(self) -> dict[str, int]:
        n = sum(p.numel() for p in self.biases.values())
        return {"params": n, "gate_params": 0, "stored": n}

    @classmethod
    def merge_refusal(cls, options) -> str | None:
        return None  # the trained biases are the backbone's own

    def merge(self, model) -> None:
        self.remove_hooks()
