"""Does the loop teach? Self-correction against plain training, at equal training compute.

    python bench/learning.py [--quick] [--train 200] [--test 50] [--seed 0] [--arms ABCD] [--b-from WORK]

Two task families (step-by-step multi-term sums, two-step word problems), split into
training data, the validation pool (the daemon's own hold-out) and a separate
held-out test set per family. Arms, each in its own root, same seed:

  A  the base model, no training;
  B  plain training on the task data (self-correction off);
  C  the same files with self-correction on: the daemon's defaults, generated files
     queued at normal priority (so they are trained after the task files);
  D  C improved: right answers are confirmed too (experimental.confirm_right_answers:
     the correction prompt with no error codes -> the same answer), so the model
     learns to change an answer only when the feedback says it is wrong; and the
     generated files go to the high queue, so each is trained right after its
     mistakes were made, on policy, between task files.
  E  D plus practice (experimental.training_file_questions = 16): at each evaluation the
     current adapter also answers 16 questions of the file in training, and its
     mistakes and right answers become records too. The validation pool alone gives
     a few dozen correction records per run; practice gives a few hundred, on policy.
  F  E plus golden confirmations (experimental.confirm_golden_answers): each wrong
     answer's triple also gets the correction prompt showing the golden answer with no
     codes -> the same answer, so "none -> keep" is trained as often as "codes -> change".
  G  F with training_file_questions = 32: twice the on-policy records, keep and change alike.
  J  G with experimental.first_wrong_value: the error codes also name the first number
     where the answer went wrong (FIRST_WRONG_VALUE_X).
  H  J with experimental.correction_repeats = 3: each wrong answer's correction record
     is written three times, so "codes -> change" weighs more against the keeps.
  I  J with experimental.unlikelihood_weight = 5: where the model's wrong answer departed from the
     golden one, its token is pushed down (the initial attempt and the correction records carry
     the wrong answer as "rejected"), so repeating a flagged value is trained against.

One more round, from B's final adapter (a paired design: both arms share B's history, so their
difference is the round's data alone, not another path through training):

  R  B, then one round of its own mistakes: B's adapter answers every training question
     (`python -m selfcorrect initial-answers`), and its wrong answers become triples
     (`python -m selfcorrect build`), trained as one file: fresh on-policy regeneration.
  P  B, then one round of plain replay: as many task examples, replayed from the training data.
     P and R train the same number of examples, so the same optimizer steps (or P and S, when S runs
     without R; or --replay N examples, to pair P with a round measured in an earlier run).
  S  R with confirmations (confirm_right_answers and confirm_golden_answers, in its config for `build`):
     B's right answers and the golden answers of its wrong ones, shown with no error codes -> kept,
     so the second attempt learns to keep as well as to change. Its round is larger than R's.
  U  S with experimental.unlikelihood_weight = 5 for the round: the model's own wrong token, where its answer
     departed from the golden one, is pushed down (arm I did this in the live loop, without the pairing).
  O  S with experimental.preference_weight = 40 for the round: each record with a rejected answer (a wrong answer's
     initial attempt and correction) also trains by DPO against B's adapter, beta 0.1, with the response's
     cross-entropy kept (as in RPO: the pair counts like 40 supervised tokens, about one answer's worth).
  Q  O with experimental.reject_initial_attempts off: only the correction records carry the wrong answer,
     so DPO teaches "told the codes, do not repeat it" and leaves the first attempt to cross-entropy.
  V  Q with experimental.reject_golden_confirmations: each golden confirmation (the golden answer shown with
     no codes -> kept) carries the wrong answer as rejected too, so DPO teaches "keep" as it teaches "change".
  M  S mixed with plain replay: half of S's round (its records sampled at random, every kind in its share) and
     half task examples replayed, as many examples in all: a mix ratio of correction and standard examples.

Equal compute: every trained arm ends with the same number of training examples
(so the same optimizer steps): an arm that trained fewer gets a top-up file of
task examples replayed from its training data. Tokens cannot be made equal too at
the same steps (a correction record's prompt carries the answer and its codes, so it
is longer than a task example), so they are reported per arm: the tokens that went
through the model and the supervised ones, which carried the loss. Then `train.py --eval`
answers each test set (first attempt, then a second attempt with the error codes on the wrong
answers, and the same prompt without codes on a sample of right ones).

Writes bench_learning.png in the work folder and ends with one JSON line.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench import settings as bench_settings  # noqa: E402
from core.synthetic import integer_sums, word_problems  # noqa: E402

FAMILIES = {"sums": integer_sums, "word_problems": word_problems}
ARMS = {
    "A": {"train": False, "label": "base model"},
    "B": {"train": True, "self_correction": False, "label": "plain training"},
    "C": {"train": True, "self_correction": True, "label": "self-correction (defaults)"},
    "D": {"train": True, "self_correction": True, "queue": "high", "confirm": True,
          "label": "self-correction + confirmations, high queue"},
    "E": {"train": True, "self_correction": True, "queue": "high", "confirm": True, "practice": 16,
          "label": "D + practice on training questions"},
    "F": {"train": True, "self_correction": True, "queue": "high", "confirm": True, "practice": 16, "golden": True,
          "label": "E + golden confirmations"},
    "G": {"train": True, "self_correction": True, "queue": "high", "confirm": True, "practice": 32, "golden": True,
          "label": "F with twice the practice"},
    "H": {"train": True, "self_correction": True, "queue": "high", "confirm": True, "practice": 32, "golden": True,
          "first_wrong": True, "repeats": 3, "label": "J with each correction record thrice"},
    "I": {"train": True, "self_correction": True, "queue": "high", "confirm": True, "practice": 32, "golden": True,
          "first_wrong": True, "unlikelihood": 5.0, "label": "J + unlikelihood of the rejected answers"},
    "J": {"train": True, "self_correction": True, "queue": "high", "confirm": True, "practice": 32, "golden": True,
          "first_wrong": True, "label": "G + the FIRST_WRONG_VALUE_X code"},
    "R": {"train": True, "from": "B", "label": "B + a round of its own mistakes"},
    "P": {"train": True, "from": "B", "label": "B + a round of plain replay"},
    "S": {"train": True, "from": "B", "confirm": True, "golden": True, "label": "R with confirmations"},
    "U": {"train": True, "from": "B", "confirm": True, "golden": True, "unlikelihood": 5.0,
          "label": "S + unlikelihood of the rejected answers"},
    "O": {"train": True, "from": "B", "confirm": True, "golden": True, "preference": 40.0,
          "label": "S + preference training (DPO) on the rejected answers"},
    "Q": {"train": True, "from": "B", "confirm": True, "golden": True, "preference": 40.0, "reject_initial": False,
          "label": "O with the rejected answers on the correction records only"},
    "V": {"train": True, "from": "B", "confirm": True, "golden": True, "preference": 40.0, "reject_initial": False,
          "reject_golden": True, "label": "Q + the rejected answers on the golden confirmations"},
    "M": {"train": True, "from": "B", "confirm": True, "golden": True, "replay_share": 0.5,
          "label": "S, half of its round replaced by replayed task examples"},
}
MISTAKE_ROUNDS = "RSUOQVM"  # the arms whose round is built from B's answers to the training questions, in run order
ROUND_ARMS = MISTAKE_ROUNDS + "P"  # P, sized by the first of them that runs


def run(root: Path, program: list[str], *args: str) -> str:
    """A command of the product on an arm's root (its config.json); stops the bench if it fails."""
    out = subprocess.run([sys.executable, *program, *args, "--config", str(root / "config.json")],
                         capture_output=True, text=True, cwd=REPO)
    if out.returncode:
        sys.exit(f"{' '.join([*program, *args])} in {root} failed:\n{out.stderr[-3000:]}")
    return out.stdout


