#!/usr/bin/env bash
# Set up and run numpyro_stein_diag on a fresh machine.
#   ./dev.sh demo   install into .venv (Python >= 3.12) and run the demo
#   ./dev.sh test   install into .venv (pytest and ruff are in the lock), lint and run the test suite
#   ./dev.sh bench  install the benchmark peers and run bench/
# Every command installs the pinned environment of requirements-dev.lock (the versions the
# README's numbers come from), then the package itself without touching those pins.
set -euo pipefail
cd "$(dirname "$0")"

find_python() {
    # A python3.12 shim may be on PATH and still fail, so each candidate is run.
    local candidates=(python3 python3.13 python3.12 python)
    if command -v pyenv >/dev/null 2>&1; then
        for v in $(pyenv versions --bare 2>/dev/null | grep -E '^3\.(1[2-9])' | sort -rV); do
            candidates+=("$(pyenv prefix "$v")/bin/python")
        done
    fi
    for p in "${candidates[@]}"; do
        if "$p" -c 'import sys, venv; sys.exit(sys.version_info < (3, 12))' >/dev/null 2>&1; then
            echo "$p"; return 0
        fi
    done
    echo "error: no Python >= 3.12 found (tried ${candidates[*]}); install one, e.g. 'pyenv install 3.12'." >&2
    return 1
}

LOCK=requirements-dev.lock

setup() {
    # An existing .venv is brought to the locked versions (pip moves every pinned package that
    # differs); extras install under the lock as a constraint, so they cannot move a pin either.
    local extras=${1:-}
    if ! .venv/bin/python -c 'import sys; sys.exit(sys.version_info < (3, 12))' >/dev/null 2>&1; then
        rm -rf .venv
        "$(find_python)" -m venv .venv
        .venv/bin/python -m pip install --quiet --upgrade pip
    fi
    .venv/bin/python -m pip install --quiet -r "$LOCK"
    if [ -n "$extras" ]; then
        .venv/bin/python -m pip install --quiet -c "$LOCK" -e ".[$extras]"
    else
        .venv/bin/python -m pip install --quiet --no-deps -e .
    fi
    local broken
    if ! broken=$(.venv/bin/python -m pip check); then
        echo "$broken" >&2
        echo "error: $LOCK does not satisfy the package's dependencies; update the lock (see its header)." >&2
        return 1
    fi
}

case "${1:-}" in
    demo) setup; shift; exec .venv/bin/python -m numpyro_stein_diag demo "$@" ;;
    test) setup; shift; .venv/bin/ruff check . && .venv/bin/ruff format --check . && exec .venv/bin/python -m pytest -q "$@" ;;
    bench) setup bench; shift; for b in bench/bench_*.py; do .venv/bin/python "$b" "$@"; done ;;
    *) echo "usage: ./dev.sh demo | test | bench" >&2; exit 2 ;;
esac
