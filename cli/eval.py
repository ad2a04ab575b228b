"""`selfcorrect eval FILE|TASK`: answer a QA file or a registered task (batched) with an adapter, print a table
and a final JSON line; --answers writes each item's answers, codes and verdicts."""
from __future__ import annotations

import json
from pathlib import Path

from .options import ADAPTER, DATASET, LIMIT, add_command, positive
from .questions import read_questions


def add_parser(sub) -> None:
    p = add_command(sub, "eval", run=run, parents=[ADAPTER, LIMIT, DATASET],
                    help="answer a QA file or a registered task (tatqa_tiny, ...) and report accuracy",
                    example="selfcorrect eval examples/word_problems.jsonl --limit 20 --adapter base")
    p.add_argument("target", type=Path, metavar="FILE|TASK", help="a QA file, or the name of a registered task")
    p.add_argument("--max-new-tokens", type=positive, default=None, metavar="N",
                   help="most new tokens per answer (default: eval_max_tokens from config)")
    p.add_argument("--answers", type=Path, default=None, metavar="OUT.jsonl",
                   help="also write every item's answers, codes and verdicts, one line each")


def run(args, ctx) -> int:
    from evaluation.evaluate import evaluate
    from inference.loading import load_for_inference
    from monitor.console import evaluation_table

    config = ctx.config
    items = read_questions(args.target, ctx, dataset=args.dataset, limit=args.limit, skip_bad=args.skip_bad)
    model, tokenizer, use_template, label = load_for_inference(config, ctx.root, args.adapter)
    sc = config.self_correction
    ev = evaluate(model, tokenizer, items, use_template=use_template,
                  max_new_tokens=args.max_new_tokens or config.eval_max_tokens,
                  templates=sc.templates, second_attempt=sc.measure_second_attempt, count_tokens=tokenizer,
                  first_wrong_value=config.experimental.first_wrong_value,
                  right_probe=len(items))  # offline, so every right answer is re-asked: right->wrong is a rate
    evaluation_table(ev, title=f"{args.target.name} with adapter {label}")
    if args.answers:
        from core.fsutil import atomic_write_text

        atomic_write_text(args.answers, "".join(json.dumps(row) + "\n" for row in ev.per_item()))
    print(json.dumps({**ev.summary(), "adapter": label}))
    return 0
