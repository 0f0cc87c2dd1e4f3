# The two commands of the README, and a few helpers.
.PHONY: setup setup-test run test test-fast bench

QUESTION ?= How do honeybees tell each other how far away the flowers are?

setup:
	scripts/setup.sh

setup-test:
	scripts/setup.sh --test

# Set up, ingest the bundled sample corpus (idempotent) and answer a search on it.
run: setup
	.venv/bin/ragline ingest --sample
	.venv/bin/ragline search "$(QUESTION)" --top-k 3

# Set up and run the whole test suite (unit, contracts, real Milvus Lite and server).
test: setup-test
	HF_HUB_OFFLINE=1 .venv/bin/python -m pytest -q -p no:cacheprovider

test-fast: setup-test
	HF_HUB_OFFLINE=1 .venv/bin/python -m pytest -q -m "not integration"

bench:
	.venv/bin/python bench/ingest.py
	.venv/bin/python bench/search.py
