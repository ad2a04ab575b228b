"""The self-correction tools by hand (`selfcorrect codes ...`, older form `python -m selfcorrect codes ...`), run
in-process as the command line runs them; the older form's own process is tested once at the end."""
import json
import subprocess
import sys

import pytest

from evaluation.error_codes import RULES
from tests.conftest import REPO, run_in_process, write_config, write_jsonl


def cli(*args, cwd=REPO):
    return run_in_process(list(map(str, args)), cwd)


def test_codes_prints_the_codes_and_the_decision_as_one_json_object():
    out = cli("codes", "--expected", "The answer is 42.", "--predicted", "41", "--question", "What is 40 + 2?")
    result = json.loads(out.stdout)
    assert "NUMERIC_ERROR_MISSING_1_VALUES" in result["codes"]
    assert (result["matched"], result["kind"], result["reason"]) == (False, "math", "final answer 41 != expected 42")
    right = json.loads(cli("codes", "--expected", "42", "--predicted", "The answer is 42").stdout)
    assert right["codes"] == [] and right["matched"] is True and right["kind"] == "math"
    flagged = cli("codes", "--expected", "The answer is 42.", "--predicted", "41", "--question", "What is 40 + 2?",
                  "--first-wrong-value")
    assert json.loads(flagged.stdout)["codes"] == result["codes"] + ["FIRST_WRONG_VALUE_41"]
    text = cli("codes", "--expected", "42", "--predicted", "41", "--text")
    assert json.loads(text.stdout.splitlines()[0]) and "matched: no (math: final answer 41" in text.stdout


def test_codes_does_not_call_prose_or_json_right_on_a_shared_number():
    prose = json.loads(cli("codes", "--expected", "Water boils at 100 degrees Celsius at sea level.",
                           "--predicted", "- Water\n- boils\n- 100").stdout)
    assert prose["matched"] is False and prose["kind"] == "prose" and "STRUCTURE_SHOULD_BE_PROSE" in prose["codes"]
    record = json.loads(cli("codes", "--expected", '{"name": "Ada", "age": 36}',
                            "--predicted", "Her name is Ada and she is 36.").stdout)
    assert record["matched"] is False and record["kind"] == "json" and "FORMAT_SHOULD_BE_JSON" in record["codes"]


def test_build_makes_triples_for_wrong_answers_only(tmp_path):
    qa = write_jsonl(tmp_path / "qa.jsonl", [{"id": "a", "prompt": "What is 1 + 1?", "response": "2"},
                                             {"id": "b", "prompt": "What is 2 + 2?", "response": "4"}])
    answers = write_jsonl(tmp_path / "answers.jsonl", [{"id": "b", "predicted": "5"}, {"id": "a", "predicted": "2"}])
    out = cli("build", "--input", qa, "--initial-answers", answers, "--output", tmp_path / "t.jsonl", "--step", 7)
    assert out.returncode == 0, out.stderr
    records = [json.loads(l) for l in (tmp_path / "t.jsonl").read_text().splitlines()]
    assert [r["kind"] for r in records] == ["initial_attempt", "self_evaluation", "correction"]
    assert records[0]["source"] == {"id": "b", "file": "qa.jsonl"} and records[0]["step"] == 7


