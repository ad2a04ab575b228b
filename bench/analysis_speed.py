"""The LLM judge's batching against one item per call, on our own `--serve`; and the fast judge's speed.

    python bench/analysis_speed.py [--items 500] [--batch-size 50] [--model smollm2-135m-instruct]
    python bench/analysis_speed.py --scale 20000     steps 3-5 on 20,000 answers: wall time and peak RSS

Starts `train.py --serve` with the model as the judge, in a root of its own, and judges the same `--items`
answers twice through the product's judge (`evaluation.analysis.judge_llm`, the OpenAI client against the
server): one item per call, then `--batch-size` items per call. The answers are made, not generated (word
problems; every third answer's final number is off by one), so the bench measures judging only. Reports calls
and wall time of each arm and their ratios, how many items each arm got a usable verdict for (the rest fall back
to the fast judge in the product), and the fast judge's items/s on the same answers. Ends with one JSON line.
With `--scale N`: N made-up answers (sums and word problems) are judged (fast), clustered and labelled by
`--analyze`'s own steps 3-5 in this process, which reports its wall time and peak RSS. Run it alone.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.generation_speed import processor  # noqa: E402
from core.synthetic import word_problems  # noqa: E402


def answers(n: int) -> list[dict]:
    rows = []
    for k, r in enumerate(word_problems(n, seed=31)):
        golden = r["answer"]
        final = int(golden.rsplit("#### ", 1)[1])
        prediction = golden.rsplit("#### ", 1)[0] + f"The answer is {final + 1 if k % 3 == 0 else final}."
        rows.append({"id": r["id"], "question": r["question"], "golden": golden, "prediction": prediction})
    return rows


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--items", type=int, default=500)
    p.add_argument("--batch-size", type=int, default=50)
    p.add_argument("--model", default="smollm2-135m-instruct")
    p.add_argument("--scale", type=int, default=0, metavar="N", help="measure steps 3-5 on N answers instead")
    args = p.parse_args()
    if args.scale:
        return scale(args.scale)

    from evaluation.analysis import judge_fast, judge_llm
    from inference.providers import OpenAIProvider
    from tests.conftest import write_config
    from tests.serve_helpers import Server

    import torch

    name = torch.cuda.get_device_name() if torch.cuda.is_available() else processor()
    rows = answers(args.items)

    began = time.perf_counter()
    for r in rows:
        judge_fast(r["question"], r["golden"], r["prediction"])
    fast_per_s = len(rows) / (time.perf_counter() - began)

    root = Path(tempfile.mkdtemp(prefix="analysis-speed-"))
    write_config(root, model={"name_or_path": args.model, "cache_dir": str(REPO / "data" / "models")},
                 serve={"max_tokens": 8192, "max_batch": 16})
    server = Server(root)
    try:
        server.wait_ready(timeout=600)
        arms = {}
        for arm, size in (("one_per_call", 1), ("batched", args.batch_size)):
            async def run():
                provider = OpenAIProvider(base_url=f"{server.url}/v1", model="current", timeout=3600, max_retries=0)
                try:
                    return await judge_llm(rows, provider, batch_size=size)
                finally:
                    await provider.close()

            began = time.perf_counter()
            verdicts, calls = asyncio.run(run())
            arms[arm] = {"batch_size": size, "calls": calls, "seconds": round(time.perf_counter() - began, 1),
                         "verdicts": len(verdicts), "fell_back": len(rows) - len(verdicts)}
            print(f"# {arm}: {arms[arm]}", file=sys.stderr, flush=True)
    finally:
        server.proc.kill()
        server.proc.wait()
    one, batched = arms["one_per_call"], arms["batched"]
    print(json.dumps({"items": len(rows), "judge_model": args.model, "processor": name, **arms,
                      "calls_ratio": round(one["calls"] / batched["calls"], 2),
                      "wall_ratio": round(one["seconds"] / batched["seconds"], 2),
                      "fast_judge_items_per_s": round(fast_per_s, 1)}))


def scale(n: int) -> None:
    import resource

    from core.events import EventLog
    from core.synthetic import integer_sums
    from evaluation.analysis import analyze

    out = Path(tempfile.mkdtemp(prefix="analysis-scale-"))
    rows = answers(n // 2)
    for k, r in enumerate(integer_sums(n - len(rows), seed=32)):
        final = int(r["response"].rsplit(" ", 1)[1].rstrip("."))
        rows.append({"id": r["id"], "question": r["prompt"], "golden": r["response"],
                     "prediction": f"The answer is {final + (k % 4 == 0)}."})
    with open(out / "model_outputs.jsonl", "w") as f:
        for r in rows:
            f.write(json.dumps({**r, "category": "math", "tokens": 0}) + "\n")
    for name in ("test_dataset_stats.json", "generation_stats.json"):  # steps 1-2 stand done: the answers are made
        (out / name).write_text("{}")
    began = time.perf_counter()
    patterns = analyze([], out, load_engine=None, events=EventLog(out / "logs"))
    seconds = time.perf_counter() - began
    summary = json.loads((out / "summary.json").read_text())
    print(json.dumps({"scale": n, "failures": summary["failures"], "clusters": len(patterns),
                      "seconds_steps_3_to_5": round(seconds, 1),
                      "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
                      "processor": processor()}))


if __name__ == "__main__":
    main()
