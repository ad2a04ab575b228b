"""Is a predicted answer right? First the kind of the golden answer, then the comparison that fits it.

Kinds, decided from the golden answer alone, in this order:
- `code`: it has a ``` code block; the prediction's code blocks must equal it as normalised text
  (whitespace runs folded, blank lines dropped). A prediction without a block does not match.
- `json`: it parses as a JSON object or array; the first JSON object or array in the prediction must equal
  it as parsed structure (key order and spacing do not matter).
- `list`: 2+ list lines (`-`, `*`, `1.`); the prediction's items (its list lines, else its final answer split at
  commas, semicolons and "and") must be the same set, or the same sequence when the list is numbered.
- `math`: its final answer (after `####`, in `\\boxed{}`, after "the answer is", else the whole answer) is a
  number or a math expression; the prediction's final answer (or, unmarked, its last number) must be equal
  as a number, or equivalent through math-verify. Never any other number in the prediction, and for a number
  never a sum or product left undone (the question restated is not its answer).
- `yes_no`: yes, no, true or false; the prediction's final answer, or its first word, must say the same.
- `choice`: a single option letter (A to J, as `B`, `(B)`, `B)`); the prediction's chosen letter must equal it.
- `span`: a short answer (a name, a word, a date; at most 5 words); SQuAD-style: after lower-casing and dropping
  punctuation, articles and extra whitespace, it equals the prediction's final answer or appears in the
  prediction as whole words.
- `prose`: anything else; it matches when the prediction (not a list) contains it, or has all its numbers and
  covers at least PROSE_COVERAGE of its key concepts (content words not already in the question) with at
  least PROSE_SIMILARITY percent word-sequence similarity (70 % when it has no key concept).
An exact match after normalising case, whitespace and trailing punctuation always matches.
"""
from __future__ import annotations

import json
import re
import string
import threading
from dataclasses import dataclass

from .text import (LIST_LINE, content_words, final_answer, normalize, numbers, similarity, stated_answer, to_number,
                   words)

KINDS = ("code", "json", "list", "math", "yes_no", "choice", "span", "prose")
SPAN_MAX_WORDS = 5
PROSE_COVERAGE, PROSE_SIMILARITY = 0.75, 40
CODE_BLOCK = re.compile(r"```[^\n`]*\n?(.*?)```", re.S)
LIST_MARK = re.compile(r"^\s*(?:[-*•]|(\d+)[.)])\s+", re.M)
CHOICE = re.compile(r"\(?([A-J])\)?[.):]?")
YES_NO = {"yes": "yes", "no": "no", "true": "yes", "false": "no"}


@dataclass(frozen=True)
class Match:
    matched: bool
    reason: str
    kind: str = "prose"


# -- the golden answer's kind ---------------------------------------------------------------------------

def answer_kind(expected: str) -> str:
    """Which of KINDS the golden answer is (see the module docstring for the order)."""
    text = expected.strip()
    if CODE_BLOCK.search(text):
        return "code"
    if isinstance(_json_value(text), (dict, list)):
        return "json"
    if len(LIST_LINE.findall(text)) >= 2:
        return "list"
    primary = final_answer(text)
    if _is_math(primary):
        return "math"
    if normalize(primary) in YES_NO:
        return "yes_no"
    if CHOICE.fullmatch(primary.strip()):
        return "choice"
    if len(words(primary)) <= SPAN_MAX_WORDS and not re.search(r"[.!?;]\s", primary):
        return "span"
    return "prose"


def _is_math(text: str) -> bool:
    """A number, or an expression of numbers and operators (`1/2`, `\\frac{1}{2}`, `2\\sqrt{3}`, `x^2 + 1`)."""
    body = text.strip().rstrip(".").strip("$").strip()
    if not body:
        return False
    if to_number(body) is not None:
        return True
    if "\\" in body or re.search(r"\d\s*[+\-*/^]\s*[\d(]|\d\s*[a-z]\b|[a-z]\^\d", body):
        return len(words(body)) <= 6 and not re.search(r"[a-z]{4,}\s+[a-z]{4,}", body.lower())
    return False


# -- reading a prediction ---------------------------------------------------------------------------------

def _json_value(text: str):
    """The text as JSON (a code fence around it is allowed), or None."""
    body = text.strip()
    fenced = CODE_BLOCK.fullmatch(body)
    if fenced:
        body = fenced.group(1).strip()
    try:
        return json.loads(body)
    except (ValueError, RecursionError):  # not JSON, a number too long to convert, or nested too deeply
        return None


