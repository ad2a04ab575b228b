"""Several processes, one queue (training/distributed.py): real torchrun launches on the CPU (gloo), tiny-random."""
import hashlib
import json
import os
import signal
import subprocess
import sys

import pytest

from core.synthetic import integer_sums
from tests.conftest import REPO, run_train, write_config, write_jsonl
from tests.daemon_helpers import INBOX_FOLDERS, events, original, wait_event


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def launch(root, *args, popen: bool = False, accelerate: bool = False, timeout: float = 300):
    """Two ranks as a user would start them: `torchrun --standalone --nproc_per_node 2 train.py ...`, or
    `accelerate launch --config_file examples/accelerate/ddp_cpu.yaml train.py ...` (each on a free port)."""
    launcher = (["accelerate.commands.launch", "--config_file", str(REPO / "examples" / "accelerate" / "ddp_cpu.yaml"),
                 "--main_process_port", str(free_port())] if accelerate
                else ["torch.distributed.run", "--standalone", "--nproc_per_node=2"])
    command = [sys.executable, "-m", *launcher, str(REPO / "train.py"), "--config", str(root / "config.json"),
               *map(str, args)]
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "COLUMNS": "200", "OMP_NUM_THREADS": "1"}
    if popen:
        return subprocess.Popen(command, cwd=root, env=env, stdout=open(root / "launch.out", "ab"),
                                stderr=subprocess.STDOUT, start_new_session=True)
    return subprocess.run(command, cwd=root, env=env, capture_output=True, text=True, timeout=timeout)


def adapter(root, version="v0001") -> dict:
    from safetensors.torch import load_file

    return load_file(root / "data" / "adapters" / version / "adapter_model.safetensors")


def trained(root) -> list[dict]:
    return json.loads((root / "data" / "state.json").read_text())["files_trained"]


@pytest.mark.integration
def test_two_processes_train_a_file_to_the_adapter_one_process_makes_with_the_same_global_batch(tmp_path):
    import torch

    records = integer_sums(48, seed=11)  # answers of different lengths: tokens are counted across the ranks
    one, two = tmp_path / "one", tmp_path / "two"
    for root, per_device in ((one, 4), (two, 2)):  # global batch 4 = 4 x 1 process = 2 x 2 processes
        root.mkdir()
        # no dropout, no hold-out, random order (length grouping forms groups of the per-device batch), fp32 (the
        # ranks compute the model's own loss, one process its supervised-only loss: bf16 would round them apart)
        write_config(root, lora={"dropout": 0.0}, validation={"holdout_fraction": 0.0},
                     training={"batch_size": per_device, "micro_batch_tokens": 0, "group_by_length": False,
                               "precision": "fp32"})
        write_jsonl(root / "f.jsonl", records)
    single = run_train(one, one / "f.jsonl")
    assert single.returncode == 0, single.stderr[-3000:]
    double = launch(two, two / "f.jsonl")
    assert double.returncode == 0, double.stderr[-5000:]
    assert trained(one)[0]["steps"] == trained(two)[0]["steps"] > 1
    a, b = adapter(one), adapter(two)
    assert a.keys() == b.keys()
    for key in a:
        assert torch.allclose(a[key], b[key], atol=1e-5, rtol=1e-4), (key, (a[key] - b[key]).abs().max())
    assert any(a[k].abs().sum() > 0 for k in a if "lora_B" in k), "training moved the adapter"


@pytest.mark.integration
def test_sigkill_of_rank_1_mid_file_then_a_restart_drains_the_queue_losing_nothing_and_training_nothing_twice(root):
    import psutil

    write_config(root, daemon={"settle_seconds": 0}, training={"save_steps": 2}, eval_steps=2, num_eval_samples=2,
                 eval_max_tokens=4, validation={"holdout_fraction": 0.2})
    inputs = {}
    for k, n in enumerate((12, 96, 12)):
        path = write_jsonl(root / "inbox" / f"f{k}.jsonl", integer_sums(n, seed=50 + k))
        inputs[hashlib.sha256(path.read_bytes()).hexdigest()] = path.name
    launcher = launch(root, "--daemon", popen=True)
    try:
        wait_event(root, "progress", file="f1.jsonl", timeout=240)  # mid-way through the long file
        ranks = {p.environ().get("RANK"): p for p in psutil.Process(launcher.pid).children(recursive=True)
                 if p.environ().get("RANK")}
        ranks["1"].send_signal(signal.SIGKILL)
        assert launcher.wait(timeout=240) != 0
    finally:
        if launcher.poll() is None:
            launcher.kill()
            launcher.wait()
    for rank in ranks.values():  # the launcher takes the other ranks down with it
        rank.wait(timeout=60)
    evaluations = len([e for e in events(root) if e["event"] == "evaluation"])
    again = launch(root, "--once", accelerate=True)  # the daemon on two ranks drains what is left
    assert again.returncode == 0, again.stderr[-5000:]
    assert sorted(f["sha256"] for f in trained(root)) == sorted(inputs), "every file trained exactly once"
    assert len([e for e in events(root) if e["event"] == "evaluation"]) > evaluations, "rank 0 evaluated live"
    assert "rank 1: " in again.stderr and not [e for e in events(root) if e["event"] == "follower"]  # console only
    names = [n for n in os.listdir(root / "queue" / "done") if not n.endswith(".manifest.json")]
    assert sorted(original(n) for n in names) == sorted(inputs.values())
    for folder in ("inbox", "queue/high", "queue/normal", "queue/low", "queue/processing", "queue/failed"):
        assert not [n for n in os.listdir(root / folder) if not n.startswith(".") and n not in INBOX_FOLDERS], folder


