"""The sampling engine with the tiny-random model: greedy as generate, seeded samples, shared prefill, log-probs,
stop strings, and the stops for a finished final answer or a runaway enumeration."""
import pytest
import torch

from inference.requests import Request
from inference.sampling import SamplingEngine
from inference.stopping import enumerating, final_answer_end

CHAT = [[{"role": "user", "content": "What is 2 + 2?"}], [{"role": "user", "content": "Name a colour."}],
        [{"role": "user", "content": "Count to ten, please, slowly."}]]


@pytest.fixture(scope="module")
def engine(tmp_path_factory):
    from core.config import load_config
    from core.models import load_base_model, load_tokenizer, resolve_model_path
    from tests.conftest import write_config

    root = tmp_path_factory.mktemp("sampling")
    config = load_config(write_config(root))
    path = resolve_model_path(config, root)
    model = load_base_model(path, config, "cpu", "fp32")
    return SamplingEngine(model, load_tokenizer(path, config), use_template=True, max_batch=8, dtype=None)


def test_greedy_requests_give_the_tokens_generate_gives(engine):
    got = engine.generate([Request(messages=c, max_new_tokens=12) for c in CHAT])
    tok, model = engine.tokenizer, engine.model
    for chat, result in zip(CHAT, got):
        ids = tok(engine.render(Request(messages=chat)), return_tensors="pt", add_special_tokens=False)
        out = model.generate(**ids, max_new_tokens=12, do_sample=False, pad_token_id=tok.pad_token_id,
                             eos_token_id=tok.eos_token_id)[0, ids["input_ids"].shape[1]:].tolist()
        c = result.completions[0]
        assert c.tokens == out[:len(c.tokens)] and result.prompt_tokens == ids["input_ids"].shape[1]
        assert c.finish_reason in ("length", "stop", "loop")


def test_a_seeded_request_samples_the_same_whatever_else_is_in_the_batch(engine):
    asked = Request(messages=CHAT[0], max_new_tokens=10, temperature=0.8, top_p=0.95, n=3, seed=7)
    alone = engine.generate([asked])[0].completions
    crowded = engine.generate([Request(messages=CHAT[1], max_new_tokens=6, temperature=1.0, n=2, seed=1), asked,
                               Request(messages=CHAT[2], max_new_tokens=8)])[1].completions
    assert [c.tokens for c in alone] == [c.tokens for c in crowded]
    assert len({tuple(c.tokens) for c in alone}) > 1, "three samples of a near-uniform model differ"
    other_seed = engine.generate([Request(messages=CHAT[0], max_new_tokens=10, temperature=0.8, n=3, seed=8)])
    assert [c.tokens for c in other_seed[0].completions] != [c.tokens for c in alone]


def test_top_k_one_and_a_tiny_top_p_sample_the_greedy_tokens(engine):
    greedy = engine.generate([Request(messages=CHAT[2], max_new_tokens=10)])[0].completions[0].tokens
    for request in (Request(messages=CHAT[2], max_new_tokens=10, temperature=1.5, top_k=1, seed=3),
                    Request(messages=CHAT[2], max_new_tokens=10, temperature=1.5, top_p=1e-9, seed=3)):
        assert engine.generate([request])[0].completions[0].tokens == greedy


def test_k_samples_share_one_prefill(engine):
    batches = []
    hook = engine.model.register_forward_pre_hook(lambda m, args, kwargs: batches.append(kwargs["input_ids"].shape),
                                                  with_kwargs=True)
    try:
        engine.generate([Request(messages=CHAT[0], max_new_tokens=4, temperature=1.0, n=5, seed=0),
                         Request(messages=CHAT[1], max_new_tokens=4, temperature=1.0, n=3, seed=0)])
    finally:
        hook.remove()
    assert batches[0][0] == 2 and batches[0][1] > 1, "the prefill: each prompt once"
    assert batches[1] == (8, 1), "then one token for each of the 8 samples"


