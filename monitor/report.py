"""`train.py --report`: logs/report.png and logs/report.html from logs/events.jsonl.

Evaluation accuracy (first and second attempt), practice rounds' pass@1 and pass@K, and
training loss against the global step, with a mark where each self-correction file finished training.
"""
from __future__ import annotations

import base64
import html
import json
from pathlib import Path

from selfcorrect.policy import policy_stats

CONTEXTS_SHOWN = 20  # the reprompt policy's most visited contexts in the report


def read_events(root: Path) -> list[dict]:
    path = Path(root) / "logs" / "events.jsonl"
    if not path.exists():
        return []
    out = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            out.append(json.loads(line))
        except ValueError:
            continue  # a line cut by a crash mid-write
    return out


def curve(events: list[dict]) -> dict:
    """What the report draws: the loss and the evaluations by global step, and where generated files finished."""
    # A step can appear twice when a killed run is resumed; the later event is the one that counts.
    losses = sorted({e["global_step"]: e["loss"] for e in events if e["event"] == "progress"}.items())
    evals = sorted({e["step"]: e for e in events if e["event"] == "evaluation"}.values(), key=lambda e: e["step"])
    sc_done = [e["global_step"] for e in events if e["event"] == "done" and e.get("origin") == "selfcorrect"]
    practice = [e for e in events if e["event"] == "practice" and e.get("summary")]
    return {"loss": losses, "evaluations": evals, "self_correction_trained": sc_done, "practice_rounds": practice}


def write_report(root: Path) -> tuple[Path, Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    drawn = curve(read_events(root))
    losses, evals, sc_done = drawn["loss"], drawn["evaluations"], drawn["self_correction_trained"]

    fig, (top, bottom) = plt.subplots(2, 1, figsize=(10, 7), sharex=True)
    if evals:
        top.plot([e["step"] for e in evals], [100 * e["accuracy"] for e in evals], "o-", label="first attempt")
        second = [(e["step"], 100 * e["second_attempt_accuracy"]) for e in evals if e.get("second_attempt_accuracy") is not None]
        if second:
            top.plot(*zip(*second), "s--", label="second attempt (with error codes)")
    if drawn["practice_rounds"]:  # sampled at the step the round's adapter had reached
        rounds = drawn["practice_rounds"]
        top.plot([r["step"] for r in rounds], [100 * r["pass_at_1"] for r in rounds], "^", label="practice pass@1")
        top.plot([r["step"] for r in rounds], [100 * r["pass_at_k"] for r in rounds], "v",
                 label=f"practice pass@{rounds[-1]['k']}")
    top.set_ylabel("evaluation accuracy (%)")
    top.set_ylim(-2, 102)
    if losses:
        bottom.plot(*zip(*losses), "-", color="tab:gray", label="training loss")
    bottom.set_ylabel("loss")
    bottom.set_xlabel("global step")
    for ax in (top, bottom):
        for k, step in enumerate(sc_done):
            ax.axvline(step, color="tab:orange", alpha=0.5, lw=1, label="self-correction file trained" if k == 0 else None)
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(loc="best")
    fig.suptitle("Training and live evaluation")
    fig.tight_layout()
    logs = Path(root) / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    png = logs / "report.png"
    fig.savefig(png, dpi=110)
    plt.close(fig)

    def percent(value) -> str:
        return "" if value is None else f"{100 * value:.1f}%"

    rows = "".join(
        f"<tr><td>{e['step']}</td><td>{percent(e['accuracy'])}</td><td>{percent(e.get('second_attempt_accuracy'))}</td>"
        f"<td>{e['n']}</td><td>{html.escape(', '.join(f'{k} {v}' for k, v in e.get('codes', {}).items()))}</td></tr>"
        for e in evals)
    practice = "".join(
        f"<tr><td>{r['step']}</td><td>{html.escape(r['file'])}</td><td>{r['round']}</td><td>{r['adapter']}</td>"
        f"<td>{r.get('method', 'rest')}</td><td>{percent(r['pass_at_1'])}</td><td>{percent(r['pass_at_k'])} "
        f"(K={r['k']})</td><td>{r.get('mean_reward', '')}</td><td>{r['kept']}</td><td>{r['golden']}</td>"
        f"<td>{r.get('skipped_groups', '')}</td><td>{r['unsolved']}</td></tr>" for r in drawn["practice_rounds"])
    if practice:
        practice = (f"<h2>Practice rounds</h2><table border=1 cellpadding=4><tr><th>step</th><th>file</th><th>round</th>"
                    f"<th>adapter</th><th>method</th><th>pass@1</th><th>pass@K (solved at least once)</th>"
                    f"<th>mean reward</th><th>trained</th><th>golden</th><th>skipped groups</th><th>unsolved</th></tr>"
                    f"{practice}</table>")
    policy = _policy_tables(root)
    analysis = ""
    analyses = sorted(Path(root).glob("data/analysis/*/failures.html"), key=lambda p: p.stat().st_mtime)
    if analyses:  # the newest `--analyze` run (its folder may be elsewhere with --out; those are not found here)
        name = analyses[-1].parent.name
        analysis = (f"<p>Last failure analysis: <a href='../data/analysis/{html.escape(name)}/failures.html'>"
                     f"{html.escape(name)}</a></p>")
    page = (f"<!doctype html><meta charset='utf-8'><title>Training report</title>"
            f"<h1>Training report</h1><img src='data:image/png;base64,{base64.b64encode(png.read_bytes()).decode()}'>"
            f"<p>{len(losses)} loss points, {len(evals)} evaluations, {len(sc_done)} self-correction files trained.</p>"
            f"<table border=1 cellpadding=4><tr><th>step</th><th>accuracy</th><th>second attempt</th><th>n</th>"
            f"<th>error codes</th></tr>{rows}</table>{practice}{policy}{analysis}")
    page_path = logs / "report.html"
    page_path.write_text(page, encoding="utf-8")
    return png, page_path


def _policy_tables(root: Path) -> str:
    """The reprompt policy (data/policy/rts.json): each action's frequency and mean reward, overall and in the
    most visited contexts (failure mode | confidence | last prompt | turn)."""
    stats = policy_stats(root)
    if not stats or not stats["per_action"]:
        return ""
    actions = "".join(f"<tr><td>{html.escape(a)}</td><td>{v['taken']}</td><td>{v['mean_reward']:+.3f}</td></tr>"
                      for a, v in stats["per_action"].items())
    visited = sorted(stats["per_context"].items(), key=lambda kv: -sum(v["taken"] for v in kv[1].values()))
    contexts = "".join(
        f"<tr><td>{html.escape(key)}</td><td>{html.escape(a)}</td><td>{v['taken']}</td><td>{v['mean_reward']:+.3f}</td></tr>"
        for key, arms in visited[:CONTEXTS_SHOWN] for a, v in sorted(arms.items(), key=lambda kv: -kv[1]["taken"]))
    return (f"<h2>Reprompt policy ({html.escape(stats['algorithm'])}, {stats['updates']} updates)</h2>"
            f"<table border=1 cellpadding=4><tr><th>action</th><th>taken</th><th>mean reward</th></tr>{actions}</table>"
            f"<h3>By context (the {CONTEXTS_SHOWN} most visited)</h3><table border=1 cellpadding=4><tr><th>context</th>"
            f"<th>action</th><th>taken</th><th>mean reward</th></tr>{contexts}</table>")
