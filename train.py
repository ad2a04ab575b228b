"""Continual LoRA training with self-correction.

    python train.py FILE.jsonl [FILE ...]   train the current adapter on these files, in order
    python train.py --daemon                watch inbox/ and queue/ and train until stopped
    python train.py --once                  train everything queued, then exit
    python train.py --status                where the daemon stands (safe while it runs)
    python train.py --serve                 the current adapter behind an OpenAI-compatible API (beside the daemon)
    python train.py --practice FILE.jsonl   verified self-training: sample solutions, train those that verify
    python train.py --analyze FILE.jsonl    failure analysis: where the adapter fails, by category and cluster
    python train.py --traces FILE           multi-pass correction traces, a learned policy choosing each reprompt
    python train.py --eval TASK --mode ace  the evaluation harness: baseline or ACE (an evolving playbook), CSV rows

Phases: parse arguments -> load config -> pick the root -> hand off to the mode.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from core.config import load_config, locate, names_hub_model  # noqa: E402
from core.errors import ProjectError  # noqa: E402
from core.importers import FORMATS  # noqa: E402
from core.events import EventLog  # noqa: E402


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description="Continual LoRA training daemon with self-correction.")
    p.add_argument("files", nargs="*", type=Path, help="JSONL files to train on once, in order")
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--daemon", action="store_true", help="watch inbox/ and queue/ and train until stopped")
    mode.add_argument("--once", action="store_true", help="train everything queued, then exit")
    mode.add_argument("--status", action="store_true", help="show queue, training progress and adapter")
    mode.add_argument("--report", action="store_true", help="write logs/report.png and logs/report.html")
    mode.add_argument("--eval", type=Path, metavar="FILE|TASK",
                      help="answer a QA file or a registered task (tatqa_tiny, ...) and report accuracy")
    mode.add_argument("--summarize", type=Path, metavar="DIR",
                      help="accuracy and latency per model, task, mode, adapter and epoch of the result CSVs in DIR")
    mode.add_argument("--grid", type=Path, metavar="GRID.json",
                      help="the harness over adapters x tasks x modes, into one folder, then its summary")
    mode.add_argument("--practice", nargs="+", type=Path, metavar="FILE.jsonl",
                      help="verified self-training: sample solutions to these problems, train the ones that verify")
    mode.add_argument("--analyze", type=Path, metavar="FILE.jsonl",
                      help="failure analysis: answer a QA file, judge, cluster the failures, label the patterns")
    mode.add_argument("--traces", type=Path, metavar="FILE",
                      help="multi-pass correction traces: answer, then reprompt as the learned policy chooses")
    mode.add_argument("--serve", action="store_true",
                      help="serve the current adapter (OpenAI-compatible API and status page) beside the daemon")
    p.add_argument("--host", default=None, help="with --serve: address to listen on (default: serve.host, 127.0.0.1)")
    p.add_argument("--port", type=int, default=None, help="with --serve: port (default: serve.port, 8000; 0: any free)")
    p.add_argument("--adapter", default="current",
                   help="with --eval, --analyze or --traces: current, base, or a version such as v0003")
    p.add_argument("--limit", type=int, default=None, help="with --eval or --traces: only the first N questions")
    p.add_argument("--dataset", choices=FORMATS, default=None,
                   help="with --eval, --traces, --practice or --analyze: the file's format (default: our own JSONL)")
    p.add_argument("--skip-bad", action="store_true",
                   help="with --dataset: skip bad rows (listed) instead of refusing the file")
    p.add_argument("--max-turns", type=int, default=None, metavar="N",
                   help="with --traces: most reprompts per question (default: traces.max_turns, 5)")
    p.add_argument("--provider", default="local", metavar="local|NAME",
                   help="with --traces: who answers: local (this root's model, --adapter) or providers.NAME")
    p.add_argument("--sample", type=int, default=None, metavar="N",
                   help="with --analyze: a stratified sample of N items (default: all)")
    p.add_argument("--out", type=Path, default=None, metavar="DIR",
                   help="with --analyze: the analysis folder (default: data/analysis/<time>/; give it to resume); "
                        "with --summarize: the summary CSV (default: DIR/summary.csv)")
    p.add_argument("--mode", choices=("baseline", "ace"), default=None,
                   help="with --eval: the harness, baseline (ask as is) or ace (the playbook's lessons first)")
    p.add_argument("--playbook", type=Path, default=None, metavar="PATH",
                   help="with --mode ace: the playbook (default: data/ace/<task>.jsonl; kept across runs)")
    p.add_argument("--results", type=Path, default=None, metavar="OUT.csv",
                   help="with --mode: the result CSV (default: data/results/<time>/<task>-<mode>.csv)")
    p.add_argument("--epochs", type=int, default=None, metavar="E",
                   help="with --mode: epoch 0 baseline, then E epochs of ACE on the same items, a CSV each")
    p.add_argument("--dry-run", action="store_true", help="with --grid: list the runs, run nothing")
    p.add_argument("--from-step", type=int, default=None, choices=range(1, 6), metavar="N",
                   help="with --analyze: run again from step N (1-5) on the earlier steps' files in --out")
    p.add_argument("--clusters", type=int, default=None, metavar="K",
                   help="with --analyze: K clusters (default: chosen by silhouette, 2-8)")
    p.add_argument("--judge", choices=("fast", "llm"), default=None,
                   help="with --analyze: fast (the matcher and error codes; default) or llm (providers.judge)")
    p.add_argument("--batch-size", type=int, default=50, metavar="N",
                   help="with --analyze --judge llm: items per judge call (default 50)")
    p.add_argument("--queue", action="store_true",
                   help="with --analyze: queue a training file for the failing clusters (at high priority)")
    p.add_argument("--max-new-tokens", type=int, default=None, metavar="N",
                   help="with --eval: most new tokens per answer (default: eval_max_tokens from config)")
    p.add_argument("--answers", type=Path, default=None, metavar="OUT.jsonl",
                   help="with --eval: also write every item's answers, codes and verdicts, one line each")
    p.add_argument("--config", type=Path, default=None, help="config file (default: ./config.json)")
    p.add_argument("--root", type=Path, default=None,
                   help="folder holding inbox/ queue/ data/ logs/ (default: the config file's folder)")
    args = p.parse_args(argv)
    if (args.answers or args.max_new_tokens is not None) and not args.eval:
        p.error("--answers and --max-new-tokens go with --eval FILE.jsonl")
    if args.limit is not None and not (args.eval or args.traces):
        p.error("--limit goes with --eval FILE or --traces FILE")
    if (args.dataset or args.skip_bad) and not (args.eval or args.traces or args.practice or args.analyze):
        p.error("--dataset and --skip-bad go with --eval, --traces, --practice or --analyze")
    if (args.max_turns is not None or args.provider != "local") and not args.traces:
        p.error("--max-turns and --provider go with --traces FILE")
    if args.max_turns is not None and args.max_turns < 1:
        p.error(f"--max-turns must be at least 1 (got {args.max_turns})")
    if (args.host or args.port is not None) and not args.serve:
        p.error("--host and --port go with --serve")
    if (args.sample is not None or args.from_step or args.clusters or args.judge or args.queue) and not args.analyze:
        p.error("--sample, --from-step, --clusters, --judge and --queue go with --analyze FILE.jsonl")
    if args.out and not (args.analyze or args.summarize):
        p.error("--out goes with --analyze or --summarize")
    if (args.playbook or args.results or args.epochs is not None) and not args.mode:
        p.error("--playbook, --results and --epochs go with --eval TASK --mode baseline|ace")
    if args.mode and not args.eval:
        p.error("--mode goes with --eval FILE|TASK")
    if args.mode and (args.answers or args.dataset or args.max_new_tokens is not None):
        p.error("--answers, --dataset and --max-new-tokens go with --eval without --mode")
    if args.epochs is not None and args.epochs < 1:
        p.error(f"--epochs must be at least 1 (got {args.epochs})")
    if args.dry_run and not args.grid:
        p.error("--dry-run goes with --grid GRID.json")
    if args.batch_size < 1:
        p.error(f"--batch-size must be at least 1 (got {args.batch_size})")
    if args.from_step and not args.out:
        p.error("--from-step needs --out DIR: the analysis folder whose earlier steps it reuses")
    if args.max_new_tokens is not None and args.max_new_tokens < 1:
        p.error(f"--max-new-tokens must be at least 1 (got {args.max_new_tokens})")
    return args


def warm_up(config, root: Path, events: EventLog):
    """What every one-shot mode holds while it trains: the root's lock (a daemon on the same root would corrupt
    the state), the vLLM hook, the engine with the model loaded, and the live monitor."""
    from daemon.lock import RootLock
    from daemon.queue import Queue
    from daemon.vllm import attach_vllm_notifier
    from daemon.worker import GENERATED_BY
    from monitor.live_inference import attach_monitor
    from training.engine import TrainingEngine

    lock = RootLock(root).acquire()
    notifier = attach_vllm_notifier(config, root, events)
    engine = TrainingEngine(config, root, events)
    monitor = attach_monitor(engine, root=root, config=config, outbox=Queue(root).outbox(GENERATED_BY), events=events)
    return lock, notifier, engine, monitor


def cool_down(lock, notifier) -> None:
    lock.release()  # on an error, process exit releases it
    if notifier:
        notifier.wait(timeout=60)


def one_shot(files: list[Path], config, root: Path, events: EventLog) -> int:
    """Train the named files in order, through the daemon's own job path; the files stay where they are."""
    from daemon.job import train_file

    lock, notifier, engine, monitor = warm_up(config, root, events)
    # Check every file before training any, so a bad file never leaves the job half done.
    prepared = [engine.prepare(f) for f in files]
    for p in prepared:
        events.emit("claimed", f"{p.name}: {len(p.encoded)} examples", file=p.name, sha256=p.sha256)
        train_file(p, engine=engine, monitor=monitor, events=events, label=p.name, origin=None, once=False)
    cool_down(lock, notifier)
    return 0


