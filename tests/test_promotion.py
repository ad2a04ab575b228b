"""The promotion gate (training.promotion): it decides what is served, by evidence, never what is learned.

File a teaches the tiny model to answer "4" to every question, file b teaches "7": after b,
the items held out of a are all wrong (forgetting), so b's version must not be served. With
on_reject "continue" (the default) training goes on from it all the same; with "rollback", from a's.
"""
from __future__ import annotations

import json

import pytest
from safetensors.torch import load_file

from tests.conftest import run_cli, run_train, write_config, write_jsonl

GATE = {"holdout_fraction": 0.125, "max_items_per_file": 8, "tolerance": 0.05}


def constant_answer(path, answer: int, n: int = 64, first: int = 0):
    return write_jsonl(path, [{"prompt": f"Question {first + i}: which number do you like?", "response": str(answer)}
                              for i in range(n)])


def gate_config(root, **promotion):
    write_config(root, eval_max_tokens=4, eval_steps=1000, validation={"holdout_fraction": 0.125},
                 training={"batch_size": 8, "learning_rate": 0.01, "epochs_per_file": 2, "save_steps": 1000,
                           "logging_steps": 100, "promotion": {**GATE, **promotion}})


def test_with_rollback_a_refused_version_is_kept_not_current_and_training_goes_on_from_the_last_good(root):
    from core.config import load_config
    from training.engine import TrainingEngine
    from core.events import EventLog

    gate_config(root, on_reject="rollback")
    config = load_config(root / "config.json")
    engine = TrainingEngine(config, root, EventLog(root / "logs"))
    a = engine.prepare(constant_answer(root / "a.jsonl", 4))
    b = engine.prepare(constant_answer(root / "b.jsonl", 7, first=1000))

    # the gate share is kept out of training and out of the validation pool
    assert len(a.gate) == 8 and len(a.heldout) == 7 and len(a.examples) == 49
    trained_lines = {e.line for e in a.examples} | {e.line for e in a.heldout}
    assert not trained_lines & {e.line for e in a.gate}

    first = engine.train(a)
    assert first.promoted and first.verdict.candidate_accuracy == 1.0 and first.verdict.current_accuracy == 0.0
    assert engine.state.current_adapter == "v0001"

    second = engine.train(b)
    assert second.version == "v0002" and not second.promoted
    assert "forgetting" in second.verdict.reason
    assert second.verdict.earlier_n == 8 and second.verdict.earlier_candidate_accuracy < 0.5
    assert engine.state.current_adapter == "v0001" and engine.state.rejected == ["v0002"]
    assert engine.state.head == "v0001"
    assert engine.state.trained(b.sha256)["promoted"] is False  # trained once, not again
    assert (root / "data" / "adapters" / "v0002" / "adapter_model.safetensors").exists()  # kept
    assert (root / "data" / "adapters" / "current").resolve().name == "v0001"

    # the warm model went back to v0001's weights: the next file continues from the last good version
    saved = load_file(root / "data" / "adapters" / "v0001" / "adapter_model.safetensors")
    live = {k: v for k, v in engine.model.named_parameters() if v.requires_grad}
    assert len(saved) == len(live)
    for name, weight in saved.items():
        match = [v for k, v in live.items() if k.replace(".default", "").endswith(name.removeprefix("base_model."))]
        assert len(match) == 1 and (match[0].detach() == weight).all(), name
    third = engine.train(engine.prepare(constant_answer(root / "c.jsonl", 4, first=2000)))
    meta = json.loads((root / "data" / "adapters" / third.version / "meta.json").read_text())
    assert meta["parent"] == "v0001" and meta["global_step"] == engine.state.global_step


def test_status_shows_the_version_that_was_not_promoted(root):
    gate_config(root)
    a, b = constant_answer(root / "a.jsonl", 4), constant_answer(root / "b.jsonl", 7, first=1000)
    out = run_cli(root, a, b)
    assert out.returncode == 0, out.stderr
    assert "v0002 NOT promoted" in out.stderr and "forgetting" in out.stderr
    status = run_cli(root, "--status")
    assert "NOT promoted" in status.stdout and "kept, not promoted" in status.stdout
    s = json.loads(status.stdout.splitlines()[-1])
    assert s["adapter"] == "v0001" and s["promotion"]["not_promoted"] == ["v0002"]
    assert s["promotion"]["last"]["candidate"] == "v0002" and s["promotion"]["last"]["promoted"] is False
    # the rejected version can still be evaluated by name, and is worse than current on a's items
    qa = write_jsonl(root / "qa.jsonl", [{"prompt": "Question 5000: which number do you like?", "response": "4"}])
    for adapter, expected in (("current", 1.0), ("v0002", 0.0)):
        result = json.loads(run_cli(root, "--eval", qa, "--adapter", adapter).stdout.splitlines()[-1])
        assert result["accuracy"] == expected, adapter


