"""Verifiers: does a sampled solution solve its problem? The judge of verified self-training.

- A math or QA problem with a known answer: the solution's final answer (`#### N`, `\\boxed{}`,
  "the answer is", else its last line) against it, by the project's matcher (numbers, math-verify
  for expressions, short text).
- A code problem with tests: the solution's code (its last fenced block, else the whole text) run
  in the sandbox, never in this process; either once per stdin/stdout pair (`{"input", "output"}`),
  the output compared line by line with trailing spaces ignored, or once with every assert
  statement appended (MBPP / HumanEval style). The first failing test ends the verdict.
"""
from __future__ import annotations

import time
from dataclasses import dataclass

from .matching import CODE_BLOCK, match_answer
from .sandbox import Limits, run_python


@dataclass
class Verdict:
    passed: bool
    reason: str
    seconds: float
    error: bool = False  # the verifier itself failed (not the solution): scored as not passed


def verify_answer(expected: str, solution: str, *, question: str = "") -> Verdict:
    started = time.perf_counter()
    m = match_answer(expected, solution, question=question)
    return Verdict(m.matched, m.reason, round(time.perf_counter() - started, 3))


def solution_code(solution: str) -> str:
    """The code of a solution: its last fenced block (a model explains, then writes the program), else all of it."""
    blocks = CODE_BLOCK.findall(solution)
    return (blocks[-1] if blocks else solution).strip("\n")


def _lines(text: str) -> list[str]:
    return [line.rstrip() for line in text.strip("\n").splitlines()]


def verify_code(solution: str, tests: list, *, entry_point: str | None = None, limits: Limits = Limits()) -> Verdict:
    """`tests`: stdin/stdout pairs, or assert statements (strings). `entry_point`: the function the asserts call,
    checked to exist first, so a solution that defines something else fails with that reason."""
    started = time.perf_counter()
    code = solution_code(solution)

    def verdict(passed: bool, reason: str) -> Verdict:
        return Verdict(passed, reason, round(time.perf_counter() - started, 3))

    def last_line(text: str) -> str:
        lines = text.strip().splitlines()
        return lines[-1][:200] if lines else ""

    if not code.strip():
        return verdict(False, "no code in the solution")
    if all(isinstance(t, dict) for t in tests):
        for k, t in enumerate(tests, 1):
            run = run_python(code, stdin=str(t["input"]), limits=limits)
            if not run.ok:
                return verdict(False, f"test {k}: {run.status}: {last_line(run.stderr)}")
            if _lines(run.stdout) != _lines(str(t["output"])):
                return verdict(False, f"test {k}: printed {run.stdout.strip()[:60]!r}, expected "
                                      f"{str(t['output']).strip()[:60]!r}")
        return verdict(True, f"{len(tests)} input/output tests passed")
    check = f"\n\nassert callable({entry_point}), 'no function {entry_point}'\n" if entry_point else "\n\n"
    run = run_python(code + check + "\n".join(str(t) for t in tests) + "\n", limits=limits)
    if not run.ok:
        return verdict(False, f"{run.status}: {last_line(run.stderr)}")
    return verdict(True, f"{len(tests)} asserts passed")
