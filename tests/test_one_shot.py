"""One-shot training through train.py, in real subprocesses, with the tiny-random model."""
import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch
from peft import PeftModel
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM

from tests.conftest import MODELS, REPO, write_config, write_jsonl, run_cli
from core.synthetic import integer_sums


def state(root):
    return json.loads((root / "data" / "state.json").read_text())


def meta(root, version):
    return json.loads((root / "data" / "adapters" / version / "meta.json").read_text())


def test_a_second_run_continues_from_the_first_runs_adapter_and_step(root):
    a = write_jsonl(root / "a.jsonl", integer_sums(24, seed=1))
    b = write_jsonl(root / "b.jsonl", integer_sums(16, seed=2))
    first = run_cli(root, a)
    assert first.returncode == 0, first.stderr
    s1 = state(root)
    assert s1["current_adapter"] == "v0001" and s1["global_step"] == 6  # 24 examples / batch 4

    second = run_cli(root, b)
    assert second.returncode == 0, second.stderr
    s2 = state(root)
    assert s2["current_adapter"] == "v0002" and s2["global_step"] == 6 + 4
    assert [f["name"] for f in s2["files_trained"]] == ["a.jsonl", "b.jsonl"]
    m = meta(root, "v0002")
    assert m["parent"] == "v0001" and m["global_step"] == 10 and m["file"]["name"] == "b.jsonl"
    assert "continuing" not in second.stderr and "adapter v0001" in second.stderr  # loaded the previous version
    assert os.readlink(root / "data" / "adapters" / "current") == "v0002"
    assert json.loads((root / "data/adapters/v0002/config.resolved.json").read_text())["model"]["name_or_path"] == "tiny-random"


def test_the_saved_adapter_loads_with_peft_and_changes_the_model(root):
    a = write_jsonl(root / "a.jsonl", integer_sums(16, seed=3))
    write_config(root, training={"learning_rate": 0.05})
    assert run_cli(root, a).returncode == 0
    base = AutoModelForCausalLM.from_pretrained(MODELS / "tiny-random")
    ids = torch.tensor([[1, 2, 3, 4, 5]])
    with torch.no_grad():
        before = base(ids).logits
        tuned = PeftModel.from_pretrained(base, root / "data" / "adapters" / "current")
        after = tuned(ids).logits
    assert not torch.allclose(before, after)


def test_each_trained_file_records_its_tokens_so_equal_steps_can_be_told_from_equal_compute(root):
    """Same examples, same steps; the second file's prompts carry a long preamble, as correction prompts do."""
    from transformers import AutoTokenizer

    records = integer_sums(8, seed=5)
    preamble = "Check each step of the sum before you answer, and write every partial total. " * 3
    long = [{**r, "prompt": preamble + r["prompt"]} for r in records]
    short_file, long_file = write_jsonl(root / "short.jsonl", records), write_jsonl(root / "long.jsonl", long)
    assert run_cli(root, short_file, long_file).returncode == 0
    short, longer = state(root)["files_trained"]
    assert (short["examples"], short["steps"]) == (longer["examples"], longer["steps"]) == (8, 2)

    tok = AutoTokenizer.from_pretrained(MODELS / "tiny-random")
    def rendered(r):
        chat = [{"role": "user", "content": r["prompt"]}, {"role": "assistant", "content": r["response"]}]
        return len(tok(tok.apply_chat_template(chat, tokenize=False), add_special_tokens=False)["input_ids"])
    assert short["tokens"] == sum(rendered(r) for r in records)
    assert longer["tokens"] == sum(rendered(r) for r in long) > short["tokens"] + 8 * 40
    # The loss is on the answers only, and they are the same.
    assert longer["supervised_tokens"] == short["supervised_tokens"]
    assert 8 * 10 < short["supervised_tokens"] < short["tokens"]


def test_training_lowers_the_loss(root):
    data = integer_sums(8, seed=4) * 4
    write_config(root, training={"learning_rate": 0.02, "epochs_per_file": 3, "logging_steps": 1})
    assert run_cli(root, write_jsonl(root / "a.jsonl", data)).returncode == 0
    losses = [json.loads(l)["loss"] for l in (root / "logs" / "events.jsonl").read_text().splitlines()
              if json.loads(l)["event"] == "progress"]
    # The tiny model's logits are near uniform (loss ~ ln 49152 = 10.8) and LoRA moves them slowly,
    # so the test asks for a clear, steady drop rather than a large one.
    assert len(losses) == 24 and sum(losses[-4:]) / 4 < sum(losses[:4]) / 4 - 0.1, losses


def test_one_bad_file_means_nothing_is_trained(root):
    good = write_jsonl(root / "good.jsonl", integer_sums(8, seed=5))
    bad = root / "bad.jsonl"
    bad.write_text('{"prompt": "a", "response": "b"}\n{"prompt": "a"}\n')
    result = run_cli(root, good, bad)
    assert result.returncode == 1
    assert "bad.jsonl" in result.stderr and "line 2" in result.stderr
    assert not (root / "data" / "state.json").exists()
    assert not any((root / "data" / "adapters").glob("v*"))


