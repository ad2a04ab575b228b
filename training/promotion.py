"""The promotion gate: a newly trained adapter version becomes current only if it is not worse.

Each version is scored on a fixed gate set: a hold-out of every incoming file
(`training.promotion.holdout_fraction`) plus `training.promotion.files`. The gate set
is kept out of training *and* out of self-correction (the validation pool's misses
become training examples, so the pool is not an honest measure; this set is).

A version that loses more than `tolerance` of accuracy overall, or on the items of
earlier files (forgetting), is kept on disk but not promoted, and training goes on
from the current version. Scores are cached per version in data/gate/scores.json, so
the current version is only re-scored on items added since it was scored.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

from core.config import Config
from core.fsutil import atomic_write_json
from evaluation.evaluate import evaluate
from evaluation.pool import ValidationPool

BASE = "base"  # the label of "no adapter yet" in the score cache


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

    def summary(self) -> dict:
        return asdict(self)


def _accuracy(scores: dict[str, bool], ids: list[str]) -> float | None:
    return sum(scores[i] for i in ids) / len(ids) if ids else None


def decide(candidate_scores: dict[str, bool], current_scores: dict[str, bool], items, *, file: str,
           tolerance: float, candidate: str, current: str) -> Verdict:
    """The rule: not worse by more than `tolerance` overall, nor on the items of earlier files."""
    ids = [i.id for i in items]
    earlier = [i.id for i in items if i.file != file]
    new, old = _accuracy(candidate_scores, ids), _accuracy(current_scores, ids)
    new_e, old_e = _accuracy(candidate_scores, earlier), _accuracy(current_scores, earlier)
    failed = []
    if new < old - tolerance:
        failed.append(f"gate accuracy {new:.1%} is below the current {old:.1%} by more than {tolerance:.0%}")
    if earlier and new_e < old_e - tolerance:
        failed.append(f"forgetting: accuracy on {len(earlier)} items of earlier files fell from {old_e:.1%} to "
                      f"{new_e:.1%}, more than {tolerance:.0%}")
    reason = "; ".join(failed) or f"gate accuracy {new:.1%} (current {old:.1%}) on {len(ids)} items"
    return Verdict(not failed, reason, candidate, current, len(ids), new, old, len(earlier), new_e, old_e)


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

    def judge(self, model, *, config: Config, file: str, candidate: str, current: str | None,
              score_current: Callable[[list], dict[str, bool]]) -> Verdict:
        """Score `model` (the candidate) and the current version on the whole gate set, and decide.

        `score_current(items)` scores the current version's weights on the items it has no score for.
        """
        tolerance = config.training.promotion.tolerance
        current = current or BASE
        items = list(self.items.items)
        known = self.scores.setdefault(current, {})
        missing = [i for i in items if i.id not in known]
        if missing:
            self.events.phase("gate baseline", f"{file}: answering {len(missing)} gate questions with the current "
                              f"adapter ({current}), once", file=file)
            known.update(score_current(missing))
        self.events.phase("promotion", f"{file}: answering {len(items)} gate questions with {candidate}", file=file)
        self.scores[candidate] = self.score(model, items, config)
        atomic_write_json(self.scores_path, self.scores)

        verdict = decide(self.scores[candidate], known, items, file=file, tolerance=tolerance,
                         candidate=candidate, current=current)
        atomic_write_json(self.last_path, {"file": file, **verdict.summary()})
        return verdict
