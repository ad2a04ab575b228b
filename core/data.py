"""Reading training files: JSONL, one example per line, its format detected per line.

A file is all or nothing: any invalid line and the whole file is refused, with
every problem listed by line number.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from .errors import DataError

EXPECTED_SHAPE = (
    "one JSON object per line, in any of these shapes: "
    '{"prompt": str, "response": str} | {"prompt": str, "completion": str} | '
    '{"messages": [{"role": "system|user|assistant", "content": str, "weight": 0|1 (optional)}, ...]} '
    '(at least one assistant turn not of weight 0) | '
    '{"instruction": str, "input": str (optional), "output": str} | {"question": str, "answer": str} | '
    '{"text": str}; other keys are kept as metadata'
)
ROLES = ("system", "user", "assistant")
MAX_PROBLEMS = 100


@dataclass
class Example:
    """One training example: a chat (loss on assistant turns) or plain text (loss on all of it)."""

    line: int
    messages: list[dict] | None = None
    text: str | None = None
    meta: dict = field(default_factory=dict)

    @property
    def prompt(self) -> str:
        """The last user turn: the question, for evaluation."""
        return next((m["content"] for m in reversed(self.messages or []) if m["role"] == "user"), "")

    @property
    def response(self) -> str:
        """The last assistant turn: the golden answer, for evaluation."""
        return next((m["content"] for m in reversed(self.messages or []) if m["role"] == "assistant"), "")


class _LineError(ValueError):
    pass


def _reject_constant(name):
    raise _LineError(f"{name} is not valid JSON; write null or a number")


def _no_duplicate_keys(pairs):
    obj = {}
    for key, value in pairs:
        if key in obj:
            raise _LineError(f"key {key!r} appears twice in one object")
        obj[key] = value
    return obj


def _text_field(obj: dict, key: str, *, optional: bool = False) -> str:
    value = obj.get(key)
    if value is None and optional:
        return ""
    if not isinstance(value, str):
        raise _LineError(f'"{key}" must be a string, got {type(value).__name__}')
    if not value.strip() and not optional:
        raise _LineError(f'"{key}" is empty')
    _check_text(value, f'"{key}"')
    return value


def _check_text(value: str, where: str) -> None:
    """A JSON escape of half a surrogate pair (\\ud800 alone) parses into a string that is not text: the
    tokenizer refuses it mid-training. Named here instead, before anything is queued."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as e:
        raise _LineError(f"{where} holds an unpaired surrogate escape at character {e.start} "
                         f"(\\u{ord(value[e.start]):04x}), which is not text; fix or remove it") from None


def _chat(prompt: str, response: str) -> list[dict]:
    return [{"role": "user", "content": prompt}, {"role": "assistant", "content": response}]


def _messages(obj: dict) -> list[dict]:
    msgs = obj["messages"]
    if not isinstance(msgs, list) or not msgs:
        raise _LineError('"messages" must be a non-empty list of {"role", "content"} objects')
    out = []
    for i, m in enumerate(msgs):
        if not isinstance(m, dict) or not isinstance(m.get("role"), str) or not isinstance(m.get("content"), str):
            raise _LineError(f'messages[{i}] must be an object with string "role" and "content"')
        if m["role"] not in ROLES:
            raise _LineError(f"messages[{i}]: unknown role {m['role']!r} (allowed: {', '.join(ROLES)})")
        if m["role"] == "assistant" and not m["content"].strip():
            raise _LineError(f"messages[{i}]: assistant content is empty")
        _check_text(m["content"], f"messages[{i}].content")
        message = {"role": m["role"], "content": m["content"]}
        if "weight" in m:  # Axolotl's convention: an assistant turn with weight 0 is context, never trained
            if m["weight"] not in (0, 1) or isinstance(m["weight"], bool) or m["role"] != "assistant":
                raise _LineError(f'messages[{i}]: "weight" must be 0 or 1, on an assistant turn')
            message["weight"] = m["weight"]
        out.append(message)
    if not any(m["role"] == "assistant" for m in out):
        raise _LineError("messages has no assistant turn, so there is nothing to learn")
    if not any(m["role"] == "assistant" and m.get("weight", 1) for m in out):
        raise _LineError("every assistant turn has weight 0, so there is nothing to learn")
    return out


