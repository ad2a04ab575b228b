"""Daemon latency: pickup time, model loads, and per-file overhead, on the real daemon in a subprocess.

    python bench/daemon_latency.py [--files 20] [--skip-default-model]

1. Pickup latency, tiny-random, model warm: the time from an atomic rename into
   inbox/ to the end of the file's first optimizer step (its first progress
   event; logging every step), over `--files` files dropped one at a time.
2. Model loads across those consecutive files (the daemon's "model" events), and the
   idle daemon's CPU use afterwards (its own CPU time from /proc, over `--idle-seconds`).
3. Overhead per file with the default model: the share of a file's wall time
   (claim to done) spent outside the Trainer's training loop (validation,
   hashing, encoding, moves, adapter save).
Ends with one JSON line of the figures.
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from core.synthetic import integer_sums  # noqa: E402


def events(root: Path) -> list[dict]:
    path = root / "logs" / "events.jsonl"
    return [json.loads(l) for l in path.read_text().splitlines()] if path.exists() else []


def wait(root: Path, kind: str, count: int, timeout: float = 600) -> list[dict]:
    deadline = time.time() + timeout
    while time.time() < deadline:
        hits = [e for e in events(root) if e["event"] == kind]
        if len(hits) >= count:
            return hits
        time.sleep(0.02)
    sys.exit(f"timed out waiting for {count} {kind} events in {root}")


def start(root: Path, model: str, **training) -> subprocess.Popen:
    # The promotion gate is off: this measures the daemon's own overhead; the gate's evaluation per file is
    # logged with its seconds in every `promotion` event.
    config = {"model": {"name_or_path": model, "cache_dir": str(REPO / "data" / "models")},
              "training": {"batch_size": 4, "logging_steps": 1, "save_steps": 10_000, "promotion": {"enabled": False},
                           **training},
              "daemon": {"scan_interval_seconds": 2.0}}
    (root / "config.json").write_text(json.dumps(config))
    return subprocess.Popen([sys.executable, str(REPO / "train.py"), "--daemon", "--root", str(root), "--config",
                             str(root / "config.json")], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def drop(root: Path, name: str, records: list[dict]) -> float:
    tmp = root / "inbox" / f".{name}.tmp"
    tmp.parent.mkdir(parents=True, exist_ok=True)
    tmp.write_text("".join(json.dumps(r) + "\n" for r in records))
    t = time.time()
    os.replace(tmp, root / "inbox" / name)
    return t


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process, from /proc (Linux)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def pickup(n_files: int, idle_seconds: float) -> dict:
    root = Path(tempfile.mkdtemp(prefix="bench-latency-"))
    proc = start(root, "tiny-random")
    try:
        wait(root, "daemon", 1, timeout=300)
        time.sleep(1.0)  # let the watcher settle
        latencies = []
        for i in range(n_files):
            dropped = drop(root, f"f{i:03d}.jsonl", integer_sums(8, seed=i))
            first_step = wait(root, "progress", 2 * i + 1)[2 * i]  # 8 examples / batch 4 = 2 steps per file
            latencies.append(first_step["time"] - dropped)
            wait(root, "done", i + 1)
        loads = sum(1 for e in events(root) if e["event"] == "model")
        time.sleep(2.0)  # let the last file's work finish
        before = cpu_seconds(proc.pid)
        time.sleep(idle_seconds)
        idle_cpu = (cpu_seconds(proc.pid) - before) / idle_seconds
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=120)
    q = statistics.quantiles(latencies, n=20, method="inclusive")  # stays within the measured range
    return {"pickup_p50_s": round(statistics.median(latencies), 3), "pickup_p95_s": round(q[18], 3),
            "pickup_max_s": round(max(latencies), 3), "files": n_files, "model_loads": loads,
            "idle_cpu_percent": round(100 * idle_cpu, 2)}


def overhead() -> dict:
    root = Path(tempfile.mkdtemp(prefix="bench-overhead-"))
    proc = start(root, "smollm2-135m-instruct", batch_size=8)
    try:
        wait(root, "daemon", 1, timeout=600)
        drop(root, "default.jsonl", integer_sums(64, seed=7))
        done = wait(root, "done", 1, timeout=1800)[0]
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=300)
    share = (done["seconds"] - done["loop_seconds"]) / done["seconds"]
    return {"default_model_file_seconds": done["seconds"], "default_model_loop_seconds": done["loop_seconds"],
            "overhead_share": round(share, 4)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--files", type=int, default=20)
    p.add_argument("--idle-seconds", type=float, default=20.0, help="how long to measure the idle daemon's CPU use")
    p.add_argument("--skip-default-model", action="store_true", help="skip the overhead run (minutes on a CPU)")
    args = p.parse_args()
    figures = pickup(args.files, args.idle_seconds)
    print(f"pickup latency over {args.files} files: p50 {figures['pickup_p50_s']}s, p95 {figures['pickup_p95_s']}s; "
          f"model loads: {figures['model_loads']}; idle CPU {figures['idle_cpu_percent']}% of one core", flush=True)
    if not args.skip_default_model:
        figures.update(overhead())
        print(f"default model, 64 examples: {figures['default_model_file_seconds']:.1f}s per file, "
              f"{100 * figures['overhead_share']:.1f}% outside the training loop", flush=True)
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
