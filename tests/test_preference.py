"""experimental.preference_weight: DPO of the response over the rejected answer, against the file's start adapter."""
import json

import torch
import torch.nn.functional as F
from transformers import AutoModelForCausalLM, AutoTokenizer, TrainingArguments

from tests.conftest import MODELS, write_config, write_jsonl, run_cli
from core.data import Example
from core.encoding import IGNORE, PaddingCollator, encode
from training.trainer import SupervisedTrainer, add_reference_logps


def record(a, b, wrong):
    return {"prompt": f"What is {a} + {b}?", "response": f"{a} + {b} = {a + b}. The answer is {a + b}.",
            "rejected": f"{a} + {b} = {wrong}. The answer is {wrong}."}


def encoded_rows(tok, records):
    out = []
    for r in records:
        ex = Example(1, messages=[{"role": "user", "content": r["prompt"]}, {"role": "assistant", "content": r["response"]}],
                     meta={k: v for k, v in r.items() if k == "rejected"})
        out.append(encode(tok, ex, use_template=True, max_length=256, preference=True))
    return out


def summed_logp(model, ids, labels):
    """log p of the labelled tokens of one sequence, from the model's full logits."""
    with torch.no_grad():
        logits = model(input_ids=torch.tensor([ids])).logits[0, :-1].float()
    logps = F.log_softmax(logits, -1).gather(1, torch.tensor(ids[1:])[:, None])[:, 0]
    return float(logps[torch.tensor(labels[1:]) != IGNORE].sum())


def test_the_loss_adds_the_dpo_loss_of_each_pair_against_its_reference(tmp_path):
    tok = AutoTokenizer.from_pretrained(MODELS / "tiny-random")
    model = AutoModelForCausalLM.from_pretrained(MODELS / "tiny-random")
    encoded = encoded_rows(tok, [record(57, 47, 94), record(12, 30, 52), {"prompt": "Say hi.", "response": "hi"}])
    assert [e.rejected_ids is not None for e in encoded] == [True, True, False]

    assert add_reference_logps(model, encoded, tok.pad_token_id, precision="fp32") == 2
    for e in encoded[:2]:  # the reference is log p of each answer under the model as it was
        chosen, rejected = summed_logp(model, e.input_ids, e.labels), summed_logp(model, e.rejected_ids, e.rejected_labels)
        assert abs(e.reference[0] - chosen) < 1e-3 and abs(e.reference[1] - rejected) < 1e-3
        assert chosen != rejected
        e.reference = (chosen - 2.0, rejected + 1.0)  # as if the model had since gained 2 on one and lost 1 on the other
    assert encoded[2].reference is None

    rows = [{"input_ids": e.input_ids, "labels": e.labels, "rejected_ids": e.rejected_ids,
             "rejected_labels": e.rejected_labels, "reference": e.reference} for e in encoded]
    batch = PaddingCollator(tok.pad_token_id)(rows)
    args = TrainingArguments(output_dir=str(tmp_path), report_to=[], use_cpu=True)
    losses = {}
    for weight in (0.0, 4.0):
        trainer = SupervisedTrainer(model=model, args=args, preference_weight=weight, preference_beta=0.5)
        with torch.no_grad():
            losses[weight] = trainer.compute_loss(model, dict(batch)).item()
    supervised = int((batch["labels"][:, 1:] != IGNORE).sum())
    margin = (2.0 - -1.0)
    expected = 2 * -F.logsigmoid(torch.tensor(0.5 * margin)).item()
    assert abs((losses[4.0] - losses[0.0]) - 4.0 * expected / supervised) < 1e-4 * max(1.0, losses[0.0])


def margin_after_training(root, data, preference_weight):
    """Mean log p(response) - log p(rejected) over the pairs, under the adapter one run of train.py made."""
    from peft import PeftModel

    root.mkdir()
    write_config(root, experimental={"preference_weight": preference_weight, "preference_beta": 0.5},
                 training={"learning_rate": 0.01, "micro_batch_tokens": 40})
    out = run_cli(root, write_jsonl(root / "corrections.jsonl", data))
    assert out.returncode == 0, out.stderr[-2000:]
    tok = AutoTokenizer.from_pretrained(MODELS / "tiny-random")
    model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(MODELS / "tiny-random"),
                                      root / "data" / "adapters" / "current")
    pairs = [e for e in encoded_rows(tok, data) if e.rejected_ids]
    return sum(summed_logp(model, e.input_ids, e.labels) - summed_logp(model, e.rejected_ids, e.rejected_labels)
               for e in pairs) / len(pairs)


def test_a_file_of_corrections_trains_by_preference_and_moves_away_from_the_rejected_answers(tmp_path):
    data = [record(a, a + 7, 2 * a + 17) for a in range(3, 19)] + [{"prompt": "Say hi.", "response": "hi"}] * 4
    plain = margin_after_training(tmp_path / "plain", data, 0.0)
    root = tmp_path / "preference"
    preferred = margin_after_training(root, data, 20.0)
    # the same steps on the same data (measured: margins 0.23 against -0.05), and the rejected answers fell further
    assert preferred > plain + 0.1
    events = [json.loads(l) for l in (root / "logs" / "events.jsonl").read_text().splitlines()]
    assert [e["steps"] for e in events if e["event"] == "done"] == [len(data) // 4]
    assert [e["file"] for e in events if e["event"] == "reference"] == ["corrections.jsonl"]
    assert [e["batches"] for e in events if e["event"] == "sliced"] == [len(data) // 4]  # the slices carry pairs too
    losses = [e["loss"] for e in events if e["event"] == "progress"]
    assert losses and all(0 < loss < 100 for loss in losses)
