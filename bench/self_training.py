"""Does practice beat replaying golden solutions? Rejection sampling (STaR, ReST-EM) and GRPO on the default model.

    python bench/self_training.py [--seeds 0 1 2] [--start 48] [--practice 100] [--test 200] [--arms ...] [--quick]

Two verifiable families from the project's generators: `sums` (multi-term integer sums, step by step) and
`word_problems` (two-step arithmetic word problems, GSM8K shape). Per seed, each arm in a root of its own:

  start  `--start` golden solutions per family trained once (`train.py FILE`): the adapter every arm starts from;
  V2     start + `train.py --practice` with practice.rounds = 2 on `--practice` problems per family (each with its
         golden solution, trained where no sample verifies, as the product does);
  V      start + V2's first round (the same file: the same adapter sampled it with the same seeds), then its records
         again, as many as V2's second round;
  P      start + the golden solutions of the same problems, in files of the sizes of V2's two rounds;
  G      start + `train.py --practice` with practice.method = grpo and practice.rounds = 2 on the same problems:
         the same sampling budget as V2 (2 rounds x K samples per problem), every sample of a problem whose
         samples differ trained by its group-relative advantage, no golden solution (its steps are its own).

So the three arms train the same files sizes in the same order from the same adapter: the same optimizer steps
under the same per-file learning-rate schedule. Each is tested by greedy pass@1 through the product's own practice path (the practice prompt, one
sample at temperature 0, the verifier) on `--test` held-out items per family, the same items for every seed,
and by pass@4 (4 samples at the practice temperature) on the first `--pass-at-4` of them.
Differences to P are paired item by item: per item, the arm's mean over seeds minus P's, then the mean over items
with its standard error and 95 % interval (items are the unit, so the seeds' shared items are not counted twice).

One JSON line per arm and seed (pass@1 per family, examples, steps, tokens trained, wall time, the share of it
spent generating), then one summary line. Run it alone on the machine (see docs/experiments/).
"""
from __future__ import annotations

import argparse
import json
import math
import random
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.generation_speed import processor as cpu_name  # noqa: E402
from core.fsutil import read_appended  # noqa: E402
from core.synthetic import integer_sums, word_problems  # noqa: E402

FAMILIES = ("sums", "word_problems")
ARMS = ("start", "P", "V", "V2", "G")


def problems(family: str, n: int, seed: int) -> list[dict]:
    """Practice problems with a golden solution ending in the practice prompt's final-answer line."""
    if family == "sums":
        rows = [(r["id"], r["prompt"], r["response"].rsplit(" The answer is", 1)[0]) for r in integer_sums(n, seed=seed)]
    else:
        rows = [(r["id"], r["question"], r["answer"].split("\n####")[0]) for r in word_problems(n, seed=seed)]
    out = []
    for pid, question, work in rows:
        answer = re.findall(r"-?\d+", work)[-1]
        out.append({"id": pid, "category": family, "question": question, "answer": answer,
                    "solution": f"{work} Therefore, the answer is {answer}."})
    return out


