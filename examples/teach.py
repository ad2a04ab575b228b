"""Teach it while you use it: ask the served model, correct a wrong answer through the API, let the daemon train,
ask again. The end of `make demo`; any root works:

    python examples/teach.py --config demo/config.json

It starts `train.py --serve` on the root (the daemon must not be running: this script runs it once), asks word
problems the model has not trained on with the openai client until one answer is wrong, sends the right answer
as a correction (POST /v1/feedback), runs the daemon once (the correction becomes a training file, the gate
judges the new version), and asks the same question of the version now served. The status page, printed at the
start, shows the answer and the verdict as they come.
"""
from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from core.synthetic import word_problems  # noqa: E402
from evaluation.matching import match_answer  # noqa: E402


def start_server(config: Path, log: Path) -> tuple[subprocess.Popen, str]:
    proc = subprocess.Popen([sys.executable, str(REPO / "train.py"), "--serve", "--port", "0", "--config", str(config)],
                            stdout=open(log, "wb"), stderr=subprocess.STDOUT)
    deadline = time.time() + 600
    while time.time() < deadline:
        found = re.search(r"listening on (http://\S+):(\d+)", log.read_text(errors="replace"))
        if found:
            url = f"http://127.0.0.1:{found.group(2)}"
            while time.time() < deadline:
                try:
                    with urllib.request.urlopen(url + "/health") as r:
                        if r.status == 200:
                            return proc, url
                except OSError:
                    pass
                time.sleep(0.5)
        if proc.poll() is not None:
            break
        time.sleep(0.5)
    proc.kill()
    sys.exit(f"the server did not start; its output is in {log}")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--config", type=Path, default=Path("config.json"))
    p.add_argument("--tries", type=int, default=20, help="questions to ask until one is answered wrong")
    args = p.parse_args()
    from openai import OpenAI

    root = args.config.resolve().parent
    (root / "logs").mkdir(exist_ok=True)
    server, url = start_server(args.config, root / "logs" / "teach-serve.out")
    try:
        print(f"serving at {url} (the status page: {url}/)")
        client = OpenAI(base_url=url + "/v1", api_key="none")
        for item in word_problems(args.tries, seed=4242):
            r = client.chat.completions.create(model="current", temperature=0, max_tokens=96,
                                               messages=[{"role": "user", "content": item["question"]}])
            answer = r.choices[0].message.content
            if not match_answer(item["answer"], answer, question=item["question"]).matched:
                break
        else:
            print(f"all {args.tries} answers were right: nothing to correct")
            return 0
        print(f"\nasked ({r.model}): {item['question']}\nit answered: {answer}\n")
        body = json.dumps({"id": r.id, "rating": "bad", "correction": item["answer"]}).encode()
        req = urllib.request.Request(url + "/v1/feedback", data=body, headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req) as answered:
            print(f"correction sent: {json.loads(answered.read())['then']}\n")
        subprocess.run([sys.executable, str(REPO / "train.py"), "--once", "--config", str(args.config)], check=True)
        time.sleep(1)
        again = client.chat.completions.create(model="current", temperature=0, max_tokens=96,
                                               messages=[{"role": "user", "content": item["question"]}])
        right = match_answer(item["answer"], again.choices[0].message.content, question=item["question"]).matched
        print(f"\nasked again ({again.model}): {again.choices[0].message.content}\n"
              f"{'RIGHT now' if right else 'still wrong'}" + ("" if again.model != r.model else
                                                              " (the gate kept the earlier version; see its verdict: "
                                                              "selfcorrect status)"))
    finally:
        server.kill()
        server.wait()
    return 0


if __name__ == "__main__":
    sys.exit(main())
