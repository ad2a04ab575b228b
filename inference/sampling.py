"""The sampling engine: every answer the model gives goes through `SamplingEngine.generate`.

Live evaluation, second attempts, the promotion gate, `selfcorrect eval` and `selfcorrect
initial-answers` all ask it. A request is chat messages (or a raw prompt) with its own
limits and sampling settings; the answer is K completions, each with its tokens, why it
ended and, when asked, each token's log-probability under the model (requests.py).
This module holds the sampler, the batch and the decode loop; when a row ends is stopping.py,
the weights it decodes with weights.py, how many rows fit memory.py.

How it runs (one decode loop for greedy and sampling alike):
- Continuous batching: up to `max_batch` completions decode together. Each prompt is encoded
  and prefilled once and its KV cache rows repeated for its K samples; when rows end, waiting
  requests are prefilled and join the running batch (caches padded on the left to one width),
  so one long answer never holds the others. `run(take, deliver)` is the loop for callers whose
  requests keep arriving (the server); `generate(requests)` answers a list.
- Greedy rows take the argmax, so greedy gives exactly the tokens
  `model.generate(do_sample=False)` gives (a test checks it). Sampled rows draw by the
  Gumbel-max trick from the tempered, top-k and top-p filtered distribution, with a random
  generator per row seeded by (request seed, sample index): the same request gives the same
  samples whatever else is in the batch.
- A row leaves the batch (and the KV cache) as soon as it ends: at a stop token, a stop
  string, its token limit, a loop (the same block of tokens three times in a row), an
  enumeration (ENUMERATION_LINES lines of one pattern with changing numbers, such as
  `3 * 7 = 21`), or, for a short-answer request, once its final-answer line is complete
  (`#### X`, `\\boxed{X}`, `The answer is X.`).
- The LoRA adapter is merged into copies of the weights it touches while the answers are
  generated (one matmul per layer instead of three), where memory allows; then, where the
  hardware has native bf16 (a CPU with AVX-512 BF16 or AMX, a CUDA GPU that supports it),
  the weights are decoded from bf16 copies (measured 1.8x the fp32 tokens/s on a 2-core
  AMD EPYC with AVX-512 BF16). The original tensors are put back untouched, so training
  continues on bit-identical weights.
- The model is put in eval mode for the call and given back in the mode it was in, with the
  global RNG state untouched, so answering mid-training does not change the training trajectory.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import torch
from transformers import DynamicCache
from transformers.cache_utils import DynamicLayer

from core.encoding import render_prompt
from inference.attention import decode_attention
from inference.memory import decode_rows
from inference.requests import Completion, Request, Result, check_request
from inference.stopping import (FINAL_MARKER, LOOP_MAX_PERIOD, LOOP_REPEATS, MARKER_TOKENS, LoopStop, enumerating,
                                final_answer_end, stop_token_ids)
from inference.weights import decode_dtype, merged_lora, weights_as


@dataclass
class _Row:
    """One completion in the making."""

    request: Request
    key: object  # whose request it is (handed back with the result)
    generator: torch.Generator | None  # None for greedy rows
    sample: int = 0  # which of the request's n completions
    tokens: list[int] = field(default_factory=list)
    logprobs: list[float] = field(default_factory=list)
    top_logprobs: list[list[tuple[int, float]]] = field(default_factory=list)
    finish_reason: str = ""
    watch: bool = False  # a final-answer marker was seen: check the text at every step
    owner: "_Open | None" = None  # the admitted request this row answers


NUCLEUS_CANDIDATES = 256  # a row's top-p nucleus is looked for among its most likely tokens first


def _choose(logits: torch.Tensor, rows: list[_Row]) -> torch.Tensor:
    """The next token of each row: argmax for greedy rows; Gumbel-max over the tempered, top-k and top-p
    filtered distribution for the others, with each row's own generator."""
    token = logits.argmax(-1)
    sampled = [k for k, r in enumerate(rows) if r.generator is not None]
    if not sampled:
        return token
    idx = torch.tensor(sampled, device=logits.device)
    scores = logits[idx].float() / torch.tensor([rows[k].request.temperature for k in sampled],
                                                device=logits.device)[:, None]
    for j, k in enumerate(sampled):
        r = rows[k].request
        if r.top_k and r.top_k < scores.shape[1]:
            kth = torch.topk(scores[j], r.top_k).values[-1]
            scores[j] = scores[j].masked_fill(scores[j] < kth, float("-inf"))
    top_p = torch.tensor([rows[k].request.top_p for k in sampled], device=logits.device)[:, None]
    generators = [rows[k].generator for k in sampled]
    # Where a row's nucleus lies within its most likely candidates (nearly always at top-p < 1 with a trained
    # model), the tokens past them cannot be drawn, so only the candidates are ranked and get noise: sorting the
    # whole vocabulary for every row was half of a sampling step. Each row's path depends on its own distribution
    # alone, never on its batch.
    inside = torch.zeros(len(sampled), dtype=torch.bool, device=logits.device)
    if bool((top_p < 1).any()):
        candidates = min(NUCLEUS_CANDIDATES, scores.shape[1])
        top, order = scores.softmax(-1).topk(candidates, dim=-1)
        before = top.cumsum(-1) - top  # the mass of the tokens above each one
        inside = (top_p[:, 0] < 1) & (before[:, -1] + top[:, -1] >= top_p[:, 0])
    if bool(inside.any()):
        sel = inside.nonzero()[:, 0]
        kept = scores[sel].gather(1, order[sel]).masked_fill(before[sel] >= top_p[sel], float("-inf"))
        noise = torch.stack([torch.rand(candidates, generator=generators[j]) for j in sel.tolist()])
        chosen = (kept + _gumbel(noise).to(scores.device)).argmax(-1, keepdim=True)
        token[idx[sel]] = order[sel].gather(1, chosen)[:, 0]
    if not bool(inside.all()):
        sel = (~inside).nonzero()[:, 0]
        rest, rest_p = scores[sel], top_p[sel]
        if bool((rest_p < 1).any()):
            ordered, by_rank = rest.sort(dim=-1, descending=True)
            probs = ordered.softmax(-1)
            above = probs.cumsum(-1) - probs  # the mass of the tokens above each one
            rest = torch.full_like(rest, float("-inf")).scatter(1, by_rank,
                                                                ordered.masked_fill(above >= rest_p, float("-inf")))
        noise = torch.stack([torch.rand(rest.shape[1], generator=generators[j]) for j in sel.tolist()])
        token[idx[sel]] = (rest + _gumbel(noise).to(scores.device)).argmax(-1)
    return token


