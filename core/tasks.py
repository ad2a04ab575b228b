"""The task registry of the evaluation harness: a name -> its items, domain and file.

Built-ins: `tatqa_tiny` (finance, 3 items), `medqa_tiny` (medical, 3) and `iot_tiny` (IoT anomalies, 5),
written by us with verifiable answers (core/task_files/), and two generated families, `word_problems`
(GSM8K-shape arithmetic) and `comparisons` (yes/no about a passage), 100 items each from the project's
generators with a fixed seed. The config's `tasks` section adds or overrides names:
`{"tasks": {"my_task": {"file": "data/my_task.jsonl", "domain": "law"}}}`.

A task file is JSON (an array of objects) or JSONL, each item with `id`, `question`, `answer`, and optionally
`context` and `domain`. A bad file is refused whole, naming the item (line) and the key.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from .errors import ConfigError, DataError
from .importers import Question

FILES = Path(__file__).resolve().parent / "task_files"
GENERATED_ITEMS = 100
GENERATED_SEED = 7
TASK_SHAPE = ('{"id": str, "question": str, "answer": str, "context": str (optional), "domain": str (optional)}, '
              "as a JSON array or one object per line (JSONL)")
BUILTIN = {"tatqa_tiny": "finance", "medqa_tiny": "medical", "iot_tiny": "iot", "word_problems": "math",
           "comparisons": "reasoning"}


@dataclass
class TaskItem(Question):
    domain: str = ""


@dataclass
class Task:
    name: str
    domain: str
    items: list[TaskItem]
    source: str  # the file, or "generated"


def _item(obj, where: str, domain: str) -> TaskItem:
    if not isinstance(obj, dict):
        raise ValueError(f"{where}: expected an object, got {type(obj).__name__}")
    for key in ("id", "question", "answer"):
        value = obj.get(key)
        if not isinstance(value, (str, int, float)) or isinstance(value, bool) or not str(value).strip():
            raise ValueError(f'{where}: "{key}" is missing or not text')
    for key in ("context", "domain"):
        if key in obj and obj[key] is not None and not isinstance(obj[key], str):
            raise ValueError(f'{where}: "{key}" must be text')
    return TaskItem(str(obj["id"]), str(obj["question"]).strip(), str(obj["answer"]).strip(),
                    obj.get("context") or None, domain=obj.get("domain") or domain)


def read_task_file(path: Path, domain: str = "") -> list[TaskItem]:
    """Every item of a task file, or DataError naming each bad item (its line in JSONL, its index in JSON)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise DataError(path, [(0, f"cannot read: {e}")], TASK_SHAPE, refused="not read") from None
    problems, items = [], []
    if text.lstrip().startswith("["):
        try:
            rows = json.loads(text)
        except json.JSONDecodeError as e:
            raise DataError(path, [(e.lineno, f"invalid JSON ({e.msg}, column {e.colno})")], TASK_SHAPE,
                            refused="not read") from None
        numbered = [(0, f"item {k + 1}", row) for k, row in enumerate(rows)]
    else:
        numbered = []
        for n, line in enumerate(text.splitlines(), start=1):
            if not line.strip():
                continue
            try:
                numbered.append((n, "", json.loads(line)))
            except json.JSONDecodeError as e:
                problems.append((n, f"invalid JSON ({e.msg})"))
    for line, where, row in numbered:
        try:
            items.append(_item(row, where or "record", domain))
        except ValueError as e:
            problems.append((line, str(e)))
    seen: dict[str, int] = {}
    for k, item in enumerate(items):
        item.row = k + 1
        if item.id in seen:
            problems.append((0, f'id {item.id!r} appears twice; ids must be unique'))
        seen[item.id] = k
    if problems:
        raise DataError(path, problems, TASK_SHAPE, refused="not read")
    if not items:
        raise DataError(path, [(0, "no items")], TASK_SHAPE, refused="not read")
    return items


def _generated(name: str) -> list[TaskItem]:
    from .synthetic import comparisons, word_problems

    if name == "word_problems":
        rows = word_problems(GENERATED_ITEMS, seed=GENERATED_SEED)
        return [TaskItem(r["id"], r["question"], r["answer"].rsplit("####", 1)[1].strip(), row=k + 1, domain="math")
                for k, r in enumerate(rows)]
    rows = comparisons(GENERATED_ITEMS, seed=GENERATED_SEED)
    return [TaskItem(r["id"], r["question"][0].upper() + r["question"][1:] + "?", "yes" if r["answer"] else "no",
                     r["passage"], row=k + 1, domain="reasoning") for k, r in enumerate(rows)]


def task_names(configured: dict) -> list[str]:
    return sorted(set(BUILTIN) | set(configured))


def load_task(name_or_file: str, configured: dict, root: Path) -> Task:
    """A registered task by name (the config's first, then the built-ins), or a task file by path."""
    if name_or_file in configured:
        section = configured[name_or_file]
        path = Path(section.file) if Path(section.file).is_absolute() else Path(root) / section.file
        return Task(name_or_file, section.domain, read_task_file(path, section.domain), str(path))
    if name_or_file in BUILTIN:
        domain = BUILTIN[name_or_file]
        if name_or_file in ("word_problems", "comparisons"):
            return Task(name_or_file, domain, _generated(name_or_file), "generated")
        path = FILES / f"{name_or_file}.json"
        return Task(name_or_file, domain, read_task_file(path, domain), str(path))
    path = Path(name_or_file)
    if not path.exists():
        raise DataError(path, [(0, f"no such file, and no task of that name (tasks: "
                                   f"{', '.join(task_names(configured))})")], refused="not read")
    return Task(path.stem, "", read_task_file(path), str(path))


class GridSpec(BaseModel):
    """A grid file: `python train.py --grid GRID.json` runs every adapter x task x mode into `out`."""

    model_config = ConfigDict(extra="forbid")
    adapters: list[str] = Field(default_factory=lambda: ["base", "current"], min_length=1)
    tasks: list[str] = Field(..., min_length=1)
    modes: list[Literal["baseline", "ace"]] = Field(default_factory=lambda: ["baseline", "ace"], min_length=1)
    limit: int | None = Field(None, gt=0)
    out: Path = Path("data/results/grid")


def load_grid(path: Path) -> GridSpec:
    try:
        return GridSpec.model_validate_json(Path(path).read_text(encoding="utf-8"))
    except OSError as e:
        raise ConfigError(path, [f"cannot read: {e.strerror}"]) from None
    except ValidationError as e:
        raise ConfigError(path, [f"{'.'.join(map(str, err['loc'])) or '(top level)'}: {err['msg'].lower()}"
                                 for err in e.errors()]) from None
