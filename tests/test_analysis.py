"""Failure analysis: a stratified test set, the adapter's answers once, judged, clustered and labelled."""
import json

import pytest

from core.qa import QAItem
from evaluation.analysis import infer_category, judge_fast, stratify
from tests.conftest import write_config, write_jsonl, run_cli
from tests.scripted_model import ScriptedModel


def mixed_items() -> list[dict]:
    """A file of several categories, some named by the record, the rest left to the rules."""
    rows = []
    for k in range(12):
        rows.append({"id": f"sum{k}", "prompt": f"What is {k} + {k + 3}?", "response": str(2 * k + 3)})
    for k in range(6):
        rows.append({"id": f"code{k}", "prompt": f"Write a Python function that returns {k}.",
                     "response": f"def f():\n    return {k}"})
    for k in range(5):
        rows.append({"id": f"capital{k}", "prompt": f"Name the capital of country number {k}.", "response": "Paris"})
    for k in range(4):
        rows.append({"id": f"poem{k}", "prompt": f"Write a poem about the number {k}.",
                     "response": "Numbers sing in rows of light, counting softly through the night."})
    rows.append({"id": "tagged", "prompt": "Tell me something.", "response": "Something.", "category": "chat"})
    return rows


def test_categories_come_from_the_record_or_the_rules():
    assert infer_category("What is 3 + 4?", "7") == "math"
    assert infer_category("How many apples does Ana have?", "12") == "math"
    assert infer_category("Write a Python function that adds two numbers.", "def add...") == "code"
    assert infer_category("Write a poem about autumn.", "Leaves fall...") == "creative"
    assert infer_category("If all cats are grey, then is Tom grey?", "yes") == "reasoning"
    assert infer_category("Who wrote Hamlet?", "Shakespeare") == "qa"
    assert infer_category("Describe the water cycle.", "Water evaporates, condenses into clouds and falls.") == "other"


def test_a_stratified_sample_keeps_the_proportions_and_a_floor_per_category():
    items = [QAItem(f"{c}{k}", [{"role": "user", "content": "q"}], "a", "f", k)
             for c, n in (("big", 80), ("mid", 15), ("small", 3)) for k in range(n)]
    categories = {i.id: i.id.rstrip("0123456789") for i in items}
    chosen = stratify(items, categories, 40, seed=1)
    counts = {c: sum(1 for i in chosen if categories[i.id] == c) for c in ("big", "mid", "small")}
    assert len(chosen) == 40 and counts["small"] == 3 and counts["mid"] >= 5 and counts["big"] > counts["mid"]
    assert stratify(items, categories, 40, seed=1) == chosen and stratify(items, categories, 40, seed=2) != chosen
    assert stratify(items, categories, None) == items


def test_the_fast_judge_scores_a_match_ten_and_names_what_is_wrong_otherwise():
    right = judge_fast("What is 3 + 4?", "7", "3 + 4 = 7. The answer is 7.")
    assert right["score"] == 10 and right["codes"] == []
    wrong = judge_fast("What is 3 + 4?", "7", "The answer is 9.")
    assert wrong["score"] < 7 and any(c.startswith("NUMERIC") for c in wrong["codes"])
    close = judge_fast("Describe the water cycle.", "Water evaporates, condenses into clouds and falls as rain.",
                       "Water evaporates and condenses into clouds.")
    far = judge_fast("Describe the water cycle.", "Water evaporates, condenses into clouds and falls as rain.",
                     "Bananas are yellow.")
    assert close["score"] > far["score"]


