"""Is a predicted answer right? The decision and the reason, for the monitor to print.

Rules, in order (the first that holds decides "match"):
1. normalized exact match (case, whitespace and trailing punctuation ignored);
2. numeric: the expected final answer is a number and the prediction's final
   answer (or, without a marker, its last number) equals it (42 == 42.0 == $42);
3. containment: a non-numeric expected final answer appears as whole words in the prediction;
4. math equivalence through math-verify (1/2 == 0.5, \\frac{1}{2} == 0.5).
"""
from __future__ import annotations

import re
import threading
from dataclasses import dataclass

from .text import FINAL_MARKERS, final_answer, normalize, numbers, to_number


@dataclass(frozen=True)
class Match:
    matched: bool
    reason: str


def _predicted_final_number(predicted: str) -> float | None:
    if any(p.search(predicted) for p in FINAL_MARKERS):
        value = to_number(final_answer(predicted))
        if value is not None:
            return value
        found = numbers(final_answer(predicted))
        return found[-1] if found else None
    found = numbers(predicted)
    return found[-1] if found else None


def _math_equivalent(expected: str, predicted: str) -> bool:
    """math-verify's timeouts use signal.alarm, which works only in the main thread."""
    try:
        from math_verify import parse, verify
    except ImportError:
        return False
    in_main = threading.current_thread() is threading.main_thread()
    timeout = 5 if in_main else None
    try:
        gold = parse(expected, parsing_timeout=timeout)
        pred = parse(predicted, parsing_timeout=timeout)
        return bool(gold and pred and verify(gold, pred, timeout_seconds=timeout))
    except Exception:  # math-verify raises on odd input; that is "not shown equivalent"
        return False


def match_answer(expected: str, predicted: str) -> Match:
    if not predicted.strip():
        return Match(False, "empty prediction")
    if normalize(expected) == normalize(predicted):
        return Match(True, "exact match")
    primary = final_answer(expected)
    expected_number = to_number(primary)
    if expected_number is not None:
        got = _predicted_final_number(predicted)
        if got is not None and abs(got - expected_number) <= 1e-9 * max(1.0, abs(expected_number)):
            return Match(True, f"numeric match: final answer {got:g} == {expected_number:g}")
        if _math_equivalent(primary, final_answer(predicted)):
            return Match(True, "math-verify: equivalent")
        shown = "none" if got is None else f"{got:g}"
        return Match(False, f"final answer {shown} != expected {expected_number:g}")
    if normalize(primary) and re.search(rf"(?<!\w){re.escape(normalize(primary))}(?!\w)", normalize(predicted)):
        return Match(True, f"expected answer {primary!r} found in prediction")
    if _math_equivalent(primary, final_answer(predicted)):
        return Match(True, "math-verify: equivalent")
    return Match(False, f"expected answer {primary[:60]!r} not found")
