"""The self-correction steps by hand, each a command of its own (`selfcorrect codes ...`; the older form is
`python -m selfcorrect codes ...`).

    codes            error codes for one answer, whether it matched, the answer's kind and why (one JSON object)
    build            the daemon's records (triples, confirmations) from a QA file and the model's answers
    initial-answers  the model's answers to a QA file (batched)
    demo             codes, decision and records for a few built-in examples
    rules            the error-code table, as Markdown
"""
from __future__ import annotations

import json
from pathlib import Path

from core.errors import DataError
from core.fsutil import atomic_write_text
from core.qa import read_qa
from evaluation.error_codes import RULES, error_codes
from evaluation.matching import answer_kind, match_answer
from selfcorrect.correction_examples import build_triple, records_for_answer

from .options import ADAPTER, add_command

DEMO = [
    ("What is 2+2?", "2+2 equals 4. This is basic addition.", "5"),
    ("What is 17 + 25 + 8?", "17 + 25 + 8 = 50. The answer is 50.", "17 + 25 + 8 = 48. The answer is 48."),
    ("What is the capital of France?", "The capital of France is Paris.", "I think trains are fast and modern."),
    ("List two primary colors.", "- red\n- blue", "Red and blue are primary colors."),
    ("What is 12 * 3?", "36", "The answer is 36.0"),
]


def cmd_codes(args, ctx) -> int:
    match = match_answer(args.expected, args.predicted, question=args.question)
    codes = error_codes(args.question, args.expected, args.predicted, matched=match.matched,
                        first_wrong_value=args.first_wrong_value)
    if args.text:
        print(json.dumps(codes))
        print(f"matched: {'yes' if match.matched else 'no'} ({match.kind}: {match.reason})")
    else:
        print(json.dumps({"codes": codes, "matched": match.matched, "kind": match.kind, "reason": match.reason}))
    return 0


def read_answers(path: Path) -> list[dict]:
    answers, problems = [], []
    for n, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as e:
            problems.append((n, f"invalid JSON: {e.msg}"))
            continue
        if not isinstance(record, dict) or not isinstance(record.get("predicted"), str):
            problems.append((n, 'expected {"id": ..., "predicted": str}'))
            continue
        answers.append({**record, "_line": n})
    if problems:
        raise DataError(path, problems, '{"id": str, "predicted": str} per line (as written by initial-answers)')
    return answers


def line_up(items, answers, answers_path) -> list[tuple]:
    """Pair QA items with answers by id; a missing or unknown id is an error naming the line."""
    by_id = {item.id: item for item in items}
    pairs, problems, seen = [], [], set()
    for a in answers:
        item = by_id.get(str(a.get("id")))
        if item is None:
            problems.append((a["_line"], f"id {a.get('id')!r} is not in the QA file"))
            continue
        seen.add(item.id)
        pairs.append((item, a["predicted"]))
    missing = [i for i in items if i.id not in seen]
    if missing:
        problems.append((0, f"{len(missing)} question(s) have no answer, first: id {missing[0].id!r} "
                            f"({missing[0].file} line {missing[0].line})"))
    if problems:
        raise DataError(answers_path, problems, "one answer per question, with the question's id")
    return pairs


def cmd_build(args, ctx) -> int:
    from core.config import load_config

    config = load_config(ctx.config_path)
    pairs = line_up(read_qa(args.input), read_answers(args.initial_answers), args.initial_answers)
    records, wrong = [], 0
    for item, predicted in pairs:
        match = match_answer(item.golden, predicted, question=item.question)
        wrong += not match.matched
        codes = [] if match.matched else error_codes(item.question, item.golden, predicted, matched=False,
                                                     first_wrong_value=config.experimental.first_wrong_value)
        records += records_for_answer(question=item.question, golden=item.golden, predicted=predicted,
                                      matched=match.matched, codes=codes, step=args.step,
                                      source={"id": item.id, "file": item.file},
                                      templates=config.self_correction.templates, experimental=config.experimental)
    atomic_write_text(args.output, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records))
    print(f"{len(pairs)} answers, {wrong} wrong -> {len(records)} records in {args.output}")
    return 0