def test_analyze_writes_every_step_and_runs_again_from_a_step_without_answering_twice(root):
    write_config(root, eval_max_tokens=24)  # tiny-random answers noise: short noise fails as well as long
    path = write_jsonl(root / "mixed.jsonl", mixed_items())
    out = root / "analysis"
    first = run_cli(root, "--analyze", path, "--sample", "20", "--out", out)
    assert first.returncode == 0, first.stderr[-3000:]
    for name in ("test_dataset.jsonl", "test_dataset_stats.json", "model_outputs.jsonl", "generation_stats.json",
                 "judged_results.jsonl", "failures.jsonl", "summary.json", "clusters.json", "patterns.json",
                 "failures.png", "failures.html"):
        assert (out / name).exists(), name
    stats = json.loads((out / "test_dataset_stats.json").read_text())
    assert stats["before"] == {"math": 12, "code": 6, "qa": 5, "creative": 4, "chat": 1}
    assert stats["sampled"] == 20 and stats["after"]["chat"] == 1 and stats["after"]["creative"] == 4
    outputs = [json.loads(l) for l in (out / "model_outputs.jsonl").read_text().splitlines()]
    assert len(outputs) == 20 and len({o["id"] for o in outputs}) == 20
    summary = json.loads((out / "summary.json").read_text())
    failures = [json.loads(l) for l in (out / "failures.jsonl").read_text().splitlines()]
    assert summary["items"] == 20 and summary["failures"] == len(failures) > 0  # tiny-random answers noise
    assert set(summary["per_category"]) == set(stats["after"])
    clusters = json.loads((out / "clusters.json").read_text())
    members = [i for c in clusters["clusters"] for i in c["ids"]]
    assert sorted(members) == sorted(f["id"] for f in failures), "every failure in exactly one cluster"
    patterns = json.loads((out / "patterns.json").read_text())
    assert len(patterns) == clusters["k"] and all(p["label"] and 1 <= len(p["examples"]) <= 3 for p in patterns)
    assert json.loads(first.stdout.splitlines()[-1])["patterns"] == [p["label"] for p in patterns]

    # again from step 4, in a sentence-embedding model's space (a model folder, mean pooled), picking --queue's
    # items in that space too
    answers = (out / "model_outputs.jsonl").read_bytes()
    write_config(root, analysis={"embedding_model": "tiny-random"})
    again = run_cli(root, "--analyze", path, "--out", out, "--from-step", "4", "--clusters", "2", "--queue")
    assert again.returncode == 0, again.stderr[-3000:]
    assert (out / "model_outputs.jsonl").read_bytes() == answers and "2 generate" not in again.stderr
    clusters = json.loads((out / "clusters.json").read_text())
    assert clusters["k"] == min(2, len(failures)) and clusters["space"].endswith("tiny-random")
    assert sorted(i for c in clusters["clusters"] for i in c["ids"]) == sorted(f["id"] for f in failures)
    tested = {json.loads(l)["conversation"][-1]["content"] for l in (out / "test_dataset.jsonl").read_text().splitlines()}
    records = [json.loads(l) for l in (out / "targeted.jsonl").read_text().splitlines()]
    assert records and all(r["messages"][0]["content"] not in tested for r in records)


def test_an_embedding_model_not_on_this_machine_is_refused_before_any_answer(root):
    path = write_jsonl(root / "mixed.jsonl", mixed_items())
    write_config(root, analysis={"embedding_model": "someone/not-on-this-machine"})
    done = run_cli(root, "--analyze", path, "--out", root / "a")
    assert done.returncode == 1 and "analysis.embedding_model: 'someone/not-on-this-machine'" in done.stderr
    assert "nothing is downloaded at run time" in done.stderr and not (root / "a").exists()


