// The editor's page: a file tree, CodeMirror 6, the save state always in sight, a conflict view, the preview
// and the deploy button. It talks the sync protocol (activator/editor/protocol.py) over one WebSocket.
import {Annotation, Compartment} from "@codemirror/state";
import {EditorView, basicSetup} from "codemirror";
import {css} from "@codemirror/lang-css";
import {html} from "@codemirror/lang-html";
import {javascript} from "@codemirror/lang-javascript";
import {json} from "@codemirror/lang-json";
import {markdown} from "@codemirror/lang-markdown";

const {site, preview, previewKind} = document.body.dataset; // set by the server (no inline script: a strict CSP)
const LANGUAGES = {html, htm: html, css, js: javascript, mjs: javascript, ts: () => javascript({typescript: true}),
  jsx: () => javascript({jsx: true}), json, md: markdown};
const SAVE_AFTER_MS = 300; // a pause in typing this long saves the file
// The preview reloads this long after a change: at once for files served as they are; a development container's
// server first notices the change and starts again (a framework's own hot reload does better, where there is one).
const PREVIEW_AFTER_MS = previewKind === "dev" ? 500 : 30;

const $ = (id) => document.getElementById(id);
let socket = null, nextId = 1, waiting = new Map(), retry = 250;
let file = null;        // {path, hash}: the open file and the version the editor shows
let pending = null;     // the save not yet acknowledged: resent after a reconnect
let timer = null;

function state(text, kind) {
  $("state").textContent = text;
  $("state").dataset.kind = kind; // saved | saving | offline | conflict | error
}

function request(message) {
  return new Promise((resolve) => {
    const id = nextId++;
    waiting.set(id, resolve);
    socket.send(JSON.stringify({...message, id}));
  });
}

function connect() {
  socket = new WebSocket(`${location.protocol === "https:" ? "wss" : "ws"}://${location.host}/sites/${site}/ws`);
  socket.onopen = async () => {
    retry = 250;
    await listTree();
    if (pending) await save(pending.content); // a save the connection lost: sent again
    else state(file ? "saved" : "connected", "saved");
  };
  socket.onmessage = (event) => {
    const message = JSON.parse(event.data);
    if (message.op === "changed") return changed(message.path);
    const resolve = waiting.get(message.id);
    waiting.delete(message.id);
    if (resolve) resolve(message);
  };
  socket.onclose = () => {
    state("offline: reconnecting", "offline");
    for (const resolve of waiting.values()) resolve({ok: false, error: "offline"});
    waiting.clear();
    setTimeout(connect, retry);
    retry = Math.min(retry * 2, 5000);
  };
}

async function listTree() {
  const answer = await request({op: "list"});
  if (!answer.ok) return state(answer.error, "error");
  const tree = $("tree");
  tree.replaceChildren();
  for (const entry of answer.entries) {
    const item = document.createElement("li");
    item.textContent = entry.path + (entry.kind === "dir" ? "/" : entry.kind === "link" ? " →" : "");
    item.style.paddingLeft = `${(entry.path.split("/").length - 1) * 12}px`;
    if (entry.kind === "file") item.onclick = () => open(entry.path);
    else item.className = "dim";
    if (file && entry.path === file.path) item.className = "open";
    tree.append(item);
  }
}

const loaded = Annotation.define(); // a file put in the editor: not an edit to save
const language = new Compartment();
const view = new EditorView({parent: $("code"), extensions: [basicSetup, language.of([]), EditorView.updateListener.of((update) => {
  if (!update.docChanged || !file || update.transactions.some((t) => t.annotation(loaded))) return;
  state("unsaved", "saving");
  clearTimeout(timer);
  timer = setTimeout(() => save(view.state.doc.toString()), SAVE_AFTER_MS);
})]});

function show(content, path) {
  const mode = LANGUAGES[path.split(".").pop()];
  view.dispatch({
    changes: {from: 0, to: view.state.doc.length, insert: content},
    effects: language.reconfigure(mode ? mode() : []),
    annotations: loaded.of(true),
  });
  $("path").textContent = path;
}

async function open(path) {
  const answer = await request({op: "open", path});
  if (!answer.ok) return state(answer.error, "error");
  file = {path, hash: answer.hash};
  pending = null;
  show(answer.content, path);
  state("saved", "saved");
  listTree();
}

async function save(content) {
  if (!file) return;
  pending = {content};
  state("saving", "saving");
  const answer = await request({op: "write", path: file.path, content, base: file.hash});
  if (answer.ok) {
    file.hash = answer.hash;
    if (pending && pending.content === content) pending = null;
    state("saved", "saved");
    refreshPreview();
  } else if (answer.conflict) {
    conflict(content, answer);
  } else if (answer.error !== "offline") {
    state(answer.error, "error");
  }
}

function conflict(mine, answer) {
  state("conflict: changed elsewhere", "conflict");
  $("mine").textContent = mine;
  $("theirs").textContent = answer.current ?? "(deleted)";
  $("conflict").hidden = false;
  $("keep-mine").onclick = () => { file.hash = answer.current_hash; $("conflict").hidden = true; save(mine); };
  $("take-theirs").onclick = () => { $("conflict").hidden = true; pending = null; open(file.path); };
}

async function changed(path) {
  refreshPreview();
  if (!file || path !== file.path) return scheduleTree();
  if (pending || $("state").dataset.kind !== "saved") return;
  const before = view.state.doc.toString();
  const answer = await request({op: "open", path});
  if (!answer.ok || answer.hash === file.hash) return; // this tab's own save, seen by the watcher
  // Changed by another tab or a tool: shown, unless the user typed meanwhile (their save meets the conflict).
  if (pending || file.path !== path || view.state.doc.toString() !== before) return;
  file.hash = answer.hash;
  show(answer.content, path);
}

let treeTimer = null;
function scheduleTree() {
  clearTimeout(treeTimer); // one listing for a burst of changes (a dev server writes many files at once)
  treeTimer = setTimeout(listTree, 200);
}

let previewTimer = null;
function refreshPreview() {
  clearTimeout(previewTimer); // one reload for a burst of changes
  previewTimer = setTimeout(() => {
    const frame = $("preview");
    if (frame.src) frame.src = frame.src;
  }, PREVIEW_AFTER_MS);
}

async function deploy() {
  $("deploy").disabled = true;
  $("progress").textContent = "";
  const response = await fetch(`/sites/${site}/deploy`, {method: "POST"});
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  let buffer = "", unchanged = false;
  for (;;) {
    const {done, value} = await reader.read();
    if (done) break;
    buffer += decoder.decode(value, {stream: true});
    const lines = buffer.split("\n");
    buffer = lines.pop();
    for (const line of lines.filter(Boolean)) {
      const event = JSON.parse(line);
      if (event.step === "unchanged") unchanged = true; // the workspace is the live release already
      $("progress").textContent = event.step === "result"
        ? (event.ok ? `live: ${event.release}${unchanged ? " (unchanged)" : ""}` : `failed: ${event.reason}`)
        : `${event.step}${event.elapsed !== undefined ? ` (${event.elapsed.toFixed(1)} s)` : ""}`;
    }
  }
  $("deploy").disabled = false;
}

$("deploy").onclick = deploy;
$("preview").src = preview;
state("connecting", "offline");
connect();