def cmd_initial_answers(args, ctx) -> int:
    from inference.loading import load_for_inference
    from inference.sampling import generate_answers

    config = ctx.config
    items = read_qa(args.input)
    model, tokenizer, use_template, label = load_for_inference(config, ctx.root, args.adapter)
    answers = generate_answers(model, tokenizer, [i.conversation for i in items], use_template=use_template,
                               max_new_tokens=args.max_new_tokens or config.eval_max_tokens, batch_size=args.batch_size,
                               stop_at_final_answer=[answer_kind(i.golden) == "math" for i in items])
    atomic_write_text(args.output, "".join(
        json.dumps({"id": i.id, "question": i.question, "predicted": a}, ensure_ascii=False) + "\n"
        for i, a in zip(items, answers)))
    print(f"{len(answers)} answers from adapter {label} -> {args.output}")
    return 0


def cmd_demo(args, ctx) -> int:
    from rich.console import Console
    from rich.panel import Panel

    console = Console()
    for question, golden, predicted in DEMO:
        match = match_answer(golden, predicted, question=question)
        codes = error_codes(question, golden, predicted, matched=match.matched)
        body = f"[bold]Q:[/] {question}\n[bold]Expected:[/] {golden}\n[bold]Predicted:[/] {predicted}\n"
        body += f"{'✅ MATCH' if match.matched else '❌ MISMATCH'} ({match.reason})"
        if codes:
            body += f"\n[bold]Codes:[/] {', '.join(codes)}"
            for r in build_triple(question=question, golden=golden, predicted=predicted, codes=codes, step=0,
                                  source={"id": "demo", "file": "demo"}):
                body += f"\n\n[cyan]{r['kind']}[/]\n  prompt: {r['prompt']!r}\n  response: {r['response']!r}"
        console.print(Panel(body, expand=False), markup=True)
    return 0


def cmd_rules(args, ctx) -> int:
    print("| code | rule | example |\n|---|---|---|")
    for code, rule, example in RULES:
        print(f"| `{code}` | {rule} | {example} |")
    return 0


def add_parser(sub) -> None:
    c = add_command(sub, "codes", run=cmd_codes, needs_config=False, help="error codes for one answer",
                    example='selfcorrect codes --expected "The answer is 42." --predicted "41" --question "40 + 2?"')
    c.add_argument("--expected", required=True)
    c.add_argument("--predicted", required=True)
    c.add_argument("--question", default="")
    c.add_argument("--first-wrong-value", action="store_true", help="also FIRST_WRONG_VALUE_X (opt-in, as in config)")
    c.add_argument("--text", action="store_true", help="the codes, then the decision as a line of text")
    b = add_command(sub, "build", run=cmd_build, needs_config=False,
                    help="training records from a QA file and answers, as self_correction asks (--config: whose "
                         "self_correction and experimental settings)",
                    example="selfcorrect build --input qa.jsonl --initial-answers answers.jsonl --output training.jsonl")
    b.add_argument("--input", type=Path, required=True)
    b.add_argument("--initial-answers", type=Path, required=True)
    b.add_argument("--output", type=Path, required=True)
    b.add_argument("--step", type=int, default=0, help="global step recorded in each record")
    i = add_command(sub, "initial-answers", run=cmd_initial_answers, parents=[ADAPTER],
                    help="the model's answers to a QA file",
                    example="selfcorrect initial-answers --input qa.jsonl --output answers.jsonl --adapter base")
    i.add_argument("--input", type=Path, required=True)
    i.add_argument("--output", type=Path, required=True)
    i.add_argument("--batch-size", type=int, default=None, help="answers decoded together (default: sized from free memory)")
    i.add_argument("--max-new-tokens", type=int, default=None, help="default: eval_max_tokens from config")
    add_command(sub, "demo", run=cmd_demo, needs_config=False, help="codes, decision and records for built-in examples",
                example="selfcorrect demo")
    add_command(sub, "rules", run=cmd_rules, needs_config=False, help="the error-code table as Markdown",
                example="selfcorrect rules")