def test_a_run_cut_short_mid_generation_answers_only_the_rest(root):
    write_config(root, eval_max_tokens=24)
    path = write_jsonl(root / "mixed.jsonl", mixed_items())
    out = root / "analysis"
    assert run_cli(root, "--analyze", path, "--out", out).returncode == 0
    lines = (out / "model_outputs.jsonl").read_text().splitlines(keepends=True)
    for name in ("generation_stats.json", "summary.json", "clusters.json", "patterns.json"):
        (out / name).unlink()
    (out / "model_outputs.jsonl").write_text("".join(lines[:10]) + lines[10][:25])  # as a kill mid-write leaves it
    resumed = run_cli(root, "--analyze", path, "--out", out)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    again = (out / "model_outputs.jsonl").read_text().splitlines(keepends=True)
    assert again[:10] == lines[:10] and len(again) == len(lines)
    assert sorted(json.loads(l)["id"] for l in again) == sorted(json.loads(l)["id"] for l in lines)
    assert json.loads((out / "generation_stats.json").read_text())["generated_now"] == len(lines) - 10


class ScriptedJudge(ScriptedModel):
    """A judge that scores each item it is shown (10 for an id ending in an even digit, 3 otherwise), leaves out
    the first item of every batch of more than two (so those are asked again), and answers a batch holding the
    item "bad" with prose (so those fall back). Asked to label a cluster, it names its size and first error
    code, dressed as models dress a label."""

    model = "judge"

    def __init__(self, max_items: int | None = None):
        self.calls: list[int] = []  # items per judging call
        self.labels: list[str] = []  # the labels it wrote
        self.max_items = max_items  # more items than this in a call: refused with a 400, as a context overflow is
        super().__init__()

    def reply(self, body: dict):
        prompt = body["messages"][-1]["content"]
        if "Items:\n" not in prompt:
            facts = prompt.split("One group:\n\n", 1)[1]
            self.labels.append(f"{facts.split(' answers;')[0]} answers with {facts.split('error codes: ')[1].split(' (')[0]}")
            return f'\n**Label:** "{self.labels[-1]}"\nThese answers all ...'
        items = json.loads(prompt.split("Items:\n", 1)[1].rsplit("\n\nReply", 1)[0])
        self.calls.append(len(items))
        if self.max_items and len(items) > self.max_items:
            return 400, {"error": {"message": "max_tokens: the prompt is too long", "type": "invalid_request_error",
                                   "param": "max_tokens", "code": None}}
        if any(i["id"] == "bad" for i in items):
            return "I think they are mostly fine."
        shown = items[1:] if len(items) > 2 else items
        return "Here you go: " + json.dumps([{"id": i["id"], "score": 10 if i["id"][-1] in "02468" else 3,
                                              "reason": "scripted"} for i in shown])


def analyze_with(judge: ScriptedJudge, root, rows: list[dict], batch_size: int):
    """`--analyze` of `rows` into root/a with the scripted judge serving on loopback for its duration."""
    path = write_jsonl(root / "qa.jsonl", rows)
    with judge:
        write_config(root, eval_max_tokens=8, providers={"judge": judge.provider()})
        return run_cli(root, "--analyze", path, "--out", root / "a", "--judge", "llm", "--batch-size",
                         str(batch_size))


def test_the_llm_judge_batches_items_asks_again_for_what_a_reply_left_out_and_falls_back_for_garbage(root):
    rows = [{"id": f"q{k}", "prompt": f"What is {k} + 1?", "response": str(k + 1)} for k in range(10)]
    rows.insert(5, {"id": "bad", "prompt": "What is 2 + 2?", "response": "4"})
    judge = ScriptedJudge()
    done = analyze_with(judge, root, rows, batch_size=4)
    assert done.returncode == 0, done.stderr[-3000:]
    judged = {r["id"]: r for r in map(json.loads, (root / "a" / "judged_results.jsonl").read_text().splitlines())}
    summary = json.loads((root / "a" / "summary.json").read_text())
    # the first round's three calls arrive at once, in any order; the items they left out come back in pairs
    assert sorted(judge.calls[:3]) == [3, 4, 4] and all(n <= 2 for n in judge.calls[3:]), judge.calls
    assert summary["judge"] == "llm" and summary["calls"] == len(judge.calls)
    fell_back = sorted(k for k, r in judged.items() if r["judge"] == "fast")
    assert "bad" in fell_back and summary["fallbacks"] == len(fell_back) <= 2
    for key, r in judged.items():
        if r["judge"] == "llm":
            assert r["score"] == (10 if key[-1] in "02468" else 3) and r["reason"] == "scripted"
    assert summary["failures"] == sum(1 for r in judged.values() if r["score"] < 7)
    patterns = json.loads((root / "a" / "patterns.json").read_text())  # the judge labels too, beside the rules
    assert patterns and sorted(p["llm_label"] for p in patterns) == sorted(judge.labels)
    assert all(p["llm_label"].startswith(f"{p['size']} answers with ") and p["label"] != p["llm_label"]
               for p in patterns)
    assert all(f"(the judge: {p['llm_label']})" in done.stderr for p in patterns[:5])


