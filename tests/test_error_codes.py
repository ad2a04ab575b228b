"""Every error code fires where its rule says, and stays quiet where it does not."""
import pytest
from transformers import AutoTokenizer

from evaluation.error_codes import RULES, code_family, error_codes
from tests.conftest import MODELS

# (code family, question, expected, predicted): the code must fire
FIRES = [
    ("LENGTH_SHORT_BY_X_TOKENS", "q", "one two three four five six seven eight", "one two"),
    ("LENGTH_LONG_BY_X_TOKENS", "q", "red", "it is green and blue and purple and more"),
    ("TOO_BRIEF", "q", "one two three four five six seven eight", "one two"),
    ("TOO_VERBOSE", "q", "red", "it is green and blue and purple and more"),
    ("VERY_DIFFERENT_CONTENT", "q", "Paris is the capital of France", "bananas grow on trees"),
    ("SIMILARITY_X%", "q", "Paris", "Lyon"),
    ("CLOSE_BUT_INACCURATE", "q", "the sum of 2 and 3 is 5", "the sum of 2 and 3 is 6"),
    ("PRIMARY_ANSWER_MISSING", "q", "The capital is Paris. The answer is Paris.", "The capital is Lyon."),
    ("OFF_TOPIC_CONTENT", "What is the capital of France?", "Paris", "Bananas, mangoes and papayas taste wonderful"),
    ("MISSING_NUMBERS", "q", "42", "I do not know"),
    ("NUMERIC_ERROR_MISSING_X_VALUES", "q", "3 + 4 = 7", "3 + 4 = 8"),
    ("NUMERIC_ERROR_EXTRA_X_VALUES", "q", "7", "8"),
    ("FIRST_WRONG_VALUE_X", "q", "3 + 4 = 7. 7 + 5 = 12", "3 + 4 = 8. 8 + 5 = 13"),
    ("STRUCTURE_SHOULD_BE_LIST", "q", "- apples\n- pears", "apples and bananas"),
    ("STRUCTURE_SHOULD_BE_PROSE", "q", "apples and pears", "- apples\n- bananas"),
    ("MISSING_CODE_BLOCK", "q", "```python\nprint(1)\n```", "use the print function"),
    ("FORMAT_SHOULD_BE_JSON", "q", '{"a": 1}', "a is one"),
    ("MISSING_KEY_CONCEPTS_X_TERMS", "q", "photosynthesis converts sunlight into chemical energy", "plants grow"),
]

# (code family, question, expected, predicted): wrong answers where the code must stay quiet
QUIET = [
    ("LENGTH_SHORT_BY_X_TOKENS", "q", "one two three", "four five six"),
    ("LENGTH_LONG_BY_X_TOKENS", "q", "one two three", "four five six seven"),
    ("TOO_BRIEF", "q", "one two three four", "five six seven"),
    ("TOO_VERBOSE", "q", "one two three four", "five six seven eight nine ten"),
    ("VERY_DIFFERENT_CONTENT", "q", "the sum of 2 and 3 is 5", "the sum of 2 and 3 is 6"),
    ("CLOSE_BUT_INACCURATE", "q", "Paris", "Lyon"),
    ("PRIMARY_ANSWER_MISSING", "q", "#### 12", "I got 12 or maybe 13"),
    ("OFF_TOPIC_CONTENT", "What is the capital of France?", "Paris", "The capital of France is Lyon"),
    ("MISSING_NUMBERS", "q", "42", "41"),
    ("NUMERIC_ERROR_MISSING_X_VALUES", "q", "42", "no idea"),
    ("NUMERIC_ERROR_EXTRA_X_VALUES", "What is 3 + 4?", "7", "the sum of 3 and 4 is unknown"),
    ("FIRST_WRONG_VALUE_X", "What is 3 + 4?", "7", "I would add 3 and 4"),  # only the question's numbers
    ("STRUCTURE_SHOULD_BE_LIST", "q", "apples and pears", "apples and bananas"),
    ("STRUCTURE_SHOULD_BE_PROSE", "q", "- apples\n- pears", "- apples\n- bananas"),
    ("MISSING_CODE_BLOCK", "q", "print one", "```python\nprint(2)\n```"),
    ("FORMAT_SHOULD_BE_JSON", "q", '{"a": 1}', '{"a": 2}'),
    ("MISSING_KEY_CONCEPTS_X_TERMS", "q", "photosynthesis converts sunlight", "photosynthesis converts moonlight"),
]