def _gumbel(uniform: torch.Tensor) -> torch.Tensor:
    return -torch.log(-torch.log(uniform.clamp_min(1e-20)))


LOOP_WINDOW = LOOP_MAX_PERIOD * LOOP_REPEATS  # the newest tokens the loop check looks at


def _joinable(cache: DynamicCache) -> bool:
    """Rows can join a running batch when every layer's cache is a plain tensor per layer (not a sliding window,
    not quantized or offloaded): then its keys and values can be padded and concatenated."""
    return all(type(layer) is DynamicLayer for layer in cache.layers)


@dataclass
class _Batch:
    """The rows decoded together: their KV cache, left-padded attention mask, the position of each row's last
    token, the next token's logits, and each row's newest tokens (for the loop check)."""

    rows: list[_Row]
    cache: DynamicCache
    mask: torch.Tensor
    positions: torch.Tensor  # [rows, 1]
    logits: torch.Tensor
    recent: torch.Tensor  # [rows, <= LOOP_WINDOW]
    prompt_logits: torch.Tensor | None = None  # every prompt position's logits, when the prefill was asked for them

    def select(self, keep: torch.Tensor) -> None:
        """Keep these rows, and drop the leading columns that are padding in every row left (their keys and
        values are masked out, and each row's positions are its own, so nothing changes but the work)."""
        self.cache.batch_select_indices(keep)
        self.rows = [self.rows[k] for k in keep.tolist()]
        self.mask, self.positions, self.recent = self.mask[keep], self.positions[keep], self.recent[keep]
        self.logits = self.logits[keep]
        lead = int((self.mask.sum(0) == 0).int().cumprod(0).sum())
        if lead and _joinable(self.cache):
            self.pad(-lead)

    def pad(self, columns: int) -> None:
        """Add this many columns of padding on the left (a negative number removes them)."""
        for layer in self.cache.layers:
            if columns > 0:
                b, h, _, d = layer.keys.shape
                layer.keys = torch.cat([layer.keys.new_zeros((b, h, columns, d)), layer.keys], dim=2)
                layer.values = torch.cat([layer.values.new_zeros((b, h, columns, d)), layer.values], dim=2)
            else:
                layer.keys, layer.values = layer.keys[:, :, -columns:], layer.values[:, :, -columns:]
        self.mask = (torch.cat([self.mask.new_zeros((len(self.rows), columns)), self.mask], dim=1) if columns > 0
                     else self.mask[:, -columns:])

    def join(self, other: "_Batch") -> None:
        """Take the rows of a newly prefilled batch in (both caches padded on the left to one width)."""
        width = max(self.mask.shape[1], other.mask.shape[1])
        for b in (self, other):
            if b.mask.shape[1] < width:
                b.pad(width - b.mask.shape[1])
        for mine, theirs in zip(self.cache.layers, other.cache.layers):
            mine.keys = torch.cat([mine.keys, theirs.keys])
            mine.values = torch.cat([mine.values, theirs.values])
        recent = max(self.recent.shape[1], other.recent.shape[1])
        self.rows += other.rows
        self.mask = torch.cat([self.mask, other.mask])
        self.positions = torch.cat([self.positions, other.positions])
        self.logits = torch.cat([self.logits, other.logits])
        self.recent = torch.cat([_left_fill(self.recent, recent), _left_fill(other.recent, recent)])


