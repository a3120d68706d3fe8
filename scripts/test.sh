#!/usr/bin/env bash
# The test command: set up (packages, dockerd, .venv), lint, type-check, a smoke run of bench/
# (python -m bench --quick, no timing asserted), then every test against the real Docker Engine and the
# real Caddy, last, so that pytest's summary closes the output. Extra arguments go to pytest (and skip the
# bench smoke run).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
"$root/scripts/setup.sh" test
cd "$root"
py=.venv/bin/python
echo "== ruff";  "$py" -m ruff check activator tests bench
echo "== mypy --strict"; "$py" -m mypy
echo "== test images"; scripts/build-images.sh tests/images dialup-test
if [ $# -eq 0 ]; then
  echo "== bench --quick"; "$py" -m bench --quick
fi
echo "== pytest"; "$py" -m pytest -p no:cacheprovider "$@"
