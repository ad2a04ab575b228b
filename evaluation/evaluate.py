"""Answering QA items and judging the answers: shared by the live monitor and `train.py --eval`.

First attempt: the question as asked. Second attempt (the published measure of
self-correction, Δ(t1, t2) in the SCoRe paper): wrong answers are asked again
with the correction prompt and their error codes; a sample of right answers gets
the same prompt with no codes, to count right -> wrong changes.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from core.qa import QAItem
from core.templates import render
from inference.sampling import generate_answers

from .error_codes import error_codes
from .matching import answer_kind, match_answer


@dataclass
class EvalResult:
    """One question as answered and judged at an evaluation."""

    question: str
    golden: str
    predicted: str
    matched: bool
    codes: list[str] = field(default_factory=list)
    source: dict = field(default_factory=dict)  # {"id", "file"}
    kind: str = ""  # the golden answer's kind (evaluation.matching.KINDS)


@dataclass
class Evaluation:
    results: list[EvalResult]
    reasons: list[str]
    second: dict[int, tuple[str, bool]] = field(default_factory=dict)  # index -> (answer, matched)
    right_probe: dict[int, tuple[str, bool]] = field(default_factory=dict)  # right answers re-asked, no codes

    @property
    def n(self) -> int:
        return len(self.results)

    @property
    def accuracy(self) -> float:
        return sum(r.matched for r in self.results) / self.n if self.n else 0.0

    @property
    def wrong_to_right(self) -> int:
        return sum(ok for _, ok in self.second.values())

    @property
    def right_to_wrong(self) -> int:
        return sum(not ok for _, ok in self.right_probe.values())

    @property
    def second_attempt_accuracy(self) -> float | None:
        """Accuracy of the second attempt: right answers kept plus wrong ones fixed. Right answers not
        re-asked (the live monitor probes a sample) are counted at the probed rate of keeping."""
        if not self.second and not self.right_probe and self.accuracy < 1.0:
            return None
        right = sum(r.matched for r in self.results)
        kept = right * (1 - self.right_to_wrong / len(self.right_probe)) if self.right_probe else right
        return (kept + self.wrong_to_right) / self.n if self.n else 0.0

    def per_item(self) -> list[dict]:
        """Each item's answers and verdicts; `second` is None where it was not re-asked. Two adapters' files
        on the same items can be compared item by item (a paired comparison)."""
        rows = []
        for k, r in enumerate(self.results):
            again = self.second.get(k) or self.right_probe.get(k)
            rows.append({"id": r.source.get("id"), "question": r.question, "golden": r.golden, "kind": r.kind,
                         "first": r.predicted, "first_right": r.matched, "codes": r.codes,
                         "second": again[0] if again else None, "second_right": again[1] if again else None})
        return rows

    def summary(self) -> dict:
        return {"accuracy": round(self.accuracy, 4), "n": self.n,
                "second_attempt_accuracy": None if self.second_attempt_accuracy is None
                else round(self.second_attempt_accuracy, 4),
                "wrong_to_right": self.wrong_to_right, "right_to_wrong": self.right_to_wrong,
                "right_probed": len(self.right_probe)}


def evaluate(model, tokenizer, items: list[QAItem], *, use_template: bool, max_new_tokens: int, templates,
             second_attempt: bool = True, right_probe: int = 2, batch_size: int | None = None, count_tokens=None,
             first_wrong_value: bool = False) -> Evaluation:
    """One batched generation for the first attempts, one for the second; greedy, so deterministic. An answer
    to a math question ends once its final-answer line is complete (what follows is never judged)."""
    numeric = [answer_kind(i.golden) == "math" for i in items]
    answers = generate_answers(model, tokenizer, [i.conversation for i in items], use_template=use_template,
                               max_new_tokens=max_new_tokens, batch_size=batch_size, stop_at_final_answer=numeric)
    results, reasons = [], []
    for item, answer in zip(items, answers):
        try:
            match = match_answer(item.golden, answer, question=item.question)
            codes = error_codes(item.question, item.golden, answer, tokenizer=count_tokens, matched=match.matched,
                                first_wrong_value=first_wrong_value)
            matched, kind, reason = match.matched, match.kind, match.reason
        except (RecursionError, ValueError, MemoryError) as e:  # one golden answer must not fail a whole gate
            matched, kind, codes = False, "unscorable", []
            reason = f"could not be scored, counted wrong ({type(e).__name__}: {str(e)[:100]})"
        results.append(EvalResult(item.question, item.golden, answer, matched, codes,
                                  {"id": item.id, "file": item.file}, kind))
        reasons.append(reason)
    evaluation = Evaluation(results, reasons)
    if not second_attempt:
        return evaluation
    wrong = [k for k, r in enumerate(results) if not r.matched]
    probe = [k for k, r in enumerate(results) if r.matched][:right_probe]
    asks = [(k, results[k].codes) for k in wrong] + [(k, []) for k in probe]
    if not asks:
        return evaluation
    conversations = []
    for k, codes in asks:
        prompt = render(templates.correction, question=items[k].question, previous=results[k].predicted, codes=codes)
        conversations.append(items[k].conversation[:-1] + [{"role": "user", "content": prompt}])
    again = generate_answers(model, tokenizer, conversations, use_template=use_template,
                             max_new_tokens=max_new_tokens, batch_size=batch_size,
                             stop_at_final_answer=[numeric[k] for k, _ in asks])
    for (k, _), answer in zip(asks, again):
        try:
            ok = match_answer(items[k].golden, answer, question=items[k].question).matched
        except (RecursionError, ValueError, MemoryError):  # unscorable, as on the first attempt
            ok = False
        (evaluation.second if k in wrong else evaluation.right_probe)[k] = (answer, ok)
    return evaluation
