"""The self-correction generator: interval arithmetic, atomic files, crash survival, the cap."""
import json
import os
import subprocess
import sys

import pytest

from core.config import ExperimentalSection, parse_config
from daemon.queue import Queue
from evaluation.evaluate import EvalResult
from selfcorrect.generator import SelfCorrectionGenerator
from tests.conftest import REPO


def wrong(i):
    return EvalResult(f"What is {i} + 1?", f"{i + 1}", f"{i + 2}", False, ["SIMILARITY_0%"], {"id": f"v{i}", "file": "val.jsonl"})


def right(i):
    return EvalResult(f"What is {i} + 1?", f"{i + 1}", f"{i + 1}", True, [], {"id": f"v{i}", "file": "val.jsonl"})


def generator(root, **settings):
    """A generator whose files go to the real queue under `root`; each setting goes to its config section."""
    experimental = {k: v for k, v in settings.items() if k in ExperimentalSection.model_fields}
    sc = {"min_examples": 10, "generation_interval": 500,
          **{k: v for k, v in settings.items() if k not in experimental}}
    config = parse_config({"self_correction": sc, "experimental": experimental})
    return SelfCorrectionGenerator(root=root, outbox=Queue(root).outbox("selfcorrect"), config=config)


def listing(folder):
    return sorted(os.listdir(folder)) if folder.exists() else []


def test_evaluations_accumulate_until_the_interval_and_the_file_appears_only_with_min_examples(tmp_path):
    g = generator(tmp_path)
    for step in range(50, 500, 50):  # steps 50..450: one wrong answer each -> 9 x 3 = 27 records
        g.process_results([wrong(step), right(step)], step=step)
        assert g.maybe_generate(step=step) is None
    assert len(g.buffer) == 27
    path = g.maybe_generate(step=500)
    assert path is not None and path.name.startswith("self_correction_step500_")
    assert len(path.read_text().splitlines()) == 27 and g.buffer == []
    meta = json.loads(path.with_suffix(".json").read_text())
    assert meta["step"] == 500 and meta["num_examples"] == 27
    assert meta["breakdown"] == {"initial_attempts": 9, "self_evaluations": 9, "corrections": 9, "confirmations": 0,
                                 "standard_qa": 0}
    assert meta["stats"] == {"total_evals": 18, "correct_first_try": 9, "needed_correction": 9, "files_generated": 1,
                             "examples_generated": 27, "skipped_at_cap": 0}
    queued = listing(tmp_path / "queue" / "normal")
    assert len(queued) == 1 and queued[0].endswith("--" + path.name)


def test_confirm_right_answers_adds_one_no_codes_record_per_right_answer(tmp_path):
    g = generator(tmp_path, min_examples=1, generation_interval=50, confirm_right_answers=True)
    assert g.process_results([wrong(1), right(2), right(3)], step=50) == 3 + 2
    path = g.maybe_generate(step=50)
    records = [json.loads(line) for line in path.read_text().splitlines()]
    confirmations = [r for r in records if r["kind"] == "confirmation"]
    assert [r["source"]["id"] for r in confirmations] == ["v2", "v3"]
    assert confirmations[0]["response"] == "3" and confirmations[0]["error_codes"] == []
    assert "Your previous answer:\n3\n\nError indicators: none" in confirmations[0]["prompt"]
    assert json.loads(path.with_suffix(".json").read_text())["breakdown"]["confirmations"] == 2
    # off (the default): right answers add nothing
    g = generator(tmp_path / "off", min_examples=1, generation_interval=50)
    assert g.process_results([right(2), right(3)], step=50) == 0 and g.buffer == []


def test_confirm_golden_answers_adds_a_keep_record_to_each_wrong_answers_triple(tmp_path):
    g = generator(tmp_path, min_examples=1, generation_interval=50, confirm_golden_answers=True)
    assert g.process_results([wrong(1), right(2)], step=50) == 3 + 1
    confirmation = g.buffer[-1]
    assert confirmation["kind"] == "confirmation" and confirmation["source"]["id"] == "v1"
    assert "Your previous answer:\n2\n\nError indicators: none" in confirmation["prompt"]  # the golden answer
    assert confirmation["response"] == "2" and confirmation["error_codes"] == []


