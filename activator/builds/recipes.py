"""How a source without a Dockerfile is built, by kind: the Dockerfile dialup writes for it."""

from __future__ import annotations

from pathlib import Path

from activator.model import Kind

RECIPES_VERSION = "1"  # part of every image release's build key: a change of the recipes builds anew


class NoRecipe(Exception):
    """The source cannot be built as its kind says (the reason says what is missing)."""


# Dependencies in a layer of their own, before the rest of the source: an update that changes no dependency
# reuses it. npm's cache is a BuildKit cache mount, kept between builds and out of the image.
_DEPENDENCIES = """\
COPY package.json package-lock.json* ./
RUN --mount=type=cache,target=/root/.npm \\
    if [ -f package-lock.json ]; then npm ci {omit}--no-audit --no-fund; \\
    else npm install {omit}--no-audit --no-fund; fi
"""

_NODE = """\
FROM {base}
WORKDIR /app
ENV NODE_ENV=production PORT={port} HOST=0.0.0.0 HOSTNAME=0.0.0.0
{deps}COPY . .
EXPOSE {port}
CMD ["npm", "start"]
"""

# Astro: built, then its server entry (the node adapter) run, or its static output served by a few lines
# of node (no registry here for a static server package).
_ASTRO = """\
FROM {base} AS build
WORKDIR /app
{deps}COPY . .
RUN npm run build
FROM {base}
WORKDIR /app
ENV NODE_ENV=production PORT={port} HOST=0.0.0.0
COPY --from=build /app /app
EXPOSE {port}
CMD ["sh", "-c", "if [ -f dist/server/entry.mjs ]; then exec node dist/server/entry.mjs; \\
     else exec node /app/.dialup-serve.mjs dist; fi"]
"""

# Next: `output: "standalone"` (Next's advice for containers): only the traced files, run by node server.js.
_NEXT = """\
FROM {base} AS build
WORKDIR /app
{deps}COPY . .
RUN npm run build && test -f .next/standalone/server.js \\
    || (echo 'next.config must set output: "standalone"' >&2; exit 1)
FROM {base}
WORKDIR /app
ENV NODE_ENV=production PORT={port} HOSTNAME=0.0.0.0
COPY --from=build /app/.next/standalone ./
COPY --from=build /app/.next/static ./.next/static
COPY --from=build /app/public* ./public/
EXPOSE {port}
CMD ["node", "server.js"]
"""

_TEMPLATES = {Kind.NODE: _NODE, Kind.ASTRO: _ASTRO, Kind.NEXT: _NEXT}

# The static server for an Astro site without a server adapter: written into the build context.
STATIC_SERVER = """\
import { createServer } from "node:http";
import { createReadStream, statSync } from "node:fs";
import { extname, join, normalize } from "node:path";
const root = process.argv[2], port = Number(process.env.PORT);
const types = { ".html": "text/html", ".css": "text/css", ".js": "text/javascript", ".json": "application/json",
  ".svg": "image/svg+xml", ".png": "image/png", ".jpg": "image/jpeg", ".ico": "image/x-icon", ".txt": "text/plain" };
createServer((req, res) => {
  let path = normalize(decodeURIComponent(new URL(req.url, "http://x").pathname)).replace(/^(\\.\\.[/\\\\])+/, "");
  let file = join(root, path);
  try { if (statSync(file).isDirectory()) file = join(file, "index.html"); statSync(file); }
  catch { res.writeHead(404).end("not found\\n"); return; }
  res.writeHead(200, { "content-type": types[extname(file)] || "application/octet-stream" });
  createReadStream(file).pipe(res);
}).listen(port, "0.0.0.0");
"""


def dockerfile(kind: Kind, context: Path, base: str, port: int) -> str | None:
    """The Dockerfile for the source in `context`: None when it has its own (built as it is)."""
    if (context / "Dockerfile").is_file():
        return None
    template = _TEMPLATES.get(kind)
    if template is None:
        raise NoRecipe(f"a {kind} site's source needs a Dockerfile (dialup has recipes for node, astro and next)")
    if not (context / "package.json").is_file():
        raise NoRecipe(f"a {kind} site's source needs a package.json (or a Dockerfile)")
    if kind is Kind.ASTRO:
        (context / ".dialup-serve.mjs").write_text(STATIC_SERVER)
    # The runtime image of a node app needs only its production dependencies; a build stage needs them all.
    deps = _DEPENDENCIES.format(omit="--omit=dev " if kind is Kind.NODE else "")
    return template.format(base=base, port=port, deps=deps)
