"""Fault injection and bad input: every input ends in exactly one state, nothing lost, nothing trained twice."""
import hashlib
import json
import os
import shutil
import subprocess
import sys

import pytest
from safetensors.torch import load_file

from tests.conftest import REPO, run_cli, run_train, write_config, write_jsonl
from tests.daemon_helpers import INBOX_FOLDERS, events, original
from core.faults import FAULT_POINTS
from core.synthetic import integer_sums

BAD = REPO / "tests" / "data" / "bad"


def once(root, env=None, timeout=300):
    return subprocess.run([sys.executable, str(REPO / "train.py"), "--once", "--config", str(root / "config.json")],
                          cwd=root, env={**os.environ, **(env or {})}, capture_output=True, text=True, timeout=timeout)


def entries(folder):
    return sorted(n for n in os.listdir(folder) if not n.endswith((".manifest.json", ".error.json"))) \
        if folder.exists() else []


def check_invariants(root, inputs: dict[str, str], bad: set[str]):
    """inputs: sha256 -> name of every good file dropped; bad: names that must end in failed/."""
    state = json.loads((root / "data" / "state.json").read_text())
    trained = [f["sha256"] for f in state["files_trained"]]
    assert sorted(trained) == sorted(inputs), "each good input trained exactly once"
    assert sorted(original(n) for n in entries(root / "queue" / "done")) == sorted(inputs.values())
    assert sorted(original(n) for n in entries(root / "queue" / "failed")) == sorted(bad)
    for folder in ("inbox", "inbox/practice", "queue/high", "queue/normal", "queue/low", "queue/processing",
                   "queue/practice"):
        assert not [n for n in os.listdir(root / folder) if n not in INBOX_FOLDERS], f"{folder} should be empty"
    adapters = root / "data" / "adapters"
    assert not [n for n in os.listdir(adapters) if n.startswith(".")], "no staging leftovers"
    assert os.readlink(adapters / "current") == state["current_adapter"]
    assert sorted(n for n in os.listdir(adapters) if n.startswith("v")) == sorted(state["versions"])
    load_file(adapters / "current" / "adapter_model.safetensors")  # the current adapter is whole
    assert not list((root / "data" / "checkpoints").rglob(".staging*"))


def drop_inputs(root, n=2, bad=True):
    inputs = {}
    for i in range(n):
        path = write_jsonl(root / "inbox" / f"good{i}.jsonl", integer_sums(8, seed=40 + i))
        inputs[hashlib.sha256(path.read_bytes()).hexdigest()] = path.name
    if bad:
        (root / "inbox" / "bad.jsonl").write_text('{"prompt": "a"}\n')
    return inputs, ({"bad.jsonl"} if bad else set())


@pytest.mark.integration
@pytest.mark.parametrize("point", [p for p in FAULT_POINTS
                                   if not p.startswith(("generator.", "queue.requeue", "feedback."))])
def test_a_kill_at_each_fault_point_loses_nothing_and_trains_nothing_twice(root, point):
    write_config(root, daemon={"settle_seconds": 0}, training={"save_steps": 1}, eval_steps=1000)
    inputs, bad = drop_inputs(root)
    killed = once(root, env={"SELFCORRECT_KILL_AT": point})
    assert killed.returncode == -9, f"{point} was never reached:\n{killed.stderr[-2000:]}"
    recovered = once(root)
    assert recovered.returncode == 0, recovered.stderr[-3000:]
    check_invariants(root, inputs, bad)


@pytest.mark.integration
def test_a_kill_while_putting_a_file_back_after_a_full_disk(root):
    write_config(root, daemon={"settle_seconds": 0, "retry_after_seconds": 0}, eval_steps=1000)
    inputs, bad = drop_inputs(root, n=1, bad=False)
    killed = once(root, env={"SELFCORRECT_FAIL_AT": "adapter.staged", "SELFCORRECT_KILL_AT": "queue.requeue"})
    assert killed.returncode == -9
    assert once(root).returncode == 0
    check_invariants(root, inputs, bad)


@pytest.mark.integration
@pytest.mark.parametrize("point", ["adapter.staged", "adapter.promoted", "checkpoint.staged", "queue.finish"])
def test_a_full_disk_during_a_save_promotes_nothing_partial_and_keeps_the_file(root, point):
    write_config(root, daemon={"settle_seconds": 0, "retry_after_seconds": 0.5}, training={"save_steps": 1},
                 eval_steps=1000)
    inputs, bad = drop_inputs(root, n=2, bad=False)
    out = once(root, env={"SELFCORRECT_FAIL_AT": point})
    assert out.returncode == 0, out.stderr[-3000:]
    errors = [e for e in events(root) if e["event"] == "error"]
    assert len(errors) == 1 and "disk full" in errors[0]["message"] and "retrying" in errors[0]["message"]
    check_invariants(root, inputs, bad)


