#!/usr/bin/env bash
# Run the whole test suite in the project's virtual environment. pytest's exit 5 ("no tests collected") is a
# failure here: a suite that runs nothing must not pass. A suite that hangs is stopped after CYPHER_TEST_LIMIT
# (25 minutes; it takes 10 to 14 here) and the test it hung in is named last: pytest's faulthandler has printed
# every thread's stack by then (faulthandler_timeout in pyproject.toml), and a process whose threads are all stuck
# cannot name it itself.
set -uo pipefail
venv=${1:-.venv}
limit=${CYPHER_TEST_LIMIT:-25m}
log=$(mktemp)
trap 'rm -f "$log"' EXIT
timeout --kill-after=30 "$limit" "$venv/bin/python" -m pytest -ra "${@:2}" 2>&1 | tee "$log"
rc=${PIPESTATUS[0]}
if [ "$rc" = 124 ] || [ "$rc" = 137 ]; then
    hung=$(grep -oE 'tests/test_[a-z0-9_]+\.py", line [0-9]+ in test_[A-Za-z0-9_]+' "$log" | tail -1 | tr -d '"')
    echo "run_tests: the suite ran past $limit and was stopped; it hung in ${hung:-a test whose stack is above}" >&2
    exit 1
fi
if [ "$rc" = 5 ]; then
    echo "run_tests: pytest collected no tests; that is a failure" >&2
    exit 1
fi
exit "$rc"