def test_gate_files_score_every_version_and_a_tolerance_of_one_promotes_anything(root):
    gate = write_jsonl(root / "gate.jsonl", [{"prompt": f"Question {9000 + i}: which number do you like?",
                                              "response": "4"} for i in range(6)])
    gate_config(root, holdout_fraction=0, files=["gate.jsonl"], tolerance=1.0)
    out = run_cli(root, constant_answer(root / "a.jsonl", 4), constant_answer(root / "b.jsonl", 7, first=1000))
    assert out.returncode == 0, out.stderr
    state = json.loads((root / "data" / "state.json").read_text())
    assert state["current_adapter"] == "v0002" and state["rejected"] == []
    scores = json.loads((root / "data" / "gate" / "scores.json").read_text())
    assert set(scores) == {"base", "v0001", "v0002"} and all(len(s) == 6 for s in scores.values())
    assert sum(scores["v0001"].values()) > sum(scores["v0002"].values())  # "4" is right here, "7" is not


def test_gate_off_holds_nothing_out_and_promotes_every_version(root):
    gate_config(root, enabled=False)
    out = run_cli(root, constant_answer(root / "a.jsonl", 4), constant_answer(root / "b.jsonl", 7, first=1000))
    assert out.returncode == 0, out.stderr
    state = json.loads((root / "data" / "state.json").read_text())
    assert state["current_adapter"] == "v0002" and state["files_trained"][0]["examples"] == 56
    assert not (root / "data" / "gate" / "scores.json").exists()


def test_promotion_settings_are_validated_with_their_key_path(root):
    write_config(root, training={"promotion": {"tolerance": 2, "holdout_fraction": -1}})
    out = run_cli(root, constant_answer(root / "a.jsonl", 4))
    assert out.returncode != 0 and not (root / "data" / "state.json").exists()
    assert "training.promotion.tolerance" in out.stderr and "training.promotion.holdout_fraction" in out.stderr


def settings(**kw):
    from core.config import PromotionSection

    return PromotionSection(**{"tolerance": 0.05, "confidence": 0.95, **kw})


def table(right: dict[str, bool], items) -> dict[str, bool]:
    return {i.id: right.get(i.id, False) for i in items}


def test_the_rule_overall_and_on_earlier_files():
    from core.qa import QAItem
    from training.promotion import decide

    items = [QAItem(f"old{k}", [], "", "old.jsonl", k) for k in range(8)] + \
            [QAItem(f"new{k}", [], "", "new.jsonl", k) for k in range(16)]
    current = {i.id: i.file == "old.jsonl" for i in items}  # old items right, new ones wrong
    learned_new_forgot_old = {i.id: i.file == "new.jsonl" for i in items}

    def verdict(candidate, **kw):
        return decide(candidate, current, items, file="new.jsonl", settings=settings(**kw), candidate="v2",
                      current="v1")

    v = verdict(learned_new_forgot_old)  # overall 67% against 33%, but every earlier item lost: 8 of 8, p 0.004
    assert not v.promoted and v.reason.startswith("forgetting") and v.candidate_accuracy == 16 / 24
    assert (v.earlier_n, v.earlier_candidate_accuracy, v.earlier_current_accuracy) == (8, 0.0, 1.0)
    assert (v.earlier_worse, v.earlier_better) == (8, 0) and v.earlier_p_value == pytest.approx(1 / 256)
    assert verdict(learned_new_forgot_old, tolerance=1.0).promoted  # worse with confidence, but within tolerance
    assert verdict(learned_new_forgot_old, confidence=0.999).promoted  # p 0.004 is not 0.001
    assert verdict(current).promoted and "on 24 items" in verdict(current).reason
    worse = {i.id: False for i in items}
    assert "gate accuracy 0.0% is below" in verdict(worse).reason and "forgetting" in verdict(worse).reason


def test_thin_evidence_promotes_and_says_so_and_a_clear_drop_refuses():
    """The noise the old rule decided on: 2 right against 3 of 8 items is one item, and proves nothing."""
    from core.qa import QAItem
    from training.promotion import decide, one_sided_p

    items = [QAItem(f"q{k}", [], "", "a.jsonl", k) for k in range(8)]
    current = table({"q0": True, "q1": True, "q2": True}, items)  # 37.5 %
    one_lost = table({"q0": True, "q1": True}, items)  # 25.0 %: one discordant item
    v = decide(one_lost, current, items, file="b.jsonl", settings=settings(), candidate="v2", current="v1")
    assert v.promoted and v.thin and "thin evidence" in v.reason and (v.worse, v.better) == (1, 0)
    assert v.earlier_n == 8 and v.p_value == 0.5  # forgetting is judged the same way, and is thin too

    big = [QAItem(f"q{k}", [], "", "a.jsonl", k) for k in range(40)]
    current = table({f"q{k}": True for k in range(20)}, big)  # 50 %
    dropped = table({f"q{k}": True for k in range(8)} | {"q30": True}, big)  # 22.5 %: 12 lost, 1 gained
    v = decide(dropped, current, big, file="b.jsonl", settings=settings(), candidate="v2", current="v1")
    assert not v.promoted and not v.thin and (v.worse, v.better) == (12, 1)
    assert v.p_value == pytest.approx(one_sided_p(12, 1)) and v.p_value < 0.002 and "12 worse, 1 better" in v.reason
    # many items differ both ways: no evidence of a drop, promoted, and not thin
    mixed = table({f"q{k}": True for k in range(10, 30)}, big)
    v = decide(mixed, current, big, file="b.jsonl", settings=settings(), candidate="v2", current="v1")
    assert v.promoted and not v.thin and (v.worse, v.better) == (10, 10)
    assert one_sided_p(0, 0) == 1.0 and one_sided_p(3, 0) == 0.125 and one_sided_p(0, 3) == 1.0


