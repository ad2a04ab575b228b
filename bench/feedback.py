"""Does a correction stick? The user, played with the real openai client against `selfcorrect serve` and a daemon.

    python bench/feedback.py [--seeds 0 1 2] [--asked 60] [--others 200] [--model NAME]

Per seed, a fresh root with the defaults (live evaluation off, so that only what the issue names is timed, and the
gate's answers capped at 128 tokens):
  1. a start adapter: one file of 137 sums, trained by the daemon (`--once`);
  2. the server (`train.py --serve`) is asked `--asked` held-out sums and `--others` other held-out sums
     (greedy); each of the asked is judged by the project's matcher against its golden answer, and gets
     "bad" with the golden answer as the correction, or "good" (POST /v1/feedback, by response id);
  3. the daemon runs (`--once`): the verdicts become a feedback file, trained, judged by the gate;
  4. the server (hot swap, no restart) is asked all again: the share of the corrected questions now right
     (target >= 90 %), the others' accuracy against step 2 (paired; target: no drop beyond 2 points), the earlier
     gate items' (the start file's hold-out) accuracy of the served version against the start adapter;
  5. one more unrelated file (137 word problems) is dropped and trained: the corrected questions asked again
     (do they stay corrected?).
Also: optimizer steps and seconds from the last verdict to the new version serving; the others' accuracy is
also the answer to "does a correction generalise?" (no target). One JSON line; the processor is named in it.
"""
from __future__ import annotations

import argparse
import json
import math
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.continual import interval, processor  # noqa: E402
from bench.learning import drop, train_py  # noqa: E402
from core.synthetic import integer_sums, word_problems  # noqa: E402
from evaluation.matching import match_answer  # noqa: E402


def ask(client, items: list[dict], model: str = "current", max_tokens: int = 96) -> list[tuple[str, str, bool]]:
    """(response id, answer, right) for each item, asked through the openai client, 32 at a time (the server
    answers them in one decode batch)."""
    def one(item):
        r = client.chat.completions.create(model=model, messages=[{"role": "user", "content": item["prompt"]}],
                                           temperature=0, max_tokens=max_tokens)
        answer = r.choices[0].message.content
        return r.id, answer, match_answer(item["response"], answer, question=item["prompt"]).matched
    with ThreadPoolExecutor(32) as pool:
        return list(pool.map(one, items))


def served_version(client) -> str:
    return client.chat.completions.create(model="current", messages=[{"role": "user", "content": "1"}],
                                          max_tokens=1).model


def one_seed(args, seed: int, work: Path) -> dict:
    from openai import OpenAI

    from tests.serve_helpers import Server

    root = work / f"seed{seed}"
    (root / "inbox").mkdir(parents=True)
    (root / "config.json").write_text(json.dumps({
        "model": {"name_or_path": args.model, "cache_dir": str(REPO / "data" / "models")},
        # the gate answers with eval_max_tokens (2048 by default: 7 minutes for 6 items that ran on); sums need 60
        "eval_steps": 10 ** 9, "eval_max_tokens": 128, "training": {"seed": 42 + seed},
        "daemon": {"settle_seconds": 0}, "serve": {"max_batch": 32}}))
    drop(root, [integer_sums(137, seed=500 + seed)], "start")
    train_py(root, "--once")
    held_out = integer_sums(args.asked + args.others, seed=900 + seed)
    asked, others = held_out[:args.asked], held_out[args.asked:]
    gate = [json.loads(line) for line in (root / "data" / "gate" / "pool.jsonl").read_text().splitlines()]
    gate_items = [{"prompt": g["conversation"][-1]["content"], "response": g["golden"]} for g in gate]
    server = Server(root)
    try:
        server.wait_ready(timeout=600)
        client = OpenAI(base_url=server.url + "/v1", api_key="none", max_retries=2, timeout=600)
        start = served_version(client)
        first = ask(client, asked)
        others_before = [r for _, _, r in ask(client, others)]
        gate_before = [r for _, _, r in ask(client, gate_items)]
        wrong = [k for k, (_, _, right) in enumerate(first) if not right]
        for k, (rid, _, right) in enumerate(first):
            body = {"id": rid, "rating": "good"} if right else {"id": rid, "rating": "bad",
                                                                 "correction": asked[k]["response"]}
            status, answer = server.post("/v1/feedback", body)
            if status != 200:
                sys.exit(f"POST /v1/feedback answered {status}: {answer}")
        last_verdict = time.time()
        train_py(root, "--once")
        state = json.loads((root / "data" / "state.json").read_text())
        feedback_file = next(f for f in reversed(state["files_trained"]) if "feedback_" in f["name"])
        while served_version(client) == start and time.time() - last_verdict < 60:
            time.sleep(0.5)
        serving = served_version(client)
        seconds_to_serve = round(time.time() - last_verdict, 1)
        again = ask(client, asked)
        others_after = [r for _, _, r in ask(client, others)]
        gate_after = [r for _, _, r in ask(client, gate_items)]
        drop(root, [word_problems(137, seed=700 + seed)], "unrelated")
        train_py(root, "--once")
        time.sleep(2)
        later = ask(client, asked)
    finally:
        server.stop()
    promoted = serving != start
    return {"seed": seed, "start": start, "after_feedback": serving, "promoted": promoted,
            "verdict": json.loads((root / "data" / "gate" / "last_verdict.json").read_text()).get("reason")
            if (root / "data" / "gate" / "last_verdict.json").exists() else None,
            "asked": len(asked), "wrong_first": len(wrong), "first_right": args.asked - len(wrong),
            "corrected_now_right": sum(again[k][2] for k in wrong),
            "corrected_right_after_unrelated": sum(later[k][2] for k in wrong),
            "good_still_right": sum(again[k][2] for k in range(len(asked)) if k not in wrong),
            "others_before": others_before, "others_after": others_after,
            "gate_before": gate_before, "gate_after": gate_after,
            "feedback_file_steps": feedback_file.get("steps"), "feedback_file_examples": feedback_file.get("examples"),
            "seconds_last_verdict_to_serving": seconds_to_serve}


