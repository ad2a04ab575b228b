"""`selfcorrect traces FILE`: multi-pass correction traces, a learned policy choosing each reprompt.

Phases: read the questions -> the provider and the policy -> trace them all (each trace logged as it ends, the
policy saved after each update) -> the run summary -> the training examples, when traces.train."""
from __future__ import annotations

import json
import time
from pathlib import Path

from core.errors import ProjectError

from .options import ADAPTER, DATASET, LIMIT, add_command, positive
from .questions import read_questions


def add_parser(sub) -> None:
    p = add_command(sub, "traces", run=run, parents=[ADAPTER, LIMIT, DATASET],
                    help="multi-pass correction traces: answer, then reprompt as the learned policy chooses",
                    example="selfcorrect traces examples/word_problems.jsonl --max-turns 3")
    p.add_argument("file", type=Path, metavar="FILE", help="the questions to trace")
    p.add_argument("--max-turns", type=positive, default=None, metavar="N",
                   help="most reprompts per question (default: traces.max_turns, 5)")
    p.add_argument("--provider", default="local", metavar="local|NAME",
                   help="who answers: local (this root's model, --adapter) or providers.NAME")


def answerer_for(args, ctx):
    """(the provider that answers, the tokenizer that counts its tokens or None)."""
    from inference.providers import LocalProvider, make_provider

    if args.provider != "local":
        return make_provider(args.provider, ctx.config, ctx.root), None
    from inference.loading import load_sampling_engine

    sampler, label = load_sampling_engine(ctx.config, ctx.root, args.adapter)
    return LocalProvider(sampler, name=label), sampler.tokenizer


def trace_all(tracer, answerer, items, ctx, *, path: Path) -> list:
    """Every question traced, progress logged every 25; nothing answered at all is an error naming the provider."""
    import asyncio

    from selfcorrect.traces import TraceLog

    done = []

    def progress(trace) -> None:
        done.append(trace)
        if len(done) % 25 == 0 or len(done) == len(items):
            right = sum(t.final_accuracy for t in done)
            ctx.events.emit("traces", f"{len(done)}/{len(items)} traced, final accuracy {right / len(done):.0%}, "
                            f"{sum(t.total_turns for t in done) / len(done):.2f} turns per trace", done=len(done))

    async def go():
        try:
            return await tracer.run(items, TraceLog(ctx.root / "logs"), on_trace=progress)
        finally:
            await answerer.close()

    try:
        return asyncio.run(go())
    except Exception:
        if items and len(tracer.failed) == len(items):  # nothing answered: say so, with the provider's error
            raise ProjectError(f"{path.name}: the provider {answerer.name} failed on every question "
                               f"({tracer.failed[0][1][:300]}); nothing traced. Is it running?") from None
        raise


def queue_examples(tracer, ctx) -> Path | None:
    """traces.train: the traces' training examples, queued as the self-correction settings say."""
    from daemon.queue import Queue
    from selfcorrect.traces import write_examples

    if not (ctx.config.traces.train and tracer.examples):
        return None
    sc = ctx.config.self_correction
    queued = write_examples(ctx.root, tracer.examples, outbox=Queue(ctx.root).outbox("traces"),
                            queue=sc.queue if sc.auto_queue else None)
    ctx.events.emit("traces", f"{len(tracer.examples)} training examples from the traces -> {queued}", path=str(queued))
    return queued


def run(args, ctx) -> int:
    from core.fsutil import atomic_write_json
    from selfcorrect.policy import policy_for
    from selfcorrect.traces import Tracer, now, summary

    items = read_questions(args.file, ctx, dataset=args.dataset, limit=args.limit, skip_bad=args.skip_bad, tasks=False)
    settings, events = ctx.config.traces, ctx.events
    answerer, tokenizer = answerer_for(args, ctx)
    policy = policy_for(ctx.root, settings)
    name = args.dataset or args.file.stem
    tracer = Tracer(answerer, policy, settings, max_turns=args.max_turns or settings.max_turns, dataset=name,
                    tokenizer=tokenizer)
    events.emit("traces", f"{args.file.name}: {len(items)} questions, up to {tracer.max_turns} reprompts each, "
                f"policy {settings.policy} ({policy.updates} updates so far), answered by {answerer.name}",
                file=args.file.name, n=len(items))
    started, start_time = time.time(), now()
    traces = trace_all(tracer, answerer, items, ctx, path=args.file)
    result = summary(traces, policy, started=started, start_time=start_time)
    out = ctx.root / "logs" / f"summary_{time.strftime('%Y%m%d_%H%M%S')}.json"
    atomic_write_json(out, result)
    queued = queue_examples(tracer, ctx)
    if tracer.failed:
        events.emit("traces", f"{len(tracer.failed)} questions not traced, the provider failed on them (first: "
                    f"{tracer.failed[0][0]}: {tracer.failed[0][1][:200]}); run them again later",
                    failed=[q for q, _ in tracer.failed])
    acc = result["accuracy"]
    events.emit("traces", f"{args.file.name}: accuracy {acc['initial']:.0%} first -> {acc['final']:.0%} final, "
                f"{acc['tokens_per_trace']:.0f} tokens per trace; summary {out}", summary=str(out))
    print(json.dumps({"summary": str(out), "dataset": name, **acc, "traces": len(traces), "failed": len(tracer.failed),
                      "policy_updates": policy.updates, "examples": str(queued) if queued else None}))
    return 0
