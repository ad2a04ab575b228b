"""The evaluation harness and ACE (seed 002): tasks, the playbook's roles, result CSVs, epochs, summaries, grids."""
import csv
import json
import re

import pytest

from core.errors import DataError
from core.tasks import load_task, read_task_file
from evaluation.ace import Lesson, Playbook, is_generic, parse_lessons
from evaluation.harness import COLUMNS
from tests.conftest import write_config, write_jsonl, run_cli
from tests.scripted_model import ScriptedModel

LESSON = "Multiply the two numbers when the question says times."


def test_lessons_are_parsed_from_json_lists_and_lines_and_junk_gives_none():
    assert parse_lessons('Sure: ["Convert units before adding.", {"lesson": "Read the table header first."}]', 3) == [
        "Convert units before adding.", "Read the table header first."]
    assert parse_lessons("Lessons:\n1. Convert units before adding.\n2) Subtract costs from revenue.\n"
                         "- Read the whole passage first.\n* a fourth one that is cut", 3) == [
        "Convert units before adding.", "Subtract costs from revenue.", "Read the whole passage first."]
    assert parse_lessons("Lesson 1: Keep the sign of a loss negative.", 3) == ["Keep the sign of a loss negative."]
    assert parse_lessons("???", 3) == [] and parse_lessons("", 3) == [] and parse_lessons("1. ok\n2. 42", 3) == []
    assert is_generic("Double check your work.") and not is_generic("Double the rate when the period halves.")


def test_the_curator_drops_generic_lessons_merges_duplicates_and_prunes_by_score(tmp_path):
    book = Playbook(tmp_path / "p.jsonl")
    counts = book.curate([LESSON, "Be careful.", LESSON.lower() + "!", "Always think carefully."], task="t",
                         domain="math", sample_id="s1", threshold=0.85, max_entries=10)
    assert counts == {"added": 1, "merged": 1, "generic": 2, "pruned": 0} and len(book.lessons) == 1
    book.count(book.top(5, task="t", domain="math"), right=True)
    assert book.lessons[0].helpful == 1
    book.curate(["Subtract the discount before adding tax.", "Round only the final answer to cents."], task="t",
                domain="math", sample_id="s2", threshold=0.85, max_entries=2)
    assert len(book.lessons) == 2 and LESSON in [x.text for x in book.lessons]  # the helpful one is kept
    other = Lesson("x", "Quote the statute's number.", "law", "other_task", helpful=5)
    book.lessons.append(other)
    assert book.top(5, task="t", domain="math")[0].text == LESSON  # its own task's lessons, best first
    assert book.top(5, task="new", domain="law") == [other]  # a task with none: its domain's


def test_the_playbook_survives_a_restart_and_a_bad_hand_edit_is_refused_with_its_line(tmp_path):
    path = tmp_path / "p.jsonl"
    book = Playbook(path)
    book.curate([LESSON], task="t", domain="", sample_id="s", threshold=0.85, max_entries=5)
    book.save()
    assert [x.text for x in Playbook(path).lessons] == [LESSON]
    path.write_text(path.read_text() + '{"id": "x", "text": "cut off\n')
    with pytest.raises(DataError) as e:
        Playbook(path)
    assert "line 2" in str(e.value) and "p.jsonl.good" in str(e.value)
    assert [x.text for x in Playbook(tmp_path / "p.jsonl.good").lessons] == [LESSON]


def test_built_in_tasks_load_and_a_bad_task_file_names_the_item_and_key(tmp_path):
    assert [len(load_task(t, {}, tmp_path).items) for t in ("tatqa_tiny", "medqa_tiny", "iot_tiny")] == [3, 3, 5]
    words = load_task("word_problems", {}, tmp_path)
    assert len(words.items) == 100 and words.items == load_task("word_problems", {}, tmp_path).items
    assert len(load_task("comparisons", {}, tmp_path).items) == 100
    bad = write_jsonl(tmp_path / "t.jsonl", [{"id": "a", "question": "q", "answer": "1"}, {"id": "b", "question": "q"}])
    with pytest.raises(DataError, match=r'line 2: record: "answer" is missing'):
        read_task_file(bad)
    (tmp_path / "t.json").write_text(json.dumps([{"id": "a", "question": "q", "answer": "1", "context": 3}]))
    with pytest.raises(DataError, match=r'item 1: "context" must be text'):
        read_task_file(tmp_path / "t.json")
    with pytest.raises(DataError, match="no task of that name"):
        load_task("nope", {}, tmp_path)


