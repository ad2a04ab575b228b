"""Training throughput: the project's path against a plain fp32 Trainer and TRL's SFTTrainer, same model, data, steps.

    python bench/train_throughput.py [--examples 320] [--model smollm2-135m-instruct] [--set lora.dropout=0 ...]
                                     [--no-trl]
    python bench/train_throughput.py --probe-held-base 16 --set 'training.precision="bf16"'
        # bf16 training: the frozen base held in bf16 against autocast's casts
    python bench/train_throughput.py --profile-step 4    # where the project's training step spends its time

Each arm runs in its own subprocess (so peak RSS is per arm) on the same generated prompt/response pairs:
a plain fp32 `Trainer` with `DataCollatorForSeq2Seq`; TRL's `SFTTrainer` (`pip install -e .[bench]`) with and
without its packing, bf16 where the CPU has it natively, the faster of the two kept; the project.
Prints supervised tokens/s for each, the ratios, the project's MFU against a matmul timed in the same run, and
ends with one JSON line. Run it alone (two torch processes on 2 cores slow each other by up to 7x).
"""
from __future__ import annotations

import argparse
import json
import random
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench import settings  # noqa: E402
from bench.generation_speed import matmul_peak, processor  # noqa: E402


def make_data(n: int, seed: int) -> list[dict]:
    from core.synthetic import integer_sums, word_problems

    rows = integer_sums(n // 2, seed=seed) + [
        {"prompt": r["question"], "response": r["answer"]} for r in word_problems(n - n // 2, seed=seed)
    ]
    random.Random(seed).shuffle(rows)
    return [{"prompt": r["prompt"], "response": r["response"]} for r in rows]


def heldout_loss(model, tokenizer, path: Path) -> float:
    """Mean cross-entropy per supervised token on a fixed held-out file: the same yardstick for
    both arms (their last training batches differ, since one groups batches by length)."""
    import torch

    from core.data import read_examples
    from core.encoding import IGNORE, encode_file

    encoded = encode_file(tokenizer, read_examples(path), path=path, use_template=True, max_length=1024)
    total, count = 0.0, 0
    model.eval()
    with torch.no_grad():
        for e in encoded:
            ids = torch.tensor([e.input_ids], device=model.device)
            labels = torch.tensor([e.labels], device=model.device)
            logits = model(input_ids=ids).logits[0, :-1].float()
            keep = labels[0, 1:] != IGNORE
            total += float(torch.nn.functional.cross_entropy(logits[keep], labels[0, 1:][keep], reduction="sum"))
            count += int(keep.sum())
    return total / count


def run_project(data_path: Path, heldout: Path, config: dict) -> dict:
    from core.config import parse_config
    from training.engine import TrainingEngine
    from core.events import EventLog

    root = Path(tempfile.mkdtemp(prefix="bench-project-"))
    cfg = parse_config(config)
    engine = TrainingEngine(cfg, root, EventLog(root / "logs"))
    prepared = engine.prepare(data_path)
    t0 = time.perf_counter()
    result = engine.train(prepared)
    seconds = time.perf_counter() - t0
    tokens = sum(e.trainable - (e.labels[0] != -100) for e in prepared.encoded)
    return {"tokens_per_s": tokens / seconds, "seconds": seconds, "steps": result.steps,
            "final_loss": heldout_loss(engine.model, engine.tokenizer, heldout), "precision": engine.plan.precision,
            "all_tokens": sum(len(e.input_ids) for e in prepared.encoded),
            "params": sum(p.numel() for p in engine.model.parameters()),
            "head_params": engine.model.get_output_embeddings().weight.numel(), "supervised_tokens": tokens}


def project_batches(data_path: Path, config: dict):
    """The project's engine and trainer on the file, and its batches as the collator builds them (in file order):
    the probes below time the trainer's own training step on them in one process."""
    from core.config import parse_config
    from core.encoding import PaddingCollator
    from core.events import EventLog
    from training.engine import TrainingEngine
    from training.trainer import SupervisedTrainer

    root = Path(tempfile.mkdtemp(prefix="bench-probe-"))
    engine = TrainingEngine(parse_config(config), root, EventLog(root / "logs"))
    encoded = engine.prepare(data_path).encoded
    collator = PaddingCollator(engine.tokenizer.pad_token_id)
    trainer = SupervisedTrainer(model=engine.model, args=engine._arguments(root / "out"), data_collator=collator,
                                micro_batch_tokens=engine._micro_batch_tokens())
    size = trainer.args.per_device_train_batch_size
    batches = [collator([{"input_ids": e.input_ids, "labels": e.labels} for e in encoded[k:k + size]])
               for k in range(0, len(encoded) - size + 1, size)]
    return engine, trainer, batches


def probe_held_base(data_path: Path, config: dict, rounds: int) -> dict:
    """One batch's forward and backward (batch 8, the project's trainer and slicing), timed in alternation with the
    frozen base held in half precision (as training runs) and with autocast casting its fp32 weights on every
    call: the same process and batches, so the drift of a shared machine falls on both alike."""
    from contextlib import nullcontext

    from training.trainer import half_precision_base

    engine, trainer, batches = project_batches(data_path, config)
    if engine.plan.precision == "fp32":
        sys.exit("fp32 training holds nothing in half precision: add --set 'training.precision=\"bf16\"'")
    seconds = {"held": 0.0, "cast": 0.0}
    for k in range(rounds):
        batch = batches[k % len(batches)]
        for arm in (("held", "cast") if k % 2 else ("cast", "held")):
            with half_precision_base(engine.model, engine.plan.precision) if arm == "held" else nullcontext():
                t0 = time.perf_counter()
                trainer.training_step(engine.model, dict(batch))
                seconds[arm] += time.perf_counter() - t0
    engine.model.zero_grad()
    return {"precision": engine.plan.precision, "rounds": rounds,
            **{f"{arm}_ms_per_batch": round(1000 * s / rounds, 1) for arm, s in seconds.items()},
            "cast_over_held": round(seconds["cast"] / seconds["held"], 3)}


TRAINING_GROUPS = {"matrix products": ("aten::mm", "aten::bmm", "aten::addmm"),
                   "attention kernels": ("aten::_scaled_dot_product", "aten::_softmax"),
                   "the loss (log-softmax over the vocabulary)": ("aten::_log_softmax", "aten::nll_loss"),
                   "casts and copies": ("aten::copy_", "aten::_to_copy"),
                   "the optimizer (AdamW)": ("aten::_fused_adamw", "aten::_foreach")}


def profile_step(data_path: Path, config: dict, rounds: int) -> None:
    """The project's training step (forward, backward, in row slices as it trains) and an optimizer step: after one
    warm-up, ROUNDS timed, ROUNDS under torch.profiler (where the time goes, by operator) and ROUNDS under torch's
    FLOP counter (the matrix products' rate)."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from bench.generation_speed import profile_operators
    from training.trainer import half_precision_base

    engine, trainer, batches = project_batches(data_path, config)
    trainer.create_optimizer()

    def steps(n):
        for k in range(n):
            trainer.training_step(engine.model, dict(batches[k % len(batches)]))
            trainer.optimizer.step()
            trainer.optimizer.zero_grad()

    with half_precision_base(engine.model, engine.plan.precision):  # as fit() trains
        steps(1)
        t0 = time.perf_counter()
        steps(rounds)
        seconds = time.perf_counter() - t0
        grouped = profile_operators(lambda: steps(rounds), TRAINING_GROUPS)
        # the FLOPs in a pass of their own: counting them under the profiler (with_flops) slows every operator
        with FlopCounterMode(display=False) as counter:
            steps(rounds)
    counts = counter.get_flop_counts()["Global"]
    products = sum(n for op, n in counts.items() if str(op).split(".")[1] in ("mm", "addmm", "bmm"))
    print(f"matrix products at {products / grouped['matrix products'] / 1e3:.0f} GFLOP/s "
          f"({products / rounds / 1e9:.0f} GFLOP per step)")
    real = sum(int(b["attention_mask"].sum()) for b in batches)
    padded = sum(b["attention_mask"].numel() for b in batches)
    print(f"padding: {100 * (padded - real) / real:.1f} % more positions than tokens in these batches of the file's "
          "order (before the row slices drop their empty columns): what padding-free batches could save at most")
    print(f"processor: {processor()}; {engine.plan.precision}: {1000 * seconds / rounds:.0f} ms per step of "
          f"{trainer.args.per_device_train_batch_size} rows without the profiler; fp32 matmul peak "
          f"{matmul_peak(torch.float32, 'cpu'):.0f} GFLOP/s, bf16 {matmul_peak(torch.bfloat16, 'cpu'):.0f}")


def run_baseline(data_path: Path, heldout: Path, config: dict) -> dict:
    """What a user gets from the textbook recipe: fp32, DataCollatorForSeq2Seq padding, full logits."""
    import torch
    from transformers import DataCollatorForSeq2Seq, Trainer, TrainingArguments
    from transformers.utils import logging as hf_logging

    from core.config import parse_config
    from core.data import read_examples
    from core.encoding import encode_file
    from core.models import attach_adapter, load_base_model, load_tokenizer, resolve_model_path

    hf_logging.set_verbosity_error()
    cfg = parse_config(config)
    path = resolve_model_path(cfg, REPO)
    tok = load_tokenizer(path, cfg)
    model = attach_adapter(load_base_model(path, cfg, "cpu", "fp32"), cfg, None)
    encoded = encode_file(tok, read_examples(data_path), path=data_path, use_template=True,
                          max_length=cfg.training.max_seq_length)
    rows = [{"input_ids": e.input_ids, "attention_mask": [1] * len(e.input_ids), "labels": e.labels} for e in encoded]
    t = cfg.training
    args = TrainingArguments(
        output_dir=tempfile.mkdtemp(prefix="bench-baseline-"), per_device_train_batch_size=t.batch_size,
        learning_rate=t.learning_rate, lr_scheduler_type=t.lr_scheduler_type, warmup_steps=t.warmup_steps,
        num_train_epochs=t.epochs_per_file, logging_steps=t.logging_steps, save_strategy="no", seed=t.seed,
        use_cpu=True, report_to=[], disable_tqdm=True)
    trainer = Trainer(model=model, args=args, train_dataset=rows,
                      data_collator=DataCollatorForSeq2Seq(tok, padding=True, label_pad_token_id=-100))
    t0 = time.perf_counter()
    trainer.train()
    seconds = time.perf_counter() - t0
    tokens = sum(e.trainable - (e.labels[0] != -100) for e in encoded)
    return {"tokens_per_s": tokens / seconds, "seconds": seconds, "steps": trainer.state.global_step,
            "final_loss": heldout_loss(model, tok, heldout), "precision": "fp32"}


def run_trl(data_path: Path, heldout: Path, config: dict, *, packed: bool) -> dict:
    """TRL's SFTTrainer set for speed: prompt/completion chats, loss on the completion only, the same LoRA, bf16 where
    the CPU has it natively, no activation checkpointing (its default trades speed for memory); with or without its
    best-fit-decreasing packing (padding-free rows, position ids restarting per sequence)."""
    from datasets import Dataset
    from transformers.utils import logging as hf_logging
    from trl import SFTConfig, SFTTrainer

    from core.config import parse_config
    from core.data import read_examples
    from core.device import cpu_has_fast_bf16
    from core.encoding import encode_file
    from core.models import attach_adapter, load_base_model, load_tokenizer, resolve_model_path

    hf_logging.set_verbosity_error()
    cfg = parse_config(config)
    path = resolve_model_path(cfg, REPO)
    tok = load_tokenizer(path, cfg)
    model = attach_adapter(load_base_model(path, cfg, "cpu", "fp32"), cfg, None)
    rows = [json.loads(line) for line in data_path.read_text().splitlines()]
    dataset = Dataset.from_list([{"prompt": [{"role": "user", "content": r["prompt"]}],
                                  "completion": [{"role": "assistant", "content": r["response"]}]} for r in rows])
    t = cfg.training
    bf16 = cpu_has_fast_bf16()
    args = SFTConfig(
        output_dir=tempfile.mkdtemp(prefix="bench-trl-"), per_device_train_batch_size=t.batch_size,
        learning_rate=t.learning_rate, lr_scheduler_type=t.lr_scheduler_type, warmup_steps=t.warmup_steps,
        num_train_epochs=t.epochs_per_file, logging_steps=t.logging_steps, save_strategy="no", seed=t.seed,
        use_cpu=True, report_to=[], disable_tqdm=True, bf16=bf16, gradient_checkpointing=False,
        packing=packed, packing_strategy="bfd", max_length=t.max_seq_length, completion_only_loss=True)
    trainer = SFTTrainer(model=model, args=args, train_dataset=dataset, processing_class=tok)
    t0 = time.perf_counter()
    trainer.train()
    seconds = time.perf_counter() - t0
    # the same yardstick as the other arms: supervised tokens as our encoder counts them
    encoded = encode_file(tok, read_examples(data_path), path=data_path, use_template=True, max_length=t.max_seq_length)
    tokens = sum(e.trainable - (e.labels[0] != -100) for e in encoded)
    return {"tokens_per_s": tokens / seconds, "seconds": seconds, "steps": trainer.state.global_step,
            "final_loss": heldout_loss(model, tok, heldout),
            "precision": f"{'bf16' if bf16 else 'fp32'}{', packed' if packed else ''}"}


ARMS = {
    "baseline": run_baseline,
    "trl": lambda d, h, c: run_trl(d, h, c, packed=False),
    "trl-packed": lambda d, h, c: run_trl(d, h, c, packed=True),
    "project": run_project,
}


def child(arm: str, data_path: Path, config: dict) -> None:
    heldout = data_path.with_name("heldout.jsonl")
    figures = ARMS[arm](data_path, heldout, config)
    figures["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print("RESULT " + json.dumps(figures), flush=True)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--examples", type=int, default=320)
    p.add_argument("--model", default="smollm2-135m-instruct")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--set", action="append", default=[], metavar="KEY.PATH=JSON",
                   help="a config setting of the project arm only, e.g. training.precision=\"fp32\" or lora.dropout=0")
    p.add_argument("--no-trl", action="store_true", help="skip TRL's arms (they need `pip install -e .[bench]`)")
    p.add_argument("--arms", default="", help=f"a comma-separated subset of {', '.join(ARMS)} (baseline and project "
                                              "are always run)")
    p.add_argument("--probe-held-base", type=int, metavar="ROUNDS", default=0,
                   help="instead: time ROUNDS batches with the frozen base held in half precision and with autocast "
                        "casting it on every call, in alternation, in one process")
    p.add_argument("--profile-step", type=int, metavar="ROUNDS", default=0,
                   help="instead: ROUNDS of the project's training step under torch.profiler, time by operator")
    p.add_argument("--child", choices=list(ARMS), help=argparse.SUPPRESS)
    p.add_argument("--data", type=Path, help=argparse.SUPPRESS)
    p.add_argument("--config-json", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        return child(args.child, args.data, json.loads(args.config_json))

    # No validation hold-out, so both arms train the same examples for the same number of steps.
    config = {"model": {"name_or_path": args.model, "cache_dir": str(REPO / "data" / "models")},
              "validation": {"holdout_fraction": 0},
              "training": {"batch_size": 8, "logging_steps": 5, "seed": args.seed, "save_steps": 10_000,
                           "promotion": {"enabled": False}}}
    project_config = settings.apply(json.loads(json.dumps(config)), args.set, p.error)
    data_path = Path(tempfile.mkdtemp(prefix="bench-data-")) / "train.jsonl"
    data_path.write_text("".join(json.dumps(r) + "\n" for r in make_data(args.examples, args.seed)))
    if args.profile_step:
        return profile_step(data_path, project_config, args.profile_step)
    if args.probe_held_base:
        figures = probe_held_base(data_path, project_config, args.probe_held_base)
        print(f"processor: {processor()}; {figures['precision']}: {figures['cast_ms_per_batch']} ms per batch with "
              f"autocast's casts, {figures['held_ms_per_batch']} ms held: {figures['cast_over_held']}x")
        print(json.dumps({"processor": processor(), **figures, "project_settings": args.set}))
        return
    data_path.with_name("heldout.jsonl").write_text(
        "".join(json.dumps(r) + "\n" for r in make_data(32, args.seed + 1000)))
    results = {}
    arms = [a for a in ARMS if not (args.no_trl and a.startswith("trl"))]
    arms = [a for a in arms if not args.arms or a in args.arms.split(",") or a in ("baseline", "project")]
    for arm in arms:
        out = subprocess.run([sys.executable, __file__, "--child", arm, "--data", str(data_path),
                              "--config-json", json.dumps(project_config if arm == "project" else config)],
                             capture_output=True, text=True, cwd=REPO)
        line = next((l for l in out.stdout.splitlines() if l.startswith("RESULT ")), None)
        if line is None and arm.startswith("trl"):  # TRL's own failure on this machine is a figure, not a stop
            print(f"{arm:>16}: failed (exit {out.returncode}): {out.stderr.strip().splitlines()[-1][:300]}", flush=True)
            continue
        if line is None:
            sys.exit(f"{arm} arm failed (exit {out.returncode}):\n{out.stderr[-3000:]}")
        results[arm] = json.loads(line[len("RESULT "):])
        r = results[arm]
        print(f"{arm:>16}: {r['tokens_per_s']:8.1f} supervised tok/s  {r['steps']} steps  {r['seconds']:.1f}s  "
              f"loss {r['final_loss']:.4f}  {r['precision']}  peak RSS {r['peak_rss_mb']:.0f} MB", flush=True)
    b, q = results["baseline"], results["project"]
    ratio = q["tokens_per_s"] / b["tokens_per_s"]
    trl = max((results[a] for a in arms if a.startswith("trl") and a in results), key=lambda r: r["tokens_per_s"],
              default=None)
    print(f"processor: {processor()}")
    print(f"   ratio: {ratio:.2f}x (project / plain Trainer); loss difference "
          f"{100 * (q['final_loss'] - b['final_loss']) / b['final_loss']:+.1f}%")
    if trl:
        print(f"   against TRL at its best here ({trl['precision']}): {q['tokens_per_s'] / trl['tokens_per_s']:.2f}x; "
              f"loss difference {100 * (q['final_loss'] - trl['final_loss']) / trl['final_loss']:+.1f}%")
    import torch

    # A frozen base costs about 4 FLOPs per parameter per token (forward, and the backward to the activations);
    # the LoRA matrices' own cost is small beside it, and the vocabulary projection runs at supervised positions
    # only (the input embedding is a lookup). MFU: that rate over a matmul's, timed now in the same dtype.
    flops = 4 * ((q["params"] - q["head_params"]) * q["all_tokens"]
                 + q["head_params"] * q["supervised_tokens"]) / q["seconds"]
    peak = matmul_peak(torch.bfloat16 if q["precision"] == "bf16" else torch.float32, "cpu")
    print(f"   MFU {100 * flops / (peak * 1e9):.1f}% ({flops / 1e9:.1f} of {peak:.0f} GFLOP/s)")
    print(json.dumps({"processor": processor(), "baseline_tokens_per_s": round(b["tokens_per_s"], 1),
                      "trl_tokens_per_s": round(trl["tokens_per_s"], 1) if trl else None,
                      "trl_setting": trl["precision"] if trl else None,
                      "project_tokens_per_s": round(q["tokens_per_s"], 1), "ratio": round(ratio, 3),
                      "ratio_vs_trl": round(q["tokens_per_s"] / trl["tokens_per_s"], 3) if trl else None,
                      "baseline_final_loss": round(b["final_loss"], 4),
                      "trl_final_loss": round(trl["final_loss"], 4) if trl else None,
                      "project_final_loss": round(q["final_loss"], 4), "project_precision": q["precision"],
                      "peak_rss_mb": round(q["peak_rss_mb"], 1), "baseline_peak_rss_mb": round(b["peak_rss_mb"], 1),
                      "mfu": round(flops / (peak * 1e9), 4),
                      "examples": args.examples, "model": args.model, "project_settings": args.set}))


if __name__ == "__main__":
    main()
