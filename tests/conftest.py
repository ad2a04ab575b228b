"""Shared fixtures: a real temporary root with a config that uses the tiny-random model."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

# `make test` runs two tests at a time on two cores, and most tests start train.py processes: with torch's default
# of one thread per core, two of them oversubscribe the cores (the suite ran 20 % slower). Set before torch is
# imported here, and inherited by every process a test starts.
os.environ.setdefault("OMP_NUM_THREADS", "1")

REPO = Path(__file__).resolve().parents[1]
MODELS = REPO / "data" / "models"  # materialized by `make models`; shared by every test


def write_config(root: Path, **sections) -> Path:
    config = {"model": {"name_or_path": "tiny-random", "cache_dir": str(MODELS)},
              # The promotion gate has its own tests; elsewhere it would only add an evaluation per file.
              "training": {"batch_size": 4, "save_steps": 1000, "logging_steps": 1, "promotion": {"enabled": False}}}
    for key, value in sections.items():
        if isinstance(value, dict):
            config.setdefault(key, {}).update(value)
        else:
            config[key] = value
    path = root / "config.json"
    path.write_text(json.dumps(config, indent=2))
    return path


def write_jsonl(path: Path, records) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


def lora_model(root: Path, device: str = "cpu", *, drawn_b: bool = True):
    """tiny-random with a fresh LoRA adapter, its B matrices drawn (seed 0) instead of zero unless `drawn_b` is
    False, so the adapter changes the answers and its A matrices get gradients. Returns (tokenizer, model)."""
    import torch

    from core.config import load_config
    from core.models import attach_adapter, load_base_model, load_tokenizer, resolve_model_path

    config = load_config(write_config(root))
    path = resolve_model_path(config, root)
    model = attach_adapter(load_base_model(path, config, device, "fp32"), config, None)
    torch.manual_seed(0)
    for name, p in model.named_parameters():
        if "lora_B" in name and drawn_b:
            torch.nn.init.normal_(p, std=0.5)
    return load_tokenizer(path, config), model


def run_in_process(argv: list[str], cwd: Path) -> subprocess.CompletedProcess:
    """`selfcorrect ARGV` run in this process, in `cwd`: its exit code and what it printed, as a subprocess would
    give them (argparse's exits and an uncaught exception's traceback included)."""
    import contextlib
    import io
    import traceback

    from cli.main import main

    stdout, stderr, before = io.StringIO(), io.StringIO(), os.getcwd()
    os.chdir(cwd)
    try:
        with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
            try:
                code = main(argv)
            except SystemExit as e:  # argparse's usage errors, --help and --version
                code = e.code if isinstance(e.code, int) else 0 if e.code is None else 1
                if isinstance(e.code, str):
                    print(e.code, file=sys.stderr)
            except Exception:
                traceback.print_exc()
                code = 1
    finally:
        os.chdir(before)
    return subprocess.CompletedProcess(argv, code, stdout.getvalue(), stderr.getvalue())


def run_cli(root: Path, *args) -> subprocess.CompletedProcess:
    """`python train.py ARGS --config ROOT/config.json` in this process, in ROOT, as the shim runs it (an old form
    rewritten into its command). For the tests whose subject is not the process boundary; a test that kills,
    signals, injects faults or launches ranks uses run_train."""
    from cli.legacy import rewrite

    return run_in_process(rewrite([*map(str, args), "--config", str(root / "config.json")]), root)


def run_train(root: Path, *args, timeout=300, env: dict | None = None, **kwargs) -> subprocess.CompletedProcess:
    """Run train.py as a user would, in its own process (`env`: variables to add)."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "COLUMNS": "200", **(env or {})}
    return subprocess.run([sys.executable, str(REPO / "train.py"), "--config", str(root / "config.json"), *map(str, args)],
                          cwd=root, env=env, capture_output=True, text=True, timeout=timeout, **kwargs)


@pytest.fixture
def root(tmp_path) -> Path:
    write_config(tmp_path)
    return tmp_path


@pytest.fixture
def spawn():
    """Start the real daemon in a subprocess; any still running at teardown is killed (by its pid)."""
    from tests.daemon_helpers import start_daemon

    started = []

    def start(root, *args, env=None):
        proc = start_daemon(root, *args, env=env)
        started.append(proc)
        return proc

    yield start
    for proc in started:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