@pytest.mark.integration
@pytest.mark.parametrize("point", ["status.write", "events.write"])
def test_a_full_disk_at_the_status_or_the_log_is_said_and_the_daemon_goes_on(root, point):
    """A full disk at data/status.json or the log crashed the daemon (nothing of the file in hand was lost, but
    nothing behind it trained); both are for people, so the daemon says so on the console and goes on."""
    write_config(root, daemon={"settle_seconds": 0})
    inputs, bad = drop_inputs(root)
    out = once(root, env={"SELFCORRECT_FAIL_AT": point})
    assert out.returncode == 0, out.stderr[-3000:]
    assert "No space left on device" in out.stderr and "goes on" in out.stderr
    check_invariants(root, inputs, bad)


@pytest.mark.integration
def test_a_full_disk_while_writing_a_self_correction_file_loses_no_example(root):
    write_config(root, daemon={"settle_seconds": 0}, eval_steps=1, eval_max_tokens=2, num_eval_samples=2,
                 self_correction={"min_examples": 1, "generation_interval": 1, "auto_queue": False},
                 validation={"holdout_fraction": 0.5})
    write_jsonl(root / "inbox" / "a.jsonl", integer_sums(16, seed=9))
    out = once(root, env={"SELFCORRECT_FAIL_AT": "generator.before_metadata"})
    assert out.returncode == 0, out.stderr[-3000:]
    assert any("could not write" in e["message"] for e in events(root) if e["event"] == "self-correction")
    folder = root / "data" / "self_correction"
    written = sum(len((folder / n).read_text().splitlines()) for n in os.listdir(folder) if n.endswith(".jsonl"))
    buffer = json.loads((folder / "buffer.json").read_text())
    made = 3 * buffer["stats"]["needed_correction"]
    assert written + len(buffer["buffer"]) == made, "every generated example is in a file or in the buffer"
    assert buffer["pending"] is None


@pytest.mark.integration
def test_every_bad_input_is_reported_with_its_line_and_the_next_good_file_trains(root):
    expected = json.loads((BAD / "expected.json").read_text())
    write_config(root, daemon={"settle_seconds": 0})
    (root / "inbox").mkdir()
    for name in expected:
        if not expected[name].get("generated_by_test"):
            shutil.copy(BAD / name, root / "inbox" / name)
    (root / "inbox" / "huge_line.jsonl").write_text(
        '{"prompt": "a", "response": "b"}\n' + json.dumps({"prompt": "x" * 10_000_000, "response": "y"}) + "\n")
    (root / "inbox" / "prompt_too_long.jsonl").write_text(
        json.dumps({"prompt": "ok", "response": "fine"}) + "\n" + json.dumps({"prompt": "word " * 3000, "response": "y"}) + "\n")
    expected["prompt_too_long.jsonl"] = {"line": 2, "reason": "max_seq_length"}
    good = write_jsonl(root / "inbox" / "zz_good.jsonl", integer_sums(8, seed=1))
    os.utime(good)  # newest, so it is queued after every bad file
    assert once(root).returncode == 0
    failed = root / "queue" / "failed"
    reports = {original(n)[: -len(".error.json")]: json.loads((failed / n).read_text())
               for n in os.listdir(failed) if n.endswith(".error.json")}
    assert sorted(reports) == sorted(expected), "every bad file ends in failed/ with a report"
    wrong = {name: (r["problems"][0] if r["problems"] else r) for name, r in reports.items()
             if not r["problems"] or r["problems"][0]["line"] != expected[name]["line"]
             or expected[name]["reason"] not in r["problems"][0]["reason"]}
    assert not wrong, wrong
    assert all(r["expected_shape"] for r in reports.values())
    done = [original(n) for n in entries(root / "queue" / "done")]
    assert done == ["zz_good.jsonl"]


@pytest.mark.integration
def test_a_file_over_the_size_cap_is_refused_before_it_is_read_and_the_next_trains(root):
    """Files were read whole into memory whatever their size; now past training.max_file_bytes they fail unread."""
    write_config(root, daemon={"settle_seconds": 0}, training={"max_file_bytes": 4000})
    write_jsonl(root / "inbox" / "big.jsonl", integer_sums(60, seed=3))
    write_jsonl(root / "inbox" / "feedback" / "big.jsonl", [{"prompt": "1 + 1?", "answer": "3", "rating": "bad",
                                                             "correction": "2" * 3000}] * 2)
    good = write_jsonl(root / "inbox" / "zz_good.jsonl", integer_sums(4, seed=4))
    os.utime(good)
    assert (root / "inbox" / "big.jsonl").stat().st_size > 4000
    assert once(root).returncode == 0
    failed = root / "queue" / "failed"
    reasons = [json.loads((failed / n).read_text())["problems"][0]["reason"]
               for n in os.listdir(failed) if n.endswith(".error.json")]
    assert len(reasons) == 2 and all("over training.max_file_bytes (4,000)" in r for r in reasons), reasons
    assert [original(n) for n in entries(root / "queue" / "done")] == ["zz_good.jsonl"]


