"""Dataset importers: local files of public benchmarks, read with `datasets`, as questions with a reference answer."""
import json

import pytest

from core.errors import DataError
from core.importers import last_boxed, read_dataset, read_items
from tests.conftest import write_jsonl, run_cli


def write_csv(path, text: str):
    path.write_text(text)
    return path


def test_gsm8k_reads_the_final_answer_line(tmp_path):
    f = write_jsonl(tmp_path / "gsm8k.jsonl", [
        {"question": "Ana has 3 apples and buys 4. How many?", "answer": "3 + 4 = <<3+4=7>>7\n#### 7"},
        {"question": "Big number?", "answer": "it is\n#### 1,200"}])
    questions, skipped = read_dataset(f, "gsm8k")
    assert [(q.question, q.reference_answer) for q in questions] == [
        ("Ana has 3 apples and buys 4. How many?", "7"), ("Big number?", "1200")]
    assert skipped == [] and [q.row for q in questions] == [1, 2]


def test_gsm8k_bad_row_refuses_the_file_naming_the_row_unless_skip_bad(tmp_path):
    f = write_jsonl(tmp_path / "gsm8k.jsonl", [{"question": "q1", "answer": "#### 1"},
                                               {"question": "q2", "answer": "no final line"},
                                               {"question": "", "answer": "#### 3"}])
    with pytest.raises(DataError) as e:
        read_dataset(f, "gsm8k")
    message = str(e.value)
    assert "gsm8k.jsonl" in message and "row 2" in message and "####" in message and "row 3" in message
    assert "--skip-bad" in message
    questions, skipped = read_dataset(f, "gsm8k", skip_bad=True)
    assert [q.question for q in questions] == ["q1"] and [n for n, _ in skipped] == [2, 3]


def test_hotpotqa_json_array_puts_the_paragraphs_before_the_question(tmp_path):
    f = tmp_path / "hotpot_dev.json"
    f.write_text(json.dumps([
        {"_id": "5a8b", "question": "Which city is the capital?", "answer": "Paris", "type": "bridge", "level": "easy",
         "supporting_facts": [["France", 0]],
         "context": [["France", ["France is a country.", " Its capital is Paris."]], ["Spain", ["Madrid."]]]}]))
    [q], _ = read_dataset(f, "hotpotqa")
    assert q.id == "5a8b" and q.reference_answer == "Paris"
    assert "France: France is a country. Its capital is Paris." in q.context and "Spain: Madrid." in q.context
    [item], _ = read_items(f, "hotpotqa")
    assert item.question.startswith("France:") and item.question.endswith("Question: Which city is the capital?")
    assert item.golden == "Paris"


def test_hotpotqa_bad_row(tmp_path):
    f = tmp_path / "hotpot.json"
    f.write_text(json.dumps([{"_id": "a", "question": "q", "answer": "x", "context": []},
                             {"_id": "b", "question": "q", "answer": None, "context": []}]))
    with pytest.raises(DataError, match=r'row 2: "answer" is missing or empty'):
        read_dataset(f, "hotpotqa")


def test_boolq_answers_yes_or_no_with_the_passage(tmp_path):
    f = write_jsonl(tmp_path / "boolq.jsonl", [
        {"question": "is the sky blue", "passage": "The sky is blue.", "answer": True},
        {"question": "is grass red", "passage": "Grass is green.", "answer": False}])
    questions, _ = read_dataset(f, "boolq")
    assert [(q.question, q.reference_answer, q.context) for q in questions] == [
        ("Is the sky blue?", "yes", "The sky is blue."), ("Is grass red?", "no", "Grass is green.")]


def test_boolq_bad_row(tmp_path):
    f = write_jsonl(tmp_path / "boolq.jsonl", [{"question": "q", "passage": "p", "answer": "maybe"}])
    with pytest.raises(DataError, match="row 1: \"answer\" must be true or false, got 'maybe'"):
        read_dataset(f, "boolq")


