"""Live inference: when it fires, that it leaves training untouched, and the closed loop."""
import json

import pytest

from tests.conftest import MODELS, write_config, write_jsonl, run_cli
from tests.daemon_helpers import events, wait_event
from core.synthetic import integer_sums


def evaluations(root):
    return [e for e in events(root) if e["event"] == "evaluation"]


def test_the_callback_fires_at_exactly_the_global_steps_across_two_files(root):
    write_config(root, eval_steps=3, eval_max_tokens=4, validation={"holdout_fraction": 0.25},
                 self_correction={"enabled": False})
    a = write_jsonl(root / "a.jsonl", integer_sums(24, seed=1))  # 6 held out, 18 trained: 5 steps
    b = write_jsonl(root / "b.jsonl", integer_sums(24, seed=2))
    assert run_cli(root, a).returncode == 0
    assert run_cli(root, b).returncode == 0
    assert [e["step"] for e in evaluations(root)] == [3, 6, 9]
    pool = (root / "data" / "validation" / "pool.jsonl").read_text().splitlines()
    assert len(pool) == 12, "a quarter of each file was held out"
    trained = json.loads((root / "data" / "state.json").read_text())["files_trained"]
    assert [f["examples"] for f in trained] == [18, 18]


def test_evaluation_rotates_through_the_pool_before_repeating(root):
    write_config(root, eval_steps=1, num_eval_samples=3, eval_max_tokens=2, validation={"holdout_fraction": 0.5},
                 self_correction={"enabled": False, "measure_second_attempt": False}, training={"batch_size": 2})
    assert run_cli(root, write_jsonl(root / "a.jsonl", integer_sums(16, seed=3))).returncode == 0  # pool of 8
    block = (root / "logs").glob("daemon_*.log").__next__().read_text()
    expected = [l.split("Expected: ", 1)[1] for l in block.splitlines() if "Expected: " in l]
    assert len(set(expected[:8])) == 8 and expected[8:11] == expected[:3]


def test_evaluating_does_not_change_the_training_trajectory(tmp_path):
    data = integer_sums(24, seed=4)
    losses = {}
    for name, eval_steps in (("on", 1), ("off", 10_000)):
        root = tmp_path / name
        root.mkdir()
        write_config(root, eval_steps=eval_steps, eval_max_tokens=6,
                     self_correction={"min_examples": 1, "generation_interval": 2}, training={"learning_rate": 0.01})
        assert run_cli(root, write_jsonl(root / "a.jsonl", data)).returncode == 0
        losses[name] = [e["loss"] for e in events(root) if e["event"] == "progress"]
        if name == "on":
            assert len(evaluations(root)) == 6
    assert losses["on"] == losses["off"]


def test_metrics_join_the_trainers_log_history(root):
    from transformers import TrainerCallback

    from core.config import parse_config
    from core.events import EventLog
    from daemon.queue import Queue
    from monitor.live_inference import attach_monitor
    from training.engine import TrainingEngine

    config = parse_config({"model": {"name_or_path": "tiny-random", "cache_dir": str(MODELS)}, "eval_steps": 2,
                           "eval_max_tokens": 4, "training": {"batch_size": 4, "logging_steps": 100}})
    events_log = EventLog(root / "logs")
    engine = TrainingEngine(config, root, events_log)
    monitor = attach_monitor(engine, root=root, config=config, outbox=Queue(root).outbox("selfcorrect"),
                             events=events_log)
    prepared = engine.prepare(write_jsonl(root / "a.jsonl", integer_sums(40, seed=5)))
    monitor.pool.add_heldout(prepared.heldout, file="a.jsonl", sha256=prepared.sha256)
    logged = []

    class Record(TrainerCallback):
        def on_log(self, args, state, control, logs=None, **kwargs):
            logged.append(dict(logs))

    engine.train(prepared, callbacks=[monitor, Record()])
    with_eval = [l for l in logged if "eval/accuracy" in l]
    assert len(with_eval) == 4  # steps 2, 4, 6, 8 of 9
    assert all("eval/code/SIMILARITY_X%" in l and "loss" in l for l in with_eval)


