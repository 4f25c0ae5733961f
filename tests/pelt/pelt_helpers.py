"""Tiny random backbones and batches for the PELT tests (no weights needed)."""

import copy
import itertools

import torch
from transformers import BertConfig
from transformers.models.auto.modeling_auto import MODEL_FOR_SEQUENCE_CLASSIFICATION_MAPPING

from unipelt_cli.pelt import SUBMODULES, apply_pelt

TINY = dict(
    hidden_size=32,
    num_hidden_layers=2,
    num_attention_heads=4,
    intermediate_size=64,
    vocab_size=100,
    hidden_dropout_prob=0.0,
    attention_probs_dropout_prob=0.0,
)
NAMES = list(SUBMODULES)
# each submodule alone, every pair (where two can interact through one hook point), and all at once
COMBOS = [list(c) for n in (1, 2) for c in itertools.combinations(NAMES, n)] + [NAMES]


def tiny_model(impl: str = "eager", seed: int = 0, config=None):
    """A random tiny model (default: BERT, hidden 32, 2 layers, 4 heads) using attention `impl`."""
    torch.manual_seed(seed)
    config = copy.deepcopy(config or BertConfig(**TINY))
    config._attn_implementation = impl
    return MODEL_FOR_SEQUENCE_CLASSIFICATION_MAPPING[type(config)](config).eval()


def options(names, **overrides):
    """Options for `names`, enabled; overrides: {name: {field: value}}."""
    return {n: SUBMODULES[n].Options(enabled=True, **overrides.get(n, {})) for n in names}


def pelt_model(names, impl="eager", seed=0, pooling="masked", config=None, **overrides):
    model = tiny_model(impl, seed, config)
    apply_pelt(model, options(names, **overrides), gate_pooling=pooling)
    return model


def randomize(model, seed=1):
    """Give every PELT tensor (and BitFit bias) non-identity values, e.g. a non-zero LoRA B."""
    torch.manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            if p.requires_grad:
                p.add_(torch.randn_like(p) * 0.1)


def make_batch():
    """Two examples, the first padded: (input_ids, attention_mask, token_type_ids), each (2, 6)."""
    torch.manual_seed(123)
    ids = torch.randint(1, 100, (2, 6))
    mask = torch.tensor([[1, 1, 1, 1, 0, 0], [1, 1, 1, 1, 1, 1]])
    ids = ids * mask
    return {"input_ids": ids, "attention_mask": mask, "token_type_ids": torch.zeros_like(ids)}


def logits(model, batch):
    with torch.no_grad():
        return model(**batch).logits