@pytest.mark.integration
def test_a_kill_during_training_leaves_the_previous_version_current(root):
    a = write_jsonl(root / "a.jsonl", integer_sums(8, seed=6))
    assert run_cli(root, a).returncode == 0
    long_file = write_jsonl(root / "long.jsonl", integer_sums(800, seed=7))
    proc = subprocess.Popen([sys.executable, str(REPO / "train.py"), "--config", str(root / "config.json"), str(long_file)],
                            cwd=root, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    events = root / "logs" / "events.jsonl"
    deadline = time.time() + 120
    while time.time() < deadline and '"long.jsonl: step' not in events.read_text():
        time.sleep(0.2)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    s = state(root)
    assert s["current_adapter"] == "v0001" and s["global_step"] == 2
    assert os.readlink(root / "data" / "adapters" / "current") == "v0001"
    PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(MODELS / "tiny-random"),
                              root / "data" / "adapters" / "current")
    again = run_cli(root, write_jsonl(root / "b.jsonl", integer_sums(8, seed=8)))
    assert again.returncode == 0 and state(root)["current_adapter"] == "v0002"


def test_a_batch_run_in_slices_takes_the_same_steps_as_the_whole_batch(tmp_path):
    """training.micro_batch_tokens bounds memory by splitting a batch into row slices; the slices'
    gradients must add up to the whole batch's, so the loss trajectory and the adapter are the same."""
    data = integer_sums(24, seed=5)
    results = {}
    for name, budget in (("whole", 0), ("sliced", 40)):
        root = tmp_path / name
        root.mkdir()
        # no LoRA dropout: slices would draw other dropout masks than the whole batch
        write_config(root, lora={"dropout": 0.0}, training={"learning_rate": 0.01, "micro_batch_tokens": budget})
        assert run_cli(root, write_jsonl(root / "a.jsonl", data)).returncode == 0
        log = [json.loads(l) for l in (root / "logs" / "events.jsonl").read_text().splitlines()]
        sliced = [e["batches"] for e in log if e["event"] == "sliced"]
        adapter = root / "data" / "adapters" / state(root)["current_adapter"] / "adapter_model.safetensors"
        results[name] = ([e["loss"] for e in log if e["event"] == "progress"], sliced, load_file(adapter))
    (whole, whole_sliced, a), (sliced, sliced_count, b) = results["whole"], results["sliced"]
    assert whole_sliced == [] and sliced_count == [len(whole)]  # every batch (4 rows over 40 tokens) was split
    assert torch.allclose(torch.tensor(whole), torch.tensor(sliced), rtol=1e-4), (whole, sliced)
    for key in a:
        assert torch.allclose(a[key], b[key], rtol=1e-3, atol=1e-6), key


def test_one_shot_and_the_daemon_train_a_file_through_the_same_job_path(tmp_path):
    """The same file, trained once by `train.py FILE` and once by `--once` in another root: the same done record
    (but for timings and the daemon's queue priority) and the same adapter weights."""
    data = integer_sums(16, seed=4)
    done = {}
    for mode in ("one-shot", "once"):
        root = tmp_path / mode
        root.mkdir()
        write_config(root)
        if mode == "one-shot":
            out = run_cli(root, write_jsonl(root / "a.jsonl", data))
        else:
            write_jsonl(root / "queue" / "normal" / "a.jsonl", data)
            out = run_cli(root, "--once")
        assert out.returncode == 0, out.stderr[-2000:]
        lines = [json.loads(l) for l in (root / "logs" / "events.jsonl").read_text().splitlines()]
        [done[mode]] = [e for e in lines if e["event"] == "done"]
    timing = {"time", "message", "file", "seconds", "train_seconds", "loop_seconds", "tokens_per_s", "priority"}
    one, once = ({k: v for k, v in done[m].items() if k not in timing} for m in ("one-shot", "once"))
    assert one == once and one["origin"] == "user" and one["adapter"] == "v0001" and one["steps"] == 4
    assert done["once"]["priority"] == "normal"
    weights = [load_file(tmp_path / m / "data/adapters/v0001/adapter_model.safetensors") for m in ("one-shot", "once")]
    assert weights[0].keys() == weights[1].keys()
    assert all(torch.equal(weights[0][k], weights[1][k]) for k in weights[0])


def test_the_first_log_line_says_what_runs_where_and_the_resolved_config_goes_to_a_file(root):
    assert run_cli(root, write_jsonl(root / "a.jsonl", integer_sums(8, seed=5))).returncode == 0
    first = json.loads((root / "logs" / "events.jsonl").read_text().splitlines()[0])
    assert first["event"] == "start" and first["model"] == "tiny-random" and first["pid"] > 0
    assert first["device"] == "cpu" and first["root"] == str(root) and len(first["message"]) < 300
    resolved = json.loads((root / "logs" / "config.resolved.json").read_text())
    assert resolved["model"]["name_or_path"] == "tiny-random" and "experimental" in resolved