def find_json(text: str):
    """The first JSON object or array in the text (the whole text, a fenced block, or one inside prose); None."""
    whole = _json_value(text)
    if isinstance(whole, (dict, list)):
        return whole
    decoder = json.JSONDecoder()
    for m in re.finditer(r"[{\[]", text):
        try:
            value, _ = decoder.raw_decode(text, m.start())
        except ValueError:
            continue
        if isinstance(value, (dict, list)):
            return value
    return None


def code_text(text: str) -> list[str]:
    """The code blocks' lines, normalised: whitespace runs folded, blank lines dropped."""
    blocks = CODE_BLOCK.findall(text)
    return [" ".join(line.split()) for block in blocks for line in block.splitlines() if line.strip()]


def span_normalize(text: str) -> str:
    """SQuAD's normalisation: lower case, no punctuation, no articles, single spaces."""
    text = "".join(" " if c in string.punctuation else c for c in text.lower())
    return " ".join(w for w in text.split() if w not in ("a", "an", "the"))


def list_items(text: str) -> tuple[list[str], bool]:
    """(items, numbered): the list lines' items; else the final answer split at , ; and 'and'."""
    lines = [line for line in text.splitlines() if LIST_MARK.match(line)]
    if len(lines) >= 2:
        numbered = all(LIST_MARK.match(line).group(1) for line in lines)
        return [span_normalize(LIST_MARK.sub("", line, count=1)) for line in lines], numbered
    parts = re.split(r",|;|\band\b|\n", final_answer(text))
    return [p for p in (span_normalize(part) for part in parts) if p], False


def _predicted_final(predicted: str) -> str:
    """The prediction's stated final answer; unmarked, its last line."""
    if stated_answer(predicted) is not None:
        return final_answer(predicted)
    lines = [line for line in predicted.strip().splitlines() if line.strip()]
    return lines[-1].strip() if lines else ""


def _predicted_final_number(predicted: str) -> float | None:
    if stated_answer(predicted) is not None:
        value = to_number(final_answer(predicted))
        if value is not None:
            return value
        found = numbers(final_answer(predicted))
        return found[-1] if found else None
    found = numbers(predicted)
    return found[-1] if found else None


def _math_equivalent(expected: str, predicted: str) -> bool:
    """math-verify's timeouts use signal.alarm, which works only in the main thread."""
    try:
        from math_verify import parse, verify
    except ImportError:
        return False
    in_main = threading.current_thread() is threading.main_thread()
    timeout = 5 if in_main else None
    def latex(text: str) -> str:  # math-verify reads LaTeX commands only between delimiters
        return f"${text}$" if "\\" in text and "$" not in text else text

    try:
        gold = parse(latex(expected), parsing_timeout=timeout)
        pred = parse(latex(predicted), parsing_timeout=timeout)
        return bool(gold and pred and verify(gold, pred, timeout_seconds=timeout))
    except Exception:  # math-verify raises on odd input; that is "not shown equivalent"
        return False


def _chosen_letter(predicted: str) -> str | None:
    """The option letter a prediction chose: its stated answer `(B)`, `B)`, `B.` or `B`, else 'option B' or
    'answer is B' in its text. A bare capital followed by a word ("I would...") is not a choice."""
    stated = final_answer(predicted) if stated_answer(predicted) is not None else predicted.strip()
    m = re.match(r"\(([A-J])\)|([A-J])(?:[.):]|$)", stated)
    if m:
        return m.group(1) or m.group(2)
    m = re.search(r"\b(?:answer|option|choice)\s*(?:is)?\s*:?\s*\(?([A-J])\b\)?", predicted, re.I)
    return m.group(1).upper() if m else None


# -- the comparison per kind -----------------------------------------------------------------------------

# a sum, difference or product of two numbers: a computation left undone ("43 + 81", "3 \times 4"); a fraction or a
# power is a way to write a number ("1/2", "2^10")
UNDONE = re.compile(r"\d\s*(?:[-+*×·]|\\times|\\cdot)\s*\(?\s*\$?\d")


def _match_math(expected: str, predicted: str) -> tuple[bool, str]:
    primary = final_answer(expected)
    expected_number = to_number(primary)
    got = _predicted_final_number(predicted)
    if expected_number is not None and got is not None \
            and abs(got - expected_number) <= 1e-9 * max(1.0, abs(expected_number)):
        return True, f"numeric match: final answer {got:g} == {expected_number:g}"
    final = _predicted_final(predicted)
    if expected_number is not None:
        final = final.rsplit("=", 1)[-1].strip()  # what a worked line came to
        if not final or UNDONE.search(final):
            # math-verify would evaluate it: a prediction restating the question's sum would "equal" its answer
            return False, (f"final answer {final[:40] or _predicted_final(predicted)[-40:]!r} is a computation left "
                           f"undone, not the number {expected_number:g}")
    if _math_equivalent(primary, final):
        return True, "math-verify: equivalent"
    shown = "none" if got is None else f"{got:g}"
    want = f"{expected_number:g}" if expected_number is not None else repr(primary[:40])
    return False, f"final answer {shown} != expected {want}"


