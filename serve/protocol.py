"""The OpenAI API's request and response bodies, as pydantic models, and its error shape.

Fields the API has and we do not honour are refused with a 400 naming them, unless they
are at their no-op value (a client that sends `presence_penalty: 0` works); unknown extra
fields are ignored, as OpenAI-compatible servers do.
"""
from __future__ import annotations

import time
import uuid
from typing import Literal

from pydantic import (BaseModel, ConfigDict, Field, ValidationError, field_validator, model_serializer,
                      model_validator)

MAX_LOGPROBS = 20  # alternatives per token, as vLLM's default --max-logprobs


class APIError(Exception):
    """An error answered in the OpenAI shape: {"error": {"message", "type", "param", "code"}}."""

    TYPES = {400: "invalid_request_error", 401: "authentication_error", 403: "permission_error",
             404: "not_found_error", 413: "invalid_request_error", 429: "rate_limit_error", 503: "service_unavailable"}

    def __init__(self, status: int, message: str, param: str | None = None, code: str | None = None):
        super().__init__(message)
        self.status, self.message, self.param, self.code = status, message, param, code

    def body(self) -> dict:
        return {"error": {"message": self.message, "type": self.TYPES.get(self.status, "server_error"),
                          "param": self.param, "code": self.code}}


class TextPart(BaseModel):
    type: Literal["text"]
    text: str


class Message(BaseModel):
    model_config = ConfigDict(extra="ignore")

    role: Literal["system", "user", "assistant"]
    content: str | list[TextPart]

    def plain(self) -> dict:
        text = self.content if isinstance(self.content, str) else "".join(p.text for p in self.content)
        return {"role": self.role, "content": text}


class StreamOptions(BaseModel):
    include_usage: bool = False


class Sampling(BaseModel):
    """What chat and text completions share."""

    model_config = ConfigDict(extra="ignore")

    model: str = "current"
    max_tokens: int | None = Field(None, gt=0)
    temperature: float = Field(1.0, ge=0, le=2)
    top_p: float = Field(1.0, gt=0, le=1)
    top_k: int = Field(0, ge=0, le=1_000_000)  # vLLM's extension; 0 or absent: off
    n: int = Field(1, gt=0, le=1024)  # serve.max_n bounds it further
    seed: int | None = Field(None, ge=-2**63, lt=2**63)  # a 64-bit integer, as vLLM and OpenAI take it
    stop: str | list[str] | None = None
    stream: bool = False
    stream_options: StreamOptions | None = None
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0
    logit_bias: dict | None = None

    @model_validator(mode="before")
    @classmethod
    def _nulls(cls, data):
        """null means the default, as in OpenAI's API (clients send `"logprobs": null`)."""
        return {k: v for k, v in data.items() if v is not None} if isinstance(data, dict) else data

    @field_validator("stop")
    @classmethod
    def _stops(cls, value):
        stops = [value] if isinstance(value, str) else value or []
        if len(stops) > 4:
            raise ValueError("at most 4 stop strings")
        if any(not s for s in stops):
            raise ValueError("a stop string must not be empty")
        return stops

    @property
    def wants_logprobs(self) -> bool:
        return False

    @property
    def top_logprobs_count(self) -> int:
        """Alternatives asked for each new token (with wants_logprobs)."""
        return 0

    @property
    def prompt_logprobs(self) -> int | None:
        """Alternatives asked for each prompt token (None: the prompt is not scored)."""
        return None

    @model_validator(mode="after")
    def _unsupported(self):
        for name in ("presence_penalty", "frequency_penalty"):
            if getattr(self, name):
                raise ValueError(f"{name}: not supported by this server; leave it out or 0")
        if self.logit_bias:
            raise ValueError("logit_bias: not supported by this server; leave it out")
        return self


class ChatRequest(Sampling):
    messages: list[Message] = Field(..., min_length=1)
    max_completion_tokens: int | None = Field(None, gt=0)  # the newer name of max_tokens
    logprobs: bool = False
    top_logprobs: int | None = Field(None, ge=0, le=MAX_LOGPROBS)  # with logprobs: the N most likely tokens
    tools: list | None = None

    @property
    def wants_logprobs(self) -> bool:
        return self.logprobs

    @property
    def top_logprobs_count(self) -> int:
        return self.top_logprobs or 0

    @model_validator(mode="after")
    def _chat(self):
        if self.tools:
            raise ValueError("tools: not supported by this server")
        if self.messages[-1].role == "assistant":
            raise ValueError("messages: the last message must be from the user or the system, not the assistant")
        self.max_tokens = self.max_completion_tokens or self.max_tokens
        return self


PROMPT_FORMS = "a string, a list of strings, a list of token ids, or a list of lists of token ids"