def practice(files: list[Path], config, root: Path, events: EventLog, *, dataset: str | None = None,
             skip_bad: bool = False) -> int:
    """Verified self-training, one-shot: for each file, `practice.rounds` rounds of sample -> verify -> train, each
    round sampling from the adapter the last one made (the daemon's rounds, trained here instead of queued).
    Every file is checked before any work."""
    from core.practice import read_problems
    from daemon.job import train_file
    from selfcorrect.practice import practice_round, round_name, work_folder

    if dataset:
        from core.importers import read_dataset

        problems = {}
        for f in files:
            questions, skipped = read_dataset(f, dataset, skip_bad=skip_bad)
            note_skipped(f, skipped, events)
            problems[f] = [q.as_problem() for q in questions]
    else:
        problems = {f: read_problems(f, max_line_bytes=config.training.max_line_bytes) for f in files}
    lock, notifier, engine, monitor = warm_up(config, root, events)
    for f, items in problems.items():
        work = work_folder(root, f)
        for round_no in range(1, config.practice.rounds + 1):
            out, stats = practice_round(engine, items, work, round_no, label=f.name, settings=config.practice,
                                        events=events)
            if not stats.kept + stats.golden:
                events.emit("practice", f"{f.name} round {round_no}: nothing verified and no golden solution; "
                            "nothing to train")
                break
            prepared = engine.prepare(out, name=round_name(work, round_no), generated=True)
            train_file(prepared, engine=engine, monitor=monitor, events=events, label=prepared.name,
                       origin="practice", once=True)
    cool_down(lock, notifier)
    return 0