def test_by_default_a_refused_files_learning_is_kept_and_training_goes_on_from_it(root):
    gate_config(root)
    a, b = constant_answer(root / "a.jsonl", 4), constant_answer(root / "b.jsonl", 7, first=1000)
    out = run_cli(root, a, b)
    assert out.returncode == 0, out.stderr
    assert "v0002 NOT promoted" in out.stderr and "training goes on from v0002, the head" in out.stderr
    state = json.loads((root / "data" / "state.json").read_text())
    assert (state["current_adapter"], state["head"], state["rejected"], state["refused_in_a_row"]) == \
        ("v0001", "v0002", ["v0002"], 1)
    qa = write_jsonl(root / "qa.jsonl", [{"prompt": "Question 5000: which number do you like?", "response": "7"}])
    served = json.loads(run_cli(root, "--eval", qa, "--adapter", "current").stdout.splitlines()[-1])
    head = json.loads(run_cli(root, "--eval", qa, "--adapter", "head").stdout.splitlines()[-1])
    assert (served["accuracy"], head["accuracy"]) == (0.0, 1.0)  # b was learned, though not served
    out = run_cli(root, constant_answer(root / "c.jsonl", 7, first=2000))
    assert out.returncode == 0, out.stderr
    meta = json.loads((root / "data" / "adapters" / "v0003" / "meta.json").read_text())
    assert meta["parent"] == "v0002"  # c trained on from the refused head
    # c's version knows b's answers too: as many earlier items gained as lost, no evidence of a drop, served
    status = json.loads(run_cli(root, "--status").stdout.splitlines()[-1])
    assert (status["adapter"], status["promotion"]["head"], status["promotion"]["refused_in_a_row"]) == \
        ("v0003", "v0003", 0)


def test_a_head_refused_again_and_again_raises_an_alarm_and_rollback_moves_it_back(root):
    gate_config(root, alarm_after=2)
    out = run_cli(root, constant_answer(root / "a.jsonl", 4), constant_answer(root / "b.jsonl", 7, first=1000))
    assert out.returncode == 0 and " alarm " not in out.stderr  # one refusal: no alarm yet
    out = run_cli(root, constant_answer(root / "c.jsonl", 9, first=2000))  # a's items lost again
    assert "alarm" in out.stderr and "refused 2 times in a row" in out.stderr and "rollback v0001" in out.stderr
    status = run_cli(root, "--status")
    assert "ALARM" in status.stdout
    assert "refused 2 times" in json.loads(status.stdout.splitlines()[-1])["promotion"]["alarm"]

    wrong = run_cli(root, "--rollback", "v0099")
    assert wrong.returncode == 1 and "v0099" in wrong.stderr and "v0001, v0002, v0003" in wrong.stderr
    assert run_cli(root, "--rollback", "v0001").returncode == 0
    state = json.loads((root / "data" / "state.json").read_text())
    assert (state["head"], state["current_adapter"], state["refused_in_a_row"]) == ("v0001", "v0001", 0)
    assert json.loads(run_cli(root, "--status").stdout.splitlines()[-1])["promotion"]["alarm"] is None
    assert run_cli(root, constant_answer(root / "d.jsonl", 4, first=3000)).returncode == 0
    meta = json.loads((root / "data" / "adapters" / "v0004" / "meta.json").read_text())
    assert meta["parent"] == "v0001" and json.loads((root / "data" / "state.json").read_text())["head"] == "v0004"


@pytest.mark.integration
def test_a_kill_between_the_head_saved_and_the_state_written_loses_nothing(root):
    """b's version is refused and saved, then the process dies before state.json names it: the restart trains b
    again from a's version, once, and ends where an unbroken run ends."""
    gate_config(root)
    constant_answer(root / "queue" / "normal" / "a.jsonl", 4)
    assert run_cli(root, "--once").returncode == 0
    constant_answer(root / "queue" / "normal" / "b.jsonl", 7, first=1000)
    killed = run_train(root, "--once", env={"SELFCORRECT_KILL_AT": "adapter.promoted"})
    assert killed.returncode == -9
    state = json.loads((root / "data" / "state.json").read_text())
    assert (state["head"], state["versions"]) == ("v0001", ["v0001"])  # the commit never happened
    assert run_cli(root, "--once").returncode == 0
    state = json.loads((root / "data" / "state.json").read_text())
    assert (state["current_adapter"], state["head"], state["versions"]) == ("v0001", "v0002", ["v0001", "v0002"])
    assert [f["name"] for f in state["files_trained"]] == ["a.jsonl", "b.jsonl"]
    assert sorted(p.name for p in (root / "data" / "adapters").iterdir()) == ["current", "v0001", "v0002"]


