#!/usr/bin/env bash
# The test command: set up (packages, dockerd, .venv), then lint, type-check and run every test against
# the real Docker Engine and the real Caddy, then a smoke run of bench/ (python -m bench --quick).
# Extra arguments go to pytest (and skip the bench smoke run).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
"$root/scripts/setup.sh" test
cd "$root"
py=.venv/bin/python
echo "== ruff";  "$py" -m ruff check activator tests bench
echo "== mypy --strict"; "$py" -m mypy
echo "== pytest"; "$py" -m pytest -p no:cacheprovider "$@"
if [ $# -eq 0 ]; then  # the whole suite: also a smoke run of the benchmark harness (no timing asserted)
  echo "== bench --quick"; "$py" -m bench --quick
fi
