"""The evaluation block, as the product spec shows it (console and daily log)."""
from __future__ import annotations

from evaluation.evaluate import Evaluation


def trim(text: str, limit: int = 160) -> str:
    one_line = " ".join(text.split())
    return one_line if len(one_line) <= limit else one_line[: limit - 1] + "…"


def evaluation_block(ev: Evaluation, *, step: int, total: int) -> str:
    pct = 100 * step / total if total else 100.0
    lines = [f"🔍 LIVE INFERENCE - Step {step} / {total} ({pct:.1f}%)", "=" * 32]
    for k, (r, reason) in enumerate(zip(ev.results, ev.reasons), start=1):
        lines += [f"{'✅' if r.matched else '❌'} Example {k}/{ev.n}:",
                  f"   Expected: {trim(r.golden)}",
                  f"   Predicted: {trim(r.predicted)}"]
        if r.matched:
            lines.append(f"   → MATCH ({reason})")
        else:
            lines.append(f"   → MISMATCH ({reason}) {', '.join(r.codes)}")
            if k - 1 in ev.second:
                answer, ok = ev.second[k - 1]
                lines.append(f"   ↻ Second attempt with codes: {'MATCH' if ok else 'MISMATCH'}: {trim(answer, 100)}")
    s = ev.summary()
    second = "" if s["second_attempt_accuracy"] is None else (
        f", second attempt {s['second_attempt_accuracy']:.0%} (wrong→right {s['wrong_to_right']}, "
        f"right→wrong {s['right_to_wrong']}/{s['right_probed']})")
    lines.append(f"Accuracy {s['accuracy']:.0%} ({sum(r.matched for r in ev.results)}/{ev.n}){second}")
    return "\n".join(lines)


def evaluation_table(ev: Evaluation, *, title: str) -> None:
    """`train.py --eval`: one row per question."""
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title, show_lines=False)
    for col in ("#", "question", "expected", "predicted", "result", "2nd attempt"):
        table.add_column(col, overflow="fold")
    for k, (r, reason) in enumerate(zip(ev.results, ev.reasons)):
        second = ev.second.get(k) or ev.right_probe.get(k)
        table.add_row(str(k + 1), trim(r.question, 60), trim(r.golden, 40), trim(r.predicted, 40),
                      ("✅ " if r.matched else "❌ ") + reason,
                      "" if second is None else ("✅" if second[1] else "❌") + " " + trim(second[0], 30))
    console = Console(stderr=True)
    console.print(table)
    s = ev.summary()
    console.print(f"accuracy {s['accuracy']:.1%} on {s['n']}"
                  + ("" if s["second_attempt_accuracy"] is None else
                     f"; second attempt {s['second_attempt_accuracy']:.1%} (wrong→right {s['wrong_to_right']}, "
                     f"right→wrong {s['right_to_wrong']} of {s['right_probed']} probed)"))
