"""practice.method grpo: the policy-gradient loss against TRL's GRPOTrainer, group advantages, and rounds trained
as any file (the daemon, kills, bad input) with the tiny-random model."""
import json
import signal

import pytest
import torch
from transformers import TrainingArguments

from core.encoding import IGNORE, PaddingCollator
from core.errors import ConfigError, DataError
from selfcorrect.practice import group_advantages
from tests.conftest import lora_model, run_cli, run_train, write_config, write_jsonl
from tests.daemon_helpers import events, manifests, original
from training.trainer import SupervisedTrainer, policy_gradient_loss


def batch(tok, model):
    """Three rows: one prompt length, completions of 6, 3 and 5 tokens (right-padded), random advantages, and old
    log-probs off the model's own by up to +-0.5 so that the clip acts on some tokens."""
    torch.manual_seed(1)
    prompt = torch.randint(5, tok.vocab_size, (3, 4))
    lengths = [6, 3, 5]
    completion = torch.randint(5, tok.vocab_size, (3, 6))
    completion_mask = torch.tensor([[1] * n + [0] * (6 - n) for n in lengths])
    completion = completion.masked_fill(completion_mask == 0, tok.pad_token_id)
    with torch.no_grad():
        logits = model(input_ids=torch.cat([prompt, completion], 1)).logits[:, 3:-1].float()
        logps = torch.log_softmax(logits, -1).gather(2, completion[..., None])[..., 0]
    old = (logps + (torch.rand(3, 6) - 0.5)) * completion_mask
    return prompt, completion, completion_mask, torch.tensor([1.3, -0.7, 0.4]), old


def grads(model) -> dict:
    return {n: p.grad.detach().clone() for n, p in model.named_parameters() if p.requires_grad}


@pytest.mark.parametrize("beta", [0.0, 0.04])
def test_the_policy_loss_and_its_gradient_equal_trls_grpo_loss_on_the_same_batch(tmp_path, beta):
    from datasets import Dataset
    from trl import GRPOConfig, GRPOTrainer

    tok, model = lora_model(tmp_path)
    model.eval()  # no LoRA dropout: both losses see the same forward (the gradient flows all the same)
    prompt, completion, completion_mask, advantages, old = batch(tok, model)
    trl = GRPOTrainer(model=model, reward_funcs=[lambda completions, **kw: [0.0] * len(completions)],
                      args=GRPOConfig(output_dir=str(tmp_path / "trl"), per_device_train_batch_size=2,
                                      num_generations=2, beta=beta, epsilon=0.2, loss_type="dapo", use_cpu=True, bf16=False,
                                      report_to=[], logging_steps=1),
                      train_dataset=Dataset.from_list([{"prompt": "x"}] * 4), processing_class=tok)
    trl.current_gradient_accumulation_steps = 1
    trl_loss = trl._compute_loss(model, {
        "prompt_ids": prompt, "prompt_mask": torch.ones_like(prompt), "completion_ids": completion,
        "completion_mask": completion_mask, "advantages": advantages, "old_per_token_logps": old,
        "ref_per_token_logps": old, "num_items_in_batch": completion_mask.sum()})
    model.zero_grad()
    trl_loss.backward()
    expected = grads(model)

    # ours: the same tokens as one right-padded sequence per row, the prompt unsupervised, old log-probs in place
    ids = torch.cat([prompt, completion], 1)
    labels = ids.masked_fill(torch.cat([torch.zeros_like(prompt), completion_mask], 1) == 0, IGNORE)
    old_logps = torch.cat([torch.zeros(3, 4), old], 1)
    ours = SupervisedTrainer(model=model, args=TrainingArguments(output_dir=str(tmp_path / "ours"), use_cpu=True,
                                                                 report_to=[]),
                             policy_epsilon=0.2, policy_beta=beta)
    model.zero_grad()
    loss = ours.compute_loss(model, {"input_ids": ids, "attention_mask": torch.cat([torch.ones_like(prompt),
                                                                                    completion_mask], 1),
                                     "labels": labels, "advantage": advantages, "old_logps": old_logps},
                             num_items_in_batch=completion_mask.sum())
    loss.backward()
    assert loss.item() == pytest.approx(trl_loss.item(), rel=1e-5, abs=1e-6)
    for name, g in grads(model).items():
        assert torch.allclose(g, expected[name], rtol=1e-4, atol=1e-6), name
    ratio = torch.exp(-(old - torch.log_softmax(model(input_ids=ids).logits[:, 3:-1].float(), -1)
                        .gather(2, completion[..., None])[..., 0]))[completion_mask.bool()]
    assert ((ratio < 0.8) | (ratio > 1.2)).any(), "the batch exercises the clip"


