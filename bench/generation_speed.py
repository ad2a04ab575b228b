"""Generation speed: the sampling engine against `model.generate`, same model, batch and prompts, in one run.

    python bench/generation_speed.py [--prompts 32] [--max-new-tokens 96] [--samples 8] [--model smollm2-135m-instruct]
                                     [--profile]

1. Greedy: the prompts (word problems) answered by one `generate(do_sample=False)` call on the same left-padded
   batch, by the engine in fp32 (its tokens must be identical: checked), and by the engine as the product runs
   it (bf16 weights where the hardware has native bf16); prints tokens/s of each and the ratios.
2. Sampling: K samples of each of the first prompts (temperature 0.7, top-p 0.95), the engine (each prompt
   prefilled once) against `generate(num_return_sequences=K)`, the same number of completions.
3. The share of the machine's matmul peak the engine's decoding reaches: a 2048^2 matmul in the dtype it
   decodes in is timed in the same run, and a token costs 2 x (parameters) FLOPs.
4. With --profile: the greedy arm once more under torch.profiler, its time by operator.
Run it alone (two torch processes on 2 cores slow each other by up to 7x). Ends with one JSON line.
"""
from __future__ import annotations

import argparse
import json
import platform
import resource
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def processor() -> str:
    from core.device import cpu_has_fast_bf16

    name = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                 if line.startswith("model name")), platform.processor()) if Path("/proc/cpuinfo").exists() else ""
    return f"{name} ({'native bf16' if cpu_has_fast_bf16() else 'no native bf16'})"


def matmul_peak(dtype, device, size: int = 2048, repeats: int = 10) -> float:
    """GFLOP/s of a square matmul, best of `repeats`."""
    import torch

    a, b = torch.randn(size, size, dtype=dtype, device=device), torch.randn(size, size, dtype=dtype, device=device)
    best = float("inf")
    for _ in range(repeats + 2):
        t0 = time.perf_counter()
        (a @ b).sum().item()
        best = min(best, time.perf_counter() - t0)
    return 2 * size ** 3 / best / 1e9


DECODE_GROUPS = {"matrix products": ("aten::mm", "aten::bmm", "aten::addmm"),
                 "attention kernels": ("aten::_scaled_dot_product", "aten::_softmax"),
                 "KV cache appends": ("aten::cat",)}


