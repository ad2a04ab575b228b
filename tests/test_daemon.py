"""The daemon, driven as a user drives it: real folders, real subprocesses, real signals."""
import hashlib
import json
import os
import signal
import time

import pytest

from tests.conftest import run_train, write_config, write_jsonl, run_cli
from tests.daemon_helpers import INBOX_FOLDERS, events, manifests, original, wait_event
from core.synthetic import integer_sums


def drop(root, name, records, folder="inbox"):
    """The documented safe way: write a hidden file, then rename it into place."""
    target = root / folder / name
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name("." + name + ".tmp")
    write_jsonl(tmp, records)
    os.replace(tmp, target)
    return target


def state(root):
    return json.loads((root / "data" / "state.json").read_text())


def test_priorities_and_fifo_and_files_present_before_start(root):
    for i, (folder, name) in enumerate([("queue/low", "l1.jsonl"), ("queue/normal", "n1.jsonl"), ("inbox", "n2.jsonl"),
                                        ("queue/high", "h1.jsonl"), ("queue/high", "h2.jsonl")]):
        drop(root, name, integer_sums(4, seed=i), folder)
        time.sleep(0.02)
    write_config(root, daemon={"settle_seconds": 0})
    assert run_cli(root, "--once").returncode == 0
    order = [original(e["file"]) for e in events(root) if e["event"] == "done"]
    assert order == ["h1.jsonl", "h2.jsonl", "n1.jsonl", "n2.jsonl", "l1.jsonl"]
    assert [e for e in events(root) if e["event"] == "model" and "loaded" in e["message"]].__len__() == 1
    assert state(root)["global_step"] == 5 and len(state(root)["files_trained"]) == 5


def test_duplicate_content_is_not_trained_twice(root):
    data = integer_sums(8, seed=1)
    drop(root, "first.jsonl", data, "queue/normal")
    drop(root, "again.jsonl", data, "queue/normal")
    assert run_cli(root, "--once").returncode == 0
    ms = {original(m["name"]): m for m in manifests(root)}
    assert ms["first.jsonl"]["adapter"] == "v0001"
    trained = state(root)["files_trained"][0]
    assert ms["first.jsonl"]["tokens"] == trained["tokens"] > ms["first.jsonl"]["supervised_tokens"] \
        == trained["supervised_tokens"] > 0
    assert ms["again.jsonl"]["duplicate_of"]["name"] == "first.jsonl"
    assert len(state(root)["files_trained"]) == 1


@pytest.mark.integration
def test_a_renamed_in_file_is_picked_up_while_running_and_the_model_stays_warm(root, spawn):
    proc = spawn(root)
    try:
        wait_event(root, "daemon", message="watching")
        for i in range(3):
            drop(root, f"f{i}.jsonl", integer_sums(4, seed=i))
            wait_event(root, "done", count=i + 1, timeout=60)
        loads = [e for e in events(root) if e["event"] == "model"]
        assert len(loads) == 1, "the model is loaded once per daemon, not per file"
        assert state(root)["global_step"] == 3
    finally:
        proc.terminate()
        assert proc.wait(timeout=60) == 0


