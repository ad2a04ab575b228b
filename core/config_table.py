"""The table of every config field (docs/configuration.md), generated from the pydantic models so that it cannot drift.

    python -m core.config_table            print the table
    python -m core.config_table --write    replace the table between the markers in docs/configuration.md

A test checks that the document's table is the one printed here.
"""
from __future__ import annotations

import argparse
import json
import sys
import typing
from pathlib import Path

from pydantic import BaseModel
from pydantic_core import PydanticUndefined

from .config import Config

START, END = "<!-- config-table:start -->", "<!-- config-table:end -->"
README = Path(__file__).resolve().parents[1] / "docs" / "configuration.md"  # where the table lives
LONGEST_DEFAULT = 40  # longer defaults (the prompt templates) are in config.json


def _entries(model: type[BaseModel]) -> type[BaseModel] | None:
    """The section model of a field that maps names to sections (`providers`), else None."""
    args = typing.get_args(model)
    return args[1] if len(args) == 2 and isinstance(args[1], type) and issubclass(args[1], BaseModel) else None


def _rows(model: type[BaseModel], instance: BaseModel | None, prefix: str = ""):
    """(key, default, description) of every field; `instance` None: a named entry's fields, defaults from the model."""
    for name, field in model.model_fields.items():
        value = getattr(instance, name) if instance is not None else field.get_default(call_default_factory=True)
        if isinstance(value, BaseModel):
            yield from _rows(type(value), value, f"{prefix}{name}.")
            continue
        shown = "(required)" if value is PydanticUndefined else json.dumps(value)
        if len(shown) > LONGEST_DEFAULT:
            shown = "(in config.json)"
        yield f"{prefix}{name}", shown, field.description or ""
        if entry := _entries(field.annotation):
            yield from _rows(entry, None, f"{prefix}{name}.<name>.")


def table() -> str:
    lines = ["| key | default | what it does |", "|---|---|---|"]
    for key, default, description in _rows(Config, Config()):
        cell = description.replace("|", "\\|")
        shown = default if default.startswith("(") else f"`{default}`"
        lines.append(f"| `{key}` | {shown} | {cell} |")
    return "\n".join(lines)


def readme_table(text: str) -> str | None:
    """The table between the markers of a README's text (None if the markers are missing)."""
    if START not in text or END not in text:
        return None
    return text.split(START, 1)[1].split(END, 1)[0].strip("\n")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m core.config_table", description=__doc__.splitlines()[0])
    p.add_argument("--write", action="store_true", help=f"replace the table between the markers in {README.name}")
    args = p.parse_args(argv)
    if not args.write:
        print(table())
        return 0
    text = README.read_text(encoding="utf-8")
    if readme_table(text) is None:
        print(f"{README}: markers {START} and {END} not found; put them where the table goes", file=sys.stderr)
        return 1
    before, rest = text.split(START, 1)
    after = rest.split(END, 1)[1]
    README.write_text(f"{before}{START}\n{table()}\n{END}{after}", encoding="utf-8")
    print(f"wrote the config table into {README}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
