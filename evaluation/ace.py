"""ACE (Agentic Context Engineering, Zhang et al. 2025): an evolving playbook of lessons in the generator's context.

Three roles, each a prompt template of the `ace` config section, answered by a provider:
- Generator: the question and its context, after the top `ace.top_k` lessons for this task or domain
  (ranked by helpful - harmful, then the most recently updated) -> an answer.
- Reflector: a wrong answer, with the question, the golden answer and the error codes -> 0 to
  `ace.max_lessons` lessons, parsed defensively (a JSON array, a numbered or bulleted list, or lines; a line
  that only repeats the prompt is dropped; an empty or junk reply gives no lesson and is counted).
- Curator (here, no model): a new lesson that is generic advice (GENERIC) or too short is dropped; one
  whose normalised text is at least `ace.dedupe_threshold` similar to a lesson of the same task merges into
  it (its counters add); the playbook is pruned to `ace.max_entries` by score, then recency.

Counters: after each answer, every lesson that was in the generator's context gets helpful +1 if the
answer was right, harmful +1 if wrong.

The playbook is JSONL, one lesson per line (id, text, domain, task, helpful, harmful, created_at,
updated_at, source_sample_id), written atomically after each item, with a copy of the last good version
beside it (`<file>.good`); a file truncated or hand-edited into invalid JSON is refused with its line, the
good copy left for recovery.
"""
from __future__ import annotations

import difflib
import json
import re
import shutil
import uuid
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from core.errors import DataError
from core.fsutil import atomic_write_text

from .text import normalize

MIN_LESSON_CHARS = 12
MAX_LESSON_CHARS = 300
# Advice that fits every question teaches nothing about this one.
GENERIC = ("double check", "double-check", "read the question carefully", "think step by step", "be careful",
           "pay attention", "make sure to answer", "check your work", "be accurate", "think carefully")
LIVE = "live"  # the task of lessons from the live monitor's answers (ace.in_daemon)
PLAYBOOK_SHAPE = ('{"id", "text", "domain", "task", "helpful": int, "harmful": int, "created_at", "updated_at", '
                  '"source_sample_id"} per line')


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")


@dataclass
class Lesson:
    id: str
    text: str
    domain: str
    task: str
    helpful: int = 0
    harmful: int = 0
    created_at: str = field(default_factory=now)
    updated_at: str = field(default_factory=now)
    source_sample_id: str = ""

    @property
    def score(self) -> int:
        return self.helpful - self.harmful


def parse_lessons(text: str, max_lessons: int) -> list[str]:
    """A reflector's reply as lesson texts: a JSON array (of strings or of {"lesson"/"text"}), else numbered or
    bulleted lines, else plain lines; each stripped of its marker, kept when it looks like a sentence."""
    candidates: list[str] = []
    start, end = text.find("["), text.rfind("]")
    if 0 <= start < end:
        try:
            value = json.loads(text[start:end + 1])
            for v in value if isinstance(value, list) else []:
                v = v.get("lesson") or v.get("text") if isinstance(v, dict) else v
                if isinstance(v, str):
                    candidates.append(v)
        except ValueError:
            pass
    if not candidates:
        lines = [line.strip() for line in text.splitlines() if line.strip()]
        marked = [line for line in lines if re.match(r"^(\d+[.)]|[-*•])\s+", line)]
        candidates = [re.sub(r"^(\d+[.)]|[-*•])\s+", "", line) for line in (marked or lines)]
    out = []
    for c in candidates:
        c = re.sub(r"^(lesson\s*\d*\s*[:.-]\s*)", "", c.strip().strip('"'), flags=re.I).strip()
        if MIN_LESSON_CHARS <= len(c) <= MAX_LESSON_CHARS and re.search(r"[A-Za-z]{3}", c):
            out.append(c)
    return out[:max_lessons]


