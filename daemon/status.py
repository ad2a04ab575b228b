"""`train.py --status`: where the daemon stands, read from disk (safe while it runs)."""
from __future__ import annotations

import json
import os
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

from core.errors import ProjectError
from core.events import duration
from core.feedback import FEEDBACK_STATE, served_stats
from core.state import TrainingState
from evaluation.ace import Playbook
from selfcorrect.policy import policy_stats

from .lock import holder_pid
from .queue import PRACTICE, PRIORITIES, ignored


REPORTS = (".manifest.json", ".error.json")


def round_outcome(r: dict) -> str:
    """What a practice round trains, in words: grpo's mean reward and skipped groups, or rest's kept solutions."""
    if r.get("method") == "grpo":
        return (f"mean reward {r['mean_reward']:.2f}, {r['kept']} samples trained by advantage, "
                f"{r['skipped_groups']} groups skipped (all alike), {r['unsolved']} unsolved")
    return f"{r['kept']} kept, {r['golden']} golden, {r['unsolved']} unsolved"

def _count(folder: Path) -> int:
    """Entries in a state folder, not counting the reports written beside them."""
    return sum(1 for n in os.listdir(folder) if not ignored(n) and not n.endswith(REPORTS)) if folder.is_dir() else 0


def _json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def _policy(root: Path) -> dict | None:
    """The reprompt policy's counts per action (per context: --report), for the status line."""
    stats = policy_stats(root)
    return None if stats is None else {k: stats[k] for k in ("algorithm", "updates", "avg_reward", "per_action")}


def _playbook(root: Path) -> dict | None:
    """The live playbook (ace.in_daemon): its size and three best lessons."""
    path = root / "data" / "ace" / "playbook.jsonl"
    if not path.exists():
        return None
    try:
        lessons = Playbook(path).lessons
    except ProjectError as e:
        return {"error": str(e).splitlines()[0]}
    best = sorted(lessons, key=lambda x: (x.score, x.updated_at), reverse=True)[:3]
    return {"lessons": len(lessons), "top": [{"text": x.text, "helpful": x.helpful, "harmful": x.harmful} for x in best]}


def collect(root: Path) -> dict:
    root = Path(root)
    q = root / "queue"
    state = TrainingState.load(root / "data" / "state.json")
    status = _json(root / "data" / "status.json")
    pid = holder_pid(root)
    depth = {p: _count(q / p) for p in PRIORITIES}
    depth.update(processing=_count(q / "processing"), done=_count(q / "done"), failed=_count(q / "failed"),
                 # the practice folder counts by its files
                 inbox=(_count(root / "inbox") - (root / "inbox" / PRACTICE).is_dir() + _count(root / "inbox" / PRACTICE)
                        - (root / "inbox" / "feedback").is_dir() + _count(root / "inbox" / "feedback")),
                 practice=_count(q / PRACTICE))
    working = status if pid and status.get("state") in ("training", "practicing") else None
    return {
        "running": pid is not None,
        "pid": pid,
        "queue": depth,
        "training": working if working and working["state"] == "training" else None,
        "practicing": working if working and working["state"] == "practicing" else None,
        "practice_rounds": (_json(root / "data" / PRACTICE / "rounds.json") or [])[-3:],
        "adapter": state.current_adapter,
        "global_step": state.global_step,
        "files_trained": len(state.files_trained),
        "last_evaluation": _json(root / "data" / "last_evaluation.json") or None,
        "self_correction": _json(root / "data" / "self_correction" / "buffer.json").get("stats"),
        "reprompt_policy": _policy(root),
        "vllm": _json(root / "data" / "vllm.json") or None,  # what the promotion hook left loaded in vLLM
        "feedback": _feedback(root),
        "ace_playbook": _playbook(root),
        "promotion": {"last": _json(root / "data" / "gate" / "last_verdict.json") or None,
                      "not_promoted": state.rejected, "head": state.head, "refused_in_a_row": state.refused_in_a_row,
                      # the engine's alarm stands while its head is still refused in a row
                      "alarm": (_json(root / "data" / "gate" / "alarm.json").get("message")
                                if state.refused_in_a_row else None)},
    }


def _feedback(root: Path) -> dict:
    """What use has sent back: the server's record and verdicts, and what the daemon made of them."""
    state = _json(root / FEEDBACK_STATE)
    return {"served": served_stats(root), "taken": state.get("stats"), "records_waiting": len(state.get("records", [])),
            "waiting_for_correction": state.get("waiting", [])[-10:]}