def stop_with_sigterm(root, target: str):
    """Start the daemon on two ranks, SIGTERM `target` ("launcher" or "rank 1") once a step is logged; the
    launcher's exit status and its output."""
    import psutil

    launcher = launch(root, "--daemon", popen=True)
    try:
        wait_event(root, "progress", count=len([e for e in events(root) if e["event"] == "progress"]) + 1,
                   file="long.jsonl", timeout=240)
        if target == "launcher":
            launcher.send_signal(signal.SIGTERM)  # torchrun passes it to every rank (and exits with its own status)
        else:
            [rank] = [p for p in psutil.Process(launcher.pid).children(recursive=True) if p.environ().get("RANK") == "1"]
            rank.send_signal(signal.SIGTERM)
        return launcher.wait(timeout=240), (root / "launch.out").read_text()
    finally:
        if launcher.poll() is None:
            launcher.kill()
            launcher.wait()


@pytest.mark.integration
def test_sigterm_to_any_rank_or_the_launcher_stops_every_rank_at_one_step_and_the_restart_resumes(root):
    write_config(root, daemon={"settle_seconds": 0}, training={"save_steps": 1000})
    write_jsonl(root / "inbox" / "long.jsonl", integer_sums(200, seed=7))
    # rank 1 alone is signalled: the ranks agree to stop at the next step, rank 0 requeues, all exit 0
    status, out = stop_with_sigterm(root, "rank 1")
    assert status == 0, out[-5000:]
    assert [e for e in events(root) if e["event"] == "daemon" and "stopped cleanly" in e["message"]], out[-5000:]
    assert "rank 0 is done; stopping" in out  # rank 1 left when rank 0 did, not before
    [requeued] = [e for e in events(root) if e["event"] == "requeued"]
    assert "stopped at step" in requeued["message"] and os.listdir(root / "queue" / "processing") == []
    [checkpoint] = (root / "data" / "checkpoints").glob("*/checkpoint-*")  # both ranks saved the same step
    assert {p.name for p in checkpoint.glob("rng_state_*.pth")} == {"rng_state_0.pth", "rng_state_1.pth"}
    # the launcher is signalled: it passes the signal on; the file resumes from its checkpoint and is put back again
    _, out = stop_with_sigterm(root, "launcher")
    assert [e for e in events(root) if e["event"] == "resume"] and "rank 0 is done; stopping" in out
    assert len([e for e in events(root) if e["event"] == "requeued"]) == 2
    assert len(os.listdir(root / "queue" / "normal")) == 1


@pytest.mark.integration
def test_a_rank_that_cannot_start_and_a_mode_that_runs_in_one_process_are_refused_clearly(root):
    bad = run_train(root, "--once", env={"WORLD_SIZE": "2", "RANK": "5"})
    assert bad.returncode == 1 and "RANK 5 is not in a WORLD_SIZE of 2" in bad.stderr
    alone = run_train(root, "--once", env={"WORLD_SIZE": "2", "RANK": "0", "LOCAL_RANK": "0", "MASTER_ADDR": "",
                                          "MASTER_PORT": ""})
    assert alone.returncode == 1 and "MASTER_ADDR and MASTER_PORT not set" in alone.stderr
    sharded = run_train(root, "--once", env={"WORLD_SIZE": "2", "RANK": "0", "ACCELERATE_USE_FSDP": "true"})
    assert sharded.returncode == 1 and "FSDP is not supported yet" in sharded.stderr
    write_jsonl(root / "qa.jsonl", integer_sums(2, seed=1))
    evaluation = run_train(root, "--eval", root / "qa.jsonl", env={"WORLD_SIZE": "2", "RANK": "0"})
    assert evaluation.returncode == 1 and "eval runs in one process" in evaluation.stderr
