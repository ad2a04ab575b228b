"""Small text helpers shared by the matcher and the error codes: numbers, words, final answers."""
from __future__ import annotations

import difflib
import re

NUMBER = re.compile(r"(?<![\w.])[-+]?\$?\d[\d,]*(?:\.\d+)?%?(?![\w])|(?<![\w.])[-+]?\$?\.\d+%?")
STOPWORDS = frozenset(
    "a an and are as at be but by for from has have he her his how i in is it its of on or our she so that the "
    "their them then there these they this to was we were what when where which who why will with you your "
    "does did do done not no yes can could would should than more most very just also into about over after "
    "before because been being each other some such only own same too any all both few many much".split()
)
LIST_LINE = re.compile(r"^\s*(?:[-*•]|\d+[.)])\s+\S", re.M)
FINAL_MARKERS = (
    re.compile(r"####\s*(.+?)\s*$", re.S),
    re.compile(r"\\boxed\{([^{}]+)\}"),
    re.compile(r"(?:the )?(?:final )?answer is[:\s]*\$?\s*([^\n]+?)\s*\.?\s*$", re.I | re.S),
)


def to_number(token: str) -> float | None:
    """'$1,234.50' -> 1234.5; '42%' -> 42.0; None when it is not a number."""
    cleaned = token.strip().rstrip(".").replace(",", "").replace("$", "").rstrip("%")
    try:
        return float(cleaned)
    except ValueError:
        return None


def numbers(text: str) -> list[float]:
    out = []
    for m in NUMBER.finditer(text):
        value = to_number(m.group())
        if value is not None:
            out.append(value)
    return out


def words(text: str) -> list[str]:
    return re.findall(r"[a-z0-9]+(?:'[a-z]+)?", text.lower())


def content_words(text: str) -> set[str]:
    """Lower-case words that carry meaning: alphabetic, 4+ letters, not stopwords."""
    return {w for w in words(text) if len(w) >= 4 and w.isalpha() and w not in STOPWORDS}


def normalize(text: str) -> str:
    return " ".join(text.lower().split()).strip(" .!?;:")


def final_answer(text: str) -> str:
    """The stated final answer: after '####', inside \\boxed{}, after 'the answer is'; else the whole text."""
    for pattern in FINAL_MARKERS:
        found = pattern.findall(text)
        if found:
            return found[-1].strip()
    return text.strip()


def similarity(expected: str, predicted: str) -> int:
    """Word-sequence similarity in percent (difflib ratio over lower-case words)."""
    return round(100 * difflib.SequenceMatcher(None, words(expected), words(predicted), autojunk=False).ratio())