# (keys that identify the shape, builder) in detection order; the first whose keys are present wins.
_SHAPES = (
    (("messages",), lambda o: Example(0, messages=_messages(o))),
    (("prompt", "response"), lambda o: Example(0, messages=_chat(_text_field(o, "prompt"), _text_field(o, "response")))),
    (("prompt", "completion"), lambda o: Example(0, messages=_chat(_text_field(o, "prompt"), _text_field(o, "completion")))),
    (
        ("instruction", "output"),
        lambda o: Example(
            0,
            messages=_chat(
                "\n\n".join(p for p in (_text_field(o, "instruction"), _text_field(o, "input", optional=True)) if p),
                _text_field(o, "output"),
            ),
        ),
    ),
    (("question", "answer"), lambda o: Example(0, messages=_chat(_text_field(o, "question"), _text_field(o, "answer")))),
    (("text",), lambda o: Example(0, text=_text_field(o, "text"))),
)


def parse_record(obj) -> Example:
    """One decoded JSON value -> Example, or _LineError saying what is wrong."""
    if not isinstance(obj, dict):
        raise _LineError(f"expected a JSON object, got {type(obj).__name__ if obj is not None else 'null'}")
    for keys, build in _SHAPES:
        if all(k in obj for k in keys):
            example = build(obj)
            example.meta = {k: v for k, v in obj.items() if k not in keys and not (keys[0] == "instruction" and k == "input")}
            return example
    raise _LineError(f"no known shape: keys are {sorted(obj)[:8]}")


def parse_line(raw: bytes, max_line_bytes: int, parse=parse_record):
    """One raw line -> `parse(decoded JSON)`, or _LineError saying what is wrong."""
    if len(raw) > max_line_bytes:
        raise _LineError(f"line is {len(raw)} bytes, over training.max_line_bytes ({max_line_bytes})")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise _LineError(f"not valid UTF-8 at byte {e.start}; save the file as UTF-8") from None
    try:
        obj = json.loads(text, parse_constant=_reject_constant, object_pairs_hook=_no_duplicate_keys)
    except json.JSONDecodeError as e:
        raise _LineError(f"invalid JSON at column {e.colno}: {e.msg}") from None
    except RecursionError:
        raise _LineError("JSON is nested too deeply") from None
    except ValueError as e:  # an integer of over sys.get_int_max_str_digits() digits: Python refuses to convert it
        raise _LineError(f"a number in this line cannot be read ({str(e).split(';')[0]})") from None
    return parse(obj)


MAX_FILE_BYTES = 2 * 2**30  # training.max_file_bytes' default


def check_size(path: Path, max_file_bytes: int, expected: str = "") -> None:
    """DataError before a file of over `max_file_bytes` is read (it would be read whole into memory)."""
    size = os.stat(path).st_size
    if size > max_file_bytes:
        raise DataError(path, [(0, f"the file is {size:,} bytes, over training.max_file_bytes ({max_file_bytes:,}); "
                                   "split it into smaller files")], expected)


def read_jsonl(path: Path, parse, expected: str, *, max_line_bytes: int = 1_000_000,
               max_file_bytes: int = MAX_FILE_BYTES) -> list:
    """Every record of a JSONL file through `parse` (which raises _LineError), each given its line number; or
    DataError listing every bad line with the expected shape."""
    path = Path(path)
    try:
        check_size(path, max_file_bytes, expected)
        data = path.read_bytes()
    except OSError as e:
        raise DataError(path, [(0, f"cannot read: {e.strerror}")], expected) from None
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        raise DataError(path, [(1, "file is UTF-16; save it as UTF-8")], expected)
    if data.startswith(b"\xef\xbb\xbf"):
        raise DataError(path, [(1, "file starts with a byte-order mark (BOM); save it as UTF-8 without BOM")], expected)
    lines = data.split(b"\n")
    records, problems = [], []
    for number, raw in enumerate(lines, start=1):
        raw = raw.rstrip(b"\r")
        if not raw.strip():
            continue
        try:
            record = parse_line(raw, max_line_bytes, parse)
        except _LineError as e:
            reason = str(e)
            if number == len(lines) and not data.endswith(b"\n") and reason.startswith("invalid JSON"):
                reason += " (the last line has no newline: the file looks truncated or still being written)"
            problems.append((number, reason))
            if len(problems) >= MAX_PROBLEMS:
                break
            continue
        record.line = number
        records.append(record)
    if problems:
        raise DataError(path, problems, expected)
    if not records:
        raise DataError(path, [(0, "file is empty: it holds no example")], expected)
    return records


def read_examples(path: Path, *, max_line_bytes: int = 1_000_000, max_file_bytes: int = MAX_FILE_BYTES
                  ) -> list[Example]:
    """Every example of a JSONL file, or DataError listing every bad line."""
    return read_jsonl(path, parse_record, EXPECTED_SHAPE, max_line_bytes=max_line_bytes, max_file_bytes=max_file_bytes)


def write_examples(path: Path, records: list[dict]) -> None:
    """Records as JSONL (the inverse of reading, for generated files)."""
    with open(path, "w", encoding="utf-8") as f:
        for r in records:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")