@pytest.mark.integration
def test_a_slow_writer_is_never_picked_up_half_written(root, spawn):
    write_config(root, daemon={"settle_seconds": 1.0, "scan_interval_seconds": 0.2})
    proc = spawn(root)
    try:
        wait_event(root, "daemon", message="watching")
        lines = integer_sums(12, seed=3)
        with open(root / "inbox" / "slow.jsonl", "w") as f:  # written in place, for longer than settle time
            for r in lines:
                text = json.dumps(r) + "\n"
                for half in (text[: len(text) // 2], text[len(text) // 2:]):
                    f.write(half)
                    f.flush()
                    time.sleep(0.15)
        done = wait_event(root, "done", timeout=60)
        assert done[0]["examples"] + done[0]["heldout"] == 12
        assert not [e for e in events(root) if e["event"] == "failed"]
    finally:
        proc.terminate()
        proc.wait(timeout=60)


@pytest.mark.integration
def test_a_second_daemon_on_the_same_root_is_refused(root, spawn):
    proc = spawn(root)
    try:
        wait_event(root, "daemon", message="watching")
        second = run_train(root, "--daemon", timeout=120)
        assert second.returncode == 1 and f"pid {proc.pid}" in second.stderr and "already working" in second.stderr
        status = run_cli(root, "--status")
        assert json.loads(status.stdout.splitlines()[-1])["pid"] == proc.pid
    finally:
        proc.terminate()
        proc.wait(timeout=60)


@pytest.mark.integration
def test_sigterm_saves_a_checkpoint_requeues_and_the_restart_resumes_mid_file(root, spawn):
    write_config(root, training={"save_steps": 5, "logging_steps": 1})
    drop(root, "long.jsonl", integer_sums(200, seed=5), "queue/normal")  # 180 trained, 45 steps
    proc = spawn(root)
    wait_event(root, "progress", count=12, timeout=120)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=120) == 0
    requeued = wait_event(root, "requeued", timeout=1)[0]
    stopped_at = int(requeued["message"].split("stopped at step ")[1].split(",")[0])
    assert [original(n) for n in os.listdir(root / "queue" / "normal")] == ["long.jsonl"]
    assert not os.listdir(root / "queue" / "processing")
    ckpt = [p.name for p in (root / "data" / "checkpoints").rglob("checkpoint-*")]
    assert ckpt == [f"checkpoint-{stopped_at}"]

    assert run_cli(root, "--once").returncode == 0
    resumed = [e for e in events(root) if e["event"] == "resume"]
    assert resumed and f"checkpoint-{stopped_at}" in resumed[0]["message"]
    first_step = min(e["global_step"] for e in events(root) if e["event"] == "progress"
                     and e["time"] > resumed[0]["time"])
    assert first_step == stopped_at + 1, "training continued from the checkpoint, not from the start"
    assert state(root)["global_step"] == 45 and len(state(root)["files_trained"]) == 1  # 20 of 200 held out
    assert not list((root / "data" / "checkpoints").rglob("checkpoint-*"))


@pytest.mark.integration
def test_a_second_sigterm_exits_at_once_and_the_restart_recovers(root, spawn):
    # Long optimizer steps, so the graceful stop (which waits for the step to end) is still
    # under way when the second signal comes; two signals sent back to back would coalesce.
    write_config(root, training={"gradient_accumulation_steps": 30})
    drop(root, "long.jsonl", integer_sums(2000, seed=6), "queue/normal")
    proc = spawn(root)
    wait_event(root, "progress", count=1, timeout=120)
    proc.send_signal(signal.SIGTERM)
    time.sleep(0.5)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=30) == 128 + signal.SIGTERM
    assert os.listdir(root / "queue" / "processing")  # left mid-flight, as a power cut would
    restart = spawn(root)
    try:
        wait_event(root, "recovered", timeout=60)
        wait_event(root, "claimed", count=2, timeout=60)
    finally:
        restart.kill()
        restart.wait()


@pytest.mark.integration
def test_config_edits_while_running_valid_applied_invalid_rejected(root, spawn):
    write_config(root, daemon={"scan_interval_seconds": 0.2})
    proc = spawn(root)
    try:
        wait_event(root, "daemon", message="watching")
        cfg = json.loads((root / "config.json").read_text())
        cfg["self_correction"] = {"enabled": False}
        tmp = root / "config.json.new"
        tmp.write_text(json.dumps(cfg))
        os.replace(tmp, root / "config.json")  # editors save by rename
        changed = wait_event(root, "config", message="self_correction.enabled: True -> False", timeout=30)
        assert changed
        (root / "config.json").write_text('{"training": {"learning_rate": -1}, "bogus": 1')
        bad = wait_event(root, "config", message="invalid edit", timeout=30)[0]
        assert "line 1" in bad["message"]
        (root / "config.json").write_text('{"training": {"learning_rate": -1}, "bogus": 1}')
        # the watcher may report the first bad file more than once, so wait for the second one's message
        bad = wait_event(root, "config", message="training.learning_rate: must be > 0", timeout=30)[0]
        assert "invalid edit" in bad["message"] and "bogus: unknown key" in bad["message"]
        drop(root, "after.jsonl", integer_sums(4, seed=7))
        wait_event(root, "done", timeout=60)  # still running, on the last good config
    finally:
        proc.terminate()
        proc.wait(timeout=60)


