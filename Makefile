# The two commands of the README, and a few helpers.
.PHONY: setup setup-test run ask test test-fast test-latest lock lint bench

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
	.venv/bin/ragline ask --tenant sample "$(QUESTION)"

# Set up, check the code (ruff, mypy) and run the whole test suite (unit, contracts,
# real Milvus Lite and server, Kafka, Redis, the LLM server).
test: setup-test lint
	HF_HUB_OFFLINE=1 .venv/bin/python -m pytest -q -p no:cacheprovider

# Unit tests only: no servers, under a minute.
test-fast: setup-test
	HF_HUB_OFFLINE=1 .venv/bin/python -m pytest -q -p no:cacheprovider -m unit

# Try the newest releases pyproject.toml allows, on purpose (not in CI): a separate
# .venv-latest, unlocked; the unit suite and the real-file corpus. A failure here is a
# pin to add to requirements/constraints.txt (with why) or a fix to make before `make lock`.
test-latest:
	scripts/setup.sh --latest
	HF_HUB_OFFLINE=1 .venv-latest/bin/python -m pip list --format=freeze > .venv-latest/versions.txt
	HF_HUB_OFFLINE=1 .venv-latest/bin/python -m pytest -q -p no:cacheprovider -m unit tests/unit

# Re-resolve the lock files (requirements/*.lock) from pyproject.toml and
# requirements/*.in; `make lock ARGS=--upgrade` takes the newest releases.
lock: setup
	scripts/lock.sh $(ARGS)

lint:
	.venv/bin/ruff check src tests bench scripts
	.venv/bin/ruff format --check src tests bench scripts
	.venv/bin/mypy

bench:
	.venv/bin/python bench/ingest.py
	.venv/bin/python bench/search.py
	.venv/bin/python bench/generate.py
	.venv/bin/python bench/answers.py
	.venv/bin/python bench/serve.py
