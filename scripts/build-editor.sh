#!/usr/bin/env bash
# The editor's page bundle (CodeMirror 6 and the sync client), built once from npm at set-up: no CDN at run time.
# Rebuilt only when editor-page/ changes (a stamp of its content hash). Needs node and npm (Debian's, or any).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
page=$root/editor-page
out=$root/activator/editor/static
hash=$(cd "$page" && cat package.json package-lock.json src/*.js | sha256sum | cut -c1-16)
[ -f "$out/.built-$hash" ] && exit 0
command -v npm >/dev/null || { echo "build-editor: npm is missing (apt-get install npm)" >&2; exit 1; }
(cd "$page" && npm ci --no-audit --no-fund --loglevel=error)
mkdir -p "$out"
"$page/node_modules/.bin/esbuild" "$page/src/editor.js" --bundle --minify --format=iife --log-level=warning \
  --outfile="$out/editor.js"
rm -f "$out"/.built-*
touch "$out/.built-$hash"
echo "build-editor: $out/editor.js ($(stat -c %s "$out/editor.js") bytes)"
