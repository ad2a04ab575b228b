"""`train.py --serve`: a real server process on loopback, real HTTP clients (urllib, the openai client, Chromium),
the tiny-random model, adapters trained by real one-shot runs."""
from __future__ import annotations

import asyncio
import http.server
import json
import os
import shutil
import signal
import socket
import subprocess
import threading
import time

import pytest

from core.faults import KILL_ENV
from core.synthetic import integer_sums
from tests.conftest import run_train, write_config, write_jsonl, run_cli
from tests.serve_helpers import Server, chat

GREEDY = {"temperature": 0, "max_tokens": 24}


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A root with two committed versions (v0001, v0002), and the state.json of each commit."""
    root = tmp_path_factory.mktemp("trained")
    write_config(root, training={"learning_rate": 0.05, "batch_size": 4, "logging_steps": 1,
                                 "promotion": {"enabled": False}})
    for name, seed in (("a", 1), ("b", 2)):
        done = run_cli(root, write_jsonl(root / f"{name}.jsonl", integer_sums(16, seed=seed)))
        assert done.returncode == 0, done.stderr
        shutil.copy(root / "data" / "state.json", root / f"state.after-{name}.json")
    return root


@pytest.fixture
def servers():
    started = []

    def start(root, *args, **kw):
        server = Server(root, *args, **kw)
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


def copy_root(trained, tmp_path):
    root = tmp_path / "root"
    shutil.copytree(trained, root, symlinks=True)
    return root


def commit(root, state_file):
    """Put a saved state.json in place as the daemon commits one: written aside, then renamed over."""
    tmp = root / "data" / "state.json.tmp"
    shutil.copy(state_file, tmp)
    os.replace(tmp, root / "data" / "state.json")


def raw_post(server, path: str, body, headers: dict) -> tuple[int, dict, dict]:
    """A POST as a hostile client sends it: any Host, any Content-Length, a body of chunks (an iterable)."""
    import http.client

    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=300)
    chunked = not isinstance(body, bytes)
    conn.request("POST", path, body=body, headers={"Content-Type": "application/json", **headers},
                 encode_chunked=chunked)
    r = conn.getresponse()
    out = (r.status, json.loads(r.read() or b"null"), {k.lower(): v for k, v in r.getheaders()})
    conn.close()
    return out


@pytest.mark.integration
def test_hostile_clients_meet_limits_before_the_body_is_read_and_one_bad_seed_fails_nothing_else(root, servers):
    import concurrent.futures

    write_config(root, serve={"max_body_bytes": 4000, "max_waiting": 2, "max_batch": 2, "max_tokens": 48})
    server = servers(root)
    server.wait_ready()
    ok = json.dumps(chat("What is 2+3?", max_tokens=2)).encode()
    status, r, _ = raw_post(server, "/v1/chat/completions", ok, {"Host": "attacker.example:80"})
    assert status == 403 and r["error"]["code"] == "host_not_allowed" and "serve.allowed_hosts" in r["error"]["message"]
    status, r, _ = raw_post(server, "/v1/chat/completions", b"x" * 5000, {})
    assert status == 413 and "serve.max_body_bytes" in r["error"]["message"]
    chunks = (b'{"messages": [{"role": "user", "content": "' + b"a" * 1000 for _ in range(5))
    status, r, _ = raw_post(server, "/v1/chat/completions", chunks, {})  # no Content-Length: counted as it comes
    assert status == 413
    status, r = server.post("/v1/chat/completions", chat("Hi", seed=2**70))
    assert status == 400 and r["error"]["param"] == "seed"
    # a seed at the edge of the range, sampled beside a plain request in the same decode run
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        edge = pool.submit(server.post, "/v1/chat/completions", chat("Hi", seed=2**63 - 1, temperature=1.0,
                                                                          max_tokens=4))
        plain = pool.submit(server.post, "/v1/chat/completions", chat("Hello", max_tokens=4))
        assert edge.result()[0] == 200 and plain.result()[0] == 200
    # a burst past serve.max_waiting: 429 with Retry-After for the excess, every accepted request answered
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        burst = list(pool.map(lambda k: raw_post(server, "/v1/completions", json.dumps(
            {"prompt": f"Count {k}:", "max_tokens": 48, "temperature": 0}).encode(), {}), range(8)))
    codes = sorted(b[0] for b in burst)
    assert set(codes) == {200, 429} and all(b[2].get("retry-after") == "1" for b in burst if b[0] == 429), codes
    assert all(len(b[1]["choices"]) == 1 for b in burst if b[0] == 200)


@pytest.mark.integration
def test_with_a_key_it_is_checked_before_the_body_is_read(root, servers):
    write_config(root, serve={"api_key_env": "SELFCORRECT_TEST_KEY", "max_body_bytes": 4000})
    server = servers(root, env={"SELFCORRECT_TEST_KEY": "sesame"})
    server.wait_ready()
    status, r, _ = raw_post(server, "/v1/chat/completions", b"x" * 5000, {"Host": "any.example"})
    assert status == 401  # not 413: nothing of the body is read for a request without the key
    status, r, _ = raw_post(server, "/v1/chat/completions", json.dumps(chat("Hi", max_tokens=2)).encode(),
                            {"Host": "any.example", "Authorization": "Bearer sesame"})
    assert status == 200  # with a key, any Host


@pytest.mark.integration
def test_the_api_answers_in_the_openai_shape_and_refuses_bad_requests_by_field(root, servers):
    server = servers(root)
    server.wait_ready()
    assert server.get("/health") == (200, {"status": "ok", "current": "base"})
    status, models = server.get("/v1/models")
    assert status == 200 and [m["id"] for m in models["data"]] == ["current", "base"]

    status, r = server.post("/v1/chat/completions", chat("What is 2+3?", logprobs=True, **GREEDY))
    assert status == 200 and r["object"] == "chat.completion" and r["model"] == "base"
    choice = r["choices"][0]
    assert choice["message"]["role"] == "assistant" and choice["finish_reason"] in ("stop", "length")
    assert 0 < r["usage"]["completion_tokens"] <= 24 and r["usage"]["prompt_tokens"] > 5
    assert len(choice["logprobs"]["content"]) >= 1 and all(t["logprob"] <= 0 for t in choice["logprobs"]["content"])

    # the stream carries the same greedy text, piece by piece, then its finish reason and [DONE]
    events = server.stream("/v1/chat/completions", chat("What is 2+3?", stream_options={"include_usage": True},
                                                        **GREEDY))
    assert events[0]["choices"][0]["delta"]["role"] == "assistant"
    pieces = "".join(e["choices"][0]["delta"].get("content", "") for e in events if e["choices"])
    assert pieces == choice["message"]["content"]
    assert [e["choices"][0]["finish_reason"] for e in events if e["choices"]][-1] == choice["finish_reason"]
    assert events[-1]["usage"] == r["usage"]

    # raw prompts, n samples each; a seed makes sampling reproducible
    body = {"prompt": ["Once upon", "The sum"], "n": 2, "max_tokens": 6, "temperature": 0.9, "seed": 7}
    status, a = server.post("/v1/completions", body)
    assert status == 200 and a["object"] == "text_completion" and [c["index"] for c in a["choices"]] == [0, 1, 2, 3]
    assert server.post("/v1/completions", body)[1]["choices"] == a["choices"]
    assert server.post("/v1/completions", {**body, "seed": 8})[1]["choices"] != a["choices"]

    bad = [
        (b"{not json", 400, None),
        (b"[1, 2]", 400, None),
        (json.dumps({"model": "current"}).encode(), 400, "messages"),
        (json.dumps(chat("x", max_tokens=0)).encode(), 400, "max_tokens"),
        (json.dumps(chat("x", max_tokens=100_000)).encode(), 400, "max_tokens"),
        (json.dumps(chat("x", n=99)).encode(), 400, "n"),
        (json.dumps(chat("x", temperature=-1)).encode(), 400, "temperature"),
        (json.dumps({"messages": [{"role": "robot", "content": "x"}]}).encode(), 400, "messages.0.role"),
        (json.dumps(chat("x", presence_penalty=0.5)).encode(), 400, "presence_penalty"),
        (json.dumps(chat("word " * 3000)).encode(), 413, "messages"),
        (json.dumps(chat("x", model="v0042")).encode(), 404, "model"),
    ]
    for raw, code, param in bad:
        status, err = server.post("/v1/chat/completions", raw=raw)
        assert status == code, (raw[:60], status, err)
        assert set(err["error"]) == {"message", "type", "param", "code"} and err["error"]["param"] == param, err
        if param:
            assert param.split(".")[0] in err["error"]["message"]
    assert server.post("/v1/chat/completions", chat("still there?", **GREEDY))[0] == 200
    assert server.proc.poll() is None


@pytest.mark.integration
def test_completions_score_prompts_as_a_teacher_forced_forward_of_the_same_adapter(trained, tmp_path, servers):
    """lm-eval's log-likelihood request: token ids, echo, max_tokens 0 or 1, logprobs N; the echoed prompt's
    log-probs are those of a teacher-forced fp32 forward of the served version."""
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from tests.conftest import MODELS

    root = copy_root(trained, tmp_path)
    write_config(root, serve={"dtype": "float32"})
    server = servers(root)
    server.wait_ready()
    tokenizer = AutoTokenizer.from_pretrained(MODELS / "tiny-random")
    prompts = [tokenizer("The answer to 2 + 3 is 5")["input_ids"], tokenizer("Once upon a time")["input_ids"]]
    status, r = server.post("/v1/completions", {"prompt": prompts, "echo": True, "max_tokens": 0, "logprobs": 2,
                                                "temperature": 0})
    assert status == 200, r
    model = AutoModelForCausalLM.from_pretrained(MODELS / "tiny-random", dtype=torch.float32)
    model = PeftModel.from_pretrained(model, root / "data" / "adapters" / "v0002").eval()
    for ids, choice in zip(prompts, r["choices"]):
        with torch.no_grad():
            logp = model(torch.tensor([ids])).logits[0, :-1].float().log_softmax(-1)
        expected = logp.gather(1, torch.tensor(ids[1:])[:, None])[:, 0]
        got = choice["logprobs"]
        assert got["token_logprobs"][0] is None and got["top_logprobs"][0] is None
        assert len(got["tokens"]) == len(ids) and choice["text"] == tokenizer.decode(ids)
        assert torch.allclose(torch.tensor(got["token_logprobs"][1:]), expected, atol=1e-4)
        for k, top in enumerate(got["top_logprobs"][1:]):  # the 2 most likely, and the prompt's own token
            assert 2 <= len(top) <= 3 and max(top.values()) == pytest.approx(float(logp[k].max()), abs=1e-4)
    assert r["usage"]["completion_tokens"] == 0 and r["usage"]["prompt_tokens"] == sum(map(len, prompts))

    # lm-eval's own form: max_tokens 1 and logprobs 1; the prompt's log-probs come first, then the new token's
    status, one = server.post("/v1/completions", {"prompt": prompts[0], "echo": True, "max_tokens": 1,
                                                  "logprobs": 1, "temperature": 0})
    lp = one["choices"][0]["logprobs"]
    assert status == 200 and lp["token_logprobs"][:len(prompts[0])] == pytest.approx(
        r["choices"][0]["logprobs"]["token_logprobs"], abs=1e-5)
    assert len(lp["token_logprobs"]) <= len(prompts[0]) + 1
    assert one["choices"][0]["text"].startswith(tokenizer.decode(prompts[0]))

    # a string prompt is echoed as given; without echo, logprobs N gives N alternatives of each new token
    status, text = server.post("/v1/completions", {"prompt": "Once upon a time", "max_tokens": 4, "logprobs": 3,
                                                   "temperature": 0})
    tops = text["choices"][0]["logprobs"]["top_logprobs"]
    assert status == 200 and all(3 <= len(t) <= 4 for t in tops)
    assert all(t[tok] == max(t.values()) for t, tok in zip(tops, text["choices"][0]["logprobs"]["tokens"]))

    vocab = model.get_input_embeddings().num_embeddings
    for body, param, words in [
        ({"prompt": [[1, 2], [3, vocab]], "echo": True, "max_tokens": 0}, "prompt", f"prompt[1][1]: token id {vocab}"),
        ({"prompt": [5, -1], "max_tokens": 2}, "prompt", "prompt[1]: token id -1"),
        ({"prompt": [1, "a"]}, "prompt", "list of lists of token ids"),
        ({"prompt": [[]]}, "prompt", "must not be empty"),
        ({"prompt": "x", "max_tokens": 0}, "max_tokens", "needs echo"),
        ({"prompt": "x", "logprobs": 21}, "logprobs", "20"),
        ({"prompt": "x", "echo": True, "stream": True}, "echo", "stream"),
    ]:
        status, err = server.post("/v1/completions", body)
        assert status == 400 and err["error"]["param"] == param and words in err["error"]["message"], (body, err)
    assert server.post("/v1/completions", {"prompt": "still there?", "max_tokens": 2})[0] == 200


@pytest.mark.integration
def test_a_model_that_cannot_load_gets_503_naming_why_and_the_server_stays_up(root, servers):
    write_config(root, model={"name_or_path": "./no-such-model"})
    server = servers(root)
    deadline = time.time() + 60
    while (health := server.get("/health"))[1]["status"] == "loading" and time.time() < deadline:
        time.sleep(0.1)
    assert health == (503, {"status": "error", "error": health[1]["error"]})
    assert "no-such-model" in health[1]["error"]
    status, err = server.post("/v1/chat/completions", chat("x"))
    assert status == 503 and "the model did not load" in err["error"]["message"] and "no-such-model" in err["error"]["message"]
    assert str(root) not in json.dumps([health, err]) and "/tmp" not in json.dumps([health, err])  # no local paths
    assert server.get("/status.json")[1]["server"]["error"] == health[1]["error"]


@pytest.mark.integration
def test_a_promoted_version_answers_the_next_request_while_one_in_flight_finishes_on_its_own(trained, tmp_path,
                                                                                               servers):
    root = copy_root(trained, tmp_path)
    commit(root, root / "state.after-a.json")  # only v0001 committed so far
    server = servers(root)
    server.wait_ready()
    assert [m["id"] for m in server.get("/v1/models")[1]["data"]] == ["current", "base", "v0001"]
    short = chat("What is 12 + 30?", temperature=0, max_tokens=24, logprobs=True)
    long = {**short, "max_tokens": 600}  # long enough to be in flight when v0002 is committed
    status, before = server.post("/v1/chat/completions", short)
    assert status == 200 and before["model"] == "v0001"

    # a long answer in flight on v0001 when v0002 is committed
    streamed = {}
    reader = threading.Thread(target=lambda: streamed.update(events=server.stream("/v1/chat/completions", long)))
    reader.start()
    time.sleep(0.5)
    commit(root, root / "state.after-b.json")
    status, after = server.post("/v1/chat/completions", short)
    reader.join(timeout=300)
    assert status == 200 and after["model"] == "v0002"
    assert {e["model"] for e in streamed["events"]} == {"v0001"}
    text = "".join(e["choices"][0]["delta"].get("content", "") for e in streamed["events"] if e["choices"])
    # the weights it started with, to the end: v0001 asked by name answers the same
    assert server.post("/v1/chat/completions", {**long, "model": "v0001"})[1]["choices"][0]["message"]["content"] == text
    logprobs = [[t["logprob"] for t in r["choices"][0]["logprobs"]["content"]] for r in (before, after)]
    assert logprobs[0] != logprobs[1]  # v0002 is another model (learning rate 0.05)
    assert server.post("/v1/chat/completions", {**short, "model": "base"})[1]["model"] == "base"
    assert "now serving v0002 as current (was v0001)" in server.output()


@pytest.mark.integration
def test_a_kill_mid_promotion_is_never_served_and_the_server_restarts_after_sigkill(trained, tmp_path, servers):
    root = copy_root(trained, tmp_path)
    server = servers(root)
    server.wait_ready()
    killed = run_train(root, write_jsonl(root / "c.jsonl", integer_sums(8, seed=3)),
                       env={KILL_ENV: "adapter.promoted"})
    assert killed.returncode == -signal.SIGKILL
    assert (root / "data" / "adapters" / "v0003").is_dir()  # renamed into place, never committed
    assert [m["id"] for m in server.get("/v1/models")[1]["data"]] == ["current", "base", "v0002", "v0001"]
    assert server.post("/v1/chat/completions", chat("x", **GREEDY))[1]["model"] == "v0002"
    assert server.post("/v1/chat/completions", chat("x", model="v0003", **GREEDY))[0] == 404

    port = server.port
    server.proc.send_signal(signal.SIGKILL)
    server.proc.wait()
    again = servers(root, port=port)
    again.wait_ready()
    assert again.post("/v1/chat/completions", chat("x", **GREEDY))[1]["model"] == "v0002"


@pytest.mark.integration
def test_with_an_api_key_every_request_must_carry_it_and_it_is_never_logged(root, servers):
    write_config(root, serve={"api_key_env": "SELFCORRECT_TEST_KEY"})
    secret = "sk-test-" + os.urandom(8).hex()
    server = servers(root, env={"SELFCORRECT_TEST_KEY": secret})
    server.wait_ready()
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": secret}):
        status, err = server.get("/v1/models", headers=headers)
        assert status == 401 and err["error"]["type"] == "authentication_error"
        assert server.post("/v1/chat/completions", chat("x", **GREEDY), headers=headers)[0] == 401
        assert server.get("/status.json", headers=headers)[0] == 401
    good = {"Authorization": f"Bearer {secret}"}
    assert server.get("/v1/models", headers=good)[0] == 200
    assert server.post("/v1/chat/completions", chat("x", **GREEDY), headers=good)[0] == 200
    assert server.get("/health")[0] == 200  # for load balancers: no data, no key
    logged = server.output() + "".join(p.read_text() for p in (root / "logs").glob("*") if p.is_file())
    assert "API key required" in logged and secret not in logged

    missing = run_train(root, "--serve", "--port", "0", env={"SELFCORRECT_TEST_KEY": ""})
    assert missing.returncode == 1 and "serve.api_key_env: the environment variable SELFCORRECT_TEST_KEY" in missing.stderr


@pytest.mark.integration
def test_the_openai_provider_gets_the_servers_answers_and_the_local_provider_batches(root, servers):
    from inference.loading import load_for_inference
    from inference.providers import LocalProvider, make_provider
    from inference.requests import Request
    from inference.sampling import SamplingEngine
    from core.config import load_config

    server = servers(root)
    server.wait_ready()
    write_config(root, providers={"judge": {"kind": "openai", "base_url": f"{server.url}/v1", "model": "current"},
                                  "here": {"kind": "local", "adapter": "base"}})
    config = load_config(root / "config.json")
    requests = [Request(messages=[{"role": "user", "content": f"What is {k} + {k}?"}], max_new_tokens=12)
                for k in range(3)] + [Request(prompt="Counting: one, two,", max_new_tokens=8, logprobs=True)]

    async def ask(provider):
        try:
            return await provider.generate(requests)
        finally:
            await provider.close()

    remote = make_provider("judge", config, root)
    answers = asyncio.run(ask(remote))
    assert remote.answered_by == ["base"] * 4
    direct = [server.post("/v1/chat/completions", chat(f"What is {k} + {k}?", temperature=0, max_tokens=12))[1]
              for k in range(3)]
    # the server gives text as generated; a provider strips it, as the local engine does for our own questions
    assert [a.completions[0].text for a in answers[:3]] == [d["choices"][0]["message"]["content"].strip()
                                                            for d in direct]
    assert [a.completion_tokens for a in answers[:3]] == [d["usage"]["completion_tokens"] for d in direct]
    assert len(answers[3].completions[0].logprobs) == answers[3].completion_tokens

    local = make_provider("here", config, root)
    assert isinstance(local, LocalProvider)
    mine = asyncio.run(ask(local))
    assert [a.completions[0].text for a in mine[:3]] == [a.completions[0].text for a in answers[:3]]

    # concurrent callers share the decode loop: four single-request calls, fewer engine runs than calls
    model, tokenizer, use_template, _ = load_for_inference(config, root, "base")
    engine = SamplingEngine(model, tokenizer, use_template=use_template)
    runs = []
    run = engine.run
    engine.run = lambda take, deliver: runs.append(1) or run(take, deliver)
    provider = LocalProvider(engine)

    async def together():
        try:
            return await asyncio.gather(*(provider.generate([r]) for r in requests))
        finally:
            await provider.close()

    shared = asyncio.run(together())
    assert [s[0].completions[0].text for s in shared] == [m.completions[0].text for m in mine]
    assert len(runs) < 4

    with pytest.raises(Exception, match="providers.nobody: no such provider"):
        make_provider("nobody", config, root)


@pytest.mark.integration
@pytest.mark.parametrize("stream", [True, False])
def test_a_client_that_leaves_frees_its_slot(root, servers, stream):
    """Streamed or not: a non-streamed request went on decoding its 1,000 tokens for a client long gone."""
    server = servers(root)
    server.wait_ready()
    body = json.dumps(chat("Tell me a long story.", temperature=0, max_tokens=1000, stream=stream)).encode()
    with socket.create_connection(("127.0.0.1", server.port)) as s:
        s.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                  b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body)
        received = b""
        while stream and received.count(b"data: ") < 4:
            received += s.recv(4096)
        if not stream:
            while not server.get("/status.json")[1]["server"]["busy"]:
                time.sleep(0.05)
    deadline = time.time() + 60
    while time.time() < deadline:
        finished = server.get("/status.json")[1]["server"]["finished"]
        if finished:
            break
        time.sleep(0.05)
    assert finished == {"cancelled": 1}
    status, r = server.post("/v1/chat/completions", chat("and now?", **GREEDY))
    assert status == 200


@pytest.mark.integration
def test_the_status_page_shows_the_adapter_and_the_queue_in_chromium(trained, tmp_path, servers):
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        if os.environ.get("CI"):
            raise AssertionError("chromium is missing; .ci/run installs Debian's chromium package")
        pytest.skip("chromium is not installed (apt-get install chromium)")
    root = copy_root(trained, tmp_path)
    for priority, count in (("high", 1), ("normal", 3)):
        for k in range(count):
            write_jsonl(root / "queue" / priority / f"waiting-{k}.jsonl", integer_sums(2, seed=k))
    (root / "data" / "practice").mkdir(parents=True, exist_ok=True)  # a grpo round as selfcorrect.practice writes it
    (root / "data" / "practice" / "rounds.json").write_text(json.dumps([{
        "file": "drill.jsonl", "work": "drill-0123", "round": 1, "adapter": "v0002", "method": "grpo", "k": 4,
        "problems": 20, "samples": 80, "pass_at_1": 0.25, "pass_at_k": 0.45, "mean_reward": 0.3125, "kept": 36,
        "golden": 0, "skipped_groups": 11, "unsolved": 11, "records": 36, "time": 0}]))
    server = servers(root)
    server.wait_ready()
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             f"--user-data-dir={tmp_path / 'chromium'}", "--virtual-time-budget=8000"]
    dom = subprocess.run([chromium, *flags, "--dump-dom", server.url + "/"], capture_output=True, text=True,
                         timeout=120).stdout
    assert '<div class="big" id="adapter">v0002</div>' in dom, dom[:2000]
    assert '<td class="n" data-queue="high">1</td>' in dom and '<td class="n" data-queue="normal">3</td>' in dom
    assert "<polyline" in dom  # the loss curve of the two trained files
    assert ("<b>drill.jsonl</b> #1 (grpo) with v0002: solved at least once 45% of 20, pass@1 25%, mean reward 0.31, "
            "11 groups skipped") in dom
    shot = tmp_path / "status.png"
    subprocess.run([chromium, *flags, "--window-size=1100,900", f"--screenshot={shot}", server.url + "/"],
                   capture_output=True, timeout=120)
    assert shot.stat().st_size > 10_000


def test_vllm_keeps_only_the_newest_versions_loaded_and_status_says_what_it_holds(root):
    calls = []

    class FakeVLLM(http.server.BaseHTTPRequestHandler):
        def do_POST(self):
            calls.append((self.path, json.loads(self.rfile.read(int(self.headers["Content-Length"])))["lora_name"]))
            gone = self.path.endswith("unload_lora_adapter") and calls[-1][1] == "mine-v0002"
            self.send_response(404 if gone else 200)  # v0002 was unloaded by hand: done already
            self.end_headers()

        def log_message(self, *args):
            pass

    vllm = http.server.ThreadingHTTPServer(("127.0.0.1", 0), FakeVLLM)
    threading.Thread(target=vllm.serve_forever, daemon=True).start()
    try:
        write_config(root, serve={"notify_vllm_url": f"http://127.0.0.1:{vllm.server_port}/v1",
                                  "vllm_lora_prefix": "mine"}, training={"keep_versions": 1})
        for name, seed in (("a", 1), ("b", 2), ("c", 3)):
            assert run_cli(root, write_jsonl(root / f"{name}.jsonl", integer_sums(8, seed=seed))).returncode == 0
    finally:
        vllm.shutdown()
    assert calls == [("/v1/load_lora_adapter", "mine-v0001"), ("/v1/load_lora_adapter", "mine-v0002"),
                     ("/v1/unload_lora_adapter", "mine-v0001"), ("/v1/load_lora_adapter", "mine-v0003"),
                     ("/v1/unload_lora_adapter", "mine-v0002")]
    status = json.loads(run_cli(root, "--status").stdout.splitlines()[-1])
    assert status["vllm"]["loaded"] == ["mine-v0003"]


def test_each_promotion_is_loaded_into_vllm_under_its_own_name(root):
    calls = []

    class FakeVLLM(http.server.BaseHTTPRequestHandler):
        def do_POST(self):
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            calls.append((self.path, body))
            failing = len(calls) == 1  # the first call fails: it is retried
            self.send_response(500 if failing else 200)
            self.end_headers()
            self.wfile.write(b"busy" if failing else b"Success")

        def log_message(self, *args):
            pass

    vllm = http.server.ThreadingHTTPServer(("127.0.0.1", 0), FakeVLLM)
    threading.Thread(target=vllm.serve_forever, daemon=True).start()
    try:
        write_config(root, serve={"notify_vllm_url": f"http://127.0.0.1:{vllm.server_port}",
                                  "vllm_lora_prefix": "mine"})
        for name, seed in (("a", 1), ("b", 2)):
            assert run_cli(root, write_jsonl(root / f"{name}.jsonl", integer_sums(8, seed=seed))).returncode == 0
    finally:
        vllm.shutdown()
    adapters = (root / "data" / "adapters").resolve()
    assert calls == [("/v1/load_lora_adapter", {"lora_name": "mine-v0001", "lora_path": str(adapters / "v0001")}),
                     ("/v1/load_lora_adapter", {"lora_name": "mine-v0001", "lora_path": str(adapters / "v0001")}),
                     ("/v1/load_lora_adapter", {"lora_name": "mine-v0002", "lora_path": str(adapters / "v0002")})]
    log = (root / "logs" / "events.jsonl").read_text()
    assert "did not load mine-v0001 (HTTP 500: busy); retrying" in log and "loaded adapter v0002 as mine-v0002" in log