def _left_fill(recent: torch.Tensor, width: int) -> torch.Tensor:
    """Pad the newest-token window on the left with distinct negative numbers, which never look like a loop."""
    missing = width - recent.shape[1]
    if missing <= 0:
        return recent
    fill = torch.arange(-missing, 0, device=recent.device).expand(recent.shape[0], missing)
    return torch.cat([fill.to(recent.dtype), recent], dim=1)


def token_logprobs(logits: torch.Tensor, chosen: torch.Tensor, top: int
                   ) -> tuple[list[float], list[list[tuple[int, float]]] | None]:
    """Each position's chosen token's log-prob under `logits` [positions, vocab] (before any temperature), and,
    for `top` > 0, the `top` most likely tokens with theirs: one rule for prompt and completion tokens, so a
    greedy token's log-prob equals the best alternative's exactly."""
    logp = logits.float().log_softmax(-1)
    picked = logp.gather(1, chosen[:, None])[:, 0].tolist()
    if not top:
        return picked, None
    best = logp.topk(min(top, logp.shape[-1]), dim=-1)
    return picked, [list(zip(i, v)) for i, v in zip(best.indices.tolist(), best.values.tolist())]


@torch.no_grad()
def prefill(model, input_ids, attention_mask, rows: list[_Row], repeat: torch.Tensor | None = None, *,
            all_logits: bool = False) -> _Batch:
    """Left-padded prompts through the model once; `repeat[i]` is the prompt of row i (a prompt's K samples
    share its prefill: its cache rows are repeated). Default: one row per prompt. `all_logits`: keep every
    prompt position's logits too (for the prompt's log-probs), from the same forward."""
    cache = DynamicCache()
    positions = (attention_mask.long().cumsum(-1) - 1).masked_fill(attention_mask == 0, 0)
    # the last position as an index tensor, not logits_to_keep=1: that slice is a strided view, and torch's matmul
    # projects a strided [rows, 1, hidden] by copying the output embedding once per row (1.8 GB for 32 rows of the
    # default model, two thirds of the prefill's time); indexing gives a contiguous [rows, 1, hidden]
    last = torch.tensor([input_ids.shape[1] - 1], device=input_ids.device)
    every = model(input_ids=input_ids, attention_mask=attention_mask, position_ids=positions,
                  past_key_values=cache, use_cache=True, logits_to_keep=0 if all_logits else last).logits
    logits = every[:, -1]
    if repeat is not None:
        repeat = repeat.to(input_ids.device)
        cache.batch_select_indices(repeat)
        logits, attention_mask, positions = logits[repeat], attention_mask[repeat], positions[repeat]
    return _Batch(rows, cache, attention_mask, positions[:, -1:], logits, input_ids.new_zeros((len(rows), 0)),
                  every if all_logits else None)


