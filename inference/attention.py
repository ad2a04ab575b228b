"""Attention for one new token per row on a CPU in bf16: two small matmuls per key/value head.

torch's SDPA kernel on a CPU (2.13) takes about 2.3 ms per layer for the attention of one decode step in bf16 (32
rows, 9 query heads over 3 key/value heads, 110 cached positions), ten times the 0.2 ms the same attention takes
as two grouped matmuls and a softmax; over the default model's 30 layers that was 15 to 38 % of a decode step
(docs/experiments/speed.md). Prefill (several query tokens) and every other device or dtype keep SDPA, whose
kernels win there. The scores are computed in bf16 and the softmax in fp32, as transformers' eager attention does.
"""
from __future__ import annotations

from contextlib import contextmanager
from functools import cache

import torch

NAME = "sdpa_grouped_decode"


def grouped_decode_attention(module, query, key, value, attention_mask, dropout: float = 0.0,
                             scaling: float | None = None, **kwargs):
    """Same inputs and output as transformers' SDPA attention ([batch, heads, q, dim] in, [batch, q, heads, dim]
    out); a single query token per row goes through grouped matmuls, anything else through SDPA itself."""
    batch, heads, q_len, dim = query.shape
    if q_len != 1 or dropout or kwargs.get("softcap") is not None or kwargs.get("position_bias") is not None:
        from transformers.integrations.sdpa_attention import sdpa_attention_forward

        return sdpa_attention_forward(module, query, key, value, attention_mask, dropout=dropout, scaling=scaling,
                                      **kwargs)
    kv_heads = key.shape[1]
    # query head h reads key/value head h // groups (repeat_kv's order), so the query heads of one key/value head
    # are neighbours: [batch, kv_heads, groups, dim] against [batch, kv_heads, positions, dim]
    q = query.reshape(batch, kv_heads, heads // kv_heads, dim)
    scores = torch.matmul(q, key.transpose(-1, -2)) * (dim ** -0.5 if scaling is None else scaling)
    if attention_mask is not None:
        mask = attention_mask[..., -key.shape[2]:]  # [batch or 1, 1, 1, positions]
        scores = (scores.masked_fill(~mask, float("-inf")) if mask.dtype == torch.bool
                  else scores + mask.to(scores.dtype))
    weights = torch.softmax(scores, dim=-1, dtype=torch.float32).to(value.dtype)
    out = torch.matmul(weights, value)  # [batch, kv_heads, groups, dim]
    return out.reshape(batch, 1, heads, dim), None


@cache
def _registered() -> str:
    """Registered with transformers on first use (importing its masking code takes seconds)."""
    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

    AttentionInterface.register(NAME, grouped_decode_attention)
    AttentionMaskInterface.register(NAME, sdpa_mask)  # the same masks as SDPA: the prefill goes through it
    return NAME


def wanted(model, dtype: torch.dtype | None) -> bool:
    """Where the grouped decode wins: a model on SDPA, decoding on a CPU in bf16 (bf16 copies of its weights,
    `dtype`, or bf16 weights of its own, as the server keeps them)."""
    param = next(model.parameters())
    return ((dtype or param.dtype) == torch.bfloat16 and param.device.type == "cpu"
            and getattr(model.config, "_attn_implementation", None) == "sdpa")


@contextmanager
def decode_attention(model, dtype: torch.dtype | None):
    """The model's attention switched to the grouped decode for the block where it wins, then put back."""
    if not wanted(model, dtype):
        yield model
        return
    config = model.config
    config._attn_implementation = _registered()
    try:
        yield model
    finally:
        config._attn_implementation = "sdpa"
