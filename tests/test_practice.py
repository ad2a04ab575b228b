"""Verified self-training with the tiny-random model: sample, verify, keep only the verified, train; resume after a kill."""
import json
import os
import signal

import pytest

from core.practice import read_problems
from core.synthetic import integer_sums
from tests.conftest import run_train, write_config, write_jsonl, run_cli
from tests.daemon_helpers import events, manifests, original, wait_event

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
    return practice.sampler.generate([request])[0].completions[0].text


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
    done = run_cli(root, "--practice", problems)
    assert done.returncode == 0, done.stderr[-3000:]
    [work] = [d for d in (root / "data" / "practice").iterdir() if d.is_dir()]
    meta = json.loads((work / "round-1.meta.json").read_text())
    assert meta["adapter"] == "base" and meta["problems"] == 3 and meta["samples"] == 6
    assert meta["golden"] == 1 and meta["unsolved"] == ["code"] and meta["by_category"]["arithmetic"]["pass_at_k"] == 1
    records = [json.loads(l) for l in (work / "round-1.jsonl").read_text().splitlines()]
    verified = [r for r in records if not r["practice"].get("golden")]
    assert [r["practice"]["problem"] for r in verified] == ["sum"] and verified[0]["practice"]["sample"] == 0
    assert verified[0]["messages"][-1]["content"] == answer and meta["pass_at_1"] == round((1 / 2) / 3, 4)
    assert [r["practice"]["problem"] for r in records if r["practice"].get("golden")] == ["hard"]
    state = json.loads((root / "data" / "state.json").read_text())
    assert [f["name"] for f in state["files_trained"]] == [f"{work.name}.round-1.jsonl", f"{work.name}.round-2.jsonl"]
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


def drop(folder, name, records):
    """The documented safe way: a hidden file, renamed into place."""
    tmp = write_jsonl(folder / f".{name}.tmp", records)
    os.replace(tmp, folder / name)


def golden_problems(n: int) -> list[dict]:
    return [{"id": f"q{k}", "question": f"What is {k} + 1?", "answer": str(k + 1),
             "solution": f"{k} + 1 = {k + 1}. Therefore, the answer is {k + 1}."} for k in range(n)]


@pytest.mark.integration
def test_a_practice_file_dropped_into_a_running_daemon_trains_its_rounds_before_normal_files_and_reports_them(
        root, spawn):
    write_config(root, practice={"samples": 2, "temperature_math": 1.0, "max_new_tokens_math": 8, "rounds": 2},
                 validation={"holdout_fraction": 0}, daemon={"settle_seconds": 0})
    answer = first_sample(root, "sum", QUESTION)
    proc = spawn(root)
    try:
        wait_event(root, "daemon", message="watching")
        drop(root / "inbox" / "practice", "broken.jsonl", [{"question": "What is 2 + 2?"}])
        drop(root / "inbox" / "practice", "drill.jsonl", [
            {"id": "sum", "question": QUESTION, "answer": answer},
            *golden_problems(3)])
        wait_event(root, "queued", file="drill.jsonl")
        drop(root / "inbox", "plain.jsonl", integer_sums(4, seed=3))  # a training file: waits for the practice
        wait_event(root, "done", file="plain.jsonl", timeout=300)
        wait_event(root, "practice", finished=True)
        status = run_cli(root, "--status")
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 0
    trained = [f["name"] for f in json.loads((root / "data" / "state.json").read_text())["files_trained"]]
    [work] = [d for d in (root / "data" / "practice").iterdir() if d.is_dir()]
    assert trained == [f"{work.name}.round-1.jsonl", f"{work.name}.round-2.jsonl", "plain.jsonl"]
    [m] = [m for m in manifests(root) if original(m["name"]) == "drill.jsonl"]
    assert [r["adapter"] for r in m["rounds"]] == ["base", "v0001"] and m["practice"] == work.name
    assert m["rounds"][0]["verified"] >= 1 and m["rounds"][0]["golden"] == 3
    round_1 = [json.loads(l) for l in (work / "round-1.jsonl").read_text().splitlines()]
    assert [r["messages"][-1]["content"] for r in round_1 if not r["practice"].get("golden")] == [answer]
    [failed] = (root / "queue" / "failed").glob("*broken.jsonl.error.json")
    [problem] = json.loads(failed.read_text())["problems"]
    assert problem["line"] == 1 and "answer" in problem["reason"]
    assert "practice round" in status.stdout and "drill.jsonl #2 with v0001" in status.stdout
    summary = json.loads(status.stdout.strip().splitlines()[-1])
    assert summary["queue"]["practice"] == 0 and summary["practice_rounds"][-1]["round"] == 2
    assert any("round 1: 4/4 problems" in e["message"] for e in events(root) if e["event"] == "practice")
    assert run_cli(root, "--report").returncode == 0
    assert "Practice rounds" in (root / "logs" / "report.html").read_text()


@pytest.mark.integration
@pytest.mark.parametrize("point", ["queue.claim", "adapter.committed"])
def test_a_daemon_killed_mid_practice_resumes_it_and_samples_and_trains_nothing_twice(root, point):
    write_config(root, practice={"samples": 2, "max_new_tokens_math": 6}, daemon={"settle_seconds": 0})
    drop(root / "inbox" / "practice", "drill.jsonl", golden_problems(10))
    killed = run_train(root, "--once", env={"SELFCORRECT_KILL_AT": point})
    assert killed.returncode == -signal.SIGKILL
    assert run_cli(root, "--once").returncode == 0
    [work] = [d for d in (root / "data" / "practice").iterdir() if d.is_dir()]
    progress = [json.loads(l)["id"] for l in (work / "round-1.progress.jsonl").read_text().splitlines()]
    assert progress == [f"q{k}" for k in range(10)]
    trained = [f["name"] for f in json.loads((root / "data" / "state.json").read_text())["files_trained"]]
    assert trained == [f"{work.name}.round-1.jsonl"]
    assert sorted(original(m["name"]) for m in manifests(root)) == sorted(["drill.jsonl", f"{work.name}.round-1.jsonl"])
    assert not list((root / "queue" / "practice").iterdir()) and not list((root / "queue" / "failed").iterdir())


@pytest.mark.integration
def test_a_stop_mid_sampling_ends_at_once_and_the_next_start_samples_only_the_rest(root, spawn):
    write_config(root, practice={"samples": 2, "max_new_tokens_math": 32}, daemon={"settle_seconds": 0})
    drop(root / "inbox" / "practice", "drill.jsonl", golden_problems(32))
    proc = spawn(root)
    try:
        wait_event(root, "practice", round=1, done=8)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
    assert any("stopped; what was verified is kept" in e["message"] for e in events(root))
    [work] = [d for d in (root / "data" / "practice").iterdir() if d.is_dir()]
    before = len((work / "round-1.progress.jsonl").read_text().splitlines())
    assert 8 <= before < 32 and not (work / "round-1.jsonl").exists()
    assert run_cli(root, "--once").returncode == 0
    progress = [json.loads(l)["id"] for l in (work / "round-1.progress.jsonl").read_text().splitlines()]
    assert sorted(progress) == sorted(f"q{k}" for k in range(32))  # each problem once: none sampled twice
