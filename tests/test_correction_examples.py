import json

from selfcorrect.correction_examples import KINDS, build_confirmation, build_triple, explain
from evaluation.error_codes import error_codes
from core.config import TemplatesSection
from core.data import parse_record


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


def test_a_generated_file_is_known_by_its_outbox_and_adds_nothing_to_the_validation_pool(tmp_path):
    from core.config import load_config
    from core.events import EventLog
    from core.qa import split_holdout
    from daemon.queue import Queue
    from tests.conftest import write_config
    from training.engine import TrainingEngine

    q, golden = "What is 17 + 25?", "17 + 25 = 42. The answer is 42."
    records = [build_confirmation(question=q, golden=golden, predicted=golden, step=5,
                                  source={"id": f"v{i}", "file": "val.jsonl"}) for i in range(20)]
    data = "".join(json.dumps(r) + "\n" for r in records).encode()
    queue = Queue(tmp_path)
    queue.outbox("selfcorrect").add("gen.jsonl", data, "normal")
    (tmp_path / "inbox" / "user.jsonl").write_bytes(data)  # the same records, dropped by a user
    queue.admit(tmp_path / "inbox" / "user.jsonl", "normal")
    jobs = [queue.claim(), queue.claim()]
    assert [(j.original_name, j.origin) for j in jobs] == [("gen.jsonl", "selfcorrect"), ("user.jsonl", None)]
    assert queue.outbox("selfcorrect").pending_count() == 1 and queue.outbox("practice").pending_count() == 0
    # the engine holds nothing out of the generated file; the same records from a user give their share
    config = load_config(write_config(tmp_path, validation={"holdout_fraction": 0.5},
                                      training={"promotion": {"enabled": True, "holdout_fraction": 0.2}}))
    engine = TrainingEngine(config, tmp_path, EventLog(tmp_path / "logs"))
    generated, user = (engine.prepare(j.path, generated=j.origin is not None) for j in jobs)
    assert (len(generated.examples), generated.heldout, generated.gate) == (20, [], [])
    assert (len(user.gate), len(user.heldout)) == (4, 8)
    task = [parse_record({"prompt": q, "response": golden}) for _ in range(20)]
    assert len(split_holdout(task, fraction=0.5, seed="s")[1]) == 10


def test_which_records_carry_the_wrong_answer_as_rejected():
    from core.config import ExperimentalSection
    from selfcorrect.correction_examples import records_for_answer

    q, golden, predicted = "What is 17 + 25?", "17 + 25 = 42. The answer is 42.", "17 + 25 = 41."
    codes = error_codes(q, golden, predicted)

    def rejected_by_kind(**settings):
        records = records_for_answer(question=q, golden=golden, predicted=predicted, matched=False, codes=codes,
                                     step=3, source={}, templates=TemplatesSection(),
                                     experimental=ExperimentalSection(**settings))
        return [(r["kind"], r.get("rejected")) for r in records]

    assert rejected_by_kind(confirm_golden_answers=True) == [
        ("initial_attempt", predicted), ("self_evaluation", None), ("correction", predicted), ("confirmation", None)]
    assert rejected_by_kind(confirm_golden_answers=True, reject_initial_attempts=False) == [
        ("initial_attempt", None), ("self_evaluation", None), ("correction", predicted), ("confirmation", None)]
    assert rejected_by_kind(confirm_golden_answers=True, reject_initial_attempts=False,
                            reject_golden_confirmations=True) == [
        ("initial_attempt", None), ("self_evaluation", None), ("correction", predicted), ("confirmation", predicted)]
