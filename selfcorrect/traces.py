"""Multi-pass correction traces: answer, then up to `max_turns` times classify, ask the policy, reprompt.

Per question: the initial answer (turn 0), then per turn: the failure mode of the answer in
hand and its confidence, the policy's choice for that context (a prompt of `traces.prompts`
or `stop`), the reprompt, the new answer and its verdict; the policy is updated online with
the turn's reward (selfcorrect.policy). Every answer comes from a provider (the local model
through the sampling engine, or any OpenAI-compatible API), greedy, with its log-probs.

Failure modes, in this order (the first that holds), from the matcher and the error codes:
- `correct`: right at turn 0; `corrected`: right after a reprompt;
- `degraded`: wrong now, right one turn before;
- `anchored`: wrong, and the same answer as the turn before (after normalising);
- `missing_content`: an empty answer;
- `numeric`: any other wrong answer to a math question (a number or expression is expected);
- `off_topic`: OFF_TOPIC_CONTENT;
- `format`: STRUCTURE_SHOULD_BE_LIST / PROSE, MISSING_CODE_BLOCK, FORMAT_SHOULD_BE_JSON;
- `numeric`: MISSING_NUMBERS or NUMERIC_ERROR_* (numbers missing or wrong in a text answer);
- `missing_content`: PRIMARY_ANSWER_MISSING, MISSING_KEY_CONCEPTS_X_TERMS, TOO_BRIEF;
- `wrong`: any other wrong answer.

Confidence: the geometric mean of the answer's token probabilities, exp(mean log-prob), in
[0, 1]; 0.5 when the provider returns no log-probs. Bucketed low < 0.5 <= mid < 0.8 <= high.

Records: `TurnRecord` and `TraceRecord` are the trace schema, validated when written and
when read; one trace per line in `logs/traces_YYYYMMDD.jsonl`, appended and fsynced as each
trace ends; a run's summary in `logs/summary_YYYYMMDD_HHMMSS.json`.

Training from traces (`traces.train`): a turn that went wrong -> right gives the chat that
led to it (earlier answers kept as context with weight 0, so no loss ever falls on a wrong
answer) ending with the right answer; a turn that stayed right under a reprompt gives a
"keep" example the same way.
"""
from __future__ import annotations

import asyncio
import math
import os
import time
import uuid
from datetime import datetime, timezone
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from core.config import TracesSection
from core.qa import QAItem
from evaluation.error_codes import error_codes
from evaluation.evaluate import EvalResult, Evaluation
from evaluation.matching import answer_kind, match_answer
from evaluation.text import normalize
from inference.requests import Request

from .policy import STOP, Context, Policy, bucket, reward

PIPELINE_VERSION = "1.0"
NO_LOGPROBS = 0.5
_FAMILIES = (  # failure mode <- error codes that name it (see the module docstring)
    ("off_topic", ("OFF_TOPIC_CONTENT",)),
    ("format", ("STRUCTURE_SHOULD_BE_LIST", "STRUCTURE_SHOULD_BE_PROSE", "MISSING_CODE_BLOCK", "FORMAT_SHOULD_BE_JSON")),
    ("numeric", ("MISSING_NUMBERS", "NUMERIC_ERROR_")),
    ("missing_content", ("PRIMARY_ANSWER_MISSING", "MISSING_KEY_CONCEPTS_", "TOO_BRIEF")),
)
FAILURE_MODES = ("correct", "corrected", "degraded", "anchored", *(m for m, _ in _FAMILIES), "wrong")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class TurnRecord(_Strict):
    turn_id: int = Field(ge=0)
    question: str
    answer: str
    prompt_id: str | None
    prompt_text: str | None
    error_mode: str
    confidence_score: float = Field(ge=0, le=1)
    delta_accuracy: int = Field(ge=-1, le=1)
    token_count: int = Field(ge=0)
    timestamp: str


class TraceRecord(_Strict):
    trace_id: str
    dataset_name: str
    question_id: str
    reference_answer: str
    turns: list[TurnRecord] = Field(min_length=1)
    final_accuracy: int = Field(ge=0, le=1)
    total_tokens: int = Field(ge=0)
    total_turns: int = Field(ge=1)
    pipeline_version: str
    created_at: str


class PipelineStats(_Strict):
    traces_processed: int
    total_turns: int
    policy_updates: int
    start_time: str


class PolicyStats(BaseModel):
    algorithm: str
    total_actions: int
    alpha_params: float
    beta_params: float
    avg_reward: float


class RunSummary(BaseModel):
    pipeline_stats: PipelineStats
    policy_stats: PolicyStats
    duration_seconds: float
    traces_per_second: float
    avg_turns_per_trace: float
    completed_at: str


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")


def failure_mode(answer: str, codes: list[str], *, right: bool, turn: int, math_question: bool,
                 previous: tuple[str, bool] | None = None) -> str:
    if right:
        return "corrected" if turn else "correct"
    if previous is not None and previous[1]:
        return "degraded"
    if previous is not None and normalize(previous[0]) == normalize(answer):
        return "anchored"
    if not answer.strip():
        return "missing_content"
    if math_question:
        return "numeric"
    for mode, names in _FAMILIES:
        if any(c.startswith(n) for c in codes for n in names):
            return mode
    return "wrong"


