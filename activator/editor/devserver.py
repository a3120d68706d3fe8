"""Development containers: for each site built from source by a recipe (node, astro, next), a site of kind
`development` on the site's preview host (`[editor] preview_host`). It runs the framework's own dev server over
the site's workspace, bound at /app, as an unprivileged user, with its installed packages kept between runs in
a cache folder bound at /app/node_modules. The activator starts it like any site (a preview request, or the
editor opening the site) and stops it after `[editor] idle_timeout` with no request and no edit."""

from __future__ import annotations

import os
from pathlib import Path

SUFFIX = "-dev"  # a development site's name: its site's and this
START_TIMEOUT = 120.0  # a first start installs the site's packages
TOOLS = Path(__file__).with_name("devcontainer")  # the runner and its gate, bound read-only at TOOLS_INSIDE
TOOLS_INSIDE = "/dialup"
RUNNER = TOOLS / "runner.mjs"
# Not root, whatever runs dialup; the node images' own user has this id too.
UNPRIVILEGED = (1000, 1000)


def dev_user() -> tuple[int, int]:
    """Who development containers run as and who owns the workspaces: dialup's own user, unless that is root."""
    uid = os.getuid()
    return (uid, os.getgid()) if uid != 0 else UNPRIVILEGED


# Packages are installed again only when package.json or its lock changed since the last install (a stamp in
# the cache); the runner then starts the dev server.
_START = """\
set -e
cd /app
if [ -f package.json ]; then
  want="$(cat package.json package-lock.json 2>/dev/null | cksum)"
  if [ "$(cat node_modules/.dialup-installed 2>/dev/null)" != "$want" ]; then
    if node -e 'const p = require("./package.json");
        process.exit(Object.keys({...p.dependencies, ...p.devDependencies}).length ? 0 : 1)'; then
      npm install --no-audit --no-fund
    fi
    echo "$want" > node_modules/.dialup-installed
  fi
fi
exec node {runner} {kind}
"""


def command(kind: str) -> tuple[str, ...]:
    return ("sh", "-c", _START.replace("{runner}", f"{TOOLS_INSIDE}/runner.mjs").replace("{kind}", kind))


def environment(port: int) -> tuple[tuple[str, str], ...]:
    return (
        ("PORT", str(port)),
        ("HOST", "0.0.0.0"),
        ("HOSTNAME", "0.0.0.0"),
        ("NODE_ENV", "development"),
        ("HOME", "/tmp"),
        ("NPM_CONFIG_CACHE", "/app/node_modules/.cache/npm"),  # npm's downloads kept with the packages
        ("NPM_CONFIG_UPDATE_NOTIFIER", "false"),
    )


def mounts(workspace: Path, cache: Path) -> tuple[tuple[str, str, bool], ...]:
    return (
        (str(workspace), "/app", False),
        (str(cache), "/app/node_modules", False),
        (str(TOOLS), TOOLS_INSIDE, True),
    )