def profile_operators(run, groups: dict = DECODE_GROUPS) -> dict:
    """Self CPU time by operator over one run, and its share by group (the rest: elementwise work and dispatch);
    returns each group's time in microseconds."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU]) as prof:
        run()
    events = prof.key_averages()
    total = sum(e.self_cpu_time_total for e in events)
    print(events.table(sort_by="self_cpu_time_total", row_limit=12, max_name_column_width=40))
    grouped = {name: sum(e.self_cpu_time_total for e in events if e.key.startswith(prefixes))
               for name, prefixes in groups.items()}
    grouped["everything else"] = total - sum(grouped.values())
    print("; ".join(f"{name} {100 * t / total:.0f} %" for name, t in grouped.items()), flush=True)
    return grouped


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--prompts", type=int, default=32)
    p.add_argument("--max-new-tokens", type=int, default=96)
    p.add_argument("--samples", type=int, default=8, help="K, completions per prompt in the sampling arm")
    p.add_argument("--sampled-prompts", type=int, default=4, help="prompts in the sampling arm")
    p.add_argument("--model", default="smollm2-135m-instruct")
    p.add_argument("--profile", action="store_true", help="then where the engine's greedy decoding spends its time, "
                                                          "by operator (torch.profiler)")
    args = p.parse_args()

    import torch

    from core.config import parse_config
    from core.encoding import wants_chat_template
    from core.models import load_base_model, load_tokenizer, quiet_transformers, resolve_model_path
    from core.synthetic import word_problems
    from inference.requests import Request
    from inference.sampling import SamplingEngine
    from inference.stopping import stop_token_ids

    quiet_transformers()
    root = Path(tempfile.mkdtemp(prefix="bench-gen-"))
    config = parse_config({"model": {"name_or_path": args.model, "cache_dir": str(REPO / "data" / "models")}})
    path = resolve_model_path(config, root)
    tok = load_tokenizer(path, config)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    model = load_base_model(path, config, device, "fp32").eval()
    use_template = wants_chat_template(tok, "auto")
    engine = SamplingEngine(model, tok, use_template=use_template, max_batch=max(args.prompts, args.samples))
    exact = SamplingEngine(model, tok, use_template=use_template, max_batch=args.prompts, dtype=None)
    chats = [[{"role": "user", "content": r["question"]}] for r in word_problems(args.prompts, seed=3)]
    stops = stop_token_ids(tok, model)
    n = args.max_new_tokens

    def timed(fn):
        if device == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        out = fn()
        if device == "cuda":
            torch.cuda.synchronize()
        return out, time.perf_counter() - t0

    engine.generate([Request(messages=chats[0], max_new_tokens=4)])  # warm-up
    # 1. greedy, the same batch three ways
    ours, t_ours = timed(lambda: engine.generate([Request(messages=c, max_new_tokens=n) for c in chats]))
    fp32, t_fp32 = timed(lambda: exact.generate([Request(messages=c, max_new_tokens=n) for c in chats]))
    tok.padding_side = "left"
    batch = tok([engine.render(Request(messages=c)) for c in chats], return_tensors="pt", padding=True,
                add_special_tokens=False).to(device)
    with torch.no_grad():
        theirs, t_theirs = timed(lambda: model.generate(**batch, max_new_tokens=n, do_sample=False, eos_token_id=stops,
                                                        pad_token_id=tok.pad_token_id))
    theirs = theirs[:, batch["input_ids"].shape[1]:].tolist()
    same = sum(r.completions[0].tokens == t[:len(r.completions[0].tokens)] for r, t in zip(fp32, theirs))
    our_tokens = sum(len(r.completions[0].tokens) for r in ours)
    greedy = {"ours_s": round(t_ours, 2), "ours_fp32_s": round(t_fp32, 2), "generate_s": round(t_theirs, 2),
              "tokens": our_tokens, "identical_fp32": f"{same}/{len(chats)}", "decode_dtype": str(engine.dtype),
              "speedup": round(t_theirs / t_ours, 2), "speedup_fp32": round(t_theirs / t_fp32, 2)}
    print(f"greedy, {len(chats)} prompts, {n} new tokens: generate {t_theirs:.1f}s; engine fp32 {t_fp32:.1f}s "
          f"({greedy['speedup_fp32']}x, identical answers {greedy['identical_fp32']}); engine as run "
          f"({engine.dtype or 'fp32'}) {t_ours:.1f}s ({greedy['speedup']}x)", flush=True)

    # 2. K samples per prompt
    k, few = args.samples, chats[:args.sampled_prompts]
    sampled, t_s = timed(lambda: engine.generate([Request(messages=c, max_new_tokens=n, temperature=0.7, top_p=0.95,
                                                          n=k, seed=i) for i, c in enumerate(few)]))
    sbatch = tok([engine.render(Request(messages=c)) for c in few], return_tensors="pt", padding=True,
                 add_special_tokens=False).to(device)
    with torch.no_grad():
        _, t_g = timed(lambda: model.generate(**sbatch, max_new_tokens=n, do_sample=True, temperature=0.7, top_p=0.95,
                                              num_return_sequences=k, eos_token_id=stops, pad_token_id=tok.pad_token_id))
    sampled_tokens = sum(len(c.tokens) for r in sampled for c in r.completions)
    sampling = {"ours_s": round(t_s, 2), "generate_s": round(t_g, 2), "tokens": sampled_tokens,
                "speedup": round(t_g / t_s, 2)}
    print(f"sampling, {len(few)} prompts x K={k}: engine {t_s:.1f}s, generate {t_g:.1f}s -> {sampling['speedup']}x",
          flush=True)

    # 3. the matmul peak, in the dtype the engine decodes in
    dtype = engine.dtype or next(model.parameters()).dtype
    peak = matmul_peak(dtype, device)
    params = sum(p.numel() for p in model.parameters())
    tokens_per_s = our_tokens / t_ours
    share = tokens_per_s * 2 * params / 1e9 / peak
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"engine {tokens_per_s:.0f} tok/s greedy = {100 * share:.1f} % of the {peak:.0f} GFLOP/s {dtype} matmul peak; "
          f"peak RSS {rss:.0f} MB; {torch.cuda.get_device_name(0) if device == 'cuda' else processor()}", flush=True)
    if args.profile:
        profile_operators(lambda: engine.generate([Request(messages=c, max_new_tokens=n) for c in chats]))
    print(json.dumps({"greedy_speedup": greedy["speedup"], "sampling_speedup": sampling["speedup"],
                      "tokens_per_s": round(tokens_per_s, 1), "peak_share": round(share, 4),
                      "peak_gflops": round(peak, 1), "peak_rss_mb": round(rss), "greedy": greedy, "sampling": sampling,
                      "device": torch.cuda.get_device_name(0) if device == "cuda" else processor(),
                      "dtype": str(dtype), "model": args.model}))


if __name__ == "__main__":
    main()
