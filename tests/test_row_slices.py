"""Row slices (training.micro_batch_tokens): a batch over the budget runs in slices whose gradients add up to the
batch's, the longest rows first and each slice only as wide as its own longest row."""
import torch
from transformers import TrainingArguments

from core.data import Example
from core.encoding import PaddingCollator, encode
from tests.conftest import lora_model
from training.trainer import SupervisedTrainer, decoder_and_head


def test_a_mixed_batch_runs_its_long_rows_together_and_its_short_rows_without_their_padding(tmp_path):
    tokenizer, model = lora_model(tmp_path)
    story = "Sam had 12 apples, gave 5 to Ann, then bought 3 bags of 4 apples each and ate 2 of them. "
    questions = [("What is 3 + 9?", "12"), (story * 3 + "How many now?", "17"),
                 ("What is 4 + 4?", "8"), (story * 3 + "How many are left?", "17")]  # short and long, mixed
    rows = []
    for question, answer in questions:
        e = encode(tokenizer, Example(1, messages=[{"role": "user", "content": question},
                                                   {"role": "assistant", "content": answer}]),
                   use_template=True, max_length=512)
        rows.append({"input_ids": e.input_ids, "labels": e.labels})
    batch = PaddingCollator(tokenizer.pad_token_id)(rows)
    lengths = sorted(batch["attention_mask"].sum(dim=1).tolist(), reverse=True)
    long, short = lengths[0], lengths[2]  # each slice's width: its longest row
    assert lengths[1] > 3 * short

    seen = []
    decoder, _ = decoder_and_head(model)
    decoder.register_forward_pre_hook(lambda _, args, kwargs: seen.append(tuple(kwargs["input_ids"].shape)),
                                      with_kwargs=True)

    def gradients(budget):
        trainer = SupervisedTrainer(model=model, args=TrainingArguments(output_dir=str(tmp_path / "out"),
                                                                        report_to=[], use_cpu=True),
                                    micro_batch_tokens=budget)
        model.zero_grad()
        seen.clear()
        loss = trainer.training_step(model, {k: v.clone() for k, v in batch.items()})
        return float(loss), {n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad}, \
            list(seen), trainer.sliced_batches

    whole_loss, whole, whole_shapes, _ = gradients(0)
    # room for two long rows: the two long rows make one slice, the two short ones another, at their own width
    sliced_loss, sliced, shapes, sliced_count = gradients(2 * long)
    assert whole_shapes == [(4, long)]
    assert sliced_count == 1 and shapes == [(2, long), (2, short)], shapes
    assert abs(sliced_loss - whole_loss) < 1e-5 * abs(whole_loss)
    assert whole.keys() == sliced.keys()
    # float sums in another order: within 1e-5 of each gradient's scale (AMX kernels differ by ~1e-6 of 0.3)
    assert all(torch.allclose(whole[n], sliced[n], rtol=1e-4, atol=1e-5 * float(whole[n].abs().max())) for n in whole)