def note_skipped(path: Path, skipped: list[tuple[int, str]], events: EventLog) -> None:
    """Bad rows skipped with --skip-bad, named in the log."""
    if skipped:
        events.emit("data", f"{path.name}: skipped {len(skipped)} bad rows (--skip-bad): "
                    + "; ".join(f"row {n}: {reason}" for n, reason in skipped[:5])
                    + (" ..." if len(skipped) > 5 else ""), file=path.name, skipped=len(skipped))


def read_questions(path: Path, events: EventLog, *, dataset: str | None, limit: int | None, skip_bad: bool,
                   config=None, root: Path | None = None):
    """A file's questions as QA items, through its importer; a name that is no file but a task, its items."""
    from core.importers import read_items

    if dataset is None and config is not None and not path.exists():
        from core.tasks import load_task

        task = load_task(str(path), config.tasks, root)
        return [i.as_item(task.name) for i in task.items][:limit]
    items, skipped = read_items(path, dataset, limit=limit, skip_bad=skip_bad)
    note_skipped(path, skipped, events)
    return items


def evaluate_file(path: Path, config, root: Path, events: EventLog, *, adapter: str, limit: int | None,
                  answers: Path | None, max_new_tokens: int | None, dataset: str | None, skip_bad: bool) -> int:
    from evaluation.evaluate import evaluate
    from inference.loading import load_for_inference
    from monitor.console import evaluation_table

    items = read_questions(path, events, dataset=dataset, limit=limit, skip_bad=skip_bad, config=config, root=root)
    model, tokenizer, use_template, label = load_for_inference(config, root, adapter)
    sc = config.self_correction
    ev = evaluate(model, tokenizer, items, use_template=use_template,
                  max_new_tokens=max_new_tokens or config.eval_max_tokens,
                  templates=sc.templates, second_attempt=sc.measure_second_attempt, count_tokens=tokenizer,
                  first_wrong_value=config.experimental.first_wrong_value,
                  right_probe=len(items))  # offline, so every right answer is re-asked: right->wrong is a rate
    evaluation_table(ev, title=f"{path.name} with adapter {label}")
    if answers:
        from core.fsutil import atomic_write_text

        atomic_write_text(answers, "".join(json.dumps(row) + "\n" for row in ev.per_item()))
    print(json.dumps({**ev.summary(), "adapter": label}))
    return 0