def train_py(root: Path, *args: str) -> str:
    return run(root, [str(REPO / "train.py")], *args)


def write_jsonl(path: Path, records: list[dict]) -> Path:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text("".join(json.dumps(r) + "\n" for r in records))
    tmp.rename(path)
    return path


def config_for(arm: dict, args) -> dict:
    return bench_settings.apply({
        "model": {"name_or_path": args.model, "cache_dir": str(REPO / "data" / "models")},
        "eval_steps": args.eval_steps if arm.get("self_correction") else 10 ** 9,
        "num_eval_samples": args.eval_samples, "eval_max_tokens": args.max_tokens,
        "self_correction": {"enabled": bool(arm.get("self_correction")), "min_examples": args.min_examples,
                            "generation_interval": args.eval_steps, "queue": arm.get("queue", "normal")},
        "experimental": {"confirm_right_answers": bool(arm.get("confirm")),
                         "confirm_golden_answers": bool(arm.get("golden")),
                         "training_file_questions": arm.get("practice", 0),
                         "first_wrong_value": bool(arm.get("first_wrong")),
                         "correction_repeats": arm.get("repeats", 1),
                         "unlikelihood_weight": arm.get("unlikelihood", 0.0)},
        "validation": {"holdout_fraction": args.holdout},
        "training": {"batch_size": args.batch_size, "logging_steps": 5, "save_steps": 1000, "seed": 42 + args.seed,
                     "promotion": {"enabled": False}},  # the arms measure learning; the gate has its own tests
        "daemon": {"settle_seconds": 0},
    }, args.set, lambda message: sys.exit(message))


