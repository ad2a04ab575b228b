"""The Trainer subclass: loss on supervised tokens only, and checkpoints that appear whole."""
from __future__ import annotations

import re
from contextlib import contextmanager
from pathlib import Path

import torch
import torch.nn.functional as F
from transformers import Trainer

from core.encoding import IGNORE
from core.faults import fault_point
from core.fsutil import durable_replace, fsync_tree, remove_tree
from inference.weights import params_as

CHECKPOINT = re.compile(r"^checkpoint-(\d+)$")


def latest_checkpoint(folder: Path) -> Path | None:
    """The newest complete mid-file checkpoint; staging leftovers never count."""
    if not Path(folder).is_dir():
        return None
    found = [(int(m.group(1)), p) for p in Path(folder).iterdir() if (m := CHECKPOINT.match(p.name))]
    return max(found)[1] if found else None


PREFERENCE_KEYS = ("rejected_input_ids", "rejected_labels", "rejected_attention_mask", "reference")
HALF = {"bf16": torch.bfloat16, "fp16": torch.float16}


@contextmanager
def half_precision_base(model, precision: str):
    """The frozen weights of the model's linear layers held as bf16 (fp16) copies while it trains under autocast;
    the fp32 originals are put back untouched afterwards.

    Autocast casts a linear layer's fp32 weight to half precision on every call, forward and each row slice, and
    a frozen base's weights never change: one copy made up front saves those casts (about 5 % of a bf16 training
    step, docs/experiments/speed.md) with the same numbers, as autocast would make the very same copy. An output
    projection tied to the input embedding (most small models) keeps fp32: the embedding's lookup stays fp32.
    Skipped where the copies do not fit in free memory."""
    embedding = model.get_input_embeddings().weight
    weights = [m.weight for name, m in model.named_modules() if isinstance(m, torch.nn.Linear)
               and m.weight is not embedding and "lora_" not in name  # an adapter beside the trained one is not base
               and not m.weight.requires_grad and m.weight.dtype == torch.float32]
    with params_as(weights, HALF.get(precision)):
        yield model


def decoder_and_head(model):
    """The causal LM's decoder stack and vocabulary projection, under a peft wrapper or not (None if absent)."""
    causal_lm = model.get_base_model() if hasattr(model, "get_base_model") else model
    return causal_lm.get_decoder(), causal_lm.get_output_embeddings()


def response_logps(decoder, head, batch: dict):
    """The decoder's hidden states, and log p of each supervised token with the row it belongs to."""
    hidden = decoder(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).last_hidden_state
    targets = batch["labels"][:, 1:]
    keep = targets != IGNORE
    logits = head(hidden[:, :-1][keep]).float()
    return hidden, -F.cross_entropy(logits, targets[keep], reduction="none"), keep.nonzero()[:, 0]


def per_row(token_values: torch.Tensor, rows: torch.Tensor, n: int) -> torch.Tensor:
    return torch.zeros(n, dtype=token_values.dtype, device=token_values.device).index_add_(0, rows, token_values)


@torch.no_grad()
def start_token_logps(model, rows: list[tuple[list[int], list[int]]], pad_id: int, *, precision: str,
                      batch_size: int = 16) -> list[torch.Tensor]:
    """Log p of each supervised token of each (ids, labels) row under the model as it is now (the file's start
    adapter, before its first step; a resumed file gets the same, before its checkpoint is loaded), in eval mode:
    the references of the preference and policy-gradient losses."""
    from core.encoding import pad_rows

    decoder, head = decoder_and_head(model)
    device = next(model.parameters()).device
    out = []
    was_training = model.training
    model.eval()  # no dropout: the reference is the adapter itself
    try:
        for start in range(0, len(rows), batch_size):
            chunk = rows[start:start + batch_size]
            ids, labels, mask = pad_rows(chunk, max(len(i) for i, _ in chunk), pad_id)
            batch = {"input_ids": ids.to(device), "attention_mask": mask.to(device), "labels": labels.to(device)}
            with torch.autocast(device.type, dtype=HALF.get(precision), enabled=precision in HALF):
                _, token_logps, owner = response_logps(decoder, head, batch)
            out.extend(token_logps[owner == k].float() for k in range(len(chunk)))
    finally:
        model.train(was_training)
    return out


