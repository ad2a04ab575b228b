"""Trained arms of bench/learning.py runs, tested again on a larger held-out set.

    python bench/retest.py --seed 1 --test 200 WORK1P/P WORK1S/S [...]

At 50 items per family one item is 2 points, and one arm's binomial standard error is about 7, more than
the 5-point margins the bench looks for. This answers each family's first N test items of `--seed` (the same
generator and seed as `bench/learning.py --test N`, so its first 50 are the ones that run was scored on)
with each arm's current adapter, scored as the bench scores them, without training anything again. Each arm
must have been trained with the same --seed.

Differences are paired, item by item: each arm's second attempt against its first (target 2), and each arm's
first attempt against the first arm given (target 1: a round of mistakes against the replay of its size),
each in points with its standard error. Ends with one JSON line.
"""
from __future__ import annotations

import argparse
import json
import math
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.learning import FAMILIES, evaluate, test_sets  # noqa: E402


def paired(a: list[bool], b: list[bool]) -> dict:
    """a - b on the same items, in points, with its standard error: items both get right or both get wrong
    cancel, so this is far tighter than the difference of two accuracies."""
    d = [int(x) - int(y) for x, y in zip(a, b, strict=True)]
    n, mean = len(d), sum(d) / len(d)
    var = sum((x - mean) ** 2 for x in d) / (n - 1) if n > 1 else 0.0
    return {"points": round(100 * mean, 1), "standard_error": round(100 * math.sqrt(var / n), 1)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("arms", type=Path, nargs="+", help="arm folders of bench/learning.py runs (WORK/P, WORK/S, ...); "
                   "the first is the reference the others are compared with")
    p.add_argument("--seed", type=int, required=True, help="the --seed those runs used")
    p.add_argument("--test", type=int, default=200, help="held-out test items per family")
    args = p.parse_args()
    for root in args.arms:
        if not (root / "data" / "state.json").exists():
            p.error(f"{root}: not a trained arm (no data/state.json); give an arm folder such as WORK/S")

    work = Path(tempfile.mkdtemp(prefix="retest-"))
    tests = test_sets(work, args.test, args.seed)
    results, items = {}, {}
    for k, root in enumerate(args.arms):
        answers = work / f"answers-{k}"
        answers.mkdir()
        results[str(root)] = evaluate(root, tests, "current", answers)
        items[str(root)] = {f: [json.loads(line) for line in (answers / f"{f}.jsonl").read_text().splitlines()]
                            for f in tests}
        for family, t in results[str(root)].items():
            rows = items[str(root)][family]
            t["second_against_first"] = paired([r["second_right"] for r in rows], [r["first_right"] for r in rows])
            print(f"{root} {family}: first {100 * t['accuracy']:.1f}%, second attempt "
                  f"{100 * (t['second_attempt_accuracy'] or 0):.1f}% ({t['second_against_first']['points']:+.1f} "
                  f"± {t['second_against_first']['standard_error']:.1f}), wrong→right {t['wrong_to_right']}, "
                  f"right→wrong {t['right_to_wrong']}/{t['right_probed']}", flush=True)
    reference = str(args.arms[0])
    for root in map(str, args.arms[1:]):
        for family, t in results[root].items():
            t["first_against_reference"] = paired([r["first_right"] for r in items[root][family]],
                                                  [r["first_right"] for r in items[reference][family]])
            print(f"{root} against {reference}, {family}: first attempt {t['first_against_reference']['points']:+.1f} "
                  f"± {t['first_against_reference']['standard_error']:.1f} points", flush=True)
    print(json.dumps({"seed": args.seed, "test": args.test, "reference": reference, "arms": results}))


if __name__ == "__main__":
    main()
