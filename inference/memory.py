"""How much memory there is, and how many completions the engine decodes together in it."""
from __future__ import annotations

import psutil
import torch


def free_memory(device: torch.device) -> int:
    if device.type == "cuda":
        return torch.cuda.mem_get_info(device)[0]
    return psutil.virtual_memory().available


ENGINE_MEMORY = 1.5 * 2 ** 30  # the most a CPU's decode batch may hold in KV cache, beyond the model
ROW_TOKENS = 2048  # the length a batch is sized for (eval_max_tokens' default, and a prompt fits in the slack)
MAX_ROWS = {"cpu": 32, "cuda": 256}  # past 32 rows a CPU step gains nothing (docs/experiments/speed.md)


def decode_rows(model, dtype: torch.dtype | None) -> int:
    """How many completions to decode together: as many as have room for ROW_TOKENS of KV cache each, within
    ENGINE_MEMORY on a CPU and half the free memory anywhere, up to what the device gains from (MAX_ROWS)."""
    config = model.config
    param = next(model.parameters())
    heads = getattr(config, "num_attention_heads", 1)
    kv_heads = getattr(config, "num_key_value_heads", None) or heads
    head_dim = getattr(config, "head_dim", None) or getattr(config, "hidden_size", heads) // heads
    width = (dtype or param.dtype).itemsize if (dtype or param.dtype).is_floating_point else 2
    per_row = 2 * getattr(config, "num_hidden_layers", 1) * kv_heads * head_dim * width * ROW_TOKENS
    budget = free_memory(param.device) // 2
    if param.device.type == "cpu":
        budget = min(budget, ENGINE_MEMORY)
    return int(max(1, min(budget // per_row, MAX_ROWS.get(param.device.type, 32))))