def drop(root: Path, chunks: list[list[dict]], prefix: str) -> None:
    """Task files into the inbox, oldest first (the daemon takes them in the order they were written)."""
    now = time.time()
    for k, chunk in enumerate(chunks):
        path = write_jsonl(root / "inbox" / f"{prefix}-{k + 1:02d}.jsonl", chunk)
        os.utime(path, (now - len(chunks) + k, now - len(chunks) + k))


def trained(root: Path) -> dict:
    """What an arm has trained: examples and optimizer steps (made equal), and tokens (reported: a correction's
    prompt is longer than a task example's). Tokens are None where a file was trained before they were recorded."""
    state = json.loads((root / "data" / "state.json").read_text())
    files = state["files_trained"]
    return {"examples_trained": sum(f["examples"] for f in files), "steps": state["global_step"],
            **{f"{k}_trained": sum(f[k] for f in files) if all(k in f for f in files) else None
               for k in ("tokens", "supervised_tokens")}}


def test_sets(work: Path, n: int, seed: int) -> dict[str, Path]:
    """Each family's held-out test items, written to the work folder: generator seeds of their own, so they
    do not overlap the training data; a larger n extends the same items."""
    return {family: write_jsonl(work / f"test-{family}.jsonl", make(n, seed=900 + k + 10 * seed))
            for k, (family, make) in enumerate(FAMILIES.items())}


def evaluate(root: Path, tests: dict[str, Path], adapter: str, answers: Path | None = None) -> dict:
    """Each family's summary; with `answers`, each item's verdicts too, in answers/FAMILY.jsonl."""
    out = {}
    for family, path in tests.items():
        keep = ["--answers", str(answers / f"{family}.jsonl")] if answers else []
        out[family] = json.loads(train_py(root, "--eval", str(path), "--adapter", adapter, *keep).splitlines()[-1])
    return out


