"""QA items: a question (the conversation before the last answer) and its golden answer.

This module holds the project's one definition of "a QA example" (`as_qa`), used by
`--eval`, the validation pool, the promotion gate, and the hold-out split of every
incoming file.
"""
from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path

from core.data import Example, read_examples
from core.errors import DataError


@dataclass
class QAItem:
    id: str
    conversation: list[dict]  # the messages before the golden answer, ending with a user turn
    golden: str
    file: str
    line: int
    category: str | None = None  # the record's "category", where it has one

    @property
    def question(self) -> str:
        return self.conversation[-1]["content"]


def as_qa(example: Example) -> tuple[list[dict], str] | None:
    """(conversation, golden answer) when the example's last assistant turn follows a user turn; else None."""
    if not example.messages:
        return None
    last = max(i for i, m in enumerate(example.messages) if m["role"] == "assistant")
    conversation = example.messages[:last]
    if not conversation or conversation[-1]["role"] != "user":
        return None
    return conversation, example.messages[last]["content"]


def qa_items(examples: list[Example], *, file: str, sha256: str) -> list[QAItem]:
    """The QA examples of a prepared file as items; ids are hash:line."""
    return [QAItem(f"{sha256[:12]}:{e.line}", *qa, file, e.line) for e in examples if (qa := as_qa(e))]


def read_qa(path: Path) -> list[QAItem]:
    """Every example of a JSONL file as a QA item (any that is not one is an error); ids are the record's
    "id" or FILE:LINE."""
    path = Path(path)
    items, problems = [], []
    for ex in read_examples(path):
        qa = as_qa(ex)
        if qa is None:
            problems.append((ex.line, '{"text"} records have no question and answer; use prompt/response'
                             if ex.messages is None else "the last answer does not follow a user turn"))
            continue
        category = ex.meta.get("category")
        items.append(QAItem(str(ex.meta.get("id", f"{path.name}:{ex.line}")), *qa, path.name, ex.line,
                            str(category) if category is not None else None))
    if problems:
        raise DataError(path, problems, "question/answer records: prompt+response, question+answer or messages")
    return items


def split_holdout(examples: list[Example], *, fraction: float, seed: str,
                  limit: int | None = None) -> tuple[list[Example], list[Example]]:
    """(rest, held out): a fixed share of the QA examples (at most `limit`), chosen by `seed` (the file's
    hash), so a retry picks the same."""
    if fraction <= 0:
        return examples, []
    qa = [k for k, e in enumerate(examples) if as_qa(e)]
    n = min(int(len(qa) * fraction), len(qa) if limit is None else limit)
    chosen = set(random.Random(seed).sample(qa, n)) if n else set()
    return [e for k, e in enumerate(examples) if k not in chosen], [e for k, e in enumerate(examples) if k in chosen]
