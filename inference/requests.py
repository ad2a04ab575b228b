"""What the sampling engine is asked and what it answers: a request (chat messages or a raw prompt, with its own
limits and sampling settings) and its result (K completions, each with its tokens, why it ended and, when asked,
each token's log-probability)."""
from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Callable


@dataclass
class Request:
    """What to answer and how. `temperature` 0 is greedy (then top_p, top_k and seed do not matter)."""

    messages: list[dict] | None = None  # chat messages ending with a user turn; or
    prompt: str | None = None  # a raw prompt, continued as is
    max_new_tokens: int = 256
    temperature: float = 0.0
    top_p: float = 1.0
    top_k: int = 0  # 0: no top-k
    n: int = 1  # completions of this prompt (they share its prefill)
    seed: int = 0
    stop: tuple[str, ...] = ()  # stop strings, not included in the text
    stop_at_final_answer: bool = False  # for numeric answers: end once the final-answer line is complete
    logprobs: bool = False  # each token's log-probability under the model (before temperature)
    # End a row that loops or enumerates (see LoopStop, enumerating): for our own questions, whose answers are
    # short. A server's client asked for what it asked for, so serving turns it off.
    cut_runaways: bool = True
    on_token: Callable[[int, int], None] | None = None  # called with (sample index, token id) as each token comes
    cancel: threading.Event | None = None  # once set, the request's rows end at the next token ("cancelled")


@dataclass
class Completion:
    text: str
    tokens: list[int]
    # "stop" (a stop token or string), "length", "final_answer", "loop", "enumeration" or "cancelled"
    finish_reason: str
    logprobs: list[float] | None = None


@dataclass
class Result:
    prompt_tokens: int
    completions: list[Completion] = field(default_factory=list)
    completion_tokens: int = 0  # all completions together (a remote provider has counts, not token ids)


def check_request(r: Request) -> None:
    if r.n < 1 or r.max_new_tokens < 1:
        raise ValueError(f"n and max_new_tokens must be at least 1 (got {r.n}, {r.max_new_tokens})")
    if any(not s for s in r.stop):
        raise ValueError("stop: a stop string must not be empty")
    if r.messages is None and r.prompt is None:
        raise ValueError("a request needs messages or a prompt")
