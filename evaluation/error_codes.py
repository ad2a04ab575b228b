"""Programmatic error codes for a wrong answer, computed against the golden answer.

Deterministic: the same (question, expected, predicted, tokenizer) always gives
the same codes, in the order of RULES. A right answer has no codes. Lengths are
counted in the model's tokens when a tokenizer is given, in words otherwise.
`RULES` documents each code; the README table is printed from it
(`python -m selfcorrect rules`).
"""
from __future__ import annotations

import difflib
import re
from collections import Counter

from .matching import answer_kind, find_json, match_answer
from .text import LIST_LINE, content_words, final_answer, normalize, numbers, similarity, words

SHORT_RATIO, LONG_RATIO = 0.8, 1.25  # LENGTH_SHORT/LONG_BY_X fire outside this band
BRIEF_RATIO, VERBOSE_RATIO = 0.5, 2.0  # TOO_BRIEF / TOO_VERBOSE
MIN_LENGTH_GAP = 2  # a difference of 1 token is noise, never a code
VERY_DIFFERENT, CLOSE = 30, 70  # similarity percentages
OFF_TOPIC_OVERLAP = 0.1
KEY_TERMS_MISSING_SHARE = 0.5

RULES = [
    ("LENGTH_SHORT_BY_X_TOKENS", f"prediction shorter than {SHORT_RATIO:.0%} of the expected length and by at least {MIN_LENGTH_GAP}; X = the difference", "expected 12 tokens, got 4 -> LENGTH_SHORT_BY_8_TOKENS"),
    ("LENGTH_LONG_BY_X_TOKENS", f"prediction longer than {LONG_RATIO:.0%} of the expected length and by at least {MIN_LENGTH_GAP}; X = the difference", "expected 4, got 10 -> LENGTH_LONG_BY_6_TOKENS"),
    ("TOO_BRIEF", f"prediction shorter than {BRIEF_RATIO:.0%} of the expected length", "expected 12, got 4"),
    ("TOO_VERBOSE", f"prediction longer than {VERBOSE_RATIO:.0%} of the expected length", "expected 4, got 10"),
    ("VERY_DIFFERENT_CONTENT", f"word-sequence similarity below {VERY_DIFFERENT}%", "'Paris is the capital' vs 'I like trains'"),
    ("SIMILARITY_X%", "always present on a wrong answer; X = word-sequence similarity (difflib ratio) in percent", "SIMILARITY_45%"),
    ("CLOSE_BUT_INACCURATE", f"similarity at least {CLOSE}% but the answer does not match", "'2 + 3 = 6' vs '2 + 3 = 5'"),
    ("PRIMARY_ANSWER_MISSING", "the expected final answer (after ####, in \\boxed{}, after 'the answer is', else the whole answer) does not appear in the prediction", "expected 'Paris', prediction never says it"),
    ("OFF_TOPIC_CONTENT", f"at least 3 content words and fewer than {OFF_TOPIC_OVERLAP:.0%} of them appear in the question or expected answer", "question about France, answer about trains"),
    ("MISSING_NUMBERS", "the expected answer has numbers and the prediction has none", "expected '42', got 'I do not know'"),
    ("NUMERIC_ERROR_MISSING_X_VALUES", "X = numbers of the expected answer absent from the prediction (counted with repeats), when the prediction has numbers", "expected '3 + 4 = 7', got '3 + 4 = 8' -> MISSING_1"),
    ("NUMERIC_ERROR_EXTRA_X_VALUES", "X = numbers in the prediction found neither in the expected answer nor in the question", "expected '7', got '8' -> EXTRA_1"),
    ("FIRST_WRONG_VALUE_X", "only with experimental.first_wrong_value; X = the first number of the prediction where its numbers part from the expected answer's (aligned in order), numbers of the question passed over; names what to fix, not the fix", "expected '3 + 4 = 7. 7 + 5 = 12', got '3 + 4 = 8. 8 + 5 = 13' -> FIRST_WRONG_VALUE_8"),
    ("STRUCTURE_SHOULD_BE_LIST", "expected answer has 2+ list lines (-, *, 1.) and the prediction has none", "expected '- a\\n- b', got 'a and b'"),
    ("STRUCTURE_SHOULD_BE_PROSE", "prediction has 2+ list lines and the expected answer has none", "expected 'a and b', got '- a\\n- b'"),
    ("MISSING_CODE_BLOCK", "expected answer has a ``` code block and the prediction has none", "expected '```py ...```', got 'use print'"),
    ("FORMAT_SHOULD_BE_JSON", "expected answer is a JSON object or array and the prediction holds none", "expected '{\"a\": 1}', got 'a is 1'"),
    ("MISSING_KEY_CONCEPTS_X_TERMS", f"expected answer has 2+ content words (4+ letters, not stopwords) and at least {KEY_TERMS_MISSING_SHARE:.0%} are absent from the prediction; X = how many", "expected 'photosynthesis uses sunlight', got 'plants grow' -> MISSING_KEY_CONCEPTS_2_TERMS"),
]

def count_length(text: str, tokenizer=None) -> int:
    if tokenizer is not None:
        return len(tokenizer(text, add_special_tokens=False)["input_ids"])
    return len(text.split())


