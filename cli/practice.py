"""`selfcorrect practice FILE...`: verified self-training, one-shot. For each file, `practice.rounds` rounds of
sample -> verify -> train, each round sampling from the adapter the last one made (the daemon's rounds, trained
here instead of queued). Every file is checked before any work."""
from __future__ import annotations

from pathlib import Path

from .options import DATASET, add_command
from .questions import note_skipped
from .train import workbench


def add_parser(sub) -> None:
    p = add_command(sub, "practice", run=run, parents=[DATASET],
                    help="verified self-training: sample solutions to these problems, train the ones that verify",
                    example="selfcorrect practice examples/practice_sums.jsonl")
    p.add_argument("files", nargs="+", type=Path, metavar="FILE", help="practice files (problems with answers or tests)")


def read_all(args, ctx) -> dict[Path, list]:
    from core.practice import read_problems

    if not args.dataset:
        return {f: read_problems(f, max_line_bytes=ctx.config.training.max_line_bytes) for f in args.files}
    from core.importers import read_dataset

    problems = {}
    for f in args.files:
        questions, skipped = read_dataset(f, args.dataset, skip_bad=args.skip_bad)
        note_skipped(f, skipped, ctx.events)
        problems[f] = [q.as_problem() for q in questions]
    return problems


def run(args, ctx) -> int:
    from daemon.job import train_file
    from selfcorrect.practice import nothing_to_train, practice_round, round_name, work_folder

    problems = read_all(args, ctx)
    with workbench(ctx) as bench:
        for f, items in problems.items():
            work = work_folder(ctx.root, f)
            for round_no in range(1, ctx.config.practice.rounds + 1):
                out, stats = practice_round(bench.engine, items, work, round_no, label=f.name,
                                            settings=ctx.config.practice, events=ctx.events)
                if not stats.kept + stats.golden:
                    ctx.events.emit("practice", f"{f.name} round {round_no}: "
                                    f"{nothing_to_train(ctx.config.practice)}; nothing to train")
                    break
                prepared = bench.engine.prepare(out, name=round_name(work, round_no), generated=True)
                train_file(prepared, engine=bench.engine, monitor=bench.monitor, events=ctx.events,
                           label=prepared.name, origin="practice", once=True)
    return 0