def test_correction_repeats_writes_each_correction_record_that_many_times(tmp_path):
    g = generator(tmp_path, min_examples=1, generation_interval=50, correction_repeats=3)
    assert g.process_results([wrong(1), right(2)], step=50) == 3 + 2
    path = g.maybe_generate(step=50)
    kinds = [json.loads(line)["kind"] for line in path.read_text().splitlines()]
    assert kinds == ["initial_attempt", "self_evaluation", "correction", "correction", "correction"]
    assert json.loads(path.with_suffix(".json").read_text())["breakdown"]["corrections"] == 3


def test_below_min_examples_at_the_boundary_waits_for_the_next_one(tmp_path):
    g = generator(tmp_path, min_examples=10)
    g.process_results([wrong(1)], step=500)
    assert g.maybe_generate(step=500) is None  # 3 records < 10
    for i in range(3):
        g.process_results([wrong(i)], step=550 + 50 * i)
        assert g.maybe_generate(step=550 + 50 * i) is None  # no boundary crossed
    path = g.maybe_generate(step=1000)
    assert path is not None and len(path.read_text().splitlines()) == 12


def test_auto_queue_off_and_another_priority(tmp_path):
    g = generator(tmp_path, min_examples=3, generation_interval=10, auto_queue=False)
    g.process_results([wrong(1)], step=10)
    assert g.maybe_generate(step=10) is not None
    assert listing(tmp_path / "queue" / "normal") == []
    g2 = generator(tmp_path / "b", min_examples=3, generation_interval=10, queue="high")
    g2.process_results([wrong(1)], step=10)
    g2.maybe_generate(step=10)
    assert len(listing(tmp_path / "b" / "queue" / "high")) == 1


def test_the_pending_file_cap_stops_generation_and_keeps_the_buffer(tmp_path):
    g = generator(tmp_path, min_examples=3, generation_interval=10, max_pending_files=1)
    g.process_results([wrong(1)], step=10)
    assert g.maybe_generate(step=10) is not None
    g.process_results([wrong(2)], step=20)
    assert g.maybe_generate(step=20) is None
    assert len(g.buffer) == 3 and g.stats["skipped_at_cap"] == 1
    assert len(listing(tmp_path / "queue" / "normal")) == 1


def test_no_hidden_or_temporary_file_is_left_behind(tmp_path):
    g = generator(tmp_path, min_examples=3, generation_interval=10)
    g.process_results([wrong(1)], step=10)
    g.maybe_generate(step=10)
    for folder in (tmp_path / "queue" / "normal", tmp_path / "data" / "self_correction"):
        assert not [n for n in listing(folder) if n.startswith(".") or n.endswith(".tmp")]


CHILD = """
import sys
sys.path.insert(0, {repo!r})
from pathlib import Path
from tests.test_generator import generator, wrong
g = generator(Path({root!r}), min_examples=3, generation_interval=10)
for step in (10, 20, 30):
    g.process_results([wrong(step)], step=step)
    g.maybe_generate(step=step)
"""


@pytest.mark.integration
@pytest.mark.parametrize("point", ["generator.after_pending", "generator.before_metadata", "generator.before_queue"])
def test_a_kill_while_writing_loses_no_example_and_queues_once(tmp_path, point):
    code = CHILD.format(repo=str(REPO), root=str(tmp_path))
    killed = subprocess.run([sys.executable, "-c", code], env={**os.environ, "SELFCORRECT_KILL_AT": point})
    assert killed.returncode == -9
    subprocess.run([sys.executable, "-c", code], check=True)  # the restart finishes the file, then goes on
    files = [n for n in listing(tmp_path / "data" / "self_correction") if n.endswith(".jsonl")]
    records = [json.loads(l) for n in files for l in (tmp_path / "data" / "self_correction" / n).read_text().splitlines()]
    steps = sorted({r["step"] for r in records})
    assert steps == [10, 20, 30], "the records of step 10 were made before the kill and must survive it"
    queued = listing(tmp_path / "queue" / "normal")
    assert len(queued) == len(files) and {q.split("--", 1)[1] for q in queued} == set(files)
    assert not [n for n in listing(tmp_path / "queue" / "normal") if n.startswith(".")]


def test_the_buffer_and_stats_survive_a_restart(tmp_path):
    g = generator(tmp_path)
    g.process_results([wrong(1), right(2)], step=50)
    again = generator(tmp_path)
    assert again.buffer == g.buffer and len(again.buffer) == 3
    assert again.stats["total_evals"] == 2 and again.stats["correct_first_try"] == 1
