import pytest
from transformers import AutoTokenizer

from core.data import Example
from core.encoding import IGNORE, PaddingCollator, encode, encode_file
from core.errors import DataError
from tests.conftest import MODELS


@pytest.fixture(scope="module")
def tok():
    return AutoTokenizer.from_pretrained(MODELS / "tiny-random")


def trained_text(tok, e):
    return tok.decode([t for t in e.labels if t != IGNORE])


def chat(*turns):
    return Example(1, messages=[{"role": r, "content": c} for r, c in turns])


def test_loss_is_only_on_the_answer_and_its_end_of_turn(tok):
    e = encode(tok, chat(("user", "What is 2+3?"), ("assistant", "5")), use_template=True, max_length=512)
    assert trained_text(tok, e) == "5<|im_end|>\n"
    assert "What is 2+3?" in tok.decode(e.input_ids)


def test_prompt_tokens_equal_the_inference_prompt(tok):
    ex = chat(("user", "Add 17 and 25."), ("assistant", "42"))
    e = encode(tok, ex, use_template=True, max_length=512)
    prompt = tok.apply_chat_template(ex.messages[:1], tokenize=False, add_generation_prompt=True)
    prompt_ids = tok(prompt, add_special_tokens=False)["input_ids"]
    assert e.input_ids[: len(prompt_ids)] == prompt_ids
    assert all(l == IGNORE for l in e.labels[: len(prompt_ids)])


def test_every_assistant_turn_of_a_multi_turn_chat_is_trained(tok):
    ex = chat(("system", "Be brief."), ("user", "q1"), ("assistant", "a1"), ("user", "q2"), ("assistant", "a2"))
    assert trained_text(tok, encode(tok, ex, use_template=True, max_length=512)) == "a1<|im_end|>\na2<|im_end|>\n"
    assert trained_text(tok, encode(tok, ex, use_template=False, max_length=512)) == "a1<|im_end|>a2<|im_end|>"


def test_plain_text_trains_every_token(tok):
    e = encode(tok, Example(1, text="hello world"), use_template=True, max_length=512)
    assert e.trainable == len(e.input_ids)


def test_a_prompt_longer_than_the_limit_refuses_the_file(tok):
    ex = [chat(("user", "word " * 300), ("assistant", "ok"))]
    ex[0].line = 7
    with pytest.raises(DataError) as e:
        encode_file(tok, ex, path="f.jsonl", use_template=True, max_length=64)
    assert e.value.problems[0][0] == 7 and "max_seq_length" in e.value.problems[0][1]


def test_the_collator_pads_right_and_masks_padding(tok):
    a = encode(tok, chat(("user", "a"), ("assistant", "b")), use_template=True, max_length=512)
    b = encode(tok, chat(("user", "a much longer question here"), ("assistant", "b")), use_template=True, max_length=512)
    collator = PaddingCollator(tok.pad_token_id)
    batch = collator([{"input_ids": x.input_ids, "labels": x.labels} for x in (a, b)])
    n = len(a.input_ids)
    assert batch["attention_mask"][0].tolist() == [1] * n + [0] * (len(b.input_ids) - n)
    assert (batch["labels"][0, n:] == IGNORE).all()
    assert collator.supervised_tokens == a.trainable + b.trainable


def test_a_rejected_answer_marks_the_token_where_it_departs(tok):
    ex = chat(("user", "What is 57 + 47?"), ("assistant", "57 + 47 = 104. The answer is 104."))
    ex.meta = {"rejected": "57 + 47 = 94. The answer is 94."}
    e = encode(tok, ex, use_template=True, max_length=512, unlikelihood=True)
    position, token = e.unlikely
    rejected = encode(tok, chat(("user", "What is 57 + 47?"), ("assistant", ex.meta["rejected"])),
                      use_template=True, max_length=512)
    assert e.input_ids[:position] == rejected.input_ids[:position]  # the shared part is never pushed down
    assert token == rejected.input_ids[position] != e.input_ids[position] and e.labels[position] != IGNORE
    assert tok.decode(e.input_ids[:position]).endswith("57 + 47 = ")
    # off, no rejected answer, or a rejected answer that never departs: nothing to push down
    assert encode(tok, ex, use_template=True, max_length=512).unlikely is None
    ex.meta = {"rejected": ex.response}
    assert encode(tok, ex, use_template=True, max_length=512, unlikelihood=True).unlikely is None
    ex.meta = {}
    assert encode(tok, ex, use_template=True, max_length=512, unlikelihood=True).unlikely is None


def test_the_collator_carries_the_tokens_to_push_down_only_when_there_are_some(tok):
    ex = chat(("user", "What is 2 + 3?"), ("assistant", "5"))
    ex.meta = {"rejected": "6"}
    a = encode(tok, ex, use_template=True, max_length=512, unlikelihood=True)
    b = encode(tok, chat(("user", "a longer question"), ("assistant", "b")), use_template=True, max_length=512)
    rows = [{"input_ids": x.input_ids, "labels": x.labels, "unlikely": x.unlikely} for x in (a, b)]
    batch = PaddingCollator(tok.pad_token_id)(rows)
    position, token = a.unlikely
    assert batch["unlikely"][0, position] == token and (batch["unlikely"] != IGNORE).sum() == 1
    assert "unlikely" not in PaddingCollator(tok.pad_token_id)(rows[1:])