def add_reference_logps(model, encoded: list, pad_id: int, *, precision: str) -> int:
    """Log p of each pair's response and rejected answer under the file's start adapter, the reference of the
    preference loss; computed once per file, as TRL's precompute_ref_log_probs. Returns the number of pairs."""
    pairs = [e for e in encoded if e.rejected_ids]
    chosen = start_token_logps(model, [(e.input_ids, e.labels) for e in pairs], pad_id, precision=precision)
    worse = start_token_logps(model, [(e.rejected_ids, e.rejected_labels) for e in pairs], pad_id, precision=precision)
    for e, a, b in zip(pairs, chosen, worse):
        e.reference = (float(a.sum()), float(b.sum()))
    return len(pairs)


def add_old_logps(model, encoded: list, pad_id: int, *, precision: str) -> int:
    """Log p of each supervised token of the policy-gradient records under the file's start adapter: the
    denominator of the loss's probability ratio and the reference of its KL term (TRL's old_per_token_logps).
    Returns the number of records."""
    rows = [e for e in encoded if e.advantage is not None]
    for e, logps in zip(rows, start_token_logps(model, [(e.input_ids, e.labels) for e in rows], pad_id,
                                                precision=precision)):
        e.old_logps = logps.tolist()
    return len(rows)


def policy_gradient_loss(token_logps: torch.Tensor, old_logps: torch.Tensor, advantages: torch.Tensor, *,
                         epsilon: float, beta: float) -> torch.Tensor:
    """GRPO's clipped surrogate per token, summed (TRL's GRPOTrainer, loss_type "dapo": the caller divides by the
    supervised tokens of the accumulated batch): -min(ratio x A, clip(ratio, 1 +- epsilon) x A), ratio = p / p_old,
    plus beta x the k3 estimate of KL(policy || old), exp(old - logp) - (old - logp) - 1, weighed by the ratio (the
    samples came from the old policy; TRL's use_bias_correction_kl). On the file's first step the ratio is 1 and
    the gradient is the plain REINFORCE one, A x grad log p."""
    ratio = torch.exp(token_logps - old_logps)
    per_token = -torch.minimum(ratio * advantages, torch.clamp(ratio, 1 - epsilon, 1 + epsilon) * advantages)
    if beta:
        delta = old_logps - token_logps
        per_token = per_token + beta * (torch.exp(delta) - delta - 1) * ratio
    return per_token.sum()


