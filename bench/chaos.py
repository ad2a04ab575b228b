"""Chaos: SIGKILL the real daemon at random moments and at every named fault point, then check nothing was lost.

    python bench/chaos.py [--trials 300] [--seed 0]

One root, the tiny-random model, self-correction on (so generated files are
written while kills happen). Each trial drops a new file, starts the daemon, and
kills it either after a random delay or at a named fault point
(SELFCORRECT_KILL_AT), cycling through all of them (for `queue.requeue`, which
lies on the graceful-stop path, a SIGTERM comes first). At the end a clean
`--once` drains the queue, and the invariants are checked:

- every input ends in exactly one final state (done/ or failed/): files_lost = 0;
- no content hash is trained twice (state.json and the adapter lineage): trained_twice = 0;
- every trained file was read whole (trained + held-out + gate examples = lines written): partial_reads = 0;
- every hostile input (a non-UTF-8 or newline name, a huge integer, deep nesting, a symlink, a FIFO, a folder)
  ends in failed/ and every feedback file is taken: hostile_not_failed = 0, feedback_not_taken = 0;
- every generated self-correction example is in a file or in the buffer: examples_lost = 0;
- the current adapter loads.
Recovery time is the time from a restart to the daemon watching its folders.
Ends with one JSON line of the figures.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from core.faults import FAULT_POINTS, KILL_ENV  # noqa: E402
from core.synthetic import integer_sums  # noqa: E402


def events(root: Path) -> list[dict]:
    path = root / "logs" / "events.jsonl"
    out = []
    for line in path.read_text().splitlines() if path.exists() else []:
        try:
            out.append(json.loads(line))
        except ValueError:
            pass  # a line cut by the kill
    return out


def drop(root: Path, name: str, records: list[dict], inputs: dict) -> None:
    tmp = root / "inbox" / f".{name}.tmp"
    tmp.write_text("".join(json.dumps(r) + "\n" for r in records))
    inputs[hashlib.sha256(tmp.read_bytes()).hexdigest()] = (name, len(records))
    os.replace(tmp, root / "inbox" / name)


HOSTILE = ("name", "newline", "huge_int", "deep", "symlink", "fifo", "folder")


def drop_hostile(root: Path, k: int) -> bytes:
    """One input of each hostile kind in turn, under a name of its own (bytes: some names are not UTF-8)."""
    kind, inbox = HOSTILE[k % len(HOSTILE)], os.fsencode(root / "inbox")
    name = {"name": b"bad\xff%d.jsonl", "newline": b"bad\n%d.jsonl"}.get(kind, f"{kind}_%d.jsonl".encode()) % k
    path = os.path.join(inbox, name)
    if kind in ("name", "newline"):
        Path(os.fsdecode(path)).write_text('{"prompt": "no response"}\n')
    elif kind == "huge_int":
        Path(os.fsdecode(path)).write_text('{"prompt": "a", "response": "b", "n": ' + "9" * 5000 + "}\n")
    elif kind == "deep":
        Path(os.fsdecode(path)).write_text('{"prompt": "a", "response": ' + "[" * 100_000 + "]" * 100_000 + "}\n")
    elif kind == "symlink":
        os.symlink(REPO / "README.md", path)
    elif kind == "fifo":
        os.mkfifo(path)
    else:
        os.mkdir(path)
    return name


def drop_feedback(root: Path, k: int) -> None:
    folder = root / "inbox" / "feedback"
    folder.mkdir(parents=True, exist_ok=True)
    tmp = folder / f".fb{k}.tmp"
    tmp.write_text(json.dumps({"prompt": f"What is {k} + 1?", "answer": str(k), "rating": "bad",
                               "correction": f"{k} + 1 = {k + 1}."}) + "\n")
    os.replace(tmp, folder / f"fb{k}.jsonl")


def daemon(root: Path, args: list[str], env: dict | None = None) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, str(REPO / "train.py"), *args, "--config", str(root / "config.json")],
                            cwd=root, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env={**os.environ, **(env or {})})


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--trials", type=int, default=300)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    rng = random.Random(args.seed)
    root = Path(tempfile.mkdtemp(prefix="chaos-"))
    (root / "inbox").mkdir()
    (root / "config.json").write_text(json.dumps({
        "model": {"name_or_path": "tiny-random", "cache_dir": str(REPO / "data" / "models")},
        "eval_steps": 2, "eval_max_tokens": 4, "num_eval_samples": 2,
        "self_correction": {"min_examples": 3, "generation_interval": 4, "max_pending_files": 3},
        "validation": {"holdout_fraction": 0.2},
        "training": {"batch_size": 4, "save_steps": 2, "logging_steps": 1},
        "daemon": {"settle_seconds": 0.5, "scan_interval_seconds": 0.5}}))
    inputs: dict[str, tuple[str, int]] = {}
    bad = {"bad_0.jsonl"}
    (root / "inbox" / "bad_0.jsonl").write_text('{"prompt": "no response"}\n')
    points = [p for p in FAULT_POINTS]
    recoveries, reached_points, counter = [], set(), 0
    started = time.time()
    hostile: list[bytes] = []
    feedback_dropped = 0
    for trial in range(args.trials):
        # keep work coming, so every trial has something to train, write and move
        drop(root, f"f{counter:04d}.jsonl", integer_sums(rng.randint(4, 24), seed=1000 + counter), inputs)
        counter += 1
        if trial % 4 == 0:  # and now and then an input from outside that must fail alone, or a verdict file
            hostile.append(drop_hostile(root, trial // 4))
        if trial % 4 == 2:
            drop_feedback(root, trial)
            feedback_dropped += 1
        targeted = trial % 2 == 1
        point = points[(trial // 2) % len(points)] if targeted else None
        env = {KILL_ENV: point} if targeted else {}
        before = len(events(root))
        t0 = time.time()
        proc = daemon(root, ["--daemon"], env)
        watching, termed = None, False
        deadline = t0 + (15.0 if targeted else rng.uniform(0.3, 6.0))
        while time.time() < deadline and proc.poll() is None:
            if watching is None and any(e["event"] == "daemon" and "watching" in e["message"] for e in events(root)[before:]):
                watching = time.time() - t0
            if point == "queue.requeue" and watching is not None and not termed and time.time() - t0 > watching + 1.0:
                proc.send_signal(signal.SIGTERM)  # a graceful stop puts the file back: the point is on that path
                termed = True
            time.sleep(0.05)
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
        elif targeted and proc.returncode == -9:
            reached_points.add(point)
        proc.wait()
        if watching is not None:
            recoveries.append(watching)
        if trial % 25 == 0:
            print(f"trial {trial}: {len(inputs)} files dropped, {len(reached_points)} fault points reached, "
                  f"{time.time() - started:.0f}s", flush=True)

    drain = daemon(root, ["--once"])
    drain.wait(timeout=1800)
    state = json.loads((root / "data" / "state.json").read_text())
    trained = [f["sha256"] for f in state["files_trained"]]
    done = {}
    for m in (root / "queue" / "done").glob("*.manifest.json"):
        d = json.loads(m.read_text())
        done[d["sha256"]] = d
    failed = [n.split("--", 1)[1] for n in os.listdir(root / "queue" / "failed") if not n.endswith(".error.json")]
    generated = {h for h, d in done.items() if h not in inputs}  # self-correction files
    files_lost = sum(1 for h in inputs if h not in done) + len(bad - set(failed))
    trained_twice = len(trained) - len(set(trained))
    partial = sum(1 for h, (_, n) in inputs.items() if h in done and "duplicate_of" not in done[h]
                  and done[h]["examples"] + done[h].get("heldout", 0) + done[h].get("gate_heldout", 0) != n)
    # a hostile name is made safe on its way to failed/, so they are counted, not matched: only they and `bad` fail
    hostile_not_failed = len(hostile) + len(bad) - len(failed)
    feedback_not_taken = sum(1 for _ in (root / "inbox" / "feedback").iterdir())
    taken = len(list((root / "data" / "feedback" / "taken").iterdir())) if (root / "data" / "feedback" / "taken").exists() else 0
    sc = root / "data" / "self_correction"
    buffer = json.loads((sc / "buffer.json").read_text())
    in_files = sum(len((sc / n).read_text().splitlines()) for n in os.listdir(sc) if n.startswith("self_correction_step") and n.endswith(".jsonl"))
    p = buffer.get("pending")
    pending = len(p["records"]) if p and not (sc / p["name"]).exists() else 0
    made = 3 * buffer["stats"]["needed_correction"]  # three records per wrong answer
    examples_lost = made - (in_files + len(buffer["buffer"]) + pending)
    from safetensors.torch import load_file

    load_file(root / "data" / "adapters" / "current" / "adapter_model.safetensors")
    owned = {"practice", "feedback"}  # folders of the daemon's own under inbox/, not entries left behind
    leftovers = sum(len([n for n in os.listdir(root / d) if d != "inbox" or n not in owned])
                    for d in ("inbox", "queue/processing", "queue/high", "queue/normal", "queue/low"))
    figures = {"trials": args.trials, "kill_points": len(reached_points), "kill_points_total": len(points),
               "files_dropped": len(inputs) + len(bad), "files_lost": files_lost, "trained_twice": trained_twice,
               "partial_reads": partial, "examples_lost": examples_lost, "generated_files_trained": len(generated),
               "examples_generated": buffer["stats"]["examples_generated"], "leftover_entries": leftovers,
               "hostile_dropped": len(hostile), "hostile_not_failed": hostile_not_failed,
               "feedback_files_dropped": feedback_dropped, "feedback_not_taken": feedback_not_taken,
               "feedback_files_taken": taken,
               "recovery_p50_s": round(statistics.median(recoveries), 2) if recoveries else None,
               "recovery_max_s": round(max(recoveries), 2) if recoveries else None,
               "seconds": round(time.time() - started)}
    print(f"{args.trials} trials, {len(reached_points)}/{len(points)} fault points reached: files lost {files_lost}, "
          f"trained twice {trained_twice}, partial reads {partial}, examples lost {examples_lost}, hostile inputs "
          f"not failed {hostile_not_failed}/{len(hostile)}, feedback files not taken {feedback_not_taken}")
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
