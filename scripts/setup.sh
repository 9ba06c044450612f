#!/usr/bin/env bash
# Set up everything pidmap's demo and tests need, from nothing; idempotent.
#
#   $ scripts/setup.sh
#   docker: engine answers (20.10.24+dfsg1), leaving it alone
#   venv: .venv ready (pidmap 0.1.0 with the sandbox and dev extras)
#
# 1. the Docker engine (scripts/install-docker.sh: Debian's docker.io when none answers);
# 2. graphviz, which renders the -o dot pictures in the tests, and zsh and fish (completion tests);
# 3. a virtualenv in .venv with pidmap installed editable, with its sandbox and dev extras.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/install-docker.sh

# Graphviz renders the -o dot pictures in the tests (and for slides).
if ! command -v dot >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ]; then
    echo "setup: installing graphviz from Debian"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends graphviz >/dev/null \
      || { apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends graphviz >/dev/null; }
  else
    echo "setup: graphviz (dot) missing; the picture tests need it (apt-get install graphviz)" >&2
  fi
fi

# zsh and fish: the completion tests run pidmap's completion scripts through the shells themselves.
missing_shells=()
for shell in zsh fish; do command -v "$shell" >/dev/null 2>&1 || missing_shells+=("$shell"); done
if [ "${#missing_shells[@]}" -gt 0 ]; then
  if [ "$(id -u)" = 0 ]; then
    echo "setup: installing ${missing_shells[*]} from Debian (the completion tests run them)"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing_shells[@]}" >/dev/null \
      || { apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing_shells[@]}" >/dev/null; }
  else
    echo "setup: ${missing_shells[*]} missing; the completion tests need them (apt-get install ${missing_shells[*]})" >&2
  fi
fi

py=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$py" -m venv .venv
fi
stamp=.venv/.pidmap-installed
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
  .venv/bin/python -m pip install -q --disable-pip-version-check -e '.[sandbox,dev]'
  touch "$stamp"
fi
echo "venv: .venv ready ($(.venv/bin/pidmap --version 2>/dev/null || echo 'pidmap installed') with the sandbox and dev extras)"
