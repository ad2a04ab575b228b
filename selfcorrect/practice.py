"""Verified self-training: K sampled solutions per practice problem, only those that verify trained.

This is rejection sampling, the loop of STaR and ReST-EM: the current adapter samples
`practice.samples` solutions to each problem through the sampling engine; a math solution
verifies when its final answer matches the known one, a code solution when it passes the
problem's tests in the sandbox; the distinct verified ones (at most `keep_per_problem`) become
training records. A problem with none uses its golden `solution` if it has one (counted apart),
else it is listed as unsolved.

With `practice.method: grpo` (GRPO, Shao et al. 2024, as TRL's GRPOTrainer) every sample is kept with its
reward (1 if it verifies, else 0, plus `format_reward` for a complete final-answer line or code block) and its
group-relative advantage (reward minus the mean of its problem's samples, over their standard deviation); the
round's training file holds every sample of each problem whose samples did not all score the same, and the
trainer weighs each by its advantage (training/trainer.py: the clipped policy-gradient loss). A group whose
samples all score the same teaches nothing and is skipped (counted). No golden solution is trained: the signal
is the model's own samples, right and wrong.

Why not TRL's GRPOTrainer itself: it samples and trains in one loop of its own (generation every step, its own
checkpoints), where a practice round here must be a file like any other, queued, trained by the product's
Trainer with its staged checkpoints, `state.json` commit, live evaluation, promotion gate and resume after a
kill. So the sampling stays in the product's engine, and only the loss is TRL's: `tests/test_grpo.py` checks it
against GRPOTrainer's `_compute_loss` on the same batch (loss "dapo", TRL's default).

Crash safety: each problem's outcome is appended and fsynced to `round-N.progress.jsonl` in
the work folder as soon as it is verified, so a kill loses no verified sample and a restart
samples only the problems not yet done; the round's training file is written whole, by
atomic rename, once every problem is done.
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import threading
import time
import zlib
from dataclasses import asdict, dataclass, field
from pathlib import Path

from core.config import PracticeSection
from core.events import EventLog, duration
from core.fsutil import atomic_write_json, atomic_write_text, read_appended
from core.practice import Problem
from evaluation.sandbox import Limits
from evaluation.text import normalize, stated_answer
from evaluation.verify import Verdict, verify_answer, verify_code
from inference.requests import Request
from inference.sampling import SamplingEngine
from training.engine import TrainingEngine

REPORT_EVERY = 8  # problems between two progress lines


@dataclass
class RoundStats:
    round: int
    adapter: str
    method: str = "rest"
    problems: int = 0
    samples: int = 0
    verified: int = 0  # samples that verified
    pass_at_1: float = 0.0  # the mean share of a problem's samples that verified
    pass_at_k: float = 0.0  # the share of problems with at least one verified sample
    mean_reward: float = 0.0  # grpo: the mean reward of every sample
    skipped_groups: int = 0  # grpo: problems whose samples all scored the same (no signal), not trained
    verifier_errors: int = 0  # samples whose verifier crashed or timed out (scored 0)
    kept: int = 0  # verified solutions written for training
    golden: int = 0  # problems trained on their golden solution (none verified)
    unsolved: list[str] = field(default_factory=list)
    by_category: dict = field(default_factory=dict)  # category -> {problems, pass_at_k}
    seconds: float = 0.0


class Practice:
    def __init__(self, sampler: SamplingEngine, settings: PracticeSection, events: EventLog, *, adapter: str):
        self.sampler, self.settings, self.events, self.adapter = sampler, settings, events, adapter
        self.limits = Limits(wall_seconds=settings.code_wall_seconds, memory_mb=settings.code_memory_mb,
                             allow_unsandboxed=settings.allow_unsandboxed_code)

    def messages(self, p: Problem) -> list[dict]:
        template = self.settings.prompt_code if p.kind == "code" else self.settings.prompt_math
        return [{"role": "user", "content": template.replace("{problem}", p.prompt)}]

    def request(self, p: Problem, round_no: int, cancel: threading.Event | None = None) -> Request:
        s, code = self.settings, p.kind == "code"
        return Request(messages=self.messages(p), n=s.samples, top_p=s.top_p,
                       temperature=s.temperature_code if code else s.temperature_math,
                       max_new_tokens=s.max_new_tokens_code if code else s.max_new_tokens_math,
                       seed=zlib.crc32(p.id.encode()) + 7919 * round_no, stop_at_final_answer=not code, cancel=cancel)

    def verify(self, p: Problem, solution: str) -> Verdict:
        """The verifier's verdict; one that crashes fails this sample only, said in the log."""
        try:
            if p.kind == "code":
                return verify_code(solution, p.tests, entry_point=p.entry_point, limits=self.limits)
            return verify_answer(p.answer, solution, question=p.prompt)
        except Exception as e:  # a verifier's bug must not stop a round of hundreds of samples
            self.events.emit("practice", f"problem {p.id}: the verifier failed on a sample ({type(e).__name__}: "
                             f"{e}); it scores 0", problem=p.id, verifier_error=True)
            return Verdict(False, f"verifier error: {type(e).__name__}: {e}", 0.0, error=True)

    def reward(self, p: Problem, text: str, verdict: Verdict) -> float:
        """grpo's reward of one sample: 1 if it verifies, plus `format_reward` if it ends as asked."""
        formatted = "```python" in text if p.kind == "code" else stated_answer(text) is not None
        return float(verdict.passed) + self.settings.format_reward * formatted

    def run(self, problems: list[Problem], work: Path, round_no: int, *,
            cancel: threading.Event | None = None) -> tuple[list[dict], RoundStats] | None:
        """The round's training records and figures; resumes from the progress file of an interrupted run.

        Every problem not yet done goes to the sampler at once (it keeps its batch full), and each outcome is
        verified and fsynced as its request ends. None if `cancel` was set (a stop was asked): the answers
        cut short by it are dropped unrecorded, everything verified before is kept for the resume."""
        work.mkdir(parents=True, exist_ok=True)
        progress = work / f"round-{round_no}.progress.jsonl"
        # a problem sampled under the other method (the setting changed across a kill) is sampled again
        done = {o["id"]: o for o in read_appended(progress) if o.get("method", "rest") == self.settings.method}
        todo = [p for p in problems if p.id not in done]
        started, sampled = time.perf_counter(), 0
        with open(progress, "a", encoding="utf-8") as log:
            def record(index: int, result) -> None:
                nonlocal sampled
                if cancel is not None and cancel.is_set():
                    return
                p = todo[index]
                done[p.id] = self._outcome(p, result.completions)
                log.write(json.dumps(done[p.id]) + "\n")
                log.flush()
                os.fsync(log.fileno())  # verified samples are kept from here on, whatever happens next
                sampled += len(result.completions)
                if len(done) % REPORT_EVERY == 0 or len(done) == len(problems):
                    self._report(round_no, problems, done, sampled, time.perf_counter() - started)

            self.sampler.generate([self.request(p, round_no, cancel) for p in todo], on_result=record)
        if cancel is not None and cancel.is_set():
            return None
        return self._records(problems, done, round_no), self._stats(problems, done, round_no,
                                                                     time.perf_counter() - started)

    def _outcome(self, p: Problem, completions) -> dict:
        grpo = self.settings.method == "grpo"
        passed, kept, seen, rewards, errors = [], [], set(), [], 0
        for k, c in enumerate(completions):
            v = self.verify(p, c.text)
            passed.append(v.passed)
            errors += v.error
            if grpo:
                rewards.append(self.reward(p, c.text, v))
                kept.append({"sample": k, "text": c.text, "verdict": v.reason, "verify_seconds": v.seconds})
            elif v.passed and normalize(c.text) not in seen and len(kept) < self.settings.keep_per_problem:
                seen.add(normalize(c.text))
                kept.append({"sample": k, "text": c.text, "verdict": v.reason, "verify_seconds": v.seconds})
        outcome = {"id": p.id, "category": p.category, "kind": p.kind, "passed": passed, "kept": kept,
                   "adapter": self.adapter, "method": self.settings.method, "verifier_errors": errors}
        if grpo:
            outcome["rewards"] = rewards
        return outcome

    def _report(self, round_no: int, problems: list[Problem], done: dict, sampled: int, seconds: float) -> None:
        solved = sum(1 for o in done.values() if any(o["passed"]))
        rate = sampled / seconds if seconds else 0.0
        eta = (len(problems) - len(done)) * self.settings.samples / rate if rate else None
        self.events.emit("practice", f"round {round_no}: {len(done)}/{len(problems)} problems, pass@"
                         f"{self.settings.samples} {solved / max(len(done), 1):.0%} so far, {rate:.1f} samples/s, "
                         f"ETA {duration(eta)}", round=round_no, done=len(done), problems=len(problems),
                         eta_seconds=None if eta is None else round(eta, 1))

    def _records(self, problems: list[Problem], done: dict, round_no: int) -> list[dict]:
        records = []
        for p in problems:
            o = done[p.id]
            meta = {"problem": p.id, "category": p.category, "round": round_no, "adapter": o["adapter"]}
            if self.settings.method == "grpo":
                for kept, advantage in zip(o["kept"], group_advantages(o["rewards"]) or []):
                    records.append({"messages": [*self.messages(p), {"role": "assistant", "content": kept["text"]}],
                                    "advantage": advantage,
                                    "practice": {**meta, "sample": kept["sample"], "verdict": kept["verdict"],
                                                 "reward": o["rewards"][kept["sample"]]}})
                continue
            for kept in o["kept"]:
                temperature = self.settings.temperature_code if p.kind == "code" else self.settings.temperature_math
                records.append({"messages": [*self.messages(p), {"role": "assistant", "content": kept["text"]}],
                                "practice": {**meta, "sample": kept["sample"], "temperature": temperature,
                                             "verdict": kept["verdict"], "verify_seconds": kept["verify_seconds"]}})
            if not o["kept"] and p.solution:
                records.append({"messages": [*self.messages(p), {"role": "assistant", "content": p.solution}],
                                "practice": {**meta, "golden": True}})
        return records

    def _stats(self, problems: list[Problem], done: dict, round_no: int, seconds: float) -> RoundStats:
        outcomes = [done[p.id] for p in problems]
        stats = RoundStats(round_no, self.adapter, self.settings.method, problems=len(problems),
                           samples=sum(len(o["passed"]) for o in outcomes),
                           verified=sum(sum(o["passed"]) for o in outcomes),
                           kept=sum(len(o["kept"]) for o in outcomes), seconds=round(seconds, 1))
        stats.pass_at_1 = round(sum(sum(o["passed"]) / len(o["passed"]) for o in outcomes) / len(outcomes), 4)
        stats.pass_at_k = round(sum(1 for o in outcomes if any(o["passed"])) / len(outcomes), 4)
        stats.verifier_errors = sum(o.get("verifier_errors", 0) for o in outcomes)
        if self.settings.method == "grpo":
            stats.mean_reward = round(sum(sum(o["rewards"]) for o in outcomes) / max(stats.samples, 1), 4)
            stats.skipped_groups = sum(1 for o in outcomes if group_advantages(o["rewards"]) is None)
            stats.kept = sum(len(o["kept"]) for o in outcomes if group_advantages(o["rewards"]) is not None)
        for p, o in zip(problems, outcomes):
            if self.settings.method == "grpo":
                if not any(o["passed"]):
                    stats.unsolved.append(p.id)
            elif not o["kept"]:
                if p.solution:
                    stats.golden += 1
                else:
                    stats.unsolved.append(p.id)
            c = stats.by_category.setdefault(p.category or "none", {"problems": 0, "solved": 0})
            c["problems"] += 1
            c["solved"] += any(o["passed"])
        for c in stats.by_category.values():
            c["pass_at_k"] = round(c.pop("solved") / c["problems"], 4)
        return stats


