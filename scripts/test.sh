#!/usr/bin/env bash
# The whole test suite, from nothing: Docker engine, virtualenv, lint, types, layers, then pytest
# (unit, integration on real namespaces and Docker, e2e on the sandbox with real kubectl).
#
#   $ scripts/test.sh
#   docker: engine answers (20.10.24+dfsg1), leaving it alone
#   venv: .venv ready (pidmap 0.1.0 with the sandbox and dev extras)
#   ruff: All checks passed!
#   mypy: Success: no issues found in 65 source files
#   lint-imports: Contracts: 3 kept, 0 broken.
#   ...
#   ======================= 302 passed in 137.35s (0:02:17) ========================
#
# Extra arguments go to pytest (e.g. scripts/test.sh tests/unit -x). Needs root for the Docker
# engine, cgroups and nsenter, as the sandbox does.
#
# PIDMAP_DEPS=lowest scripts/test.sh runs the same pytest suite in .venv-lowest, where every
# dependency is at the lowest version pyproject.toml declares (scripts/lowest_deps.py prints them:
# kubernetes==30.1.0, docker==7.1.0, ...; whatever those need, pip resolves as usual). ruff, mypy
# and lint-imports check the source, not the dependencies: they run in the default (newest) mode.
#
# The order is shuffled (pytest-random-order, bucket=module: modules in a random order, and the tests
# within each, so module fixtures still set up once) with a seed printed first; a failure that shows
# only in some order is a dependency between tests. PIDMAP_TEST_SEED=N scripts/test.sh (or pytest's
# own --random-order-seed=N) runs that order again; PIDMAP_TEST_SEED=none keeps the file order.
set -euo pipefail
cd "$(dirname "$0")/.."

seed=${PIDMAP_TEST_SEED:-$(( (RANDOM << 15 | RANDOM) % 1000000 ))}
case " $* " in
  *" --random-order-seed"*|*" -p no:random_order "*) order=() ;;  # the caller chose
  *) if [ "$seed" = none ]; then order=(-p no:random_order); echo "order: file order (PIDMAP_TEST_SEED=none)"
     else order=(--random-order-bucket=module "--random-order-seed=$seed")
          echo "order: shuffled by module, seed $seed (PIDMAP_TEST_SEED=$seed scripts/test.sh reproduces it)"; fi ;;
esac

scripts/setup.sh

# Mermaid's own parser (npm mermaid + jsdom, no browser) checks the -o mermaid pictures in the tests.
if command -v npm >/dev/null 2>&1 && [ ! -d .cache/mermaid/node_modules/mermaid ]; then
  echo "setup: installing mermaid's parser from npm into .cache/mermaid"
  mkdir -p .cache/mermaid
  npm install --silent --no-audit --no-fund --prefix .cache/mermaid mermaid@10 jsdom@29 >/dev/null \
    || echo "setup: npm install of mermaid failed; the mermaid test will fail" >&2
fi

if [ "${PIDMAP_DEPS:-newest}" = lowest ]; then
  pins=$(.venv/bin/python scripts/lowest_deps.py)
  stamp=.venv-lowest/.pidmap-lowest
  if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$pins" ] || [ pyproject.toml -nt "$stamp" ]; then
    rm -rf .venv-lowest
    "${PYTHON:-python3}" -m venv .venv-lowest
    # shellcheck disable=SC2086
    .venv-lowest/bin/python -m pip install -q --disable-pip-version-check $pins
    .venv-lowest/bin/python -m pip install -q --disable-pip-version-check --no-deps -e .
    printf '%s\n' "$pins" > "$stamp"
  fi
  # What is installed, not what was asked for: a pin pip did not honour fails here.
  .venv-lowest/bin/python - "$pins" <<'PY'
import sys
from importlib.metadata import version
wrong = [f"{pin} (installed {version(pin.split('==')[0])})" for pin in sys.argv[1].split()
         if version(pin.split("==")[0]) != pin.split("==")[1]]
if wrong:
    sys.exit("deps: not at the lowest declared version: " + ", ".join(wrong))
print("deps: lowest declared versions in .venv-lowest:", " ".join(sys.argv[1].split()))
PY
  exec .venv-lowest/bin/python -m pytest "${order[@]}" "$@"
elif [ "${PIDMAP_DEPS:-newest}" != newest ]; then
  echo "test.sh: PIDMAP_DEPS is newest (default) or lowest, not ${PIDMAP_DEPS}" >&2
  exit 2
fi

# One line per step when it passes; the whole output (and a failing exit) when it does not.
step() {
  local name=$1 out
  shift
  printf '%s: ' "$name"
  if out=$("$@" 2>&1); then
    printf '%s\n' "$out" | tail -1
  else
    echo FAILED
    printf '%s\n' "$out" >&2
    exit 1
  fi
}
step ruff .venv/bin/ruff check pidmap tests scripts
step mypy .venv/bin/mypy pidmap tests
printf 'lint-imports: '; .venv/bin/lint-imports 2>&1 | grep -E 'Contracts:' || { .venv/bin/lint-imports; exit 1; }

exec .venv/bin/python -m pytest "${order[@]}" "$@"