class ScriptedRoles(ScriptedModel):
    """Generator and reflector: asked "What is A times B?", it adds the numbers (wrong) unless a lesson in its
    prompt says to multiply; asked to reflect, it returns a numbered list with one useful and one generic
    lesson, or junk when `junk` is set."""

    def __init__(self, junk: bool = False):
        self.junk, self.prompts = junk, []
        super().__init__()

    def reply(self, body: dict):
        prompt = body["messages"][-1]["content"]
        self.prompts.append(prompt)
        if "answered this question wrong" in prompt:
            return "hmm ??" if self.junk else f"1. {LESSON}\n2. Double check your work."
        a, b = map(int, re.search(r"What is (\d+) times (\d+)\?", prompt).groups())
        return f"The answer is {a * b if 'Multiply' in prompt else a + b}."


def scripted(root, server):
    write_config(root, providers={"m": server.provider(max_retries=0)}, ace={"generator": "m", "reflector": "m"},
                 tasks={"times": {"file": "times.jsonl", "domain": "math"}})
    write_jsonl(root / "times.jsonl", [{"id": f"t{k}", "question": f"What is {k} times {k + 2}?",
                                        "answer": str(k * (k + 2))} for k in range(3, 8)])


def read_rows(path):
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        return reader.fieldnames, list(reader)


def test_ace_epochs_learn_a_lesson_that_fixes_the_answers_and_the_playbook_carries_over(root):
    with ScriptedRoles() as server:
        scripted(root, server)
        out = run_cli(root, "--eval", "times", "--mode", "ace", "--epochs", "2", "--results", root / "r.csv")
        assert out.returncode == 0, out.stderr
        result = json.loads(out.stdout.strip().splitlines()[-1])
        assert [(e["epoch"], e["mode"], e["accuracy"]) for e in result["epochs"]] == [
            (0, "baseline", 0.0), (1, "ace", 0.8), (2, "ace", 1.0)]
        columns, rows = read_rows(root / "r.epoch1.csv")
        assert columns == COLUMNS and len(rows) == 5
        assert rows[0]["reflected"] == "1" and rows[0]["correct"] == "0" and float(rows[0]["reflection_latency_ms"]) > 0
        assert all(r["correct"] == "1" and r["reflected"] == "0" for r in rows[1:])
        assert rows[0]["model_id"] == "scripted" and rows[0]["task_name"] == "times" and rows[0]["domain"] == "math"
        assert float(rows[1]["latency_ms"]) > 0 and rows[1]["epoch"] == "1" and rows[1]["adapter"] == "current"
        book = Playbook(root / "data" / "ace" / "times.jsonl")
        assert [x.text for x in book.lessons] == [LESSON]  # the generic one dropped
        assert book.lessons[0].helpful == 9 and book.lessons[0].harmful == 0  # right 4 + 5 times with it shown
        # a later run starts from the saved playbook: right from the first item
        out = run_cli(root, "--eval", "times", "--mode", "ace", "--results", root / "again.csv")
        assert out.returncode == 0, out.stderr
        assert json.loads(out.stdout.strip().splitlines()[-1])["accuracy"] == 1.0
        # baseline asks without lessons
        server.prompts.clear()
        out = run_cli(root, "--eval", "times", "--mode", "baseline", "--results", root / "base.csv")
        assert out.returncode == 0 and not any("Lessons" in p for p in server.prompts)
    # --summarize groups every CSV of the folder
    out = run_cli(root, "--summarize", root)
    assert out.returncode == 0, out.stderr
    assert "| scripted | times | baseline | current | 0 | 10 | 0.0 |" in out.stdout  # r.epoch0.csv and base.csv
    with open(root / "summary.csv", newline="") as f:
        summary = list(csv.DictReader(f))
    assert {(r["mode"], r["epoch"]) for r in summary} == {("baseline", "0"), ("ace", "0"), ("ace", "1"), ("ace", "2")}
    assert all(float(r["latency_p95_ms"]) >= float(r["latency_p50_ms"]) for r in summary)


