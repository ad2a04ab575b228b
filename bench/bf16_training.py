"""Where bf16 LoRA training loses loss on a CPU: the same steps in fp32, in bf16 autocast, and in bf16 with one
part of the model kept in fp32, each from the same start, judged by the held-out loss in fp32.

    python bench/bf16_training.py [--steps 20] [--seeds 0 1 2] [--arms fp32 bf16 ...] [--model smollm2-135m-instruct]

A plain loop (AdamW at training.learning_rate, gradient clipping at 1.0, batch 8 of the project's generated
sums and word problems, the product's loss through `response_logps`), so only the arithmetic differs:

  fp32          everything in fp32 (the baseline);
  bf16          autocast bf16 over the decoder and head, the frozen base held in bf16, as `training.precision:
                "bf16"` trains (fp32 master LoRA weights, fp32 optimizer);
  bf16-lora32   bf16, the LoRA matrices' products in fp32 (and added to the base's output in fp32);
  bf16-attn32   bf16, the attention blocks (projections, rotary, softmax) in fp32;
  bf16-mlp32    bf16, the MLP blocks in fp32;
  fp32-noise    fp32 with each gradient multiplied by 1 + 4 % Gaussian noise: the size of bf16's gradient error
                (measured first), as noise rather than as rounding.

First, on one batch from the same start: each LoRA gradient in bf16 against fp32 (cosine, relative error, norm
ratio). Then per arm and seed the held-out loss; the gap to fp32 in percent. One JSON line per arm and seed, then
a summary line. Run it alone; the losses do not depend on the machine's load, the seconds do.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from contextlib import nullcontext
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.generation_speed import processor  # noqa: E402
from bench.train_throughput import make_data  # noqa: E402

ARMS = ("fp32", "bf16", "bf16-lora32", "bf16-attn32", "bf16-mlp32", "fp32-noise")


def load(model_name: str, seed: int):
    import torch

    from core.config import parse_config
    from core.models import attach_adapter, load_base_model, load_tokenizer, resolve_model_path

    config = parse_config({"model": {"name_or_path": model_name, "cache_dir": str(REPO / "data" / "models")},
                           "training": {"seed": seed}})
    path = resolve_model_path(config, REPO)
    torch.manual_seed(seed)
    return config, load_tokenizer(path, config), attach_adapter(load_base_model(path, config, "cpu", "fp32"),
                                                                  config, None)


def in_fp32(module) -> None:
    """The module's forward outside autocast, its floating inputs in fp32."""
    import torch

    inner = module.forward

    def forward(*args, **kwargs):
        def up(x):
            return x.float() if torch.is_tensor(x) and x.is_floating_point() else x

        with torch.autocast("cpu", enabled=False):
            return inner(*map(up, args), **{k: up(v) for k, v in kwargs.items()})

    module.forward = forward


def keep_in_fp32(model, arm: str) -> None:
    suffixes = {"bf16-attn32": ("self_attn",), "bf16-mlp32": ("mlp",),
                "bf16-lora32": ("lora_A.default", "lora_B.default")}.get(arm, ())
    for name, module in model.named_modules():
        if name.endswith(suffixes):
            in_fp32(module)


def batches(tokenizer, rows: list[dict], size: int):
    from core.data import Example
    from core.encoding import PaddingCollator, encode

    collate = PaddingCollator(tokenizer.pad_token_id)
    encoded = [encode(tokenizer, Example(1, messages=[{"role": "user", "content": r["prompt"]},
                                                      {"role": "assistant", "content": r["response"]}]),
                      use_template=True, max_length=512) for r in rows]
    return [collate([{"input_ids": e.input_ids, "labels": e.labels} for e in encoded[k:k + size]])
            for k in range(0, len(encoded), size)]


def mean_loss(model, batch, *, bf16: bool, held: bool):
    import torch

    from core.encoding import IGNORE
    from training.trainer import decoder_and_head, half_precision_base, response_logps

    decoder, head = decoder_and_head(model)
    with half_precision_base(model, "bf16") if held else nullcontext():
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            _, token_logps, _ = response_logps(decoder, head, batch)
            return -token_logps.sum() / (batch["labels"][:, 1:] != IGNORE).sum()


