"""Practice files: problems with an answer or tests; all or nothing, every bad line named."""
import json

import pytest

from core.errors import DataError
from core.practice import read_problems


def write(tmp_path, lines):
    path = tmp_path / "practice.jsonl"
    path.write_text("".join((l if isinstance(l, str) else json.dumps(l)) + "\n" for l in lines))
    return path


def test_math_and_code_problems_are_read_with_their_way_to_verify(tmp_path):
    problems = read_problems(write(tmp_path, [
        {"question": "What is 6 * 7?", "answer": "42", "category": "arithmetic"},
        {"id": "add", "prompt": "Write add(a, b).", "tests": ["assert add(1, 2) == 3"], "entry_point": "add",
         "solution": "def add(a, b):\n    return a + b"},
        {"prompt": "Print the sum of two numbers.", "tests": [{"input": "1 2", "output": "3"}]},
    ]))
    assert [(p.id, p.kind, p.line) for p in problems] == [("line-1", "math", 1), ("add", "code", 2), ("line-3", "code", 3)]
    assert problems[0].answer == "42" and problems[0].category == "arithmetic"
    assert problems[1].entry_point == "add" and problems[1].solution.startswith("def add")


def test_a_bad_line_refuses_the_whole_file_naming_each_line(tmp_path):
    path = write(tmp_path, [
        {"question": "fine", "answer": "1"},
        {"question": "both", "answer": "1", "tests": ["assert True"]},
        {"prompt": "none"},
        {"prompt": "x", "tests": []},
        {"prompt": "x", "tests": [{"input": "1"}]},
        "not json",
        {"answer": "1"},
        {"id": "line-1", "question": "dup", "answer": "2"},
    ])
    with pytest.raises(DataError) as e:
        read_problems(path)
    reasons = dict(e.value.problems)
    assert sorted(reasons) == [2, 3, 4, 5, 6, 7]
    assert "exactly one way to verify" in reasons[2] and "exactly one way to verify" in reasons[3]
    assert "non-empty list" in reasons[4] and "tests[0]" in reasons[5] and "invalid JSON" in reasons[6]
    assert 'no "question" or "prompt"' in reasons[7]
    assert "(math / QA)" in e.value.expected and "(code)" in e.value.expected
    path = write(tmp_path, [{"question": "a", "answer": "1"}, {"id": "line-1", "question": "b", "answer": "2"}])
    with pytest.raises(DataError, match="line 2: id 'line-1' also on line 1"):
        read_problems(path)


def test_tests_that_are_not_asserts_and_an_entry_point_that_is_not_a_name_refuse_the_file(tmp_path):
    """A practice file's tests are pasted after the solution and run: anything but an assert (or a stdin/stdout
    pair) would be its author's own program."""
    path = write(tmp_path, [
        {"prompt": "f", "tests": ["assert f(1) == 1"], "entry_point": "f"},
        {"prompt": "f", "tests": ["assert f(1) == 1", "import os; os.system('rm -rf ~')"]},
        {"prompt": "f", "tests": ["assert f(1) == 1\nopen('/etc/passwd').read()"]},
        {"prompt": "f", "tests": ["assert f(1) == 1"], "entry_point": "f) or __import__('os').system('x'"},
    ])
    with pytest.raises(DataError) as e:
        read_problems(path)
    reasons = dict(e.value.problems)
    assert sorted(reasons) == [2, 3, 4]
    assert "tests[1] must be one assert statement" in reasons[2] and "tests[0]" in reasons[3]
    assert '"entry_point" must be a function name' in reasons[4]
