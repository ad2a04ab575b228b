"""Trained arms of bench/learning.py runs, tested again on a larger held-out set.

    python bench/retest.py --seed 1 --test 200 WORK1S/S WORK1P/P [...]

At 50 items per family one item is 2 points, and one arm's binomial standard error is about 7, more than
the 5-point margins the bench looks for. This answers each family's first N test items of `--seed` (the same
generator and seed as `bench/learning.py --test N`, so its first 50 are the ones that run was scored on)
with each arm's current adapter, scored as the bench scores them, without training anything again. Each arm
must have been trained with the same --seed. Ends with one JSON line.
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.learning import FAMILIES, evaluate, test_sets  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("arms", type=Path, nargs="+", help="arm folders of bench/learning.py runs (WORK/S, WORK/P, ...)")
    p.add_argument("--seed", type=int, required=True, help="the --seed those runs used")
    p.add_argument("--test", type=int, default=200, help="held-out test items per family")
    args = p.parse_args()
    for root in args.arms:
        if not (root / "data" / "state.json").exists():
            p.error(f"{root}: not a trained arm (no data/state.json); give an arm folder such as WORK/S")

    work = Path(tempfile.mkdtemp(prefix="retest-"))
    tests = test_sets(work, args.test, args.seed)
    results = {}
    for root in args.arms:
        results[str(root)] = evaluate(root, tests, "current")
        line = ", ".join(f"{f} {100 * t['accuracy']:.1f}% (second attempt {100 * (t['second_attempt_accuracy'] or 0):.1f}%, "
                         f"wrong→right {t['wrong_to_right']}, right→wrong {t['right_to_wrong']}/{t['right_probed']})"
                         for f, t in results[str(root)].items())
        print(f"{root}: {line}", flush=True)
    print(json.dumps({"seed": args.seed, "test": args.test, "families": list(FAMILIES), "arms": results}))


if __name__ == "__main__":
    main()
