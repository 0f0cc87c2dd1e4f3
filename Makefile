# The two commands of the README, and a few helpers.
.PHONY: setup setup-test run ask test test-fast bench

QUESTION ?= How do honeybees tell each other how far away the flowers are?
PORT ?= 8080

setup:
	scripts/setup.sh

setup-test:
	scripts/setup.sh --test

# Set up, ingest the bundled sample corpus (idempotent) and serve the API and chat page.
run: setup
	.venv/bin/ragline serve --sample --port $(PORT)

# Set up, ingest the sample corpus and answer one question in the terminal.
ask: setup
	.venv/bin/ragline ingest --sample
	.venv/bin/ragline ask "$(QUESTION)"

# Set up and run the whole test suite (unit, contracts, real Milvus Lite and server).
test: setup-test
	HF_HUB_OFFLINE=1 .venv/bin/python -m pytest -q -p no:cacheprovider

test-fast: setup-test
	HF_HUB_OFFLINE=1 .venv/bin/python -m pytest -q -m "not integration"

bench:
	.venv/bin/python bench/ingest.py
	.venv/bin/python bench/search.py
	.venv/bin/python bench/generate.py
	.venv/bin/python bench/answers.py
	.venv/bin/python bench/serve.py
