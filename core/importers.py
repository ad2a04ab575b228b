"""Dataset importers: a local file of a public benchmark as questions with a reference answer.

    questions = read_dataset(Path("gsm8k_test.jsonl"), "gsm8k", limit=100)

Every format yields the same `Question` (id, question, reference_answer, context). The
files are read with Hugging Face `datasets` (`load_dataset("json" | "csv" | "parquet",
data_files=..., streaming=True)`: one row at a time, no copy in a cache), chosen by the
file's suffix; the benchmark named decides which fields are read:

| format | fields read | reference answer |
|---|---|---|
| gsm8k | question, answer | the answer's `#### N` line (commas dropped) |
| hotpotqa | question, answer, context (its titled paragraphs), _id or id | answer |
| boolq | question, passage, answer (bool) | yes / no |
| math | problem, solution, id or unique_id | the solution's last `\\boxed{}` |
| csv | id (optional), question, reference_answer | reference_answer |
| jsonl | the project's own QA records (core.qa.read_qa) | the last answer |

A bad row (a field missing or empty, no `####`, no `\\boxed{}`) refuses the whole file with
every bad row's number, as a training file is refused; `skip_bad` skips those rows instead,
and the caller reports how many.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

from .errors import DataError
from .practice import Problem
from .qa import QAItem, read_qa

REFUSED = "not read"  # DataError's first words: a dataset file is read (traced, evaluated), not trained
FORMATS = ("gsm8k", "hotpotqa", "boolq", "math", "csv", "jsonl")
EXPECTED = {
    "gsm8k": '{"question": str, "answer": str ending with "#### N"}',
    "hotpotqa": '{"question": str, "answer": str, "context": [[title, [sentence, ...]], ...]}',
    "boolq": '{"question": str, "passage": str, "answer": true | false}',
    "math": '{"problem": str, "solution": str with \\boxed{answer}}',
    "csv": "a header row id,question,reference_answer (id optional), then one question per row",
}


@dataclass
class Question:
    id: str
    question: str
    reference_answer: str
    context: str | None = None
    row: int = 0  # where it stands in the file (from 1)

    def prompt(self) -> str:
        """What the model is asked: the context (a passage, paragraphs) first, then the question."""
        return f"{self.context}\n\nQuestion: {self.question}" if self.context else self.question

    def as_problem(self) -> Problem:
        """A practice problem (math / QA): its samples are verified against the reference answer."""
        return Problem(self.row, self.id, self.prompt(), answer=self.reference_answer)

    def as_item(self, file: str) -> QAItem:
        return QAItem(self.id, [{"role": "user", "content": self.prompt()}], self.reference_answer, file, self.row)


class _RowError(ValueError):
    pass


def _text(row: dict, key: str) -> str:
    value = row.get(key)
    if value is None or (isinstance(value, str) and not value.strip()):
        raise _RowError(f'"{key}" is missing or empty')
    if isinstance(value, (dict, list)):
        raise _RowError(f'"{key}" must be text, got {type(value).__name__}')
    return str(value).strip()


def _ident(row: dict, *keys: str, default: str) -> str:
    return next((str(row[k]) for k in keys if row.get(k) not in (None, "")), default)


def last_boxed(text: str) -> str | None:
    """The content of the last `\\boxed{...}` (nested braces kept), or None."""
    start = text.rfind("\\boxed{")
    if start < 0:
        return None
    depth, i = 0, start + len("\\boxed")
    for j in range(i, len(text)):
        depth += {"{": 1, "}": -1}.get(text[j], 0)
        if depth == 0:
            return text[i + 1:j].strip() or None
    return None


def _gsm8k(row: dict, n: int) -> Question:
    answer = _text(row, "answer")
    m = re.search(r"####\s*(.+?)\s*$", answer)
    if not m:
        raise _RowError('"answer" has no "#### N" final line')
    return Question(_ident(row, "id", default=f"gsm8k-{n}"), _text(row, "question"), m.group(1).replace(",", ""))


def _paragraphs(context) -> str:
    """HotpotQA's context as text: [[title, [sentence, ...]], ...] (its own JSON) or {"title": [...],
    "sentences": [[...]]} (the hub's parquet); `datasets` may hand nested lists back as JSON strings."""
    def plain(value):
        if isinstance(value, str) and value[:1] in "[\"":
            try:
                return json.loads(value)
            except ValueError:
                return value
        return value

    if isinstance(context, dict):
        pairs = zip(context.get("title") or [], context.get("sentences") or [])
    else:
        pairs = [(plain(p[0]), plain(p[1])) for p in context or [] if isinstance(p, (list, tuple)) and len(p) == 2]
    parts = [f"{title}: {''.join(s) if isinstance(s, list) else s}" for title, s in pairs]
    return "\n".join(parts)


def _hotpotqa(row: dict, n: int) -> Question:
    context = _paragraphs(row.get("context"))
    return Question(_ident(row, "_id", "id", default=f"hotpotqa-{n}"), _text(row, "question"), _text(row, "answer"),
                    context or None)


def _boolq(row: dict, n: int) -> Question:
    answer = row.get("answer")
    if isinstance(answer, str) and answer.strip().lower() in ("true", "false", "yes", "no"):
        answer = answer.strip().lower() in ("true", "yes")
    if not isinstance(answer, bool):
        raise _RowError(f'"answer" must be true or false, got {answer!r}')
    question = _text(row, "question")
    question = question[0].upper() + question[1:] + ("" if question.endswith("?") else "?")
    return Question(_ident(row, "id", "idx", default=f"boolq-{n}"), question, "yes" if answer else "no",
                    _text(row, "passage"))


def _math(row: dict, n: int) -> Question:
    boxed = last_boxed(_text(row, "solution"))
    if boxed is None:
        raise _RowError('"solution" has no \\boxed{answer}')
    return Question(_ident(row, "id", "unique_id", default=f"math-{n}"), _text(row, "problem"), boxed)


def _csv(row: dict, n: int) -> Question:
    return Question(_ident(row, "id", default=f"row-{n}"), _text(row, "question"), _text(row, "reference_answer"))


_READERS = {"gsm8k": _gsm8k, "hotpotqa": _hotpotqa, "boolq": _boolq, "math": _math, "csv": _csv}


def _rows(path: Path):
    """The file's rows, one at a time, through `datasets` (the builder chosen by the suffix)."""
    from datasets import load_dataset

    suffix = path.suffix.lower()
    builder = "csv" if suffix in (".csv", ".tsv") else "parquet" if suffix == ".parquet" else "json"
    kwargs = {"sep": "\t"} if suffix == ".tsv" else {}
    return load_dataset(builder, data_files=str(path), split="train", streaming=True, **kwargs)


def read_dataset(path: Path, fmt: str, *, limit: int | None = None, skip_bad: bool = False
                 ) -> tuple[list[Question], list[tuple[int, str]]]:
    """(questions, skipped rows) of a local dataset file in format `fmt` (one of FORMATS); rows are numbered
    from 1 (a CSV's header is not a row). With `skip_bad`, bad rows are skipped and listed; without, any bad
    row refuses the file (DataError listing every one)."""
    path = Path(path)
    if fmt not in FORMATS:
        raise DataError(path, [(0, f"unknown dataset format {fmt!r}; use one of {', '.join(FORMATS)}")],
                        refused=REFUSED)
    if not path.is_file():
        raise DataError(path, [(0, "no such file")], refused=REFUSED)
    if fmt == "jsonl":
        items = read_qa(path)[:limit]
        return [Question(i.id, i.question, i.golden, row=i.line) for i in items], []
    questions, bad = [], []
    try:
        for n, row in enumerate(_rows(path), start=1):
            if limit is not None and len(questions) >= limit:
                break
            try:
                q = _READERS[fmt](row, n)
                q.row = n
                questions.append(q)
            except _RowError as e:
                bad.append((n, str(e)))
    except DataError:
        raise
    except Exception as e:  # the reader's own error (bad JSON, a type that changes between rows): name the file
        raise DataError(path, [(0, f"cannot be read as {fmt} ({type(e).__name__}: {str(e)[:300]})")],
                        EXPECTED[fmt], refused=REFUSED) from None
    if bad and not skip_bad:
        raise DataError(path, [(0, f"row {n}: {reason}") for n, reason in bad]
                        + [(0, "fix these rows, or pass --skip-bad to skip them")], EXPECTED[fmt], refused=REFUSED)
    seen: dict[str, int] = {}
    for k, q in enumerate(questions):
        if q.id in seen:
            q.id = f"{q.id}#{k + 1}"  # a repeated id would merge two questions' traces
        seen[q.id] = k
    return questions, bad


def read_items(path: Path, fmt: str | None, *, limit: int | None = None, skip_bad: bool = False
               ) -> tuple[list[QAItem], list[tuple[int, str]]]:
    """A file as QA items: our own QA JSONL when `fmt` is None or jsonl, else through its importer."""
    if fmt in (None, "jsonl"):
        return read_qa(path)[:limit], []
    questions, bad = read_dataset(path, fmt, limit=limit, skip_bad=skip_bad)
    return [q.as_item(Path(path).name) for q in questions], bad