def test_build_writes_the_records_the_config_asks_for(tmp_path):
    """Confirmations and repeated corrections, as the daemon writes them: a round built by hand trains the same."""
    config = write_config(tmp_path, experimental={"confirm_right_answers": True, "confirm_golden_answers": True,
                                                  "correction_repeats": 2, "first_wrong_value": True})
    qa = write_jsonl(tmp_path / "qa.jsonl", [{"id": "a", "prompt": "What is 1 + 1?", "response": "2"},
                                             {"id": "b", "prompt": "What is 2 + 2?", "response": "2 + 2 = 4."}])
    answers = write_jsonl(tmp_path / "answers.jsonl", [{"id": "b", "predicted": "2 + 2 = 5."},
                                                       {"id": "a", "predicted": "2"}])
    out = cli("build", "--input", qa, "--initial-answers", answers, "--output", tmp_path / "t.jsonl",
              "--config", config)
    assert out.returncode == 0, out.stderr
    assert "2 answers, 1 wrong -> 6 records" in out.stdout
    records = [json.loads(l) for l in (tmp_path / "t.jsonl").read_text().splitlines()]
    assert [(r["kind"], r["source"]["id"]) for r in records] == [
        ("initial_attempt", "b"), ("self_evaluation", "b"), ("correction", "b"), ("correction", "b"),
        ("confirmation", "b"), ("confirmation", "a")]
    assert "FIRST_WRONG_VALUE_5" in records[0]["error_codes"]
    assert "Your previous answer:\n2 + 2 = 4.\n\nError indicators: none" in records[4]["prompt"]  # the golden one
    assert "Your previous answer:\n2\n\nError indicators: none" in records[5]["prompt"]  # its own right answer
    assert records[5]["response"] == "2" and "rejected" not in records[5]


def test_build_names_the_line_of_an_answer_that_does_not_line_up(tmp_path):
    qa = write_jsonl(tmp_path / "qa.jsonl", [{"id": "a", "prompt": "p", "response": "r"}])
    answers = write_jsonl(tmp_path / "answers.jsonl", [{"id": "a", "predicted": "x"}, {"id": "zzz", "predicted": "y"}])
    out = cli("build", "--input", qa, "--initial-answers", answers, "--output", tmp_path / "t.jsonl")
    assert out.returncode == 1 and "answers.jsonl" in out.stderr and "line 2" in out.stderr and "zzz" in out.stderr
    missing = write_jsonl(tmp_path / "none.jsonl", [{"id": "a"}])
    out = cli("build", "--input", qa, "--initial-answers", missing, "--output", tmp_path / "t.jsonl")
    assert out.returncode == 1 and "line 1" in out.stderr and "predicted" in out.stderr
    assert not (tmp_path / "t.jsonl").exists()


def test_initial_answers_runs_the_model_batched(tmp_path):
    write_config(tmp_path)
    qa = write_jsonl(tmp_path / "qa.jsonl", [{"id": f"q{i}", "prompt": f"What is {i} + 1?", "response": f"{i + 1}"}
                                             for i in range(5)])
    out = cli("initial-answers", "--input", qa, "--output", tmp_path / "a.jsonl", "--adapter", "base",
              "--max-new-tokens", 4, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    rows = [json.loads(l) for l in (tmp_path / "a.jsonl").read_text().splitlines()]
    assert [r["id"] for r in rows] == [f"q{i}" for i in range(5)] and all(isinstance(r["predicted"], str) for r in rows)
    bad = cli("initial-answers", "--input", qa, "--output", tmp_path / "b.jsonl", "--adapter", "v0009", cwd=tmp_path)
    assert bad.returncode == 1 and "v0009" in bad.stderr


def test_demo_and_rules_print():
    demo = cli("demo")
    assert demo.returncode == 0 and "MISMATCH" in demo.stdout and "self_evaluation" in demo.stdout
    rules = cli("rules")
    assert rules.stdout.count("\n| `") == len(RULES) and "FIRST_WRONG_VALUE_X" in rules.stdout


def test_the_documented_error_code_table_is_the_one_rules_prints():
    readme = (REPO / "docs" / "matching.md").read_text(encoding="utf-8")
    rows = cli("rules").stdout.strip().splitlines()
    assert len(rows) == len(RULES) + 2 and all(row in readme for row in rows)


@pytest.mark.integration
def test_the_older_form_python_m_selfcorrect_still_runs_in_its_own_process():
    out = subprocess.run([sys.executable, "-m", "selfcorrect", "rules"], cwd=REPO, capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0 and out.stdout.strip().splitlines() == cli("rules").stdout.strip().splitlines()
