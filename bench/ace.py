"""Weights and context together: base, base + ACE, a trained adapter, and the adapter + ACE on the same items.

    python bench/ace.py [--train 64] [--items 50] [--quick]

One root with the default model. First a `current` adapter is trained once (`train.py FILE`) on `--train`
golden examples per family of the two generated task families (`word_problems`, `comparisons`; other
generator seeds than the tasks' items). Then `train.py --grid` runs adapters base and current x both tasks x
modes baseline and ace (the local model as generator and reflector, `ace.batch_size` 8, a fresh playbook per
adapter and task) on the tasks' first `--items` items. Differences are paired item by item (bench/retest.py's
method): base + ACE - base, current - base, current + ACE - current, current + ACE - base, in points with their
standard error. One JSON line per task, then a summary line. Run it alone on the machine.
"""
from __future__ import annotations

import argparse
import csv
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

TASKS = ("word_problems", "comparisons")
ARMS = {"base": ("base", "baseline"), "base+ACE": ("base", "ace"), "current": ("current", "baseline"),
        "current+ACE": ("current", "ace")}
PAIRS = (("base+ACE", "base"), ("current", "base"), ("current+ACE", "current"), ("current+ACE", "base"))


def train_py(root: Path, *args) -> float:
    began = time.perf_counter()
    out = subprocess.run([sys.executable, str(REPO / "train.py"), *map(str, args), "--config", str(root / "config.json")],
                         capture_output=True, text=True, cwd=REPO)
    if out.returncode:
        sys.exit(f"train.py {' '.join(map(str, args))} failed:\n{out.stderr[-3000:]}")
    return time.perf_counter() - began


def training_file(path: Path, n: int) -> Path:
    rows = [{"question": r["question"], "answer": r["answer"]} for r in word_problems(n, seed=300)]
    rows += [{"question": f"{r['passage']}\n\nQuestion: {r['question'][0].upper()}{r['question'][1:]}?",
              "answer": "yes" if r["answer"] else "no"} for r in comparisons(n, seed=301)]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", default="smollm2-135m-instruct")
    p.add_argument("--train", type=int, default=64, help="golden training examples per family for `current`")
    p.add_argument("--items", type=int, default=50, help="test items per task")
    p.add_argument("--max-new-tokens", type=int, default=192)
    p.add_argument("--work", type=Path, default=REPO / "data" / "bench" / "ace")
    p.add_argument("--quick", action="store_true", help="16 training examples and 10 items per task")
    args = p.parse_args()
    if args.quick:
        args.train, args.items = 16, 10
    processor = cpu_name()
    print(f"# {processor}, {args.train} training examples per family, {args.items} items per task", file=sys.stderr)
    root = args.work / time.strftime("%Y%m%d-%H%M%S")
    root.mkdir(parents=True)
    (root / "config.json").write_text(json.dumps({
        "model": {"name_or_path": args.model, "cache_dir": str(REPO / "data" / "models")},
        "eval_steps": 10 ** 9, "eval_max_tokens": args.max_new_tokens,
        "self_correction": {"enabled": False}, "validation": {"holdout_fraction": 0},
        "training": {"promotion": {"enabled": False}, "save_steps": 10 ** 6},
        "ace": {"batch_size": 8}}))
    seconds = {"train": train_py(root, training_file(root / "train.jsonl", args.train))}
    (root / "grid.json").write_text(json.dumps({"adapters": ["base", "current"], "tasks": list(TASKS),
                                                "modes": ["baseline", "ace"], "limit": args.items, "out": "grid"}))
    seconds["grid"] = train_py(root, "--grid", root / "grid.json")
    summary = {"summary": True, "processor": processor, "train": args.train, "items": args.items,
               "seconds": {k: round(v, 1) for k, v in seconds.items()}, "work": str(root)}
    for task in TASKS:
        right = {}
        for arm, (adapter, mode) in ARMS.items():
            with open(root / "grid" / adapter / f"{task}-{mode}.csv", newline="") as f:
                right[arm] = {r["sample_id"]: r["correct"] == "1" for r in csv.DictReader(f)}
        ids = sorted(right["base"])
        row = {"task": task, "n": len(ids),
               **{f"accuracy_{arm}": round(sum(right[arm][i] for i in ids) / len(ids), 4) for arm in ARMS}}
        for a, b in PAIRS:
            row[f"{a} - {b}"] = paired([right[a][i] for i in ids], [right[b][i] for i in ids])
        print(json.dumps(row))
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
