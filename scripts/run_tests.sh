#!/usr/bin/env bash
# Run the whole test suite in the project's virtual environment. pytest's exit 5 ("no tests collected") is a
# failure here: a suite that runs nothing must not pass.
set -uo pipefail
venv=${1:-.venv}
"$venv/bin/python" -m pytest -ra "${@:2}"
rc=$?
if [ "$rc" = 5 ]; then
    echo "run_tests: pytest collected no tests; that is a failure" >&2
    exit 1
fi
exit "$rc"