def test_a_batch_the_judge_refuses_as_too_long_is_asked_again_in_smaller_batches(root):
    judge = ScriptedJudge(max_items=3)
    done = analyze_with(judge, root, [{"id": f"q{k}", "prompt": f"What is {k} + 1?", "response": str(k + 1)}
                                      for k in range(6)], batch_size=6)
    assert done.returncode == 0, done.stderr[-3000:]
    assert judge.calls == [6, 3, 3]  # refused whole, then answered in halves (each leaves its first item out)
    summary = json.loads((root / "a" / "summary.json").read_text())
    assert summary["calls"] == 3 and summary["fallbacks"] == 2


@pytest.mark.integration
def test_the_llm_judge_runs_against_our_own_server_and_a_judge_that_is_down_loses_no_answer(root, tmp_path):
    from tests.serve_helpers import Server

    path = write_jsonl(root / "qa.jsonl", [{"id": f"q{k}", "prompt": f"What is {k} + 1?", "response": str(k + 1)}
                                           for k in range(6)])
    judge_root = tmp_path / "judge"
    judge_root.mkdir()
    write_config(judge_root, serve={"max_tokens": 1024})
    server = Server(judge_root)
    try:
        server.wait_ready()
        write_config(root, eval_max_tokens=8, providers={"judge": {
            "kind": "openai", "base_url": f"{server.url}/v1", "model": "current", "max_retries": 1}})
        done = run_cli(root, "--analyze", path, "--out", root / "a", "--judge", "llm", "--batch-size", "4")
    finally:
        server.proc.kill()
        server.proc.wait()
    assert done.returncode == 0, done.stderr[-3000:]
    summary = json.loads((root / "a" / "summary.json").read_text())
    # tiny-random answers noise, never a JSON array: each item is asked twice, then the fast judge stands in
    assert summary["judge"] == "llm" and summary["calls"] == 2 + 3 and summary["fallbacks"] == 6
    assert all("llm_label" in p for p in json.loads((root / "a" / "patterns.json").read_text()))  # asked, noise or not
    answers = (root / "a" / "model_outputs.jsonl").read_bytes()
    down = run_cli(root, "--analyze", path, "--out", root / "a", "--judge", "llm", "--from-step", "3")
    assert down.returncode == 1 and "did not answer" in down.stderr
    assert (root / "a" / "model_outputs.jsonl").read_bytes() == answers


