"""The command line: every older `python train.py` form the README shows becomes the command that does the same,
every command has its own help with a usage line and an example, and the installed command runs."""
import os
import re
import shutil
import subprocess
import sys

import pytest

from cli.legacy import rewrite
from cli.main import build_parser
from tests.conftest import REPO, run_cli, run_in_process, run_train, write_jsonl
from core.synthetic import integer_sums

OLD_FORMS = {  # the older form -> the command it runs
    ("a.jsonl", "b.jsonl"): ["train", "a.jsonl", "b.jsonl"],
    ("--daemon",): ["daemon"],
    ("--once",): ["daemon", "--once"],
    ("--status",): ["status"],
    ("--report",): ["report"],
    ("--serve", "--host", "0.0.0.0", "--port", "0"): ["serve", "--host", "0.0.0.0", "--port", "0"],
    ("--eval", "qa.jsonl", "--limit", "20", "--adapter", "base"): ["eval", "qa.jsonl", "--limit", "20", "--adapter", "base"],
    ("--eval", "qa.jsonl", "--max-new-tokens", "8", "--answers", "o.jsonl"):
        ["eval", "qa.jsonl", "--max-new-tokens", "8", "--answers", "o.jsonl"],
    ("--practice", "p.jsonl", "q.jsonl"): ["practice", "p.jsonl", "q.jsonl"],
    ("--analyze", "qa.jsonl", "--sample", "5", "--out", "d", "--from-step", "3", "--clusters", "2", "--judge", "llm",
     "--queue"): ["analyze", "qa.jsonl", "--sample", "5", "--out", "d", "--from-step", "3", "--clusters", "2",
                  "--judge", "llm", "--queue"],
    ("--traces", "t.jsonl", "--dataset", "gsm8k", "--max-turns", "2", "--provider", "local"):
        ["traces", "t.jsonl", "--dataset", "gsm8k", "--max-turns", "2", "--provider", "local"],
    ("--eval", "tatqa_tiny", "--mode", "ace", "--epochs", "2", "--results", "r.csv"):
        ["harness", "run", "tatqa_tiny", "--mode", "ace", "--epochs", "2", "--results", "r.csv"],
    ("--summarize", "results/", "--out", "s.csv"): ["harness", "summarize", "results/", "--out", "s.csv"],
    ("--grid", "grid.json", "--dry-run"): ["harness", "grid", "grid.json", "--dry-run"],
    ("--rollback", "v0003"): ["rollback", "v0003"],
}


@pytest.mark.parametrize("old", OLD_FORMS, ids=lambda old: " ".join(old))
def test_each_older_form_becomes_the_command_that_does_the_same(old):
    new = rewrite(["--config", "c.json", *old])
    words = 2 if OLD_FORMS[old][0] == "harness" else 1
    assert sorted(new) == sorted([*OLD_FORMS[old], "--config", "c.json"]) and new[:words] == OLD_FORMS[old][:words]
    args = build_parser().parse_args(new)  # the command takes every option the older form took
    assert args.config.name == "c.json"


def test_every_old_form_in_the_readme_is_one_the_shim_knows():
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    flags = set(re.findall(r"python train\.py (--[a-z-]+)", readme))
    known = {word for old in OLD_FORMS for word in old if word.startswith("--")}
    assert flags and flags <= known, flags - known


def test_every_command_has_its_own_help_with_a_usage_line_and_an_example(tmp_path):
    commands = sorted(build_parser().get_default("command_names"))
    assert {"train", "daemon", "status", "report", "eval", "harness", "practice", "analyze", "traces", "serve",
            "codes", "build", "initial-answers", "demo", "rules", "rollback"} <= set(commands)
    for words in [[c] for c in commands if c != "harness"] + [["harness", m] for m in ("run", "grid", "summarize")]:
        out = run_in_process([*words, "--help"], tmp_path)
        assert out.returncode == 0 and out.stdout.startswith(f"usage: selfcorrect {' '.join(words)}"), words
        assert f"example:\n  selfcorrect {words[-1]}" in out.stdout or f"example:\n  selfcorrect {' '.join(words)}" \
            in out.stdout, words


def test_an_option_of_another_command_is_refused_naming_where_it_goes(root):
    out = run_cli(root, "--eval", root / "qa.jsonl", "--dry-run")
    assert out.returncode == 2 and "--dry-run goes with harness grid" in out.stderr
    out = run_cli(root, "--traces", root / "t.jsonl", "--max-turns", "0")
    assert out.returncode == 2 and "--max-turns: must be at least 1 (got 0)" in out.stderr


def test_a_command_leaves_the_environment_as_it_found_it(root, monkeypatch):
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("TOKENIZERS_PARALLELISM", raising=False)
    assert run_cli(root, "--eval", write_jsonl(root / "qa.jsonl", integer_sums(2, seed=0)), "--max-new-tokens",
                   "2").returncode == 0
    assert "HF_HUB_OFFLINE" not in os.environ and "TOKENIZERS_PARALLELISM" not in os.environ


@pytest.mark.integration
def test_the_shim_trains_a_file_in_its_own_process_and_the_installed_command_runs(root):
    done = run_train(root, write_jsonl(root / "a.jsonl", integer_sums(8, seed=1)))
    assert done.returncode == 0, done.stderr
    assert '"current_adapter": "v0001"' in (root / "data" / "state.json").read_text()
    nothing = subprocess.run([sys.executable, str(REPO / "train.py")], capture_output=True, text=True, timeout=120)
    assert nothing.returncode == 2 and "nothing to do" in nothing.stderr
    script = shutil.which("selfcorrect") or str(REPO / ".venv" / "bin" / "selfcorrect")
    version = subprocess.run([script, "--version"], capture_output=True, text=True, timeout=120)
    assert version.returncode == 0 and re.fullmatch(r"selfcorrect \d+\.\d+\.\d+\n", version.stdout)