async def reflect(provider, settings, *, question: str, answer: str, golden: str, codes: list[str]) -> list[str]:
    """The reflector's lessons on one wrong answer (none when its reply has no usable one)."""
    from inference.requests import Request

    prompt = settings.reflector_prompt.format(question=question, answer=answer, golden=golden,
                                              codes=", ".join(codes) or "none")
    request = Request(messages=[{"role": "user", "content": prompt}], max_new_tokens=settings.reflector_max_tokens)
    result = (await provider.generate([request]))[0]
    # A small model often copies its prompt back (the question, "Correct answer: ..."): an echo is no lesson.
    echo = normalize(prompt)
    return [x for x in parse_lessons(result.completions[0].text, settings.max_lessons * 2)
            if normalize(x) not in echo][:settings.max_lessons]


def is_generic(text: str) -> bool:
    t = normalize(text)
    return any(g in t for g in GENERIC) and len(t.split()) <= 12


class Playbook:
    def __init__(self, path: Path | None):
        self.path = Path(path) if path else None
        self.lessons: list[Lesson] = []
        if self.path is not None and self.path.exists():
            self.lessons = self._read(self.path)

    @staticmethod
    def _read(path: Path) -> list[Lesson]:
        lessons, problems = [], []
        names = {f for f in Lesson.__dataclass_fields__}
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
                if not isinstance(obj, dict) or not names >= set(obj) or not {"id", "text"} <= set(obj):
                    raise ValueError(f"keys {sorted(obj) if isinstance(obj, dict) else type(obj).__name__}")
                lesson = Lesson(**obj)
                lesson.helpful, lesson.harmful = int(lesson.helpful), int(lesson.harmful)
                lessons.append(lesson)
            except (ValueError, TypeError) as e:
                problems.append((n, f"not a lesson ({e})"))
        if problems:
            good = path.with_name(path.name + ".good")
            hint = f"; the last good copy is {good}" if good.exists() else ""
            raise DataError(path, problems + [(0, f"fix the line or move the file aside{hint}")], PLAYBOOK_SHAPE,
                            refused="playbook not loaded")
        return lessons

    def save(self) -> None:
        if self.path is None:
            return
        text = "".join(json.dumps(asdict(lesson), ensure_ascii=False) + "\n" for lesson in self.lessons)
        atomic_write_text(self.path, text)
        good = self.path.with_name(self.path.name + ".good")
        shutil.copyfile(self.path, good)  # the copy a user restores from after a bad hand edit

    def top(self, k: int, *, task: str, domain: str) -> list[Lesson]:
        """The k best lessons of this task (else of its domain, else the live monitor's): by score, then the most
        recently updated."""
        mine = ([x for x in self.lessons if x.task == task] or [x for x in self.lessons if domain and x.domain == domain]
                or [x for x in self.lessons if x.task == LIVE])
        return sorted(mine, key=lambda x: (x.score, x.updated_at), reverse=True)[:k]

    def count(self, shown: list[Lesson], right: bool) -> None:
        stamp = now()
        for lesson in shown:
            if right:
                lesson.helpful += 1
            else:
                lesson.harmful += 1
            lesson.updated_at = stamp

    def curate(self, texts: list[str], *, task: str, domain: str, sample_id: str, threshold: float,
               max_entries: int) -> dict:
        """New lessons in: generic ones dropped, near-duplicates merged, the playbook pruned. Counts of each."""
        counts = {"added": 0, "merged": 0, "generic": 0, "pruned": 0}
        for text in texts:
            if is_generic(text):
                counts["generic"] += 1
                continue
            same = max((x for x in self.lessons if x.task == task), default=None,
                       key=lambda x: difflib.SequenceMatcher(None, normalize(x.text), normalize(text)).ratio())
            if same is not None and difflib.SequenceMatcher(None, normalize(same.text), normalize(text)).ratio() >= threshold:
                same.updated_at = now()  # merged: a new lesson's counters are 0, so only its recency adds
                counts["merged"] += 1
                continue
            self.lessons.append(Lesson(f"L{uuid.uuid4().hex[:10]}", text, domain, task, source_sample_id=sample_id))
            counts["added"] += 1
        if len(self.lessons) > max_entries:
            keep = sorted(self.lessons, key=lambda x: (x.score, x.updated_at), reverse=True)[:max_entries]
            counts["pruned"] = len(self.lessons) - len(keep)
            self.lessons = [x for x in self.lessons if x in keep]
        return counts
