"""Model providers: the one way the seed systems (judge, generator, reflector) reach a model.

    provider = make_provider("judge", config, root)
    results = await provider.generate([Request(messages=[...], max_new_tokens=256)])

A provider takes the sampling engine's `Request`s and gives back its `Result`s, wherever the
model runs:
- `LocalProvider`: a model in this process, through the sampling engine; concurrent callers
  are answered in shared batches by one worker thread (`Batcher`).
- `OpenAIProvider`: any OpenAI-compatible API (our own `train.py --serve`, vLLM, SGLang,
  llama.cpp's server, OpenAI) through the official `openai` client: its retries with
  backoff and its timeouts, a limit on requests in flight, token counts from `usage`.

Config: the `providers` section names them, e.g.
`{"judge": {"kind": "openai", "base_url": "http://127.0.0.1:8000/v1", "model": "current"}}`.
"""
from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Protocol

from core.config import Config, ProviderSection
from core.errors import ConfigError

from .batching import Batcher
from .requests import Completion, Request, Result
from .sampling import SamplingEngine


class Provider(Protocol):
    name: str  # what answered: a version ("v0003", "base") or the remote model's name

    async def generate(self, requests: list[Request]) -> list[Result]: ...

    async def close(self) -> None: ...


class LocalProvider:
    """A model in this process. Its engine is used from the provider's worker thread only while a call waits
    on it, so a caller that owns the model (the daemon, between steps) may use it too. Concurrent calls share
    the decode loop (continuous batching)."""

    def __init__(self, engine: SamplingEngine, name: str = "local"):
        self.engine, self.name = engine, name
        self.batcher = Batcher(lambda _key, take, deliver: engine.run(take, deliver), max_batch=engine.max_batch,
                               name=f"provider-{name}")

    async def generate(self, requests: list[Request]) -> list[Result]:
        return await asyncio.wrap_future(self.batcher.submit(None, requests))

    async def close(self) -> None:
        await asyncio.to_thread(self.batcher.close)


class OpenAIProvider:
    """An OpenAI-compatible API. A request with `messages` goes to /chat/completions, one with a raw `prompt`
    to /completions. Token ids are not returned by these APIs: completions carry text and counts."""

    def __init__(self, *, base_url: str, model: str, api_key: str | None = None, timeout: float = 120.0,
                 max_retries: int = 3, max_concurrency: int = 8):
        from openai import AsyncOpenAI

        # A local server without a key still needs a non-empty one in the client.
        self.client = AsyncOpenAI(base_url=base_url, api_key=api_key or "none", timeout=timeout,
                                  max_retries=max_retries)
        self.name = model
        self.model = model
        self.limit = asyncio.Semaphore(max_concurrency)
        self.answered_by: list[str] = []  # the `model` field of each response, in order (a server names its version)

    async def generate(self, requests: list[Request]) -> list[Result]:
        return list(await asyncio.gather(*(self._one(r) for r in requests)))

    async def close(self) -> None:
        await self.client.close()

    @staticmethod
    def text(request: Request, text: str) -> str:
        """An API's text as the local engine gives it: stripped unless the request says not to."""
        return text.strip() if request.strip else text

    async def _one(self, request: Request) -> Result:
        common = dict(model=self.model, max_tokens=request.max_new_tokens, temperature=request.temperature,
                      top_p=request.top_p, n=request.n, seed=request.seed)
        if request.stop:
            common["stop"] = list(request.stop)
        async with self.limit:
            if request.messages is not None:
                if request.logprobs:
                    common["logprobs"] = True
                response = await self.client.chat.completions.create(messages=request.messages, **common)
                completions = [Completion(self.text(request, c.message.content or ""), [], c.finish_reason or "stop",
                                          [t.logprob for t in c.logprobs.content]
                                          if request.logprobs and c.logprobs and c.logprobs.content else None)
                               for c in response.choices]
            else:
                if request.logprobs:
                    common["logprobs"] = 0
                response = await self.client.completions.create(prompt=request.prompt, **common)
                completions = [Completion(self.text(request, c.text), [], c.finish_reason or "stop",
                                          list(c.logprobs.token_logprobs) if request.logprobs and c.logprobs else None)
                               for c in response.choices]
        self.answered_by.append(response.model)
        usage = response.usage
        return Result(usage.prompt_tokens if usage else 0, completions, usage.completion_tokens if usage else 0)


def provider_section(name: str, config: Config) -> ProviderSection:
    """`providers.<name>` of the config; a ConfigError naming the fix if it is not there."""
    section: ProviderSection | None = config.providers.get(name)
    if section is None:
        known = ", ".join(sorted(config.providers)) or "none"
        raise ConfigError("config.json", [f"providers.{name}: no such provider (configured: {known}); add "
                                          f"{{\"{name}\": {{\"kind\": \"local\"}}}} or an openai one to providers"])
    return section


def make_provider(name: str, config: Config, root: Path, *, engine: SamplingEngine | None = None) -> Provider:
    """The provider `providers.<name>` of the config. A local one uses `engine` when given (the warm model of
    the process), else loads its adapter from the root."""
    section = provider_section(name, config)
    if section.kind == "local":
        if engine is None:
            from .loading import load_sampling_engine

            sampler, label = load_sampling_engine(config, root, section.adapter)
            return LocalProvider(sampler, name=label)
        return LocalProvider(engine)
    key = None
    if section.api_key_env:
        key = os.environ.get(section.api_key_env)
        if not key:
            raise ConfigError("config.json", [f"providers.{name}.api_key_env: the environment variable "
                                              f"{section.api_key_env} is not set; export it with the API key"])
    return OpenAIProvider(base_url=section.base_url, model=section.model, api_key=key,
                          timeout=section.timeout_seconds, max_retries=section.max_retries,
                          max_concurrency=section.max_concurrency)