def plot(results: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    families = list(FAMILIES)
    fig, axes = plt.subplots(1, len(families), figsize=(5 * len(families), 4), sharey=True)
    for ax, family in zip(axes, families):
        names = list(results)
        first = [100 * results[a]["test"][family]["accuracy"] for a in names]
        second = [100 * (results[a]["test"][family]["second_attempt_accuracy"] or 0) for a in names]
        xs = range(len(names))
        ax.bar([x - 0.2 for x in xs], first, 0.4, label="first attempt")
        ax.bar([x + 0.2 for x in xs], second, 0.4, label="second attempt, with error codes")
        ax.set_xticks(list(xs), names)
        ax.set_title(family)
        ax.set_ylabel("held-out accuracy (%)")
    axes[0].legend(loc="upper left", fontsize=8)
    fig.suptitle(" · ".join(f"{name} {ARMS[name]['label']}" for name in results), fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def replay(train: list[dict], n: int, seed: int) -> list[dict]:
    """n task examples from the training data, each pass over it in a new order."""
    rng, out = random.Random(seed), []
    while len(out) < n:
        out += rng.sample(train, min(n - len(out), len(train)))
    return out


def given_files_only(root: Path, **experimental) -> None:
    """From here on the arm trains only what it is given: no live self-correction, no validation hold-out.
    `experimental` settings replace the arm's own: they shape the records `python -m selfcorrect build`
    writes and how they train."""
    config = json.loads((root / "config.json").read_text())
    config["self_correction"]["enabled"] = False
    config.setdefault("experimental", {}).update(experimental)
    config["validation"]["holdout_fraction"] = 0
    (root / "config.json").write_text(json.dumps(config, indent=2))


def one_more_round(work: Path, names: str, train: list[dict], results: dict, replay_size: int | None,
                   replay_seed: int) -> None:
    """The round arms (ROUND_ARMS): copies of B's root, each trained one more file (a round of mistakes first, to size
    P's)."""
    questions = write_jsonl(work / "train-questions.jsonl", train)
    b_root, answers, timing = Path(results["B"]["root"]), work / "B-answers.jsonl", work / "B-answers.seconds"
    if set(names) & set(MISTAKE_ROUNDS) and not answers.exists():  # B's answers to every training question, once
        t0 = time.time()
        run(b_root, ["-m", "selfcorrect"], "initial-answers", "--input", str(questions), "--output", str(answers),
            "--root", str(b_root), "--batch-size", "16")
        timing.write_text(f"{time.time() - t0:.1f}\n")
    answer_seconds, p_size = float(timing.read_text()) if timing.exists() else 0.0, replay_size
    if set(names) & set(MISTAKE_ROUNDS) and not timing.exists():
        print("B's answers come from --b-from's run, which did not record their time: not counted", flush=True)
    for name in sorted(names, key=ROUND_ARMS.index):
        root, t0 = work / name, time.time()
        shutil.copytree(b_root, root, symlinks=True)  # adapters/current is a link
        arm = ARMS[name]
        given_files_only(root, unlikelihood_weight=arm.get("unlikelihood", 0.0),
                         preference_weight=arm.get("preference", 0.0),
                         confirm_right_answers=bool(arm.get("confirm")), confirm_golden_answers=bool(arm.get("golden")),
                         reject_initial_attempts=arm.get("reject_initial", True),
                         reject_golden_confirmations=bool(arm.get("reject_golden")))
        if name in MISTAKE_ROUNDS:
            round_file = root / "inbox" / "round-mistakes.jsonl"
            run(root, ["-m", "selfcorrect"], "build", "--input", str(questions), "--initial-answers", str(answers),
                "--output", str(round_file))
            records = [json.loads(line) for line in round_file.open()]
            size = len(records)
            p_size = p_size or size  # the first round's size (R's when R runs)
            if arm.get("replay_share"):  # the same size, part of it plain replay
                n_replay = round(size * arm["replay_share"])
                mixed = random.Random(2).sample(records, size - n_replay) + replay(train, n_replay, replay_seed)
                random.Random(3).shuffle(mixed)
                write_jsonl(round_file, mixed)
        else:
            size = p_size
            drop(root, [replay(train, size, replay_seed)], "round-replay")
        train_py(root, "--once")
        last = json.loads((root / "data" / "state.json").read_text())["files_trained"][-1]
        results[name] = {"label": ARMS[name]["label"], "root": str(root), **trained(root), "round_examples": size,
                         "round_tokens": last["tokens"], "round_supervised_tokens": last["supervised_tokens"],
                         "train_seconds": results["B"]["train_seconds"] + time.time() - t0
                         + (answer_seconds if name in MISTAKE_ROUNDS else 0)}
        print(f"{name} ({ARMS[name]['label']}): {size} examples more than B ({last['tokens']} tokens, "
              f"{last['supervised_tokens']} supervised), {time.time() - t0:.0f}s", flush=True)


def settings(config: dict) -> dict:
    """What a config trains with: all of it but where the models are cached (another clone's run is the same)."""
    return {**config, "model": {k: v for k, v in config["model"].items() if k != "cache_dir"}}


def earlier_b(earlier: Path, work: Path, chunks: list[list[dict]], args) -> dict:
    """Arm B of an earlier run (--b-from), copied in: the same config and task files, or the bench stops."""
    earlier = earlier.resolve()
    src, root = earlier / "B", work / "B"
    if not (src / "data" / "state.json").exists():
        sys.exit(f"--b-from {earlier}: no trained arm B in {src}")
    done = sorted((src / "queue" / "done").glob("*--task-*.jsonl"), key=lambda f: f.name.split("--")[1])
    files = [[json.loads(l) for l in f.read_text().splitlines()] for f in done]
    state = json.loads((src / "data" / "state.json").read_text())
    if files != chunks or len(state["files_trained"]) != len(chunks) \
            or settings(json.loads((src / "config.json").read_text())) != settings(config_for(ARMS["B"], args)):
        sys.exit(f"--b-from {earlier}: its B trained other files or settings; use the same --seed, --train, "
                 "--chunks, --model and training flags as that run, and one where B was not topped up")
    shutil.copytree(src, root, symlinks=True)
    # B's answers to the training questions, if that run made them: greedy, so the same (measured: `cmp` equal).
    # Their time comes along where that run recorded it.
    questions = earlier / "train-questions.jsonl"
    if (earlier / "B-answers.jsonl").exists() and questions.exists() \
            and questions.read_text() == "".join(json.dumps(r) + "\n" for chunk in chunks for r in chunk):
        for f in (earlier / "B-answers.jsonl", earlier / "B-answers.seconds"):
            if f.exists():
                shutil.copy2(f, work / f.name)
    return {"label": ARMS["B"]["label"], "root": str(root),
            "train_seconds": sum(f["seconds"] for f in state["files_trained"])}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="about 15 minutes: small data")
    p.add_argument("--set", action="append", default=[], metavar="KEY.PATH=JSON",
                   help=bench_settings.HELP + ", in every arm")
    p.add_argument("--model", default="smollm2-135m-instruct")
    p.add_argument("--train", type=int, default=200, help="training examples per family")
    p.add_argument("--test", type=int, default=50, help="held-out test items per family")
    p.add_argument("--chunks", type=int, default=4, help="task files the training data arrives in")
    p.add_argument("--holdout", type=float, default=0.1, help="validation.holdout_fraction (the pool)")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--eval-steps", type=int, default=10)
    p.add_argument("--eval-samples", type=int, default=8)
    p.add_argument("--min-examples", type=int, default=12)
    p.add_argument("--max-tokens", type=int, default=96, help="eval_max_tokens; the answers need about 50")
    p.add_argument("--arms", default="ABCD", help=f"any of ABCDEFGHIJ, and {', '.join(ROUND_ARMS)} (with B); the default four "
                   "take under an hour here, BE or BF about 32 minutes, BG 24 to 43")
    p.add_argument("--seed", type=int, default=0, help="another seed: other data, test items and training order")
    p.add_argument("--work", type=Path, default=None)
    p.add_argument("--replay", type=int, default=None, metavar="N",
                   help=f"P's round size (default: as many examples as the first round of mistakes, of {', '.join(MISTAKE_ROUNDS)})")
    p.add_argument("--replay-seed", type=int, default=1, metavar="N",
                   help="the order replayed task examples are drawn in (P, M and top-ups): another N is another "
                   "path through the same data, to see how much an arm's figures vary from run to run")
    p.add_argument("--b-from", type=Path, default=None, metavar="WORK",
                   help="reuse arm B of an earlier run (its work folder; same seed and flags) instead of training it "
                   f"again: the rounds ({', '.join(ROUND_ARMS)}) continue from it")
    args = p.parse_args()
    if set(args.arms) & set(ROUND_ARMS) and "B" not in args.arms:
        p.error(f"--arms: {', '.join(ROUND_ARMS)} continue from B's adapter; add B (e.g. --arms BPR)")
    if args.b_from and "B" not in args.arms:
        p.error("--b-from reuses arm B; add B to --arms")
    if "P" in args.arms and not (set(args.arms) & set(MISTAKE_ROUNDS) or args.replay):
        p.error(f"--arms: P is sized by a round of mistakes ({', '.join(MISTAKE_ROUNDS)}); add one (e.g. --arms BPR), "
                "or give --replay N")
    if args.quick:
        args.train, args.test, args.chunks, args.eval_steps, args.min_examples = 24, 8, 2, 2, 3
    work = (args.work or Path(tempfile.mkdtemp(prefix="learning-"))).resolve()  # commands run from the repo
    work.mkdir(parents=True, exist_ok=True)
    started = time.time()

    # Data: per family, training examples and a separate test set.
    train = [r for k, make in enumerate(FAMILIES.values()) for r in make(args.train, seed=100 + k + 10 * args.seed)]
    tests = test_sets(work, args.test, args.seed)
    random.Random(args.seed).shuffle(train)  # the families arrive mixed, as a user's files would
    size = -(-len(train) // args.chunks)
    chunks = [train[i:i + size] for i in range(0, len(train), size)]

    results = {}
    for name in [n for n in args.arms if "from" not in ARMS[n]]:
        arm = ARMS[name]
        if name == "B" and args.b_from:
            results[name] = earlier_b(args.b_from, work, chunks, args)
            print(f"B ({arm['label']}): from {args.b_from}", flush=True)
            continue
        root = work / name
        (root / "inbox").mkdir(parents=True, exist_ok=True)
        (root / "config.json").write_text(json.dumps(config_for(arm, args), indent=2))
        t0 = time.time()
        if arm["train"]:
            drop(root, chunks, "task")
            train_py(root, "--once")
        results[name] = {"label": arm["label"], "root": str(root), "train_seconds": time.time() - t0}
        print(f"{name} ({arm['label']}): trained in {results[name]['train_seconds']:.0f}s", flush=True)

    # Equal compute: top every trained arm up to the same number of training examples.
    counts = {n: trained(Path(r["root"]))["examples_trained"] for n, r in results.items() if ARMS[n]["train"]}
    target = max(counts.values(), default=0)
    for name, count in counts.items():
        root, t0 = Path(results[name]["root"]), time.time()
        if count < target:
            given_files_only(root)  # the top-up is plain task data, for every arm
            drop(root, [replay(train, target - count, args.replay_seed)], "top-up")
            train_py(root, "--once")
        results[name].update(**trained(root), top_up=target - count,
                             train_seconds=results[name]["train_seconds"] + time.time() - t0)
    if set(args.arms) & set(ROUND_ARMS):
        one_more_round(work, "".join(n for n in args.arms if n in ROUND_ARMS), train, results, args.replay,
                       args.replay_seed)

    for name, r in results.items():
        root = Path(r["root"])
        events = [json.loads(l) for l in (root / "logs" / "events.jsonl").read_text().splitlines()] \
            if (root / "logs" / "events.jsonl").exists() else []
        r["self_correction_files"] = sum(1 for e in events if e["event"] == "done" and e.get("origin", "user") != "user")
        r["test"] = evaluate(root, tests, "current" if ARMS[name]["train"] else "base")
        line = ", ".join(f"{f} {100 * t['accuracy']:.0f}% (second attempt "
                         f"{100 * (t['second_attempt_accuracy'] or 0):.0f}%, wrong→right {t['wrong_to_right']}, "
                         f"right→wrong {t['right_to_wrong']}/{t['right_probed']})" for f, t in r["test"].items())
        compute = f"{r['examples_trained']} examples, {r['steps']} steps, {r['tokens_trained']} tokens " \
            f"({r['supervised_tokens_trained']} supervised): " if ARMS[name]["train"] else ""
        print(f"{name}: {compute}{line}", flush=True)

    plot(results, work / "bench_learning.png")
    print(f"plot: {work / 'bench_learning.png'}")
    summary = {name: {"label": r["label"], "steps": r.get("steps", 0), "examples_trained": r.get("examples_trained", 0),
                      **{k: r[k] for k in ("tokens_trained", "supervised_tokens_trained", "round_tokens",
                                           "round_supervised_tokens") if k in r},
                      "self_correction_files": r["self_correction_files"], "train_seconds": round(r["train_seconds"]),
                      **{f"{f}_{k}": t[k] for f, t in r["test"].items()
                         for k in ("accuracy", "second_attempt_accuracy", "wrong_to_right", "right_to_wrong", "n")}}
               for name, r in results.items()}
    print(json.dumps({"arms": summary, "seed": args.seed, "seconds": round(time.time() - started), "work": str(work)}))


if __name__ == "__main__":
    main()
