"""The promotion gate: what is served. A newly trained adapter version becomes current (served) unless the evidence
says it is worse; what is learned never depends on it.

Each version is scored on a fixed gate set: a hold-out of every incoming file
(`training.promotion.holdout_fraction`) plus `training.promotion.files`, and whatever users corrected
(a corrected answer stays corrected). The gate set is kept out of training *and* out of self-correction (the
validation pool's misses become training examples, so the pool is not an honest measure; this set is).

The rule, paired: the candidate and the current version answer the same items in the same batches at the same
precision, both scored afresh. Only the items one gets right and the other wrong tell them apart; the candidate is
refused when it is worse with confidence (a one-sided exact binomial test on those discordant items, at
`confidence`) and by more than `tolerance` of accuracy, overall or on the items of earlier files (forgetting).
Too few discordant items to reach the confidence either way promote, and the verdict says the evidence was thin.

A refused version is kept on disk. With `on_reject: "continue"` (the default) training goes on from it, the
training head, so every file is learned; with `"rollback"` the next file trains from the current version.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from math import comb
from pathlib import Path
from typing import Callable

from core.config import Config, PromotionSection
from core.fsutil import atomic_write_json
from evaluation.evaluate import evaluate
from evaluation.pool import ValidationPool

BASE = "base"  # the label of "no adapter yet"


def one_sided_p(worse: int, better: int) -> float:
    """The chance of at least `worse` of the `worse + better` discordant items going against the candidate if each
    were a fair coin: the exact binomial tail (McNemar's exact test, one-sided). 1.0 with no discordant item."""
    n = worse + better
    return sum(comb(n, k) for k in range(worse, n + 1)) / 2 ** n if n else 1.0


@dataclass
class Paired:
    """Two versions' scores on the same items."""

    n: int
    candidate: float | None  # accuracy; None without items
    current: float | None
    worse: int  # items the current version gets right and the candidate wrong
    better: int  # items the candidate gets right and the current version wrong
    p_value: float  # one_sided_p(worse, better)

    @classmethod
    def of(cls, candidate: dict[str, bool], current: dict[str, bool], ids: list[str]) -> "Paired":
        worse = sum(current[i] and not candidate[i] for i in ids)
        better = sum(candidate[i] and not current[i] for i in ids)
        accuracy = (lambda s: sum(s[i] for i in ids) / len(ids)) if ids else (lambda s: None)
        return cls(len(ids), accuracy(candidate), accuracy(current), worse, better, one_sided_p(worse, better))

    def refuses(self, settings: PromotionSection) -> bool:
        """Worse with confidence, and by more than the tolerance."""
        return (self.n > 0 and self.p_value < 1 - settings.confidence
                and self.current - self.candidate > settings.tolerance)

    def thin(self, settings: PromotionSection) -> bool:
        """So few items differ that no outcome among them could reach the confidence."""
        return 0.5 ** (self.worse + self.better) >= 1 - settings.confidence

    def evidence(self) -> str:
        return f"{self.worse} worse, {self.better} better of {self.n}, one-sided p {self.p_value:.3g}"


@dataclass
class Verdict:
    promoted: bool
    reason: str
    candidate: str
    current: str
    n: int
    candidate_accuracy: float
    current_accuracy: float
    earlier_n: int  # gate items from files trained before this one
    earlier_candidate_accuracy: float | None
    earlier_current_accuracy: float | None
    worse: int = 0  # discordant items, overall: the current version right and the candidate wrong
    better: int = 0  # and the other way
    p_value: float = 1.0
    earlier_worse: int = 0
    earlier_better: int = 0
    earlier_p_value: float | None = None
    thin: bool = False  # promoted because too few items differed to tell

    def summary(self) -> dict:
        return asdict(self)


def decide(candidate_scores: dict[str, bool], current_scores: dict[str, bool], items, *, file: str,
           settings: PromotionSection, candidate: str, current: str) -> Verdict:
    """The rule: refuse only a candidate worse with confidence and by more than the tolerance, overall or on the
    items of earlier files (forgetting)."""
    overall = Paired.of(candidate_scores, current_scores, [i.id for i in items])
    earlier = Paired.of(candidate_scores, current_scores, [i.id for i in items if i.file != file])
    failed = []
    if overall.refuses(settings):
        failed.append(f"gate accuracy {overall.candidate:.1%} is below the current {overall.current:.1%} by more "
                      f"than {settings.tolerance:.0%}, with confidence ({overall.evidence()})")
    if earlier.refuses(settings):
        failed.append(f"forgetting: accuracy on {earlier.n} items of earlier files fell from {earlier.current:.1%} "
                      f"to {earlier.candidate:.1%}, more than {settings.tolerance:.0%}, with confidence "
                      f"({earlier.evidence()})")
    thin = not failed and overall.thin(settings)
    reason = "; ".join(failed) or (
        f"gate accuracy {overall.candidate:.1%} (current {overall.current:.1%}) on {overall.n} items "
        f"({overall.evidence()})" + ("; thin evidence: too few items differ to tell the versions apart" if thin else ""))
    return Verdict(not failed, reason, candidate, current, overall.n, overall.candidate, overall.current, earlier.n,
                   earlier.candidate, earlier.current, overall.worse, overall.better, overall.p_value, earlier.worse,
                   earlier.better, earlier.p_value if earlier.n else None, thin)


class PromotionGate:
    def __init__(self, root: Path, *, files: list[Path], tokenizer, use_template: bool, events):
        self.items = ValidationPool(root, folder="gate")
        self.scores_path = self.items.dir / "scores.json"
        self.last_path = self.items.dir / "last_verdict.json"
        self.scores: dict[str, dict[str, bool]] = (json.loads(self.scores_path.read_text())
                                                   if self.scores_path.exists() else {})
        self.tokenizer, self.use_template, self.events = tokenizer, use_template, events
        added = self.items.add_files(files)
        if added:
            events.emit("promotion", f"{added} questions added to the gate set from training.promotion.files")

    def active(self, config: Config) -> bool:
        return config.training.promotion.enabled and bool(self.items.items)

    def hold_out(self, prepared) -> None:
        added = self.items.add_heldout(prepared.gate, file=prepared.name, sha256=prepared.sha256)
        if added:
            self.events.emit("promotion", f"{prepared.name}: {added} examples held out for the promotion gate "
                             f"(gate set {len(self.items.items)})", file=prepared.name)

    def score(self, model, items, config: Config) -> dict[str, bool]:
        ev = evaluate(model, self.tokenizer, items, use_template=self.use_template,
                      max_new_tokens=config.eval_max_tokens, templates=config.self_correction.templates,
                      second_attempt=False)
        return {item.id: r.matched for item, r in zip(items, ev.results)}

    def judge(self, *, config: Config, file: str, candidate: str, current: str | None,
              score: Callable[[str | None, list], dict[str, bool]]) -> Verdict:
        """Score the candidate and the current version afresh on the whole gate set, the same items in the same
        batches at the same precision (`score(version, items)`), and decide. Each version's latest scores are
        kept in data/gate/scores.json, for reading; no decision uses a stored score."""
        current_label, items = current or BASE, list(self.items.items)
        self.events.phase("promotion", f"{file}: answering {len(items)} gate questions with {candidate} and with "
                          f"the current {current_label}", file=file)
        self.scores[candidate] = score(candidate, items)
        self.scores[current_label] = score(current, items)
        atomic_write_json(self.scores_path, self.scores)
        verdict = decide(self.scores[candidate], self.scores[current_label], items, file=file,
                         settings=config.training.promotion, candidate=candidate, current=current_label)
        atomic_write_json(self.last_path, {"file": file, **verdict.summary()})
        return verdict
