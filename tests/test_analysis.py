"""Failure analysis: a stratified test set, the adapter's answers once, judged, clustered and labelled."""
import json

from core.qa import QAItem
from evaluation.analysis import infer_category, judge_fast, stratify
from tests.conftest import run_train, write_jsonl


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
    path = write_jsonl(root / "mixed.jsonl", mixed_items())
    out = root / "analysis"
    first = run_train(root, "--analyze", path, "--sample", "20", "--out", out)
    assert first.returncode == 0, first.stderr[-3000:]
    for name in ("test_dataset.jsonl", "test_dataset_stats.json", "model_outputs.jsonl", "generation_stats.json",
                 "judged_results.jsonl", "failures.jsonl", "summary.json", "clusters.json", "patterns.json"):
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

    answers = (out / "model_outputs.jsonl").read_bytes()
    again = run_train(root, "--analyze", path, "--out", out, "--from-step", "4", "--clusters", "2")
    assert again.returncode == 0, again.stderr[-3000:]
    assert (out / "model_outputs.jsonl").read_bytes() == answers and "2 generate" not in again.stderr
    assert json.loads((out / "clusters.json").read_text())["k"] == min(2, len(failures))


def test_a_run_cut_short_mid_generation_answers_only_the_rest(root):
    path = write_jsonl(root / "mixed.jsonl", mixed_items())
    out = root / "analysis"
    assert run_train(root, "--analyze", path, "--out", out).returncode == 0
    lines = (out / "model_outputs.jsonl").read_text().splitlines(keepends=True)
    for name in ("generation_stats.json", "summary.json", "clusters.json", "patterns.json"):
        (out / name).unlink()
    (out / "model_outputs.jsonl").write_text("".join(lines[:10]) + lines[10][:25])  # as a kill mid-write leaves it
    resumed = run_train(root, "--analyze", path, "--out", out)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    again = (out / "model_outputs.jsonl").read_text().splitlines(keepends=True)
    assert again[:10] == lines[:10] and len(again) == len(lines)
    assert sorted(json.loads(l)["id"] for l in again) == sorted(json.loads(l)["id"] for l in lines)
    assert json.loads((out / "generation_stats.json").read_text())["generated_now"] == len(lines) - 10
