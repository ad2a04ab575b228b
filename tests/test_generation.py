import torch

from monitor.generation import LoopStop


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
    from monitor.generation import greedy_decode
    from tests.conftest import write_config
    from training.config import load_config
    from training.models import load_base_model, load_tokenizer, resolve_model_path

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
    got = greedy_decode(model, batch["input_ids"], batch["attention_mask"], max_new_tokens=24, stops=stops)
    lengths = [len(g) for g in got]
    assert len(set(lengths)) > 1 and max(lengths) == 24  # some rows ended early, one ran to the limit
    for row, tokens in zip(expected, got):
        assert row[:len(tokens)] == tokens and all(t == tokenizer.pad_token_id for t in row[len(tokens):])
