"""Matching by the golden answer's kind: one row per case, with the codes that must and must not fire."""
import pytest

from evaluation.error_codes import code_family, error_codes
from evaluation.matching import KINDS, match_answer

Q = "q"
# (question, expected, predicted, kind, matched, codes that must fire, codes that must not fire)
CASES = [
    # math: the final answer decides, never another number in the prediction
    (Q, "42", "42", "math", True, [], []),
    (Q, "42", "The answer is 42", "math", True, [], []),
    (Q, "The answer is 42", "42", "math", True, [], []),
    (Q, "#### 42", "6 * 7 = 42\n#### 42", "math", True, [], []),
    (Q, "\\boxed{0.5}", "So x = \\boxed{\\frac{1}{2}}", "math", True, [], []),
    (Q, "1/2", "0.5", "math", True, [], []),
    (Q, "$1,234", "The total is 1234 dollars.", "math", True, [], []),
    (Q, "42", "42 apples minus 1 is 41", "math", False, ["NUMERIC_ERROR_EXTRA_X_VALUES"], []),
    (Q, "12", "3 + 4 = 7. The answer is 7.", "math", False, ["NUMERIC_ERROR_MISSING_X_VALUES"], ["STRUCTURE_SHOULD_BE_LIST"]),
    (Q, "#### 18", "I do not know.", "math", False, ["MISSING_NUMBERS"], []),
    (Q, "x^2 + 1", "x^2 + 1", "math", True, [], []),
    (Q, "2\\sqrt{3}", "The answer is \\sqrt{12}", "math", True, [], []),
    (Q, "7", "7.0", "math", True, [], []),
    (Q, "-3", "The answer is 3", "math", False, [], ["FORMAT_SHOULD_BE_JSON"]),
    # yes / no
    (Q, "Yes", "Yes, it does.", "yes_no", True, [], []),
    (Q, "no", "No.", "yes_no", True, [], []),
    (Q, "True", "yes", "yes_no", True, [], []),
    (Q, "Yes", "No, it does not.", "yes_no", False, ["PRIMARY_ANSWER_MISSING"], ["FORMAT_SHOULD_BE_JSON"]),
    (Q, "No", "The answer is yes.", "yes_no", False, [], []),
    (Q, "yes", "Maybe, it depends.", "yes_no", False, ["PRIMARY_ANSWER_MISSING"], []),
    # multiple choice
    (Q, "B", "B", "choice", True, [], []),
    (Q, "(C)", "The answer is (C).", "choice", True, [], []),
    (Q, "D", "D) mitochondria", "choice", True, [], []),
    (Q, "A", "I would pick option A because it fits.", "choice", True, [], []),
    (Q, "B", "C", "choice", False, [], []),
    (Q, "B", "The answer is (A).", "choice", False, [], []),
    # short spans: SQuAD-style normalisation
    (Q, "Paris", "paris", "span", True, [], []),
    (Q, "Canberra", "The capital of Australia is Canberra.", "span", True, [], []),
    (Q, "the Amazon", "Amazon", "span", True, [], []),
    (Q, "Ada Lovelace", "It was Ada Lovelace, in 1843.", "span", True, [], []),
    (Q, "July 4, 1776", "It was signed on July 4, 1776.", "span", True, [], []),
    (Q, "Canberra", "Sydney", "span", False, ["PRIMARY_ANSWER_MISSING"], ["STRUCTURE_SHOULD_BE_PROSE"]),
    (Q, "Paris", "Parisian food", "span", False, ["PRIMARY_ANSWER_MISSING"], []),
    (Q, "Marie Curie", "Pierre Curie", "span", False, ["PRIMARY_ANSWER_MISSING"], []),
    # lists: set equality, sequence equality when numbered
    (Q, "- red\n- blue", "- Blue\n- red", "list", True, [], []),
    (Q, "- red\n- blue", "red and blue", "list", True, [], []),
    (Q, "- red\n- blue\n- yellow", "- red\n- blue", "list", False, [], ["STRUCTURE_SHOULD_BE_PROSE"]),
    (Q, "- red\n- blue\n- yellow", "Red, blue and green are colours I like.", "list", False, ["STRUCTURE_SHOULD_BE_LIST"], []),
    (Q, "1. boil water\n2. add tea\n3. wait", "1. boil water\n2. add tea\n3. wait", "list", True, [], []),
    (Q, "1. boil water\n2. add tea\n3. wait", "1. add tea\n2. boil water\n3. wait", "list", False, [], ["STRUCTURE_SHOULD_BE_LIST"]),
    (Q, "- 3\n- 5\n- 7", "- 3\n- 5\n- 7\n- 9", "list", False, ["NUMERIC_ERROR_EXTRA_X_VALUES"], []),
    (Q, "* apples\n* pears", "Apples; pears", "list", True, [], []),
    # JSON: parsed structure
    (Q, '{"name": "Ada", "age": 36}', '{"age": 36, "name": "Ada"}', "json", True, [], []),
    (Q, '{"name": "Ada", "age": 36}', 'Here it is:\n```json\n{"name": "Ada", "age": 36}\n```', "json", True, [], []),
    (Q, '{"name": "Ada", "age": 36}', "Her name is Ada and she is 36.", "json", False, ["FORMAT_SHOULD_BE_JSON"], []),
    (Q, '{"name": "Ada", "age": 36}', '{"name": "Ada", "age": 37}', "json", False, ["NUMERIC_ERROR_MISSING_X_VALUES"], ["FORMAT_SHOULD_BE_JSON"]),
    (Q, '[1, 2, 3]', '[1, 2, 3]', "json", True, [], []),
    (Q, '[1, 2, 3]', '[3, 2, 1]', "json", False, [], ["FORMAT_SHOULD_BE_JSON"]),
    (Q, '{"ok": true}', "ok: true", "json", False, ["FORMAT_SHOULD_BE_JSON"], []),
    # code: normalised text of the code blocks
    (Q, "```python\nprint('hi')\n```", "```python\nprint('hi')\n```", "code", True, [], []),
    (Q, "```python\nprint('hi')\n```", "Run this:\n```\nprint('hi')   \n\n```", "code", True, [], []),
    (Q, "```python\nprint('hi')\n```", "print('hi')", "code", False, ["MISSING_CODE_BLOCK"], []),
    (Q, "```python\nprint('hi')\n```", "```python\nprint('bye')\n```", "code", False, [], ["MISSING_CODE_BLOCK"]),
    (Q, "```sql\nSELECT 1;\n```", "Use SELECT 1 with 42 rows", "code", False, ["MISSING_CODE_BLOCK"], []),
    # prose: key concepts and similarity, never a shared number alone
    (Q, "Water boils at 100 degrees Celsius at sea level.", "- Water\n- boils\n- 100", "prose", False,
     ["STRUCTURE_SHOULD_BE_PROSE", "MISSING_KEY_CONCEPTS_X_TERMS"], []),
    (Q, "Water boils at 100 degrees Celsius at sea level.", "At sea level water boils at 100 degrees Celsius.",
     "prose", True, [], []),
    (Q, "Water boils at 100 degrees Celsius at sea level.", "Water boils at 90 degrees Celsius at sea level.",
     "prose", False, ["NUMERIC_ERROR_MISSING_X_VALUES"], []),
    ("Why does ice float on water?", "Ice is less dense than liquid water because its molecules form an open "
     "crystal lattice.", "Ice floats on water because ice floats on water.", "prose", False,
     ["MISSING_KEY_CONCEPTS_X_TERMS"], []),
    (Q, "Photosynthesis converts light energy into chemical energy stored in glucose.",
     "Photosynthesis turns light energy into chemical energy, which is stored in glucose.", "prose", True, [], []),
    (Q, "Photosynthesis converts light energy into chemical energy stored in glucose.",
     "Plants grow toward the sun.", "prose", False, ["VERY_DIFFERENT_CONTENT", "MISSING_KEY_CONCEPTS_X_TERMS"], []),
    (Q, "The French Revolution began in 1789 with the storming of the Bastille.",
     "It began in 1789 when crowds stormed the Bastille, starting the French Revolution.", "prose", False,
     [], ["STRUCTURE_SHOULD_BE_PROSE"]),
    (Q, "The mitochondria produce most of the cell's energy.", "The mitochondria produce most of the cell's energy",
     "prose", True, [], []),
    (Q, "Gravity pulls objects toward each other in proportion to their masses.", "", "prose", False, [], []),
]


@pytest.mark.parametrize("question, expected, predicted, kind, matched, fire, quiet", CASES)
def test_the_match_and_its_codes_follow_the_answers_kind(question, expected, predicted, kind, matched, fire, quiet):
    m = match_answer(expected, predicted, question=question)
    assert (m.kind, m.matched) == (kind, matched), m
    codes = {code_family(c) for c in error_codes(question, expected, predicted)}
    assert (not codes) == matched, codes
    assert set(fire) <= codes, codes
    assert not set(quiet) & codes, codes


def test_the_table_covers_every_kind_with_right_and_wrong_answers():
    assert len(CASES) >= 60
    for kind in KINDS:
        outcomes = {c[4] for c in CASES if c[3] == kind}
        assert outcomes == {True, False}, kind