def show(root: Path, console: Console | None = None) -> dict:
    console = console or Console()
    s = collect(root)
    table = Table(show_header=False, box=None)
    table.add_row("daemon", f"running (pid {s['pid']})" if s["running"] else "not running")
    table.add_row("queue", ", ".join(f"{k} {v}" for k, v in s["queue"].items()))
    t = s["training"]
    if t:
        now = time.time()
        pct = f" ({100 * t.get('step', 0) / t['max_steps']:.0f}%)" if t.get("max_steps") else ""
        eta = "" if t.get("eta_seconds") is None else f", ETA {duration(t['eta_seconds'])}"
        last = f", last step {duration(now - t['last_step_at'])} ago" if t.get("last_step_at") else ""
        phase = f"{t.get('phase', 'claimed')} for {duration(now - t.get('phase_since', t.get('updated', now)))}"
        table.add_row("training", f"{t.get('file')}: {phase}; step {t.get('step', 0)}/{t.get('max_steps', '?')}"
                      f"{pct}{eta}{last}")
    elif not s["practicing"]:
        table.add_row("training", "idle")
    p = s["practicing"]
    if p:
        eta = "" if p.get("eta_seconds") is None else f", ETA {duration(p['eta_seconds'])}"
        table.add_row("practice", f"{p['file']}: sampling round {p['round']}/{p['rounds']} with "
                      f"{p.get('adapter') or 'base'}, {p.get('done', 0)}/{p['problems']} problems{eta}")
    for r in s["practice_rounds"]:
        table.add_row("practice round", f"{r['file']} #{r['round']} with {r['adapter']}: pass@1 {r['pass_at_1']:.0%}, "
                      f"pass@{r['k']} {r['pass_at_k']:.0%} of {r['problems']}; " + round_outcome(r))
    head = s["promotion"]["head"]
    table.add_row("adapter", f"{s['adapter'] or 'none yet'} served"
                  + (f", training goes on from {head or 'a fresh adapter'} (the head)" if head != s["adapter"] else "")
                  + f" (global step {s['global_step']}, {s['files_trained']} files trained)")
    ev = s["last_evaluation"]
    table.add_row("last evaluation", f"accuracy {ev['accuracy']:.0%} at step {ev['step']}" if ev else "none yet")
    sc = s["self_correction"]
    table.add_row("self-correction", f"{sc['files_generated']} files, {sc['examples_generated']} examples, "
                  f"{sc['needed_correction']}/{sc['total_evals']} answers needed correction" if sc else "nothing yet")
    rp = s["reprompt_policy"]
    if rp:
        table.add_row("reprompt policy", f"{rp['algorithm']}, {rp['updates']} updates, mean reward "
                      f"{rp['avg_reward']:+.3f}; " + ", ".join(f"{a} {v['taken']}x ({v['mean_reward']:+.2f})"
                                                             for a, v in rp["per_action"].items()))
    pb = s["ace_playbook"]
    if pb:
        table.add_row("ace playbook", pb.get("error") or f"{pb['lessons']} lessons; best: " + "; ".join(
            f"{x['text']} (+{x['helpful']}/-{x['harmful']})" for x in pb["top"]))
    gate = s["promotion"]
    if gate["last"]:
        g = gate["last"]
        table.add_row("promotion", f"{g['candidate']} {'promoted' if g['promoted'] else 'NOT promoted'} "
                      f"({g['file']}): {g['reason']}")
    if gate["not_promoted"]:
        table.add_row("kept, not promoted", ", ".join(gate["not_promoted"]))
    if gate["alarm"]:
        table.add_row("ALARM", gate["alarm"])
    fb = s["feedback"]
    served, taken = fb["served"], fb["taken"]
    if served["exchanges"] or served["feedback"] or taken:
        table.add_row("use", f"{served['exchanges']} exchanges kept ({served['exchanges_bytes'] / 2**20:.1f} MiB), "
                      f"{served['feedback']} verdicts" + (
                          f"; taken {taken['verdicts']}: {taken['corrections']} corrections, {taken['good']} good, "
                          f"{taken['bad']} bad; {taken['files']} training files" if taken else "")
                      + (f"; {len(fb['waiting_for_correction'])} 'bad' answers wait for a correction"
                         if fb["waiting_for_correction"] else ""))
    if s["vllm"]:
        table.add_row("vLLM holds", f"{', '.join(s['vllm']['loaded']) or 'nothing of ours'} ({s['vllm']['url']})")
    console.print(table)
    print(json.dumps(s, default=str))
    return s