def share(right: int, n: int) -> dict:
    """A share with its 95 % Wilson interval."""
    if not n:
        return {"share": None}
    p, z = right / n, 1.96
    centre, half = (p + z * z / (2 * n)) / (1 + z * z / n), z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return {"right": right, "n": n, "share": round(100 * p, 1), "low": round(100 * (centre - half), 1),
            "high": round(100 * (centre + half), 1)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--asked", type=int, default=60)
    p.add_argument("--others", type=int, default=200)
    p.add_argument("--model", default="smollm2-135m-instruct")
    args = p.parse_args()
    work = Path(tempfile.mkdtemp(prefix="feedback-"))
    started = time.time()
    seeds = []
    for seed in args.seeds:
        seeds.append(one_seed(args, seed, work))
        s = seeds[-1]
        print(f"seed {seed}: {s['start']} -> {s['after_feedback']}; corrected {s['corrected_now_right']}/"
              f"{s['wrong_first']}, after an unrelated file {s['corrected_right_after_unrelated']}", file=sys.stderr,
              flush=True)
    wrong = sum(s["wrong_first"] for s in seeds)
    diffs = lambda a, b: [int(x) - int(y) for s in seeds for x, y in zip(s[a], s[b])]  # noqa: E731
    result = {
        "processor": processor(), "model": args.model, "seeds": args.seeds,
        "corrected_now_right": share(sum(s["corrected_now_right"] for s in seeds), wrong),
        "corrected_right_after_unrelated": share(sum(s["corrected_right_after_unrelated"] for s in seeds), wrong),
        "good_still_right": share(sum(s["good_still_right"] for s in seeds), sum(s["first_right"] for s in seeds)),
        "others_after_vs_before": interval(diffs("others_after", "others_before")),
        "others_before": share(sum(sum(s["others_before"]) for s in seeds), sum(len(s["others_before"]) for s in seeds)),
        "others_after": share(sum(sum(s["others_after"]) for s in seeds), sum(len(s["others_after"]) for s in seeds)),
        "gate_items_after_vs_before": interval(diffs("gate_after", "gate_before")),
        "promoted": sum(s["promoted"] for s in seeds),
        "feedback_file_steps": [s["feedback_file_steps"] for s in seeds],
        "seconds_last_verdict_to_serving": [s["seconds_last_verdict_to_serving"] for s in seeds],
        "per_seed": [{k: v for k, v in s.items() if not isinstance(v, list)} for s in seeds],
        "seconds": round(time.time() - started)}
    print(json.dumps(result))


if __name__ == "__main__":
    main()