def group_advantages(rewards: list[float]) -> list[float] | None:
    """Each sample's reward against its group's: (r - mean) / (standard deviation + 1e-4), the standard deviation
    with Bessel's correction, as TRL's GRPOTrainer (scale_rewards "group"). None when every sample scored the
    same: the group carries no signal."""
    if len(rewards) < 2 or max(rewards) - min(rewards) < 1e-9:
        return None
    mean = sum(rewards) / len(rewards)
    std = math.sqrt(sum((r - mean) ** 2 for r in rewards) / (len(rewards) - 1))
    return [(r - mean) / (std + 1e-4) for r in rewards]


def write_round(work: Path, round_no: int, records: list[dict], stats: RoundStats) -> Path:
    """The round's training file and its figures beside it, each written whole (once; a rerun keeps the first)."""
    path = work / f"round-{round_no}.jsonl"
    if not path.exists():
        atomic_write_json(work / f"round-{round_no}.meta.json", asdict(stats))
        atomic_write_text(path, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records))
    return path


def nothing_to_train(settings: PracticeSection) -> str:
    """Why a round's training file came out empty, in words."""
    if settings.method == "grpo":
        return "every problem's samples scored alike (all right or all wrong): no advantage to train"
    return "nothing verified and no golden solution to train"


def work_folder(root: Path, path: Path, name: str | None = None) -> Path:
    """Where a practice file's rounds live, by name (`name`, else the file's) and content: the same file
    practiced again resumes there, and finds its rounds trained."""
    stem = Path(name or path.name).stem
    return Path(root) / "data" / "practice" / f"{stem}-{hashlib.sha256(path.read_bytes()).hexdigest()[:12]}"


