"""`--set KEY.PATH=JSON` for the benches: one config setting changed in the arm under test."""
from __future__ import annotations

import json

HELP = "a config setting, e.g. lora.dropout=0 or training.precision='\"fp32\"' (a string in JSON quotes)"


def apply(config: dict, settings: list[str], error) -> dict:
    """`config` with each KEY.PATH=JSON setting written in (sections made as needed); `error(message)` for a
    setting that is not KEY.PATH=JSON."""
    for setting in settings:
        key, _, value = setting.partition("=")
        try:
            value = json.loads(value)
        except ValueError:
            error(f"--set {setting}: give KEY.PATH=JSON; {HELP}")
        *sections, name = key.split(".")
        node = config
        for section in sections:
            node = node.setdefault(section, {})
        node[name] = value
    return config
