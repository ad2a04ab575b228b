"""QA items for evaluation and self-correction: a question (the conversation before the last
answer) and its golden answer, read from any supported training shape."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from training.data import read_examples
from training.errors import DataError


@dataclass
class QAItem:
    id: str
    conversation: list[dict]  # the messages before the golden answer, ending with a user turn
    golden: str
    file: str
    line: int

    @property
    def question(self) -> str:
        return self.conversation[-1]["content"]


def read_qa(path: Path) -> list[QAItem]:
    """Every example of a JSONL file as a QA item; ids are the record's "id" or FILE:LINE."""
    path = Path(path)
    items, problems = [], []
    for ex in read_examples(path):
        if ex.messages is None:
            problems.append((ex.line, '{"text"} records have no question and answer; use prompt/response'))
            continue
        last = max(i for i, m in enumerate(ex.messages) if m["role"] == "assistant")
        conversation = ex.messages[:last]
        if not conversation or conversation[-1]["role"] != "user":
            problems.append((ex.line, "the last answer does not follow a user turn"))
            continue
        item_id = str(ex.meta.get("id", f"{path.name}:{ex.line}"))
        items.append(QAItem(item_id, conversation, ex.messages[last]["content"], path.name, ex.line))
    if problems:
        raise DataError(path, problems, "question/answer records: prompt+response, question+answer or messages")
    return items
