"""The evaluation harness: a task's items in `baseline` or `ace` mode, one CSV row per item.

`baseline` asks each item as `--eval` does (its context, then the question). `ace` puts the playbook's top
lessons before the same prompt, reflects on each wrong answer and curates the lessons (evaluation.ace),
`ace.batch_size` items at a time: the items of a batch see the same playbook and are answered together,
their wrong answers reflected on together; then the lessons are curated and the playbook saved item by item. Latencies are wall time on a monotonic clock, per item, queueing in a shared batch included.

CSV columns (COLUMNS): the core columns `model_id, task_name, domain, mode, sample_id, gold, pred, latency_ms`,
its debug `question, context, correct`, in ACE mode `reflection_latency_ms, reflected`, and `exact_match`,
`adapter`, `epoch`. `correct` is the project's matcher (evaluation.matching: numbers, yes/no, spans...), not
the exact match, which is the `exact_match` column (case, spaces and end punctuation ignored).
"""
from __future__ import annotations

import asyncio
import csv
import io
import statistics
import time
from pathlib import Path

from core.fsutil import atomic_write_text
from core.tasks import Task, TaskItem
from inference.requests import Request

from .ace import Playbook, reflect
from .error_codes import error_codes
from .matching import answer_kind, match_answer
from .text import normalize

COLUMNS = ["model_id", "task_name", "domain", "mode", "sample_id", "gold", "pred", "latency_ms", "question",
           "context", "correct", "exact_match", "reflection_latency_ms", "reflected", "adapter", "epoch"]
GROUP = ("model_id", "task_name", "mode", "adapter", "epoch")


def generator_prompt(item: TaskItem, lessons: list, template: str) -> str:
    if not lessons:
        return item.prompt()
    return template.format(lessons="\n".join(f"{k}. {x.text}" for k, x in enumerate(lessons, 1)), prompt=item.prompt())


class Harness:
    """One task's items through the generator (and in ACE mode the reflector and the curator)."""

    def __init__(self, generator, settings, *, reflector=None, playbook: Playbook | None = None, model_id: str,
                 adapter: str, max_new_tokens: int, concurrency: int = 16, tokenizer=None):
        self.generator, self.reflector, self.playbook, self.settings = generator, reflector, playbook, settings
        self.model_id, self.adapter, self.max_new_tokens = model_id, adapter, max_new_tokens
        self.concurrency, self.tokenizer = concurrency, tokenizer
        self.stats = {"reflections": 0, "empty_reflections": 0, "added": 0, "merged": 0, "generic": 0, "pruned": 0}

    async def _answer(self, content: str, item: TaskItem) -> tuple[str, float]:
        began = time.monotonic()
        request = Request(messages=[{"role": "user", "content": content}], max_new_tokens=self.max_new_tokens,
                          stop_at_final_answer=answer_kind(item.reference_answer) == "math")
        result = (await self.generator.generate([request]))[0]
        return result.completions[0].text, 1000 * (time.monotonic() - began)

    async def _reflect(self, item: TaskItem, pred: str) -> tuple[list[str], float]:
        began = time.monotonic()
        codes = error_codes(item.question, item.reference_answer, pred, tokenizer=self.tokenizer, matched=False)
        lessons = await reflect(self.reflector, self.settings, question=item.prompt(), answer=pred,
                                golden=item.reference_answer, codes=codes)
        self.stats["reflections"] += 1
        self.stats["empty_reflections"] += not lessons
        return lessons, 1000 * (time.monotonic() - began)

    def _row(self, task: Task, item: TaskItem, mode: str, pred: str, latency: float, epoch: int) -> dict:
        correct = match_answer(item.reference_answer, pred, question=item.question).matched
        return {"model_id": self.model_id, "task_name": task.name, "domain": item.domain or task.domain, "mode": mode,
                "sample_id": item.id, "gold": item.reference_answer, "pred": pred, "latency_ms": round(latency, 1),
                "question": item.question, "context": item.context or "", "correct": int(correct),
                "exact_match": int(normalize(pred) == normalize(item.reference_answer)),
                "reflection_latency_ms": "", "reflected": "", "adapter": self.adapter, "epoch": epoch}

    async def run(self, task: Task, items: list[TaskItem], *, mode: str, epoch: int = 0, on_row=None) -> list[dict]:
        if mode == "baseline":
            limit = asyncio.Semaphore(self.concurrency)

            async def one(item: TaskItem) -> dict:
                async with limit:
                    pred, latency = await self._answer(item.prompt(), item)
                row = self._row(task, item, mode, pred, latency, epoch)
                if on_row:
                    on_row(row)
                return row

            return list(await asyncio.gather(*(one(i) for i in items)))
        rows = []
        size = self.settings.batch_size
        for start in range(0, len(items), size):
            batch = items[start:start + size]
            shown = [self.playbook.top(self.settings.top_k, task=task.name, domain=i.domain or task.domain)
                     for i in batch]
            answers = await asyncio.gather(*(self._answer(generator_prompt(i, s, self.settings.generator_prompt), i)
                                             for i, s in zip(batch, shown)))
            batch_rows = [self._row(task, item, mode, pred, latency, epoch)
                          for item, (pred, latency) in zip(batch, answers)]
            wrong = [k for k, row in enumerate(batch_rows) if not row["correct"]]
            reflections = dict(zip(wrong, await asyncio.gather(*(self._reflect(batch[k], batch_rows[k]["pred"])
                                                                for k in wrong))))
            for k, (item, lessons, row) in enumerate(zip(batch, shown, batch_rows)):
                self.playbook.count(lessons, bool(row["correct"]))
                row["reflected"] = int(k in reflections)
                if k in reflections:
                    new, reflect_ms = reflections[k]
                    counts = self.playbook.curate(new, task=task.name, domain=item.domain or task.domain,
                                                  sample_id=item.id, threshold=self.settings.dedupe_threshold,
                                                  max_entries=self.settings.max_entries)
                    for key, v in counts.items():
                        self.stats[key] += v
                    row["reflection_latency_ms"] = round(reflect_ms, 1)
                self.playbook.save()  # after each item: a stop loses at most the batch in hand
                rows.append(row)
                if on_row:
                    on_row(row)
        return rows