def _match_yes_no(expected: str, predicted: str) -> tuple[bool, str]:
    want = YES_NO[normalize(final_answer(expected))]
    stated = final_answer(predicted) if stated_answer(predicted) is not None else predicted
    first = next(iter(words(stated)), "")
    got = YES_NO.get(first) or YES_NO.get(normalize(stated))
    return got == want, f"said {got or 'neither yes nor no'}, expected {want}"


def _match_choice(expected: str, predicted: str) -> tuple[bool, str]:
    want = CHOICE.fullmatch(final_answer(expected).strip()).group(1)
    got = _chosen_letter(predicted)
    return got == want, f"chose {got or 'no option'}, expected {want}"


def _match_span(expected: str, predicted: str) -> tuple[bool, str]:
    want = span_normalize(final_answer(expected))
    if want and span_normalize(_predicted_final(predicted)) == want:
        return True, f"expected answer {final_answer(expected)!r} is the final answer"
    if want and re.search(rf"(?<!\w){re.escape(want)}(?!\w)", span_normalize(predicted)):
        return True, f"expected answer {final_answer(expected)!r} found in prediction"
    return False, f"expected answer {final_answer(expected)[:60]!r} not found"


def _match_list(expected: str, predicted: str) -> tuple[bool, str]:
    want, numbered = list_items(expected)
    got, _ = list_items(predicted)
    if numbered:
        return got == want, f"{len(got)} items in order against {len(want)}" + ("" if got == want else ", not the same")
    missing, extra = set(want) - set(got), set(got) - set(want)
    if not missing and not extra:
        return True, f"the same {len(set(want))} items"
    return False, f"{len(missing)} item(s) missing, {len(extra)} extra"


def _match_json(expected: str, predicted: str) -> tuple[bool, str]:
    want, got = _json_value(expected.strip()), find_json(predicted)
    if got is None:
        return False, "no JSON object or array in the prediction"
    return got == want, "the same JSON structure" if got == want else "JSON differs from the expected structure"


def _match_code(expected: str, predicted: str) -> tuple[bool, str]:
    got = code_text(predicted)
    if not got:
        return False, "no code block in the prediction"
    return got == code_text(expected), "the same code" if got == code_text(expected) else "the code differs"


def _match_prose(expected: str, predicted: str, question: str) -> tuple[bool, str]:
    if len(LIST_LINE.findall(predicted)) >= 2:
        return False, "a list where prose was expected"
    facts = set(numbers(expected))
    extra = set(numbers(predicted)) - facts - set(numbers(question)) if facts else set()
    if extra:  # numbers in prose are its facts: every expected one and more is not the expected answer
        return False, f"the prediction states {len(extra)} number(s) the expected answer does not ({min(extra):g})"
    if normalize(expected) in normalize(predicted):
        return True, "expected answer found in prediction"
    lost = set(numbers(expected)) - set(numbers(predicted))
    if lost:  # numbers in prose are its facts
        return False, f"the expected answer's number {min(lost):g} is not in the prediction"
    key = content_words(expected) - content_words(question)
    sim = similarity(expected, predicted)
    if not key:
        return sim >= 70, f"similarity {sim}%"
    covered = len(key & (content_words(predicted) | set(words(predicted)))) / len(key)
    ok = covered >= PROSE_COVERAGE and sim >= PROSE_SIMILARITY
    return ok, f"key concepts {covered:.0%} covered, similarity {sim}%"


def match_answer(expected: str, predicted: str, *, question: str = "") -> Match:
    """Right or wrong, why, and the golden answer's kind."""
    kind = answer_kind(expected)
    if not predicted.strip():
        return Match(False, "empty prediction", kind)
    if normalize(expected) == normalize(predicted):
        return Match(True, "exact match", kind)
    if kind == "prose":
        ok, reason = _match_prose(expected, predicted, question)
    else:
        ok, reason = {"code": _match_code, "json": _match_json, "list": _match_list, "math": _match_math,
                      "yes_no": _match_yes_no, "choice": _match_choice, "span": _match_span}[kind](expected, predicted)
    return Match(ok, reason, kind)
