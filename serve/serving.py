"""The serving objects: chat and text completions answered from the model host, in full or streamed.

An endpoint turns a request body into engine requests (checked against serve.* limits and the model's context),
submits them to the host's batcher, and shapes the answer as the protocol's response models. Chat and text
completions differ only in their prompts, their choices and their chunks.
"""
from __future__ import annotations

import asyncio
import json
import secrets
import threading
import time

from fastapi.responses import StreamingResponse

from core.config import Config, ServeSection
from core.feedback import Feedback
from inference.requests import Request, Result

from .host import ModelHost
from .record import Recorder
from .protocol import (APIError, AssistantMessage, ChatChoice, ChatChunkChoice, ChatCompletion, ChatDelta,
                       ChatRequest, CompletionChoice, CompletionChunk, CompletionRequest, Sampling, TextChunkChoice,
                       TextCompletion, Usage, response_id)

FINISH = {"length": "length"}  # every other way to end (a stop token or string) is OpenAI's "stop"


def finish_reason(reason: str) -> str:
    return FINISH.get(reason, "stop")


class Endpoint:
    """What chat and text completions share: engine requests, the batcher, usage, the token texts, streaming."""

    id_prefix = ""
    chunk_object = ""

    def __init__(self, host: ModelHost, limits: ServeSection, recorder: Recorder):
        self.host, self.limits, self.recorder = host, limits, recorder

    async def keep(self, ident: str, version: str, body: Sampling, requests: list[Request],
                   results: list[Result]) -> None:
        """The exchange into the server's record (serve.record), fsynced before the client has the answer."""
        if not self.recorder.recording:
            return
        record = {"id": ident, "model": version, **self.asked(body, requests), "n": body.n,
                  "answers": [c.text for r in results for c in r.completions],
                  "sampling": body.model_dump(include={"temperature", "top_p", "top_k", "max_tokens", "seed", "stop"}),
                  "usage": self.usage(results).model_dump()}
        try:
            await asyncio.to_thread(self.recorder.exchange, record)
        except OSError as e:  # a full disk: the answer is still given; only feedback by its id will not find it
            self.host.events.emit("error", f"serve: exchange {ident} not recorded: {e}")

    def asked(self, body: Sampling, requests: list[Request]) -> dict:
        raise NotImplementedError

    def engine_requests(self, body: Sampling, prompts: list[dict]) -> list[Request]:
        """Each prompt (messages or raw text) as an engine request, checked against the limits and the context."""
        limits, host = self.limits, self.host
        if body.n > limits.max_n:
            raise APIError(400, f"n: at most {limits.max_n} completions per request (serve.max_n)", "n")
        if body.max_tokens is not None and body.max_tokens > limits.max_tokens:
            raise APIError(400, f"max_tokens: at most {limits.max_tokens} (serve.max_tokens; got {body.max_tokens})",
                           "max_tokens")
        seed = body.seed if body.seed is not None else secrets.randbelow(2**31)
        out = []
        for k, prompt in enumerate(prompts):
            self.check_token_ids(prompt.get("prompt_ids"), k if len(prompts) > 1 else None)
            r = Request(**prompt, max_new_tokens=limits.max_tokens if body.max_tokens is None else body.max_tokens,
                        temperature=body.temperature, top_p=body.top_p, top_k=body.top_k, n=body.n, seed=seed,
                        stop=tuple(body.stop or ()), logprobs=body.wants_logprobs,
                        top_logprobs=body.top_logprobs_count, prompt_logprobs=body.prompt_logprobs, cut_runaways=False,
                        strip=False)
            used = host.counter.prompt_tokens(r)
            if not used:
                raise APIError(400, "prompt: it encodes to no tokens; give some text", "prompt")
            if used >= host.context:
                field = "messages" if r.messages is not None else "prompt"
                raise APIError(413, f"{field}: the prompt takes {used} tokens; the model's context is {host.context}; "
                                    f"shorten it", field, "context_length_exceeded")
            room = host.context - used
            if body.max_tokens is not None and body.max_tokens > room:
                raise APIError(400, f"max_tokens: the prompt takes {used} of the {host.context} tokens of context; "
                                    f"at most {room} are left (got {body.max_tokens})", "max_tokens")
            r.max_new_tokens = min(r.max_new_tokens, room)
            out.append(r)
        return out

    def check_token_ids(self, ids: list[int] | None, which: int | None) -> None:
        """A prompt of token ids holds only ids of the model's vocabulary (400 naming the first that is not)."""
        vocab = self.host.vocab
        for j, t in enumerate(ids or ()):
            if not 0 <= t < vocab:
                at = f"prompt[{which}][{j}]" if which is not None else f"prompt[{j}]"
                raise APIError(400, f"{at}: token id {t} is not in the model's vocabulary (0 to {vocab - 1})",
                               "prompt", "invalid_token_id")

    async def answer(self, version: str, requests: list[Request], gone) -> list[Result]:
        """The results, in full; a client that goes away meanwhile (`await gone()` turns true) cancels its rows at
        the next token, freeing their slots, as a streamed request's do."""
        cancel = threading.Event()
        for r in requests:
            r.cancel = cancel
        future = asyncio.wrap_future(self.host.batcher.submit(version, requests))
        while not (await asyncio.wait({future}, timeout=0.5))[0]:
            if await gone():
                cancel.set()
                break
        return await future

    @staticmethod
    def usage(results: list[Result]) -> Usage:
        prompt = sum(r.prompt_tokens for r in results)
        completion = sum(r.completion_tokens for r in results)
        return Usage(prompt_tokens=prompt, completion_tokens=completion, total_tokens=prompt + completion)

    def token_text(self, token: int) -> str:
        return self.host.counter.tokenizer.decode([token])

    def scored_tokens(self, c) -> list[tuple[str, float, dict[str, float]]]:
        """A completion's tokens as (text, log-prob, the most likely alternatives with the token itself, as
        vLLM gives them), leaving out special tokens (the end of turn), which are not part of the text."""
        special = set(self.host.counter.tokenizer.all_special_ids)
        tops = c.top_logprobs or [[] for _ in c.tokens]
        return [(self.token_text(t), lp, self.alternatives(top, t, lp))
                for t, lp, top in zip(c.tokens, c.logprobs, tops) if t not in special]

    def alternatives(self, top: list[tuple[int, float]], token: int, logprob: float) -> dict[str, float]:
        return {self.token_text(t): lp for t, lp in [*top, (token, logprob)]}

    def chunk(self, index: int, text: str | None, finish: str | None = None, *, first: bool = False):
        """One choice of a streamed chunk (`first`: the chunk that opens a chat choice, before any text)."""
        raise NotImplementedError

    def streamed(self, version: str, requests: list[Request], body: Sampling) -> StreamingResponse:
        """Server-sent events: a chunk per new piece of text of each choice, then each choice's finish reason,
        then `[DONE]`. A client that goes away cancels its rows at the next token, freeing their slots."""
        ident, created = response_id(self.id_prefix), int(time.time())

        def event(choices: list, usage: Usage | None = None) -> str:
            chunk = CompletionChunk(id=ident, object=self.chunk_object, created=created, model=version,
                                    choices=choices, usage=usage)
            return f"data: {chunk.model_dump_json()}\n\n"

        return StreamingResponse(self._events(ident, version, requests, body, event), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-cache"})

    async def _events(self, ident: str, version: str, requests: list[Request], body: Sampling, event):
        loop, n = asyncio.get_running_loop(), body.n
        arrived: asyncio.Queue = asyncio.Queue()
        cancel = threading.Event()
        for k, r in enumerate(requests):
            r.cancel = cancel
            r.on_token = (lambda k: lambda s, t: loop.call_soon_threadsafe(arrived.put_nowait, (k * n + s, t)))(k)
        future = asyncio.wrap_future(self.host.batcher.submit(version, requests))
        # the tokens' callbacks were queued on this loop before the result: None comes after the last token
        future.add_done_callback(lambda _: arrived.put_nowait(None))
        sent = dict.fromkeys(range(len(requests) * n), "")
        tokens: dict[int, list[int]] = {c: [] for c in sent}
        try:
            for c in self._openings(sent):
                yield event([c])
            while (item := await arrived.get()) is not None:
                c, t = item
                tokens[c].append(t)
                request = requests[c // n]
                text = self.host.counter.text(request, tokens[c])
                hold = max((len(s) for s in request.stop), default=1) - 1  # a stop string may be starting
                text = text[:len(text) - hold].rstrip("\ufffd")  # and a character may be half decoded
                if len(text) > len(sent[c]) and text.startswith(sent[c]):
                    yield event([self.chunk(c, text[len(sent[c]):])])
                    sent[c] = text
            try:
                results = future.result()
            except Exception as e:
                yield f"data: {json.dumps(APIError(500, f'generation failed: {type(e).__name__}: {e}').body())}\n\n"
                return
            for k, result in enumerate(results):
                for s, comp in enumerate(result.completions):
                    c = k * n + s
                    rest = comp.text[len(sent[c]):] if comp.text.startswith(sent[c]) else ""
                    yield event([self.chunk(c, rest or None, finish_reason(comp.finish_reason))])
            if body.stream_options and body.stream_options.include_usage:
                yield event([], self.usage(results))
            await self.keep(ident, version, body, requests, results)
            yield "data: [DONE]\n\n"
        finally:
            cancel.set()  # the client is gone, or all is sent: either way the rows may end

    def _openings(self, choices) -> list:
        return []


class ServingChat(Endpoint):
    id_prefix, chunk_object = "chatcmpl", "chat.completion.chunk"

    def requests(self, body: ChatRequest) -> list[Request]:
        return self.engine_requests(body, [{"messages": [m.plain() for m in body.messages]}])

    async def full(self, version: str, requests: list[Request], body: ChatRequest, gone) -> ChatCompletion:
        results = await self.answer(version, requests, gone)
        choices = [ChatChoice(index=k, message=AssistantMessage(content=c.text),
                              finish_reason=finish_reason(c.finish_reason), logprobs=self.logprobs(c))
                   for k, c in enumerate(results[0].completions)]
        answer = ChatCompletion(model=version, choices=choices, usage=self.usage(results))
        await self.keep(answer.id, version, body, requests, results)
        return answer

    def asked(self, body: ChatRequest, requests: list[Request]) -> dict:
        return {"messages": [m.plain() for m in body.messages]}

    def logprobs(self, c) -> dict | None:
        if c.logprobs is None:
            return None
        n = len(c.top_logprobs[0]) if c.top_logprobs else 0
        return {"content": [{"token": t, "logprob": lp, "bytes": list(t.encode()),
                             "top_logprobs": [{"token": a, "logprob": alp, "bytes": list(a.encode())}
                                              for a, alp in list(top.items())[:n]]}
                            for t, lp, top in self.scored_tokens(c)]}

    def chunk(self, index: int, text: str | None, finish: str | None = None, *, first: bool = False):
        delta = ChatDelta(role="assistant", content="") if first else ChatDelta(content=text)
        return ChatChunkChoice(index=index, delta=delta, finish_reason=finish)

    def _openings(self, choices) -> list:
        return [self.chunk(c, None, first=True) for c in choices]


class ServingCompletion(Endpoint):
    id_prefix, chunk_object = "cmpl", "text_completion"

    def requests(self, body: CompletionRequest) -> list[Request]:
        return self.engine_requests(body, body.prompts)

    async def full(self, version: str, requests: list[Request], body: CompletionRequest, gone) -> TextCompletion:
        results = await self.answer(version, requests, gone)
        choices = [CompletionChoice(index=k * body.n + j, text=self.echoed(body, requests[k]) + c.text,
                                    finish_reason=finish_reason(c.finish_reason), logprobs=self.logprobs(body, r, c))
                   for k, r in enumerate(results) for j, c in enumerate(r.completions)]
        answer = TextCompletion(model=version, choices=choices, usage=self.usage(results))
        await self.keep(answer.id, version, body, requests, results)
        return answer

    def asked(self, body: CompletionRequest, requests: list[Request]) -> dict:
        return {"prompts": [r.prompt if r.prompt is not None else self.host.counter.tokenizer.decode(r.prompt_ids)
                            for r in requests]}

    def echoed(self, body: CompletionRequest, request: Request) -> str:
        if not body.echo:
            return ""
        return request.prompt if request.prompt is not None else self.host.counter.tokenizer.decode(request.prompt_ids)

    def logprobs(self, body: CompletionRequest, result: Result, c) -> dict | None:
        """OpenAI's legacy shape: the tokens' texts, log-probs, alternatives and offsets; with echo, the prompt's
        tokens first (every one, special or not, so a client can cut at its own token count), the first null."""
        if c.logprobs is None:
            return None
        scored = []
        if body.echo and result.prompt_ids is not None:
            tops = result.prompt_top_logprobs or [None] + [[] for _ in result.prompt_ids[1:]]
            scored = [(self.token_text(t), lp, None if lp is None else self.alternatives(top, t, lp))
                      for t, lp, top in zip(result.prompt_ids, result.prompt_logprobs, tops)]
        scored += self.scored_tokens(c)
        offsets, at = [], 0
        for text, _, _ in scored:
            offsets.append(at)
            at += len(text)
        return {"tokens": [t for t, _, _ in scored], "token_logprobs": [lp for _, lp, _ in scored],
                "top_logprobs": [top for _, _, top in scored], "text_offset": offsets}

    def chunk(self, index: int, text: str | None, finish: str | None = None, *, first: bool = False):
        return TextChunkChoice(index=index, text=text or "", finish_reason=finish)


class ServingFeedback:
    """POST /v1/feedback: a verdict on an exchange (named by its response id, or given whole) into the server's
    feedback log, fsynced before the answer; the daemon takes it from there (daemon/feedback.py)."""

    def __init__(self, recorder: Recorder, config: Config):
        self.recorder, self.config = recorder, config
        self.writing = 0  # verdicts being written now: past serve.max_waiting a burst gets 429

    async def accept(self, feedback: Feedback) -> dict:
        if self.writing >= self.config.serve.max_waiting:
            raise APIError(429, f"{self.writing} verdicts are being written already (serve.max_waiting); retry in a "
                                "second", code="rate_limit_exceeded")
        exchange = await self.exchange(feedback)
        line = {"feedback_id": response_id("fb"), "time": round(time.time(), 3), "rating": feedback.rating,
                "correction": feedback.correction, "note": feedback.note, "exchange": exchange}
        self.writing += 1
        try:
            await asyncio.to_thread(self.recorder.feedback.append, line)
        finally:
            self.writing -= 1
        then = ("trained at the daemon's next feedback file, and asked again by the promotion gate"
                if feedback.correction else "kept as an example of a right answer" if feedback.rating == "good"
                else "waiting for a correction (send one with the same id)")
        return {"object": "feedback", **line, "recorded": True, "then": then}

    async def exchange(self, feedback: Feedback) -> dict:
        """The exchange the verdict is on: {"id", "model", "messages" or "prompt", "answer"}."""
        if feedback.id is None:
            asked = ({"messages": [t.model_dump() for t in feedback.messages]} if feedback.messages is not None
                     else {"prompt": feedback.prompt})
            return {"id": None, "model": feedback.model, **asked, "answer": feedback.answer}
        if not self.recorder.recording:
            raise APIError(404, f"id: {feedback.id!r} cannot be looked up: serve.record is off, so this server keeps "
                                "no exchange; send the exchange itself (messages or prompt, and answer)", "id",
                           "exchange_not_found")
        record = await asyncio.to_thread(self.recorder.find, feedback.id)
        if record is None:
            raise APIError(404, f"id: no served exchange {feedback.id!r} (unknown, or deleted after "
                                f"serve.keep_days); send the exchange itself (messages or prompt, and answer)",
                           "id", "exchange_not_found")
        answers = record["answers"]
        if feedback.choice >= len(answers):
            raise APIError(400, f"choice: {feedback.id} has {len(answers)} choice(s), 0 to {len(answers) - 1}",
                           "choice")
        asked = ({"messages": record["messages"]} if "messages" in record
                 else {"prompt": record["prompts"][feedback.choice // record.get("n", 1)]})
        return {"id": feedback.id, "model": record["model"], **asked, "answer": answers[feedback.choice]}