class SupervisedTrainer(Trainer):
    # compute_loss divides by the supervised tokens of the whole accumulated batch.
    loss_is_scaled_for_ga = True

    def __init__(self, *args, extra_logs: dict | None = None, micro_batch_tokens: int = 0,
                 unlikelihood_weight: float = 0.0, preference_weight: float = 0.0, preference_beta: float = 0.1,
                 policy_epsilon: float = 0.2, policy_beta: float = 0.0, **kwargs):
        super().__init__(*args, **kwargs)
        self.extra_logs = extra_logs if extra_logs is not None else {}
        self.micro_batch_tokens = micro_batch_tokens
        self.unlikelihood_weight = unlikelihood_weight
        self.preference_weight, self.preference_beta = preference_weight, preference_beta
        self.policy_epsilon, self.policy_beta = policy_epsilon, policy_beta
        self.sliced_batches = 0

    def training_step(self, model, inputs, num_items_in_batch=None):
        """A batch over `micro_batch_tokens` goes through the model in row slices, each backward on its own.

        Activation memory grows with rows x length; slicing bounds it while the optimizer step stays the
        same: every slice's loss is divided by the supervised tokens of the whole batch, so the slices'
        gradients add up to the batch's gradient. The rows go longest first and each slice is as wide as its own
        longest row, so the short rows of a mixed batch run together, without the long rows' padding, and more
        of them fit in a slice.
        """
        rows, width = inputs["input_ids"].shape
        lengths = inputs["attention_mask"].sum(dim=1)
        if "rejected_input_ids" in inputs:  # a preference pair's rejected answer runs in the slice too
            width *= 2
            lengths = 2 * torch.maximum(lengths, inputs["rejected_attention_mask"].sum(dim=1))
        if not self.micro_batch_tokens or rows * width <= self.micro_batch_tokens:
            return super().training_step(model, inputs, num_items_in_batch)
        if num_items_in_batch is None:
            num_items_in_batch = int((inputs["labels"][:, 1:] != IGNORE).sum())
        self.sliced_batches += 1
        order, start, loss = lengths.argsort(descending=True, stable=True), 0, None
        while start < rows:
            take = order[start:start + max(1, self.micro_batch_tokens // max(1, int(lengths[order[start]])))]
            start += len(take)
            part = {k: v[take] for k, v in inputs.items()}
            # right padding: drop the slice's empty columns (rejected answers share the batch's width)
            used = max(int(part[k].sum(dim=1).max()) for k in ("attention_mask", "rejected_attention_mask") if k in part)
            part = {k: v if k == "reference" or v.dim() == 1 else v[:, :used] for k, v in part.items()}
            part_loss = super().training_step(model, part, num_items_in_batch)
            loss = part_loss if loss is None else loss + part_loss
        return loss

    def log(self, logs, start_time=None):
        """Callbacks' metrics (live evaluation) join the next log, so log history and report_to see them."""
        if self.extra_logs:
            logs = {**logs, **self.extra_logs}
            self.extra_logs.clear()
        super().log(logs, start_time)

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        """Cross-entropy over the response tokens only, plus the unlikelihood of rejected answers' tokens and
        the preference loss of rejected answers; records with an advantage (grpo practice) take the
        policy-gradient loss instead.

        The vocabulary projection is the costliest layer of a small model
        (49k x 576 for SmolLM2); running it only where a label exists skips the
        prompt and padding positions, which are most of a short QA batch.
        """
        unlikely = inputs.pop("unlikely", None)
        rejected = {k: inputs.pop(k) for k in PREFERENCE_KEYS if k in inputs}
        policy = {k: inputs.pop(k) for k in ("advantage", "old_logps") if k in inputs}
        count = num_items_in_batch if num_items_in_batch is not None else (inputs["labels"][:, 1:] != IGNORE).sum()
        if policy:
            loss = self._policy_loss(model, inputs, **policy)
            return loss / torch.clamp(torch.as_tensor(count, device=loss.device), min=1)
        if return_outputs or self.accelerator.num_processes > 1:
            # several processes: the batch must go through DDP's forward, which readies the gradients'
            # all-reduce, so the model computes its own loss (over every position, as a plain Trainer does)
            return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
        decoder, head = decoder_and_head(model)
        if decoder is None or head is None:
            return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
        # accelerate puts autocast (bf16, fp16) around the wrapped model's forward only; the decoder and the head
        # are called here directly, so they need it said again, or "bf16" training would run in fp32
        with self.accelerator.autocast():
            hidden, token_logps, rows = response_logps(decoder, head, inputs)
            loss = -token_logps.sum()
            if unlikely is not None and self.unlikelihood_weight:
                # -log(1 - p(rejected token)) where the model's wrong answer departed from the right one
                down = unlikely[:, 1:] != IGNORE
                p = F.softmax(head(hidden[:, :-1][down]).float(), dim=-1).gather(1, unlikely[:, 1:][down][:, None])
                loss = loss - self.unlikelihood_weight * torch.log1p(-p.clamp(max=1 - 1e-6)).sum()
            if rejected and self.preference_weight and rejected["rejected_attention_mask"].any():
                chosen = per_row(token_logps, rows, len(inputs["input_ids"]))
                loss = loss + self.preference_weight * self._preference_loss(decoder, head, rejected, chosen).sum()
        return loss / torch.clamp(torch.as_tensor(count, device=loss.device), min=1)

    def _policy_loss(self, model, inputs: dict, advantage: torch.Tensor, old_logps: torch.Tensor) -> torch.Tensor:
        """The policy-gradient loss of records sampled and scored by grpo practice (summed over tokens). Under
        several processes the batch goes through the wrapped model's forward (DDP readies its all-reduce there);
        alone, through the decoder and only the supervised rows of the head, as the cross-entropy does."""
        keep = inputs["labels"][:, 1:] != IGNORE
        decoder, head = decoder_and_head(model)
        if self.accelerator.num_processes > 1 or decoder is None or head is None:
            logits = model(input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"]).logits
            logits = logits[:, :-1][keep].float()
            token_logps = -F.cross_entropy(logits, inputs["labels"][:, 1:][keep], reduction="none")
            rows = keep.nonzero()[:, 0]
        else:
            with self.accelerator.autocast():
                _, token_logps, rows = response_logps(decoder, head, inputs)
        return policy_gradient_loss(token_logps.float(), old_logps[:, 1:][keep].to(token_logps.device),
                                    advantage.to(token_logps.device)[rows], epsilon=self.policy_epsilon,
                                    beta=self.policy_beta)

    def _preference_loss(self, decoder, head, rejected: dict, chosen: torch.Tensor) -> torch.Tensor:
        """DPO (Rafailov et al., 2023), per row that has a rejected answer: -log sigmoid(beta x how much more the
        response gained over the rejected answer since the file's start adapter). The shared start of both
        answers cancels out, so the push falls where the wrong answer departed and after."""
        pairs = rejected["rejected_attention_mask"].any(dim=1)
        batch = {k[len("rejected_"):]: v[pairs] for k, v in rejected.items() if k.startswith("rejected_")}
        _, token_logps, rows = response_logps(decoder, head, batch)
        worse = per_row(token_logps, rows, int(pairs.sum()))
        reference = rejected["reference"][pairs].to(worse)
        margin = (chosen[pairs] - reference[:, 0]) - (worse - reference[:, 1])
        return -F.logsigmoid(self.preference_beta * margin)

    def _get_output_dir(self, trial):
        return getattr(self, "_staging_dir", None) or super()._get_output_dir(trial)

    def _save_checkpoint(self, model, trial):
        """Write the checkpoint into a staging folder, fsync, rename; keep only the newest.

        Trainer writes checkpoint-N in place with no fsync; a kill mid-save would
        leave a folder that resume cannot load. Under several processes every rank
        writes its RNG state into the same staging folder, and rank 0 alone renames
        it once all have (the others wait).
        """
        final_root = Path(self.args.output_dir)
        self._staging_dir = str(final_root / ".staging")
        main = self.args.should_save
        if main:
            remove_tree(Path(self._staging_dir))
        self.accelerator.wait_for_everyone()
        try:
            super()._save_checkpoint(model, trial)
            self.accelerator.wait_for_everyone()
            if main:
                name = f"checkpoint-{self.state.global_step}"
                staged = Path(self._staging_dir) / name
                fsync_tree(staged)
                fault_point("checkpoint.staged")
                durable_replace(staged, final_root / name)
                fault_point("checkpoint.saved")
        finally:
            if main:
                remove_tree(Path(self._staging_dir))
            self._staging_dir = None
        if main:
            for p in final_root.iterdir():
                if (m := CHECKPOINT.match(p.name)) and int(m.group(1)) < self.state.global_step:
                    remove_tree(p)