def test_a_reflector_that_returns_junk_adds_no_lesson_and_a_dead_endpoint_keeps_what_was_answered(root):
    with ScriptedRoles(junk=True) as server:
        scripted(root, server)
        out = run_cli(root, "--eval", "times", "--mode", "ace", "--results", root / "r.csv")
    assert out.returncode == 0, out.stderr
    assert "5 reflections, 5 with no usable lesson" in out.stderr
    assert Playbook(root / "data" / "ace" / "times.jsonl").lessons == []
    # the endpoint is gone now: the run stops with the provider named
    out = run_cli(root, "--eval", "times", "--mode", "ace", "--results", root / "dead.csv")
    assert out.returncode == 1 and "a provider failed" in out.stderr and "0 of 5 rows" in out.stderr


def test_baseline_with_the_local_model_writes_the_seed_schema_and_a_grid_runs_every_cell(root):
    write_config(root, eval_max_tokens=4)
    out = run_cli(root, "--eval", "tatqa_tiny", "--mode", "baseline", "--results", root / "r.csv")
    assert out.returncode == 0, out.stderr
    columns, rows = read_rows(root / "r.csv")
    assert columns == COLUMNS and [r["sample_id"] for r in rows] == ["tatqa-1", "tatqa-2", "tatqa-3"]
    assert {r["model_id"] for r in rows} == {"tiny-random"} and {r["domain"] for r in rows} == {"finance"}
    assert rows[0]["context"].startswith("Revenue was") and rows[0]["reflected"] == ""
    # the plain --eval takes a task name too
    assert run_cli(root, "--eval", "iot_tiny", "--limit", "2").returncode == 0
    grid = root / "grid.json"
    grid.write_text(json.dumps({"adapters": ["base"], "tasks": ["tatqa_tiny", "iot_tiny"], "modes": ["baseline", "ace"],
                                "limit": 2, "out": "grid"}))
    dry = run_cli(root, "--grid", grid, "--dry-run")
    assert dry.returncode == 0 and dry.stdout.count("\t-> ") == 4 and not (root / "grid").exists()
    out = run_cli(root, "--grid", grid)
    assert out.returncode == 0, out.stderr
    assert sorted(p.name for p in (root / "grid" / "base").glob("*.csv")) == [
        "iot_tiny-ace.csv", "iot_tiny-baseline.csv", "tatqa_tiny-ace.csv", "tatqa_tiny-baseline.csv"]
    assert json.loads(out.stdout.strip().splitlines()[-1])["groups"] == 4
    bad = root / "bad.json"
    bad.write_text(json.dumps({"tasks": [], "modes": ["fast"]}))
    out = run_cli(root, "--grid", bad, "--dry-run")
    assert out.returncode == 1 and "tasks" in out.stderr and "modes" in out.stderr


def test_in_the_daemon_the_live_monitors_wrong_answers_feed_the_playbook_and_status_shows_it(root):
    with ScriptedRoles() as server:
        write_config(root, eval_steps=2, num_eval_samples=2, eval_max_tokens=4, validation={"holdout_fraction": 0.2},
                     providers={"m": server.provider(max_retries=0)},
                     ace={"in_daemon": True, "reflector": "m"}, self_correction={"enabled": False})
        data = write_jsonl(root / "train.jsonl", [{"question": f"What is {k} times 2?", "answer": str(2 * k)}
                                                  for k in range(20)])
        out = run_cli(root, data)
    assert out.returncode == 0, out.stderr
    book = Playbook(root / "data" / "ace" / "playbook.jsonl")
    assert [x.text for x in book.lessons] == [LESSON] and book.lessons[0].task == "live"
    assert "wrong answers reflected on" in out.stderr
    status = run_cli(root, "--status")
    assert "ace playbook" in status.stdout and LESSON[:20] in status.stdout


def test_a_reflection_that_copies_its_prompt_back_gives_no_lesson():
    import asyncio

    from core.config import AceSection
    from inference.requests import Completion, Result

    class Echo:
        async def generate(self, requests):
            prompt = requests[0].messages[-1]["content"]
            return [Result(1, [Completion(prompt.split("\n\n")[0] + "\n" + "Correct answer: 42\n" + LESSON, [], "stop")])]

    from evaluation.ace import reflect

    lessons = asyncio.run(reflect(Echo(), AceSection(), question="What is 6 times 7?", answer="13", golden="42",
                                  codes=[]))
    assert lessons == [LESSON]