def test_a_waiting_request_takes_a_finished_rows_slot_and_answers_as_it_would_alone(engine):
    small = SamplingEngine(engine.model, engine.tokenizer, use_template=True, max_batch=2, dtype=None)
    asked = [Request(messages=CHAT[0], max_new_tokens=30, cut_runaways=False),
             Request(messages=CHAT[1], max_new_tokens=2),
             Request(messages=CHAT[2], max_new_tokens=12, temperature=0.9, seed=4, logprobs=True),
             Request(messages=CHAT[1], max_new_tokens=5)]
    shapes = []
    hook = engine.model.register_forward_pre_hook(lambda m, args, kwargs: shapes.append(kwargs["input_ids"].shape),
                                                  with_kwargs=True)
    try:
        together = small.generate(asked)
    finally:
        hook.remove()
    alone = [small.generate([r])[0] for r in asked]
    assert [r.completions[0].tokens for r in together] == [r.completions[0].tokens for r in alone]
    assert torch.allclose(torch.tensor(together[2].completions[0].logprobs), torch.tensor(alone[2].completions[0].logprobs),
                          atol=1e-5)
    assert len(together[0].completions[0].tokens) == 30
    prefills = [s for s in shapes if s[1] > 1]
    assert [s[0] for s in prefills] == [2, 1, 1], "two at first, then each waiting one as a slot frees"
    assert max(s[0] for s in shapes) == 2 and len(shapes) < 30 + 2 + 12 + 5, "never more than two rows; steps shared"


def test_log_probs_are_the_models_for_each_chosen_token(engine):
    result = engine.generate([Request(messages=CHAT[1], max_new_tokens=6, temperature=1.0, seed=5,
                                      logprobs=True)])[0]
    c = result.completions[0]
    tok = engine.tokenizer
    prompt = tok(engine.render(Request(messages=CHAT[1])), return_tensors="pt", add_special_tokens=False)["input_ids"]
    full = torch.cat([prompt, torch.tensor([c.tokens])], dim=1)
    with torch.no_grad():
        logp = engine.model(full).logits[0, prompt.shape[1] - 1:-1].float().log_softmax(-1)
    expected = logp.gather(1, torch.tensor(c.tokens)[:, None])[:, 0]
    assert len(c.logprobs) == len(c.tokens) and torch.allclose(torch.tensor(c.logprobs), expected, atol=1e-4)


def test_a_prompt_is_scored_by_its_prefill_as_a_teacher_forced_forward_scores_it(engine):
    """prompt_logprobs: each prompt token's log-prob given those before it, from the prefill of the whole batch
    (prompts of different lengths, left-padded together); max_new_tokens 0 decodes nothing."""
    tok = engine.tokenizer
    ids = [tok("The cat sat on the mat because")["input_ids"], tok("Two plus two")["input_ids"]]
    forwards = []
    hook = engine.model.register_forward_pre_hook(lambda m, a, kw: forwards.append(kw["input_ids"].shape),
                                                  with_kwargs=True)
    try:
        scored = engine.generate([Request(prompt_ids=i, max_new_tokens=0, prompt_logprobs=3) for i in ids])
    finally:
        hook.remove()
    assert forwards == [(2, max(map(len, ids)))], "one batched forward, no decoding step"
    for prompt, result in zip(ids, scored):
        with torch.no_grad():
            logp = engine.model(torch.tensor([prompt])).logits[0, :-1].float().log_softmax(-1)
        expected = logp.gather(1, torch.tensor(prompt[1:])[:, None])[:, 0]
        assert result.prompt_ids == prompt and result.prompt_logprobs[0] is None
        assert torch.allclose(torch.tensor(result.prompt_logprobs[1:]), expected, atol=1e-4)
        best = result.prompt_top_logprobs[1]
        assert len(best) == 3 and best[0][0] == int(logp[0].argmax()) and best[0][1] >= best[1][1] >= best[2][1]
        assert result.completions[0].tokens == [] and result.completions[0].finish_reason == "length"


def test_top_logprobs_of_a_greedy_token_hold_it_with_the_same_log_prob(engine):
    c = engine.generate([Request(prompt="Once upon a time", max_new_tokens=5, logprobs=True, top_logprobs=2,
                                 cut_runaways=False)])[0].completions[0]
    assert len(c.top_logprobs) == len(c.tokens) == 5
    assert all(top[0] == (t, lp) for t, lp, top in zip(c.tokens, c.logprobs, c.top_logprobs))


