"""MPNet's self-attention routed through transformers' attention interface (for prefix-tuning).

MPNetSelfAttention (transformers 5.x) computes, by hand,

    A = softmax(q k^T / sqrt(d_head) + R + M) v        R: relative position bias (B, heads, T, T)
                                                        M: additive padding mask  (B, 1, T, T)

where R comes from one Embedding(32 buckets, heads) shared by all layers (MPNetEncoder computes it
once and passes it to every layer). It never calls the attention interface, and transformers gives
MPNet no SDPA implementation (`from_pretrained(attn_implementation="sdpa")` is refused), so MPNet
has exactly one attention path: eager. Prefix-tuning reaches attention only through the interface,
so for MPNet the table entry names `attention_forward` below, which the prefix submodule installs
as each self-attention module's forward. It computes the same A with the bias folded into the mask,

    A = interface(q, k, v, mask = M + R)

and the prefix then prepends L key/value columns and L mask columns of 0 (`prefix.extend_mask`).
**Prefix columns get relative position bias 0**: a prefix vector is a virtual token with no place
in the sentence, so every query scores it by q . p_k / sqrt(d_head) alone, as in BERT; any other
choice (e.g. the bias of some relative distance) would tie the prefix to a position it does not have.
"""

from __future__ import annotations

import torch

# transformers is imported where attention runs, not here: the config path (`unipelt train --cfg`,
# sweep planning) imports this package for its Options and should not pay for transformers.


def eager_attention_forward(*args, **kwargs):
    """BERT's eager attention: the same formula as MPNet's."""
    from transformers.models.bert.modeling_bert import eager_attention_forward as bert_eager

    return bert_eager(*args, **kwargs)


def attention_forward(self, hidden_states, attention_mask=None, position_bias=None, output_attentions=False, **kwargs):
    """MPNetSelfAttention.forward through `ALL_ATTENTION_FUNCTIONS[self.config._attn_implementation]`.

    hidden_states: (B, T, d); attention_mask: additive (B, 1, T, T) or None; position_bias: (B, heads, T, T).
    Needs `self.config` (the prefix submodule sets its RoutedConfig there).
    """
    input_shape = hidden_states.shape[:-1]
    hidden_shape = (*input_shape, -1, self.attention_head_size)
    q = self.q(hidden_states).view(hidden_shape).transpose(1, 2)  # (B, heads, T, d_head)
    k = self.k(hidden_states).view(hidden_shape).transpose(1, 2)
    v = self.v(hidden_states).view(hidden_shape).transpose(1, 2)
    mask = position_bias
    if attention_mask is not None:
        if attention_mask.dtype == torch.bool:  # (not built for MPNet's eager config; kept exact if it ever is)
            attention_mask = torch.zeros_like(attention_mask, dtype=q.dtype).masked_fill(
                ~attention_mask, torch.finfo(q.dtype).min
            )
        mask = attention_mask if mask is None else mask + attention_mask  # (B, heads, T, T)
    from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS

    attention = ALL_ATTENTION_FUNCTIONS.get_interface(self.config._attn_implementation, eager_attention_forward)
    context, probs = attention(
        self,
        q,
        k,
        v,
        mask,
        dropout=self.dropout.p if self.training else 0.0,
        scaling=self.attention_head_size**-0.5,
    )  # context: (B, T, heads, d_head)
    o = self.o(context.reshape(*input_shape, -1).contiguous())
    return (o, probs) if output_attentions else (o,)