def round_name(work: Path, round_no: int) -> str:
    """The name a round's training file trains under (in events, state.json and the queue)."""
    return f"{work.name}.round-{round_no}.jsonl"


HISTORY = 50  # rounds kept in data/practice/rounds.json for `--status`


def practice_round(engine: TrainingEngine, problems: list[Problem], work: Path, round_no: int, *, label: str,
                   settings: PracticeSection, events: EventLog,
                   cancel: threading.Event | None = None) -> tuple[Path, RoundStats] | None:
    """One round, as every mode runs it: sample from the engine's current adapter, verify, write the round's
    training file and figures; the summary goes to the log and to data/practice/rounds.json. None if cancelled."""
    adapter = engine.state.head or "base"  # the warm model samples: the training head
    ran = Practice(engine.sampler(), settings, events, adapter=adapter).run(problems, work, round_no, cancel=cancel)
    if ran is None:
        return None
    records, stats = ran
    out = write_round(work, round_no, records, stats)
    figures = {k: v for k, v in asdict(stats).items() if k != "unsolved"}
    if settings.method == "grpo":
        trained = (f"mean reward {stats.mean_reward:.2f}; {stats.kept} samples to train by their advantage, "
                   f"{stats.skipped_groups} groups skipped (all samples scored the same)")
    else:
        trained = f"{stats.kept} verified solutions kept, {stats.golden} golden"
    errors = f", {stats.verifier_errors} verifier errors (scored 0)" if stats.verifier_errors else ""
    events.emit("practice", f"{label} round {round_no} ({settings.method}) with {adapter}: pass@1 "
                f"{stats.pass_at_1:.0%}, pass@{settings.samples} {stats.pass_at_k:.0%} of {stats.problems} problems; "
                f"{trained}, {len(stats.unsolved)} unsolved{errors} ({stats.seconds:.0f}s)",
                file=label, summary=True, step=engine.state.global_step, **figures, unsolved=len(stats.unsolved), k=settings.samples)
    history = work.parent / "rounds.json"
    try:
        rounds = json.loads(history.read_text())
    except (OSError, ValueError):
        rounds = []
    rounds = [r for r in rounds if (r["work"], r["round"]) != (work.name, round_no)]
    atomic_write_json(history, [*rounds, {"file": label, "work": work.name, "k": settings.samples, **figures,
                                          "unsolved": len(stats.unsolved), "records": len(records),
                                          "time": time.time()}][-HISTORY:])
    return out, stats
