"""The questions a command answers: a file through its importer, or a registered task's items."""
from __future__ import annotations

from pathlib import Path

from core.events import EventLog


def note_skipped(path: Path, skipped: list[tuple[int, str]], events: EventLog) -> None:
    """Bad rows skipped with --skip-bad, named in the log."""
    if skipped:
        events.emit("data", f"{path.name}: skipped {len(skipped)} bad rows (--skip-bad): "
                    + "; ".join(f"row {n}: {reason}" for n, reason in skipped[:5])
                    + (" ..." if len(skipped) > 5 else ""), file=path.name, skipped=len(skipped))


def read_questions(path: Path, ctx, *, dataset: str | None, limit: int | None, skip_bad: bool,
                   tasks: bool = True):
    """A file's questions as QA items, through its importer; with `tasks`, a name that is no file but a
    registered task gives the task's items."""
    from core.importers import read_items

    if tasks and dataset is None and not path.exists():
        from core.tasks import load_task

        task = load_task(str(path), ctx.config.tasks, ctx.root)
        return [i.as_item(task.name) for i in task.items][:limit]
    items, skipped = read_items(path, dataset, limit=limit, skip_bad=skip_bad)
    note_skipped(path, skipped, ctx.events)
    return items
