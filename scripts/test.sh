#!/usr/bin/env bash
# The whole test suite: lint, format check, mypy --strict, then pytest (unit, conformance
# vectors, property tests and interop against real Mercurial 6.0 and 7.2.4).
# Extra arguments go to pytest (e.g. scripts/test.sh tests/wire -x).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/bootstrap.sh
scripts/install-system.sh
hgs=$(scripts/install-hg.sh)
HGWIRE_HG60=$(echo "$hgs" | sed -n 1p)
HGWIRE_HG72=$(echo "$hgs" | sed -n 2p)
export HGWIRE_HG60 HGWIRE_HG72
export PATH="$PWD/.venv/bin:$PATH"
echo "== ruff check"; ruff check src tests bench fuzz
echo "== ruff format --check"; ruff format --check src tests bench fuzz
echo "== mypy --strict src/"; mypy --strict src/
echo "== pytest"
workers="${HGWIRE_TEST_WORKERS:-auto}"
exec pytest -n "$workers" "$@"
