#!/usr/bin/env bash
# Set up and run numpyro_stein_diag on a fresh machine.
#   ./dev.sh demo   install into .venv (Python >= 3.12) and run the demo
#   ./dev.sh test   install into .venv with the test extras and run the test suite
#   ./dev.sh bench  install the benchmark peers and run bench/
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

setup() {
    local extras=$1
    if ! .venv/bin/python -c 'import sys; sys.exit(sys.version_info < (3, 12))' >/dev/null 2>&1; then
        rm -rf .venv
        "$(find_python)" -m venv .venv
        .venv/bin/python -m pip install --quiet --upgrade pip
    fi
    .venv/bin/python -m pip install --quiet -e ".[$extras]"
}

case "${1:-}" in
    demo) setup dev; shift; exec .venv/bin/python -m numpyro_stein_diag demo "$@" ;;
    test) setup dev; shift; exec .venv/bin/python -m pytest -q "$@" ;;
    bench) setup dev,bench; shift; for b in bench/bench_*.py; do .venv/bin/python "$b" "$@"; done ;;
    *) echo "usage: ./dev.sh demo | test | bench" >&2; exit 2 ;;
esac
