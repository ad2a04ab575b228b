"""The promotion gate (training.promotion): a worse adapter is kept, never made current.

File a teaches the tiny model to answer "4" to every question, file b teaches "7": after b,
the items held out of a are all wrong (forgetting), so b's version must not be promoted.
"""
from __future__ import annotations

import json

from safetensors.torch import load_file

from tests.conftest import write_config, write_jsonl, run_cli

GATE = {"holdout_fraction": 0.125, "max_items_per_file": 8, "tolerance": 0.05}


def constant_answer(path, answer: int, n: int = 64, first: int = 0):
    return write_jsonl(path, [{"prompt": f"Question {first + i}: which number do you like?", "response": str(answer)}
                              for i in range(n)])


def gate_config(root, **promotion):
    write_config(root, eval_max_tokens=4, eval_steps=1000, validation={"holdout_fraction": 0.125},
                 training={"batch_size": 8, "learning_rate": 0.01, "epochs_per_file": 2, "save_steps": 1000,
                           "logging_steps": 100, "promotion": {**GATE, **promotion}})


def test_forgetting_keeps_the_version_but_not_current_and_training_goes_on_from_the_last_good(root):
    from core.config import load_config
    from training.engine import TrainingEngine
    from core.events import EventLog

    gate_config(root)
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


def test_the_rule_overall_and_on_earlier_files():
    from core.qa import QAItem
    from training.promotion import decide

    items = [QAItem(f"old{k}", [], "", "old.jsonl", k) for k in range(4)] + \
            [QAItem(f"new{k}", [], "", "new.jsonl", k) for k in range(16)]
    current = {i.id: i.file == "old.jsonl" for i in items}  # old items right, new ones wrong
    learned_new_forgot_old = {i.id: i.file == "new.jsonl" for i in items}

    def verdict(candidate, tolerance=0.05):
        return decide(candidate, current, items, file="new.jsonl", tolerance=tolerance, candidate="v2", current="v1")

    v = verdict(learned_new_forgot_old)  # overall 80% against 20%, but every earlier item lost
    assert not v.promoted and v.reason.startswith("forgetting") and v.candidate_accuracy == 0.8
    assert (v.earlier_n, v.earlier_candidate_accuracy, v.earlier_current_accuracy) == (4, 0.0, 1.0)
    assert verdict(learned_new_forgot_old, tolerance=1.0).promoted
    one_old_lost = {**current, "old0": False}  # 15% against 20% overall, 75% against 100% on earlier items
    assert not verdict(one_old_lost, tolerance=0.2).promoted and verdict(one_old_lost, tolerance=0.25).promoted
    assert verdict(current).promoted and "on 20 items" in verdict(current).reason
    worse = {i.id: False for i in items}
    assert "gate accuracy 0.0% is below" in verdict(worse).reason and "forgetting" in verdict(worse).reason
