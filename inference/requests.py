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
    prompt: str | None = None  # a raw prompt, continued as is; or
    prompt_ids: list[int] | None = None  # a prompt as token ids (no special tokens added)
    max_new_tokens: int = 256  # 0: score the prompt only (prompt_logprobs), no new token
    temperature: float = 0.0
    top_p: float = 1.0
    top_k: int = 0  # 0: no top-k
    n: int = 1  # completions of this prompt (they share its prefill)
    seed: int = 0
    stop: tuple[str, ...] = ()  # stop strings, not included in the text
    stop_at_final_answer: bool = False  # for numeric answers: end once the final-answer line is complete
    logprobs: bool = False  # each token's log-probability under the model (before temperature)
    top_logprobs: int = 0  # with logprobs: the N most likely tokens at each step, with theirs
    prompt_logprobs: int | None = None  # each prompt token's log-probability given those before it, N alternatives
    # End a row that loops or enumerates (see LoopStop, enumerating): for our own questions, whose answers are
    # short. A server's client asked for what it asked for, so serving turns it off.
    cut_runaways: bool = True
    ignore_eos: bool = False  # decode max_new_tokens whatever the model says (benchmarks; vLLM's ignore_eos)
    strip: bool = True  # the text without surrounding whitespace; a server's client gets it as generated
    on_token: Callable[[int, int], None] | None = None  # called with (sample index, token id) as each token comes
    cancel: threading.Event | None = None  # once set, the request's rows end at the next token ("cancelled")


@dataclass
class Completion:
    text: str
    tokens: list[int]
    # "stop" (a stop token or string), "length", "final_answer", "loop", "enumeration" or "cancelled"
    finish_reason: str
    logprobs: list[float] | None = None
    top_logprobs: list[list[tuple[int, float]]] | None = None  # per token: (token id, log-prob), most likely first


@dataclass
class Result:
    prompt_tokens: int
    completions: list[Completion] = field(default_factory=list)
    completion_tokens: int = 0  # all completions together (a remote provider has counts, not token ids)
    # with prompt_logprobs: the prompt's token ids and each one's log-prob and alternatives (the first: None)
    prompt_ids: list[int] | None = None
    prompt_logprobs: list[float | None] | None = None
    prompt_top_logprobs: list[list[tuple[int, float]] | None] | None = None


def check_request(r: Request) -> None:
    if r.n < 1 or r.max_new_tokens < 0:
        raise ValueError(f"n must be at least 1 and max_new_tokens at least 0 (got {r.n}, {r.max_new_tokens})")
    if r.max_new_tokens == 0 and r.prompt_logprobs is None:
        raise ValueError("max_new_tokens 0 scores the prompt: ask for prompt_logprobs, or for at least one token")
    if any(not s for s in r.stop):
        raise ValueError("stop: a stop string must not be empty")
    if r.messages is None and r.prompt is None and not r.prompt_ids:
        raise ValueError("a request needs messages, a prompt or prompt token ids")