def test_eval_reports_accuracy_as_a_final_json_line(root):
    qa = write_jsonl(root / "qa.jsonl", [{"prompt": "What is 2 + 2?", "response": "4"},
                                         {"question": "What is 3 + 3?", "answer": "3 + 3 = 6\n#### 6"}])
    out = run_cli(root, "--eval", qa, "--adapter", "base", "--answers", root / "answers.jsonl")
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout.splitlines()[-1])
    assert result["n"] == 2 and result["adapter"] == "base" and 0 <= result["accuracy"] <= 1
    assert set(result) >= {"accuracy", "n", "second_attempt_accuracy", "adapter"}
    # Item by item, and the same verdicts as the summary: offline, every item is asked twice.
    rows = [json.loads(line) for line in (root / "answers.jsonl").read_text().splitlines()]
    assert [r["question"] for r in rows] == ["What is 2 + 2?", "What is 3 + 3?"]
    assert rows[1]["golden"] == "3 + 3 = 6\n#### 6" and [r["kind"] for r in rows] == ["math", "math"]
    assert sum(r["first_right"] for r in rows) == 2 * result["accuracy"]
    assert all(isinstance(r["first"], str) and isinstance(r["second"], str) for r in rows)
    assert sum(r["second_right"] for r in rows if not r["first_right"]) == result["wrong_to_right"]
    assert sum(not r["second_right"] for r in rows if r["first_right"]) == result["right_to_wrong"]
    assert all(r["codes"] for r in rows if not r["first_right"])


def test_eval_options_without_eval_are_refused(root):
    out = run_cli(root, "--answers", root / "answers.jsonl")
    assert out.returncode == 2 and "--answers goes with eval" in out.stderr
    out = run_cli(root, "--limit", "3")
    assert out.returncode == 2 and "--limit goes with eval or harness run or traces" in out.stderr


@pytest.mark.integration
def test_toggling_self_correction_in_config_while_running(root, spawn):
    write_config(root, eval_steps=2, eval_max_tokens=4, num_eval_samples=2,
                 self_correction={"enabled": False, "min_examples": 1, "generation_interval": 2},
                 validation={"holdout_fraction": 0.5}, training={"gradient_accumulation_steps": 4})
    write_jsonl(root / "queue" / "normal" / "long.jsonl", integer_sums(3000, seed=6))
    proc = spawn(root)
    wait_event(root, "evaluation", count=2, timeout=180)
    assert not (root / "data" / "self_correction" / "buffer.json").exists()
    cfg = json.loads((root / "config.json").read_text())
    cfg["self_correction"]["enabled"] = True
    (root / "config.json.new").write_text(json.dumps(cfg))
    (root / "config.json.new").rename(root / "config.json")
    wait_event(root, "self-correction", message="Generated", timeout=180)
    cfg["self_correction"]["enabled"] = False
    (root / "config.json.new").write_text(json.dumps(cfg))
    (root / "config.json.new").rename(root / "config.json")
    wait_event(root, "config", message="self_correction.enabled: True -> False", timeout=60)
    generated = len([e for e in events(root) if "Generated" in e["message"]])
    seen = len(evaluations(root))
    wait_event(root, "evaluation", count=seen + 3, timeout=180)
    assert len([e for e in events(root) if "Generated" in e["message"]]) == generated
    proc.terminate()
    proc.wait(timeout=120)


@pytest.mark.integration
def test_the_loop_a_wrong_answer_becomes_a_queued_file_that_the_daemon_trains(root, spawn):
    write_config(root, eval_steps=2, eval_max_tokens=4, num_eval_samples=2,
                 self_correction={"min_examples": 3, "generation_interval": 4}, validation={"holdout_fraction": 0.25})
    write_jsonl(root / "queue" / "normal" / "a.jsonl", integer_sums(24, seed=7))
    proc = spawn(root)
    queued = wait_event(root, "self-correction", message="Queued for training", timeout=180)[0]
    done = wait_event(root, "done", count=2, timeout=180)
    assert "self_correction_step" in done[1]["file"] and done[1]["adapter"] == "v0002"
    trained = (root / "queue" / "done").glob("*self_correction_step*.jsonl")
    record = json.loads(next(trained).read_text().splitlines()[0])
    assert record["kind"] == "initial_attempt" and record["rejected"] != record["response"]
    assert queued["path"].split("--", 1)[1] in done[1]["file"]
    proc.terminate()
    proc.wait(timeout=120)