def analyze_file(path: Path, config, root: Path, events: EventLog, *, adapter: str, sample: int | None,
                 out: Path | None, from_step: int | None, clusters: int | None, judge: str | None,
                 batch_size: int, queue: bool, dataset: str | None, skip_bad: bool) -> int:
    import time

    from evaluation.analysis import analyze
    from inference.embedding import resolve_embedding_model
    from inference.loading import load_for_inference
    from inference.providers import make_provider, provider_section
    from inference.sampling import SamplingEngine

    items = read_questions(path, events, dataset=dataset, limit=None, skip_bad=skip_bad, config=config, root=root)
    make_judge = None
    if judge == "llm":
        provider_section("judge", config)  # a missing providers.judge is named now, before any work
        make_judge = lambda: make_provider("judge", config, root)  # noqa: E731 (made when step 3 runs)
    out = out or root / "data" / "analysis" / time.strftime("%Y%m%d-%H%M%S")

    def load_engine():
        model, tokenizer, use_template, label = load_for_inference(config, root, adapter)
        return SamplingEngine(model, tokenizer, use_template=use_template), label

    patterns = analyze(items, out, load_engine=load_engine, events=events, sample=sample,
                       seed=config.training.seed, from_step=from_step, max_new_tokens=config.eval_max_tokens,
                       clusters=clusters, make_judge=make_judge, batch_size=batch_size,
                       embedding_model=resolve_embedding_model(config.analysis.embedding_model, config, root))
    queued = None
    if queue:
        queued = queue_targeted(out, items, root, events)
    print(json.dumps({"out": str(out), **json.loads((out / "summary.json").read_text()),
                      "patterns": [p["label"] for p in patterns], "queued": queued}))
    return 0