def gradient_error(model_name: str, batch) -> dict:
    """One batch's LoRA gradients in bf16 against fp32, from the same adapter (its B drawn, as after training)."""
    import torch

    _, _, model = load(model_name, 0)
    for name, p in model.named_parameters():
        if "lora_B" in name:
            torch.nn.init.normal_(p, std=0.02)
    model.train()
    grads = {}
    for bf16 in (False, True):
        model.zero_grad()
        mean_loss(model, batch, bf16=bf16, held=bf16).backward()
        grads[bf16] = {n: p.grad.detach().flatten().clone() for n, p in model.named_parameters() if p.requires_grad}
    cosines, errors, ratios = [], [], []
    for n, exact in grads[False].items():
        got = grads[True][n]
        cosines.append(float(torch.nn.functional.cosine_similarity(exact, got, dim=0)))
        errors.append(float((got - exact).norm() / exact.norm()))
        ratios.append(float(got.norm() / exact.norm()))
    return {"min_cosine": round(min(cosines), 4), "median_cosine": round(statistics.median(cosines), 4),
            "median_relative_error": round(statistics.median(errors), 4),
            "median_norm_ratio": round(statistics.median(ratios), 4)}


def train(model_name: str, arm: str, seed: int, steps: int) -> dict:
    import torch

    config, tokenizer, model = load(model_name, seed)
    keep_in_fp32(model, arm)
    train_batches = batches(tokenizer, make_data(8 * steps, seed), 8)
    held_batches = batches(tokenizer, make_data(64, 99), 8)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=config.training.learning_rate, weight_decay=config.training.weight_decay)
    noise = torch.Generator().manual_seed(seed)
    bf16 = arm.startswith("bf16")
    began = time.perf_counter()
    model.train()
    for batch in train_batches:
        # the held bf16 base cannot run inside an fp32 block; those arms let autocast cast per call instead
        mean_loss(model, batch, bf16=bf16, held=arm in ("bf16", "bf16-lora32")).backward()
        if arm == "fp32-noise":
            for p in params:
                p.grad.mul_(1 + 0.04 * torch.randn(p.grad.shape, generator=noise))
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()
        optimizer.zero_grad()
    seconds = time.perf_counter() - began
    model.eval()
    with torch.no_grad():
        from core.encoding import IGNORE

        total = sum(float(mean_loss(model, b, bf16=False, held=False)) * int((b["labels"][:, 1:] != IGNORE).sum())
                    for b in held_batches)
        count = sum(int((b["labels"][:, 1:] != IGNORE).sum()) for b in held_batches)
    return {"arm": arm, "seed": seed, "steps": steps, "heldout_loss": round(total / count, 5),
            "train_seconds": round(seconds, 1)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--arms", nargs="+", default=list(ARMS), choices=ARMS)
    p.add_argument("--model", default="smollm2-135m-instruct")
    args = p.parse_args()

    import torch

    from core.models import quiet_transformers

    quiet_transformers()
    where = processor()
    _, tokenizer, _ = load(args.model, 0)
    probe = gradient_error(args.model, batches(tokenizer, make_data(8, 1), 8)[0])
    print(json.dumps({"gradient_bf16_vs_fp32": probe, "processor": where}), flush=True)
    losses: dict[str, list[float]] = {}
    for seed in args.seeds:
        for arm in ["fp32", *[a for a in args.arms if a != "fp32"]]:
            row = train(args.model, arm, seed, args.steps)
            losses.setdefault(arm, []).append(row["heldout_loss"])
            print(json.dumps({**row, "processor": where, "threads": torch.get_num_threads()}), flush=True)
    gaps = {arm: round(100 * (statistics.mean(v) / statistics.mean(losses["fp32"]) - 1), 2)
            for arm, v in losses.items() if arm != "fp32"}
    print(json.dumps({"summary": True, "seeds": args.seeds, "steps": args.steps, "processor": where,
                      "heldout_loss": {a: round(statistics.mean(v), 5) for a, v in losses.items()},
                      "gap_to_fp32_percent": gaps, "gradient_bf16_vs_fp32": probe}))


if __name__ == "__main__":
    main()
