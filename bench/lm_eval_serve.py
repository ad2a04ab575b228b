"""lm-eval against `selfcorrect serve`, beside `lm_eval --model hf` on the same model and items.

    python bench/lm_eval_serve.py [--model smollm2-135m-instruct] [--items 100] [--dtype auto]

Writes two local tasks over the same sums (a 4-way multiple choice, scored by log-likelihood, and a generate-until
scored by exact match on the last number of the answer), serves the model (a fresh root: the base model is
`current`), and runs lm-eval's two API model types against the server:
`local-completions` (token-id prompts, echo, logprobs) and `local-chat-completions` (`--apply_chat_template`),
then `--model hf` on the same tasks. One JSON line: each run's score and seconds, and how many items answered
alike. The server's weights are `--dtype` (`serve.dtype`; auto is bf16 on a CPU with native bf16), lm-eval's hf
run fp32: with --dtype float32 the log-likelihoods agree to float tolerance (tests/test_lm_eval.py checks it).
"""
from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.continual import processor  # noqa: E402

OFFLINE = {"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}


def write_tasks(folder: Path, items: int, seed: int = 0) -> Path:
    """sums_mc (multiple choice: the sum among three near misses) and sums_gen (generate the sum), one local file."""
    rng, rows = random.Random(seed), []
    for _ in range(items):
        a, b = rng.randint(1, 60), rng.randint(1, 60)
        choices = sorted({a + b, a + b + 1, a + b - 2, a + b + 10})
        rows.append({"question": f"What is {a} + {b}?", "choices": [str(c) for c in choices],
                     "answer": choices.index(a + b), "target": str(a + b)})
    folder.mkdir(parents=True, exist_ok=True)
    data = folder / "items.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    source = f"dataset_path: json\ndataset_kwargs:\n  data_files:\n    test: {data}\ntest_split: test\n"
    (folder / "sums_mc.yaml").write_text(
        f"task: sums_mc\n{source}output_type: multiple_choice\n"
        'doc_to_text: "Question: {{question}}\\nAnswer:"\ndoc_to_choice: "{{choices}}"\ndoc_to_target: answer\n'
        "metric_list:\n  - metric: acc\n")
    (folder / "sums_gen.yaml").write_text(
        f"task: sums_gen\n{source}output_type: generate_until\n"
        'doc_to_text: "{{question}}"\ndoc_to_target: target\n'
        'generation_kwargs:\n  until: ["\\n\\n"]\n  max_gen_toks: 48\n  do_sample: false\n'
        # the answer is the last number said (a 135M model seldom answers with the number alone)
        'filter_list:\n  - name: last_number\n    filter:\n      - function: regex\n'
        '        regex_pattern: "(-?[0-9]+)"\n        group_select: -1\n      - function: take_first\n'
        "metric_list:\n  - metric: exact_match\n")
    return folder


def lm_eval(out: Path, tasks: Path, task: str, model: str, model_args: str, *extra: str) -> tuple[dict, dict]:
    """One run of the real lm_eval command: (the task's results, each item's filtered responses by doc_id)."""
    done = subprocess.run([sys.executable, "-m", "lm_eval", "--model", model, "--model_args", model_args,
                           "--tasks", task, "--include_path", str(tasks), "--output_path", str(out), "--log_samples",
                           *extra], capture_output=True, text=True, timeout=3600, env={**os.environ, **OFFLINE})
    if done.returncode != 0:
        raise RuntimeError(f"lm_eval {model} {task} failed:\n{done.stderr[-3000:]}")
    [results] = out.rglob("results_*.json")
    [samples] = out.rglob(f"samples_{task}_*.jsonl")
    return (json.loads(results.read_text())["results"][task],
            {r["doc_id"]: r["filtered_resps"] for r in map(json.loads, samples.read_text().splitlines())})


def api_args(url: str, tokenizer: Path | None) -> str:
    args = f"model=current,base_url={url},num_concurrent=1,max_retries=1"
    return args + (f",tokenizer={tokenizer},tokenizer_backend=huggingface" if tokenizer else "")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="smollm2-135m-instruct")
    p.add_argument("--items", type=int, default=100)
    p.add_argument("--dtype", default="auto", choices=["auto", "float32", "bfloat16"], help="serve.dtype")
    args = p.parse_args()
    from tests.serve_helpers import Server

    work = Path(tempfile.mkdtemp(prefix="lm-eval-serve-"))
    tasks, model_path = write_tasks(work / "tasks", args.items), REPO / "data" / "models" / args.model
    root = work / "root"
    root.mkdir()
    (root / "config.json").write_text(json.dumps({
        "model": {"name_or_path": args.model, "cache_dir": str(REPO / "data" / "models")},
        "serve": {"dtype": args.dtype, "max_batch": 16}}))
    runs, result = {}, {"processor": processor(), "model": args.model, "items": args.items, "serve_dtype": args.dtype}
    server = Server(root)
    try:
        server.wait_ready(timeout=600)
        for name, task, kind, url, extra in (
                ("served_loglikelihood", "sums_mc", "local-completions", "/v1/completions", ["--batch_size", "16"]),
                ("served_chat", "sums_gen", "local-chat-completions", "/v1/chat/completions",
                 ["--apply_chat_template"])):
            started = time.time()
            runs[name] = lm_eval(work / name, tasks, task, kind,
                                 api_args(server.url + url, model_path if kind == "local-completions" else None),
                                 *extra)
            result[name] = {**{k: v for k, v in runs[name][0].items() if "," in k}, "seconds": round(time.time() - started)}
    finally:
        server.stop()
    hf = f"pretrained={model_path},dtype=float32"
    for name, task, extra in (("hf_loglikelihood", "sums_mc", []), ("hf_chat", "sums_gen", ["--apply_chat_template"])):
        started = time.time()
        runs[name] = lm_eval(work / name, tasks, task, "hf", hf, "--device", "cpu", "--batch_size", "16", *extra)
        result[name] = {**{k: v for k, v in runs[name][0].items() if "," in k}, "seconds": round(time.time() - started)}
    for served, local in (("served_loglikelihood", "hf_loglikelihood"), ("served_chat", "hf_chat")):
        a, b = runs[served][1], runs[local][1]
        if served == "served_loglikelihood":  # the chosen answer (highest log-likelihood) per item
            pick = lambda resps: max(range(len(resps)), key=lambda k: float(resps[k][0]))  # noqa: E731
            same = sum(pick(a[d]) == pick(b[d]) for d in a)
        else:
            same = sum(a[d] == b[d] for d in a)
        result[f"{served}_items_alike"] = same
    print(json.dumps(result))


if __name__ == "__main__":
    main()
