"""`selfcorrect harness run|grid|summarize`: the evaluation harness. A task asked as is (baseline) or with ACE's
playbook of lessons first, a result CSV per run; a grid of adapters x tasks x modes; a summary of result CSVs.

The roles (who answers, who reflects) are providers: `local` is this root's model with --adapter, loaded once for
both roles."""
from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

from core.errors import ProjectError

from .options import ADAPTER, LIMIT, add_command, positive


def add_parser(sub) -> None:
    p = sub.add_parser("harness", help="the evaluation harness: tasks, ACE's playbook, result CSVs",
                       description=__doc__.splitlines()[0])
    modes = p.add_subparsers(dest="harness_command", metavar="run|grid|summarize", required=True)
    r = add_command(modes, "run", run=run_task, parents=[ADAPTER, LIMIT],
                    help="a task (or QA file) as baseline or ACE, a result CSV per epoch",
                    example="selfcorrect harness run tatqa_tiny --mode ace --epochs 2")
    r.add_argument("task", metavar="TASK|FILE", help="a registered task, or a QA file")
    r.add_argument("--mode", choices=("baseline", "ace"), default="baseline",
                   help="baseline (ask as is) or ace (the playbook's lessons first)")
    r.add_argument("--playbook", type=Path, default=None, metavar="PATH",
                   help="with --mode ace: the playbook (default: data/ace/<task>.jsonl; kept across runs)")
    r.add_argument("--results", type=Path, default=None, metavar="OUT.csv",
                   help="the result CSV (default: data/results/<time>/<task>-<mode>.csv)")
    r.add_argument("--epochs", type=positive, default=None, metavar="E",
                   help="epoch 0 baseline, then E epochs of ACE on the same items, a CSV each")
    g = add_command(modes, "grid", run=run_grid, help="the harness over adapters x tasks x modes, then its summary",
                    example="selfcorrect harness grid grid.json --dry-run")
    g.add_argument("grid", type=Path, metavar="GRID.json")
    g.add_argument("--dry-run", action="store_true", help="list the runs, run nothing")
    s = add_command(modes, "summarize", run=run_summarize, needs_config=False,
                    help="accuracy and latency per model, task, mode, adapter and epoch of the result CSVs in DIR",
                    example="selfcorrect harness summarize data/results/ --out summary.csv")
    s.add_argument("folder", type=Path, metavar="DIR")
    s.add_argument("--out", type=Path, default=None, metavar="OUT.csv", help="the summary CSV (default: DIR/summary.csv)")
    for leaf, name in ((r, "eval"), (g, "grid"), (s, "summarize")):
        leaf.set_defaults(mode_name=f"harness {name}")


def open_roles(config, root: Path, adapter: str, *, reflector: bool):
    """(generator, reflector or None, model id, tokenizer or None, the adapter version answering)."""
    from inference.providers import LocalProvider, make_provider

    local = {}

    def role(name: str):
        if name != "local":
            return make_provider(name, config, root)
        if not local:
            from inference.loading import load_sampling_engine

            sampler, label = load_sampling_engine(config, root, adapter)
            local.update(provider=LocalProvider(sampler, name=label), tokenizer=sampler.tokenizer, label=label)
        return local["provider"]

    generator = role(config.ace.generator)
    model_id = config.model.name_or_path if config.ace.generator == "local" else generator.name
    return (generator, role(config.ace.reflector) if reflector else None, model_id, local.get("tokenizer"),
            local.get("label", adapter))


async def close_roles(roles) -> None:
    for provider in {id(p): p for p in roles[:2] if p is not None}.values():
        await provider.close()


def epoch_message(harness, task, mode: str, epoch: int, rows: list[dict], *, adapter: str, playbook, path) -> str:
    right, st = sum(r["correct"] for r in rows), harness.stats
    lessons = (f", playbook {len(playbook.lessons)} lessons (so far: {st['reflections']} reflections, "
               f"{st['empty_reflections']} with no usable lesson; lessons {st['added']} added, {st['merged']} "
               f"merged, {st['generic']} generic dropped, {st['pruned']} pruned)") if mode == "ace" else ""
    return f"{task.name} {mode} epoch {epoch} with {adapter}: accuracy {right}/{len(rows)}{lessons} -> {path}"


