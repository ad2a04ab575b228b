"""Writes the bad-input corpus beside this file, and expected.json: for each file, the line
the report must name and a phrase its reason must contain. Run it after changing a case:

    python tests/data/bad/make_corpus.py

Files too big for git (a 10 MB line) are made by the test itself (see BIG below).
"""
import json
import random
from pathlib import Path

HERE = Path(__file__).parent
GOOD = '{"prompt": "What is 1 + 1?", "response": "1 + 1 = 2."}\n'

CASES = {
    # name: (content, line, reason phrase)
    "empty.jsonl": (b"", 0, "empty"),
    "only_blank_lines.jsonl": (b"\n\n   \n\t\n", 0, "empty"),
    "bom.jsonl": (b"\xef\xbb\xbf" + GOOD.encode(), 1, "byte-order mark"),
    "utf16.jsonl": (GOOD.encode("utf-16"), 1, "UTF-16"),
    "utf16_be_bom.jsonl": (b"\xfe\xff" + GOOD.encode("utf-16-be"), 1, "UTF-16"),
    "bad_utf8.jsonl": (GOOD.encode() + b'{"prompt": "caf\xe9", "response": "x"}\n', 2, "UTF-8"),
    "latin1_file.jsonl": ('{"prompt": "Ça va?", "response": "Très bien."}\n'.encode("latin-1"), 1, "UTF-8"),
    "truncated_last_line.jsonl": ((GOOD * 3 + '{"prompt": "What is 2 + 2?", "resp').encode(), 4, "truncated"),
    "nan.jsonl": (b'{"prompt": "a", "response": "b", "score": NaN}\n', 1, "NaN"),
    # Python refuses to convert integers of over 4300 digits (a ValueError, not a JSON error)
    "huge_integer.jsonl": (GOOD.encode() + b'{"prompt": "a", "response": "b", "n": ' + b"9" * 5000 + b'}\n', 2,
                           "digits"),
    "infinity.jsonl": (b'{"prompt": "a", "response": "b", "score": -Infinity}\n', 1, "Infinity"),
    "duplicate_keys.jsonl": (b'{"prompt": "a", "response": "b", "response": "c"}\n', 1, "twice"),
    "array_line.jsonl": (b'["prompt", "response"]\n', 1, "expected a JSON object, got list"),
    "whole_file_array.jsonl": (b'[{"prompt": "a", "response": "b"}, {"prompt": "c", "response": "d"}]\n', 1, "got list"),
    "null_line.jsonl": (b"null\n", 1, "got null"),
    "number_line.jsonl": (GOOD.encode() + b"42\n", 2, "got int"),
    "string_line.jsonl": (b'"just a string"\n', 1, "got str"),
    "prompt_is_number.jsonl": (b'{"prompt": 7, "response": "seven"}\n', 1, '"prompt" must be a string'),
    "response_is_null.jsonl": (b'{"prompt": "a", "response": null}\n', 1, '"response" must be a string'),
    "response_is_list.jsonl": (b'{"prompt": "a", "response": ["b"]}\n', 1, '"response" must be a string'),
    "empty_response.jsonl": (b'{"prompt": "a", "response": ""}\n', 1, '"response" is empty'),
    "whitespace_response.jsonl": (b'{"prompt": "a", "response": "  \\n "}\n', 1, '"response" is empty'),
    "empty_prompt.jsonl": (b'{"prompt": "", "response": "b"}\n', 1, '"prompt" is empty'),
    "completion_is_bool.jsonl": (b'{"prompt": "a", "completion": true}\n', 1, '"completion" must be a string'),
    "text_is_number.jsonl": (b'{"text": 12}\n', 1, '"text" must be a string'),
    "empty_text.jsonl": (b'{"text": ""}\n', 1, '"text" is empty'),
    "unknown_shape.jsonl": (b'{"input": "a", "target": "b"}\n', 1, "no known shape"),
    "instruction_without_output.jsonl": (b'{"instruction": "say hi"}\n', 1, "no known shape"),
    "output_is_object.jsonl": (b'{"instruction": "x", "output": {"a": 1}}\n', 1, '"output" must be a string'),
    "answer_is_number.jsonl": (b'{"question": "1 + 1?", "answer": 2}\n', 1, '"answer" must be a string'),
    "messages_is_string.jsonl": (b'{"messages": "hello"}\n', 1, "non-empty list"),
    "messages_empty.jsonl": (b'{"messages": []}\n', 1, "non-empty list"),
    "message_unknown_role.jsonl": (b'{"messages": [{"role": "user", "content": "hi"}, {"role": "bot", "content": "yo"}]}\n', 1, "unknown role 'bot'"),
    "message_role_number.jsonl": (b'{"messages": [{"role": 1, "content": "hi"}]}\n', 1, 'string "role" and "content"'),
    "message_missing_content.jsonl": (b'{"messages": [{"role": "user"}]}\n', 1, 'string "role" and "content"'),
    "message_not_object.jsonl": (b'{"messages": ["hi", "yo"]}\n', 1, 'must be an object'),
    "chat_without_assistant.jsonl": (b'{"messages": [{"role": "system", "content": "s"}, {"role": "user", "content": "hi"}]}\n', 1, "no assistant turn"),
    "empty_assistant_turn.jsonl": (b'{"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": ""}]}\n', 1, "assistant content is empty"),
    "deep_nesting.jsonl": (b'{"prompt": "a", "response": "b", "meta": ' + b"[" * 200_000 + b"]" * 200_000 + b"}\n", 1, "nested too deeply"),
    "nul_bytes.jsonl": (b"\x00" * 4096, 1, "invalid JSON"),
    "binary_garbage.jsonl": (bytes(random.Random(7).randrange(128, 256) for _ in range(2048)), 1, "not valid UTF-8"),
    "valid_then_bad_last_line.jsonl": ((GOOD * 5 + '{"prompt": "x", "response": 5}\n').encode(), 6, "must be a string"),
    "lone_cr_separators.jsonl": (GOOD.strip().encode() + b"\r" + GOOD.strip().encode() + b"\r", 1, "invalid JSON"),
    "trailing_comma.jsonl": (b'{"prompt": "a", "response": "b",}\n', 1, "invalid JSON"),
    "single_quotes.jsonl": (b"{'prompt': 'a', 'response': 'b'}\n", 1, "invalid JSON"),
    "two_objects_one_line.jsonl": (GOOD.strip().encode() + GOOD.encode(), 1, "Extra data"),
    "pretty_printed.jsonl": (b'{\n  "prompt": "a",\n  "response": "b"\n}\n', 1, "invalid JSON"),
    "comment_line.jsonl": ((GOOD + "// a comment\n" + GOOD).encode(), 2, "invalid JSON"),
    "csv_not_json.jsonl": (b"prompt,response\nWhat is 1+1?,2\n", 1, "invalid JSON"),
    "weight_two.jsonl": (b'{"messages": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b", '
                         b'"weight": 2}]}\n', 1, '"weight" must be 0 or 1'),
    "weight_on_user.jsonl": (b'{"messages": [{"role": "user", "content": "a", "weight": 1}, {"role": "assistant", '
                             b'"content": "b"}]}\n', 1, "on an assistant turn"),
    "message_content_number.jsonl": (b'{"messages": [{"role": "user", "content": 5}, {"role": "assistant", '
                                     b'"content": "b"}]}\n', 1, 'string "role" and "content"'),
    "message_content_null.jsonl": (b'{"messages": [{"role": "user", "content": null}, {"role": "assistant", '
                                   b'"content": "b"}]}\n', 1, 'string "role" and "content"'),
    "message_without_role.jsonl": (b'{"messages": [{"content": "a"}, {"role": "assistant", "content": "b"}]}\n', 1,
                                   'string "role" and "content"'),
    "messages_null.jsonl": (b'{"messages": null}\n', 1, "non-empty list"),
    "prompt_is_object.jsonl": (b'{"prompt": {"text": "a"}, "response": "b"}\n', 1, '"prompt" must be a string, got dict'),
    "prompt_is_list.jsonl": (b'{"prompt": ["a"], "response": "b"}\n', 1, '"prompt" must be a string, got list'),
    "prompt_is_null.jsonl": (b'{"prompt": null, "response": "b"}\n', 1, '"prompt" must be a string'),
    "response_is_zero.jsonl": (b'{"prompt": "a", "response": 0}\n', 1, '"response" must be a string, got int'),
    "text_is_list.jsonl": (b'{"text": ["a", "b"]}\n', 1, '"text" must be a string, got list'),
    "question_without_answer.jsonl": (b'{"question": "a"}\n', 1, "no known shape"),
    "answer_is_null.jsonl": (b'{"question": "a", "answer": null}\n', 1, '"answer" must be a string'),
    "empty_completion.jsonl": (b'{"prompt": "a", "completion": ""}\n', 1, '"completion" is empty'),
    "empty_output.jsonl": (b'{"instruction": "a", "output": ""}\n', 1, '"output" is empty'),
    "instruction_is_number.jsonl": (b'{"instruction": 3, "output": "b"}\n', 1, '"instruction" must be a string'),
    "empty_object.jsonl": (b"{}\n", 1, "no known shape"),
    "control_char_in_string.jsonl": (b'{"prompt": "a\x01b", "response": "c"}\n', 1, "control character"),
    "unterminated_string_mid_file.jsonl": (b'{"prompt": "a\n' + GOOD.encode(), 1, "Unterminated string"),
    "missing_brace_then_good.jsonl": (b'{"prompt": "a", "response": "b"\n' + GOOD.encode(), 1, "invalid JSON"),
    "bare_true.jsonl": (b"true\n", 1, "got bool"),
    "unquoted_key.jsonl": (b'{prompt: "a", response: "b"}\n', 1, "property name enclosed in double quotes"),
    "leading_zero_number.jsonl": (b'{"prompt": "a", "response": "b", "n": 01}\n', 1, "invalid JSON"),
    "garbage_after_object.jsonl": (GOOD.strip().encode() + b" x\n", 1, "Extra data"),
    "overlong_utf8.jsonl": (b'{"prompt": "a\xc0\xaf", "response": "b"}\n', 1, "not valid UTF-8"),
    "lone_surrogate_escape.jsonl": (b'{"prompt": "a\\ud800", "response": "b"}\n', 1, "unpaired surrogate"),
    "lone_surrogate_in_messages.jsonl": (b'{"messages": [{"role": "user", "content": "a"}, {"role": "assistant", '
                                         b'"content": "\\udc00b"}]}\n', 1, "unpaired surrogate"),
    "utf32.jsonl": (GOOD.encode("utf-32"), 1, "UTF-16"),
    "gzip_bytes.jsonl": (b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\x03" + bytes(range(200)), 1, "not valid UTF-8"),
    "nan_nested.jsonl": (b'{"prompt": "a", "response": "b", "meta": {"x": [1, NaN]}}\n', 1, "NaN"),
    "positive_infinity.jsonl": (b'{"prompt": "a", "response": "b", "score": Infinity}\n', 1, "Infinity"),
    "tab_separated.jsonl": (b"What is 1+1?\t2\n", 1, "invalid JSON"),
    "yaml_not_json.jsonl": (b"prompt: a\nresponse: b\n", 1, "invalid JSON"),
    "html_page.jsonl": (b"<!doctype html><html><body>Not found</body></html>\n", 1, "invalid JSON"),
    "deep_object_nesting.jsonl": (b'{"prompt": "a", "response": "b", "m": ' + b'{"a":' * 5_000 + b"1" + b"}" * 5_000
                                  + b"}\n", 1, "nested too deeply"),
}
# Made by the test (too big for git): name -> (line, reason phrase)
BIG = {"huge_line.jsonl": (2, "max_line_bytes")}


def main():
    expected = {}
    for name, (content, line, phrase) in CASES.items():
        (HERE / name).write_bytes(content)
        expected[name] = {"line": line, "reason": phrase}
    for name, (line, phrase) in BIG.items():
        expected[name] = {"line": line, "reason": phrase, "generated_by_test": True}
    (HERE / "expected.json").write_text(json.dumps(expected, indent=1, sort_keys=True) + "\n")
    print(f"{len(expected)} cases")


if __name__ == "__main__":
    main()
