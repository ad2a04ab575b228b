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