def _length_codes(expected: str, predicted: str, tokenizer) -> list[str]:
    e, p = count_length(expected, tokenizer), count_length(predicted, tokenizer)
    codes = []
    if p < SHORT_RATIO * e and e - p >= MIN_LENGTH_GAP:
        codes.append(f"LENGTH_SHORT_BY_{e - p}_TOKENS")
    if p > LONG_RATIO * e and p - e >= MIN_LENGTH_GAP:
        codes.append(f"LENGTH_LONG_BY_{p - e}_TOKENS")
    if p < BRIEF_RATIO * e and e - p >= MIN_LENGTH_GAP:
        codes.append("TOO_BRIEF")
    if p > VERBOSE_RATIO * e and p - e >= MIN_LENGTH_GAP:
        codes.append("TOO_VERBOSE")
    return codes


def _content_codes(question: str, expected: str, predicted: str) -> list[str]:
    sim = similarity(expected, predicted)
    codes = []
    if sim < VERY_DIFFERENT:
        codes.append("VERY_DIFFERENT_CONTENT")
    codes.append(f"SIMILARITY_{sim}%")
    if sim >= CLOSE:
        codes.append("CLOSE_BUT_INACCURATE")
    primary = normalize(final_answer(expected))
    if primary and not re.search(rf"(?<!\w){re.escape(primary)}(?!\w)", normalize(predicted)):
        codes.append("PRIMARY_ANSWER_MISSING")
    said = content_words(predicted)
    if len(said) >= 3 and len(said & (content_words(question) | content_words(expected))) < OFF_TOPIC_OVERLAP * len(said):
        codes.append("OFF_TOPIC_CONTENT")
    return codes


def _numeric_codes(question: str, expected: str, predicted: str, first_wrong_value: bool) -> list[str]:
    in_expected, in_predicted, in_question = numbers(expected), numbers(predicted), numbers(question)
    want, got = Counter(in_expected), Counter(in_predicted)
    codes = []
    if want and not got:
        codes.append("MISSING_NUMBERS")
    elif want:
        missing = sum((want - got).values())
        if missing:
            codes.append(f"NUMERIC_ERROR_MISSING_{missing}_VALUES")
    allowed = set(want) | set(in_question)
    extra = sum(n for value, n in got.items() if value not in allowed)
    if extra:
        codes.append(f"NUMERIC_ERROR_EXTRA_{extra}_VALUES")
    first_wrong = _first_wrong_value(in_expected, in_predicted, set(in_question)) if first_wrong_value else None
    if first_wrong is not None:
        codes.append(f"FIRST_WRONG_VALUE_{int(first_wrong) if first_wrong.is_integer() else first_wrong}")
    return codes


def _first_wrong_value(want: list[float], got: list[float], given: set[float]) -> float | None:
    """Where a chain of numbers went wrong: the first predicted number in a stretch that departs from
    the expected sequence. A wrong step makes every later number wrong too, so only the first one says
    where to look. Numbers of the question (`given`) are passed over: restating it is not an error."""
    for tag, _, _, j1, j2 in difflib.SequenceMatcher(None, want, got, autojunk=False).get_opcodes():
        if tag != "equal":
            wrong = next((value for value in got[j1:j2] if value not in given), None)
            if wrong is not None:
                return wrong
    return None


def _structure_codes(expected: str, predicted: str) -> list[str]:
    codes = []
    e_list, p_list = len(LIST_LINE.findall(expected)) >= 2, len(LIST_LINE.findall(predicted)) >= 2
    if e_list and not p_list:
        codes.append("STRUCTURE_SHOULD_BE_LIST")
    if p_list and not e_list:
        codes.append("STRUCTURE_SHOULD_BE_PROSE")
    if "```" in expected and "```" not in predicted:
        codes.append("MISSING_CODE_BLOCK")
    if answer_kind(expected) == "json" and find_json(predicted) is None:
        codes.append("FORMAT_SHOULD_BE_JSON")
    return codes


def _concept_codes(expected: str, predicted: str) -> list[str]:
    key = content_words(expected)
    missing = key - content_words(predicted) - set(words(predicted))
    if len(key) >= 2 and missing and len(missing) >= KEY_TERMS_MISSING_SHARE * len(key):
        return [f"MISSING_KEY_CONCEPTS_{len(missing)}_TERMS"]
    return []


def error_codes(question: str, expected: str, predicted: str, *, tokenizer=None, matched: bool | None = None,
                first_wrong_value: bool = False) -> list[str]:
    """The codes for a prediction; [] when it matches the expected answer. FIRST_WRONG_VALUE_X is opt-in
    (`first_wrong_value`): measured, it did not help the second attempt, and first attempts on sums were lower."""
    if matched is None:
        matched = match_answer(expected, predicted, question=question).matched
    if matched:
        return []
    return (_length_codes(expected, predicted, tokenizer) + _content_codes(question, expected, predicted)
            + _numeric_codes(question, expected, predicted, first_wrong_value) + _structure_codes(expected, predicted)
            + _concept_codes(expected, predicted))


def code_family(code: str) -> str:
    """'LENGTH_SHORT_BY_5_TOKENS' -> 'LENGTH_SHORT_BY_X_TOKENS', for counting codes by kind."""
    return re.sub(r"_-?\d+(?:\.\d+)?(?=_|%|$)", "_X", code)


