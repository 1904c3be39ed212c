#!/usr/bin/env bash
# Every check of the project, from the repository root: install the test dependencies, then
# ruff, mypy (the package, and the test harness strictly) and the whole pytest suite (unit and
# end-to-end). All checks run even if one fails; the exit status is non-zero if any failed.
#
#   scripts/run-tests.sh                 # everything
#   scripts/run-tests.sh -k kamailio     # extra arguments go to pytest
set -uo pipefail
cd "$(dirname "$0")/.."

scripts/install-test-deps.sh || exit 1
export PATH="$PWD/.venv/bin:$PATH"

failed=()
check() {
    local name=$1
    shift
    echo "=== $name: $*"
    local started=$SECONDS
    if "$@"; then
        echo "=== $name: passed ($((SECONDS - started)) s)"
    else
        echo "=== $name: FAILED ($((SECONDS - started)) s)"
        failed+=("$name")
    fi
}

check ruff ruff check .
check mypy mypy
check mypy-harness mypy --strict tests/e2e/harness
# The whole suite is designed to take well under 15 minutes; 30 is a hard stop.
check pytest timeout --kill-after=30 1800 python -m pytest -q -p no:cacheprovider --durations=15 "$@"

if ((${#failed[@]})); then
    echo "run-tests: FAILED: ${failed[*]}"
    exit 1
fi
echo "run-tests: all checks passed"