def test_math_takes_the_last_boxed_answer_with_nested_braces(tmp_path):
    assert last_boxed(r"first \boxed{1} then \boxed{\frac{1}{2}}.") == r"\frac{1}{2}"
    f = write_jsonl(tmp_path / "math.jsonl", [{"problem": "Half?", "solution": r"So \boxed{\frac{1}{2}}.",
                                               "unique_id": "test/algebra/1.json"}])
    [q], _ = read_dataset(f, "math")
    assert (q.id, q.question, q.reference_answer) == ("test/algebra/1.json", "Half?", r"\frac{1}{2}")


def test_math_bad_row(tmp_path):
    f = write_jsonl(tmp_path / "math.jsonl", [{"problem": "p", "solution": "no box here"}])
    with pytest.raises(DataError, match=r"row 1: \"solution\" has no \\boxed"):
        read_dataset(f, "math")


def test_csv_reads_id_question_reference_answer_and_parquet_too(tmp_path):
    f = write_csv(tmp_path / "qs.csv", 'id,question,reference_answer\nq1,"What is 2+2, exactly?",4\nq2,Capital?,Paris\n')
    questions, _ = read_dataset(f, "csv")
    assert [(q.id, q.question, q.reference_answer) for q in questions] == [
        ("q1", "What is 2+2, exactly?", "4"), ("q2", "Capital?", "Paris")]
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.table({"question": ["Big?"], "answer": ["ok\n#### 5"]}), tmp_path / "g.parquet")
    [q], _ = read_dataset(tmp_path / "g.parquet", "gsm8k")
    assert q.reference_answer == "5"


def test_csv_bad_row(tmp_path):
    f = write_csv(tmp_path / "qs.csv", "id,question,reference_answer\n1,What?,4\n2,,5\n")
    with pytest.raises(DataError, match='row 2: "question" is missing or empty'):
        read_dataset(f, "csv")
    assert [q.id for q in read_dataset(f, "csv", skip_bad=True)[0]] == ["1"]


def test_our_qa_jsonl_and_an_unreadable_file_are_named(tmp_path):
    f = write_jsonl(tmp_path / "qa.jsonl", [{"prompt": "2+2?", "response": "4"}, {"text": "no question"}])
    with pytest.raises(DataError, match="line 2"):
        read_dataset(f, "jsonl")
    broken = tmp_path / "broken.jsonl"
    broken.write_text('{"question": "q", "answer": "#### 1"}\n{not json\n')
    with pytest.raises(DataError, match="(?s)broken.jsonl: not read.*cannot be read as gsm8k"):
        read_dataset(broken, "gsm8k")
    with pytest.raises(DataError, match="unknown dataset format"):
        read_dataset(f, "squad")


def test_limit_stops_early(tmp_path):
    f = write_jsonl(tmp_path / "g.jsonl", [{"question": f"q{k}", "answer": f"#### {k}"} for k in range(50)])
    assert len(read_dataset(f, "gsm8k", limit=5)[0]) == 5


def test_the_importers_feed_eval_and_practice(root):
    from tests.conftest import write_config

    write_config(root, eval_max_tokens=4, practice={"samples": 1, "max_new_tokens_math": 4})
    qs = write_csv(root / "qs.csv", "id,question,reference_answer\nq1,What is 2+2?,4\nq2,What is 3+3?,6\n")
    out = run_cli(root, "--eval", qs, "--dataset", "csv")
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout.strip().splitlines()[-1])["n"] == 2
    gsm = write_jsonl(root / "gsm8k.jsonl", [
        {"question": "What is 2+2?", "answer": "2+2=4\n#### 4", "id": "a"},
        {"question": "What is 5+5?", "answer": "no final line", "id": "b"}])
    out = run_cli(root, "--practice", gsm, "--dataset", "gsm8k")
    assert out.returncode == 1 and "row 2" in out.stdout + out.stderr
    out = run_cli(root, "--practice", gsm, "--dataset", "gsm8k", "--skip-bad")
    assert out.returncode == 0, out.stderr
    log = out.stdout + out.stderr
    assert "skipped 1 bad rows" in log and "round 1" in log