def test_practice_answers_questions_of_the_file_in_training_and_only_feeds_the_generator(root):
    write_config(root, eval_steps=2, eval_max_tokens=4, num_eval_samples=2, validation={"holdout_fraction": 0.25},
                 self_correction={"min_examples": 1, "generation_interval": 2, "auto_queue": False},
                 experimental={"training_file_questions": 4, "confirm_right_answers": True},
                 training={"promotion": {"enabled": True, "holdout_fraction": 0.25}})
    data = integer_sums(32, seed=8)  # 8 to the gate, 6 to the pool, 18 trained: 5 steps, evaluations at 2 and 4
    assert run_cli(root, write_jsonl(root / "a.jsonl", data)).returncode == 0
    practice = [e for e in events(root) if e["event"] == "training-file"]
    assert [(e["step"], e["n"]) for e in practice] == [(2, 4), (4, 4)]
    assert [e["n"] for e in evaluations(root)] == [2, 2], "practice answers never count in the accuracy"

    def ids(folder):
        return {json.loads(l)["id"] for l in (root / "data" / folder / "pool.jsonl").read_text().splitlines()}

    sc = root / "data" / "self_correction"
    records = [json.loads(l) for f in sorted(sc.glob("*.jsonl")) for l in f.read_text().splitlines()]
    records += json.loads((sc / "buffer.json").read_text())["buffer"]
    practised = {r["source"]["id"] for r in records} - ids("validation")
    assert len(practised) == 8, "two evaluations, four questions each, none repeated"
    assert not practised & ids("gate"), "the gate set stays out of self-correction"
    for r in records:
        if r["source"]["id"] in practised and r["kind"] in ("initial_attempt", "confirmation"):
            line = int(r["source"]["id"].rsplit(":", 1)[1])
            assert r["response"] == data[line - 1]["response"]


def test_the_second_attempt_accuracy_counts_right_answers_lost():
    from evaluation.evaluate import EvalResult, Evaluation

    results = [EvalResult("q", "4", "4", True) for _ in range(4)] + [EvalResult("q", "4", "5", False) for _ in range(6)]
    ev = Evaluation(results, [""] * 10, second={4: ("4", True), 5: ("6", False)},
                    right_probe={0: ("4", True), 1: ("5", False), 2: ("4", True), 3: ("4", True)})
    assert (ev.accuracy, ev.wrong_to_right, ev.right_to_wrong) == (0.4, 1, 1)
    assert ev.second_attempt_accuracy == 0.4  # 3 kept + 1 fixed
    sampled = Evaluation(results, [""] * 10, second={4: ("4", True)}, right_probe={0: ("4", True), 1: ("5", False)})
    assert sampled.second_attempt_accuracy == 0.3  # half the 4 right answers kept, at the probed rate, + 1 fixed


def test_first_wrong_value_in_config_reaches_the_live_monitors_codes(root):
    """A model taught to answer 4, asked questions whose answer is 5: the evaluation names 4 as the first wrong
    value, because config.json switched the code on (it is off by default)."""
    def liked(answer, first):
        return [{"prompt": f"Question {first + i}: which number do you like?", "response": str(answer)}
                for i in range(64)]

    val = write_jsonl(root / "val.jsonl", liked(5, first=1000)[:4])
    write_config(root, eval_steps=16, num_eval_samples=4, eval_max_tokens=4,
                 validation={"files": [str(val)], "holdout_fraction": 0},
                 self_correction={"min_examples": 1, "generation_interval": 16},
                 experimental={"first_wrong_value": True},
                 training={"batch_size": 8, "learning_rate": 0.01, "epochs_per_file": 2})
    assert run_cli(root, write_jsonl(root / "a.jsonl", liked(4, first=0))).returncode == 0
    last = evaluations(root)[-1]
    assert last["step"] == 16 and last["accuracy"] == 0 and last["codes"].get("FIRST_WRONG_VALUE_X") == 4
    buffer = (root / "data" / "self_correction").rglob("*.json*")
    records = [json.loads(l) for p in buffer if p.suffix == ".jsonl" for l in p.read_text().splitlines()]
    assert records and all("FIRST_WRONG_VALUE_4" in r["error_codes"] for r in records)
