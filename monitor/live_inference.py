"""LiveInferenceMonitor: every `eval_steps` global steps, answer validation questions and learn from the misses.

With `self_correction.max_turns` above 1, each question is traced instead (selfcorrect.traces): the
reprompt policy chooses up to max_turns prompts after the first answer, learns from each, and the
trace's final answer is the second attempt.

With `experimental.training_file_questions`, it also answers a few questions of the file
being trained (on policy, as in SCoRe): their mistakes become records too, but they
never count in the accuracy, since the model trains on them.

A TrainerCallback: it reads the state, writes its own outputs (console block,
events, data/last_evaluation.json, the generator's files) and reaches training
only through `control` (a log at this step). It never moves queue files.

Its config is handed to it (`apply`) between files; at each evaluation it also calls
`refresh`, when given one (the daemon's live config), so an edit of `self_correction`
acts at the next evaluation, mid-file.
"""
from __future__ import annotations

import asyncio
import random
import time
from collections import Counter
from pathlib import Path
from typing import Callable

from transformers import TrainerCallback

from core.config import Config
from core.fsutil import atomic_write_json
from core.outbox import Outbox
from core.qa import qa_items
from evaluation.error_codes import code_family
from evaluation.evaluate import Evaluation, evaluate
from evaluation.pool import ValidationPool
from evaluation.ace import LIVE, Playbook, reflect
from inference.providers import LocalProvider, make_provider
from inference.sampling import SamplingEngine
from selfcorrect.generator import SelfCorrectionGenerator
from selfcorrect.policy import policy_for
from selfcorrect.traces import TraceLog, Tracer, as_evaluation

from .console import evaluation_block