@pytest.mark.integration
def test_odd_names_are_confined_to_their_folders(root):
    write_config(root, daemon={"settle_seconds": 0})
    names = ["données ü 日本.jsonl", "a" * 240 + ".jsonl", "with\nnewline.jsonl", "..hidden.jsonl", "x..y.jsonl"]
    (root / "inbox").mkdir()
    for i, name in enumerate(names):
        write_jsonl(root / "inbox" / name, integer_sums(4, seed=i))
    assert once(root).returncode == 0
    done = entries(root / "queue" / "done")
    assert len(done) == 4 and sorted(os.listdir(root / "inbox")) == ["..hidden.jsonl", *sorted(INBOX_FOLDERS)], \
        "dotfiles are never touched"
    assert all("/" not in n and "\n" not in n and len(n.encode()) <= 255 for n in done)
    assert any(original(n) == "données ü 日本.jsonl" for n in done)
    assert any(original(n) == "with_newline.jsonl" for n in done)


def test_a_name_that_is_not_utf8_or_holds_a_newline_trains_and_every_log_line_stays_one_event(root):
    write_config(root, daemon={"settle_seconds": 0})
    (root / "inbox").mkdir()
    with open(os.path.join(os.fsencode(root / "inbox"), b"bad\xff.jsonl"), "w") as f:
        f.write("".join(json.dumps(r) + "\n" for r in integer_sums(4, seed=1)))
    write_jsonl(root / "inbox" / "new\nline.jsonl", integer_sums(4, seed=2))
    write_jsonl(root / "inbox" / "zz_good.jsonl", integer_sums(4, seed=3))
    out = run_cli(root, "--once")
    assert out.returncode == 0, out.stderr
    assert sorted(original(n) for n in entries(root / "queue" / "done")) == \
        ["bad_.jsonl", "new_line.jsonl", "zz_good.jsonl"]
    for log in (root / "logs").glob("daemon_*.log"):
        lines = log.read_text(encoding="utf-8").splitlines()
        assert all(line[:2] == "20" or line.startswith((" ", "\t", "-", "=", "|", "+", "│", "╭", "╰", "🔍", "✅", "❌"))
                   for line in lines if line.strip()), [l for l in lines if l[:2] != "20"][:3]
    assert all(json.loads(line) for line in (root / "logs" / "events.jsonl").read_text().splitlines())


def test_a_damaged_or_removed_state_recovers_its_previous_commit_and_deletes_no_adapter(root):
    write_config(root, daemon={"settle_seconds": 0})
    data, queued = root / "data", root / "queue" / "normal"
    for i in range(2):
        write_jsonl(queued / f"f{i}.jsonl", integer_sums(4, seed=70 + i))
    assert run_cli(root, "--once").returncode == 0
    (data / "state.json").write_text('{"global_step": 3, "current_adap')  # a damaged commit
    status = run_cli(root, "--status")
    assert json.loads(status.stdout.splitlines()[-1])["adapter"] == "v0001"  # its previous commit
    write_jsonl(queued / "f2.jsonl", integer_sums(4, seed=72))
    out = run_cli(root, "--once")
    assert out.returncode == 0 and "cannot be read" in out.stderr and "previous commit" in out.stderr
    state = json.loads((data / "state.json").read_text())
    assert state["versions"] == ["v0001", "v0002"] and state["current_adapter"] == "v0002"
    [aside] = (data / "adapters" / ".lost").glob("*/v0002")  # the lost commit's version, moved aside, whole
    assert (aside / "adapter_model.safetensors").exists() and "moved aside, not deleted" in out.stderr

    (data / "state.json").unlink()  # removed by hand, and its previous commit too
    (data / "state.json.prev").unlink()
    assert run_cli(root, "--once").returncode == 0
    kept = sorted(p.name for p in (data / "adapters" / ".lost").glob("*/v*"))
    assert kept == ["v0001", "v0002", "v0002"], kept  # every trained version is still on disk

    (data / "state.json").write_text("garbage")
    (data / "state.json.prev").write_text("garbage")
    out = run_cli(root, "--status")
    assert out.returncode == 1 and "Keep data/adapters" in out.stderr and "remove it" not in out.stderr