def trace_file(path: Path, config, root: Path, events: EventLog, *, dataset: str | None, limit: int | None,
               skip_bad: bool, max_turns: int | None, provider: str, adapter: str) -> int:
    """Phases: read the questions -> the provider and the policy -> trace them all (each trace logged as it
    ends, the policy saved after each update) -> the run summary -> the training examples, when traces.train."""
    import asyncio
    import time

    from core.fsutil import atomic_write_json
    from daemon.queue import Queue
    from inference.providers import LocalProvider, make_provider
    from selfcorrect.policy import policy_for
    from selfcorrect.traces import TraceLog, Tracer, now, summary, write_examples

    items = read_questions(path, events, dataset=dataset, limit=limit, skip_bad=skip_bad)
    settings = config.traces
    tokenizer = None
    if provider == "local":
        from inference.loading import load_for_inference
        from inference.sampling import SamplingEngine

        model, tokenizer, use_template, label = load_for_inference(config, root, adapter)
        answerer = LocalProvider(SamplingEngine(model, tokenizer, use_template=use_template), name=label)
    else:
        answerer = make_provider(provider, config, root)
    policy = policy_for(root, settings)
    name = dataset or path.stem
    tracer = Tracer(answerer, policy, settings, max_turns=max_turns or settings.max_turns, dataset=name,
                    tokenizer=tokenizer)
    events.emit("traces", f"{path.name}: {len(items)} questions, up to {tracer.max_turns} reprompts each, policy "
                f"{settings.policy} ({policy.updates} updates so far), answered by {answerer.name}",
                file=path.name, n=len(items))
    started, start_time, done = time.time(), now(), []

    def progress(trace) -> None:
        done.append(trace)
        if len(done) % 25 == 0 or len(done) == len(items):
            right = sum(t.final_accuracy for t in done)
            events.emit("traces", f"{len(done)}/{len(items)} traced, final accuracy {right / len(done):.0%}, "
                        f"{sum(t.total_turns for t in done) / len(done):.2f} turns per trace", done=len(done))

    async def run():
        try:
            return await tracer.run(items, TraceLog(root / "logs"), on_trace=progress)
        finally:
            await answerer.close()

    try:
        traces = asyncio.run(run())
    except Exception:
        if items and len(tracer.failed) == len(items):  # nothing answered: say so, with the provider's error
            raise ProjectError(f"{path.name}: the provider {answerer.name} failed on every question "
                               f"({tracer.failed[0][1][:300]}); nothing traced. Is it running?") from None
        raise
    result = summary(traces, policy, started=started, start_time=start_time)
    out = root / "logs" / f"summary_{time.strftime('%Y%m%d_%H%M%S')}.json"
    atomic_write_json(out, result)
    queued = None
    if settings.train and tracer.examples:
        sc = config.self_correction
        queued = write_examples(root, tracer.examples, outbox=Queue(root).outbox("traces"),
                                queue=sc.queue if sc.auto_queue else None)
        events.emit("traces", f"{len(tracer.examples)} training examples from the traces -> {queued}",
                    path=str(queued))
    if tracer.failed:
        events.emit("traces", f"{len(tracer.failed)} questions not traced, the provider failed on them (first: "
                    f"{tracer.failed[0][0]}: {tracer.failed[0][1][:200]}); run them again later",
                    failed=[q for q, _ in tracer.failed])
    acc = result["accuracy"]
    events.emit("traces", f"{path.name}: accuracy {acc['initial']:.0%} first -> {acc['final']:.0%} final, "
                f"{acc['tokens_per_trace']:.0f} tokens per trace; summary {out}", summary=str(out))
    print(json.dumps({"summary": str(out), "dataset": name, **acc, "traces": len(traces), "failed": len(tracer.failed),
                      "policy_updates": policy.updates, "examples": str(queued) if queued else None}))
    return 0


def open_roles(config, root: Path, adapter: str, *, reflector: bool):
    """The harness's providers: (generator, reflector or None, model id, tokenizer or None, the adapter version
    answering: "base", "v0003"). `local` is this root's model with `adapter`, loaded once for both roles."""
    from inference.providers import LocalProvider, make_provider

    local = {}

    def role(name: str):
        if name != "local":
            return make_provider(name, config, root)
        if not local:
            from inference.loading import load_for_inference
            from inference.sampling import SamplingEngine

            model, tokenizer, use_template, label = load_for_inference(config, root, adapter)
            local.update(provider=LocalProvider(SamplingEngine(model, tokenizer, use_template=use_template),
                                                name=label), tokenizer=tokenizer, label=label)
        return local["provider"]

    generator = role(config.ace.generator)
    model_id = config.model.name_or_path if config.ace.generator == "local" else generator.name
    return (generator, role(config.ace.reflector) if reflector else None, model_id, local.get("tokenizer"),
            local.get("label", adapter))


