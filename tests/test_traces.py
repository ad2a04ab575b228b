"""Multi-pass correction traces (seed 000): the failure modes, the RTS policy, the records, and `--traces`."""
import json
import re

import pytest

from core.data import Example, read_examples
from core.encoding import IGNORE, encode
from core.errors import DataError
from selfcorrect.policy import STOP, Context, Policy, bucket, unit
from selfcorrect.traces import TraceRecord, confidence, failure_mode, read_traces
from tests.conftest import write_config, write_jsonl, run_cli
from tests.scripted_model import ScriptedModel

SEED_SUMMARY_KEYS = {"pipeline_stats", "policy_stats", "duration_seconds", "traces_per_second", "avg_turns_per_trace",
                     "completed_at"}


def test_failure_modes_follow_the_documented_order():
    assert failure_mode("7", [], right=True, turn=0, math_question=True) == "correct"
    assert failure_mode("7", [], right=True, turn=2, math_question=True) == "corrected"
    assert failure_mode("8", ["SIMILARITY_0%"], right=False, turn=1, math_question=True, previous=("7", True)) == "degraded"
    assert failure_mode("The answer is 8.", ["SIMILARITY_0%"], right=False, turn=1, math_question=True,
                        previous=("the answer is 8", False)) == "anchored"
    assert failure_mode("  ", ["TOO_BRIEF"], right=False, turn=0, math_question=False) == "missing_content"
    assert failure_mode("9", ["OFF_TOPIC_CONTENT"], right=False, turn=0, math_question=True) == "numeric"
    assert failure_mode("trains are fast", ["OFF_TOPIC_CONTENT", "PRIMARY_ANSWER_MISSING"], right=False, turn=0,
                        math_question=False) == "off_topic"
    assert failure_mode("a and b", ["STRUCTURE_SHOULD_BE_LIST"], right=False, turn=0, math_question=False) == "format"
    assert failure_mode("I do not know", ["MISSING_NUMBERS"], right=False, turn=0, math_question=False) == "numeric"
    assert failure_mode("Lyon", ["PRIMARY_ANSWER_MISSING"], right=False, turn=0, math_question=False) == "missing_content"
    assert failure_mode("Lyon", ["SIMILARITY_10%"], right=False, turn=0, math_question=False) == "wrong"


def test_confidence_is_the_geometric_mean_token_probability_bucketed():
    assert confidence([0.0, 0.0]) == 1.0
    assert confidence([-0.6931471805599453] * 3) == pytest.approx(0.5)
    assert confidence(None) == 0.5
    assert (bucket(0.2), bucket(0.5), bucket(0.79), bucket(0.8), bucket(1.0)) == ("low", "mid", "mid", "high", "high")


def test_the_reward_maps_onto_the_unit_interval_and_stop_is_the_midpoint():
    assert unit(0.0) == 0.5 and unit(1.0) == 1.0 and unit(-1.0) == 0.0 and unit(-2.0) == 0.0
    assert unit(1 - 0.001 * 50) == pytest.approx(0.975)


def test_thompson_learns_the_action_that_pays_and_its_state_survives_a_restart(tmp_path):
    state = tmp_path / "rts.json"
    policy = Policy(state, algorithm="thompson", actions=["p_a", "p_b"], seed=3)
    ctx = Context("numeric", "mid", "none", 0)
    for _ in range(60):
        action = policy.choose(ctx)
        policy.update(ctx, action, 1.0 if action == "p_b" else -0.05)
    late = [policy.choose(ctx) for _ in range(40)]
    assert late.count("p_b") > 30
    saved = json.loads(state.read_text())
    assert saved["updates"] == 60 and saved["decisions"] == 60 and "numeric|mid|none|0" in saved["arms"]
    policy.save()  # choices since the last update are saved with the next one
    again = Policy(state, algorithm="thompson", actions=["p_a", "p_b"], seed=3)
    assert (again.updates, again.decisions) == (60, 100)
    assert again.arms == policy.arms
    stats = again.stats()
    assert stats["per_action"]["p_b"]["mean_reward"] == 1.0 and stats["total_actions"] == 60


def test_epsilon_greedy_and_fixed_policies():
    greedy = Policy(None, algorithm="epsilon_greedy", actions=["p_a", "p_b"], epsilon=0.0)
    ctx = Context("numeric", "low", "none", 0)
    greedy.update(ctx, "p_a", 1.0)
    assert greedy.choose(ctx) == "p_a"
    fixed = Policy(None, algorithm="fixed:p_b", actions=["p_a", "p_b"])
    assert fixed.choose(ctx) == "p_b" and fixed.choose(Context("correct", "high", "none", 0)) == STOP


def test_a_broken_policy_state_is_named(tmp_path):
    from core.errors import ProjectError

    (tmp_path / "rts.json").write_text("{}")
    with pytest.raises(ProjectError, match="rts.json: not a policy state.*move it aside"):
        Policy(tmp_path / "rts.json", algorithm="thompson", actions=["p"])