def write_jsonl(path: Path, records: list[dict]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


def train_py(root: Path, *args: str) -> float:
    """A command of the product on an arm's root; its wall time. Stops the bench if it fails."""
    began = time.perf_counter()
    out = subprocess.run([sys.executable, str(REPO / "train.py"), *args, "--config", str(root / "config.json")],
                         capture_output=True, text=True, cwd=REPO)
    if out.returncode:
        sys.exit(f"train.py {' '.join(args)} in {root} failed:\n{out.stderr[-3000:]}")
    return time.perf_counter() - began


def config(args, seed: int) -> dict:
    return {"model": {"name_or_path": args.model, "cache_dir": str(REPO / "data" / "models")},
            "eval_steps": 10 ** 9,  # no live evaluation: the arms differ only in what they train
            "self_correction": {"enabled": False}, "validation": {"holdout_fraction": 0},
            "training": {"batch_size": args.batch_size, "logging_steps": 10, "save_steps": 10 ** 6, "seed": 42 + seed,
                         "promotion": {"enabled": False}},
            "practice": {"samples": args.samples, "rounds": 2, "max_new_tokens_math": args.max_new_tokens}}


def chat(settings, problem: dict, answer: str) -> dict:
    return {"messages": [{"role": "user", "content": settings.prompt_math.replace("{problem}", problem["question"])},
                         {"role": "assistant", "content": answer}]}


def cycle(records: list[dict], n: int) -> list[dict]:
    return [records[k % len(records)] for k in range(n)] if records else []


def trained(root: Path) -> dict:
    state = json.loads((root / "data" / "state.json").read_text())
    files = state["files_trained"]
    return {"examples": sum(f["examples"] for f in files), "steps": state["global_step"],
            "tokens": sum(f["tokens"] for f in files), "supervised_tokens": sum(f["supervised_tokens"] for f in files)}


def test(root: Path, tests: list, max_new_tokens: int, k: int = 1, folder: str = "test"
         ) -> tuple[dict[str, list[bool]], float]:
    """Per item, whether any of `k` samples verified (k = 1: greedy), through the product's practice path;
    resumes a test cut short."""
    from core.config import load_config
    from core.events import EventLog
    from inference.loading import load_for_inference
    from inference.sampling import SamplingEngine
    from selfcorrect.practice import Practice

    began = time.perf_counter()
    cfg = load_config(root / "config.json")
    settings = cfg.practice.model_copy(update={"samples": k, "temperature_math": 0.0 if k == 1 else 0.7,
                                               "max_new_tokens_math": max_new_tokens, "method": "rest"})
    model, tokenizer, use_template, _ = load_for_inference(cfg, root, "current")
    practice = Practice(SamplingEngine(model, tokenizer, use_template=use_template), settings,
                        EventLog(root / "test-logs"), adapter="current")
    practice.run(tests, root / folder, 1)
    outcomes = {o["id"]: o for o in read_appended(root / folder / "round-1.progress.jsonl")}
    by_family = {f: [any(outcomes[p.id]["passed"]) for p in tests if p.category == f] for f in FAMILIES}
    return by_family, time.perf_counter() - began


def paired(arm: list[list[bool]], base: list[list[bool]]) -> dict:
    """arm - base in points: per item the mean over seeds, then mean, standard error and 95 % interval over items."""
    per_item = [sum(int(a) - int(b) for a, b in zip(xs, ys)) / len(xs) for xs, ys in zip(zip(*arm), zip(*base))]
    n, mean = len(per_item), sum(per_item) / len(per_item)
    se = math.sqrt(sum((d - mean) ** 2 for d in per_item) / (n - 1) / n) if n > 1 else 0.0
    return {"points": round(100 * mean, 1), "standard_error": round(100 * se, 1),
            "ci95": [round(100 * (mean - 1.96 * se), 1), round(100 * (mean + 1.96 * se), 1)]}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--start", type=int, default=48, help="golden examples per family the start adapter trains on")
    p.add_argument("--practice", type=int, default=100, help="practice problems per family")
    p.add_argument("--test", type=int, default=200, help="held-out test items per family")
    p.add_argument("--samples", type=int, default=4, help="practice.samples (K)")
    p.add_argument("--max-new-tokens", type=int, default=192, help="per solution, sampled or tested")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--pass-at-4", type=int, default=50, help="test items per family also tested by pass@4")
    p.add_argument("--arms", nargs="+", default=list(ARMS), choices=ARMS, help="arms to run (start always runs)")
    p.add_argument("--model", default="smollm2-135m-instruct")
    p.add_argument("--work", type=Path, default=REPO / "data" / "bench" / "self_training")
    p.add_argument("--quick", action="store_true", help="a smoke run: 1 seed, 16 start, 24 practice, 40 test")
    args = p.parse_args()
    if args.quick:
        args.seeds, args.start, args.practice, args.test, args.pass_at_4 = args.seeds[:1], 16, 24, 40, 10
    arms = ["start", *[a for a in ARMS[1:] if a in args.arms]]
    if "V" in arms and "V2" not in arms:
        p.error("arm V replays V2's first round: name V2 too")
    if "P" in arms and "V2" not in arms:
        p.error("arm P trains files of V2's sizes: name V2 too")

    import torch

    from core.config import PracticeSection
    from core.device import plan_device
    from core.practice import read_problems

    plan = plan_device("auto")
    processor = torch.cuda.get_device_name() if torch.cuda.is_available() else cpu_name()
    print(f"# {plan.device} ({plan.precision}), {processor}, seeds {args.seeds}, {args.test} test items per family",
          file=sys.stderr)
    settings = PracticeSection()
    work = args.work
    test_file = write_jsonl(work / "test.jsonl", [q for k, f in enumerate(FAMILIES) for q in problems(f, args.test, 900 + k)])
    tests = read_problems(test_file)
    few = [q for f in FAMILIES for q in [t for t in tests if t.category == f][:args.pass_at_4]]
    passed: dict[str, list[dict[str, list[bool]]]] = {arm: [] for arm in ARMS}
    passed_4: dict[str, list[dict[str, list[bool]]]] = {arm: [] for arm in ARMS}
    for seed in args.seeds:
        base = work / f"seed-{seed}"
        start_data = [q for k, f in enumerate(FAMILIES) for q in problems(f, args.start, 100 * seed + 10 + k)]
        practice_data = [q for k, f in enumerate(FAMILIES) for q in problems(f, args.practice, 100 * seed + 20 + k)]
        roots = {arm: base / arm for arm in arms}
        walls, generating = {}, {}
        start = roots["start"]
        if not (start / "data" / "state.json").exists():
            shutil.rmtree(start, ignore_errors=True)
            start.mkdir(parents=True)
            (start / "config.json").write_text(json.dumps(config(args, seed), indent=2))
            wall = train_py(start, str(write_jsonl(base / "start.jsonl",
                                                   [chat(settings, q, q["solution"]) for q in start_data])))
            (base / "start.wall").write_text(json.dumps(wall))  # beside the root: the arms copy the root
        if (base / "start.wall").exists():
            walls["start"] = json.loads((base / "start.wall").read_text())
        for arm in [a for a in ("V2", "V", "P", "G") if a in arms]:
            root = roots[arm]
            if (root / "data" / "state.json").exists() and (root / "arm.done").exists():
                # done in an earlier run: its timings come back from arm.done (empty where an older bench wrote it)
                timing = json.loads((root / "arm.done").read_text() or "{}")
                if timing:
                    walls[arm], generating[arm] = timing["wall"], timing["generating"]
                continue
            shutil.rmtree(root, ignore_errors=True)
            shutil.copytree(start, root, symlinks=True, ignore=shutil.ignore_patterns("test", "test-logs"))
            began = time.perf_counter()
            if arm == "G":
                cfg = config(args, seed)
                cfg["practice"]["method"] = "grpo"
                (root / "config.json").write_text(json.dumps(cfg, indent=2))
            if arm in ("V2", "G"):
                train_py(root, "--practice", str(write_jsonl(base / "practice.jsonl", practice_data)))
                events = [json.loads(line) for line in (root / "logs" / "events.jsonl").read_text().splitlines()]
                generating[arm] = sum(e["seconds"] for e in events if e["event"] == "practice" and e.get("summary"))
            else:
                # V2's files, one per round, set the sizes: V and P train files of the same sizes in the same
                # order, so every arm takes the same optimizer steps under the same per-file schedule
                [v2_work] = [d for d in (roots["V2"] / "data" / "practice").iterdir() if d.is_dir()]
                rounds = [[json.loads(line) for line in (v2_work / f"round-{k}.jsonl").read_text().splitlines()]
                          for k in (1, 2)]
                source = rounds[0] if arm == "V" else [chat(settings, q, q["solution"]) for q in practice_data]
                for k, records in enumerate(rounds, 1):
                    # V: round 1, then round 1 again (shuffled: the same content would be a duplicate, not
                    # trained) where V2 trained its second round; P: the golden solutions, in both files
                    data = list(source)
                    if k > 1:
                        random.Random(f"{seed}:{arm}:{k}").shuffle(data)
                    train_py(root, str(write_jsonl(base / f"{arm}-{k}.jsonl", cycle(data, len(records)))))
                generating[arm] = 0.0
            walls[arm] = time.perf_counter() - began
            (root / "arm.done").write_text(json.dumps({"wall": walls[arm], "generating": generating[arm]}))
        for arm in arms:
            by_family, test_seconds = test(roots[arm], tests, args.max_new_tokens)
            passed[arm].append(by_family)
            by_family_4, test_4_seconds = test(roots[arm], few, args.max_new_tokens, k=4, folder="test-pass-at-4")
            passed_4[arm].append(by_family_4)
            t, t0 = trained(roots[arm]), trained(start)
            row = {"arm": arm, "seed": seed, "processor": processor, "device": plan.device, "precision": plan.precision,
                   **{f"pass@1_{f}": round(sum(v) / len(v), 4) for f, v in by_family.items()},
                   **{f"pass@4_{f}": round(sum(v) / len(v), 4) for f, v in by_family_4.items()},
                   "test_items_per_family": args.test, "pass@4_items_per_family": args.pass_at_4,
                   **({} if arm == "start" else {f"{k}_trained": t[k] - t0[k] for k in t}),
                   "train_wall_seconds": None if arm not in walls else round(walls[arm], 1),
                   "generation_share": None if arm not in generating or arm not in walls
                   else round(generating[arm] / walls[arm], 3),
                   "test_seconds": round(test_seconds + test_4_seconds, 1)}
            print(json.dumps(row), flush=True)
    summary = {"summary": True, "seeds": args.seeds, "processor": processor, "test_items_per_family": args.test,
               "pass@4_items_per_family": args.pass_at_4}
    for arm in arms:
        for f in FAMILIES:
            for metric, table in (("pass@1", passed), ("pass@4", passed_4)):
                scores = [s[f] for s in table[arm]]
                summary[f"{arm}_{metric}_{f}"] = round(sum(map(sum, scores)) / sum(map(len, scores)), 4)
                if arm in ("V", "V2", "G") and "P" in arms:
                    summary[f"{arm}_minus_P_{metric}_{f}"] = paired(scores, [s[f] for s in table["P"]])
    print(json.dumps(summary), flush=True)


if __name__ == "__main__":
    main()
