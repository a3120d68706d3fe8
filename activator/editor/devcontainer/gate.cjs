// Preloaded (--require) by the runner's standby process: node has started, and waits here, before the app's
// first line, until the runner lets it go (a byte on fd 3). The runner gone first (end of file): it never loads.
const { readSync } = require("node:fs");
const byte = Buffer.alloc(1);
for (;;) {
  try {
    if (readSync(3, byte, 0, 1, null) === 0) process.exit(0);
    break;
  } catch (error) {
    if (error.code !== "EAGAIN") process.exit(0);
    Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 10);
  }
}