def test_a_weight_zero_turn_is_context_never_trained():
    from transformers import AutoTokenizer

    from tests.conftest import MODELS

    tok = AutoTokenizer.from_pretrained(MODELS / "tiny-random")
    ex = Example(1, messages=[{"role": "user", "content": "What is 2+2?"},
                              {"role": "assistant", "content": "five", "weight": 0},
                              {"role": "user", "content": "Are you sure?"},
                              {"role": "assistant", "content": "four"}])
    enc = encode(tok, ex, use_template=False, max_length=256)
    trained = tok.decode([t for t in enc.labels if t != IGNORE])
    assert "four" in trained and "five" not in trained


def test_weights_are_checked_when_a_file_is_read(tmp_path):
    bad = write_jsonl(tmp_path / "w.jsonl", [
        {"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a", "weight": 2}]},
        {"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a", "weight": 0}]}])
    with pytest.raises(DataError) as e:
        read_examples(bad)
    assert "line 1" in str(e.value) and '"weight" must be 0 or 1' in str(e.value)
    assert "line 2" in str(e.value) and "every assistant turn has weight 0" in str(e.value)


class ScriptedStudent(ScriptedModel):
    """Asked "What is A * B?", it answers A*B + 1 (wrong), and right only when the last message asks to go step
    by step; every answer's tokens get log-probs."""

    model = "student"

    def reply(self, body: dict):
        a, b = map(int, re.search(r"What is (\d+) \* (\d+)\?", body["messages"][0]["content"]).groups())
        value = a * b if "step by step" in body["messages"][-1]["content"] else a * b + 1
        return {"content": f"{a} * {b} = {value}. The answer is {value}.",
                "logprobs": {"content": [{"token": "t", "logprob": -0.1, "bytes": None, "top_logprobs": []}] * 4}}


def student_config(root, server, **traces):
    write_config(root, providers={"student": server.provider(max_retries=0)}, traces={"concurrency": 1, **traces})


def products(path, n: int, start: int = 2):
    return write_jsonl(path, [{"id": f"m{k}", "question": f"What is {k} * {k + 1}?", "answer": f"#### {k * (k + 1)}"}
                              for k in range(start, start + n)])


def test_traces_against_an_api_learn_which_prompt_fixes_the_answer_and_train_only_the_right_turn(root):
    with ScriptedStudent() as server:
        student_config(root, server, train=True)
        out = run_cli(root, "--traces", products(root / "gsm8k.jsonl", 80), "--dataset", "gsm8k",
                        "--provider", "student", "--max-turns", "2")
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout.strip().splitlines()[-1])
    [log] = (root / "logs").glob("traces_*.jsonl")
    traces = read_traces(log)
    assert len(traces) == 80 and result["traces"] == 80
    first = traces[0].turns[0]
    assert first.error_mode == "numeric" and first.prompt_id is None and first.confidence_score == pytest.approx(0.9048, abs=1e-3)
    assert first.token_count == 12
    fixed = [t for t in traces if t.final_accuracy]
    assert fixed and all(t.turns[-1].prompt_id == "p_step_by_step" or t.turns[-2].prompt_id == "p_step_by_step"
                         for t in fixed)
    late = [t.turns[1].prompt_id if t.total_turns > 1 else STOP for t in traces[-20:]]
    assert late.count("p_step_by_step") > 10  # learned: of the six actions, the one that fixes the answer
    # the run summary has the seed's keys
    summary = json.loads(next((root / "logs").glob("summary_*.json")).read_text())
    assert SEED_SUMMARY_KEYS <= set(summary)
    assert summary["pipeline_stats"]["traces_processed"] == 80
    assert set(summary["policy_stats"]) >= {"algorithm", "total_actions", "alpha_params", "beta_params", "avg_reward"}
    # training examples: wrong -> right, the wrong answer kept as context of weight 0; queued like self-correction
    [queued] = (root / "queue" / "normal").glob("*traces*.jsonl")
    examples = read_examples(queued)
    corrections = [e for e in examples if e.meta["kind"] == "trace_correction"]
    assert corrections and len(examples) == len(corrections) + sum(e.meta["kind"] == "trace_keep" for e in examples)
    for e in corrections:
        final = e.messages[-1]
        k = int(re.search(r"What is (\d+)", e.messages[0]["content"]).group(1))
        assert final["role"] == "assistant" and final.get("weight", 1) == 1 and str(k * (k + 1)) in final["content"]
        assert all(m.get("weight") == 0 for m in e.messages[:-1] if m["role"] == "assistant")