async def run_harness(task, items, config, events: EventLog, *, plan: list[tuple[int, str]], playbook,
                      results: dict, roles) -> list[list[dict]]:
    """Each (epoch, mode) of the plan on the same items; each epoch's rows written to its CSV as it ends."""
    from evaluation.harness import Harness, write_csv

    generator, reflector, model_id, tokenizer, adapter = roles
    harness = Harness(generator, config.ace, reflector=reflector, playbook=playbook, model_id=model_id,
                      adapter=adapter, max_new_tokens=config.eval_max_tokens, tokenizer=tokenizer)
    out = []
    for epoch, mode in plan:
        done: list[dict] = []
        try:
            rows = await harness.run(task, items, mode=mode, epoch=epoch, on_row=done.append)
        except Exception as e:  # a provider that fails (after the client's retries): keep what was answered
            if done:
                write_csv(results[epoch], done)
            raise ProjectError(f"{task.name} {mode} epoch {epoch}: a provider failed ({type(e).__name__}: "
                               f"{str(e)[:300]}); {len(done)} of {len(items)} rows written to {results[epoch]}"
                               + (f", the playbook saved ({len(playbook.lessons)} lessons)" if playbook else "")
                               ) from None
        write_csv(results[epoch], rows)
        right = sum(r["correct"] for r in rows)
        st = harness.stats
        events.emit("harness", f"{task.name} {mode} epoch {epoch} with {adapter}: accuracy {right}/{len(rows)}"
                    + (f", playbook {len(playbook.lessons)} lessons (so far: {st['reflections']} reflections, "
                       f"{st['empty_reflections']} with no usable lesson; lessons {st['added']} added, {st['merged']} "
                       f"merged, {st['generic']} generic dropped, {st['pruned']} pruned)" if mode == "ace" else "")
                    + f" -> {results[epoch]}", task=task.name, mode=mode, epoch=epoch, accuracy=right / len(rows),
                    **(st if mode == "ace" else {}))
        out.append(rows)
    return out


async def close_roles(roles) -> None:
    for provider in {id(p): p for p in roles[:2] if p is not None}.values():
        await provider.close()


def harness_eval(target: Path, config, root: Path, events: EventLog, *, mode: str, adapter: str,
                 playbook: Path | None, results: Path | None, limit: int | None, epochs: int | None) -> int:
    """Phases: the task -> the roles -> each epoch (0: `mode`, or with --epochs baseline then ACE epochs on the
    same items, the playbook evolving) -> a CSV per epoch, the epoch table and a JSON line."""
    import asyncio
    import time

    from core.tasks import load_task
    from evaluation.ace import Playbook
    from evaluation.harness import markdown, summarize

    task = load_task(str(target), config.tasks, root)
    items = task.items[:limit]
    plan = [(0, "baseline")] + [(e, "ace") for e in range(1, epochs + 1)] if epochs else [(0, mode)]
    uses_ace = any(m == "ace" for _, m in plan)
    book = Playbook(playbook or root / "data" / "ace" / f"{task.name}.jsonl") if uses_ace else None
    folder = root / "data" / "results" / time.strftime("%Y%m%d-%H%M%S")
    base = results or folder / f"{task.name}-{mode}.csv"
    paths = {e: base if len(plan) == 1 else base.with_name(f"{base.stem}.epoch{e}{base.suffix}") for e, _ in plan}
    roles = open_roles(config, root, adapter, reflector=uses_ace)
    events.emit("harness", f"{task.name}: {len(items)} items ({task.source}), "
                + ", ".join(f"epoch {e} {m}" for e, m in plan) + f", adapter {adapter}"
                + (f", playbook {book.path} ({len(book.lessons)} lessons)" if book else ""))

    async def run():
        try:
            return await run_harness(task, items, config, events, plan=plan, playbook=book, results=paths,
                                     roles=roles)
        finally:
            await close_roles(roles)

    epochs_rows = asyncio.run(run())
    table = summarize([r for rows in epochs_rows for r in rows])
    print(markdown(table))
    print(json.dumps({"task": task.name, "n": len(items), "adapter": roles[4],
                      "epochs": [{"epoch": t["epoch"], "mode": t["mode"], "accuracy": t["accuracy"],
                                  "exact_match": t["exact_match"], "latency_p50_ms": t["latency_p50_ms"]} for t in table],
                      "accuracy": table[-1]["accuracy"], "results": [str(p) for p in paths.values()],
                      "playbook": str(book.path) if book else None, "lessons": len(book.lessons) if book else None}))
    return 0


def summarize_dir(folder: Path, out: Path | None) -> int:
    from evaluation.harness import COLUMNS, markdown, read_csvs, summarize, write_summary

    paths = [p for p in sorted(Path(folder).rglob("*.csv")) if p.name != "summary.csv" and p != out]
    rows = read_csvs(paths)
    if not rows:
        raise ProjectError(f"{folder}: no result CSVs (files with the harness's columns: {', '.join(COLUMNS[:8])})")
    table = summarize(rows)
    target = out or Path(folder) / "summary.csv"
    write_summary(target, table)
    print(markdown(table))
    print(json.dumps({"summary": str(target), "groups": len(table), "rows": len(rows)}))
    return 0


