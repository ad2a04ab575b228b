"""The Trainer subclass: loss on supervised tokens only, and checkpoints that appear whole."""
from __future__ import annotations

import os
import re
from pathlib import Path

import torch
import torch.nn.functional as F
from transformers import Trainer

from .encoding import IGNORE
from .faults import fault_point
from .fsutil import durable_replace, fsync_tree, remove_tree

CHECKPOINT = re.compile(r"^checkpoint-(\d+)$")


def latest_checkpoint(folder: Path) -> Path | None:
    """The newest complete mid-file checkpoint; staging leftovers never count."""
    if not Path(folder).is_dir():
        return None
    found = [(int(m.group(1)), p) for p in Path(folder).iterdir() if (m := CHECKPOINT.match(p.name))]
    return max(found)[1] if found else None


class SupervisedTrainer(Trainer):
    # compute_loss divides by the supervised tokens of the whole accumulated batch.
    loss_is_scaled_for_ga = True

    def __init__(self, *args, extra_logs: dict | None = None, micro_batch_tokens: int = 0,
                 unlikelihood_weight: float = 0.0, **kwargs):
        super().__init__(*args, **kwargs)
        self.extra_logs = extra_logs if extra_logs is not None else {}
        self.micro_batch_tokens = micro_batch_tokens
        self.unlikelihood_weight = unlikelihood_weight
        self.sliced_batches = 0

    def training_step(self, model, inputs, num_items_in_batch=None):
        """A batch over `micro_batch_tokens` goes through the model in row slices, each backward on its own.

        Activation memory grows with rows x length; slicing bounds it while the optimizer step stays the
        same: every slice's loss is divided by the supervised tokens of the whole batch, so the slices'
        gradients add up to the batch's gradient.
        """
        rows, width = inputs["input_ids"].shape
        per_slice = max(1, self.micro_batch_tokens // width) if self.micro_batch_tokens else rows
        if per_slice >= rows:
            return super().training_step(model, inputs, num_items_in_batch)
        if num_items_in_batch is None:
            num_items_in_batch = int((inputs["labels"][:, 1:] != IGNORE).sum())
        self.sliced_batches += 1
        loss = None
        for start in range(0, rows, per_slice):
            part = {k: v[start:start + per_slice] for k, v in inputs.items()}
            used = int(part["attention_mask"].sum(dim=1).max())  # right padding: drop the slice's empty columns
            part = {k: v[:, :used] for k, v in part.items()}
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
        """Cross-entropy over the response tokens only, plus the unlikelihood of rejected answers' tokens.

        The vocabulary projection is the costliest layer of a small model
        (49k x 576 for SmolLM2); running it only where a label exists skips the
        prompt and padding positions, which are most of a short QA batch.
        """
        unlikely = inputs.pop("unlikely", None)
        causal_lm = model.get_base_model() if hasattr(model, "get_base_model") else model
        decoder, head = causal_lm.get_decoder(), causal_lm.get_output_embeddings()
        if return_outputs or decoder is None or head is None:
            return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
        labels = inputs["labels"]
        hidden = decoder(input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"]).last_hidden_state
        targets = labels[:, 1:]
        keep = targets != IGNORE
        logits = head(hidden[:, :-1][keep]).float()
        loss = F.cross_entropy(logits, targets[keep], reduction="sum")
        if unlikely is not None and self.unlikelihood_weight:
            # -log(1 - p(rejected token)) where the model's wrong answer departed from the right one
            down = unlikely[:, 1:] != IGNORE
            p = F.softmax(head(hidden[:, :-1][down]).float(), dim=-1).gather(1, unlikely[:, 1:][down][:, None])
            loss = loss - self.unlikelihood_weight * torch.log1p(-p.clamp(max=1 - 1e-6)).sum()
        count = num_items_in_batch if num_items_in_batch is not None else keep.sum()
        return loss / torch.clamp(torch.as_tensor(count, device=loss.device), min=1)

    def _get_output_dir(self, trial):
        return getattr(self, "_staging_dir", None) or super()._get_output_dir(trial)

    def _save_checkpoint(self, model, trial):
        """Write the checkpoint into a staging folder, fsync, rename; keep only the newest.

        Trainer writes checkpoint-N in place with no fsync; a kill mid-save would
        leave a folder that resume cannot load.
        """
        final_root = Path(self.args.output_dir)
        self._staging_dir = str(final_root / f".staging-{os.getpid()}")
        remove_tree(Path(self._staging_dir))
        try:
            super()._save_checkpoint(model, trial)
            name = f"checkpoint-{self.state.global_step}"
            staged = Path(self._staging_dir) / name
            fsync_tree(staged)
            fault_point("checkpoint.staged")
            durable_replace(staged, final_root / name)
        finally:
            remove_tree(Path(self._staging_dir))
            self._staging_dir = None
        for p in final_root.iterdir():
            if (m := CHECKPOINT.match(p.name)) and int(m.group(1)) < self.state.global_step:
                remove_tree(p)
