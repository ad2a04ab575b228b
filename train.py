"""Continual LoRA training with self-correction.

    python train.py FILE.jsonl [FILE ...]   train the current adapter on these files, in order
    python train.py --daemon                watch inbox/ and queue/ and train until stopped
    python train.py --once                  train everything queued, then exit
    python train.py --status                where the daemon stands (safe while it runs)
    python train.py --serve                 the current adapter behind an OpenAI-compatible API (beside the daemon)
    python train.py --practice FILE.jsonl   verified self-training: sample solutions, train those that verify
    python train.py --analyze FILE.jsonl    failure analysis: where the adapter fails, by category and cluster

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
from core.events import EventLog  # noqa: E402


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description="Continual LoRA training daemon with self-correction.")
    p.add_argument("files", nargs="*", type=Path, help="JSONL files to train on once, in order")
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--daemon", action="store_true", help="watch inbox/ and queue/ and train until stopped")
    mode.add_argument("--once", action="store_true", help="train everything queued, then exit")
    mode.add_argument("--status", action="store_true", help="show queue, training progress and adapter")
    mode.add_argument("--report", action="store_true", help="write logs/report.png and logs/report.html")
    mode.add_argument("--eval", type=Path, metavar="FILE.jsonl", help="answer a QA file and report accuracy")
    mode.add_argument("--practice", nargs="+", type=Path, metavar="FILE.jsonl",
                      help="verified self-training: sample solutions to these problems, train the ones that verify")
    mode.add_argument("--analyze", type=Path, metavar="FILE.jsonl",
                      help="failure analysis: answer a QA file, judge, cluster the failures, label the patterns")
    mode.add_argument("--serve", action="store_true",
                      help="serve the current adapter (OpenAI-compatible API and status page) beside the daemon")
    p.add_argument("--host", default=None, help="with --serve: address to listen on (default: serve.host, 127.0.0.1)")
    p.add_argument("--port", type=int, default=None, help="with --serve: port (default: serve.port, 8000; 0: any free)")
    p.add_argument("--adapter", default="current",
                   help="with --eval or --analyze: current, base, or a version such as v0003")
    p.add_argument("--limit", type=int, default=None, help="with --eval: only the first N questions")
    p.add_argument("--sample", type=int, default=None, metavar="N",
                   help="with --analyze: a stratified sample of N items (default: all)")
    p.add_argument("--out", type=Path, default=None, metavar="DIR",
                   help="with --analyze: the analysis folder (default: data/analysis/<time>/; give it to resume)")
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
    if (args.answers or args.limit is not None or args.max_new_tokens is not None) and not args.eval:
        p.error("--answers, --limit and --max-new-tokens go with --eval FILE.jsonl")
    if (args.host or args.port is not None) and not args.serve:
        p.error("--host and --port go with --serve")
    if (args.sample is not None or args.out or args.from_step or args.clusters or args.judge or args.queue) \
            and not args.analyze:
        p.error("--sample, --out, --from-step, --clusters, --judge and --queue go with --analyze FILE.jsonl")
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


def practice(files: list[Path], config, root: Path, events: EventLog) -> int:
    """Verified self-training, one-shot: for each file, `practice.rounds` rounds of sample -> verify -> train, each
    round sampling from the adapter the last one made (the daemon's rounds, trained here instead of queued).
    Every file is checked before any work."""
    from core.practice import read_problems
    from daemon.job import train_file
    from selfcorrect.practice import practice_round, round_name, work_folder

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


def evaluate_file(path: Path, config, root: Path, *, adapter: str, limit: int | None, answers: Path | None,
                  max_new_tokens: int | None) -> int:
    from core.qa import read_qa
    from evaluation.evaluate import evaluate
    from inference.loading import load_for_inference
    from monitor.console import evaluation_table

    items = read_qa(path)[:limit]
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
                 batch_size: int, queue: bool) -> int:
    import time

    from core.qa import read_qa
    from evaluation.analysis import analyze
    from inference.loading import load_for_inference
    from inference.providers import make_provider, provider_section
    from inference.sampling import SamplingEngine

    items = read_qa(path)
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
                       clusters=clusters, make_judge=make_judge, batch_size=batch_size)
    queued = None
    if queue:
        queued = queue_targeted(out, items, root, events)
    print(json.dumps({"out": str(out), **json.loads((out / "summary.json").read_text()),
                      "patterns": [p["label"] for p in patterns], "queued": queued}))
    return 0


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
            else "practice" if args.practice else "analyze" if args.analyze else "train")


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
    events = EventLog(root / "logs")
    try:
        config = load_config(config_path)
        if not names_hub_model(config, root):
            os.environ.setdefault("HF_HUB_OFFLINE", "1")  # before transformers is imported: no network at all
        announce(config, config_path, root, events, mode=mode_name(args))
        if args.eval:
            return evaluate_file(args.eval, config, root, adapter=args.adapter, limit=args.limit,
                                 answers=args.answers, max_new_tokens=args.max_new_tokens)
        if args.practice:
            return practice(args.practice, config, root, events)
        if args.analyze:
            return analyze_file(args.analyze, config, root, events, adapter=args.adapter, sample=args.sample,
                                out=args.out, from_step=args.from_step, clusters=args.clusters, judge=args.judge,
                                batch_size=args.batch_size, queue=args.queue)
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
    except ProjectError as e:
        events.emit("error", str(e))
        return 1


if __name__ == "__main__":
    sys.exit(main())