class LiveInferenceMonitor(TrainerCallback):
    def __init__(self, *, pool: ValidationPool, generator: SelfCorrectionGenerator, tokenizer, use_template: bool,
                 config: Config, refresh: Callable[[], Config] | None, step_offset: Callable[[], int],
                 trainer_logs: dict, events, root: Path):
        # user settings: the config in force, and where to look for an edit at each evaluation
        self.config, self.refresh = config, refresh
        # collaborators
        self.pool, self.generator, self.tokenizer, self.events = pool, generator, tokenizer, events
        self.use_template = use_template
        self.step_offset = step_offset
        self.trainer_logs = trainer_logs  # merged into the Trainer's next log (log history, report_to)
        self.root = Path(root)
        self.last_path = self.root / "data" / "last_evaluation.json"
        # internal state
        self.generate_files = True  # off while training a generated file in --once (so --once ends)
        self.training_questions: list = []  # questions of the file in training, in a fixed shuffled order
        self.seconds_spent = 0.0

    def apply(self, config: Config) -> None:
        """The config in force from now on (for the generator too)."""
        self.config = self.generator.config = config

    def start_file(self, prepared, *, generated: bool, once: bool) -> None:
        """Before a file trains: its held-out questions join the pool, its own questions become the practice set."""
        added = self.pool.add_heldout(prepared.heldout, file=prepared.name, sha256=prepared.sha256)
        if added:
            self.events.emit("validation", f"{prepared.name}: {added} examples held out for validation "
                             f"(pool {len(self.pool.items)})", file=prepared.name)
        # In --once, a generated file generates nothing more, so the queue drains and the run ends.
        self.generate_files = not (once and generated)
        self.training_questions = [] if generated else qa_items(prepared.examples, file=prepared.name, sha256=prepared.sha256)
        random.Random(prepared.sha256).shuffle(self.training_questions)

    def on_step_end(self, args, state, control, model=None, **kwargs):
        step = self.step_offset() + state.global_step
        if step % self.config.eval_steps or model is None or not self.pool.items:
            return
        started = time.perf_counter()
        if self.refresh is not None:
            self.apply(self.refresh())
        asked = min(self.config.num_eval_samples, len(self.pool.items))
        self.events.phase("evaluating", f"step {step}: live inference on {asked} validation questions", step=step)
        total = self.step_offset() + state.max_steps
        self.run(model, step=step, total=total, config=self.config)
        control.should_log = True
        self.seconds_spent += time.perf_counter() - started

    def run(self, model, *, step: int, total: int, config) -> Evaluation:
        sc = config.self_correction
        items = self.pool.next_batch(config.num_eval_samples)
        if sc.max_turns > 1 and sc.measure_second_attempt:
            ev = self._traced(model, items, config)
        else:
            ev = evaluate(model, self.tokenizer, items, use_template=self.use_template,
                          max_new_tokens=config.eval_max_tokens, templates=sc.templates,
                          second_attempt=sc.measure_second_attempt, count_tokens=self.tokenizer,
                          first_wrong_value=config.experimental.first_wrong_value)
        summary = ev.summary()
        codes = Counter(code_family(c) for r in ev.results for c in r.codes)
        self.events.block(evaluation_block(ev, step=step, total=total))
        self.events.emit("evaluation", f"step {step}: accuracy {summary['accuracy']:.0%} on {ev.n}"
                         + ("" if summary["second_attempt_accuracy"] is None
                            else f", second attempt {summary['second_attempt_accuracy']:.0%}"),
                         step=step, codes=dict(codes), **summary)
        self.trainer_logs.update({f"eval/{k}": v for k, v in summary.items() if v is not None})
        self.trainer_logs.update({f"eval/code/{k}": v for k, v in codes.items()})
        atomic_write_json(self.last_path, {"step": step, "time": time.time(), **summary, "codes": dict(codes)})
        if config.ace.in_daemon:
            self._feed_playbook(model, ev, config, step=step)
        if sc.enabled and self.generate_files:
            try:
                self.generator.process_results(ev.results, step=step)
                if config.experimental.training_file_questions and self.training_questions:
                    self.generator.process_results(self._answer_training_file(model, step=step, config=config),
                                                   step=step)
                self.generator.maybe_generate(step=step)
            except OSError as e:  # disk full: keep training; the buffer on disk keeps every example
                self.events.emit("self-correction", f"Self-Correction: could not write ({e}); examples kept, "
                                 "retrying at the next evaluation")
        return ev

    def _sampler(self, model) -> SamplingEngine:
        """The sampling engine over the model in training, as the callback gets it."""
        return SamplingEngine(model, self.tokenizer, use_template=self.use_template)

    def _traced(self, model, items, config) -> Evaluation:
        """With self_correction.max_turns above 1: each question traced (selfcorrect.traces), the policy of
        data/policy/rts.json choosing up to max_turns reprompts and learning from them; the traces go to
        logs/traces_*.jsonl, their training examples (traces.train) to the generator's buffer."""
        tracer = Tracer(LocalProvider(self._sampler(model), name="live"), policy_for(self.root, config.traces), config.traces,
                        max_turns=config.self_correction.max_turns, dataset="live",
                        max_new_tokens=config.eval_max_tokens, tokenizer=self.tokenizer)

        async def run():
            try:
                return await tracer.run(items, TraceLog(self.root / "logs"))
            finally:
                await tracer.provider.close()

        traces = asyncio.run(run())
        if config.traces.train and tracer.examples and self.generate_files:
            self.generator.add_records(tracer.examples)
        return as_evaluation(items, traces, tokenizer=self.tokenizer)

    def _feed_playbook(self, model, ev: Evaluation, config, *, step: int) -> None:
        """ace.in_daemon: the reflector's lessons on this evaluation's wrong answers join data/ace/playbook.jsonl
        (task "live"), so the playbook and the adapter improve together."""
        wrong = [r for r in ev.results if not r.matched]
        if not wrong:
            return
        settings = config.ace
        if settings.reflector == "local":
            reflector = LocalProvider(self._sampler(model), name="live")
        else:
            reflector = make_provider(settings.reflector, config, self.root)
        book = Playbook(self.root / "data" / "ace" / "playbook.jsonl")

        async def run():
            try:
                return await asyncio.gather(*(reflect(reflector, settings, question=r.question, answer=r.predicted,
                                                      golden=r.golden, codes=r.codes) for r in wrong))
            finally:
                await reflector.close()

        try:
            found = asyncio.run(run())
        except Exception as e:  # a reflector that is down: the evaluation stands, the playbook waits for the next
            self.events.emit("ace", f"step {step}: the reflector failed ({type(e).__name__}: {str(e)[:200]}); "
                             "no lessons this time", step=step)
            return
        counts = {"added": 0, "merged": 0, "generic": 0, "pruned": 0}
        for r, lessons in zip(wrong, found):
            for k, v in book.curate(lessons, task=LIVE, domain="", sample_id=str(r.source.get("id", "")),
                                    threshold=settings.dedupe_threshold, max_entries=settings.max_entries).items():
                counts[k] += v
        book.save()
        self.events.emit("ace", f"step {step}: {len(wrong)} wrong answers reflected on; lessons {counts['added']} added, "
                         f"{counts['merged']} merged; playbook {len(book.lessons)} lessons", step=step, **counts)

    def _answer_training_file(self, model, *, step: int, config) -> list:
        """The next questions of the file in training answered by the current adapter (first attempts only)."""
        sc = config.self_correction
        n = min(config.experimental.training_file_questions, len(self.training_questions))
        items, self.training_questions = (self.training_questions[:n],
                                          self.training_questions[n:] + self.training_questions[:n])
        ev = evaluate(model, self.tokenizer, items, use_template=self.use_template, max_new_tokens=config.eval_max_tokens,
                      templates=sc.templates, second_attempt=False, count_tokens=self.tokenizer,
                      first_wrong_value=config.experimental.first_wrong_value)
        right = sum(r.matched for r in ev.results)
        self.events.emit("training-file", f"step {step}: {right}/{ev.n} right on questions of the file in training "
                         "(records only, not an accuracy)", step=step, right=right, n=ev.n)
        return ev.results


def attach_monitor(engine, *, root: Path, config: Config, outbox: Outbox, events,
                   refresh: Callable[[], Config] | None = None) -> LiveInferenceMonitor:
    """The monitor for a warm engine: validation pool (with `validation.files`) and the generator, whose
    files go to `outbox`."""
    root = Path(root)
    pool = ValidationPool(root)
    added = pool.add_files([root / f for f in config.validation.files])
    if added:
        events.emit("validation", f"{added} questions added to the validation pool from validation.files")
    generator = SelfCorrectionGenerator(root=root, outbox=outbox, config=config, events=events)
    return LiveInferenceMonitor(pool=pool, generator=generator, tokenizer=engine.tokenizer,
                                use_template=engine.use_template, config=config, refresh=refresh,
                                step_offset=lambda: engine.state.global_step, trainer_logs=engine.trainer_logs,
                                events=events, root=root)
