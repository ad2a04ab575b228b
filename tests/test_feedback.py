"""Learning from use: the server keeps what it answers and the verdicts on it; the daemon turns them into training,
the gate's set and the validation pool. A real server on loopback, real daemon runs, real kills."""
from __future__ import annotations

import http.client
import json
import os
import signal
import threading
import time

import pytest

from core.faults import KILL_ENV
from core.synthetic import integer_sums
from tests.conftest import run_cli, run_train, write_config, write_jsonl
from tests.daemon_helpers import original
from tests.serve_helpers import Server, chat

pytestmark = pytest.mark.integration
GREEDY = {"temperature": 0, "max_tokens": 8}
BURST = 10_000  # verdicts posted at once, by 40 clients


@pytest.fixture
def served(root, request):
    """A root with one trained version and a server on it (serve.* from a `serve` mark); yields the server."""
    mark = request.node.get_closest_marker("serve")
    write_config(root, daemon={"settle_seconds": 0}, feedback={"max_chars": 200}, serve=mark.kwargs if mark else {})
    assert run_cli(root, write_jsonl(root / "a.jsonl", integer_sums(8, seed=1))).returncode == 0
    server = Server(root)
    server.wait_ready()
    yield server
    server.stop()


def state(root):
    return json.loads((root / "data" / "state.json").read_text())


def feedback_files(root):
    return [f for f in state(root)["files_trained"] if "feedback_" in f["name"]]


def daemon_files(root):
    return {p: p.stat().st_mtime_ns for d in ("data", "queue", "inbox") for p in (root / d).rglob("*") if p.is_file()}


def test_verdicts_by_id_and_whole_become_training_the_gate_set_and_the_pool_exactly_once(root, served):
    untouched = daemon_files(root)
    status, answer = served.post("/v1/chat/completions", chat("What is 17 + 25?", **GREEDY))
    assert status == 200
    status, took = served.post("/v1/feedback", {"id": answer["id"], "rating": "bad", "correction": "17 + 25 = 42."})
    assert status == 200 and took["recorded"] and took["exchange"]["answer"] == answer["choices"][0]["message"]["content"]
    assert took["exchange"]["messages"][-1]["content"] == "What is 17 + 25?" and "promotion gate" in took["then"]
    status, other = served.post("/v1/completions", {"prompt": "2 + 2 =", **GREEDY})
    assert served.post("/v1/feedback", {"id": other["id"], "rating": "good"})[0] == 200
    multi = {"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello!"},
                          {"role": "user", "content": "What is 9 + 9?"}],
             "answer": "17", "model": "elsewhere", "rating": "bad", "correction": "18"}
    assert served.post("/v1/feedback", multi)[0] == 200
    status, waiting = served.post("/v1/feedback", {"id": answer["id"], "rating": "bad"})
    assert status == 200 and "waiting for a correction" in waiting["then"]
    assert daemon_files(root) == untouched  # the server wrote only under served/ (and its log)

    assert run_train(root, "--once").returncode == 0
    [trained] = feedback_files(root)
    records = [json.loads(line) for line in (root / "data" / "feedback" / trained["name"].split("--")[-1])
               .read_text().splitlines()]
    kinds = [r["kind"] for r in records]
    assert kinds.count("keep") == 1 and kinds.count("correction") == 2 * 3  # two corrections, repeated 3 times
    corrections = [r for r in records if r["kind"] == "correction"]
    assert all(r["rejected"] != r["response"] and r["response"] in ("17 + 25 = 42.", "18") for r in corrections)
    context = next(r for r in records if r["kind"] == "initial_attempt" and "messages" in r)
    assert context["messages"][1] == {"role": "assistant", "content": "Hello!", "weight": 0}  # context, not a target
    assert context["messages"][-1] == {"role": "assistant", "content": "18"}
    gate = [json.loads(line) for line in (root / "data" / "gate" / "pool.jsonl").read_text().splitlines()]
    pool = [json.loads(line) for line in (root / "data" / "validation" / "pool.jsonl").read_text().splitlines()]
    for items in (gate, pool):
        assert sorted(i["golden"] for i in items if i["file"] == "feedback") == ["17 + 25 = 42.", "18"]

    shown = run_cli(root, "--status")
    s = json.loads(shown.stdout.splitlines()[-1])["feedback"]
    assert s["served"]["exchanges"] == 2 and s["served"]["feedback"] == 4 and s["taken"]["corrections"] == 2
    assert len(s["waiting_for_correction"]) == 1 and "wait for a correction" in shown.stdout

    assert run_train(root, "--once").returncode == 0  # nothing new: nothing trained twice
    assert len(feedback_files(root)) == 1


