"""The three training records made from one wrong answer, in the spec's order.

1. initial attempt: question -> golden answer (the wrong answer rides along as
   "rejected" for preference training, unless `experimental.reject_initial_attempts`
   is off; it is never a training target);
2. self-evaluation: question + previous answer + error indicators -> a plain-words
   explanation of what was wrong, derived from the codes;
3. correction: question + previous answer + error indicators -> golden answer (the wrong answer
   rides along as "rejected" here too: `experimental.unlikelihood_weight` pushes down its first wrong token).

With `experimental.confirm_right_answers`, a right answer also gives one
confirmation record: the correction prompt with no error indicators -> golden
answer. Trained only on triples, the model never sees "no errors" feedback, and
on a second attempt it changes right answers as readily as wrong ones.
With `experimental.confirm_golden_answers`, a wrong answer also gives a
confirmation of its golden answer (shown as the previous answer, no indicators),
so the model sees "none -> keep" once for every "codes -> change"; with
`experimental.reject_golden_confirmations`, that confirmation carries the wrong
answer as "rejected" too (keep the golden answer rather than go back to the wrong one).
"""
from __future__ import annotations

import re

from core.config import ExperimentalSection, TemplatesSection
from core.templates import render

KINDS = ("initial_attempt", "self_evaluation", "correction")  # the triple of a wrong answer
CONFIRMATION = "confirmation"  # the record of a right answer
RECORD_KINDS = (*KINDS, CONFIRMATION)

# code pattern -> sentence; {x} is the number in the code
_EXPLANATIONS = [
    (r"LENGTH_SHORT_BY_(\d+)_TOKENS", "it was too short, by about {x} tokens"),
    (r"LENGTH_LONG_BY_(\d+)_TOKENS", "it was too long, by about {x} tokens"),
    (r"TOO_BRIEF", "it was far too brief to be a complete answer"),
    (r"TOO_VERBOSE", "it was far more verbose than needed"),
    (r"VERY_DIFFERENT_CONTENT", "its content was very different from a correct answer"),
    (r"CLOSE_BUT_INACCURATE", "it was close, but not accurate"),
    (r"PRIMARY_ANSWER_MISSING", "it did not state the required final answer"),
    (r"OFF_TOPIC_CONTENT", "it drifted off the topic of the question"),
    (r"MISSING_NUMBERS", "it gave no numbers, but the answer needs them"),
    (r"NUMERIC_ERROR_MISSING_(\d+)_VALUES", "{x} of the values the answer needs were missing or wrong"),
    (r"NUMERIC_ERROR_EXTRA_(\d+)_VALUES", "it contained {x} value(s) that do not belong in the answer"),
    (r"FIRST_WRONG_VALUE_(-?[\d.]+)", "the first value that went wrong was {x}"),
    (r"STRUCTURE_SHOULD_BE_LIST", "it should have been a list"),
    (r"STRUCTURE_SHOULD_BE_PROSE", "it should have been prose, not a list"),
    (r"MISSING_CODE_BLOCK", "it lacked the code block the answer needs"),
    (r"FORMAT_SHOULD_BE_JSON", "it should have been valid JSON"),
    (r"MISSING_KEY_CONCEPTS_(\d+)_TERMS", "it left out {x} key concept(s) of the answer"),
]


def explain(codes: list[str]) -> str:
    """The self-evaluation response: what the codes say was wrong, in plain words."""
    sentences = []
    for pattern, sentence in _EXPLANATIONS:
        for code in codes:
            m = re.fullmatch(pattern, code)
            if m:
                sentences.append(sentence.format(x=m.group(1) if m.groups() else ""))
    similarity = next((c for c in codes if c.startswith("SIMILARITY_")), None)
    if not sentences:
        sentences.append("it did not match the correct answer")
    text = "Looking at the error indicators, my previous answer was wrong: " + "; ".join(sentences) + "."
    if similarity:
        text += f" Its similarity to a correct answer was only {similarity[len('SIMILARITY_'):]}."
    return text + " I need to reconsider the question and answer it again carefully."


def build_triple(*, question: str, golden: str, predicted: str, codes: list[str], step: int, source: dict,
                 templates: TemplatesSection | None = None) -> list[dict]:
    """The three records for one wrong answer."""
    t = templates or TemplatesSection()
    common = {"error_codes": list(codes), "step": step, "source": dict(source)}
    return [
        {"prompt": question, "response": golden, "rejected": predicted, "kind": "initial_attempt", **common},
        {"prompt": render(t.self_evaluation, question=question, previous=predicted, codes=codes),
         "response": explain(codes), "kind": "self_evaluation", **common},
        _correction(t, question=question, golden=golden, predicted=predicted, codes=codes, kind="correction",
                    common=common),
    ]


def _correction(t: TemplatesSection, *, question, golden, predicted, codes, kind, common) -> dict:
    """The correction prompt (question, previous answer, error indicators) -> the golden answer; a wrong
    previous answer rides along as "rejected" (repeating it is the mistake the correction must avoid)."""
    record = {"prompt": render(t.correction, question=question, previous=predicted, codes=codes),
              "response": golden, "kind": kind, **common}
    return {**record, "rejected": predicted} if codes else record


def build_confirmation(*, question: str, golden: str, predicted: str, step: int, source: dict,
                       templates: TemplatesSection | None = None) -> dict:
    """The record for one right answer: shown it with no error indicators, the model keeps the answer."""
    common = {"error_codes": [], "step": step, "source": dict(source)}
    return _correction(templates or TemplatesSection(), question=question, golden=golden, predicted=predicted,
                       codes=[], kind=CONFIRMATION, common=common)


def records_for_answer(*, question: str, golden: str, predicted: str, matched: bool, codes: list[str], step: int,
                       source: dict, templates: TemplatesSection, experimental: ExperimentalSection) -> list[dict]:
    """The training records of one judged answer: a wrong answer's triple; a right answer gives nothing. The
    `experimental` switches add to that: the correction `correction_repeats` times, a golden confirmation with
    `confirm_golden_answers`, a right answer's confirmation with `confirm_right_answers`."""
    x = experimental
    if matched:
        return [build_confirmation(question=question, golden=golden, predicted=predicted, step=step, source=source,
                                   templates=templates)] if x.confirm_right_answers else []
    records = build_triple(question=question, golden=golden, predicted=predicted, codes=codes, step=step,
                           source=source, templates=templates)
    if not x.reject_initial_attempts:
        del records[0]["rejected"]  # the initial attempt is the triple's first
    records += [records[-1]] * (x.correction_repeats - 1)  # the correction is the triple's last
    if x.confirm_golden_answers:
        keep = build_confirmation(question=question, golden=golden, predicted=golden, step=step, source=source,
                                  templates=templates)
        records.append({**keep, "rejected": predicted} if x.reject_golden_confirmations else keep)
    return records
