# The two set-up commands (README): `make run` and `make test`. Both create .venv themselves.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
PY := $(BIN)/python
PORT ?= 8080
MEDIA_PORT ?= 8931
LLM_PORT ?= 8933

.PHONY: run test check lint pytest npm-peers browser bench clean

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip

$(VENV)/.installed: pyproject.toml | $(PY)
	$(PY) -m pip install -q -e .
	touch $@

$(VENV)/.installed-dev: pyproject.toml | $(PY)
	$(PY) -m pip install -q -e ".[dev]"
	touch $(VENV)/.installed $@

npm-peers:
	bash scripts/install-npm-peers.sh

# Debian's chromium for the Playwright form test (apt-get as root; no `playwright install` download).
browser:
	bash scripts/install-browser.sh

# Starts the example streamable-HTTP upstream next to the gateway so the demo needs no network.
# Ports: make run PORT=9090 MEDIA_PORT=8932 LLM_PORT=8934 (defaults 8080, 8931 and 8933).
run: $(VENV)/.installed
	@PORT=$(PORT) MEDIA_PORT=$(MEDIA_PORT) LLM_PORT=$(LLM_PORT) bash scripts/run-demo.sh

check: $(VENV)/.installed-dev
	$(BIN)/ruff check mcp_gateway llm_gateway tests examples benchmarks
	$(BIN)/ruff format --check mcp_gateway llm_gateway tests examples benchmarks
	$(BIN)/mypy

# The relay, aggregation, governance and fault tests run a second time with the /mcp fast path
# switched off, so the SDK path every unusual call takes stays tested too.
SLOW_PATH_TESTS = tests/test_relay.py tests/test_aggregation.py tests/test_governance.py tests/test_answers.py \
	tests/test_faults.py tests/test_http_surface.py tests/test_direct_http.py tests/test_calls.py

pytest: $(VENV)/.installed-dev npm-peers browser
	$(BIN)/pytest
	MCPGW_FAST_PATH=off $(BIN)/pytest -q -p no:cacheprovider $(SLOW_PATH_TESTS)

test: check pytest

bench: $(VENV)/.installed-dev
	$(PY) benchmarks/proxy_overhead.py

clean:
	rm -rf $(VENV) .cache .mypy_cache .ruff_cache .pytest_cache
