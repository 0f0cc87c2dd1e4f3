#!/usr/bin/env bash
# Re-resolve every lock file under requirements/ (make lock). Reads pyproject.toml,
# requirements/*.in and requirements/constraints.txt; writes requirements/*.lock with
# the sha256 of every file of every pinned release. Commit the result with the change
# that needed it, and run `make test` on it first.
#   scripts/lock.sh                  keep the pins that still satisfy pyproject.toml
#   scripts/lock.sh --upgrade        newest releases (within constraints.txt)
#   scripts/lock.sh --upgrade-package NAME   newest release of one package only
set -euo pipefail
cd "$(dirname "$0")/.."
UV=${UV:-.venv/bin/uv}
[ -x "$UV" ] || UV=$(command -v uv) || { echo "uv not found: run scripts/setup.sh first" >&2; exit 1; }
# One platform and Python for every lock: Linux x86_64 (glibc 2.28+), CPython 3.11,
# the machines and the image ragline is tested on.
common=(--generate-hashes --python-version 3.11 --python-platform x86_64-manylinux_2_28 --quiet "$@")
compile() { "$UV" pip compile "${common[@]}" --custom-compile-command "make lock" "$@"; }
compile pyproject.toml --extra test -c requirements/constraints.txt -o requirements/test.lock
# The service's lock is the test lock's versions without the test tools: never two
# different versions of one package between what is tested and what is shipped.
compile pyproject.toml -c requirements/test.lock -o requirements/service.lock
# bench/peers.py's frameworks, on the test lock's versions (scripts/setup.sh --peers)
compile pyproject.toml --extra peers -c requirements/test.lock -o requirements/peers.lock
compile requirements/models.in --no-deps -o requirements/models.lock
compile requirements/uv.in --no-deps -o requirements/uv.lock
compile requirements/tools.in -o requirements/tools.lock
echo "locked: $(grep -c '==' requirements/test.lock) packages for the tests, $(grep -c '==' requirements/service.lock) for the service" >&2
