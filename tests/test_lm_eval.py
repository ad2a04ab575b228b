"""lm-eval, unchanged, against `selfcorrect serve`: its log-likelihood model type (`local-completions`: token-id
prompts, echo, logprobs) and its chat model type (`local-chat-completions`: generate-until), each checked item by
item against `lm_eval --model hf` with `peft=` the same adapter. The real lm_eval command, in its own process."""
from __future__ import annotations

import pytest

from bench.lm_eval_serve import lm_eval, write_tasks
from core.synthetic import integer_sums
from tests.conftest import MODELS, run_cli, write_config, write_jsonl
from tests.serve_helpers import Server

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_lm_eval_scores_the_served_adapter_as_it_scores_the_adapter_loaded_by_hf(root, tmp_path):
    write_config(root, training={"learning_rate": 0.05}, serve={"dtype": "float32"})
    assert run_cli(root, write_jsonl(root / "a.jsonl", integer_sums(16, seed=1))).returncode == 0
    adapter = root / "data" / "adapters" / "v0001"
    task_folder = write_tasks(tmp_path / "tasks", 16)
    hf = f"pretrained={MODELS / 'tiny-random'},peft={adapter},dtype=float32"
    server = Server(root)
    try:
        server.wait_ready()
        api = f"model=current,base_url={server.url}/v1/completions,tokenizer={MODELS / 'tiny-random'}," \
              "tokenizer_backend=huggingface,num_concurrent=1,max_retries=1"
        served, served_items = lm_eval(tmp_path / "api", task_folder, "sums_mc", "local-completions", api,
                                       "--batch_size", "8")
        chat = f"model=current,base_url={server.url}/v1/chat/completions,num_concurrent=1,max_retries=1"
        chatted, chatted_items = lm_eval(tmp_path / "chat", task_folder, "sums_gen", "local-chat-completions",
                                         chat, "--apply_chat_template")
    finally:
        server.stop()
    local, local_items = lm_eval(tmp_path / "hf", task_folder, "sums_mc", "hf", hf, "--device", "cpu",
                                 "--batch_size", "8")
    generated, generated_items = lm_eval(tmp_path / "hfgen", task_folder, "sums_gen", "hf", hf, "--device", "cpu",
                                         "--batch_size", "8", "--apply_chat_template")

    # log-likelihood: each choice's log-likelihood within float tolerance, greedy flags and accuracy identical
    assert served["acc,none"] == local["acc,none"]
    assert sorted(served_items) == sorted(local_items) == list(range(16))
    for doc in served_items:
        for (got, got_greedy), (want, want_greedy) in zip(served_items[doc], local_items[doc], strict=True):
            assert float(got) == pytest.approx(float(want), abs=1e-3) and got_greedy == want_greedy, doc
    # generate-until: the same greedy text for every item, the same score
    assert chatted_items == generated_items and chatted["exact_match,last_number"] == generated["exact_match,last_number"]
