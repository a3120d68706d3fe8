#!/usr/bin/env bash
# The demo: set up, build the three demo images from local files, and run the activator in the foreground
# on examples/demo.toml (Caddy on 127.0.0.1:8080). Ctrl-C stops the activator; `dialup down` stops the rest.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
"$root/scripts/setup.sh" test
"$root/scripts/build-images.sh" "$root/examples/images" dialup-example
cat <<'MSG'

Try, in another terminal:
  curl -H 'Host: blog.localhost' http://127.0.0.1:8080/    # a static site, cold-started by this request
  curl -H 'Host: app.localhost'  http://127.0.0.1:8080/    # an app that boots in ~1.5 s: the request is held
  curl -H 'Host: home.localhost' http://127.0.0.1:8080/    # persistent: already running
  curl -H 'Host: docs.localhost' http://127.0.0.1:8080/    # deployed from examples/sources/docs (no container)
  .venv/bin/dialup deploy docs -c examples/demo.toml       # after editing examples/sources/docs/index.html
  .venv/bin/dialup editor-token docs -c examples/demo.toml # a link: edit docs in the browser, its preview beside
  .venv/bin/dialup status -c examples/demo.toml

MSG
exec "$root/.venv/bin/dialup" up -c "$root/examples/demo.toml"
