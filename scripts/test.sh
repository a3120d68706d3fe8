#!/usr/bin/env bash
# The test command: set up (packages, dockerd, .venv), then lint, type-check and run every test against
# the real Docker Engine and the real Caddy. Extra arguments go to pytest.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
"$root/scripts/setup.sh" test
cd "$root"
py=.venv/bin/python
echo "== ruff";  "$py" -m ruff check activator tests bench
echo "== mypy --strict"; "$py" -m mypy
echo "== pytest"; "$py" -m pytest -p no:cacheprovider "$@"
