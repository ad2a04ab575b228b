"""Continual LoRA training with self-correction.

    python train.py FILE.jsonl [FILE ...]   train the current adapter on these files, in order
    python train.py --daemon                watch inbox/ and queue/ and train forever

Phases: parse arguments -> load config -> pick the root -> hand off to the mode.
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # no hub at run time unless the user asks for it
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from training.config import load_config, locate  # noqa: E402
from training.errors import ProjectError  # noqa: E402
from training.events import EventLog  # noqa: E402


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description="Continual LoRA training daemon with self-correction.")
    p.add_argument("files", nargs="*", type=Path, help="JSONL files to train on once, in order")
    p.add_argument("--config", type=Path, default=None, help="config file (default: ./config.json)")
    p.add_argument("--root", type=Path, default=None,
                   help="folder holding inbox/ queue/ data/ logs/ (default: the config file's folder)")
    return p.parse_args(argv)


def one_shot(files: list[Path], config, root: Path, events: EventLog) -> int:
    from training.engine import TrainingEngine

    engine = TrainingEngine(config, root, events)
    # Check every file before training any, so a bad file never leaves the job half done.
    prepared = [engine.prepare(f) for f in files]
    for p in prepared:
        done = engine.state.trained(p.sha256)
        if done:
            events.emit("duplicate", f"{p.name}: same content already trained into adapter {done['adapter']}; skipped")
            continue
        events.emit("claimed", f"{p.name}: {len(p.encoded)} examples", file=p.name, sha256=p.sha256)
        result = engine.train(p)
        events.emit("done", f"{p.name}: {result.steps} steps in {result.seconds:.1f}s, loss {result.final_loss:.4f}, "
                    f"{result.tokens_per_s:.0f} tok/s -> adapter {result.version}",
                    file=p.name, steps=result.steps, adapter=result.version, seconds=result.seconds)
    return 0


def main(argv=None) -> int:
    args = parse_args(argv)
    config_path, root = locate(args.config, args.root)
    events = EventLog(root / "logs")
    try:
        config = load_config(config_path)
        events.emit("config", f"resolved config from {config_path}: {config.model_dump_json()}")
        if args.files:
            return one_shot(args.files, config, root, events)
        print("nothing to do: name files to train, or use --daemon", file=sys.stderr)
        return 2
    except ProjectError as e:
        events.emit("error", str(e))
        return 1


if __name__ == "__main__":
    sys.exit(main())
