"""Live-evaluation speed with the default model: batched generation, and the callback's share of wall time.

    python bench/eval_speed.py [--samples 8] [--train-steps 6]

1. The same 8 validation prompts answered two ways in one run: our batched
   greedy decoding (left padding, KV cache, finished rows leave the batch, LoRA
   merged into copies of the weights), and
   one `model.generate` call per prompt (the baseline), both stopping at end of
   turn or in a loop. Prints both times, the ratio and how many answers agree.
2. The callback's share with the default settings (eval_steps 50,
   num_eval_samples 4, eval_max_tokens 2048, second attempt on): one training
   step and one full evaluation are timed on the same model in the same run,
   and the share is evaluation / (50 steps + evaluation).
Ends with one JSON line of the figures.
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def one_generate_call(model, tokenizer, conversation, *, use_template: bool, max_new_tokens: int) -> str:
    """The baseline: `model.generate` for one prompt, greedy, the same stops (end of turn, a loop)."""
    import torch
    from transformers import StoppingCriteriaList

    from inference.stopping import stop_token_ids, LoopStop
    from core.encoding import render_prompt

    model.eval()
    batch = tokenizer([render_prompt(tokenizer, conversation, use_template)], return_tensors="pt",
                      add_special_tokens=not use_template)
    with torch.no_grad():
        out = model.generate(**batch, max_new_tokens=max_new_tokens, do_sample=False, use_cache=True,
                             eos_token_id=stop_token_ids(tokenizer, model), pad_token_id=tokenizer.pad_token_id,
                             stopping_criteria=StoppingCriteriaList([LoopStop(batch["input_ids"].shape[1])]),
                             temperature=None, top_p=None, top_k=None)
    return tokenizer.decode(out[0, batch["input_ids"].shape[1]:], skip_special_tokens=True).strip()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--samples", type=int, default=8)
    p.add_argument("--train-steps", type=int, default=6)
    p.add_argument("--model", default="smollm2-135m-instruct")
    args = p.parse_args()

    from evaluation.evaluate import evaluate
    from inference.sampling import generate_answers
    from core.qa import QAItem
    from core.config import parse_config
    from training.engine import TrainingEngine
    from core.events import EventLog
    from core.synthetic import integer_sums, word_problems

    root = Path(tempfile.mkdtemp(prefix="bench-eval-"))
    config = parse_config({"model": {"name_or_path": args.model, "cache_dir": str(REPO / "data" / "models")},
                           "validation": {"holdout_fraction": 0},
                           "training": {"save_steps": 10_000, "promotion": {"enabled": False}}})
    engine = TrainingEngine(config, root, EventLog(root / "logs"))
    model, tok = engine.model, engine.tokenizer
    rows = integer_sums(args.samples // 2, seed=11) + [
        {"prompt": r["question"], "response": r["answer"]} for r in word_problems(args.samples - args.samples // 2, seed=11)]
    items = [QAItem(str(k), [{"role": "user", "content": r["prompt"]}], r["response"], "bench", k)
             for k, r in enumerate(rows)]
    conversations = [i.conversation for i in items]

    # 1. batched vs one call per prompt
    generate_answers(model, tok, conversations[:1], use_template=engine.use_template, max_new_tokens=8)  # warm-up
    t0 = time.perf_counter()
    batched = generate_answers(model, tok, conversations, use_template=engine.use_template, max_new_tokens=256,
                               batch_size=len(conversations))
    t_batched = time.perf_counter() - t0
    t0 = time.perf_counter()
    single = [one_generate_call(model, tok, c, use_template=engine.use_template, max_new_tokens=256)
              for c in conversations]
    t_single = time.perf_counter() - t0
    same = sum(a == b for a, b in zip(batched, single))
    print(f"{len(items)} prompts: batched {t_batched:.1f}s, one by one {t_single:.1f}s, "
          f"speedup {t_single / t_batched:.2f}x; identical answers {same}/{len(items)}", flush=True)

    # 2. the callback's share at the default settings
    data = root / "train.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in integer_sums(8 * args.train_steps, seed=12)))
    prepared = engine.prepare(data)
    result = engine.train(prepared)
    step_s = result.loop_seconds / result.steps
    defaults = parse_config({})
    t0 = time.perf_counter()
    ev = evaluate(model, tok, items[: defaults.num_eval_samples], use_template=engine.use_template,
                  max_new_tokens=defaults.eval_max_tokens, templates=defaults.self_correction.templates,
                  second_attempt=defaults.self_correction.measure_second_attempt, count_tokens=tok)
    t_eval = time.perf_counter() - t0
    share = t_eval / (defaults.eval_steps * step_s + t_eval)
    print(f"training step {step_s:.2f}s; evaluation of {ev.n} samples (eval_max_tokens {defaults.eval_max_tokens}, "
          f"second attempt) {t_eval:.1f}s; callback share at eval_steps {defaults.eval_steps}: {100 * share:.1f}%",
          flush=True)
    print(json.dumps({"batched_s": round(t_batched, 2), "one_by_one_s": round(t_single, 2),
                      "batched_speedup": round(t_single / t_batched, 2), "identical_answers": same,
                      "samples": len(items), "train_step_s": round(step_s, 3), "evaluation_s": round(t_eval, 2),
                      "callback_time_share": round(share, 4), "model": args.model}))


if __name__ == "__main__":
    main()
