"""Verifiable synthetic tasks for examples, tests and benchmarks (seeded, offline)."""
from __future__ import annotations

import random


def integer_sums(n: int, *, seed: int = 0, terms: tuple[int, int] = (3, 5), max_value: int = 99) -> list[dict]:
    """Multi-term integer sums: {"prompt", "response", "id"}; the response ends with the final number.

    The response adds one term at a time ("12 + 34 = 46. 46 + 5 = 51."): a 135M model cannot add
    five numbers in one token step, and trained on one-step answers it learns to guess (0 % held-out).
    """
    rng = random.Random(seed)
    out = []
    for i in range(n):
        xs = [rng.randint(1, max_value) for _ in range(rng.randint(*terms))]
        steps, total = [], xs[0]
        for x in xs[1:]:
            steps.append(f"{total} + {x} = {total + x}.")
            total += x
        out.append({"prompt": f"What is {' + '.join(map(str, xs))}?",
                    "response": f"{' '.join(steps)} The answer is {total}.", "id": f"sum-{seed}-{i}"})
    return out


def word_problems(n: int, *, seed: int = 0) -> list[dict]:
    """Two-step word problems in GSM8K shape: {"question", "answer"} with a '#### N' final line."""
    rng = random.Random(seed)
    names = ["Ana", "Ben", "Chen", "Dara", "Eli", "Fay", "Gus", "Hana"]
    things = ["apples", "books", "coins", "stamps", "marbles", "pens"]
    out = []
    for i in range(n):
        who, what = rng.choice(names), rng.choice(things)
        a, b, c = rng.randint(2, 40), rng.randint(2, 40), rng.randint(1, 20)
        total = a + b - c
        out.append({
            "question": f"{who} has {a} {what}. {who} buys {b} more and then gives away {c}. "
                        f"How many {what} does {who} have now?",
            "answer": f"{who} has {a} + {b} = {a + b} {what} after buying. "
                      f"After giving away {c}, {who} has {a + b} - {c} = {total}.\n#### {total}",
            "id": f"word-{seed}-{i}",
        })
    return out


def comparisons(n: int, *, seed: int = 0) -> list[dict]:
    """Yes/no questions about a short passage, in BoolQ's shape: {"question", "passage", "answer": bool, "id"}."""
    rng = random.Random(seed)
    names = ["Ana", "Ben", "Chen", "Dara", "Eli", "Fay", "Gus", "Hana"]
    things = ["apples", "books", "coins", "stamps", "marbles", "pens"]
    out = []
    for i in range(n):
        (a, b), what = rng.sample(names, 2), rng.choice(things)
        x, y = rng.sample(range(2, 60), 2)
        more = rng.random() < 0.5
        out.append({"question": f"does {a} have {'more' if more else 'fewer'} {what} than {b}",
                    "passage": f"{a} has {x} {what}. {b} has {y} {what}.",
                    "answer": (x > y) == more, "id": f"cmp-{seed}-{i}"})
    return out