@pytest.mark.serve(max_waiting=2)
def test_bad_feedback_is_refused_by_field_and_a_burst_is_bounded_losing_nothing_accepted(root, served):
    status, answer = served.post("/v1/chat/completions", chat("x", **GREEDY))
    for body, code, param, words in [
        ({"id": "chatcmpl-nosuch", "rating": "good"}, 404, "id", "no served exchange 'chatcmpl-nosuch'"),
        ({"id": answer["id"]}, 400, "rating", "Field required"),
        ({"id": answer["id"], "rating": "meh"}, 400, "rating", 'must be "good" or "bad"'),
        ({"id": answer["id"], "rating": "bad", "correction": "x" * 201}, 400, "correction", "feedback.max_chars"),
        ({"id": answer["id"], "rating": "good", "raiting": 1}, 400, "raiting", "unknown field"),
        ({"messages": [{"role": "user", "content": "q"}], "rating": "bad"}, 400, "answer", "missing"),
        ({"id": answer["id"], "choice": 3, "rating": "good"}, 400, "choice", "1 choice(s)"),
    ]:
        status, err = served.post("/v1/feedback", body)
        assert status == code and err["error"]["param"] == param and words in err["error"]["message"], (body, err)
    status, err = served.post("/v1/feedback", raw=b"{not json")
    assert status == 400 and "not valid JSON" in err["error"]["message"]

    accepted, refused, lock = [], [], threading.Lock()

    def post(k):
        conn = http.client.HTTPConnection("127.0.0.1", served.port, timeout=120)
        for j in range(k, BURST, 40):
            conn.request("POST", "/v1/feedback", json.dumps({"id": answer["id"], "rating": "good", "note": str(j)}),
                         {"Content-Type": "application/json"})
            r = conn.getresponse()
            body = json.loads(r.read())
            with lock:
                (accepted if r.status == 200 else refused).append((r.status, r.getheader("retry-after"), body))
        conn.close()

    threads = [threading.Thread(target=post, args=(k,)) for k in range(40)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(accepted) + len(refused) == BURST and accepted and refused  # bounded, and it still takes verdicts
    assert all(status == 429 and after == "1" for status, after, _ in refused)
    kept = [json.loads(line) for p in (root / "served" / "feedback").glob("*.jsonl")
            for line in p.read_text().splitlines()]
    assert sorted(k["feedback_id"] for k in kept) == sorted(b["feedback_id"] for _, _, b in accepted)
    assert served.proc.poll() is None


def test_feedback_files_are_all_or_nothing_and_a_kill_loses_and_repeats_nothing(root, tmp_path):
    write_config(root, daemon={"settle_seconds": 0})
    assert run_cli(root, write_jsonl(root / "a.jsonl", integer_sums(8, seed=1))).returncode == 0
    inbox = root / "inbox" / "feedback"
    write_jsonl(inbox / "bad.jsonl", [{"prompt": "1 + 1?", "answer": "3", "rating": "bad", "correction": "2"},
                                      {"prompt": "2 + 2?", "rating": "bad"}, {"id": "x", "rating": "so-so"}])
    (inbox / "worse.jsonl").write_text("not json\n")
    write_jsonl(inbox / "good.jsonl", [{"prompt": "What is 3 + 4?", "answer": "8", "rating": "bad",
                                        "correction": "3 + 4 = 7."},
                                       {"messages": [{"role": "user", "content": "What is 5 + 5?"}], "answer": "10",
                                        "rating": "good"}])
    killed = run_train(root, "--once", env={KILL_ENV: "feedback.after_pending"})
    assert killed.returncode == -signal.SIGKILL
    assert run_train(root, "--once").returncode == 0
    failed = root / "queue" / "failed"
    reports = {original(n)[: -len(".error.json")]: json.loads((failed / n).read_text())
               for n in os.listdir(failed) if n.endswith(".error.json")}
    assert [p["line"] for p in reports["bad.jsonl"]["problems"]] == [2, 3]  # every bad line named
    assert "answer" in reports["bad.jsonl"]["problems"][0]["reason"]
    assert "rating" in reports["bad.jsonl"]["problems"][1]["reason"]
    assert "not JSON" in reports["worse.jsonl"]["problems"][0]["reason"]
    assert not list(inbox.iterdir()) and len(list((root / "data" / "feedback" / "taken").iterdir())) == 1
    [trained] = feedback_files(root)  # the file recorded before the kill, queued and trained once
    assert run_train(root, "--once").returncode == 0 and len(feedback_files(root)) == 1


def test_a_server_killed_while_appending_leaves_no_half_line_read_and_record_off_keeps_nothing(root):
    write_config(root, daemon={"settle_seconds": 0}, serve={"record": False})
    assert run_cli(root, write_jsonl(root / "a.jsonl", integer_sums(8, seed=1))).returncode == 0
    server = Server(root)
    try:
        server.wait_ready()
        status, answer = server.post("/v1/chat/completions", chat("x", **GREEDY))
        status, err = server.post("/v1/feedback", {"id": answer["id"], "rating": "good"})
        assert status == 404 and "serve.record is off" in err["error"]["message"]
        assert server.post("/v1/feedback", {"prompt": "What is 6 + 1?", "answer": "8", "rating": "bad",
                                            "correction": "7"})[0] == 200
        server.proc.send_signal(signal.SIGKILL)
        server.proc.wait()
    finally:
        server.stop()
    assert not list((root / "served" / "exchanges").glob("*")) if (root / "served" / "exchanges").exists() else True
    [log] = (root / "served" / "feedback").glob("*.jsonl")
    with open(log, "a") as f:
        f.write('{"feedback_id": "fb-half", "rating": "go')  # a line the kill cut short
    before = {p: p.stat().st_mtime_ns for p in (root / "served").rglob("*") if p.is_file()}
    assert run_train(root, "--once").returncode == 0
    assert len(feedback_files(root)) == 1  # the whole line only; the half line waits, never half read
    assert {p: p.stat().st_mtime_ns for p in (root / "served").rglob("*") if p.is_file()} == before  # not ours
    cursor = json.loads((root / "data" / "feedback" / "state.json").read_text())["cursor"]
    assert cursor[log.name] == log.stat().st_size - len('{"feedback_id": "fb-half", "rating": "go')


def test_the_status_page_takes_a_correction_for_a_served_answer_in_chromium(root, served, tmp_path):
    from tests.browser import Browser

    status, answer = served.post("/v1/chat/completions", chat("What is 17 + 25?", **GREEDY))
    browser = Browser(served.url + "/", tmp_path / "profile")
    try:
        card = f'document.querySelector(\'.exchange[data-id="{answer["id"]}"]\')'
        browser.wait_for(f"{card} !== null")
        assert browser.evaluate(f"{card}.querySelector('.q').textContent") == "What is 17 + 25?"
        browser.evaluate(f"{card}.querySelector('button[data-correct]').click()")  # an empty box is not sent
        assert browser.wait_for(f"{card}.querySelector('.said').textContent") == "write the right answer first"
        browser.evaluate(f"{card}.querySelector('textarea').value = '17 + 25 = 42.'")
        browser.evaluate(f"{card}.querySelector('button[data-correct]').click()")
        said = browser.wait_for(f"{card}.querySelector('.said').textContent.startsWith('recorded') && "
                                f"{card}.querySelector('.said').textContent")
        assert "promotion gate" in said
    finally:
        browser.close()
    [line] = [json.loads(line) for p in (root / "served" / "feedback").glob("*.jsonl")
              for line in p.read_text().splitlines()]
    assert line["exchange"]["id"] == answer["id"] and line["correction"] == "17 + 25 = 42." and line["rating"] == "bad"


@pytest.mark.parametrize("taken", [False, True])
def test_records_rotate_by_size_and_old_ones_go_but_never_verdicts_the_daemon_has_not_read(tmp_path, taken):
    from core.config import ServeSection
    from serve.record import Recorder

    recorder = Recorder(tmp_path, ServeSection(record_max_bytes=300, keep_days=1))
    for k in range(6):
        recorder.exchange({"id": f"chatcmpl-{k}", "model": "v0001", "messages": [{"role": "user", "content": "q"}],
                           "answers": ["a" * 100]})
        recorder.feedback.append({"feedback_id": f"fb-{k}", "rating": "good", "note": "n" * 100,
                                  "exchange": {"id": f"chatcmpl-{k}"}})
    exchanges, verdicts = recorder.exchanges.files(), recorder.feedback.files()
    assert len(exchanges) >= 3 and len(verdicts) >= 3  # closed at serve.record_max_bytes, a new one begun
    assert recorder.find("chatcmpl-0")["answers"] == ["a" * 100] and recorder.find("chatcmpl-9") is None
    if taken:  # the daemon's cursor says it has read every verdict file to its end
        state = tmp_path / "data" / "feedback" / "state.json"
        state.parent.mkdir(parents=True)
        state.write_text(json.dumps({"cursor": {p.name: p.stat().st_size for p in verdicts}}))
    removed = recorder.prune(now=time.time() + 2 * 86400)
    assert recorder.exchanges.files() == exchanges[-1:]  # all but the file being written
    assert recorder.feedback.files() == (verdicts[-1:] if taken else verdicts)  # unread verdicts are kept
    assert len(removed) == len(exchanges) - 1 + (len(verdicts) - 1 if taken else 0)
    assert recorder.stats()["exchanges"] == len(exchanges[-1].read_text().splitlines())