class CompletionRequest(Sampling):
    """The legacy completions API as OpenAI and vLLM define it; `echo` with `max_tokens: 0` scores a prompt
    (lm-eval's log-likelihood requests)."""

    prompt: str | list[str] | list[int] | list[list[int]]
    max_tokens: int | None = Field(None, ge=0)  # 0, with echo: score the prompt, generate nothing
    logprobs: int | None = Field(None, ge=0, le=MAX_LOGPROBS)  # N: each token's log-prob and the N most likely
    echo: bool = False  # the prompt comes back in front of the completion (with its log-probs, the first null)
    suffix: str | None = None

    @field_validator("prompt", mode="wrap")
    @classmethod
    def _prompt(cls, value, handler):
        try:
            prompt = handler(value)
        except ValidationError:
            raise ValueError(f"prompt: must be {PROMPT_FORMS}") from None
        if isinstance(prompt, list) and (not prompt or any(isinstance(p, list) and not p for p in prompt)):
            raise ValueError("prompt: must not be empty (nor any prompt in it)")
        return prompt

    @property
    def wants_logprobs(self) -> bool:
        return self.logprobs is not None

    @property
    def top_logprobs_count(self) -> int:
        return self.logprobs or 0

    @property
    def prompt_logprobs(self) -> int | None:
        return (self.logprobs or 0) if self.echo and (self.logprobs is not None or self.max_tokens == 0) else None

    @model_validator(mode="after")
    def _completion(self):
        if self.suffix:
            raise ValueError("suffix: not supported by this server")
        if self.max_tokens == 0 and not self.echo:
            raise ValueError("max_tokens: 0 scores the prompt and needs echo: true (or ask for at least 1 token)")
        if self.echo and self.stream:
            raise ValueError("echo: not supported with stream; ask without stream")
        return self

    @property
    def prompts(self) -> list[dict]:
        """Each prompt as the engine takes it: {"prompt": text} or {"prompt_ids": token ids}."""
        p = self.prompt
        if isinstance(p, str):
            return [{"prompt": p}]
        if all(isinstance(x, int) for x in p):
            return [{"prompt_ids": p}]
        return [{"prompt": x} if isinstance(x, str) else {"prompt_ids": x} for x in p]


# -- responses ----------------------------------------------------------------------------------------------


def response_id(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex}"


class Usage(BaseModel):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


class AssistantMessage(BaseModel):
    role: Literal["assistant"] = "assistant"
    content: str


class ChatChoice(BaseModel):
    index: int
    message: AssistantMessage
    finish_reason: str
    logprobs: dict | None = None


class Answered(BaseModel):
    """What a whole (not streamed) answer carries beside its choices."""

    created: int = Field(default_factory=lambda: int(time.time()))
    model: str
    usage: Usage


class ChatCompletion(Answered):
    id: str = Field(default_factory=lambda: response_id("chatcmpl"))
    object: Literal["chat.completion"] = "chat.completion"
    choices: list[ChatChoice]


class CompletionChoice(BaseModel):
    index: int
    text: str
    finish_reason: str
    logprobs: dict | None = None


class TextCompletion(Answered):
    id: str = Field(default_factory=lambda: response_id("cmpl"))
    object: Literal["text_completion"] = "text_completion"
    choices: list[CompletionChoice]


class ChatDelta(BaseModel):
    role: Literal["assistant"] | None = None
    content: str | None = None

    @model_serializer(mode="wrap")
    def _present(self, handler):  # a delta names only what it carries: {} once a choice has only its finish
        return {k: v for k, v in handler(self).items() if v is not None}


class ChatChunkChoice(BaseModel):
    index: int
    delta: ChatDelta
    finish_reason: str | None = None
    logprobs: dict | None = None


class TextChunkChoice(BaseModel):
    index: int
    text: str
    finish_reason: str | None = None
    logprobs: dict | None = None


class CompletionChunk(BaseModel):
    """One server-sent event of a streamed answer, chat or text; the last may carry only the usage."""

    id: str
    object: Literal["chat.completion.chunk", "text_completion"]
    created: int
    model: str
    choices: list[ChatChunkChoice] | list[TextChunkChoice]
    usage: Usage | None = None

    @model_serializer(mode="wrap")
    def _usage_last(self, handler):  # only the last event, with stream_options.include_usage, has a usage
        data = handler(self)
        if data.get("usage") is None:
            data.pop("usage", None)
        return data


class ModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[dict]


class Health(BaseModel):
    status: Literal["ok", "loading", "error"]
    current: str | None = None
    error: str | None = None


def validation_message(errors: list[dict]) -> tuple[str, str | None]:
    """(message, param) for the first of pydantic's errors on a request body."""
    err = errors[0]
    loc = [str(p) for p in err.get("loc", ()) if p != "body"]
    if err.get("type") == "json_invalid":
        return f"the body is not valid JSON: {err.get('ctx', {}).get('error', err.get('msg'))}", None
    if err.get("type") == "model_attributes_type" or not loc and err.get("type") == "dict_type":
        return "the body must be a JSON object", None
    param = ".".join(loc) or None
    message = err.get("msg", "invalid")
    message = message.removeprefix("Value error, ")
    if param and message.startswith(f"{param}:"):
        return message, param
    if not param and ":" in message.split(" ", 1)[0]:  # a model-level check names its own field
        return message, message.split(":", 1)[0]
    return f"{param}: {message}" if param else message, param
