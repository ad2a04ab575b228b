"""Feedback on a served answer: one format for `POST /v1/feedback`, the lines of `inbox/feedback/` files and the
server's feedback log (docs/feedback.md).

    {"id": "chatcmpl-...", "rating": "good" | "bad", "correction": "...", "note": "..."}
    {"messages": [...], "answer": "...", "model": "...", "rating": "bad", "correction": "..."}

An exchange is named by the response id the server returned (it keeps what it served: served/exchanges/), or
given whole when it was served elsewhere (a vLLM fed by the promotion hook, another app): the messages (or a raw
prompt) it answered and the answer. A correction is what the answer should have been; a note is for people.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from .data import check_size
from .errors import DataError

RATINGS = ("good", "bad")
SERVED_EXCHANGES = Path("served") / "exchanges"  # the server's: each exchange answered (serve.record)
SERVED_FEEDBACK = Path("served") / "feedback"  # the server's: each verdict accepted by POST /v1/feedback
FEEDBACK_STATE = Path("data") / "feedback" / "state.json"  # the daemon's: how far it has read each feedback file


def served_stats(root: Path) -> dict:
    """How many exchanges and verdicts the server keeps under the root, and their size on disk."""
    out = {}
    for name, folder in (("exchanges", SERVED_EXCHANGES), ("feedback", SERVED_FEEDBACK)):
        files = sorted((Path(root) / folder).glob("*.jsonl"))
        out[name] = sum(_lines(p) for p in files)
        out[f"{name}_bytes"] = sum(p.stat().st_size for p in files)
    return out


def _lines(path: Path) -> int:
    with open(path, "rb") as f:
        return sum(chunk.count(b"\n") for chunk in iter(lambda: f.read(1 << 20), b""))


class Turn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    role: Literal["system", "user", "assistant"]
    content: str


class Feedback(BaseModel):
    """One verdict. Unknown fields are refused by name (a misspelt "rating" is not silently dropped)."""

    model_config = ConfigDict(extra="forbid")

    id: str | None = Field(None, min_length=1, max_length=200)
    messages: list[Turn] | None = Field(None, min_length=1)
    prompt: str | None = None
    answer: str | None = None
    model: str | None = None
    choice: int = Field(0, ge=0, description="which of the response's choices (n > 1, or several prompts)")
    rating: Literal["good", "bad"]
    correction: str | None = Field(None, min_length=1)
    note: str | None = None

    @field_validator("rating", mode="before")
    @classmethod
    def _rating(cls, value):
        if value not in RATINGS:
            raise ValueError(f'must be "good" or "bad" (got {json.dumps(value)})')
        return value

    @model_validator(mode="after")
    def _exchange(self):
        given = self.messages is not None or self.prompt is not None or self.answer is not None
        if self.id is not None and given:
            raise ValueError("id: name a served exchange by its id, or give the exchange (messages or prompt, and "
                             "answer), not both")
        if self.id is None:
            if (self.messages is None) == (self.prompt is None):
                raise ValueError("messages: give the exchange's messages (or its prompt), or the id of a served answer")
            if self.answer is None:
                raise ValueError("answer: the answer the verdict is on is missing")
            if self.messages is not None and self.messages[-1].role != "user":
                raise ValueError("messages: the last message must be the user's turn the answer replied to")
        if self.rating == "good" and self.correction is not None:
            raise ValueError('correction: a "good" answer needs none; send "bad" with the correction')
        return self

    def check_size(self, max_chars: int) -> None:
        for name in ("correction", "note"):
            text = getattr(self, name)
            if text is not None and len(text) > max_chars:
                raise ValueError(f"{name}: {len(text)} characters, over feedback.max_chars ({max_chars}); "
                                 f"shorten it")


def validation_problem(e: ValidationError) -> tuple[str, str]:
    """(field, message) of pydantic's first error on a feedback object."""
    err = e.errors()[0]
    loc = ".".join(str(p) for p in err.get("loc", ()))
    message = err.get("msg", "invalid").removeprefix("Value error, ")
    if err.get("type") == "extra_forbidden":
        message = f"unknown field (the fields are: {', '.join(Feedback.model_fields)})"
    if not loc and ":" in message.split(" ", 1)[0]:
        loc = message.split(":", 1)[0]
        message = message.split(":", 1)[1].strip()
    return loc, message


def parse(obj, max_chars: int) -> Feedback:
    """A feedback object, checked; ValueError with the field and what to fix."""
    if not isinstance(obj, dict):
        raise ValueError("a feedback line must be a JSON object")
    try:
        feedback = Feedback.model_validate(obj)
    except ValidationError as e:
        field, message = validation_problem(e)
        raise ValueError(f"{field}: {message}" if field else message) from None
    feedback.check_size(max_chars)
    return feedback


def read_feedback_file(path, max_chars: int, max_line_bytes: int, max_file_bytes: int) -> list[Feedback]:
    """Every line of a feedback file, or DataError naming every bad line (all or nothing, like training files)."""
    check_size(path, max_file_bytes)
    items, problems = [], []
    with open(path, "rb") as f:
        for line_no, raw in enumerate(f, 1):
            if not raw.strip():
                continue
            if len(raw) > max_line_bytes:
                problems.append((line_no, f"line longer than training.max_line_bytes ({max_line_bytes})"))
                continue
            try:
                items.append(parse(json.loads(raw.decode("utf-8")), max_chars))
            except UnicodeDecodeError:
                problems.append((line_no, "not UTF-8 text"))
            except json.JSONDecodeError as e:
                problems.append((line_no, f"not JSON: {e.msg}"))
            except ValueError as e:
                problems.append((line_no, str(e)))
    if problems:
        raise DataError(path, problems, 'feedback: {"id" or "messages"/"prompt" with "answer", "rating": "good"|"bad", '
                                        '"correction", "note"}', refused="not taken")
    if not items:
        raise DataError(path, [(0, "no feedback lines")], "one feedback object per line", refused="not taken")
    return items