def confidence(logprobs: list[float] | None) -> float:
    if not logprobs:
        return NO_LOGPROBS
    return round(math.exp(sum(logprobs) / len(logprobs)), 4)


def read_traces(path: Path) -> list[TraceRecord]:
    """Every trace of a traces file, validated (a line that is not a trace raises pydantic's error)."""
    return [TraceRecord.model_validate_json(line) for line in Path(path).read_text().splitlines() if line.strip()]


class TraceLog:
    """logs/traces_YYYYMMDD.jsonl, one trace per line, appended and fsynced as each trace ends."""

    def __init__(self, logs: Path):
        self.logs = Path(logs)
        self.logs.mkdir(parents=True, exist_ok=True)

    def append(self, trace: TraceRecord) -> None:
        path = self.logs / f"traces_{time.strftime('%Y%m%d')}.jsonl"
        with open(path, "a", encoding="utf-8") as f:
            f.write(trace.model_dump_json() + "\n")  # built through pydantic: validated when made
            f.flush()
            os.fsync(f.fileno())


class Tracer:
    """Traces questions through a provider, the policy choosing every reprompt."""

    def __init__(self, provider, policy: Policy, settings: TracesSection, *, max_turns: int, dataset: str,
                 max_new_tokens: int | None = None, tokenizer=None):
        self.provider, self.policy, self.settings = provider, policy, settings
        self.tokenizer = tokenizer  # lengths in the error codes in its tokens (as the second attempt counts them)
        self.max_turns, self.dataset = max_turns, dataset
        self.max_new_tokens = max_new_tokens or settings.max_new_tokens
        self.examples: list[dict] = []  # training examples (traces.train), in the order their traces ended
        self.failed: list[tuple[str, str]] = []  # (question id, error) of questions the provider failed on

    async def _ask(self, messages: list[dict], math_question: bool) -> tuple[str, float, int]:
        request = Request(messages=messages, max_new_tokens=self.max_new_tokens, logprobs=True,
                          stop_at_final_answer=math_question)
        result = (await self.provider.generate([request]))[0]
        c = result.completions[0]
        return c.text, confidence(c.logprobs), result.completion_tokens or len(c.tokens)

    def reprompt(self, action: str, item: QAItem, conversation: list[dict], answer: str, codes: list[str]
                 ) -> tuple[str, list[dict]]:
        """(the reprompt's text, the conversation it is asked in): a prompt with {question} restates the
        question and starts afresh; one without continues the chat after the answer."""
        template = self.settings.prompts[action]
        text = template.format(question=item.question, answer=answer, codes=", ".join(codes) or "none")
        if "{question}" in template:
            return text, [*item.conversation[:-1], {"role": "user", "content": text}]
        return text, [*conversation, {"role": "assistant", "content": answer}, {"role": "user", "content": text}]

    def _example(self, conversation: list[dict], answer: str, kind: str, trace_id: str, item: QAItem, turn: int,
                 prompt_id: str) -> dict:
        messages = [{**m, "weight": 0} if m["role"] == "assistant" else m for m in conversation]
        return {"messages": [*messages, {"role": "assistant", "content": answer}], "kind": kind,
                "source": {"trace_id": trace_id, "dataset": self.dataset, "id": item.id, "file": item.file},
                "turn": turn, "prompt_id": prompt_id}

    async def trace(self, item: QAItem) -> TraceRecord:
        """One question's trace."""
        math_question = answer_kind(item.golden) == "math"
        trace_id = f"{self.dataset}_{item.id}_{uuid.uuid4().hex[:8]}"
        conversation = item.conversation
        answer, conf, tokens = await self._ask(conversation, math_question)
        right = match_answer(item.golden, answer, question=item.question).matched
        codes = error_codes(item.question, item.golden, answer, tokenizer=self.tokenizer, matched=right)
        mode = failure_mode(answer, codes, right=right, turn=0, math_question=math_question)
        turns = [TurnRecord(turn_id=0, question=item.question, answer=answer, prompt_id=None, prompt_text=None,
                            error_mode=mode, confidence_score=conf, delta_accuracy=0, token_count=tokens,
                            timestamp=now())]
        last = "none"
        for turn in range(self.max_turns):
            context = Context(mode, bucket(conf), last, turn)
            action = self.policy.choose(context)
            if action == STOP:
                self.policy.update(context, STOP, 0.0)
                break
            text, asked = self.reprompt(action, item, conversation, answer, codes)
            new, conf, tokens = await self._ask(asked, math_question)
            new_right = match_answer(item.golden, new, question=item.question).matched
            delta = int(new_right) - int(right)
            self.policy.update(context, action, reward(delta, tokens, self.settings.token_cost))
            if new_right:
                kind = "trace_keep" if right else "trace_correction"
                self.examples.append(self._example(asked, new, kind, trace_id, item, turn + 1, action))
            codes = error_codes(item.question, item.golden, new, tokenizer=self.tokenizer, matched=new_right)
            mode = failure_mode(new, codes, right=new_right, turn=turn + 1, math_question=math_question,
                                previous=(answer, right))
            turns.append(TurnRecord(turn_id=turn + 1, question=item.question, answer=new, prompt_id=action,
                                    prompt_text=text, error_mode=mode, confidence_score=conf, delta_accuracy=delta,
                                    token_count=tokens, timestamp=now()))
            conversation, answer, right, last = asked, new, new_right, action
        return TraceRecord(trace_id=trace_id, dataset_name=self.dataset, question_id=item.id,
                           reference_answer=item.golden, turns=turns, final_accuracy=int(right),
                           total_tokens=sum(t.token_count for t in turns), total_turns=len(turns),
                           pipeline_version=PIPELINE_VERSION, created_at=now())

    async def run(self, items: list[QAItem], log: TraceLog | None, *, on_trace=None) -> list[TraceRecord]:
        """Every item's trace, at most `traces.concurrency` in flight (a local provider batches them); each is
        logged as it ends. A question whose provider call fails (after the client's own retries) is listed in
        `failed` and the run goes on; if every one fails, the first error is raised. Results in the items'
        order, failed ones left out."""
        limit = asyncio.Semaphore(self.settings.concurrency)

        async def one(k: int) -> TraceRecord | None:
            async with limit:
                try:
                    trace = await self.trace(items[k])
                except Exception as e:  # a provider error (timeout, HTTP 5xx after retries, connection refused)
                    self.failed.append((items[k].id, f"{type(e).__name__}: {e}"))
                    if len(self.failed) == len(items):
                        raise
                    return None
            if log is not None:
                log.append(trace)
            if on_trace is not None:
                on_trace(trace)
            return trace

        done = await asyncio.gather(*(one(k) for k in range(len(items))))
        return [t for t in done if t is not None]


