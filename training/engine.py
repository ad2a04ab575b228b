"""One warm model that trains file after file, and commits each result as an adapter version.

Lifecycle of a file: prepare (read + encode, or DataError) -> train (from the training head,
resuming a mid-file checkpoint if one exists) -> judge (the promotion gate: is it served?) ->
commit (stage the adapter, rename it into place, then write state.json, the commit point). A
file is trained at most once: its sha256 is recorded in the same atomic write that makes its
adapter the head, and current when the gate promotes it.
"""
from __future__ import annotations

import gc
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from transformers import TrainerCallback

from core.adapters import AdapterStore
from core.config import Config
from core.data import Example, read_examples
from core.device import plan_device
from core.encoding import Encoded, PaddingCollator, encode_file
from core.events import EventLog
from core.faults import fault_point
from core.fsutil import atomic_write_json, remove_tree, sha256_file
from core.models import attach_adapter, copy_tokenizer_files, quiet_transformers
from core.qa import split_holdout
from core.state import TrainingState
from inference.loading import load_base
from inference.sampling import SamplingEngine

from .distributed import DistributedFault, World
from .progress import ProgressCallback
from .promotion import PromotionGate, Verdict
from .trainer import SupervisedTrainer, add_old_logps, add_reference_logps, half_precision_base, latest_checkpoint


@dataclass
class Prepared:
    """A file that passed every check and is ready to train."""

    path: Path
    name: str
    sha256: str
    examples: list[Example]  # the ones trained
    encoded: list[Encoded]
    heldout: list[Example]  # kept out of training for the validation pool
    gate: list[Example]  # kept out of training and self-correction for the promotion gate


@dataclass
class FileResult:
    status: str  # "trained" or "interrupted" (a checkpoint was saved; train again to resume)
    version: str | None
    steps: int
    seconds: float
    final_loss: float | None
    tokens_per_s: float
    loop_seconds: float = 0.0  # the Trainer's own training loop (train_runtime), for overhead figures
    verdict: Verdict | None = None  # the promotion gate's decision (None: gate off or empty)

    @property
    def promoted(self) -> bool:
        return self.verdict is None or self.verdict.promoted


class _Rows(torch.utils.data.Dataset):
    def __init__(self, encoded: list[Encoded]):
        self.rows = [{"input_ids": e.input_ids, "labels": e.labels, "unlikely": e.unlikely, "rejected_ids": e.rejected_ids,
                      "rejected_labels": e.rejected_labels, "reference": e.reference, "advantage": e.advantage,
                      "old_logps": e.old_logps} for e in encoded]

    def __len__(self):
        return len(self.rows)

    def __getitem__(self, i):
        return self.rows[i]


class StepTogether(TrainerCallback):
    """The last callback of every optimizer step under several processes: the ranks agree whether to stop, so
    a SIGTERM to any of them stops all at this same step with a checkpoint, and whether to log (rank 0's live
    evaluation asks for a log line, and logging is a collective); and since rank 0's callbacks before this one
    (live evaluation, generation) run first, the others wait for them here."""

    def __init__(self, world: World):
        self.world = world

    def on_step_end(self, args, state, control, **kwargs):
        interrupted = control.should_training_stop and state.global_step < state.max_steps
        stop, log = self.world.agree(stop=interrupted, log=control.should_log)
        if stop:
            control.should_training_stop = control.should_save = True
        control.should_log = log