def write_csv(path: Path, rows: list[dict], columns: list[str] = COLUMNS) -> None:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=columns)
    writer.writeheader()
    writer.writerows(rows)
    atomic_write_text(Path(path), out.getvalue())


def write_summary(path: Path, table: list[dict]) -> None:
    write_csv(path, table, list(table[0]))


def read_csvs(paths: list[Path]) -> list[dict]:
    rows = []
    for path in paths:
        with open(path, newline="", encoding="utf-8") as f:
            reader = csv.DictReader(f)
            if set(COLUMNS[:8]) <= set(reader.fieldnames or ()):  # a result CSV, not a summary or another file
                rows += [r for r in reader if r.get("correct") not in (None, "")]
    return rows


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


def summarize(rows: list[dict]) -> list[dict]:
    """Accuracy, exact match and latency (mean, p50, p95, p99) per (model_id, task_name, mode, adapter, epoch)."""
    groups: dict[tuple, list[dict]] = {}
    for r in rows:
        groups.setdefault(tuple(r.get(k, "") for k in GROUP), []).append(r)
    out = []
    for key, group in sorted(groups.items(), key=lambda kv: (*kv[0][:2], kv[0][3], int(kv[0][4] or 0), kv[0][2])):
        latency = [float(r["latency_ms"]) for r in group]
        out.append({**dict(zip(GROUP, key)), "n": len(group),
                    "accuracy": round(sum(int(r["correct"]) for r in group) / len(group), 4),
                    "exact_match": round(sum(int(r.get("exact_match") or 0) for r in group) / len(group), 4),
                    "latency_mean_ms": round(statistics.fmean(latency), 1),
                    "latency_p50_ms": _percentile(latency, 0.5), "latency_p95_ms": _percentile(latency, 0.95),
                    "latency_p99_ms": _percentile(latency, 0.99)})
    return out


def markdown(table: list[dict]) -> str:
    if not table:
        return "(no rows)"
    keys = list(table[0])
    lines = ["| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
    lines += ["| " + " | ".join(str(r[k]) for k in keys) + " |" for r in table]
    return "\n".join(lines)