@torch.no_grad()
def decode(model, tokenizer, admit: Callable[[int], _Batch | None], *, stops: list[int],
           finished: Callable[[_Row], None] = lambda row: None) -> None:
    """The one decode loop, with continuous batching: before each step, `admit(rows running)` may bring newly
    prefilled rows, which join the batch; a row leaves it (and the KV cache) as soon as it ends, and
    `finished(row)` gets it. Returns once no row runs and nothing is admitted."""
    batch: _Batch | None = None
    loop_stop = LoopStop(0)
    stop = None
    while True:
        joining = admit(len(batch.rows) if batch else 0)
        if joining is not None:
            if batch is None:
                batch = joining
            else:
                batch.join(joining)
        if batch is None:
            return
        if stop is None:
            stop = torch.tensor(stops, device=batch.logits.device, dtype=torch.long)
        rows = batch.rows
        token = _choose(batch.logits, rows)
        chosen_logp, top = None, None
        if any(r.request.logprobs for r in rows):
            chosen_logp, top = token_logprobs(batch.logits, token, max(r.request.top_logprobs for r in rows
                                                                         if r.request.logprobs))
        batch.recent = torch.cat([batch.recent, token[:, None]], dim=1)[:, -LOOP_WINDOW:]
        hit_stop, looped = torch.isin(token, stop).tolist(), loop_stop(batch.recent, None).tolist()
        going = []
        for k, (row, t) in enumerate(zip(rows, token.tolist())):
            row.tokens.append(t)
            if chosen_logp is not None and row.request.logprobs:
                row.logprobs.append(chosen_logp[k])
                if row.request.top_logprobs:
                    row.top_logprobs.append(top[k][:row.request.top_logprobs])
            row.finish_reason = ("stop" if hit_stop[k] and not row.request.ignore_eos
                                 else "loop" if looped[k] and row.request.cut_runaways else _finished(tokenizer, row))
            if row.request.on_token is not None:
                row.request.on_token(row.sample, t)
            if row.finish_reason:
                finished(row)
            else:
                going.append(k)
        if not going:
            batch = None
            continue
        if len(going) < len(rows):
            keep = torch.tensor(going, device=token.device)
            batch.select(keep)
            token = token[keep]
        batch.mask = torch.cat([batch.mask, batch.mask.new_ones((len(batch.rows), 1))], dim=1)
        batch.positions = batch.positions + 1
        batch.logits = model(input_ids=token[:, None], attention_mask=batch.mask, position_ids=batch.positions,
                             past_key_values=batch.cache, use_cache=True, logits_to_keep=1).logits[:, -1]


def greedy_tokens(model, tokenizer, input_ids, attention_mask, *, max_new_tokens: int, stops: list[int]
                  ) -> list[list[int]]:
    """The greedy tokens of each left-padded prompt, through the one decode loop (for callers that bring
    their own batch: tests and benchmarks)."""
    rows = [_Row(Request(max_new_tokens=max_new_tokens), k, None) for k in range(len(input_ids))]
    pending = [prefill(model, input_ids, attention_mask, rows)]
    decode(model, tokenizer, lambda running: pending.pop() if pending else None, stops=stops)
    return [r.tokens for r in rows]


def _finished(tokenizer, row: _Row) -> str:
    """Why the row ends after its newest token, short of a stop token or a loop ("" if it goes on). The whole
    text is decoded only where a check can fire: a stop string asked for, a new line (an enumeration), or a
    final-answer marker seen in the last few tokens (a marker can span tokens)."""
    r = row.request
    if r.cancel is not None and r.cancel.is_set():
        return "cancelled"
    if len(row.tokens) >= r.max_new_tokens:
        return "length"
    newline = r.cut_runaways and "\n" in tokenizer.decode(row.tokens[-1:], skip_special_tokens=True)
    if r.stop_at_final_answer and not row.watch:
        row.watch = bool(FINAL_MARKER.search(tokenizer.decode(row.tokens[-MARKER_TOKENS:], skip_special_tokens=True)))
    if not (r.stop or row.watch or newline):
        return ""
    text = tokenizer.decode(row.tokens, skip_special_tokens=True)
    if r.stop and any(s in text for s in r.stop):
        return "stop"
    if newline and enumerating(text):
        return "enumeration"
    if row.watch and final_answer_end(text) is not None:
        return "final_answer"
    return ""


@dataclass
class _Open:
    """A request admitted and not yet answered: its completions arrive as its rows end."""

    request: Request
    prompt_tokens: int
    rows: list[_Row]
    left: int
    prompt_ids: list[int] | None = None  # with prompt_logprobs: the prompt, each token's log-prob, alternatives
    prompt_logprobs: list[float | None] | None = None
    prompt_top_logprobs: list | None = None


