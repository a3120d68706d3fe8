// dialup's development runner, in a development container: the site's dev server over /app. Frameworks reload
// themselves (astro dev, next dev, a package's own `dev` script); a plain node app is started again when a
// file of the workspace changes. Folders are watched, not files: an editor's save renames a new file into
// place, and a watch on the old file would never fire again. A node process is kept started ahead, waiting
// before the app's first line (gate.cjs): a restart then costs the app's loading, not node's own start, which
// takes about a second at a development container's quarter of a core.
import { spawn } from "node:child_process";
import { existsSync, readFileSync, readdirSync, watch } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const root = process.env.DIALUP_APP ?? "/app", kind = process.argv[2], port = process.env.PORT;
const pkg = existsSync(join(root, "package.json")) ? JSON.parse(readFileSync(join(root, "package.json"), "utf8")) : {};
const bin = (name) => join(root, "node_modules", ".bin", name);
const SKIP = new Set(["node_modules", ".git"]);
const GATE = join(dirname(fileURLToPath(import.meta.url)), "gate.cjs");
// A standby starts once the app it will replace has had the CPU to load: a node started cold takes about a second
// at a quarter of a core; one let go from a standby, about a tenth.
const FIRST_STANDBY_AFTER_MS = 3000, STANDBY_AFTER_MS = 150;
let first = true;

function entry() {
  const start = /^node\s+(\S+)$/.exec(pkg.scripts?.start ?? "");
  if (start) return start[1];
  if (pkg.main) return pkg.main;
  return existsSync(join(root, "server.js")) ? "server.js" : "index.js";
}

let command, restarts = false;
if (kind === "astro") command = [bin("astro"), ["dev", "--host", "0.0.0.0", "--port", port]];
else if (kind === "next") command = [bin("next"), ["dev", "-H", "0.0.0.0", "-p", port]];
else if (pkg.scripts?.dev) command = ["npm", ["run", "dev"]];
else { command = [process.execPath, [entry()]]; restarts = true; }

let child = null, standby = null, again = false, stopping = false, standbyTimer = null;

function prepare() {
  standbyTimer = null;
  if (standby || stopping) return;
  const waiting = spawn(process.execPath, ["--require", GATE, ...command[1]], {
    cwd: root, stdio: ["inherit", "inherit", "inherit", "pipe"],
  });
  waiting.stdio[3].on("error", () => {});
  waiting.on("exit", () => { if (standby === waiting) standby = null; });
  standby = waiting;
}

function run() {
  if (standby) {
    child = standby;
    standby = null;
    child.removeAllListeners("exit");
    child.stdio[3].end("go");
  } else {
    child = spawn(command[0], command[1], { cwd: root, stdio: "inherit" });
  }
  child.on("exit", (code) => {
    child = null;
    if (stopping) process.exit(0);
    if (again) { again = false; run(); return; }
    // A dev server that exits ends the container (the activator sees a crash), except a plain app that is
    // started again: it waits for the next change, as its author fixes what made it fail.
    if (!restarts) process.exit(code ?? 1);
    console.error(`dialup: the app exited (${code}); it starts again at the next change`);
  });
  if (restarts && !standbyTimer) standbyTimer = setTimeout(prepare, first ? FIRST_STANDBY_AFTER_MS : STANDBY_AFTER_MS);
  first = false;
}

// SIGTERM, then SIGKILL if the app has not gone in a few seconds (one that ignores SIGTERM must not hold up
// the next start for ever).
const KILL_AFTER_MS = 3000;
function stop(app) {
  app.kill("SIGTERM");
  const kill = setTimeout(() => app.kill("SIGKILL"), KILL_AFTER_MS);
  app.once("exit", () => clearTimeout(kill));
}

let timer = null;
function changed() {
  clearTimeout(timer);
  timer = setTimeout(() => {
    watchAll();
    if (child) { again = true; stop(child); } else run();
  }, 20);  // one restart for a burst of changes (a save is a write and a rename)
}

const watched = new Map();
function watchAll(dir = root) {
  if (!watched.has(dir)) {
    let watcher;
    try { watcher = watch(dir, changed); } catch { return; }
    watcher.on("error", () => { watcher.close(); watched.delete(dir); });  // the folder went away
    watched.set(dir, watcher);
  }
  let items = [];
  try { items = readdirSync(dir, { withFileTypes: true }); } catch { return; }
  for (const item of items) {
    if (item.isDirectory() && !SKIP.has(item.name)) watchAll(join(dir, item.name));
  }
}

for (const signal of ["SIGTERM", "SIGINT"]) {
  process.on(signal, () => {
    stopping = true;
    if (standby) standby.kill("SIGKILL");
    if (child) child.kill(signal); else process.exit(0);
  });
}
if (restarts) watchAll();
run();