def summary(traces: list[TraceRecord], policy: Policy, *, started: float, start_time: str) -> dict:
    """The run summary (validated), with the run's accuracies and tokens beside it."""
    seconds = max(time.time() - started, 1e-9)
    turns = sum(t.total_turns for t in traces)
    n = len(traces)
    out = RunSummary(
        pipeline_stats=PipelineStats(traces_processed=n, total_turns=turns, policy_updates=policy.updates,
                                     start_time=start_time),
        policy_stats=PolicyStats(**policy.stats()), duration_seconds=round(seconds, 3),
        traces_per_second=round(n / seconds, 4), avg_turns_per_trace=round(turns / n, 3) if n else 0.0,
        completed_at=now()).model_dump()
    out["policy_stats"] = policy.stats()
    out["accuracy"] = {"initial": round(sum(t.turns[0].error_mode == "correct" for t in traces) / n, 4) if n else 0.0,
                       "final": round(sum(t.final_accuracy for t in traces) / n, 4) if n else 0.0,
                       "tokens_per_trace": round(sum(t.total_tokens for t in traces) / n, 2) if n else 0.0}
    return out


def write_examples(root: Path, examples: list[dict], *, outbox, queue: str | None) -> Path:
    """The training examples of a --traces run as one file in data/traces/ (whole, by atomic rename) with its
    metadata beside it, then queued once at `queue` (None: not queued, self_correction.auto_queue off)."""
    import json

    from core.fsutil import atomic_write_bytes, atomic_write_json

    name = f"traces_{time.strftime('%Y%m%d_%H%M%S')}.jsonl"
    path = Path(root) / "data" / "traces" / name
    data = "".join(json.dumps(e, ensure_ascii=False) + "\n" for e in examples).encode("utf-8")
    atomic_write_bytes(path, data)
    atomic_write_json(path.with_suffix(".json"), {
        "num_examples": len(examples), "corrections": sum(e["kind"] == "trace_correction" for e in examples),
        "keeps": sum(e["kind"] == "trace_keep" for e in examples), "queued": queue})
    if queue and not outbox.contains(name):
        return outbox.add(name, data, queue)
    return path


def as_evaluation(items: list[QAItem], traces: list[TraceRecord], *, tokenizer=None) -> Evaluation:
    """The live monitor's evaluation from traces: the first answers are the first attempts; a trace's final
    answer is the second attempt of a wrong first answer (or the re-asked right one: right -> wrong counts)."""
    results, reasons, second, probe = [], [], {}, {}
    for k, (item, trace) in enumerate(zip(items, traces)):
        first = trace.turns[0]
        match = match_answer(item.golden, first.answer, question=item.question)
        codes = error_codes(item.question, item.golden, first.answer, tokenizer=tokenizer, matched=match.matched)
        results.append(EvalResult(item.question, item.golden, first.answer, match.matched, codes,
                                  {"id": item.id, "file": item.file}, match.kind))
        reasons.append(match.reason)
        if trace.total_turns > 1:
            (probe if match.matched else second)[k] = (trace.turns[-1].answer, bool(trace.final_accuracy))
    return Evaluation(results, reasons, second, probe)
