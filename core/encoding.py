"""Examples -> token ids and labels, with the loss only on what the model should say.

Chats are rendered with the tokenizer's chat template; the trainable spans are
found as characters (each assistant turn, end-of-turn marker included) and
mapped to tokens through the tokenizer's offsets, so the prompt tokens are the
same ones the model sees at inference.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass

from .data import Example
from .errors import DataError

IGNORE = -100


@dataclass
class Encoded:
    input_ids: list[int]
    labels: list[int]
    unlikely: tuple[int, int] | None = None  # (position, token): where a rejected answer departs, and its token
    rejected_ids: list[int] | None = None  # the same record with its rejected answer, for preference training
    rejected_labels: list[int] | None = None
    reference: tuple[float, float] | None = None  # log p(response), log p(rejected) under the file's start adapter
    advantage: float | None = None  # a policy-gradient record (grpo practice): how much better than its group
    old_logps: list[float] | None = None  # log p of each supervised token under the file's start adapter (grpo)

    @property
    def trainable(self) -> int:
        return sum(1 for t in self.labels if t != IGNORE)


def wants_chat_template(tokenizer, mode: str) -> bool:
    if mode == "never":
        return False
    has = bool(getattr(tokenizer, "chat_template", None))
    if mode == "always" and not has:
        raise DataError("config", [(0, "model.use_chat_template is 'always' but the tokenizer has no chat template")])
    return has


def render_prompt(tokenizer, messages: list[dict], use_template: bool) -> str:
    """The text the model continues from at inference: the conversation so far plus the assistant cue."""
    if use_template:
        return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    return "".join(_plain_turn(tokenizer, m) for m in messages)


def _plain_turn(tokenizer, message: dict) -> str:
    """Without a template, an answer ends with EOS (so generation stops) and other turns with a blank line."""
    end = (tokenizer.eos_token or "") if message["role"] == "assistant" else "\n\n"
    return message["content"] + end


def _spans(tokenizer, example: Example, use_template: bool) -> tuple[str, list[tuple[int, int]]]:
    """The full text and the character spans that carry loss."""
    if example.text is not None:
        text = example.text + (tokenizer.eos_token or "")
        return text, [(0, len(text))]
    # A turn of weight 0 is rendered as context, its span left without loss; the key never reaches the template.
    msgs = [{"role": m["role"], "content": m["content"]} for m in example.messages]
    trained = [m.get("weight", 1) == 1 for m in example.messages]
    spans, text = [], ""
    for i, m in enumerate(msgs):
        if m["role"] != "assistant":
            continue
        prefix = render_prompt(tokenizer, msgs[:i], use_template)
        if use_template:
            upto = tokenizer.apply_chat_template(msgs[: i + 1], tokenize=False)
        else:
            upto = prefix + _plain_turn(tokenizer, m)
        if not upto.startswith(prefix) or (text and not prefix.startswith(text)):
            raise ValueError("the chat template does not render turns as prefixes of each other; set model.use_chat_template to never")
        if trained[i]:
            spans.append((len(prefix), len(upto)))
        text = upto
    return text, spans


def encode(tokenizer, example: Example, *, use_template: bool, max_length: int, unlikelihood: bool = False,
           preference: bool = False) -> Encoded:
    """Token ids and labels; with `unlikelihood`, where a rejected answer departs; with `preference`, the
    record encoded once more with its rejected answer (records without one train as usual)."""
    ids, labels = _ids_and_labels(tokenizer, example, use_template, max_length)
    if "advantage" in example.meta:  # trained by its advantage alone (checked by encode_file)
        return Encoded(ids, labels, advantage=float(example.meta["advantage"]))
    rejected = _with_rejected(example) if unlikelihood or preference else None
    if rejected is None:
        return Encoded(ids, labels)
    other, other_labels = _ids_and_labels(tokenizer, rejected, use_template, max_length)
    k = next((k for k, (a, b) in enumerate(zip(ids, other)) if a != b), None)
    # Only the departing token is pushed down: the tokens before it are shared by both answers, and the ones
    # after follow from it.
    unlikely = (k, other[k]) if unlikelihood and k is not None and labels[k] != IGNORE else None
    if preference and k is not None:
        return Encoded(ids, labels, unlikely, other, other_labels)
    return Encoded(ids, labels, unlikely)


def _ids_and_labels(tokenizer, example: Example, use_template: bool, max_length: int) -> tuple[list[int], list[int]]:
    text, spans = _spans(tokenizer, example, use_template)
    enc = tokenizer(text, add_special_tokens=not use_template, return_offsets_mapping=True, truncation=False)
    ids, offsets = enc["input_ids"][:max_length], enc["offset_mapping"][:max_length]
    labels = [IGNORE] * len(ids)
    for k, (start, end) in enumerate(offsets):
        if end > start and any(s <= start < e for s, e in spans):
            labels[k] = ids[k]
    return ids, labels


def _with_rejected(example: Example) -> Example | None:
    """The record with its `rejected` answer in place of its last answer; None when it has none."""
    rejected = example.meta.get("rejected")
    if not isinstance(rejected, str) or not rejected.strip() or example.messages is None:
        return None
    last = max(i for i, m in enumerate(example.messages) if m["role"] == "assistant")
    messages = [*example.messages[:last], {"role": "assistant", "content": rejected}, *example.messages[last + 1:]]
    return Example(example.line, messages=messages)


def encode_file(tokenizer, examples: list[Example], *, path, use_template: bool, max_length: int,
                unlikelihood: bool = False, preference: bool = False) -> list[Encoded]:
    """Encode every example; refuse the file if any example would train nothing or everything wrongly."""
    out, problems = [], _advantage_problems(examples)
    refused = {line for line, _ in problems}
    for ex in examples:
        if ex.line in refused:
            continue
        try:
            e = encode(tokenizer, ex, use_template=use_template, max_length=max_length, unlikelihood=unlikelihood,
                       preference=preference)
        except ValueError as err:
            problems.append((ex.line, str(err)))
            continue
        if e.trainable == 0:
            problems.append(
                (ex.line, f"no response token is left within training.max_seq_length ({max_length}); "
                 "shorten the prompt or raise the limit")
            )
        elif ex.messages is not None and e.trainable == len(e.input_ids):
            problems.append((ex.line, "the loss mask covers the prompt too; check model.use_chat_template"))
        out.append(e)
    if problems:
        raise DataError(path, problems, "examples whose response fits within training.max_seq_length")
    return out


def _advantage_problems(examples: list[Example]) -> list[tuple[int, str]]:
    """A file trains by advantage (policy gradient) in every record or in none: each record's "advantage" must
    then be a finite number."""
    with_advantage = [ex for ex in examples if "advantage" in ex.meta]
    if not with_advantage:
        return []
    problems = []
    for ex in examples:
        value = ex.meta.get("advantage")
        if "advantage" not in ex.meta:
            problems.append((ex.line, f'no "advantage": {len(with_advantage)} other records of this file have one, '
                                      "and a file trains by advantage in every record or in none"))
        elif isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            problems.append((ex.line, f'"advantage" must be a finite number, not {json.dumps(value)[:40]}'))
    return problems


class PaddingCollator:
    """Pads a batch to its longest example (right side), labels padded with IGNORE; with rejected
    answers, an `unlikely` tensor of the same shape holds each row's token to push down; for preference
    training, `rejected_*` tensors hold each row's rejected answer (all padding in rows without one) and
    `reference` the two log-probabilities under the file's start adapter; for policy-gradient records,
    `advantage` per row and `old_logps` per supervised token.

    It also counts supervised tokens, so progress can report tokens/s.
    """

    def __init__(self, pad_id: int):
        self.pad_id = pad_id
        self.supervised_tokens = 0

    def __call__(self, features: list[dict]) -> dict:
        import torch

        width = max(len(ids) for f in features for ids in (f["input_ids"], f.get("rejected_ids") or []))
        ids, labels, mask = pad_rows([(f["input_ids"], f["labels"]) for f in features], width, self.pad_id)
        self.supervised_tokens += int((labels[:, 1:] != IGNORE).sum())
        batch = {"input_ids": ids, "attention_mask": mask, "labels": labels}
        if any(f.get("unlikely") for f in features):  # rejected answers: the token to push down, per row
            batch["unlikely"] = torch.full((len(features), width), IGNORE, dtype=torch.long)
            for row, f in enumerate(features):
                if f.get("unlikely"):
                    position, token = f["unlikely"]
                    batch["unlikely"][row, position] = token
        # preference training: each row's rejected answer (padding where it has none), same width
        if any(f.get("rejected_ids") for f in features):
            rejected = [(f.get("rejected_ids") or [], f.get("rejected_labels") or []) for f in features]
            batch["rejected_input_ids"], batch["rejected_labels"], batch["rejected_attention_mask"] = \
                pad_rows(rejected, width, self.pad_id)
            batch["reference"] = torch.tensor([f.get("reference") or (0.0, 0.0) for f in features])
        # policy-gradient records: each row's advantage, and each supervised token's log p under the file's start
        # adapter at that token's place in `labels` (0 elsewhere)
        if any(f.get("advantage") is not None for f in features):
            batch["advantage"] = torch.tensor([float(f.get("advantage") or 0.0) for f in features])
            batch["old_logps"] = torch.zeros((len(features), width))
            for row, f in enumerate(features):
                if f.get("old_logps"):
                    batch["old_logps"][row, 1 + (labels[row, 1:] != IGNORE).nonzero()[:, 0]] = \
                        torch.tensor(f["old_logps"])
        return batch


def pad_rows(rows: list[tuple[list[int], list[int]]], width: int, pad_id: int):
    """(ids, labels) rows -> input_ids, labels, attention_mask tensors, right-padded to `width`."""
    import torch

    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    labels = torch.full((len(rows), width), IGNORE, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for row, (row_ids, row_labels) in enumerate(rows):
        if row_ids:
            ids[row, :len(row_ids)] = torch.tensor(row_ids)
            labels[row, :len(row_ids)] = torch.tensor(row_labels)
            mask[row, :len(row_ids)] = 1
    return ids, labels, mask