def test_at_the_old_policy_the_loss_is_reinforce_advantage_times_log_p():
    logps = torch.tensor([-1.0, -2.0, -0.5], requires_grad=True)
    loss = policy_gradient_loss(logps, logps.detach(), torch.tensor([2.0, 2.0, -1.0]), epsilon=0.2, beta=0.0)
    loss.backward()
    assert loss.item() == pytest.approx(-3.0)  # -(2 + 2 - 1) x ratio 1
    assert logps.grad.tolist() == pytest.approx([-2.0, -2.0, 1.0])


def test_group_advantages_are_relative_to_the_group_and_a_group_that_scored_alike_has_none():
    a = group_advantages([1.0, 0.0, 0.0, 1.0])
    assert a == pytest.approx([0.866, -0.866, -0.866, 0.866], abs=1e-3)  # (r - 0.5) / std 0.577
    assert group_advantages([1.0, 1.0, 1.0]) is None and group_advantages([0.0, 0.0]) is None
    assert sum(group_advantages([1.2, 0.2, 0.0, 0.0])) == pytest.approx(0.0, abs=1e-9)


def test_the_collator_puts_each_old_log_p_at_its_supervised_token():
    features = [{"input_ids": [5, 6, 7, 8], "labels": [IGNORE, IGNORE, 7, 8], "advantage": 0.5,
                 "old_logps": [-0.1, -0.2]},
                {"input_ids": [5, 9, 3], "labels": [IGNORE, 9, 3], "advantage": -1.0, "old_logps": [-0.3, -0.4]}]
    out = PaddingCollator(0)(features)
    assert out["advantage"].tolist() == [0.5, -1.0]
    assert torch.allclose(out["old_logps"], torch.tensor([[0, 0, -0.1, -0.2], [0, -0.3, -0.4, 0]]))


def test_a_file_trains_by_advantage_in_every_record_or_in_none_and_each_is_a_finite_number(tmp_path):
    from core.data import read_examples
    from core.encoding import encode_file

    chat = [{"role": "user", "content": "2 + 2?"}, {"role": "assistant", "content": "4"}]
    path = write_jsonl(tmp_path / "f.jsonl", [{"messages": chat, "advantage": 1.0}, {"messages": chat},
                                              {"messages": chat, "advantage": "high"},
                                              {"messages": chat, "advantage": True}])
    tok, _ = lora_model(tmp_path)
    with pytest.raises(DataError) as e:
        encode_file(tok, read_examples(path), path=path, use_template=True, max_length=64)
    lines = {line: reason for line, reason in e.value.problems}
    assert set(lines) == {2, 3, 4} and 'no "advantage"' in lines[2] and "finite number" in lines[3]


def test_grpo_with_one_sample_is_refused_naming_the_key(root):
    write_config(root, practice={"method": "grpo", "samples": 1})
    from core.config import load_config

    with pytest.raises(ConfigError, match="practice.samples"):
        load_config(root / "config.json")


def problems(n: int) -> list[dict]:
    return [{"id": f"q{k}", "question": f"What is {k} + 1?", "answer": str(k + 1)} for k in range(n)]


def grpo_config(root, training: dict | None = None):
    return write_config(root, practice={"method": "grpo", "samples": 4, "temperature_math": 1.0,
                                        "max_new_tokens_math": 6, "format_reward": 0.5},
                        validation={"holdout_fraction": 0}, daemon={"settle_seconds": 0}, training=training or {})


def with_first_samples(root, rows: list[dict]) -> list[dict]:
    """tiny-random's answers are noise: each problem's answer is made its first sample, so one sample of its group
    verifies (test_practice.first_sample)."""
    from tests.test_practice import first_sample

    return [{**r, "answer": first_sample(root, r["id"], r["question"])} for r in rows]


