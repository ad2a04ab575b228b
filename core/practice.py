"""Practice files: problems with a way to verify a solution, one per JSONL line (verified self-training).

    {"question" or "prompt": str, "answer": str}                       a math / QA problem with its final answer
    {"prompt": str, "tests": [...], "entry_point": str (optional)}     a code problem; tests are stdin/stdout
                                                                       pairs {"input", "output"} or assert lines
    optional on both: "id", "category", and a golden "solution" (trained only where no sample verifies)

A file is all or nothing, as training files are: any bad line and the whole file is refused,
every problem listed by line number.
"""
from __future__ import annotations

import ast

from dataclasses import dataclass
from pathlib import Path

from .data import MAX_FILE_BYTES, _LineError, _text_field, read_jsonl
from .errors import DataError

PRACTICE_SHAPE = (
    'one JSON object per line: {"question" or "prompt": str, "answer": str} (math / QA) | '
    '{"prompt": str, "tests": [{"input": str, "output": str}, ...] or ["assert f(1) == 2", ...], '
    '"entry_point": str (optional)} (code); optional: "id", "category", "solution"'
)


@dataclass
class Problem:
    line: int
    id: str
    prompt: str
    answer: str | None = None  # math / QA
    tests: list | None = None  # code
    entry_point: str | None = None
    category: str = ""
    solution: str | None = None

    @property
    def kind(self) -> str:
        return "code" if self.tests is not None else "math"


def _tests(value) -> list:
    """Stdin/stdout pairs, or assert statements: the only code a practice file may bring (it is pasted after the
    solution and run in the sandbox, so anything else would be its author's program)."""
    if not isinstance(value, list) or not value:
        raise _LineError('"tests" must be a non-empty list')
    if all(isinstance(t, str) and t.strip() for t in value):
        for k, t in enumerate(value):
            if not _is_assert(t):
                raise _LineError(f"tests[{k}] must be one assert statement (e.g. \"assert f(2) == 4\"), not "
                                 f"{t.strip()[:60]!r}")
        return value
    for k, t in enumerate(value):
        if not (isinstance(t, dict) and isinstance(t.get("input"), str) and isinstance(t.get("output"), str)):
            raise _LineError(f'tests[{k}] must be {{"input": str, "output": str}}, or every test an assert '
                             "statement (a string)")
    return value


def _is_assert(test: str) -> bool:
    try:
        tree = ast.parse(test)
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return False
    return len(tree.body) == 1 and isinstance(tree.body[0], ast.Assert)


def parse_problem(obj) -> Problem:
    if not isinstance(obj, dict):
        raise _LineError(f"expected a JSON object, got {type(obj).__name__ if obj is not None else 'null'}")
    key = "question" if "question" in obj else "prompt"
    if key not in obj:
        raise _LineError(f'no "question" or "prompt": keys are {sorted(obj)[:8]}')
    prompt = _text_field(obj, key)
    if ("answer" in obj) == ("tests" in obj):
        raise _LineError('give exactly one way to verify: "answer" (math / QA) or "tests" (code)')
    optional = {k: _text_field(obj, k) if k in obj else None for k in ("id", "category", "solution", "entry_point")}
    if optional["entry_point"] is not None and not optional["entry_point"].isidentifier():
        raise _LineError(f'"entry_point" must be a function name (an identifier), not {optional["entry_point"][:60]!r}')
    return Problem(0, optional["id"] or "", prompt,
                   answer=_text_field(obj, "answer") if "answer" in obj else None,
                   tests=_tests(obj["tests"]) if "tests" in obj else None,
                   entry_point=optional["entry_point"], category=optional["category"] or "",
                   solution=optional["solution"])


def read_problems(path: Path, *, max_line_bytes: int = 1_000_000, max_file_bytes: int = MAX_FILE_BYTES
                  ) -> list[Problem]:
    """Every problem of a practice file (each without an id named `line-N`), or DataError listing every bad line."""
    problems = read_jsonl(path, parse_problem, PRACTICE_SHAPE, max_line_bytes=max_line_bytes,
                          max_file_bytes=max_file_bytes)
    seen: dict[str, int] = {}
    duplicates = []
    for p in problems:
        p.id = p.id or f"line-{p.line}"
        if p.id in seen:
            duplicates.append((p.line, f'id {p.id!r} also on line {seen[p.id]}; ids must be unique'))
        seen.setdefault(p.id, p.line)
    if duplicates:
        raise DataError(path, duplicates, PRACTICE_SHAPE)
    return problems
