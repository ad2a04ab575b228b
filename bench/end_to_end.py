"""The whole loop with the default model on this machine, no hand-holding.

    python bench/end_to_end.py [--train 800] [--test 100] [--eval-max-tokens 96]

1. Generates multi-term integer sums: a training file and a separate held-out test file.
2. `python train.py --eval test.jsonl --adapter base`: the base model's accuracy.
3. Drops the training file into inbox/ and runs `python train.py --once`: the daemon
   trains, evaluates every `eval_steps` on the held-out share of the file, generates
   self-correction files, queues and trains them, and exits when the queue is empty.
4. `python train.py --eval test.jsonl --adapter current`, and `--report` for the curve.
Ends with one JSON line of the figures.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from core.synthetic import integer_sums  # noqa: E402


def train_py(root: Path, *args: str) -> str:
    out = subprocess.run([sys.executable, str(REPO / "train.py"), "--config", str(root / "config.json"), *args],
                         capture_output=True, text=True)
    if out.returncode:
        sys.exit(f"train.py {' '.join(args)} failed:\n{out.stderr[-3000:]}")
    return out.stdout


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--train", type=int, default=800)
    p.add_argument("--test", type=int, default=100)
    p.add_argument("--eval-max-tokens", type=int, default=96, help="enough for these answers; EOS stops earlier")
    p.add_argument("--root", type=Path, default=None)
    args = p.parse_args()
    root = args.root or Path(tempfile.mkdtemp(prefix="e2e-"))
    (root / "inbox").mkdir(parents=True, exist_ok=True)
    (root / "config.json").write_text(json.dumps({
        "model": {"name_or_path": "smollm2-135m-instruct", "cache_dir": str(REPO / "data" / "models")},
        "eval_steps": 20, "num_eval_samples": 8, "eval_max_tokens": args.eval_max_tokens,
        "self_correction": {"min_examples": 12, "generation_interval": 20},
        "validation": {"holdout_fraction": 0.05},
        "training": {"batch_size": 8, "logging_steps": 5, "save_steps": 25},
        "daemon": {"settle_seconds": 0}}, indent=2))
    test = root / "test.jsonl"
    test.write_text("".join(json.dumps(r) + "\n" for r in integer_sums(args.test, seed=2024)))
    started = time.time()
    base = json.loads(train_py(root, "--eval", str(test), "--adapter", "base").splitlines()[-1])
    print(f"base model on {base['n']} held-out sums: {100 * base['accuracy']:.1f}%", flush=True)

    tmp = root / "inbox" / ".sums.jsonl.tmp"
    tmp.write_text("".join(json.dumps(r) + "\n" for r in integer_sums(args.train, seed=7)))
    tmp.rename(root / "inbox" / "sums.jsonl")
    t0 = time.time()
    train_py(root, "--once")
    train_seconds = time.time() - t0
    events = [json.loads(l) for l in (root / "logs" / "events.jsonl").read_text().splitlines()]
    done = [e for e in events if e["event"] == "done"]
    evaluations = [e for e in events if e["event"] == "evaluation"]
    generated = [e for e in done if "self_correction_step" in e["file"]]
    print(f"trained {len(done)} files ({len(generated)} self-correction) in {train_seconds:.0f}s; "
          f"{len(evaluations)} live evaluations", flush=True)

    after = json.loads(train_py(root, "--eval", str(test), "--adapter", "current").splitlines()[-1])
    print(f"adapter {after['adapter']} on the same sums: {100 * after['accuracy']:.1f}% "
          f"(second attempt with error codes: {after['second_attempt_accuracy']})", flush=True)
    train_py(root, "--report")
    print(f"curve: {root / 'logs' / 'report.png'}")
    print(json.dumps({"base_accuracy": base["accuracy"], "adapter_accuracy": after["accuracy"],
                      "adapter_second_attempt_accuracy": after["second_attempt_accuracy"],
                      "adapter_wrong_to_right": after["wrong_to_right"], "adapter_right_to_wrong": after["right_to_wrong"],
                      "test_items": after["n"], "files_trained": len(done), "self_correction_files_trained": len(generated),
                      "live_evaluations": len(evaluations), "train_seconds": round(train_seconds),
                      "total_seconds": round(time.time() - started), "root": str(root)}))


if __name__ == "__main__":
    main()
