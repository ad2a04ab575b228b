from selfcorrect.correction_examples import KINDS, build_confirmation, build_triple, explain
from selfcorrect.error_codes import error_codes
from training.config import TemplatesSection
from training.data import parse_record


def triple(**kw):
    q, golden, predicted = "What is 17 + 25?", "17 + 25 = 42. The answer is 42.", "17 + 25 = 41."
    codes = error_codes(q, golden, predicted, first_wrong_value=True)
    return build_triple(question=q, golden=golden, predicted=predicted, codes=codes, step=150,
                        source={"id": "v7", "file": "val.jsonl"}, **kw), codes


def test_three_records_in_the_spec_order_with_their_fields():
    records, codes = triple()
    assert [r["kind"] for r in records] == list(KINDS)
    for r in records:
        assert r["error_codes"] == codes and r["step"] == 150 and r["source"] == {"id": "v7", "file": "val.jsonl"}
        parse_record(r)  # every record is a valid training line
    initial, evaluation, correction = records
    assert initial["prompt"] == "What is 17 + 25?" and initial["rejected"] == "17 + 25 = 41."
    assert "Your previous answer:\n17 + 25 = 41." in evaluation["prompt"]
    assert "Error indicators: " + ", ".join(codes) in evaluation["prompt"]
    assert correction["prompt"].endswith("Provide the correct answer.")


def test_no_record_trains_on_the_wrong_answer():
    records, _ = triple()
    assert all(r["response"] != "17 + 25 = 41." for r in records)
    assert records[0]["response"] == records[2]["response"] == "17 + 25 = 42. The answer is 42."
    # the self-evaluation may name the wrong value, as a diagnosis, never as an answer
    assert records[1]["response"].startswith("Looking at the error indicators, my previous answer was wrong")
    assert "the first value that went wrong was 41" in records[1]["response"]


def test_the_self_evaluation_explains_the_codes_in_plain_words():
    text = explain(["LENGTH_SHORT_BY_5_TOKENS", "MISSING_NUMBERS", "SIMILARITY_12%"])
    assert "too short, by about 5 tokens" in text and "no numbers" in text and "12%" in text
    assert "_" not in text.replace("SIMILARITY", "")
    assert "the first value that went wrong was -2.5" in explain(["FIRST_WRONG_VALUE_-2.5"])


def test_templates_come_from_config():
    t = TemplatesSection(correction="Q: {question}\nHints: {codes}\nTry again.")
    records, codes = triple(templates=t)
    assert records[2]["prompt"] == f"Q: What is 17 + 25?\nHints: {', '.join(codes)}\nTry again."


def test_a_file_of_confirmations_is_generated_data_and_adds_nothing_to_the_validation_pool():
    from monitor.validation_pool import split_holdout

    q, golden = "What is 17 + 25?", "17 + 25 = 42. The answer is 42."
    confirmations = [parse_record(build_confirmation(question=q, golden=golden, predicted=golden, step=5,
                                                     source={"id": f"v{i}", "file": "val.jsonl"})) for i in range(20)]
    assert split_holdout(confirmations, fraction=0.5, seed="s") == (confirmations, [])
    task = [parse_record({"prompt": q, "response": golden}) for _ in range(20)]
    assert len(split_holdout(task, fraction=0.5, seed="s")[1]) == 10  # a task file does give its share


def test_which_records_carry_the_wrong_answer_as_rejected():
    from selfcorrect.correction_examples import records_for_answer
    from training.config import SelfCorrectionSection

    q, golden, predicted = "What is 17 + 25?", "17 + 25 = 42. The answer is 42.", "17 + 25 = 41."
    codes = error_codes(q, golden, predicted)

    def rejected_by_kind(**settings):
        records = records_for_answer(question=q, golden=golden, predicted=predicted, matched=False, codes=codes,
                                     step=3, source={}, settings=SelfCorrectionSection(**settings))
        return [(r["kind"], r.get("rejected")) for r in records]

    assert rejected_by_kind(confirm_golden_answers=True) == [
        ("initial_attempt", predicted), ("self_evaluation", None), ("correction", predicted), ("confirmation", None)]
    assert rejected_by_kind(confirm_golden_answers=True, reject_initial_attempts=False) == [
        ("initial_attempt", None), ("self_evaluation", None), ("correction", predicted), ("confirmation", None)]
    assert rejected_by_kind(confirm_golden_answers=True, reject_initial_attempts=False,
                            reject_golden_confirmations=True) == [
        ("initial_attempt", None), ("self_evaluation", None), ("correction", predicted), ("confirmation", predicted)]
