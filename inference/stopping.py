"""When an answer ends, short of its token limit: a loop (the same block of tokens three times in a row), an
enumeration (lines of one shape with changing numbers), a complete final-answer line, or a stop token."""
from __future__ import annotations

import re

import torch
from transformers import StoppingCriteria

LOOP_REPEATS = 3  # a block of tokens repeated this many times in a row ends the answer
LOOP_MAX_PERIOD = 64
LOOP_MIN_TOKENS = 24  # never stop on a short repetition such as "1 + 1 + 1"
ENUMERATION_LINES = 10  # this many lines of one shape with changing numbers end the answer
FINAL_MARKER = re.compile(r"####|\\boxed|answer is", re.I)
MARKER_TOKENS = 8  # the newest tokens searched for a final-answer marker
# A final answer is complete at the end of each match: the #### line ended, the box closed, or the
# "answer is" sentence with a number in it ended (a space or a new line after its full stop).
FINAL_ANSWER_DONE = (
    re.compile(r"####[ \t]*\S[^\n]*\n"),
    re.compile(r"\\boxed\{[^{}]*\}"),
    re.compile(r"answer is[:\s]*[^\n]*?\d[^\n]*?\.(?=\s)|answer is[:\s]*[^\n]*?\d[^\n]*\n", re.I),
)



class LoopStop(StoppingCriteria):
    """Ends a row once its answer has fallen into a loop (the same block of tokens three times in a row).

    A looping answer would otherwise run to its token limit while the others wait; the loop
    adds nothing to the answer, which is judged wrong either way.
    """

    def __init__(self, prompt_length: int):
        self.prompt_length = prompt_length

    def __call__(self, input_ids, scores, **kwargs):
        generated = input_ids[:, self.prompt_length:]
        done = torch.zeros(input_ids.shape[0], dtype=torch.bool, device=input_ids.device)
        n = generated.shape[1]
        for period in range(1, min(LOOP_MAX_PERIOD, n // LOOP_REPEATS) + 1):
            span = period * LOOP_REPEATS
            if span < LOOP_MIN_TOKENS:
                continue
            tail = generated[:, -span:].reshape(-1, LOOP_REPEATS, period)
            done |= (tail == tail[:, :1]).all(dim=2).all(dim=1)
        return done


def enumerating(text: str) -> bool:
    """True when the last ENUMERATION_LINES complete lines share one shape and differ only in their numbers
    (`3 * 0 = 0`, `3 * 1 = 3`, ...): an answer counting upward that no token loop catches."""
    lines = text.split("\n")[:-1][-ENUMERATION_LINES:]
    if len(lines) < ENUMERATION_LINES or not all(re.search(r"\d", line) for line in lines):
        return False
    shapes = {re.sub(r"\d+", "#", line).strip() for line in lines}
    return len(shapes) == 1 and len(set(lines)) > 1


def final_answer_end(text: str) -> int | None:
    """Where the text's first complete final answer ends (None: none yet)."""
    ends = [m.end() for p in FINAL_ANSWER_DONE if (m := p.search(text))]
    return min(ends) if ends else None


def stop_token_ids(tokenizer, model) -> list[int]:
    ids = {tokenizer.eos_token_id}
    eos = getattr(model.generation_config, "eos_token_id", None)
    ids.update(eos if isinstance(eos, list) else [eos])
    return sorted(i for i in ids if i is not None)
