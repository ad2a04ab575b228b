"""Verified self-training with the tiny-random model: sample, verify, keep only the verified, train; resume after a kill."""
import json

import pytest

from core.practice import read_problems
from tests.conftest import run_train, write_config, write_jsonl

QUESTION = "What is 3 + 4?"


def first_sample(root, problem_id: str, question: str) -> str:
    """What tiny-random's first sample of a problem's first round is: its answers are noise, so a problem it can
    solve has to be made from one (the same request and seed as the practice run, the same machine)."""
    from core.config import load_config
    from core.events import EventLog
    from core.practice import Problem
    from inference.loading import load_for_inference
    from inference.sampling import SamplingEngine
    from selfcorrect.practice import Practice

    config = load_config(root / "config.json")
    model, tokenizer, use_template, _ = load_for_inference(config, root, "base")
    practice = Practice(SamplingEngine(model, tokenizer, use_template=use_template), config.practice,
                        EventLog(root / "probe-logs"), adapter="base")
    request = practice.request(Problem(0, problem_id, question, answer="?"), round_no=1)
    return practice.engine.generate([request])[0].completions[0].text


def test_practice_trains_only_verified_samples_and_golden_solutions_then_samples_again_from_the_new_adapter(root):
    write_config(root, practice={"samples": 2, "temperature_math": 1.0, "max_new_tokens_math": 8, "rounds": 2,
                                 "max_new_tokens_code": 8}, validation={"holdout_fraction": 0})
    answer = first_sample(root, "sum", QUESTION)
    assert answer.strip()
    problems = write_jsonl(root / "practice.jsonl", [
        {"id": "sum", "question": QUESTION, "answer": answer, "category": "arithmetic"},
        {"id": "hard", "question": "What is 123 * 457?", "answer": "56211", "solution": "123 * 457 = 56211. "
                                                                                         "Therefore, the answer is 56211."},
        {"id": "code", "prompt": "Write add(a, b).", "tests": ["assert add(1, 2) == 3"], "entry_point": "add"},
    ])
    done = run_train(root, "--practice", problems)
    assert done.returncode == 0, done.stderr[-3000:]
    [work] = (root / "data" / "practice").iterdir()
    meta = json.loads((work / "round-1.meta.json").read_text())
    assert meta["adapter"] == "base" and meta["problems"] == 3 and meta["samples"] == 6
    assert meta["golden"] == 1 and meta["unsolved"] == ["code"] and meta["by_category"]["arithmetic"]["pass_at_k"] == 1
    records = [json.loads(l) for l in (work / "round-1.jsonl").read_text().splitlines()]
    verified = [r for r in records if not r["practice"].get("golden")]
    assert [r["practice"]["problem"] for r in verified] == ["sum"] and verified[0]["practice"]["sample"] == 0
    assert verified[0]["messages"][-1]["content"] == answer and meta["pass_at_1"] == round((1 / 2) / 3, 4)
    assert [r["practice"]["problem"] for r in records if r["practice"].get("golden")] == ["hard"]
    state = json.loads((root / "data" / "state.json").read_text())
    assert [f["name"] for f in state["files_trained"]] == ["practice.round-1.jsonl", "practice.round-2.jsonl"]
    assert json.loads((work / "round-2.meta.json").read_text())["adapter"] == "v0001"  # round 2 sampled from round 1's
    assert "round 1: 3/3 problems" in done.stderr and "pass@2" in done.stderr


def test_a_kill_mid_round_keeps_what_was_verified_and_the_rerun_samples_only_the_rest(root, tmp_path):
    from core.events import EventLog
    from inference.loading import load_for_inference
    from inference.sampling import SamplingEngine
    from core.config import load_config
    from selfcorrect.practice import Practice

    config = load_config(write_config(root, practice={"samples": 2, "max_new_tokens_math": 6}))
    path = write_jsonl(root / "p.jsonl", [{"id": f"q{k}", "question": f"What is {k} + 1?", "answer": str(k + 1),
                                           "solution": f"Therefore, the answer is {k + 1}."} for k in range(10)])
    problems = read_problems(path)
    model, tokenizer, use_template, _ = load_for_inference(config, root, "base")
    engine = SamplingEngine(model, tokenizer, use_template=use_template)
    practice = Practice(engine, config.practice, EventLog(root / "logs"), adapter="base")
    work = tmp_path / "work"
    first, _ = practice.run(problems[:8], work, 1)  # as if killed after the first batch of eight...
    progress = work / "round-1.progress.jsonl"
    with open(progress, "a") as f:
        f.write('{"id": "q8", "kept": [')  # ...and mid-write of the ninth
    asked = []
    hook = model.register_forward_pre_hook(lambda m, a, kw: asked.append(kw["input_ids"].shape), with_kwargs=True)
    try:
        records, stats = practice.run(problems, work, 1)
    finally:
        hook.remove()
    assert asked[0][0] == 2, "only q8 and q9 were prefilled again"
    assert [json.loads(l)["id"] for l in progress.read_text().splitlines()] == [f"q{k}" for k in range(10)]
    assert stats.problems == 10 and stats.golden + len(stats.unsolved) + sum(1 for r in records if
                                                                               not r["practice"].get("golden")) >= 10
    assert records[:len(first)] == first