class SamplingEngine:
    """Answers requests with one model, with continuous batching: up to `max_batch` completions decode together,
    each prompt prefilled once, a finished row's slot given to the next waiting request."""

    def __init__(self, model, tokenizer, *, use_template: bool, max_batch: int | None = None, dtype="auto"):
        self.model, self.tokenizer, self.use_template = model, tokenizer, use_template
        self.dtype = decode_dtype(model) if dtype == "auto" else dtype  # None: the weights as they are
        self._max_batch = max_batch

    @property
    def max_batch(self) -> int:
        """Completions decoded together: as asked, else sized from the model and free memory (on first use)."""
        if self._max_batch is None:
            self._max_batch = decode_rows(self.model, self.dtype)
        return self._max_batch

    def render(self, request: Request) -> str:
        if request.messages is not None:
            return render_prompt(self.tokenizer, request.messages, self.use_template)
        if request.prompt is None:
            raise ValueError("a request needs messages or a prompt")
        return request.prompt

    def generate(self, requests: list[Request], on_result: Callable[[int, Result], None] | None = None
                 ) -> list[Result]:
        """One Result per request, in order, with `request.n` completions each. `on_result(index, result)` is
        called as each request ends (out of order), for callers that keep each result as it comes. A request
        cancelled before it started is never prefilled: its Result has no completions."""
        for r in requests:
            check_request(r)
        waiting = list(enumerate(requests))
        results: list[Result | None] = [None] * len(requests)

        def deliver(key: int, result: Result) -> None:
            results[key] = result
            if on_result is not None:
                on_result(key, result)

        def take(free: int) -> list[tuple[object, Request]]:
            taken = []
            while waiting and waiting[0][1].cancel is not None and waiting[0][1].cancel.is_set():
                deliver(waiting.pop(0)[0], Result(prompt_tokens=0))
            # a request with more completions than a batch holds goes alone
            while waiting and (waiting[0][1].n <= free or free == self.max_batch and not taken):
                taken.append(waiting.pop(0))
                free -= taken[-1][1].n
            return taken

        self.run(take, deliver)
        return results

    def run(self, take: Callable[[int], list[tuple[object, Request]]],
            deliver: Callable[[object, Result], None]) -> None:
        """Answer what `take(free completion slots)` gives, (key, request) pairs, until it gives nothing and every
        row has ended; `deliver(key, result)` gets each request's result as soon as its last completion ends.
        The model is in eval mode for the call and given back as it was, the global RNG state untouched."""
        model, tokenizer = self.model, self.tokenizer
        was_training, side = model.training, tokenizer.padding_side
        cpu_rng = torch.get_rng_state()
        cuda_rng = torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None
        tokenizer.padding_side = "left"
        model.eval()
        device = next(model.parameters()).device
        joinable = [True]  # until a prefill shows a cache that cannot take rows mid-way

        def admit(running: int) -> _Batch | None:
            if running >= self.max_batch or running and not joinable[0]:
                return None
            pairs = take(self.max_batch - running)
            if not pairs:
                return None
            for _, r in pairs:
                check_request(r)
            batch = self._encode_prompts([r for _, r in pairs])
            rows, owners = [], []
            for k, (key, r) in enumerate(pairs):
                owner = _Open(r, int(batch["attention_mask"][k].sum()), [], r.n)
                owner.rows = [_Row(r, key, None if r.temperature <= 0 else
                                   torch.Generator().manual_seed((r.seed * 100_003 + s) % 2**64), s, owner=owner)
                              for s in range(r.n)]
                rows += owner.rows
                owners.append(owner)
            repeat = torch.repeat_interleave(torch.arange(len(pairs)), torch.tensor([r.n for _, r in pairs]))
            scoring = any(r.prompt_logprobs is not None for _, r in pairs)
            joined = prefill(model, batch["input_ids"].to(device), batch["attention_mask"].to(device), rows, repeat,
                             all_logits=scoring)
            joinable[0] = _joinable(joined.cache)
            if scoring:
                self._score_prompts(owners, batch, joined.prompt_logits)
                joined.prompt_logits = None
            going = [k for k, row in enumerate(joined.rows) if row.request.max_new_tokens > 0]
            if len(going) < len(joined.rows):  # scored only: answered by the prefill, no decoding
                for row in joined.rows:
                    if row.request.max_new_tokens == 0:
                        row.finish_reason = "length"
                        finished(row)
                if not going:
                    return admit(running)
                joined.select(torch.tensor(going, device=device))
            return joined

        def finished(row: _Row) -> None:
            row.owner.left -= 1
            if row.owner.left == 0:
                deliver(row.key, self._result(row.owner))

        try:
            stops = stop_token_ids(tokenizer, model)
            with merged_lora(model), weights_as(model, self.dtype), decode_attention(model, self.dtype):
                decode(model, tokenizer, admit, stops=stops, finished=finished)
        finally:
            tokenizer.padding_side = side
            model.train(was_training)
            torch.set_rng_state(cpu_rng)
            if cuda_rng is not None:
                torch.cuda.set_rng_state_all(cuda_rng)

    @staticmethod
    def _score_prompts(owners: list[_Open], batch: dict, logits: torch.Tensor) -> None:
        """Each prompt token's log-prob given the tokens before it (the first has none), from the prefill's logits
        of the whole left-padded batch: one forward for every prompt admitted together."""
        for k, owner in enumerate(owners):
            top = owner.request.prompt_logprobs
            if top is None:
                continue
            start = int((batch["attention_mask"][k] == 0).sum())  # the left padding
            ids = batch["input_ids"][k, start:]
            picked, alternatives = token_logprobs(logits[k, start:-1], ids[1:].to(logits.device), top)
            owner.prompt_ids = ids.tolist()
            owner.prompt_logprobs = [None, *picked]
            owner.prompt_top_logprobs = [None, *alternatives] if alternatives is not None else None

    def _result(self, o: _Open) -> Result:
        result = Result(o.prompt_tokens, prompt_ids=o.prompt_ids, prompt_logprobs=o.prompt_logprobs,
                        prompt_top_logprobs=o.prompt_top_logprobs)
        for row in o.rows:
            wanted = row.request.logprobs
            result.completions.append(Completion(
                self.text(row.request, row.tokens, row.finish_reason), row.tokens, row.finish_reason,
                row.logprobs if wanted else None, row.top_logprobs if wanted and row.request.top_logprobs else None))
            result.completion_tokens += len(row.tokens)
        return result

    def text(self, request: Request, tokens: list[int], finish_reason: str = "") -> str:
        """A completion's text: its tokens decoded, cut before a stop string and after a final answer, stripped
        (unless the request says not to).
        Mid-way (finish_reason ""), the text so far."""
        text = self.tokenizer.decode(tokens, skip_special_tokens=True)
        for s in request.stop:
            text = text.split(s, 1)[0]
        if finish_reason == "final_answer":
            text = text[:final_answer_end(text)]
        return text.strip() if request.strip else text

    def prompt_ids(self, request: Request) -> list[int]:
        """The request's prompt as token ids: as given, or encoded, with the tokenizer's special tokens unless a
        chat template has put them in."""
        if request.prompt_ids is not None:
            return list(request.prompt_ids)
        return self.tokenizer(self.render(request), add_special_tokens=not (
            self.use_template and request.messages is not None))["input_ids"]

    def _encode_prompts(self, chunk: list[Request]) -> dict:
        """Left-padded token ids of the requests' prompts, with their attention mask."""
        ids = [self.prompt_ids(r) for r in chunk]
        width = max(map(len, ids))
        pad = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0
        return {"input_ids": torch.tensor([[pad] * (width - len(i)) + i for i in ids], dtype=torch.long),
                "attention_mask": torch.tensor([[0] * (width - len(i)) + [1] * len(i) for i in ids], dtype=torch.long)}

    def prompt_tokens(self, request: Request) -> int:
        """How many tokens the request's prompt takes (to check it against the context before queueing it)."""
        return len(self.prompt_ids(request))


def generate_answers(model, tokenizer, conversations: list[list[dict]], *, use_template: bool,
                     max_new_tokens: int, batch_size: int | None = None, stop_at_final_answer: bool | list[bool] = False
                     ) -> list[str]:
    """One greedy answer per conversation (chat messages ending with a user turn), through the engine."""
    finals = stop_at_final_answer if isinstance(stop_at_final_answer, list) else [stop_at_final_answer] * len(conversations)
    engine = SamplingEngine(model, tokenizer, use_template=use_template, max_batch=batch_size)
    results = engine.generate([Request(messages=c, max_new_tokens=max_new_tokens, stop_at_final_answer=f)
                               for c, f in zip(conversations, finals)])
    return [r.completions[0].text for r in results]
