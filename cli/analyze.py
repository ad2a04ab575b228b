"""`selfcorrect analyze FILE`: failure analysis. Answer a QA file once, judge, cluster the failures, label the
patterns (steps 1-5, evaluation/analysis.py); --queue adds step 6, a training file for the failing clusters."""
from __future__ import annotations

import json
import time
from pathlib import Path

from .options import ADAPTER, DATASET, add_command, positive
from .questions import read_questions


def add_parser(sub) -> None:
    p = add_command(sub, "analyze", run=run, parents=[ADAPTER, DATASET],
                    help="failure analysis: answer a QA file, judge, cluster the failures, label the patterns",
                    example="selfcorrect analyze examples/word_problems.jsonl --sample 500 --queue")
    p.add_argument("file", type=Path, metavar="FILE", help="the QA file to analyse")
    p.add_argument("--sample", type=int, default=None, metavar="N", help="a stratified sample of N items (default: all)")
    p.add_argument("--out", type=Path, default=None, metavar="DIR",
                   help="the analysis folder (default: data/analysis/<time>/; give it to resume)")
    p.add_argument("--from-step", type=int, default=None, choices=range(1, 6), metavar="N",
                   help="run again from step N (1-5) on the earlier steps' files in --out")
    p.add_argument("--clusters", type=int, default=None, metavar="K", help="K clusters (default: by silhouette, 2-8)")
    p.add_argument("--judge", choices=("fast", "llm"), default=None,
                   help="fast (the matcher and error codes; default) or llm (providers.judge)")
    p.add_argument("--batch-size", type=positive, default=50, metavar="N",
                   help="with --judge llm: items per judge call (default 50)")
    p.add_argument("--queue", action="store_true", help="queue a training file for the failing clusters (high priority)")


def run(args, ctx) -> int:
    from evaluation.analysis import analyze
    from inference.embedding import resolve_embedding_model
    from inference.loading import load_sampling_engine
    from inference.providers import make_provider, provider_section

    if args.from_step and not args.out:
        args.parser.error("--from-step needs --out DIR: the analysis folder whose earlier steps it reuses")
    config, root = ctx.config, ctx.root
    items = read_questions(args.file, ctx, dataset=args.dataset, limit=None, skip_bad=args.skip_bad)
    make_judge = None
    if args.judge == "llm":
        provider_section("judge", config)  # a missing providers.judge is named now, before any work
        make_judge = lambda: make_provider("judge", config, root)  # noqa: E731 (made when step 3 runs)
    out = args.out or root / "data" / "analysis" / time.strftime("%Y%m%d-%H%M%S")
    patterns = analyze(items, out, load_engine=lambda: load_sampling_engine(config, root, args.adapter),
                       events=ctx.events, sample=args.sample, seed=config.training.seed, from_step=args.from_step,
                       max_new_tokens=config.eval_max_tokens, clusters=args.clusters, make_judge=make_judge,
                       batch_size=args.batch_size,
                       embedding_model=resolve_embedding_model(config.analysis.embedding_model, config, root))
    queued = queue_targeted(out, items, ctx) if args.queue else None
    print(json.dumps({"out": str(out), **json.loads((out / "summary.json").read_text()),
                      "patterns": [p["label"] for p in patterns], "queued": queued}))
    return 0


def queue_targeted(out: Path, items, ctx) -> str | None:
    """Step 6, from the analysed file's items outside its test set and the user's files trained before. The
    validation pool and the gate set are held out on purpose: they measure the model, so they are never trained."""
    import hashlib

    from core.data import read_examples
    from core.errors import DataError
    from core.qa import qa_items
    from daemon.queue import Queue
    from evaluation.analysis import queue_targeted as queue_step

    queue = Queue(ctx.root)
    candidates = list(items)
    for name, path in queue.done_user_files():
        try:
            examples = read_examples(path)
        except DataError:
            continue
        candidates += qa_items(examples, file=name, sha256=hashlib.sha256(path.read_bytes()).hexdigest())
    return queue_step(out, candidates, outbox=queue.outbox("analysis"), events=ctx.events)