def test_queue_trains_a_file_of_items_near_the_failures_and_never_an_analysed_one(root):
    from core.synthetic import integer_sums

    write_config(root, daemon={"settle_seconds": 0}, eval_max_tokens=24)
    write_jsonl(root / "inbox" / "earlier.jsonl", integer_sums(12, seed=5))  # a user's file, trained before
    assert run_cli(root, "--once").returncode == 0
    path = write_jsonl(root / "mixed.jsonl", mixed_items())
    out = root / "data" / "analysis" / "first"
    done = run_cli(root, "--analyze", path, "--sample", "12", "--out", out, "--queue")
    assert done.returncode == 0, done.stderr[-3000:]
    queued = json.loads(done.stdout.splitlines()[-1])["queued"]
    assert queued and (root / "queue" / "high" / queued).exists() and ".analysis--" in queued
    tested = {json.loads(l)["conversation"][-1]["content"] for l in (out / "test_dataset.jsonl").read_text().splitlines()}
    records = [json.loads(l) for l in (out / "targeted.jsonl").read_text().splitlines()]
    clusters = {c["cluster"] for c in json.loads((out / "clusters.json").read_text())["clusters"]}
    assert records and all(r["messages"][0]["content"] not in tested for r in records), "no analysed item is trained"
    assert {r["analysis"]["cluster"] for r in records} <= clusters and all(r["analysis"]["label"] for r in records)
    assert {r["analysis"]["source"] for r in records} <= {"mixed.jsonl", "earlier.jsonl"}
    assert run_cli(root, "--once").returncode == 0
    trained = [f["name"] for f in json.loads((root / "data" / "state.json").read_text())["files_trained"]]
    assert trained == ["earlier.jsonl", f"targeted-{out.name}.jsonl"]
    assert run_cli(root, "--report").returncode == 0
    assert "../data/analysis/first/failures.html" in (root / "logs" / "report.html").read_text()


def test_the_daemon_analyses_the_gate_set_every_n_files_and_logs_the_patterns(root):
    from core.synthetic import integer_sums
    from tests.daemon_helpers import events

    write_config(root, daemon={"settle_seconds": 0}, eval_max_tokens=8, self_correction={"enabled": False},
                 training={"promotion": {"enabled": True}}, analysis={"every_n_files": 2})
    for k in range(3):
        write_jsonl(root / "inbox" / f"f{k}.jsonl", integer_sums(20, seed=60 + k))
    assert run_cli(root, "--once").returncode == 0
    [auto] = (root / "data" / "analysis").iterdir()
    assert auto.name.startswith("auto-00002-")  # after the second file, not the first or the third
    stats = json.loads((auto / "test_dataset_stats.json").read_text())
    gate = [json.loads(l) for l in (root / "data" / "gate" / "pool.jsonl").read_text().splitlines()]
    assert stats["items"] == sum(1 for g in gate if g["file"] in ("f0.jsonl", "f1.jsonl")) > 0  # the set then
    assert (auto / "patterns.json").exists()
    patterns = json.loads((auto / "patterns.json").read_text())
    logged = [e["message"] for e in events(root) if e["event"] == "analysis" and e.get("step") == 5]
    assert all(any(p["label"] in m for m in logged) for p in patterns[:5])


def test_analyze_reads_benchmark_files_through_the_importers_and_tasks_by_name(root):
    write_config(root, eval_max_tokens=4)
    gsm = write_jsonl(root / "gsm8k.jsonl", [{"question": f"Ana has {k} apples and buys 2. How many?",
                                              "answer": f"{k} + 2 = {k + 2}\n#### {k + 2}"} for k in range(6)]
                      + [{"question": "Broken?", "answer": "no final line"}])
    refused = run_cli(root, "--analyze", gsm, "--dataset", "gsm8k", "--out", root / "a")
    assert refused.returncode == 1 and "row 7" in refused.stderr and not (root / "a").exists()
    done = run_cli(root, "--analyze", gsm, "--dataset", "gsm8k", "--skip-bad", "--out", root / "a")
    assert done.returncode == 0, done.stderr[-3000:]
    tested = [json.loads(line) for line in (root / "a" / "test_dataset.jsonl").read_text().splitlines()]
    assert len(tested) == 6 and {t["golden"] for t in tested} == {str(k + 2) for k in range(6)}
    assert json.loads((root / "a" / "test_dataset_stats.json").read_text())["before"] == {"math": 6}
    by_name = run_cli(root, "--analyze", "iot_tiny", "--out", root / "b")
    assert by_name.returncode == 0, by_name.stderr[-3000:]
    assert len((root / "b" / "model_outputs.jsonl").read_text().splitlines()) == 5
