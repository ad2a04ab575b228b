"""bf16 training: the trainer's own loss runs under autocast; a frozen base held in half precision while it trains
gives the same numbers as autocast's casts, the originals come back, and the sampling engine answers in one dtype."""
import pytest
import torch
from transformers import TrainingArguments

from core.data import Example
from core.encoding import PaddingCollator, encode
from inference.requests import Request
from inference.sampling import SamplingEngine
from tests.conftest import lora_model
from training.trainer import SupervisedTrainer, half_precision_base


DEVICES = ["cpu", pytest.param("cuda", marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="no GPU here "
                                                                  "(tests/gpu/check_cuda_path.sh runs it on one)"))]


def base_linears(model) -> dict:
    embedding = model.get_input_embeddings().weight
    return {n: m for n, m in model.named_modules()
            if isinstance(m, torch.nn.Linear) and "lora_" not in n and m.weight is not embedding}


@pytest.mark.parametrize("device", DEVICES)
def test_a_base_held_in_bf16_trains_to_autocasts_numbers_and_its_fp32_weights_come_back(tmp_path, device):
    tokenizer, model = lora_model(tmp_path, device)
    rows = []
    for a, b in ((57, 47), (12, 30), (3, 9)):
        ex = Example(1, messages=[{"role": "user", "content": f"What is {a} + {b}?"},
                                  {"role": "assistant", "content": f"{a} + {b} = {a + b}."}])
        e = encode(tokenizer, ex, use_template=True, max_length=128)
        rows.append({"input_ids": e.input_ids, "labels": e.labels})
    batch = {k: v.to(device) for k, v in PaddingCollator(tokenizer.pad_token_id)(rows).items()}
    trainer = SupervisedTrainer(model=model, args=TrainingArguments(output_dir=str(tmp_path / "out"), report_to=[],
                                                                    use_cpu=device == "cpu", bf16=True))
    autocast = []
    linears = base_linears(model)
    next(iter(linears.values())).register_forward_hook(lambda *_: autocast.append(torch.is_autocast_enabled(device)))

    def step():  # the loss as the trainer computes it: autocast is the trainer's own (bf16=True)
        model.zero_grad()
        loss = trainer.compute_loss(model, dict(batch))
        loss.backward()
        return loss.detach(), {n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad}

    before = {n: (p.data.data_ptr(), p.detach().clone()) for n, p in model.named_parameters()}
    assert len(linears) > 4
    loss, grads = step()  # autocast casts each fp32 weight on every call
    assert autocast and all(autocast), "bf16 training ran the decoder in fp32"
    with half_precision_base(model, "bf16"):
        assert all(m.weight.dtype == torch.bfloat16 for m in linears.values())
        assert all(p.dtype == torch.float32 for n, p in model.named_parameters() if p.requires_grad or n not in
                   {f"{m}.weight" for m in linears})  # the adapter, the norms and the (tied) embedding stay fp32
        assert model.get_input_embeddings().weight.dtype == torch.float32
        held_loss, held_grads = step()
    # bit for bit on a CPU; a GPU's backward may add in another order from run to run
    same = torch.equal if device == "cpu" else lambda a, b: torch.allclose(a, b, rtol=1e-3, atol=1e-6)
    assert same(held_loss, loss)
    assert grads.keys() == held_grads.keys() and all(same(grads[n], held_grads[n]) for n in grads)
    for n, p in model.named_parameters():  # the very same fp32 tensors are back
        ptr, value = before[n]
        assert p.data.data_ptr() == ptr and torch.equal(p.detach(), value), n
    with half_precision_base(model, "fp32"):  # nothing to save where nothing is cast
        assert all(m.weight.dtype == torch.float32 for m in linears.values())


def test_the_engine_answers_in_one_dtype_while_the_base_is_held_in_bf16(tmp_path):
    # B = 0: nothing merges, so both engines answer from the very same bf16 weights (a drawn B merged into an
    # already-rounded bf16 base rounds twice, and tiny-random's near ties would then flip)
    tokenizer, model = lora_model(tmp_path, drawn_b=False)
    requests = [Request(messages=[{"role": "user", "content": q}], max_new_tokens=12)
                for q in ("What is 2 + 2?", "Count to ten, please.", "Hi")]
    outside = SamplingEngine(model, tokenizer, use_template=True, dtype=torch.bfloat16).generate(requests)
    with half_precision_base(model, "bf16"):
        engine = SamplingEngine(model, tokenizer, use_template=True)  # as live evaluation builds it, mid-training
        assert engine.dtype == torch.bfloat16
        inside = engine.generate(requests)
    assert [r.completions[0].tokens for r in inside] == [r.completions[0].tokens for r in outside]
    assert all(len(r.completions[0].tokens) > 0 for r in inside)