def grid(spec_path: Path, config, root: Path, events: EventLog, *, dry_run: bool) -> int:
    """Adapters x tasks x modes of a grid file, each run's CSV in the grid's folder, then the summary. Each
    adapter is loaded once; each (adapter, task) has a playbook of its own in the folder."""
    import asyncio

    from core.tasks import load_grid, load_task
    from evaluation.ace import Playbook

    spec = load_grid(spec_path)
    out = spec.out if spec.out.is_absolute() else root / spec.out
    runs = [(a, t, m) for a in spec.adapters for t in spec.tasks for m in spec.modes]
    for a, t, m in runs:
        print(f"{a}\t{t}\t{m}\t-> {out / a / f'{t}-{m}.csv'}")
    if dry_run:
        print(json.dumps({"runs": len(runs), "out": str(out), "dry_run": True}))
        return 0
    tasks = {t: load_task(t, config.tasks, root) for t in spec.tasks}  # every task checked before any run

    async def run(adapter: str, roles) -> None:
        try:
            for t, task in tasks.items():
                for mode in spec.modes:
                    book = Playbook(out / adapter / f"playbook-{t}.jsonl") if mode == "ace" else None
                    await run_harness(task, task.items[:spec.limit], config, events, plan=[(0, mode)],
                                      playbook=book, results={0: out / adapter / f"{t}-{mode}.csv"}, roles=roles)
        finally:
            await close_roles(roles)

    for adapter in spec.adapters:
        asyncio.run(run(adapter, open_roles(config, root, adapter, reflector="ace" in spec.modes)))
    return summarize_dir(out, None)


def queue_targeted(out: Path, items, root: Path, events: EventLog) -> str | None:
    """Step 6: the targeted training file, from the analysed file's items outside its test set and the user's
    files trained before (queue/done/), queued at high priority. The validation pool and the gate set are held
    out on purpose: they measure the model, so they are never trained."""
    import hashlib

    from core.data import read_examples
    from core.errors import DataError
    from core.qa import qa_items
    from daemon.queue import STAMPED, Queue
    from evaluation.analysis import targeted

    candidates = list(items)
    done = root / "queue" / "done"
    for path in sorted(done.glob("*.jsonl")) if done.is_dir() else []:
        if (m := STAMPED.match(path.name)) and m["origin"] is None:  # a user's file, not one we generated
            try:
                examples = read_examples(path)
            except DataError:
                continue
            candidates += qa_items(examples, file=STAMPED.sub("", path.name),
                                   sha256=hashlib.sha256(path.read_bytes()).hexdigest())
    records = targeted(out, candidates)
    if not records:
        events.emit("analysis", "6 queue: no item outside the test set is near the failures; nothing queued", step=6)
        return None
    queued = Queue(root).outbox("analysis").add(f"targeted-{out.name}.jsonl", (out / "targeted.jsonl").read_bytes(),
                                                "high")
    counts = json.loads((out / "targeted.json").read_text())["per_cluster"]
    events.emit("analysis", f"6 queue: {len(records)} examples near the failing clusters ("
                + ", ".join(f"cluster {k}: {v}" for k, v in counts.items()) + f") -> queue/high/{queued.name}",
                step=6, file=queued.name)
    return queued.name


def mode_name(args) -> str:
    return ("daemon" if args.daemon else "once" if args.once else "eval" if args.eval else "serve" if args.serve
            else "practice" if args.practice else "analyze" if args.analyze else "traces" if args.traces
            else "grid" if args.grid else "train")


def announce(config, config_path: Path, root: Path, events: EventLog, *, mode: str) -> None:
    """The first log line, for a person: what runs where. The whole resolved config goes to a file beside the
    logs (and beside every adapter version)."""
    from core.device import plan_device
    from core.fsutil import atomic_write_text

    plan = plan_device(config.training.precision)
    resolved = root / "logs" / "config.resolved.json"
    atomic_write_text(resolved, config.model_dump_json(indent=2) + "\n")
    events.emit("start", f"{mode}: model {config.model.name_or_path} on {plan.device} ({plan.precision}), root {root}, "
                f"pid {os.getpid()}; config {config_path} (resolved in logs/{resolved.name})",
                mode=mode, model=config.model.name_or_path, device=plan.device, precision=plan.precision,
                root=str(root), pid=os.getpid(), config=str(config_path))


