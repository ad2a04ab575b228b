"""Does a learned reprompt policy buy more accuracy per token than fixed reprompts? Correction traces on the default model.

    python bench/traces.py [--test 100] [--warmup 100] [--max-turns 3] [--seeds 0] [--quick]

Two task families from the project's generators, each written in a dataset format the importers read:
`word_problems` (two-step arithmetic, GSM8K-format JSONL, `#### N`) and `comparisons` (yes/no about a short
passage, BoolQ-format JSONL). The test items are held out from the warm-up items (other generator seeds). Arms, each through
`train.py --traces` in a root of its own (the base model, greedy answers):

  a  no reprompt              traces.policy fixed:stop
  b  today's second attempt   fixed:p_error_codes, --max-turns 1 (a wrong answer re-asked once with its codes)
  c  the learned policy       thompson, --max-turns N: first a warm-up run on the warm-up items, then the test
                              items with the state it learned (it keeps learning online, as in the product)

Per arm: final accuracy and tokens per trace (every answer's generated tokens), accuracy per 1,000 tokens, and,
paired item by item against a and b, the accuracy difference with its standard error and 95 % interval, and the
accuracy gained per 1,000 extra tokens. One JSON line per arm and family, then one summary line. Run it alone.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.generation_speed import processor as cpu_name  # noqa: E402
from bench.retest import paired  # noqa: E402
from core.synthetic import comparisons, word_problems  # noqa: E402
from selfcorrect.traces import read_traces  # noqa: E402

FAMILIES = {"word_problems": "gsm8k", "comparisons": "boolq"}


def write_family(path: Path, family: str, n: int, seed: int) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    rows = ([{"id": r["id"], "question": r["question"], "answer": r["answer"]} for r in word_problems(n, seed=seed)]
            if family == "word_problems" else comparisons(n, seed=seed))
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def traces(root: Path, data: Path, family: str, *, policy: str, max_turns: int, args) -> tuple[dict, float]:
    """`train.py --traces` on an arm's root; the traces of this file by question id, and the wall time."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "config.json").write_text(json.dumps({
        "model": {"name_or_path": args.model, "cache_dir": str(REPO / "data" / "models")},
        "traces": {"policy": policy, "max_new_tokens": args.max_new_tokens, "seed": args.policy_seed}}))
    began = time.perf_counter()
    out = subprocess.run([sys.executable, str(REPO / "train.py"), "--traces", str(data), "--dataset",
                          FAMILIES[family], "--max-turns", str(max_turns), "--config", str(root / "config.json")],
                         capture_output=True, text=True, cwd=REPO)
    if out.returncode:
        sys.exit(f"train.py --traces {data} in {root} failed:\n{out.stderr[-3000:]}")
    summary = json.loads(out.stdout.strip().splitlines()[-1])
    got = {t.question_id: t for p in sorted((root / "logs").glob("traces_*.jsonl")) for t in read_traces(p)
           if t.dataset_name == summary["dataset"]}
    return got, time.perf_counter() - began


def versus(arm: list, base: list) -> dict:
    """arm - base, paired item by item (bench/retest.py's method), with its 95 % interval and the accuracy
    gained per 1,000 extra tokens."""
    d = paired([x.final_accuracy for x in arm], [y.final_accuracy for y in base])
    d["ci95"] = [round(d["points"] - 1.96 * d["standard_error"], 1), round(d["points"] + 1.96 * d["standard_error"], 1)]
    extra = sum(x.total_tokens - y.total_tokens for x, y in zip(arm, base)) / len(arm)
    gain = sum(x.final_accuracy - y.final_accuracy for x, y in zip(arm, base)) / len(arm)
    d["gain_per_1000_extra_tokens"] = round(1000 * gain / extra, 4) if extra else None
    return d


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", default="smollm2-135m-instruct")
    p.add_argument("--test", type=int, default=100, help="held-out test items per family")
    p.add_argument("--warmup", type=int, default=100, help="warm-up items per family for the learned policy")
    p.add_argument("--max-turns", type=int, default=3, help="most reprompts of the learned policy")
    p.add_argument("--max-new-tokens", type=int, default=256)
    p.add_argument("--policy-seed", type=int, default=0)
    p.add_argument("--work", type=Path, default=REPO / "data" / "bench" / "traces")
    p.add_argument("--quick", action="store_true", help="20 test and 20 warm-up items per family")
    args = p.parse_args()
    if args.quick:
        args.test = args.warmup = 20
    processor = cpu_name()
    print(f"# {processor}, {args.test} test / {args.warmup} warm-up items per family, learned policy up to "
          f"{args.max_turns} reprompts", file=sys.stderr)
    work = args.work / time.strftime("%Y%m%d-%H%M%S")
    arms = {"a": ("fixed:stop", 1), "b": ("fixed:p_error_codes", 1), "c": ("thompson", args.max_turns)}
    results: dict[str, dict[str, dict]] = {arm: {} for arm in arms}
    seconds = {arm: 0.0 for arm in arms}
    for family in FAMILIES:
        test = write_family(work / "data" / f"{family}-test.jsonl", family, args.test, seed=1000)
        warm = write_family(work / "data" / f"{family}-warmup.jsonl", family, args.warmup, seed=2000)
        for arm, (policy, turns) in arms.items():
            if arm == "c":
                seconds[arm] += traces(work / arm, warm, family, policy=policy, max_turns=turns, args=args)[1]
            got, spent = traces(work / arm, test, family, policy=policy, max_turns=turns, args=args)
            results[arm][family], seconds[arm] = got, seconds[arm] + spent
    rows = []
    for family in FAMILIES:
        ids = sorted(results["a"][family])
        for arm in arms:
            t = [results[arm][family][i] for i in ids]
            acc = sum(x.final_accuracy for x in t) / len(t)
            tokens = sum(x.total_tokens for x in t) / len(t)
            row = {"family": family, "arm": arm, "policy": arms[arm][0], "max_turns": arms[arm][1], "n": len(t),
                   "accuracy": round(acc, 4), "tokens_per_trace": round(tokens, 1),
                   "accuracy_per_1000_tokens": round(1000 * acc / tokens, 4) if tokens else None,
                   "reprompts_per_trace": round(sum(x.total_turns - 1 for x in t) / len(t), 3)}
            for base in ("a", "b"):
                if base == arm:
                    continue
                row[f"vs_{base}"] = versus(t, [results[base][family][i] for i in ids])
            rows.append(row)
            print(json.dumps(row))
    print(json.dumps({"summary": True, "processor": processor, "test": args.test, "warmup": args.warmup,
                      "max_turns": args.max_turns, "seconds": {k: round(v, 1) for k, v in seconds.items()},
                      "work": str(work)}))


if __name__ == "__main__":
    main()