async def run_harness(task, items, config, events, *, plan: list[tuple[int, str]], playbook, results: dict,
                      roles) -> list[list[dict]]:
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
        events.emit("harness", epoch_message(harness, task, mode, epoch, rows, adapter=adapter, playbook=playbook,
                                             path=results[epoch]),
                    task=task.name, mode=mode, epoch=epoch, accuracy=sum(r["correct"] for r in rows) / len(rows),
                    **(harness.stats if mode == "ace" else {}))
        out.append(rows)
    return out


def with_roles(roles, work):
    """Run `work()`, a coroutine function, and close the roles' providers however it ends."""
    async def go():
        try:
            return await work()
        finally:
            await close_roles(roles)

    return asyncio.run(go())


def run_task(args, ctx) -> int:
    """Phases: the task -> the roles -> each epoch (0: --mode, or with --epochs baseline then ACE epochs on the
    same items, the playbook evolving) -> a CSV per epoch, the epoch table and a JSON line."""
    from core.tasks import load_task
    from evaluation.ace import Playbook
    from evaluation.harness import markdown, summarize

    task = load_task(args.task, ctx.config.tasks, ctx.root)
    items = task.items[:args.limit]
    plan = [(0, "baseline")] + [(e, "ace") for e in range(1, args.epochs + 1)] if args.epochs else [(0, args.mode)]
    uses_ace = any(m == "ace" for _, m in plan)
    book = Playbook(args.playbook or ctx.root / "data" / "ace" / f"{task.name}.jsonl") if uses_ace else None
    base = args.results or ctx.root / "data" / "results" / time.strftime("%Y%m%d-%H%M%S") / f"{task.name}-{args.mode}.csv"
    paths = {e: base if len(plan) == 1 else base.with_name(f"{base.stem}.epoch{e}{base.suffix}") for e, _ in plan}
    roles = open_roles(ctx.config, ctx.root, args.adapter, reflector=uses_ace)
    ctx.events.emit("harness", f"{task.name}: {len(items)} items ({task.source}), "
                    + ", ".join(f"epoch {e} {m}" for e, m in plan) + f", adapter {args.adapter}"
                    + (f", playbook {book.path} ({len(book.lessons)} lessons)" if book else ""))
    epochs = with_roles(roles, lambda: run_harness(task, items, ctx.config, ctx.events, plan=plan, playbook=book,
                                                   results=paths, roles=roles))
    table = summarize([r for rows in epochs for r in rows])
    print(markdown(table))
    print(json.dumps({"task": task.name, "n": len(items), "adapter": roles[4],
                      "epochs": [{k: t[k] for k in ("epoch", "mode", "accuracy", "exact_match", "latency_p50_ms")}
                                 for t in table],
                      "accuracy": table[-1]["accuracy"], "results": [str(p) for p in paths.values()],
                      "playbook": str(book.path) if book else None, "lessons": len(book.lessons) if book else None}))
    return 0


def summarize_folder(folder: Path, out: Path | None) -> int:
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


def run_summarize(args, ctx) -> int:
    return summarize_folder(args.folder, args.out)


def run_grid(args, ctx) -> int:
    """Adapters x tasks x modes of a grid file, each run's CSV in the grid's folder, then the summary. Each
    adapter is loaded once; each (adapter, task) has a playbook of its own in the folder."""
    from core.tasks import load_grid, load_task
    from evaluation.ace import Playbook

    spec = load_grid(args.grid)
    out = spec.out if spec.out.is_absolute() else ctx.root / spec.out
    runs = [(a, t, m) for a in spec.adapters for t in spec.tasks for m in spec.modes]
    for a, t, m in runs:
        print(f"{a}\t{t}\t{m}\t-> {out / a / f'{t}-{m}.csv'}")
    if args.dry_run:
        print(json.dumps({"runs": len(runs), "out": str(out), "dry_run": True}))
        return 0
    tasks = {t: load_task(t, ctx.config.tasks, ctx.root) for t in spec.tasks}  # every task checked before any run

    async def every_run(adapter: str, roles) -> None:
        for t, task in tasks.items():
            for mode in spec.modes:
                book = Playbook(out / adapter / f"playbook-{t}.jsonl") if mode == "ace" else None
                await run_harness(task, task.items[:spec.limit], ctx.config, ctx.events, plan=[(0, mode)],
                                  playbook=book, results={0: out / adapter / f"{t}-{mode}.csv"}, roles=roles)

    for adapter in spec.adapters:
        roles = open_roles(ctx.config, ctx.root, adapter, reflector="ace" in spec.modes)
        with_roles(roles, lambda: every_run(adapter, roles))
    return summarize_folder(out, None)