@pytest.mark.integration
def test_links_fifos_and_folders_are_refused_wherever_they_stand_and_nothing_outside_is_touched(root, tmp_path):
    """A symlinked inbox/practice was followed (the folder it pointed to emptied into the queue); names that look
    queued skipped the checks (a FIFO blocked the daemon, a folder was retried at the head of its queue)."""
    write_config(root, daemon={"settle_seconds": 0})
    outside = tmp_path / "elsewhere"
    write_jsonl(outside / "keep.jsonl", [{"question": "1 + 1?", "answer": "2"}])
    (root / "inbox").mkdir()
    (root / "inbox" / "practice").symlink_to(outside, target_is_directory=True)
    normal = root / "queue" / "normal"
    normal.mkdir(parents=True)
    os.mkfifo(normal / "20260101T000000.000000000--pipe.jsonl")
    (normal / "20260101T000000.000000001--folder.jsonl").mkdir()
    write_jsonl(root / "inbox" / "zz_good.jsonl", integer_sums(4, seed=9))
    out = run_train(root, "--once", timeout=240)
    assert out.returncode == 0, out.stderr
    assert sorted(os.listdir(outside)) == ["keep.jsonl"]  # never followed
    failed = root / "queue" / "failed"
    reasons = {original(n)[: -len(".error.json")]: json.loads((failed / n).read_text())["reason"]
               for n in os.listdir(failed) if n.endswith(".error.json")}
    assert "symbolic links" in reasons["practice"] and "FIFO" in reasons["pipe.jsonl"]
    assert "folders" in reasons["folder.jsonl"]
    assert [original(n) for n in entries(root / "queue" / "done")] == ["zz_good.jsonl"]
    assert (root / "inbox" / "practice").is_dir() and not (root / "inbox" / "practice").is_symlink()


@pytest.mark.integration
def test_a_root_copied_with_its_links_followed_starts_and_trains(root, tmp_path):
    """`cp -r` (or shutil.copytree) of a root turns the `current` link into a folder: the daemon stopped at start
    with IsADirectoryError. The folder is a copy of the version state.json names, so the link replaces it."""
    write_config(root, daemon={"settle_seconds": 0})
    write_jsonl(root / "queue" / "normal" / "f0.jsonl", integer_sums(4, seed=80))
    assert run_cli(root, "--once").returncode == 0
    copy = tmp_path / "copy"
    shutil.copytree(root, copy)  # follows symlinks, as `cp -r` does
    assert (copy / "data" / "adapters" / "current").is_dir()
    write_jsonl(copy / "queue" / "normal" / "f1.jsonl", integer_sums(4, seed=81))
    out = run_cli(copy, "--once")
    assert out.returncode == 0, out.stderr
    state = json.loads((copy / "data" / "state.json").read_text())
    assert state["versions"] == ["v0001", "v0002"]
    assert os.readlink(copy / "data" / "adapters" / "current") == state["current_adapter"]


@pytest.mark.integration
def test_retention_keeps_the_current_version(root):
    write_config(root, daemon={"settle_seconds": 0}, training={"keep_versions": 2})
    for i in range(4):
        write_jsonl(root / "queue" / "normal" / f"f{i}.jsonl", integer_sums(4, seed=60 + i))
    assert once(root).returncode == 0
    state = json.loads((root / "data" / "state.json").read_text())
    assert state["current_adapter"] == "v0004" and state["versions"] == ["v0003", "v0004"]
    assert sorted(n for n in os.listdir(root / "data" / "adapters") if n.startswith("v")) == ["v0003", "v0004"]


def test_no_unsafe_loading_in_our_code():
    """Weights come from safetensors; state is JSON; nothing a user can drop is unpickled."""
    ours = [p for d in ("training", "daemon", "selfcorrect", "monitor") for p in (REPO / d).glob("*.py")]
    ours.append(REPO / "train.py")
    for path in ours:
        text = path.read_text()
        assert "pickle" not in text and "torch.load(" not in text, path
        assert "trust_remote_code=True" not in text, path
    defaults = json.loads((REPO / "config.json").read_text())
    assert defaults["model"]["trust_remote_code"] is False


@pytest.mark.integration
def test_a_full_disk_after_the_commit_keeps_the_committed_version_in_the_warm_model(tmp_path):
    """The commit stands even if the housekeeping after it fails: the next file trains on top of it,
    exactly as in a run without the failure (training here is deterministic)."""
    weights = {}
    for name, env in (("control", {}), ("faulted", {"SELFCORRECT_FAIL_AT": "adapter.committed"})):
        root = tmp_path / name
        root.mkdir()
        write_config(root, daemon={"settle_seconds": 0}, eval_steps=1000)
        inputs, bad = drop_inputs(root, n=2, bad=False)
        out = once(root, env=env)
        assert out.returncode == 0, out.stderr[-3000:]
        check_invariants(root, inputs, bad)
        weights[name] = load_file(root / "data" / "adapters" / "v0002" / "adapter_model.safetensors")
    assert any(e["event"] == "error" and "is committed" in e["message"] for e in events(tmp_path / "faulted"))
    assert all((weights["control"][k] == weights["faulted"][k]).all() for k in weights["control"])
