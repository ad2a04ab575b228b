"""experimental.unlikelihood_weight: the rejected answer's departing token is pushed down, in a real Trainer."""
import json

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, TrainingArguments

from tests.conftest import MODELS, write_config, write_jsonl, run_cli
from core.data import Example
from core.encoding import PaddingCollator, encode
from training.trainer import SupervisedTrainer


def record(a, b, wrong):
    return {"prompt": f"What is {a} + {b}?", "response": f"{a} + {b} = {a + b}. The answer is {a + b}.",
            "rejected": f"{a} + {b} = {wrong}. The answer is {wrong}."}


def test_the_loss_adds_minus_log_one_minus_p_of_each_departing_token(tmp_path):
    tok = AutoTokenizer.from_pretrained(MODELS / "tiny-random")
    model = AutoModelForCausalLM.from_pretrained(MODELS / "tiny-random")
    rows = []
    for r in (record(57, 47, 94), record(12, 30, 52), {"prompt": "Say hi.", "response": "hi"}):
        ex = Example(1, messages=[{"role": "user", "content": r["prompt"]}, {"role": "assistant", "content": r["response"]}],
                     meta={k: v for k, v in r.items() if k == "rejected"})
        e = encode(tok, ex, use_template=True, max_length=256, unlikelihood=True)
        rows.append({"input_ids": e.input_ids, "labels": e.labels, "unlikely": e.unlikely})
    batch = PaddingCollator(tok.pad_token_id)(rows)
    args = TrainingArguments(output_dir=str(tmp_path), report_to=[], use_cpu=True)
    losses = {}
    for weight in (0.0, 3.0):
        trainer = SupervisedTrainer(model=model, args=args, unlikelihood_weight=weight)
        with torch.no_grad():
            losses[weight] = trainer.compute_loss(model, dict(batch)).item()
    with torch.no_grad():
        probs = torch.softmax(model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits.float(), -1)
    expected = 0.0
    for row, r in enumerate(rows):
        if r["unlikely"]:
            position, token = r["unlikely"]
            expected -= torch.log1p(-probs[row, position - 1, token]).item()
    supervised = int((batch["labels"][:, 1:] != -100).sum())
    assert sum(1 for r in rows if r["unlikely"]) == 2
    assert abs((losses[3.0] - losses[0.0]) - 3.0 * expected / supervised) < 1e-6 * max(1.0, losses[0.0])


def test_a_file_of_corrections_trains_with_the_weight_on(root):
    write_config(root, experimental={"unlikelihood_weight": 2.0},
                 training={"learning_rate": 0.01, "micro_batch_tokens": 40})
    data = [record(a, a + 7, 2 * a + 17) for a in range(3, 19)]
    out = run_cli(root, write_jsonl(root / "corrections.jsonl", data))
    assert out.returncode == 0, out.stderr[-2000:]
    events = [json.loads(l) for l in (root / "logs" / "events.jsonl").read_text().splitlines()]
    assert [e["steps"] for e in events if e["event"] == "done"] == [len(data) // 4]
    assert [e["batches"] for e in events if e["event"] == "sliced"] == [len(data) // 4]  # the slices carry it too
    losses = [e["loss"] for e in events if e["event"] == "progress"]
    assert losses and all(0 < loss < 100 for loss in losses)
