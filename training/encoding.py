"""Examples -> token ids and labels, with the loss only on what the model should say.

Chats are rendered with the tokenizer's chat template; the trainable spans are
found as characters (each assistant turn, end-of-turn marker included) and
mapped to tokens through the tokenizer's offsets, so the prompt tokens are the
same ones the model sees at inference.
"""
from __future__ import annotations

from dataclasses import dataclass

from .data import Example
from .errors import DataError

IGNORE = -100


@dataclass
class Encoded:
    input_ids: list[int]
    labels: list[int]
    unlikely: tuple[int, int] | None = None  # (position, token): where a rejected answer departs, and its token

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
    msgs, spans, text = example.messages, [], ""
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
        spans.append((len(prefix), len(upto)))
        text = upto
    return text, spans


def encode(tokenizer, example: Example, *, use_template: bool, max_length: int, unlikelihood: bool = False) -> Encoded:
    text, spans = _spans(tokenizer, example, use_template)
    enc = tokenizer(text, add_special_tokens=not use_template, return_offsets_mapping=True, truncation=False)
    ids, offsets = enc["input_ids"][:max_length], enc["offset_mapping"][:max_length]
    labels = [IGNORE] * len(ids)
    for k, (start, end) in enumerate(offsets):
        if end > start and any(s <= start < e for s, e in spans):
            labels[k] = ids[k]
    unlikely = _departure(tokenizer, example, ids, labels, use_template) if unlikelihood else None
    return Encoded(ids, labels, unlikely)


def _departure(tokenizer, example: Example, ids: list[int], labels: list[int], use_template: bool):
    """Where the record's `rejected` answer (in place of its last answer) first departs from it, in tokens.

    Only that token is pushed down: the tokens before it are shared by both answers, and the ones after
    follow from it."""
    rejected = example.meta.get("rejected")
    if not isinstance(rejected, str) or not rejected.strip() or example.messages is None:
        return None
    last = max(i for i, m in enumerate(example.messages) if m["role"] == "assistant")
    messages = [*example.messages[:last], {"role": "assistant", "content": rejected}, *example.messages[last + 1:]]
    text, _ = _spans(tokenizer, Example(example.line, messages=messages), use_template)
    other = tokenizer(text, add_special_tokens=not use_template)["input_ids"]
    k = next((k for k, (a, b) in enumerate(zip(ids, other)) if a != b), None)
    return (k, other[k]) if k is not None and labels[k] != IGNORE else None


def encode_file(tokenizer, examples: list[Example], *, path, use_template: bool, max_length: int,
                unlikelihood: bool = False) -> list[Encoded]:
    """Encode every example; refuse the file if any example would train nothing or everything wrongly."""
    out, problems = [], []
    for ex in examples:
        try:
            e = encode(tokenizer, ex, use_template=use_template, max_length=max_length, unlikelihood=unlikelihood)
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


class PaddingCollator:
    """Pads a batch to its longest example (right side), labels padded with IGNORE; with rejected
    answers, an `unlikely` tensor of the same shape holds each row's token to push down.

    It also counts supervised tokens, so progress can report tokens/s.
    """

    def __init__(self, pad_id: int):
        self.pad_id = pad_id
        self.supervised_tokens = 0

    def __call__(self, features: list[dict]) -> dict:
        import torch

        width = max(len(f["input_ids"]) for f in features)
        ids = torch.full((len(features), width), self.pad_id, dtype=torch.long)
        labels = torch.full((len(features), width), IGNORE, dtype=torch.long)
        mask = torch.zeros((len(features), width), dtype=torch.long)
        for row, f in enumerate(features):
            n = len(f["input_ids"])
            ids[row, :n] = torch.tensor(f["input_ids"])
            labels[row, :n] = torch.tensor(f["labels"])
            mask[row, :n] = 1
        self.supervised_tokens += int((labels[:, 1:] != IGNORE).sum())
        batch = {"input_ids": ids, "attention_mask": mask, "labels": labels}
        if any(f.get("unlikely") for f in features):  # rejected answers: the token to push down, per row
            batch["unlikely"] = torch.full((len(features), width), IGNORE, dtype=torch.long)
            for row, f in enumerate(features):
                if f.get("unlikely"):
                    position, token = f["unlikely"]
                    batch["unlikely"][row, position] = token
        return batch