@pytest.mark.integration
def test_sigkill_at_random_moments_loses_no_file_and_trains_none_twice(root, spawn):
    import random

    write_config(root, daemon={"settle_seconds": 0}, training={"save_steps": 2})
    inputs = {}
    for i in range(6):
        records = integer_sums(8 + 4 * i, seed=100 + i)
        path = drop(root, f"f{i}.jsonl", records)
        inputs[hashlib.sha256(path.read_bytes()).hexdigest()] = path.name
    rng = random.Random(0)
    for trial in range(5):
        proc = spawn(root)
        # a kill while it imports would test nothing: each lands within 2 s of the model being loaded, when the
        # daemon admits, claims, trains, checkpoints and commits
        wait_event(root, "model", count=trial + 1, timeout=120)
        time.sleep(rng.uniform(0.0, 2.0))
        proc.kill()
        proc.wait()
    assert run_cli(root, "--once").returncode == 0
    trained = [f["sha256"] for f in state(root)["files_trained"]]
    assert sorted(trained) == sorted(inputs), "every input trained exactly once"
    done = [n for n in os.listdir(root / "queue" / "done") if not n.endswith(".manifest.json")]
    assert sorted(original(n) for n in done) == sorted(inputs.values())
    for folder in ("inbox", "queue/normal", "queue/processing", "queue/failed"):
        assert not [n for n in os.listdir(root / folder) if not n.startswith(".") and n not in INBOX_FOLDERS], folder


def test_a_dropped_file_is_parsed_once_and_read_again_only_if_it_changed(root):
    from core.config import load_config
    from core.events import EventLog
    from daemon.intake import Intake
    from daemon.queue import Queue

    queue = Queue(root)
    intake = Intake(queue, EventLog(root / "logs"), config=load_config(root / "config.json"))
    drop(root, "a.jsonl", integer_sums(4, seed=1))
    drop(root, "b.jsonl", integer_sums(4, seed=2))
    assert intake.scan(now=time.time() + 60) == 2
    first, second = queue.claim(), queue.claim()
    examples = intake.parsed(first)
    assert [e.prompt for e in examples] == [r["prompt"] for r in integer_sums(4, seed=1)]
    assert intake.parsed(first) is None, "handed over once"
    with open(second.path, "a") as f:  # changed after admission: the claim must read it again
        f.write(json.dumps({"prompt": "p", "response": "r"}) + "\n")
    assert intake.parsed(second) is None


@pytest.mark.integration
def test_a_working_daemon_says_so_within_seconds_and_status_tells_the_stage(root, spawn):
    """Every stage of a file is a `phase` line; while it trains, a line comes at least every `quiet_seconds` even
    with no logging step due, and --status tells the phase, the step of the total, the ETA and the last step's age."""
    write_config(root, training={"logging_steps": 100_000, "gradient_accumulation_steps": 8, "epochs_per_file": 3,
                                 "quiet_seconds": 4, "promotion": {"enabled": True}})
    drop(root, "small.jsonl", integer_sums(40, seed=3), "queue/high")
    drop(root, "long.jsonl", integer_sums(1500, seed=4), "queue/normal")
    proc = spawn(root)
    try:
        wait_event(root, "done", timeout=120)
        stages = [e["phase"] for e in events(root) if e["event"] == "phase"]
        # the gate answers with the candidate and the current version in one phase, the same batches for both
        assert stages[:4] == ["encoding", "training", "promotion", "saving"], stages
        wait_event(root, "phase", phase="training", count=2, timeout=120)
        status = wait_for_status(root, lambda t: t.get("step", 0) >= 2)
        assert status["phase"] == "training" and status["file"] == "long.jsonl" and status["max_steps"] > 50
        assert time.time() - status["last_step_at"] < 60 and status["eta_seconds"] is not None
        shown = run_cli(root, "--status").stdout
        assert "long.jsonl: training for" in shown and f"/{status['max_steps']}" in shown and "ETA" in shown
        line = wait_event(root, "step", file="long.jsonl", timeout=90)[0]  # no logging step is due: the quiet line
        assert line["file"] == "long.jsonl" and line["max_steps"] == status["max_steps"] and "ETA" in line["message"]
    finally:
        proc.terminate()
        proc.wait(timeout=120)


def wait_for_status(root, ready, timeout=120):
    from tests.daemon_helpers import wait_for

    def training():
        t = json.loads(run_cli(root, "--status").stdout.splitlines()[-1])["training"]
        return t if t and ready(t) else None
    return wait_for(training, timeout, every=1)
