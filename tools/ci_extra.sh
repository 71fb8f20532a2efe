#!/usr/bin/env bash
# Checks for the one-file build and the distributions, run by .ci/run after
# the main lint/type/test steps, inside its virtual environment (the [test,dev] extras).
#
#   bash tools/ci_extra.sh
#
# 1. Build waygpt_client.py into a temporary directory, lint and type-check it, and run the
#    client test suite against it (tests/conftest.py loads the SDK from WAYGPT_SDK_FILE).
# 2. Build the wheel and sdist, run twine check --strict and inspect them (tools/check_dist.py).
# (The examples run with --demo inside the main pytest run: tests/docs/test_examples.py.)
set -euo pipefail
cd "$(dirname "$0")/.."

python="${PYTHON:-python}"
scratch="$(mktemp -d "${TMPDIR:-/tmp}/waygpt-ci-extra.XXXXXX")"
trap 'rm -rf "$scratch"' EXIT

echo "== one-file build"
single="$scratch/waygpt_client.py"
"$python" tools/build_single_file.py "$single"
(cd "$scratch" && "$python" -c "import sys; sys.modules['waygpt'] = None; import waygpt_client; print('import waygpt_client:', waygpt_client.__version__)")
"$python" -m ruff check --no-cache --config pyproject.toml "$single"
"$python" -m mypy --strict --no-incremental --cache-dir=/dev/null "$single"

echo "== client test suite against the one-file build"
WAYGPT_SDK_FILE="$single" "$python" -m pytest tests/client -q -p no:cacheprovider

echo "== wheel and sdist"
"$python" tools/check_dist.py
echo "ci_extra: all passed"