def test_traces_on_a_gsm8k_and_a_csv_file_write_valid_traces_and_the_policy_continues(root):
    write_config(root, traces={"max_new_tokens": 8})
    gsm = write_jsonl(root / "gsm8k.jsonl", [{"question": f"What is {k} + 1?", "answer": f"{k} + 1\n#### {k + 1}"}
                                             for k in range(4)])
    csv = root / "questions.csv"
    csv.write_text("id,question,reference_answer\nc1,Capital of France?,Paris\nc2,What is 3 + 3?,6\n")
    out = run_cli(root, "--traces", gsm, "--dataset", "gsm8k", "--max-turns", "2")
    assert out.returncode == 0, out.stderr
    policy = json.loads((root / "data" / "policy" / "rts.json").read_text())
    out = run_cli(root, "--traces", csv, "--dataset", "csv", "--limit", "2")
    assert out.returncode == 0, out.stderr
    [log] = (root / "logs").glob("traces_*.jsonl")
    traces = read_traces(log)  # validated against the schema on read
    assert [t.dataset_name for t in traces] == ["gsm8k"] * 4 + ["csv"] * 2
    assert {t.question_id for t in traces[4:]} == {"c1", "c2"}
    for t in traces:
        assert t.total_turns == len(t.turns) and t.total_tokens == sum(u.token_count for u in t.turns)
        assert [u.turn_id for u in t.turns] == list(range(t.total_turns)) and t.turns[0].prompt_id is None
        TraceRecord.model_validate_json(t.model_dump_json())
    later = json.loads((root / "data" / "policy" / "rts.json").read_text())
    assert later["updates"] > policy["updates"] and later["decisions"] > policy["decisions"]
    assert len(list((root / "logs").glob("summary_*.json"))) >= 1
    # --status and --report show the policy
    status = run_cli(root, "--status")
    assert "reprompt policy" in status.stdout and json.loads(status.stdout.strip().splitlines()[-1])["reprompt_policy"]
    assert run_cli(root, "--report").returncode == 0
    page = (root / "logs" / "report.html").read_text()
    assert "Reprompt policy" in page and "numeric|" in page or "missing_content|" in page


def test_traces_refuses_a_bad_row_naming_it_and_skips_it_when_asked(root):
    write_config(root, traces={"max_new_tokens": 4})
    f = write_jsonl(root / "boolq.jsonl", [{"question": "is it", "passage": "It is.", "answer": True},
                                           {"question": "is it not", "passage": "p", "answer": "perhaps"}])
    out = run_cli(root, "--traces", f, "--dataset", "boolq")
    assert out.returncode == 1 and "row 2" in out.stderr + out.stdout and "--skip-bad" in out.stderr + out.stdout
    assert not list((root / "logs").glob("traces_*.jsonl"))
    out = run_cli(root, "--traces", f, "--dataset", "boolq", "--skip-bad", "--max-turns", "1")
    assert out.returncode == 0, out.stderr
    assert "skipped 1 bad rows" in out.stdout + out.stderr
    assert len(read_traces(next((root / "logs").glob("traces_*.jsonl")))) == 1


def test_the_live_monitor_traces_with_the_policy_when_max_turns_is_above_one(root):
    write_config(root, eval_steps=2, num_eval_samples=3, eval_max_tokens=8,
                 self_correction={"max_turns": 2, "min_examples": 1, "generation_interval": 2},
                 traces={"train": True}, validation={"holdout_fraction": 0.2})
    data = write_jsonl(root / "train.jsonl", [{"question": f"What is {k}+1?", "answer": f"#### {k + 1}"}
                                              for k in range(30)])
    out = run_cli(root, data)
    assert out.returncode == 0, out.stderr
    [log] = (root / "logs").glob("traces_*.jsonl")
    traces = read_traces(log)
    assert traces and {t.dataset_name for t in traces} == {"live"}
    assert json.loads((root / "data" / "policy" / "rts.json").read_text())["updates"] > 0
    events = [json.loads(line) for line in (root / "logs" / "events.jsonl").read_text().splitlines()]
    evaluations = [e for e in events if e["event"] == "evaluation"]
    assert evaluations and all(e["n"] == 3 for e in evaluations)
    # evaluations made the same number of traces, each first answer judged as the first attempt
    assert len(traces) == 3 * len(evaluations)


def test_a_provider_that_is_down_is_named_and_nothing_is_half_written(root):
    import socket

    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    write_config(root, providers={"down": {"kind": "openai", "base_url": f"http://127.0.0.1:{port}/v1",
                                           "model": "m", "max_retries": 0}})
    out = run_cli(root, "--traces", products(root / "g.jsonl", 3), "--dataset", "gsm8k", "--provider", "down")
    assert out.returncode == 1
    assert "failed on every question" in out.stderr + out.stdout and "APIConnectionError" in out.stderr + out.stdout
    assert not list((root / "logs").glob("traces_*.jsonl")) and not list((root / "logs").glob("summary_*.json"))


def test_a_policy_state_with_a_nan_is_refused_naming_the_arm_instead_of_sampling_for_ever(tmp_path):
    import json

    from core.errors import ProjectError
    from selfcorrect.policy import Policy

    path = tmp_path / "rts.json"
    path.write_text(json.dumps({"version": 1, "algorithm": "thompson", "decisions": 3, "updates": 3,
                                "arms": {"wrong|low|none|0": {"p_error_codes": {"alpha": float("nan"), "beta": 1.0,
                                                                                "n": 1.0, "reward_sum": 0.5}}}}))
    with pytest.raises(ProjectError, match="p_error_codes.*finite"):
        Policy(path, algorithm="thompson", actions=["p_error_codes"])
