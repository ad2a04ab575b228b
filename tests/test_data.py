import json

import pytest

from core.data import read_examples
from core.errors import DataError


def write(tmp_path, content: bytes | str, name="f.jsonl"):
    p = tmp_path / name
    p.write_bytes(content if isinstance(content, bytes) else content.encode())
    return p


def problems(tmp_path, content, **kw):
    with pytest.raises(DataError) as e:
        read_examples(write(tmp_path, content), **kw)
    return e.value.problems


def test_every_supported_shape_becomes_a_chat_or_text(tmp_path):
    lines = [
        {"prompt": "p1", "response": "r1", "id": 7},
        {"prompt": "p2", "completion": "r2"},
        {"messages": [{"role": "system", "content": "s"}, {"role": "user", "content": "p3"},
                      {"role": "assistant", "content": "r3"}]},
        {"instruction": "do", "input": "this", "output": "r4"},
        {"instruction": "do only", "output": "r5"},
        {"question": "q6", "answer": "work\n#### 6"},
        {"text": "plain"},
    ]
    ex = read_examples(write(tmp_path, "".join(json.dumps(l) + "\n" for l in lines)))
    assert [e.prompt for e in ex[:6]] == ["p1", "p2", "p3", "do\n\nthis", "do only", "q6"]
    assert [e.response for e in ex[:6]] == ["r1", "r2", "r3", "r4", "r5", "work\n#### 6"]
    assert ex[6].text == "plain" and ex[6].messages is None
    assert ex[0].meta == {"id": 7}, "extra keys are kept as metadata"
    assert [e.line for e in ex] == [1, 2, 3, 4, 5, 6, 7]


def test_a_valid_last_line_without_newline_is_accepted(tmp_path):
    assert len(read_examples(write(tmp_path, '{"prompt": "a", "response": "b"}'))) == 1


def test_crlf_line_endings_are_accepted(tmp_path):
    assert len(read_examples(write(tmp_path, '{"text": "a"}\r\n{"text": "b"}\r\n'))) == 2


@pytest.mark.parametrize("content, line, words", [
    (b"", 0, "empty"),
    (b"\n\n  \n", 0, "empty"),
    (b'\xef\xbb\xbf{"text": "a"}\n', 1, "byte-order mark"),
    ('{"text": "a"}\n'.encode("utf-16"), 1, "UTF-16"),
    (b'{"text": "a"}\n{"text": "\xff\xfe"}\n', 2, "UTF-8"),
    (b'{"text": "a"}\n{"prompt": "a", "resp', 2, "truncated"),
    (b'{"prompt": 1, "response": "b"}\n', 1, '"prompt" must be a string'),
    (b'{"prompt": "a", "response": ""}\n', 1, '"response" is empty'),
    (b'{"prompt": "a", "response": null}\n', 1, "must be a string"),
    (b'[{"text": "a"}]\n', 1, "expected a JSON object"),
    (b'null\n', 1, "got null"),
    (b'{"text": NaN}\n', 1, "NaN"),
    (b'{"text": "a", "text": "b"}\n', 1, "twice"),
    (b'{"foo": "bar"}\n', 1, "no known shape"),
    (b'{"messages": [{"role": "user", "content": "hi"}]}\n', 1, "no assistant turn"),
    (b'{"messages": [{"role": "robot", "content": "hi"}]}\n', 1, "unknown role"),
    (b'{"messages": "hi"}\n', 1, "non-empty list"),
    (b'{"text": "a"}\n' + b"[" * 100000 + b"\n", 2, "nested too deeply"),
    (b"\x00" * 64 + b"\n", 1, "invalid JSON"),
])
def test_bad_input_is_refused_with_line_and_reason(tmp_path, content, line, words):
    (got_line, reason), *_ = problems(tmp_path, content)
    assert got_line == line and words in reason, (got_line, reason)


def test_a_huge_line_is_refused_without_parsing_it(tmp_path):
    big = json.dumps({"text": "x" * 2_000_000}) + "\n"
    (line, reason), = problems(tmp_path, '{"text": "ok"}\n' + big, max_line_bytes=1_000_000)
    assert line == 2 and "max_line_bytes" in reason


def test_all_bad_lines_are_listed_and_the_report_names_the_file(tmp_path):
    content = '{"text": "a"}\n{"bad"\n{"text": "b"}\n[]\n'
    with pytest.raises(DataError) as e:
        read_examples(write(tmp_path, content, name="mixed.jsonl"))
    report = e.value.report()
    assert [p["line"] for p in report["problems"]] == [2, 4]
    assert report["file"].endswith("mixed.jsonl") and "prompt" in report["expected_shape"]
    assert "mixed.jsonl" in str(e.value) and "line 2" in str(e.value)
