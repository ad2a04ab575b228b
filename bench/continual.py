"""Does the promotion gate cost what users drop? The served model after six files, gate rules against plain training.

    python bench/continual.py [--seeds 0 1 2] [--per-file 64] [--test 50] [--harmful-trials 10] [--model NAME]

Three task families of the project's own generators (multi-term sums, two-step word problems, comparisons), two
files each, dropped into a daemon (`train.py --once`, the defaults otherwise) in the order sums, word problems,
comparisons, sums, ... Arms, each in its own root, same seed and files:

  plain     the gate off: plain sequential training, every version served;
  continue  the gate's rule (paired, refuses only a drop shown with confidence), on_reject "continue" (the default);
  rollback  the same rule, on_reject "rollback": a refused file's learning is dropped;
  old       the rule before it: refuse any drop beyond the tolerance, however few items (confidence near 0 makes
            the paired test refuse at any discordant majority), and roll back.

Held-out accuracy of the served model (`--adapter current`) per family, paired against `plain` on the same items
(per item and seed), mean with a 95 % interval. Target: every arm within 2 points of `plain` on every family.

Harmful files: each trial copies a `continue` root that has learned the six files (the seeds in turn) and drops
a seventh: new sums whose answers are shuffled between its items (the questions of a family it knows, the wrong
answers), so the gate's set holds items it can break; the harmful version must not be served (target: 9 of 10
trials), and the gate's verdict says why. One JSON line at the end; the processor is named in it.

The sizes default to what fits about half an hour on a 2-core CPU per seed-arm set (files of 64 examples, 50
test items per family); the figures and the command that made them are in docs/experiments/continual.md.
"""
from __future__ import annotations

import argparse
import json
import math
import platform
import random
import shutil
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.learning import drop, train_py, write_jsonl  # noqa: E402
from core.synthetic import comparisons, integer_sums, word_problems  # noqa: E402

def yes_no(n: int, *, seed: int) -> list[dict]:
    """The comparison questions as QA records: the passage, the question, yes or no."""
    return [{"prompt": f"{r['passage']}\n{r['question'][0].upper()}{r['question'][1:]}?",
             "response": "yes" if r["answer"] else "no"} for r in comparisons(n, seed=seed)]


FAMILIES = {"sums": integer_sums, "word_problems": word_problems, "comparisons": yes_no}
ARMS = {
    "plain": {"enabled": False},
    "continue": {"on_reject": "continue"},
    "rollback": {"on_reject": "rollback"},
    "old": {"on_reject": "rollback", "confidence": 1e-9},
}


def processor() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines() if Path("/proc/cpuinfo").exists() else []:
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def config(root: Path, promotion: dict, args, seed: int) -> None:
    (root / "inbox").mkdir(parents=True, exist_ok=True)
    (root / "config.json").write_text(json.dumps({
        "model": {"name_or_path": args.model, "cache_dir": str(REPO / "data" / "models")},
        "eval_steps": 10 ** 9, "eval_max_tokens": args.max_tokens,
        "self_correction": {"enabled": False, "measure_second_attempt": False},
        "training": {"seed": 42 + seed, "save_steps": 1000, "logging_steps": 5, "promotion": promotion},
        "daemon": {"settle_seconds": 0}}, indent=2))


def files(seed: int, per_file: int) -> list[list[dict]]:
    """Two files per family, interleaved; generator seeds apart from the test items'."""
    return [make(per_file, seed=100 * seed + 10 * k + f) for k in range(2) for f, make in enumerate(FAMILIES.values())]


def tests(work: Path, n: int, seed: int) -> dict[str, Path]:
    return {family: write_jsonl(work / f"test-{family}.jsonl", make(n, seed=9000 + 10 * seed + k))
            for k, (family, make) in enumerate(FAMILIES.items())}


def served_answers(root: Path, test: dict[str, Path]) -> dict[str, list[bool]]:
    """Each test item right or wrong, answered by the served version."""
    out = {}
    for family, path in test.items():
        answers = root / f"answers-{family}.jsonl"
        train_py(root, "--eval", str(path), "--adapter", "current", "--answers", str(answers))
        out[family] = [row["first_right"] for row in map(json.loads, answers.read_text().splitlines())]
    return out


def interval(diffs: list[int]) -> dict:
    n, mean = len(diffs), sum(diffs) / len(diffs)
    se = math.sqrt(sum((d - mean) ** 2 for d in diffs) / (n - 1) / n) if n > 1 else 0.0
    return {"points": round(100 * mean, 1), "low": round(100 * (mean - 1.96 * se), 1),
            "high": round(100 * (mean + 1.96 * se), 1)}