def test_a_grpo_round_trains_every_sample_of_a_group_with_signal_by_its_advantage(root):
    grpo_config(root)
    rows = with_first_samples(root, [{"id": f"s{k}", "question": f"What is {k} + 2?"} for k in range(4)])
    done = run_cli(root, "--practice", write_jsonl(root / "p.jsonl", [*rows, *problems(4)[:2]]))
    assert done.returncode == 0, done.stderr[-3000:]
    [work] = [d for d in (root / "data" / "practice").iterdir() if d.is_dir()]
    meta = json.loads((work / "round-1.meta.json").read_text())
    outcomes = {o["id"]: o for o in map(json.loads, (work / "round-1.progress.jsonl").read_text().splitlines())}
    with_signal = [i for i, o in outcomes.items() if group_advantages(o["rewards"])]
    assert meta["method"] == "grpo" and meta["samples"] == 24 and meta["pass_at_k"] >= 4 / 6
    assert meta["skipped_groups"] == 6 - len(with_signal) and meta["kept"] == 4 * len(with_signal) > 0
    assert meta["mean_reward"] == pytest.approx(sum(sum(o["rewards"]) for o in outcomes.values()) / 24, abs=1e-4)
    records = [json.loads(l) for l in (work / "round-1.jsonl").read_text().splitlines()]
    assert sorted({r["practice"]["problem"] for r in records}) == sorted(with_signal)
    for r in records:
        o = outcomes[r["practice"]["problem"]]
        assert r["advantage"] == pytest.approx(group_advantages(o["rewards"])[r["practice"]["sample"]])
        assert r["practice"]["reward"] == o["rewards"][r["practice"]["sample"]]
    assert any(r["advantage"] < 0 for r in records), "wrong samples are trained too, pushed down"
    state = json.loads((root / "data" / "state.json").read_text())
    assert [f["name"] for f in state["files_trained"]] == [f"{work.name}.round-1.jsonl"]
    assert any(e["event"] == "reference" and "policy-gradient" in e["message"] for e in events(root))
    status = run_cli(root, "--status")
    [shown] = json.loads(status.stdout.strip().splitlines()[-1])["practice_rounds"]
    assert shown["method"] == "grpo" and shown["mean_reward"] == meta["mean_reward"]
    assert shown["skipped_groups"] == meta["skipped_groups"] and "practice round" in status.stdout
    assert run_cli(root, "--report").returncode == 0
    assert "mean reward" in (root / "logs" / "report.html").read_text()


def test_a_verifier_that_crashes_on_a_sample_scores_it_0_says_so_and_the_round_goes_on(root, tmp_path):
    from core.config import load_config
    from core.events import EventLog
    from core.practice import Problem
    from inference.loading import load_for_inference
    from inference.sampling import SamplingEngine
    from selfcorrect.practice import Practice

    config = load_config(grpo_config(root))
    model, tokenizer, use_template, _ = load_for_inference(config, root, "base")
    log = EventLog(root / "logs")
    practice = Practice(SamplingEngine(model, tokenizer, use_template=use_template), config.practice, log,
                        adapter="base")
    # a problem made in code, not read from a file: its test has no "input", and the code verifier fails on it
    broken = Problem(1, "broken", "Print 1.", tests=[{"output": "1"}])
    records, stats = practice.run([broken, Problem(2, "q", "What is 1 + 1?", answer="2")], tmp_path / "w", 1)
    assert stats.verifier_errors == 4 and stats.problems == 2
    said = [e for e in events(root) if e.get("verifier_error")]
    assert len(said) == 4 and "KeyError" in said[0]["message"] and said[0]["problem"] == "broken"


def test_a_grpo_practice_file_without_a_way_to_verify_is_refused_naming_the_line(root):
    grpo_config(root)
    path = write_jsonl(root / "p.jsonl", [*problems(2), {"id": "x", "question": "Why?"}])
    done = run_cli(root, "--practice", path)
    assert done.returncode != 0 and "line 3" in done.stderr and "answer" in done.stderr


@pytest.mark.integration
def test_a_daemon_killed_mid_grpo_training_resumes_from_its_checkpoint_and_repeats_no_step(root):
    from tests.test_practice import drop

    grpo_config(root, training={"batch_size": 2, "save_steps": 2})
    rows = with_first_samples(root, [{"id": f"q{k}", "question": f"What is {k} + 1?"} for k in range(6)])
    drop(root / "inbox" / "practice", "drill.jsonl", rows)
    killed = run_train(root, "--once", env={"SELFCORRECT_KILL_AT": "checkpoint.saved"})
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    assert run_cli(root, "--once").returncode == 0
    [work] = [d for d in (root / "data" / "practice").iterdir() if d.is_dir()]
    state = json.loads((root / "data" / "state.json").read_text())
    [trained] = state["files_trained"]
    records = (work / "round-1.jsonl").read_text().splitlines()
    assert trained["name"] == f"{work.name}.round-1.jsonl" and trained["examples"] == len(records)
    assert state["global_step"] == trained["steps"] == -(-len(records) // 2)  # each step once, none repeated
    [resumed] = [e for e in events(root) if e["event"] == "resume"]
    assert "checkpoint-2" in resumed["message"]
    assert sorted(original(m["name"]) for m in manifests(root)) == sorted(["drill.jsonl", trained["name"]])