def families(codes):
    return {code_family(c) for c in codes}


def test_every_documented_code_is_tested_both_ways():
    documented = {code for code, _, _ in RULES}
    assert documented == {f for f, *_ in FIRES}
    assert documented - {"SIMILARITY_X%"} == {f for f, *_ in QUIET}


@pytest.mark.parametrize("family, question, expected, predicted", FIRES, ids=[f[0] for f in FIRES])
def test_code_fires(family, question, expected, predicted):
    assert family in families(error_codes(question, expected, predicted, first_wrong_value=True))


@pytest.mark.parametrize("family, question, expected, predicted", QUIET, ids=[f[0] for f in QUIET])
def test_code_stays_quiet(family, question, expected, predicted):
    codes = error_codes(question, expected, predicted, first_wrong_value=True)
    assert codes, "the answer is wrong, so some code must fire"
    assert family not in families(codes)


def test_a_right_answer_has_no_codes():
    assert error_codes("What is 40 + 2?", "40 + 2 = 42. The answer is 42.", "The answer is 42.") == []


def test_x_is_the_integer_difference_in_words_or_tokens():
    codes = error_codes("q", "one two three four five six seven eight", "one two")
    assert "LENGTH_SHORT_BY_6_TOKENS" in codes
    tok = AutoTokenizer.from_pretrained(MODELS / "tiny-random")
    expected, predicted = "antidisestablishmentarianism is long", "no"
    n = len(tok(expected, add_special_tokens=False)["input_ids"]) - len(tok(predicted, add_special_tokens=False)["input_ids"])
    assert f"LENGTH_SHORT_BY_{n}_TOKENS" in error_codes("q", expected, predicted, tokenizer=tok)


def test_numeric_counts_are_exact():
    codes = error_codes("What is 10 + 20 + 30?", "10 + 20 + 30 = 60", "10 + 20 + 30 = 50 or 70")
    assert "NUMERIC_ERROR_MISSING_1_VALUES" in codes and "NUMERIC_ERROR_EXTRA_2_VALUES" in codes


def test_the_first_wrong_value_is_where_a_chain_of_numbers_went_wrong():
    question, expected = "What is 12 + 34 + 5?", "12 + 34 = 46. 46 + 5 = 51. The answer is 51."
    first_step_wrong = "12 + 34 = 47. 47 + 5 = 52. The answer is 52."
    last_step_wrong = "12 + 34 = 46. 46 + 5 = 50. The answer is 50."
    assert [c for c in error_codes(question, expected, first_step_wrong, first_wrong_value=True)
            if c.startswith("FIRST_WRONG")] == ["FIRST_WRONG_VALUE_47"]
    assert "FIRST_WRONG_VALUE_50" in error_codes(question, expected, last_step_wrong, first_wrong_value=True)
    misplaced = "12 + 34 = 46. 46 + 5 = 46. The answer is 46."  # a right number in the wrong place
    assert "FIRST_WRONG_VALUE_46" in error_codes(question, expected, misplaced, first_wrong_value=True)
    assert "FIRST_WRONG_VALUE_-2.5" in error_codes("q", "The answer is 2.5.", "The answer is -2.5.", first_wrong_value=True)
    assert code_family("FIRST_WRONG_VALUE_-2.5") == code_family("FIRST_WRONG_VALUE_47") == "FIRST_WRONG_VALUE_X"


def test_the_first_wrong_value_is_opt_in():
    question, expected, predicted = "What is 12 + 34?", "12 + 34 = 46.", "12 + 34 = 47."
    off = error_codes(question, expected, predicted)
    on = error_codes(question, expected, predicted, first_wrong_value=True)
    assert not any(c.startswith("FIRST_WRONG") for c in off)
    assert [c for c in on if c not in off] == ["FIRST_WRONG_VALUE_47"]


def test_codes_are_deterministic():
    args = ("What is 2+2?", "2+2 equals 4. This is basic addition.", "5")
    assert error_codes(*args) == error_codes(*args)