def run_arm(args, work: Path, arm: str, seed: int) -> Path:
    """The six files dropped into a fresh root with the arm's promotion settings and trained by the daemon."""
    root = work / f"seed{seed}" / arm
    config(root, ARMS[arm], args, seed)
    drop(root, files(seed, args.per_file), "file")
    train_py(root, "--once")
    return root


def run_arms(args, work: Path, trained: dict[int, Path]) -> dict:
    right: dict[str, dict[str, list[bool]]] = {arm: {f: [] for f in FAMILIES} for arm in args.arms}
    refused: dict[str, int] = dict.fromkeys(args.arms, 0)
    for seed in args.seeds:
        test = tests(work, args.test, seed)
        for arm in args.arms:
            started = time.time()
            root = run_arm(args, work, arm, seed)
            if arm == "continue":
                trained[seed] = root
            state = json.loads((root / "data" / "state.json").read_text())
            refused[arm] += len(state["rejected"])
            for family, verdicts in served_answers(root, test).items():
                right[arm][family] += verdicts
            print(f"seed {seed} {arm}: served {state['current_adapter']}, head {state.get('head')}, refused "
                  f"{state['rejected']}, {time.time() - started:.0f}s", file=sys.stderr, flush=True)
    out = {}
    for arm in args.arms:
        out[arm] = {"refused_versions": refused[arm], **{f: {"accuracy": round(100 * sum(v) / len(v), 1)}
                                                         for f, v in right[arm].items()}}
        if arm != "plain" and "plain" in right:
            for f in FAMILIES:
                out[arm][f]["vs_plain"] = interval([int(a) - int(b) for a, b in zip(right[arm][f], right["plain"][f])])
    return out


def harmful_trials(args, work: Path, trained: dict[int, Path]) -> dict:
    """A file whose answers are shuffled between its items, dropped after the six good files: is it served?

    Each trial copies a `continue` root that has learned the six files (so the gate's set holds items the
    harmful file can break: sums the model already answers) and drops new sums with shuffled answers."""
    served, verdicts = 0, []
    for trial in range(args.harmful_trials):
        seed = args.seeds[trial % len(args.seeds)]
        if seed not in trained:
            trained[seed] = run_arm(args, work, "continue", seed)
        root = work / f"harmful{trial}"
        shutil.copytree(trained[seed], root, symlinks=True)
        bad = integer_sums(args.per_file, seed=7000 + trial)  # new questions of a family it knows, answers shuffled
        answers = [r["response"] for r in bad]
        random.Random(trial).shuffle(answers)
        drop(root, [[{**r, "response": a} for r, a in zip(bad, answers)]], "harmful")
        train_py(root, "--once")
        state = json.loads((root / "data" / "state.json").read_text())
        harmful = state["files_trained"][-1]["adapter"]
        served += state["current_adapter"] == harmful
        verdict = last_verdict(root)
        verdicts.append(verdict)
        print(f"harmful trial {trial} (seed {seed}): {harmful} "
              f"{'SERVED' if state['current_adapter'] == harmful else 'refused'}: {verdict}", file=sys.stderr, flush=True)
    return {"trials": args.harmful_trials, "harmful_served": served, "verdicts": verdicts}


def last_verdict(root: Path) -> dict:
    """The gate's last verdict as the daemon wrote it (the numbers `selfcorrect status` shows)."""
    path = root / "data" / "gate" / "last_verdict.json"
    return json.loads(path.read_text()) if path.exists() else {}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--arms", nargs="*", choices=ARMS, default=list(ARMS), help="none: the harmful trials alone")
    p.add_argument("--per-file", type=int, default=64, help="examples per dropped file (the gate holds out 5 %%)")
    p.add_argument("--test", type=int, default=50, help="held-out items per family")
    p.add_argument("--harmful-trials", type=int, default=10)
    p.add_argument("--max-tokens", type=int, default=64)
    p.add_argument("--model", default="smollm2-135m-instruct")
    p.add_argument("--work", type=Path, default=None, help="where the roots go (default: a temporary folder)")
    args = p.parse_args()
    work = args.work or Path(tempfile.mkdtemp(prefix="continual-"))
    work.mkdir(parents=True, exist_ok=True)
    started = time.time()
    result = {"processor": processor(), "model": args.model, "seeds": args.seeds, "per_file": args.per_file,
              "test_items_per_family": args.test, "max_tokens": args.max_tokens}
    trained: dict[int, Path] = {}
    result["arms"] = run_arms(args, work, trained) if args.arms else {}
    if args.harmful_trials:
        result["harmful"] = harmful_trials(args, work, trained)
    result["seconds"] = round(time.time() - started)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
