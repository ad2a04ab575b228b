import torch

from inference.stopping import LoopStop


def test_a_row_stops_only_once_it_repeats_a_block_three_times():
    prompt = [5, 6, 7]
    loop = [11, 12, 13, 14, 15, 16, 17, 18]
    rows = torch.tensor([
        prompt + [1, 2] + loop * 3,  # fell into a loop of period 8: stop
        prompt + list(range(100, 126)),  # no repetition: go on
        prompt + [1] * 2 + [9] * 24,  # one token repeated 24 times: a loop of period 1
        prompt + [3, 4] * 5 + list(range(200, 216)),  # a short repetition, then new text: go on
    ])
    assert LoopStop(len(prompt))(rows, None).tolist() == [True, False, True, False]


def test_a_short_repetition_is_not_a_loop():
    rows = torch.tensor([[0] + [7, 8] * 6])  # 12 tokens, below the minimum
    assert LoopStop(1)(rows, None).tolist() == [False]


def test_the_shrinking_batch_gives_the_tokens_generate_gives(tmp_path):
    """Rows that end early leave the batch; every answer must still be exactly what generate() answers."""
    from inference.sampling import greedy_tokens
    from tests.conftest import write_config
    from core.config import load_config
    from core.models import load_base_model, load_tokenizer, resolve_model_path

    config = load_config(write_config(tmp_path))
    path = resolve_model_path(config, tmp_path)
    tokenizer, model = load_tokenizer(path, config), load_base_model(path, config, "cpu", "fp32").eval()
    tokenizer.padding_side = "left"
    prompts = ["What is 2 + 2?", "Name a colour, then a number, then an animal, please.", "Hi", "Count to ten."]
    batch = tokenizer(prompts, return_tensors="pt", padding=True)
    free = model.generate(**batch, max_new_tokens=24, do_sample=False, eos_token_id=None,
                          pad_token_id=tokenizer.pad_token_id)[:, batch["input_ids"].shape[1]:]
    # stop tokens the rows reach at different steps, so rows leave the batch one by one
    stops = sorted({int(free[0, 3]), int(free[2, 9])})
    expected = model.generate(**batch, max_new_tokens=24, do_sample=False, eos_token_id=stops,
                              pad_token_id=tokenizer.pad_token_id)[:, batch["input_ids"].shape[1]:].tolist()
    got = greedy_tokens(model, tokenizer, batch["input_ids"], batch["attention_mask"], max_new_tokens=24, stops=stops)
    lengths = [len(g) for g in got]
    assert len(set(lengths)) > 1 and max(lengths) == 24  # some rows ended early, one ran to the limit
    for row, tokens in zip(expected, got):
        assert row[:len(tokens)] == tokens and all(t == tokenizer.pad_token_id for t in row[len(tokens):])


def test_answers_with_the_adapter_merged_match_the_lora_forward_and_leave_weights_untouched(tmp_path):
    """Evaluation merges LoRA into copies of the weights; answers must match the unmerged forward, and
    training must get back the very same weight tensors, with the LoRA path active again."""
    from inference.sampling import generate_answers, greedy_tokens
    from inference.weights import merged_lora
    from tests.conftest import lora_model

    tokenizer, model = lora_model(tmp_path)  # B drawn: a fresh adapter's B = 0 would merge to nothing
    weights = {n: (p.data.data_ptr(), p.detach().clone()) for n, p in model.named_parameters()}
    tokenizer.padding_side = "left"
    batch = tokenizer(["What is 2 + 2?", "Count to ten, please."], return_tensors="pt", padding=True)
    model.eval()
    unmerged = greedy_tokens(model, tokenizer, batch["input_ids"], batch["attention_mask"], max_new_tokens=16, stops=[])
    with merged_lora(model):
        assert any(m.merged for m in model.modules() if hasattr(m, "merged_adapters"))
        merged = greedy_tokens(model, tokenizer, batch["input_ids"], batch["attention_mask"], max_new_tokens=16, stops=[])
    assert merged == unmerged
    with model.disable_adapter():
        without = greedy_tokens(model, tokenizer, batch["input_ids"], batch["attention_mask"], max_new_tokens=16, stops=[])
    assert without != unmerged  # the adapter changes the answers, so the comparison above means something
    for n, p in model.named_parameters():
        ptr, value = weights[n]
        assert p.data.data_ptr() == ptr and torch.equal(p.detach(), value), n
    assert not any(m.merged for m in model.modules() if hasattr(m, "merged_adapters"))
    conversation = [[{"role": "user", "content": "What is 2 + 2?"}]]
    model.train()
    generate_answers(model, tokenizer, conversation, use_template=True, max_new_tokens=4)
    assert model.training and not any(m.merged for m in model.modules() if hasattr(m, "merged_adapters"))
