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
BOXED = re.compile(r"\\boxed\{([^{}]+)\}")
ANSWER_IS = re.compile(r"(?:the )?(?:final )?answer is[:\s]*\$?\s*", re.I)


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


def stated_answer(text: str) -> str | None:
    """The final answer the text states, or None where it states none: all after the first '####'; else inside
    the last \\boxed{}; else after the first 'the answer is' whose answer ends the text on one line (a full stop
    after it dropped). Plain string scans, linear in the text: a golden answer is user input, and a regular
    expression with nested repeats can take hours on a line of spaces."""
    at = text.find("####")
    if at >= 0:
        return text[at + 4:].strip()
    boxed = BOXED.findall(text)
    if boxed:
        return boxed[-1].strip()
    for m in ANSWER_IS.finditer(text):
        rest = text[m.end():].rstrip()
        if rest and "\n" not in rest:
            return (rest[:-1] if rest.endswith(".") else rest).strip()
    return None


def final_answer(text: str) -> str:
    """The stated final answer (stated_answer); else the whole text."""
    stated = stated_answer(text)
    return text.strip() if stated is None else stated


def similarity(expected: str, predicted: str) -> int:
    """Word-sequence similarity in percent (difflib ratio over lower-case words)."""
    return round(100 * difflib.SequenceMatcher(None, words(expected), words(predicted), autojunk=False).ratio())
