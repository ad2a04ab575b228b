"""Batched greedy generation for evaluation: left padding, KV cache, stop at end of turn or in a loop.

Rows leave the batch as they finish: their KV cache rows are dropped, so the
remaining answers are decoded at the cost of a smaller batch (`generate` keeps
computing finished rows until the longest answer ends). The tokens are the same
as `model.generate(do_sample=False)` gives (a test checks it).

The LoRA adapter is merged into a copy of each weight it touches while the
answers are generated (one matmul per layer instead of three), where memory
allows; the original weight tensors are put back untouched, not un-merged by
subtraction, so training continues on bit-identical weights.

The model is put in eval mode for the call and given back in the mode it was
in, with the RNG state untouched, so evaluating mid-training does not change
the training trajectory.
"""
from __future__ import annotations

from contextlib import contextmanager

import psutil
import torch
from transformers import DynamicCache, StoppingCriteria

from core.encoding import render_prompt

LOOP_REPEATS = 3  # a block of tokens repeated this many times in a row ends the answer
LOOP_MAX_PERIOD = 64
LOOP_MIN_TOKENS = 24  # never stop on a short repetition such as "1 + 1 + 1"


class LoopStop(StoppingCriteria):
    """Ends a row once its answer has fallen into a loop (the same block of tokens three times in a row).

    A looping answer would otherwise run to eval_max_tokens, and the whole batch waits for
    it; the loop adds nothing to the answer, which is judged wrong either way.
    """

    def __init__(self, prompt_length: int):
        self.prompt_length = prompt_length

    def __call__(self, input_ids, scores, **kwargs):
        generated = input_ids[:, self.prompt_length:]
        done = torch.zeros(input_ids.shape[0], dtype=torch.bool, device=input_ids.device)
        n = generated.shape[1]
        for period in range(1, min(LOOP_MAX_PERIOD, n // LOOP_REPEATS) + 1):
            span = period * LOOP_REPEATS
            if span < LOOP_MIN_TOKENS:
                continue
            tail = generated[:, -span:].reshape(-1, LOOP_REPEATS, period)
            done |= (tail == tail[:, :1]).all(dim=2).all(dim=1)
        return done


def stop_token_ids(tokenizer, model) -> list[int]:
    ids = {tokenizer.eos_token_id}
    eos = getattr(model.generation_config, "eos_token_id", None)
    ids.update(eos if isinstance(eos, list) else [eos])
    return sorted(i for i in ids if i is not None)


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


def _free_memory(device: torch.device) -> int:
    if device.type == "cuda":
        return torch.cuda.mem_get_info(device)[0]
    return psutil.virtual_memory().available


@contextmanager
def merged_lora(model):
    """The model with its active LoRA adapters merged into new weight tensors, when twice their size is free."""
    layers = _mergeable_lora_layers(model)
    size = sum(m.get_base_layer().weight.nbytes for m, _ in layers)
    if not layers or 2 * size > _free_memory(layers[0][0].get_base_layer().weight.device):
        yield model
        return
    originals = []
    try:
        for module, active in layers:
            weight = module.get_base_layer().weight
            originals.append((weight, weight.data))
            with torch.no_grad():
                merged = weight.data.clone()
                for adapter in active:
                    merged += module.get_delta_weight(adapter).to(merged.dtype)
            weight.data = merged
            module.merged_adapters.extend(active)  # peft's forward then calls the base layer alone
        yield model
    finally:
        for (module, _), (weight, original) in zip(layers, originals):
            weight.data = original
            module.merged_adapters.clear()


@torch.no_grad()
def greedy_decode(model, input_ids, attention_mask, *, max_new_tokens: int, stops: list[int]) -> list[list[int]]:
    """The new tokens of each (left-padded) row, greedy; a row ends at a stop token, in a loop, or at the limit."""
    n = input_ids.shape[0]
    answers: list[list[int]] = [[] for _ in range(n)]
    rows = torch.arange(n, device=input_ids.device)  # which answer each row of the shrinking batch belongs to
    stop = torch.tensor(stops, device=input_ids.device)
    cache = DynamicCache()
    positions = (attention_mask.long().cumsum(-1) - 1).masked_fill(attention_mask == 0, 0)
    logits = model(input_ids=input_ids, attention_mask=attention_mask, position_ids=positions,
                   past_key_values=cache, use_cache=True, logits_to_keep=1).logits[:, -1]
    generated = input_ids.new_zeros((n, 0))
    loop_stop = LoopStop(0)
    for step in range(max_new_tokens):
        token = logits.argmax(-1)
        for row, t in zip(rows.tolist(), token.tolist()):
            answers[row].append(t)
        generated = torch.cat([generated, token[:, None]], dim=1)
        done = torch.isin(token, stop) | loop_stop(generated, None)
        if step == max_new_tokens - 1 or done.all():
            break
        if done.any():
            keep = (~done).nonzero().squeeze(1)
            cache.batch_select_indices(keep)
            rows, token, generated = rows[keep], token[keep], generated[keep]
            attention_mask, positions = attention_mask[keep], positions[keep]
        attention_mask = torch.cat([attention_mask, attention_mask.new_ones((len(rows), 1))], dim=1)
        positions = positions[:, -1:] + 1
        logits = model(input_ids=token[:, None], attention_mask=attention_mask, position_ids=positions,
                       past_key_values=cache, use_cache=True, logits_to_keep=1).logits[:, -1]
    return answers


def generate_answers(model, tokenizer, conversations: list[list[dict]], *, use_template: bool,
                     max_new_tokens: int, batch_size: int = 16) -> list[str]:
    """One greedy answer per conversation (a list of chat messages ending with a user turn)."""
    was_training = model.training
    cpu_rng = torch.get_rng_state()
    cuda_rng = torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None
    side = tokenizer.padding_side
    tokenizer.padding_side = "left"
    model.eval()
    answers: list[str] = []
    try:
        device = next(model.parameters()).device
        stops = stop_token_ids(tokenizer, model)
        with merged_lora(model):
            for start in range(0, len(conversations), batch_size):
                texts = [render_prompt(tokenizer, c, use_template) for c in conversations[start:start + batch_size]]
                batch = tokenizer(texts, return_tensors="pt", padding=True,
                                  add_special_tokens=not use_template).to(device)
                new = greedy_decode(model, batch["input_ids"], batch["attention_mask"],
                                    max_new_tokens=max_new_tokens, stops=stops)
                answers.extend(t.strip() for t in tokenizer.batch_decode(new, skip_special_tokens=True))
    finally:
        tokenizer.padding_side = side
        model.train(was_training)
        torch.set_rng_state(cpu_rng)
        if cuda_rng is not None:
            torch.cuda.set_rng_state_all(cuda_rng)
    return answers
