"""How close is the fix? For each wrong answer, asked again with its error codes: the rank of the golden token.

    python bench/departures.py ROOT TEST.jsonl [--adapter current]

ROOT is a trained root (e.g. an arm's folder from bench/learning.py), TEST a QA file. The adapter answers
every question; for each wrong answer, the correction prompt (question, that answer, its codes) is followed
by the golden answer up to the token where the wrong answer first departs from it. There, the model's
next-token ranking says whether a fix is one token away: rank 0 means it would now say the golden token,
rank 1 that the golden token is its runner-up. Ends with one JSON line.
"""
from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from evaluation.evaluate import evaluate  # noqa: E402
from core.templates import render  # noqa: E402
from core.qa import read_qa  # noqa: E402
from core.config import load_config  # noqa: E402
from core.data import Example  # noqa: E402
from core.encoding import encode  # noqa: E402
from inference.loading import load_for_inference  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("root", type=Path)
    p.add_argument("test", type=Path)
    p.add_argument("--adapter", default="current")
    args = p.parse_args()
    config = load_config(args.root / "config.json")
    items = read_qa(args.test)
    model, tokenizer, use_template, label = load_for_inference(config, args.root, args.adapter)
    templates = config.self_correction.templates
    ev = evaluate(model, tokenizer, items, use_template=use_template, max_new_tokens=config.eval_max_tokens,
                  templates=templates, second_attempt=False, count_tokens=tokenizer,
                  first_wrong_value=config.experimental.first_wrong_value)
    golden_ranks, wrong_ranks = [], []
    for item, r in zip(items, ev.results):
        if r.matched:
            continue
        prompt = render(templates.correction, question=r.question, previous=r.predicted, codes=r.codes)
        messages = [*item.conversation[:-1], {"role": "user", "content": prompt},
                    {"role": "assistant", "content": r.golden}]
        e = encode(tokenizer, Example(0, messages=messages, meta={"rejected": r.predicted}),
                   use_template=use_template, max_length=config.training.max_seq_length, unlikelihood=True)
        if e.unlikely is None:  # the wrong answer never departs within the golden one's tokens
            continue
        position, wrong_token = e.unlikely
        with torch.no_grad():
            logits = model(input_ids=torch.tensor([e.input_ids[:position]], device=model.device)).logits[0, -1]
        order = torch.argsort(logits, descending=True).tolist()
        golden_ranks.append(order.index(e.input_ids[position]))
        wrong_ranks.append(order.index(wrong_token))
    ranks = Counter(min(r, 3) for r in golden_ranks)
    print(f"{args.test.name} with adapter {label}: {len(golden_ranks)} wrong answers that depart from the golden one")
    print("rank of the golden token at the departure: " + ", ".join(
        f"{'3+' if k == 3 else k}: {ranks.get(k, 0)}" for k in range(4)))
    print(f"the wrong answer's own token is still first in {sum(r == 0 for r in wrong_ranks)}")
    print(json.dumps({"adapter": label, "n": len(items), "wrong": len(golden_ranks), "golden_rank": dict(sorted(ranks.items())),
                      "wrong_token_first": sum(r == 0 for r in wrong_ranks)}))


if __name__ == "__main__":
    main()