class TrainingEngine:
    """On rank 0 (or alone) the whole lifecycle; on the other ranks of a multi-process launch only `fit`: they
    read no state and write nothing, rank 0 hands them each file and its adapter (training/distributed.py)."""

    def __init__(self, config: Config, root: Path, events: EventLog):
        quiet_transformers()
        self.config, self.root, self.events = config, Path(root), events
        self.world = World.from_env()
        self.data_dir = self.root / "data"
        self.state_path = self.data_dir / "state.json"
        self.checkpoints_dir = self.data_dir / "checkpoints"
        self.state, lost = TrainingState.recover(self.state_path) if self.world.main else (TrainingState(), None)
        if lost:
            events.emit("recovered", lost)
        self.store = AdapterStore(self.data_dir / "adapters")
        # a state that was lost (missing with versions on disk, or unreadable) names none of the trained work
        state_lost = bool(lost) or (not self.state_path.exists() and bool(self.store.versions()))
        removed = (self.store.recover(self.state.versions, self.state.current_adapter, state_lost=state_lost)
                   if self.world.main else [])
        if removed:
            events.emit("recovered", ("the training state was lost: adapter versions it does not name were moved "
                                      "aside, not deleted: " if state_lost else
                                      "removed incomplete or uncommitted adapter folders: ") + ", ".join(removed))

        self.plan = plan_device(config.training.precision)
        events.emit("device", f"{self.plan.device} {self.plan.precision}: {self.plan.reason}",
                    device=self.plan.device, precision=self.plan.precision)
        base = load_base(config, self.root, self.plan)
        self.model_path, self.tokenizer, self.use_template = base.path, base.tokenizer, base.use_template
        head = self.store.path(self.state.head) if self.state.head else None
        self.model = attach_adapter(base.model, config, head, model_path=self.model_path)
        self.model_loads = 1
        self.trainer_logs: dict = {}  # filled by callbacks, merged into the Trainer's next log
        self.gate = PromotionGate(self.root, files=[self.root / f for f in config.training.promotion.files],
                                  tokenizer=self.tokenizer, use_template=self.use_template,
                                  events=events) if self.world.main else None
        trainable = sum(p.numel() for p in self.model.parameters() if p.requires_grad)
        events.emit("model", f"loaded {self.model_path} with adapter {self.state.head or '(new)'}"
                    + (f" (the training head; {self.state.current_adapter or 'the base model'} is served)"
                       if self.state.head != self.state.current_adapter else "")
                    + f"; {trainable:,} trainable parameters; global step {self.state.global_step}",
                    model=self.model_path, adapter=self.state.head, current=self.state.current_adapter,
                    global_step=self.state.global_step)

    # -- prepare ----------------------------------------------------------------------------

    def sampler(self) -> SamplingEngine:
        """A sampling engine over the warm model, with the adapter as trained so far: what answers between files."""
        return SamplingEngine(self.model, self.tokenizer, use_template=self.use_template)

    def prepare(self, path: Path, *, name: str | None = None, generated: bool = False,
                examples: list[Example] | None = None) -> Prepared:
        """Read, validate and encode a whole file; DataError if any of it is unusable.

        `examples` are the file's, when the caller already read it (the daemon's intake
        does), so a file is parsed once. Some of its QA examples are kept out of training
        (the same ones on every retry, chosen by the file's hash):
        `training.promotion.holdout_fraction` for the promotion gate, then
        `validation.holdout_fraction` for live evaluation; none of a `generated` file
        (its questions come from the validation pool already).
        """
        path = Path(path)
        label = name or path.name
        sha256 = sha256_file(path)
        if examples is None:
            self.events.phase("reading", f"{label}: reading and checking {path.stat().st_size:,} bytes", file=label)
            examples = read_examples(path, max_line_bytes=self.config.training.max_line_bytes,
                                     max_file_bytes=self.config.training.max_file_bytes)
        promotion = self.config.training.promotion
        keep_gate = promotion.holdout_fraction if promotion.enabled and not generated else 0
        rest, gate = split_holdout(examples, fraction=keep_gate, seed=f"{sha256}:gate",
                                   limit=promotion.max_items_per_file)
        train, heldout = split_holdout(rest, fraction=0 if generated else self.config.validation.holdout_fraction,
                                       seed=sha256)
        self.events.phase("encoding", f"{label}: encoding {len(train)} examples", file=label)
        encoded = encode_file(self.tokenizer, train, path=path, use_template=self.use_template,
                              max_length=self.config.training.max_seq_length,
                              unlikelihood=self.config.experimental.unlikelihood_weight > 0,
                              preference=self.config.experimental.preference_weight > 0)
        return Prepared(path, label, sha256, train, encoded, heldout, gate)

    # -- train --------------------------------------------------------------------------------

    def _arguments(self, output_dir: Path):
        from transformers import TrainingArguments

        t = self.config.training
        return TrainingArguments(
            output_dir=str(output_dir),
            per_device_train_batch_size=t.batch_size,
            gradient_accumulation_steps=t.gradient_accumulation_steps,
            learning_rate=t.learning_rate,
            lr_scheduler_type=t.lr_scheduler_type,
            warmup_steps=t.warmup_steps,
            weight_decay=t.weight_decay,
            num_train_epochs=t.epochs_per_file,
            logging_steps=t.logging_steps,
            save_strategy="steps",
            save_steps=t.save_steps,
            save_total_limit=None,  # SupervisedTrainer keeps only the newest checkpoint itself
            seed=t.seed,
            bf16=self.plan.precision == "bf16",
            fp16=self.plan.precision == "fp16",
            use_cpu=self.plan.device == "cpu",
            train_sampling_strategy="group_by_length" if t.group_by_length else "random",
            report_to=list(t.report_to),
            disable_tqdm=True,
            remove_unused_columns=False,
            dataloader_num_workers=0,
            save_only_model=False,
            # several processes (training/distributed.py): a LoRA adapter's parameters all get gradients
            ddp_find_unused_parameters=False,
            ddp_timeout=round(self.config.daemon.distributed_timeout_seconds),
        )

    def _micro_batch_tokens(self) -> int:
        """Slicing saves memory at little cost where memory is the host's; a GPU runs whole batches faster.
        Never under several processes: each slice is a backward with its all-reduce, and ranks whose batches
        were sliced differently would wait on each other for ever."""
        budget = self.config.training.micro_batch_tokens
        if self.world.size > 1:
            return 0
        return budget if budget is not None else (0 if self.plan.device == "cuda" else 512)

    def train(self, prepared: Prepared, *, callbacks=()) -> FileResult:
        """Train the warm model on one prepared file and commit a new adapter version.

        If a callback stops training early, a checkpoint is saved and the file is
        reported "interrupted"; nothing is committed, and the in-memory adapter is
        put back to the head. If the promotion gate refuses the new version, it is
        committed as kept-not-current; with on_reject "continue" it is the new head
        all the same, with "rollback" the warm model goes back to the current version.
        """
        started = time.perf_counter()
        self.gate.hold_out(prepared)
        snapshot = self._adapter_snapshot()
        try:
            trainer, output, progress, losses = self.fit(prepared, callbacks=callbacks)
            steps = trainer.state.global_step
            final_loss = losses[-1] if losses else output.training_loss
            if trainer.sliced_batches:
                self.events.emit("sliced", f"{prepared.name}: {trainer.sliced_batches} batches were over "
                                 f"training.micro_batch_tokens ({trainer.micro_batch_tokens}) and ran "
                                 "in row slices (same step, less memory)", file=prepared.name,
                                 batches=trainer.sliced_batches)
            if steps < trainer.state.max_steps:  # stopped by a callback; its checkpoint resumes the file
                self._restore_adapter(snapshot)
                return FileResult("interrupted", None, steps, time.perf_counter() - started, final_loss,
                                  progress.tokens_per_s())
            version = self.store.next_version()
            verdict = self._judge(prepared, version, snapshot) if self.gate.active(self.config) else None
            seconds = time.perf_counter() - started
            rollback = bool(verdict and not verdict.promoted
                            and self.config.training.promotion.on_reject == "rollback")
            self._commit(prepared, version, steps=steps, seconds=seconds, final_loss=final_loss, verdict=verdict,
                         rollback=rollback)
            if rollback:
                self._load_version(self.state.current_adapter)  # the next file trains from the served version
        except BaseException:
            # Nothing was committed (a crash in training, a full disk): the warm model goes back to the
            # head, and the file will be trained again from there.
            self._restore_adapter(snapshot)
            raise
        remove_tree(self.checkpoints_dir / prepared.sha256[:16])
        return FileResult("trained", version, steps, seconds, final_loss, progress.tokens_per_s(),
                          output.metrics.get("train_runtime", 0.0), verdict)

    def fit(self, prepared: Prepared, *, callbacks=(), resume: str | None = None):
        """The Trainer's run over the file, resuming its newest checkpoint; what every rank does in step.
        Rank 0 first hands the other ranks the file's examples, the checkpoint and its adapter; they call this
        with what they received. Returns the trainer, its output, the progress callback and the losses."""
        from transformers import PrinterCallback

        ckpt_dir = self.checkpoints_dir / prepared.sha256[:16]
        if self.world.main:
            ckpt_dir.mkdir(parents=True, exist_ok=True)
            found = latest_checkpoint(ckpt_dir)
            resume = str(found) if found else None
            self.world.hand_over({"op": "train", "name": prepared.name, "sha256": prepared.sha256,
                                  "encoded": prepared.encoded, "resume": resume,
                                  "global_step": self.state.global_step})
        self.world.share(self.model)
        collator = PaddingCollator(self.tokenizer.pad_token_id)
        losses: list[float] = []
        progress = ProgressCallback(title=prepared.name, collator=collator, events=self.events,
                                    step_offset=self.state.global_step, on_loss=losses.append,
                                    quiet_seconds=self.config.training.quiet_seconds)
        x = self.config.experimental
        if x.preference_weight and add_reference_logps(self.model, prepared.encoded, self.tokenizer.pad_token_id,
                                                        precision=self.plan.precision):
            self.events.emit("reference", f"{prepared.name}: reference log-probabilities of the preference pairs "
                             f"from adapter {self.state.head or '(new)'}", file=prepared.name)
        if add_old_logps(self.model, prepared.encoded, self.tokenizer.pad_token_id, precision=self.plan.precision):
            self.events.emit("reference", f"{prepared.name}: log-probabilities of the sampled answers under adapter "
                             f"{self.state.head or '(new)'}, the policy-gradient loss's ratio and KL reference",
                             file=prepared.name)
        trainer = SupervisedTrainer(
            model=self.model,
            args=self._arguments(ckpt_dir),
            train_dataset=_Rows(prepared.encoded),
            data_collator=collator,
            processing_class=self.tokenizer,
            # under several processes the ranks meet after every other callback of a step (StepTogether)
            callbacks=[progress, *callbacks, *([StepTogether(self.world)] if self.world.size > 1 else [])],
            extra_logs=self.trainer_logs,
            micro_batch_tokens=self._micro_batch_tokens(),
            unlikelihood_weight=x.unlikelihood_weight,
            preference_weight=x.preference_weight,
            preference_beta=x.preference_beta,
            policy_epsilon=self.config.practice.grpo_epsilon,
            policy_beta=self.config.practice.grpo_beta,
        )
        trainer.remove_callback(PrinterCallback)
        if resume:
            self.events.emit("resume", f"{prepared.name}: resuming from {Path(resume).name}", file=prepared.name)
        try:
            with half_precision_base(self.model, self.plan.precision):
                output = trainer.train(resume_from_checkpoint=resume)
        except DistributedFault:
            raise
        except Exception as e:
            if self.world.size > 1:  # the group is in an unknown state: every rank stops, the file is kept
                raise self.world.fault(f"training {prepared.name}", e) from e
            raise
        if self.world.size > 1:
            # drop this file's DDP wrapper now: the next file wraps the model afresh, and the gradient hooks of
            # two live wrappers would each all-reduce
            trainer.accelerator.free_memory()
            trainer.model_wrapped = trainer.model
            gc.collect()
        return trainer, output, progress, losses

    def _adapter_snapshot(self) -> dict:
        return {k: v.detach().clone() for k, v in self.model.named_parameters() if v.requires_grad}

    def _restore_adapter(self, snapshot: dict) -> None:
        params = dict(self.model.named_parameters())
        with torch.no_grad():
            for k, v in snapshot.items():
                params[k].copy_(v)

    # -- judge ----------------------------------------------------------------------------------

    def _load_version(self, version: str | None) -> None:
        """A committed version's adapter weights into the warm model (None: a fresh adapter, the base model's
        answers: every LoRA B matrix zero)."""
        from peft import set_peft_model_state_dict
        from safetensors.torch import load_file

        if version is None:
            with torch.no_grad():
                for name, p in self.model.named_parameters():
                    if p.requires_grad and "lora_B" in name:
                        p.zero_()
            return
        set_peft_model_state_dict(self.model, load_file(self.store.path(version) / "adapter_model.safetensors"))

    def _judge(self, prepared: Prepared, version: str, snapshot: dict) -> Verdict:
        """The promotion gate: the freshly trained weights against the current version's, each swapped into the
        warm model in turn (`snapshot`: the head's, trained from), then the trained weights back."""
        trained = self._adapter_snapshot()

        def score(which: str | None, items) -> dict[str, bool]:
            if which == version:
                self._restore_adapter(trained)
            elif which == self.state.head:
                self._restore_adapter(snapshot)
            else:
                self._load_version(which)
            try:
                return self.gate.score(self.model, items, self.config)
            finally:
                self._restore_adapter(trained)

        started = time.perf_counter()
        verdict = self.gate.judge(config=self.config, file=prepared.name, candidate=version,
                                  current=self.state.current_adapter, score=score)
        seconds = time.perf_counter() - started
        self.events.emit("promotion", f"{version} {'promoted' if verdict.promoted else 'NOT promoted'}: "
                         f"{verdict.reason} ({seconds:.1f}s)", file=prepared.name, seconds=round(seconds, 2),
                         **verdict.summary())
        return verdict

    # -- commit -------------------------------------------------------------------------------

    def _commit(self, prepared: Prepared, version: str, *, steps: int, seconds: float, final_loss,
                verdict: Verdict | None, rollback: bool = False) -> None:
        """`rollback`: a refused version that the next file does not train from (on_reject "rollback")."""
        promoted = verdict is None or verdict.promoted
        # Tokens as well as examples: records differ in length (a correction's prompt carries the answer and
        # its codes), so equal steps are not equal compute. `tokens` is what went through the model (a
        # preference pair's rejected answer is a second pass), `supervised_tokens` what carried the loss.
        passes = self.config.training.epochs_per_file
        record = {"name": prepared.name, "sha256": prepared.sha256, "examples": len(prepared.encoded),
                  "tokens": round(passes * sum(len(e.input_ids) + len(e.rejected_ids or ()) for e in prepared.encoded)),
                  "supervised_tokens": round(passes * sum(e.trainable for e in prepared.encoded)),
                  "steps": steps, "adapter": version, "seconds": round(seconds, 3), "promoted": promoted}
        staging = self.store.staging(version)
        try:
            self.events.phase("saving", f"{prepared.name}: saving adapter {version}", file=prepared.name)
            self._write_version(staging, record, final_loss=final_loss)
            fault_point("adapter.staged")
            if not self.state_path.exists():
                # a new root's state is written before its first version is renamed into place: a missing state
                # then always means a lost one, and a version on disk that no state names, a save cut short
                self.state.save(self.state_path)
            self.store.promote(staging, version)
        finally:
            remove_tree(staging)  # gone after the rename; after a failure, nothing partial stays

        # The commit point: one atomic write makes the file trained, the version the training head (unless it
        # is rolled back) and current (or kept, not current, when the gate refused it).
        committed = TrainingState(global_step=self.state.global_step + steps,
                                  current_adapter=version if promoted else self.state.current_adapter,
                                  versions=[*self.state.versions, version],
                                  files_trained=[*self.state.files_trained, record],
                                  rejected=self.state.rejected + ([] if promoted else [version]),
                                  head=self.state.current_adapter if rollback else version,
                                  refused_in_a_row=0 if promoted else self.state.refused_in_a_row + 1)
        try:
            fault_point("adapter.promoted")
            committed.save(self.state_path)
        except BaseException:
            remove_tree(self.store.path(version))  # never current, never named by a commit
            raise
        parent, self.state = self.state.head, committed

        # Committed: what follows is housekeeping, and a failure in it must not undo the commit
        # (the `current` link is repaired and old versions pruned again at the next start or save).
        try:
            fault_point("adapter.committed")
            if promoted:
                self.store.point_current(version)
            pruned = self.store.prune(self.state.versions, self.config.training.keep_versions,
                                      {version, self.state.current_adapter, self.state.head} - {None})
            if pruned:
                self.state.versions = [v for v in self.state.versions if v not in pruned]
                self.state.rejected = [v for v in self.state.rejected if v not in pruned]
                self.state.save(self.state_path)
        except OSError as e:
            self.events.emit("error", f"adapter {version} is committed, but updating the current link or pruning "
                             f"failed: {e}")
        if promoted:
            self.events.emit("adapter", f"saved adapter {version} (global step {self.state.global_step}, parent "
                             f"{parent or 'none'})", version=version, global_step=self.state.global_step,
                             pid=os.getpid())
        else:
            served = self.state.current_adapter or "the base model"
            self.events.emit("adapter", f"kept adapter {version} but did not promote it ({verdict.reason}); "
                             f"{served} stays current and training goes on from "
                             + ("it (training.promotion.on_reject rollback)" if rollback else f"{version}, the head"),
                             version=version, global_step=self.state.global_step, promoted=False,
                             head=self.state.head, pid=os.getpid())
            self._alarm(verdict)

    def _alarm(self, verdict: Verdict) -> None:
        """After `alarm_after` refusals in a row: the head has drifted from what is served; say so with the
        evidence, and how to move the head back."""
        refused, limit = self.state.refused_in_a_row, self.config.training.promotion.alarm_after
        if refused < limit:
            return
        served = self.state.current_adapter or "base"
        message = (f"the training head {self.state.head} was refused {refused} times in a row (the latest: "
                   f"{verdict.reason}); {served} is still served. If the recent files hurt, move the head back: "
                   f"selfcorrect rollback {served} (or python train.py --rollback {served})")
        try:  # for --status and the page; the event below is the record
            atomic_write_json(self.gate.items.dir / "alarm.json", {"message": message, "refused_in_a_row": refused,
                                                                  "head": self.state.head, "current": served})
        except OSError as e:
            self.events.emit("error", f"could not write the alarm for --status: {e}")
        self.events.emit("alarm", message, refused_in_a_row=refused, head=self.state.head,
                         current=self.state.current_adapter,
                         **{k: v for k, v in verdict.summary().items() if k not in ("reason", "current")})

    def _write_version(self, staging: Path, record: dict, *, final_loss) -> None:
        """The adapter, its tokenizer, lineage and resolved config, into a staging folder."""
        self.model.save_pretrained(staging, safe_serialization=True)
        copy_tokenizer_files(self.model_path, staging)
        meta = {"version": record["adapter"], "parent": self.state.head,
                "global_step": self.state.global_step + record["steps"], "base_model": self.model_path,
                "file": record, "final_loss": final_loss, "created": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
        (staging / "meta.json").write_text(json.dumps(meta, indent=2) + "\n")
        (staging / "config.resolved.json").write_text(self.config.model_dump_json(indent=2) + "\n")
