"""The weights the engine decodes with: the LoRA adapter merged into copies of the weights it touches, and
half-precision copies where the hardware computes them natively. The original tensors are always put back
untouched, so training goes on with bit-identical weights."""
from __future__ import annotations

from contextlib import contextmanager

import torch

from core.device import cpu_has_fast_bf16
from inference.memory import free_memory


def _mergeable_lora_layers(model) -> list:
    """Plain LoRA layers on float nn.Linear weights, adapter active and not merged yet (DoRA, quantized
    and disabled layers keep their own forward)."""
    from peft.tuners.lora import Linear as LoraLinear

    layers = []
    for module in model.modules():
        if not isinstance(module, LoraLinear) or module.disable_adapters or module.merged:
            continue
        base = module.get_base_layer()
        active = [a for a in module.active_adapters if a in module.lora_A]
        if (type(base) is torch.nn.Linear and base.weight.is_floating_point() and active
                and not any(a in module.lora_variant or module.lora_bias[a] for a in active)):
            layers.append((module, active))
    return layers


@contextmanager
def _replaced(params: list, new):
    """Each parameter's tensor replaced by `new(param)` for the block, then the very same original put back
    (never recomputed), so training goes on with bit-identical weights."""
    originals = []
    try:
        with torch.no_grad():
            for p in params:
                originals.append((p, p.data))
                p.data = new(p)
        yield
    finally:
        for p, data in originals:
            p.data = data


@contextmanager
def merged_lora(model):
    """The model with its active LoRA adapters merged into new weight tensors, when twice their size is free."""
    layers = _mergeable_lora_layers(model)
    size = sum(m.get_base_layer().weight.nbytes for m, _ in layers)
    if not layers or 2 * size > free_memory(layers[0][0].get_base_layer().weight.device):
        yield model
        return
    active = {module.get_base_layer().weight: (module, adapters) for module, adapters in layers}

    def merged(weight):
        module, adapters = active[weight]
        module.merged_adapters.extend(adapters)  # peft's forward then calls the base layer alone
        # summed in fp32 and rounded once: the delta of a base held in bf16 while it trains is added at full
        # precision, not rounded to bf16 before the sum
        return (weight.data.float() + sum(module.get_delta_weight(a).float() for a in adapters)).to(weight.dtype)

    try:
        with _replaced(list(active), merged):
            yield model
    finally:
        for module, _ in layers:
            module.merged_adapters.clear()


def decode_dtype(model) -> torch.dtype | None:
    """bf16 where the hardware computes it natively and the weights are fp32; the half precision of a model
    that trains with its frozen linear weights held in it (training/trainer.py: half_precision_base), so that
    one dtype runs throughout; None (the weights as they are) otherwise: quantized, or all half precision."""
    params = list(model.parameters())
    dtypes = {p.dtype for p in params}
    held = dtypes - {torch.float32}
    if len(dtypes) == 2 and held <= {torch.bfloat16, torch.float16}:
        return held.pop()
    if dtypes != {torch.float32}:
        return None
    device = params[0].device
    fast = torch.cuda.is_bf16_supported() if device.type == "cuda" else device.type == "cpu" and cpu_has_fast_bf16()
    return torch.bfloat16 if fast else None


@contextmanager
def weights_as(model, dtype: torch.dtype | None):
    """The model's frozen float parameters as `dtype` copies for the call, when half their size is free; the
    original tensors are put back untouched. Buffers (rotary frequencies) stay as they are, and so do trainable
    parameters (the adapter: merged, it is not used; unmerged, peft casts to its dtype): a tensor of another dtype
    set into a parameter resets its gradient accumulator, and with it the hook by which DDP all-reduces its
    gradient, so the rank that answered would skip the next all-reduce and the others would wait for ever."""
    with params_as([p for p in model.parameters() if p.is_floating_point() and not p.requires_grad], dtype):
        yield model


@contextmanager
def params_as(params: list, dtype: torch.dtype | None):
    """Each parameter not of `dtype` as a `dtype` copy for the block, when half their size is free (else as they
    are); the original tensors are put back untouched."""
    params = [p for p in params if dtype is not None and p.dtype != dtype]
    if not params or sum(p.nbytes for p in params) // 2 > free_memory(params[0].device):
        yield
        return
    with _replaced(params, lambda p: p.data.to(dtype)):
        yield