def test_a_stop_string_ends_the_completion_before_it(engine):
    asked = dict(messages=CHAT[2], max_new_tokens=24, temperature=1.0, seed=11)
    free = engine.generate([Request(**asked)])[0].completions[0]
    assert len(free.text) >= 12, free
    word = free.text[len(free.text) // 2:len(free.text) // 2 + 3]
    cut = engine.generate([Request(**asked, stop=(word,))])[0].completions[0]
    assert cut.finish_reason == "stop" and word not in cut.text and free.text.startswith(cut.text)


def test_bad_requests_are_refused_with_the_field_before_any_work():
    idle = SamplingEngine(None, None, use_template=False, dtype=None)  # no model: a refusal must come first
    with pytest.raises(ValueError, match="n must be at least 1"):
        idle.generate([Request(prompt="x", n=0)])
    with pytest.raises(ValueError, match="ask for prompt_logprobs"):
        idle.generate([Request(prompt="x", max_new_tokens=0)])
    with pytest.raises(ValueError, match="stop"):
        idle.generate([Request(prompt="x", stop=("",))])
    with pytest.raises(ValueError, match="messages, a prompt or prompt token ids"):
        idle.generate([Request()])


@pytest.mark.parametrize("text, answer", [
    ("3 * 4 = 12. The answer is 12. Also", "3 * 4 = 12. The answer is 12."),
    ("3 * 4 = 12.\n#### 12\nMore", "3 * 4 = 12.\n#### 12\n"),
    ("so x = \\boxed{12} and", "so x = \\boxed{12}"),
    ("The answer is 12", None),  # the number may go on
    ("The answer is 4.", None),  # 4.5?
    ("The answer is not obvious. Let us see", None),  # no number: not a final answer
])
def test_a_final_answer_is_complete_only_once_its_line_or_sentence_ended(text, answer):
    end = final_answer_end(text)
    assert (None if end is None else text[:end]) == answer


def test_an_answer_counting_upward_is_an_enumeration_but_a_worked_sum_is_not():
    counting = "".join(f"3 * {i} = {3 * i}\n" for i in range(12))
    assert enumerating(counting)
    worked = "12 + 34 = 46.\n46 + 5 = 51.\n51 + 9 = 60.\nThe answer is 60.\n"
    assert not enumerating(worked)
    assert not enumerating("same line 1\n" * 12)  # an exact repeat is the token loop's case


def test_bf16_decoding_answers_as_the_bf16_model_and_gives_the_fp32_weights_back(engine):
    import copy

    model = engine.model
    weights = {n: (p.data.data_ptr(), p.detach().clone()) for n, p in model.named_parameters()}
    half = SamplingEngine(model, engine.tokenizer, use_template=True, max_batch=8, dtype=torch.bfloat16)
    seen = set()
    hook = model.lm_head.register_forward_pre_hook(lambda m, args: seen.add(m.weight.dtype))
    try:
        got = half.generate([Request(messages=c, max_new_tokens=10) for c in CHAT])
    finally:
        hook.remove()
    assert seen == {torch.bfloat16}, "the weights answered in bf16"
    reference = SamplingEngine(copy.deepcopy(model).to(torch.bfloat16), engine.tokenizer, use_template=True,
                               max_batch=8, dtype=None).generate([Request(messages=c, max_new_tokens=10) for c in CHAT])
    assert [r.completions[0].tokens for r in got] == [r.completions[0].tokens for r in reference]
    for n, p in model.named_parameters():
        ptr, value = weights[n]
        assert p.dtype == torch.float32 and p.data.data_ptr() == ptr and torch.equal(p.detach(), value), n


@pytest.mark.parametrize("dtype,tolerance", [(torch.float32, 1e-5), (torch.bfloat16, 2e-2)])
def test_grouped_decode_attention_gives_sdpas_output(engine, dtype, tolerance):
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    from inference.attention import grouped_decode_attention

    module = engine.model.model.layers[0].self_attn  # 4 query heads over 2 key/value heads
    gen = torch.Generator().manual_seed(0)
    rows, heads, kv_heads, positions, dim = 3, 4, 2, 7, 8
    query = torch.randn(rows, heads, 1, dim, generator=gen).to(dtype)
    key, value = (torch.randn(rows, kv_heads, positions, dim, generator=gen).to(dtype) for _ in range(2))
    mask = torch.ones(rows, 1, 1, positions, dtype=torch.bool)
    mask[1, ..., :3] = False  # left padding
    for m in (mask, None):
        ours, _ = grouped_decode_attention(module, query, key, value, m, scaling=dim ** -0.5)
        theirs, _ = sdpa_attention_forward(module, query, key, value, m, scaling=dim ** -0.5)
        assert ours.shape == theirs.shape == (rows, 1, heads, dim)
        assert torch.allclose(ours.float(), theirs.float(), atol=tolerance), (ours - theirs).abs().max()


def _draws(logits: torch.Tensor, request: Request, n: int) -> torch.Tensor:
    from inference.sampling import _choose, _Row

    row = _Row(request, 0, torch.Generator().manual_seed(request.seed))
    return torch.stack([_choose(logits[None], [row])[0] for _ in range(n)])


def test_a_nucleus_among_the_top_candidates_is_sampled_in_its_own_proportions():
    probs = torch.full((1000,), 0.1 / 990)
    probs[:10] = torch.tensor([0.3, 0.2, 0.1, 0.08, 0.06, 0.05, 0.04, 0.03, 0.02, 0.02])
    request = Request(max_new_tokens=1, temperature=1.0, top_p=0.8, seed=11)
    draws = _draws(probs.log(), request, 3000)
    nucleus = probs[:7] / probs[:7].sum()  # the first six hold 0.79 < 0.8, so the seventh is in; past it, 0.83
    assert int(draws.max()) < 7
    seen = torch.bincount(draws, minlength=7).float() / len(draws)
    assert (seen - nucleus).abs().max() < 0.03, seen


def test_a_nucleus_wider_than_the_candidates_draws_from_the_whole_of_it():
    from inference.sampling import NUCLEUS_CANDIDATES

    logits = torch.zeros(1000)  # uniform: a 0.99 nucleus holds 990 tokens, far past the candidates
    draws = _draws(logits, Request(max_new_tokens=1, temperature=1.0, top_p=0.99, seed=5), 2000)
    ranks_past_candidates = (draws >= NUCLEUS_CANDIDATES).float().mean()
    assert abs(float(ranks_past_candidates) - (990 - NUCLEUS_CANDIDATES) / 990) < 0.05


def test_the_decode_batch_is_sized_to_the_kv_cache_a_row_needs(engine):
    from transformers import LlamaConfig, LlamaForCausalLM

    from inference.memory import ENGINE_MEMORY, MAX_ROWS, ROW_TOKENS, decode_rows

    assert decode_rows(engine.model, torch.bfloat16) == MAX_ROWS["cpu"], "a tiny cache per row: the CPU's limit"
    wide = LlamaForCausalLM(LlamaConfig(vocab_size=64, hidden_size=32, intermediate_size=32, num_hidden_layers=8,
                                        num_attention_heads=4, num_key_value_heads=4, head_dim=256))
    per_row = 2 * 8 * 4 * 256 * 2 * ROW_TOKENS  # keys and values, layers, heads, head size, bf16 bytes, positions
    rows = decode_rows(wide, torch.bfloat16)
    assert 1 <= rows < MAX_ROWS["cpu"] and rows * per_row <= ENGINE_MEMORY < (rows + 1) * per_row
    huge = LlamaForCausalLM(LlamaConfig(vocab_size=64, hidden_size=32, intermediate_size=32, num_hidden_layers=8,
                                        num_attention_heads=4, num_key_value_heads=4, head_dim=4096))
    assert decode_rows(huge, None) == 1, "a row larger than the budget still answers, alone"


def test_ignore_eos_decodes_max_new_tokens_past_a_stop_token(engine):
    asked = dict(messages=CHAT[1], max_new_tokens=8, cut_runaways=False)
    first = engine.generate([Request(**asked)])[0].completions[0].tokens
    before = engine.model.generation_config.eos_token_id
    engine.model.generation_config.eos_token_id = [first[2]]  # a token the model says now ends an answer
    try:
        stopped = engine.generate([Request(**asked)])[0].completions[0]
        kept_on = engine.generate([Request(**asked, ignore_eos=True)])[0].completions[0]
    finally:
        engine.model.generation_config.eos_token_id = before
    assert len(first) == 8 and stopped.finish_reason == "stop"
    assert stopped.tokens == first[:first.index(first[2]) + 1]
    assert kept_on.finish_reason == "length" and kept_on.tokens == first