def main(argv=None) -> int:
    args = parse_args(argv)
    config_path, root = locate(args.config, args.root)
    if args.status:
        from daemon.status import show

        show(root)
        return 0
    if args.report:
        from monitor.report import write_report

        png, page = write_report(root)
        print(f"wrote {png} and {page}")
        return 0
    if args.summarize:
        try:
            return summarize_dir(args.summarize, args.out)
        except ProjectError as e:
            print(e, file=sys.stderr)
            return 1
    rank = os.environ.get("RANK", "0")  # several processes (accelerate launch, torchrun): rank 0 alone writes logs
    events = EventLog(root / "logs") if rank == "0" else EventLog(None, prefix=f"rank {rank}: ")
    try:
        config = load_config(config_path)
        if not names_hub_model(config, root):
            os.environ.setdefault("HF_HUB_OFFLINE", "1")  # before transformers is imported: no network at all
        world = join_world(args, config)
        try:
            if not world.main:
                from daemon.follower import follow

                return follow(config, root, events, world)
            announce(config, config_path, root, events, mode=mode_name(args))
            try:
                return run_mode(args, config, config_path, root, events)
            finally:
                world.release()  # the other ranks stop with rank 0, however it ends
        finally:
            world.leave()
    except ProjectError as e:
        events.emit("error", str(e))
        return 1


def join_world(args, config):
    """One process, or one rank of several: those join the process group; only the training modes run so."""
    from training.distributed import World

    world = World.from_env()
    if world.size > 1:
        if not (args.daemon or args.once or args.files):
            raise ProjectError(f"{mode_name(args)} runs in one process, not under a multi-process launch "
                               f"(WORLD_SIZE={world.size}): only --daemon, --once and FILE... train on several")
        x = config.experimental
        if x.preference_weight or x.unlikelihood_weight:
            raise ProjectError("experimental.preference_weight and experimental.unlikelihood_weight train in one "
                               f"process only, not under a multi-process launch (WORLD_SIZE={world.size}): set "
                               "them to 0 or run one process")
        world.join(timeout_seconds=config.daemon.distributed_timeout_seconds, precision=config.training.precision)
    return world


def run_mode(args, config, config_path: Path, root: Path, events: EventLog) -> int:
    if args.eval and args.mode:
        return harness_eval(args.eval, config, root, events, mode=args.mode, adapter=args.adapter,
                            playbook=args.playbook, results=args.results, limit=args.limit, epochs=args.epochs)
    if args.grid:
        return grid(args.grid, config, root, events, dry_run=args.dry_run)
    if args.eval:
        return evaluate_file(args.eval, config, root, events, adapter=args.adapter, limit=args.limit,
                             answers=args.answers, max_new_tokens=args.max_new_tokens, dataset=args.dataset,
                             skip_bad=args.skip_bad)
    if args.traces:
        return trace_file(args.traces, config, root, events, dataset=args.dataset, limit=args.limit,
                          skip_bad=args.skip_bad, max_turns=args.max_turns, provider=args.provider,
                          adapter=args.adapter)
    if args.practice:
        return practice(args.practice, config, root, events, dataset=args.dataset, skip_bad=args.skip_bad)
    if args.analyze:
        return analyze_file(args.analyze, config, root, events, adapter=args.adapter, sample=args.sample,
                            out=args.out, from_step=args.from_step, clusters=args.clusters, judge=args.judge,
                            batch_size=args.batch_size, queue=args.queue, dataset=args.dataset,
                            skip_bad=args.skip_bad)
    if args.serve:
        from serve.app import serve

        return serve(config, root, events, host=args.host, port=args.port)
    if args.daemon or args.once:
        from daemon.worker import Daemon

        return Daemon(root=root, config_path=config_path, config=config, events=events, once=args.once).run()
    if args.files:
        return one_shot(args.files, config, root, events)
    print("nothing to do: name files to train, or use --daemon (see --help)", file=sys.stderr)
    return 2


if __name__ == "__main__":
    code = main()
    # With torch, transformers and peft loaded, the interpreter's last garbage collection walks millions of objects
    # (1.5 s of every run's exit, measured). Nothing is left to collect that matters: every file we write is closed
    # where it is written (and fsynced where it must survive a crash), and logging's atexit handler still runs.
    import gc

    gc.freeze()
    sys.exit(code)
