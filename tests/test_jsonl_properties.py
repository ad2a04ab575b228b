"""Property tests of the JSONL reader: accepted exactly when every line is valid; read -> write -> read is stable."""
import json
import tempfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from core.data import read_examples, write_examples
from core.errors import DataError

text = st.text(min_size=1, max_size=40).filter(lambda s: s.strip())
valid = st.one_of(
    st.fixed_dictionaries({"prompt": text, "response": text}),
    st.fixed_dictionaries({"prompt": text, "completion": text}),
    st.fixed_dictionaries({"question": text, "answer": text}),
    st.fixed_dictionaries({"text": text}),
    st.fixed_dictionaries({"instruction": text, "output": text}, optional={"input": text}),
    st.fixed_dictionaries({"messages": st.just(None)}).flatmap(lambda _: st.tuples(text, text).map(
        lambda qa: {"messages": [{"role": "user", "content": qa[0]}, {"role": "assistant", "content": qa[1]}]})),
)
invalid = st.one_of(
    st.fixed_dictionaries({"prompt": text}),
    st.fixed_dictionaries({"prompt": st.integers(), "response": text}),
    st.fixed_dictionaries({"prompt": text, "response": st.just("")}),
    st.just([1, 2]),
    st.just(None),
    st.fixed_dictionaries({"messages": st.just([{"role": "user", "content": "only a question"}])}),
)
line = st.one_of(valid.map(lambda r: (True, json.dumps(r))), invalid.map(lambda r: (False, json.dumps(r))),
                 st.just((False, '{"prompt": "cut')))


def read(content: str):
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "f.jsonl"
        path.write_text(content, encoding="utf-8")
        return read_examples(path)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(line, min_size=1, max_size=8))
def test_a_file_is_accepted_exactly_when_every_line_is_valid(lines):
    content = "".join(l + "\n" for _, l in lines)
    bad = [k + 1 for k, (ok, _) in enumerate(lines) if not ok]
    try:
        examples = read(content)
        assert not bad and len(examples) == len(lines)
    except DataError as e:
        assert [n for n, _ in e.problems] == bad


@settings(max_examples=100, deadline=None)
@given(st.lists(valid, min_size=1, max_size=6))
def test_read_write_read_gives_the_same_records(records):
    first = read("".join(json.dumps(r) + "\n" for r in records))
    with tempfile.TemporaryDirectory() as d:
        out = Path(d) / "out.jsonl"
        write_examples(out, records)
        second = read_examples(out)
    assert [(e.messages, e.text, e.meta) for e in first] == [(e.messages, e.text, e.meta) for e in second]
