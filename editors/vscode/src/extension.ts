// The VS Code client of pema: starts `pema lsp`, adds "PEMA: Rewrite Selection" (and its
// lighter, stronger and retry variants) with a streamed diff preview, a status-bar item kept up to
// date by the daemon's `pema/statusChanged`, and "Show What Was Learned". Pure logic lives in
// ./logic.ts (unit-tested).

import * as fs from "fs";
import * as net from "net";
import * as os from "os";
import * as path from "path";
import * as vscode from "vscode";
import {
  InitializeParams,
  LanguageClient,
  LanguageClientOptions,
  ProgressType,
  ResponseError,
  ServerOptions,
  State,
  StreamInfo,
  WorkDoneProgress,
  WorkDoneProgressCreateRequest,
} from "vscode-languageclient/node";
import {
  DaemonStatus,
  PartialRewrite,
  PartialText,
  ProgressState,
  RESTART_SETTINGS,
  REWRITE_METHOD,
  RewriteResult,
  STATUS_METHOD,
  Settings,
  WorkDoneValue,
  allReady,
  applyProgress,
  applyRewrite,
  buildRewriteParams,
  newPartialToken,
  resolveServerBinary,
  serverEnv,
  settingsToInitOptions,
  statusBarText,
  statusTooltip,
  CONFIG_FILE,
  FILES_METHOD,
  FilesResult,
  MINIMAL_CONFIG,
  formatFiles,
  EXAMPLES_METHOD,
  ExamplesResult,
  formatExamples,
  PRESETS,
  RewriteChoice,
  retryChoice,
  STATUS_CHANGED_NOTIFICATION,
  StatusChange,
  applyStatusChange,
  isForbiddenRoot,
  optedInRoots,
  rootOf,
  scopedSelector,
  parseAddress,
  readToken,
  changedLines,
  acceptLine,
  endOf,
  compareRequests,
  requestChoice,
} from "./logic";

const PREVIEW_SCHEME = "pema-preview";

let client: LanguageClient | undefined;
let output: vscode.OutputChannel;
let statusItem: vscode.StatusBarItem;
let extensionPath = "";
let lastStatus: DaemonStatus | undefined;
let clientError: string | undefined;
const progress = new Map<string, ProgressState>();
/** The opted-in folders (holding a `.pema.toml`) of this window: the only workspaces the daemon
 *  is told about, and the only documents synced to it. */
let roots: string[] = [];

/** A client that tells the daemon only the opted-in folders, not every folder of the window. */
class PemaClient extends LanguageClient {
  protected fillInitializeParams(params: InitializeParams): void {
    super.fillInitializeParams(params);
    params.workspaceFolders = roots.map((r) => ({ uri: vscode.Uri.file(r).toString(), name: path.basename(r) }));
    params.rootUri = null;
    params.rootPath = null;
  }
}

async function findRoots(): Promise<string[]> {
  const files = await vscode.workspace.findFiles(`**/${CONFIG_FILE}`, "**/node_modules/**");
  return optedInRoots(
    files.filter((u) => u.scheme === "file").map((u) => u.fsPath),
    os.homedir(),
  );
}

// ---------------------------------------------------------------------------------------------
// Trace for tests: with PEMA_VSCODE_TRACE set, events are appended to that file as JSON lines.

function trace(event: string, data: Record<string, unknown>): void {
  const file = process.env.PEMA_VSCODE_TRACE;
  if (!file) return;
  try {
    fs.appendFileSync(file, JSON.stringify({ event, time: Date.now(), ...data }) + "\n");
  } catch {
    // tracing never breaks the extension
  }
}

// ---------------------------------------------------------------------------------------------
// Settings and the client

function readSettings(): Settings & { languages: string[]; connectAddress: string; connectTokenFile: string } {
  const c = vscode.workspace.getConfiguration("pema");
  return {
    serverPath: c.get<string>("serverPath", ""),
    modelPath: c.get<string>("modelPath", ""),
    mode: c.get<string>("mode", "default"),
    lambdaMax: c.get<number | null>("lambdaMax", null),
    languages: c.get<string[]>("languages", ["markdown", "plaintext"]),
    logLevel: c.get<string>("logLevel", "warn"),
    connectAddress: c.get<string>("connect.address", ""),
    connectTokenFile: c.get<string>("connect.tokenFile", ""),
  };
}

/** The server of the client: `pema lsp` started as a child process, or (`pema.connect.address`)
 *  a connection to a running `pema serve` with its token. Undefined (and `clientError` set) when
 *  neither can be had. */
function serverOf(
  settings: ReturnType<typeof readSettings>,
): { server: ServerOptions; token?: string; what: string } | undefined {
  if (settings.connectAddress.trim()) {
    const target = parseAddress(settings.connectAddress);
    if ("error" in target) {
      clientError = target.error;
      return undefined;
    }
    const t = readToken(settings.connectTokenFile, process.env, os.homedir(), (p) => fs.readFileSync(p, "utf8"));
    if (t.error) {
      clientError = t.error;
      return undefined;
    }
    const where = "path" in target ? `unix:${target.path}` : `${target.host}:${target.port}`;
    const server = (): Promise<StreamInfo> =>
      new Promise((resolve, reject) => {
        const sock = "path" in target ? net.connect(target.path) : net.connect(target.port, target.host);
        sock.once("connect", () => resolve({ reader: sock, writer: sock }));
        sock.once("error", (e) => reject(new Error(`pema: cannot connect to the daemon at ${where} (is \`pema serve --listen ${where}\` running?): ${e.message}`)));
      });
    return { server, token: t.token, what: `the daemon at ${where}${t.token ? ` (token from ${t.file})` : " (no token)"}` };
  }
  const resolved = resolveServerBinary({
    serverPath: settings.serverPath,
    extensionPath,
    pathEnv: process.env.PATH,
    homeDir: os.homedir(),
    isExecutable,
  });
  if (!resolved.ok) {
    clientError = resolved.message;
    output.appendLine(`tried: ${resolved.tried.join(", ") || "(nothing)"}`);
    trace("server-missing", { message: resolved.message });
    void vscode.window.showErrorMessage(resolved.message, "Open Settings").then((choice) => {
      if (choice === "Open Settings") {
        void vscode.commands.executeCommand("workbench.action.openSettings", "pema.serverPath");
      }
    });
    return undefined;
  }
  return {
    server: {
      command: resolved.path,
      args: ["lsp"],
      // no `transport`: with TransportKind.stdio the client appends `--stdio`, which `pema lsp` refuses
      options: { env: serverEnv(settings, process.env, os.homedir()) },
    },
    what: `${resolved.path} lsp (found via ${resolved.source})`,
  };
}

function isExecutable(p: string): boolean {
  try {
    const st = fs.statSync(p);
    if (!st.isFile()) return false;
    if (process.platform !== "win32") fs.accessSync(p, fs.constants.X_OK);
    return true;
  } catch {
    return false;
  }
}

async function startClient(): Promise<void> {
  const settings = readSettings();
  roots = vscode.workspace.isTrusted ? await findRoots() : [];
  trace("roots", { roots });
  if (roots.length === 0) {
    // Nothing opted in: no daemon, nothing read.
    clientError = "pema: no folder of this window is learned (PEMA: Learn This Folder's Style)";
    output.appendLine(clientError);
    updateStatusBar();
    return;
  }
  const chosen = serverOf(settings);
  if (!chosen) {
    output.appendLine(clientError ?? "pema: no server");
    trace("start-failed", { message: clientError });
    updateStatusBar();
    return;
  }
  output.appendLine(`starting ${chosen.what}`);
  const clientOptions: LanguageClientOptions = {
    documentSelector: scopedSelector(settings.languages, roots),
    initializationOptions: { ...settingsToInitOptions(settings), ...(chosen.token ? { token: chosen.token } : {}) },
    outputChannelName: "pema server",
    // Folders of the window are not workspaces unless opted in (roots change on restart).
    middleware: { workspace: { didChangeWorkspaceFolders: async () => undefined } },
  };
  const c = new PemaClient("pema", "pema", chosen.server, clientOptions);
  client = c;
  clientError = undefined;
  c.onDidChangeState((e) => {
    if (e.newState === State.Stopped && client === c) {
      clientError = "the pema daemon stopped";
      updateStatusBar();
    }
  });
  // The daemon pushes each workspace's status when it changes (and once when the workspace
  // opens): no polling. Registered before start, so that the first ones are not missed.
  c.onNotification(STATUS_CHANGED_NOTIFICATION, (change: StatusChange) => {
    if (client !== c) return;
    lastStatus = applyStatusChange(lastStatus, change);
    trace("status-changed", { change });
    updateStatusBar();
  });
  try {
    await c.start();
  } catch (e) {
    clientError = `pema: could not start ${chosen.what}: ${errorMessage(e)}`;
    output.appendLine(clientError);
    trace("start-failed", { message: clientError });
    if (client === c) {
      client = undefined;
      // A refused connection (wrong token) is not retried: stop the client's restarts.
      void c.stop(2000).catch(() => undefined);
    }
    void vscode.window.showErrorMessage(clientError);
    updateStatusBar();
    return;
  }
  trace("started", { server: chosen.what });
  // Track pema's work-done progress for the status bar. This replaces the client's default
  // handler (a notification per token): background work shows in the status bar instead.
  c.onRequest(WorkDoneProgressCreateRequest.type, (params) => {
    const token = String(params.token);
    const sub = c.onProgress(WorkDoneProgress.type, params.token, (value) => {
      const next = applyProgress(progress.get(token), token, value as WorkDoneValue);
      if (next) {
        progress.set(token, next);
        trace("progress", { token, value });
      }
      if (value.kind === "end") {
        sub.dispose();
        progress.delete(token);
      }
      updateStatusBar();
    });
    return null;
  });
  // The whole status once (model, files, …); changes arrive as pema/statusChanged.
  const first = await requestStatus();
  trace("first-status", { server: chosen.what, model: first?.model, workspaces: first?.workspaces?.map((w) => w.root) });
}

async function stopClient(): Promise<void> {
  progress.clear();
  lastStatus = undefined;
  const c = client;
  client = undefined;
  if (c) {
    try {
      await c.stop(5000);
    } catch {
      // already gone
    }
  }
}

function errorMessage(e: unknown): string {
  if (e instanceof Error) return e.message;
  return String(e);
}

// ---------------------------------------------------------------------------------------------
// Status bar

function activeFsPath(): string | undefined {
  const doc = vscode.window.activeTextEditor?.document;
  return doc && doc.uri.scheme === "file" ? doc.uri.fsPath : undefined;
}

function updateStatusBar(): void {
  if (!statusItem) return;
  const running = [...progress.values()];
  if (clientError) {
    statusItem.text = "$(error) pema: not running";
    statusItem.tooltip = clientError;
    statusItem.backgroundColor = new vscode.ThemeColor("statusBarItem.errorBackground");
  } else {
    const text = statusBarText(lastStatus, running, activeFsPath());
    const busy = running.some((p) => !p.done) || !allReady(lastStatus);
    statusItem.text = `${busy ? "$(sync~spin)" : "$(pencil)"} ${text}`;
    statusItem.tooltip = statusTooltip(lastStatus, running, activeFsPath());
    statusItem.backgroundColor = undefined;
  }
  statusItem.show();
}

async function requestStatus(): Promise<DaemonStatus | undefined> {
  const c = client;
  if (!c || c.state !== State.Running) return undefined;
  try {
    const status = (await c.sendRequest(STATUS_METHOD, {})) as DaemonStatus;
    if (client === c) {
      const before = allReady(lastStatus);
      lastStatus = status;
      if (allReady(status) !== before) trace("status", { status });
      updateStatusBar();
    }
    return status;
  } catch (e) {
    output.appendLine(`pema/status failed: ${errorMessage(e)}`);
    return undefined;
  }
}

async function showStatus(): Promise<void> {
  output.show(true);
  if (!client) {
    output.appendLine(clientError ?? "pema: the daemon is not running");
    return;
  }
  const status = await requestStatus();
  output.appendLine(`--- pema/status at ${new Date().toISOString()}`);
  output.appendLine(status ? JSON.stringify(status, null, 2) : "(no answer)");
}

// ---------------------------------------------------------------------------------------------
// Preview documents

class PreviewProvider implements vscode.TextDocumentContentProvider {
  private readonly contents = new Map<string, string>();
  private readonly emitter = new vscode.EventEmitter<vscode.Uri>();
  readonly onDidChange = this.emitter.event;

  set(uri: vscode.Uri, text: string): void {
    this.contents.set(uri.toString(), text);
    this.emitter.fire(uri);
  }
  delete(uri: vscode.Uri): void {
    this.contents.delete(uri.toString());
  }
  provideTextDocumentContent(uri: vscode.Uri): string {
    return this.contents.get(uri.toString()) ?? "";
  }
}

const preview = new PreviewProvider();
const LEARNED_SCHEME = "pema-learned";
const learnedPages = new PreviewProvider();

// The one rewrite in flight or in preview (a new one replaces it).
interface PendingRewrite {
  id: number;
  docUri: vscode.Uri;
  range: vscode.Range;
  originalText: string;
  docText: string;
  docVersion: number;
  leftUri: vscode.Uri;
  rightUri: vscode.Uri;
  cts: vscode.CancellationTokenSource;
  choice: RewriteChoice;
  result?: RewriteResult;
  finished: boolean;
}

let pending: PendingRewrite | undefined;
/** The last rewrite asked for, for "Retry Rewrite" after its preview was closed. */
let lastRewrite: { docUri: vscode.Uri; range: vscode.Range; originalText: string; choice: RewriteChoice } | undefined;
let pendingCounter = 0;

function setPending(on: boolean): void {
  void vscode.commands.executeCommand("setContext", "pema.rewritePending", on);
}

async function closePreview(s: PendingRewrite): Promise<void> {
  const tabs: vscode.Tab[] = [];
  for (const group of vscode.window.tabGroups.all) {
    for (const tab of group.tabs) {
      const input = tab.input;
      if (input instanceof vscode.TabInputTextDiff && input.modified.toString() === s.rightUri.toString()) {
        tabs.push(tab);
      }
    }
  }
  if (tabs.length) await vscode.window.tabGroups.close(tabs);
  preview.delete(s.leftUri);
  preview.delete(s.rightUri);
}

async function endPending(s: PendingRewrite, cancel: boolean): Promise<void> {
  if (cancel) s.cts.cancel();
  s.cts.dispose();
  s.finished = true;
  if (pending === s) {
    pending = undefined;
    setPending(false);
  }
  await closePreview(s);
}

/** Rewrites the selection: with the settings' mode, or a strength preset's mode and options. */
async function rewriteSelection(choice?: RewriteChoice): Promise<void> {
  const editor = vscode.window.activeTextEditor;
  if (!editor || editor.document.uri.scheme === PREVIEW_SCHEME) {
    void vscode.window.showWarningMessage("pema: open a document and select the text to rewrite.");
    return;
  }
  if (editor.selection.isEmpty) {
    void vscode.window.showWarningMessage("pema: select the text to rewrite first.");
    return;
  }
  if (editor.document.uri.scheme !== "file" || !rootOf(editor.document.uri.fsPath, roots)) {
    const learn = "Learn This Folder's Style";
    const choice = await vscode.window.showErrorMessage(
      "pema: this file is not in a folder pema learns (a folder with a .pema.toml).",
      learn,
    );
    if (choice === learn) await learnFolder();
    return;
  }
  await rewriteRange(editor.document, new vscode.Range(editor.selection.start, editor.selection.end), choice ?? {});
}

/** "Retry Rewrite": another sample (sampling, a new seed) of the rewrite in preview, else of the
 *  last one while its text is unchanged, else of the selection. */
async function retryRewrite(): Promise<void> {
  const seed = Math.floor(Math.random() * 2 ** 31);
  const base = pending ?? lastRewrite;
  if (base) {
    const doc = await vscode.workspace.openTextDocument(base.docUri);
    if (doc.getText(base.range) === base.originalText) {
      await rewriteRange(doc, base.range, retryChoice(base.choice, seed));
      return;
    }
  }
  const editor = vscode.window.activeTextEditor;
  if (editor && !editor.selection.isEmpty && editor.document.uri.scheme !== PREVIEW_SCHEME) {
    await rewriteSelection(retryChoice(undefined, seed));
    return;
  }
  void vscode.window.showWarningMessage("pema: nothing to retry: rewrite a selection first.");
}

async function rewriteRange(doc: vscode.TextDocument, range: vscode.Range, how: RewriteChoice): Promise<void> {
  const c = client;
  if (!c || c.state !== State.Running) {
    void vscode.window.showErrorMessage(clientError ?? "pema: the daemon is not running (PEMA: Restart Server).");
    return;
  }
  // A new request cancels the previous one.
  if (pending) await endPending(pending, true);

  const id = ++pendingCounter;
  const base = path.basename(doc.uri.path) || "untitled";
  const s: PendingRewrite = {
    id,
    docUri: doc.uri,
    range,
    originalText: doc.getText(range),
    docText: doc.getText(),
    docVersion: doc.version,
    leftUri: vscode.Uri.from({ scheme: PREVIEW_SCHEME, path: `/${id}/original/${base}` }),
    rightUri: vscode.Uri.from({ scheme: PREVIEW_SCHEME, path: `/${id}/rewrite/${base}` }),
    cts: new vscode.CancellationTokenSource(),
    choice: how,
    finished: false,
  };
  pending = s;
  lastRewrite = { docUri: s.docUri, range, originalText: s.originalText, choice: how };
  const lspRange = c.code2ProtocolConverter.asRange(range);
  const settings = readSettings();
  const synced = vscode.languages.match(scopedSelector(settings.languages, roots), doc) > 0;
  const token = newPartialToken();
  const params = buildRewriteParams({
    uri: c.code2ProtocolConverter.asUri(doc.uri),
    range: lspRange,
    selectedText: s.originalText,
    synced,
    fsPath: doc.uri.scheme === "file" ? doc.uri.fsPath : undefined,
    ...requestChoice(settings, how),
    partialResultToken: token,
  });
  trace("rewrite-request", { id, params, originalText: s.originalText });

  preview.set(s.leftUri, s.docText);
  preview.set(s.rightUri, s.docText);
  await vscode.commands.executeCommand(
    "vscode.diff",
    s.leftUri,
    s.rightUri,
    `${base}: selection ↔ pema rewrite`,
    { preview: true, preserveFocus: false, selection: range },
  );

  const partial = new PartialText();
  const sub = c.onProgress(new ProgressType<PartialRewrite>(), token, (value) => {
    if (s.finished) return;
    const text = partial.push(value);
    preview.set(s.rightUri, applyRewrite(s.docText, lspRange, text));
  });
  let result: RewriteResult;
  try {
    result = (await vscode.window.withProgress(
      { location: vscode.ProgressLocation.Window, title: "pema: rewriting" },
      () => c.sendRequest(REWRITE_METHOD, params, s.cts.token),
    )) as RewriteResult;
  } catch (e) {
    sub.dispose();
    const cancelled = s.cts.token.isCancellationRequested || (e instanceof ResponseError && e.code === -32800);
    trace("rewrite-error", { id, cancelled, message: errorMessage(e) });
    if (!s.finished) await endPending(s, false);
    if (!cancelled) void vscode.window.showErrorMessage(`pema: ${errorMessage(e)}`);
    return;
  }
  sub.dispose();
  if (s.finished) return; // discarded or replaced meanwhile
  s.result = result;
  preview.set(s.rightUri, applyRewrite(s.docText, lspRange, result.text));
  trace("rewrite-result", { id, result, partialUpdates: partial.updates, partialText: partial.text });
  output.appendLine(
    `rewrite (${result.mode}, ${result.tokens} tokens, ${result.seconds ?? "?"} s): ${JSON.stringify(s.originalText)} → ${JSON.stringify(result.text)}`,
  );
  setPending(true);
  const choice = await vscode.window.showInformationMessage(
    `pema: rewrite ready (${result.tokens} tokens). Accept it?`,
    "Accept",
    "Discard",
  );
  if (pending !== s || s.finished) return;
  if (choice === "Accept") await acceptRewrite();
  else if (choice === "Discard") await discardRewrite();
  // dismissed: the preview stays, with Accept/Discard in its title bar and the palette
}

async function acceptRewrite(): Promise<void> {
  const s = pending;
  if (!s || !s.result) {
    void vscode.window.showWarningMessage("pema: no rewrite is waiting.");
    return;
  }
  const doc = await vscode.workspace.openTextDocument(s.docUri);
  if (doc.version !== s.docVersion && doc.getText(s.range) !== s.originalText) {
    void vscode.window.showErrorMessage("pema: the document changed since the rewrite; rewrite the selection again.");
    await endPending(s, false);
    return;
  }
  const edit = new vscode.WorkspaceEdit();
  edit.replace(s.docUri, s.range, s.result.text);
  const applied = await vscode.workspace.applyEdit(edit);
  const newText = s.result.text;
  await endPending(s, false);
  trace("accepted", { id: s.id, applied, documentText: doc.getText() });
  if (!applied) {
    void vscode.window.showErrorMessage("pema: the edit could not be applied.");
    return;
  }
  const editor = await vscode.window.showTextDocument(doc, { preserveFocus: false });
  const lines = newText.split("\n");
  const end =
    lines.length === 1
      ? s.range.start.translate(0, newText.length)
      : new vscode.Position(s.range.start.line + lines.length - 1, lines[lines.length - 1].length);
  editor.selection = new vscode.Selection(s.range.start, end);
}

/** "Accept Line of Rewrite": one hunk (line) of the finished rewrite replaces the same line of
 *  the selection; the other lines stay as they are, and the preview stays open for them. The
 *  line is the one under the cursor in the preview or the document, else picked from a list. */
async function acceptHunk(): Promise<void> {
  const s = pending;
  if (!s || !s.result) {
    void vscode.window.showWarningMessage("pema: no rewrite is waiting.");
    return;
  }
  const rewrite = s.result.text;
  const lines = changedLines(s.originalText, rewrite);
  if (!lines) {
    void vscode.window.showWarningMessage("pema: this rewrite has another number of lines than the selection: accept it whole.");
    return;
  }
  if (!lines.length) {
    await acceptRewrite();
    return;
  }
  let n: number | undefined;
  const editor = vscode.window.activeTextEditor;
  const here = editor?.document.uri.toString();
  if (editor && (here === s.rightUri.toString() || here === s.docUri.toString())) {
    const k = editor.selection.active.line - s.range.start.line;
    if (lines.includes(k)) n = k;
  }
  if (n === undefined) {
    if (lines.length === 1) n = lines[0];
    else {
      const shown = rewrite.split(/\r?\n/);
      const pick = await vscode.window.showQuickPick(
        lines.map((k) => ({ label: `line ${s.range.start.line + k + 1}`, description: shown[k], k })),
        { placeHolder: "Which line of the rewrite should replace its line?" },
      );
      if (!pick) return;
      n = pick.k;
    }
  }
  const doc = await vscode.workspace.openTextDocument(s.docUri);
  if (doc.getText(s.range) !== s.originalText) {
    void vscode.window.showErrorMessage("pema: the document changed since the rewrite; rewrite the selection again.");
    await endPending(s, false);
    return;
  }
  const next = acceptLine(s.originalText, rewrite, n);
  const edit = new vscode.WorkspaceEdit();
  edit.replace(s.docUri, s.range, next);
  if (!(await vscode.workspace.applyEdit(edit))) {
    void vscode.window.showErrorMessage("pema: the edit could not be applied.");
    return;
  }
  // The selection now holds the accepted line: the preview's left side follows it.
  const end = endOf({ line: s.range.start.line, character: s.range.start.character }, next);
  s.range = new vscode.Range(s.range.start, new vscode.Position(end.line, end.character));
  s.originalText = next;
  s.docText = doc.getText();
  s.docVersion = doc.version;
  if (pending === s) lastRewrite = { docUri: s.docUri, range: s.range, originalText: next, choice: s.choice };
  trace("accepted-line", { id: s.id, line: n, documentText: s.docText });
  if (next === rewrite) {
    await endPending(s, false);
    await vscode.window.showTextDocument(doc, { preserveFocus: false });
    return;
  }
  preview.set(s.leftUri, s.docText);
}

async function discardRewrite(): Promise<void> {
  const s = pending;
  if (!s) return;
  trace("discarded", { id: s.id });
  await endPending(s, true);
  await vscode.window.showTextDocument(s.docUri, { preserveFocus: false });
}

/** "Compare With the Plain Model": the selection rewritten by the model alone and with the
 *  workspace's style (the settings' mode), side by side in a diff, as `pema rewrite --compare`. */
async function compareSelection(): Promise<void> {
  const c = client;
  const editor = vscode.window.activeTextEditor;
  if (!c || c.state !== State.Running) {
    void vscode.window.showErrorMessage(clientError ?? "pema: the daemon is not running (PEMA: Restart Server).");
    return;
  }
  if (!editor || editor.selection.isEmpty || editor.document.uri.scheme !== "file" || !rootOf(editor.document.uri.fsPath, roots)) {
    void vscode.window.showWarningMessage("pema: select text in a file of a folder pema learns, then compare.");
    return;
  }
  const doc = editor.document;
  const range = new vscode.Range(editor.selection.start, editor.selection.end);
  const selected = doc.getText(range);
  const settings = readSettings();
  const style = requestChoice(settings, {});
  const synced = vscode.languages.match(scopedSelector(settings.languages, roots), doc) > 0;
  const texts: string[] = [];
  const runs = compareRequests(style.mode);
  const done = await vscode.window.withProgress(
    { location: vscode.ProgressLocation.Notification, title: "pema: comparing", cancellable: true },
    async (report, cancel) => {
      for (const run of runs) {
        report.report({ message: run.label });
        const params = buildRewriteParams({
          uri: c.code2ProtocolConverter.asUri(doc.uri),
          range: c.code2ProtocolConverter.asRange(range),
          selectedText: selected,
          synced,
          fsPath: doc.uri.fsPath,
          mode: run.mode,
          options: run.mode === "plain" ? undefined : style.options,
        });
        try {
          const r = (await c.sendRequest(REWRITE_METHOD, params, cancel)) as RewriteResult;
          texts.push(r.text);
        } catch (e) {
          if (!cancel.isCancellationRequested) void vscode.window.showErrorMessage(`pema: compare: ${errorMessage(e)}`);
          return false;
        }
      }
      return true;
    },
  );
  if (!done) return;
  const id = ++pendingCounter;
  const base = path.basename(doc.uri.path);
  const left = vscode.Uri.from({ scheme: PREVIEW_SCHEME, path: `/${id}/${runs[0].label}/${base}` });
  const right = vscode.Uri.from({ scheme: PREVIEW_SCHEME, path: `/${id}/${runs[1].label}/${base}` });
  preview.set(left, texts[0]);
  preview.set(right, texts[1]);
  await vscode.commands.executeCommand("vscode.diff", left, right, `${base}: ${runs[0].label} ↔ ${runs[1].label}`, { preview: true });
  output.appendLine(`compare: ${JSON.stringify(selected)}\n  ${runs[0].label}: ${JSON.stringify(texts[0])}\n  ${runs[1].label}: ${JSON.stringify(texts[1])}`);
  trace("compare", { source: selected, plain: texts[0], pema: texts[1] });
}

// ---------------------------------------------------------------------------------------------
// Opt-in and the files learned from

/** "Learn this folder's style": asks, writes a minimal `.pema.toml`, restarts the client. */
async function learnFolder(uri?: vscode.Uri): Promise<void> {
  let dir = uri?.scheme === "file" ? uri.fsPath : undefined;
  if (!dir) {
    const doc = vscode.window.activeTextEditor?.document;
    const wf = doc ? vscode.workspace.getWorkspaceFolder(doc.uri) : undefined;
    dir = wf?.uri.fsPath;
    if (!dir && doc?.uri.scheme === "file") dir = path.dirname(doc.uri.fsPath);
  }
  if (!dir) {
    const pick = await vscode.window.showWorkspaceFolderPick({ placeHolder: "Which folder's style should pema learn?" });
    dir = pick?.uri.fsPath;
  }
  if (!dir) return;
  if (isForbiddenRoot(dir, os.homedir())) {
    void vscode.window.showErrorMessage(`pema: ${dir} cannot be a workspace: learn the folder of your documents, not your whole home folder or /.`);
    return;
  }
  const file = path.join(dir, CONFIG_FILE);
  if (!fs.existsSync(file)) {
    const choice = await vscode.window.showInformationMessage(
      `Learn the writing style of ${dir}?`,
      {
        modal: true,
        detail: `pema writes a minimal ${CONFIG_FILE} there, then reads the prose files under it (PEMA: Show Files Learned From lists them).`,
      },
      "Learn",
    );
    if (choice !== "Learn") {
      trace("learn-declined", { dir });
      return;
    }
    const tmp = `${file}.tmp${process.pid}`;
    try {
      fs.writeFileSync(tmp, MINIMAL_CONFIG, { flag: "wx" });
      fs.renameSync(tmp, file);
    } catch (e) {
      try {
        fs.unlinkSync(tmp);
      } catch {
        // nothing to remove
      }
      void vscode.window.showErrorMessage(`pema: cannot write ${file}: ${errorMessage(e)}`);
      return;
    }
    trace("learn", { dir });
  }
  await stopClient();
  await startClient();
}

/** The files the current workspace learns from, and why every other file is skipped. */
async function showFiles(): Promise<void> {
  const c = client;
  if (!c || c.state !== State.Running) {
    void vscode.window.showErrorMessage(clientError ?? "pema: the daemon is not running.");
    return;
  }
  const root = rootOf(activeFsPath(), roots) ?? roots[0];
  try {
    const r = (await c.sendRequest(FILES_METHOD, { workspace: root })) as FilesResult;
    output.appendLine("");
    for (const l of formatFiles(r)) output.appendLine(l);
    output.show(true);
    trace("files", { root, learned: r.learned.length, skipped: r.skipped.length });
  } catch (e) {
    void vscode.window.showErrorMessage(`pema: files: ${errorMessage(e)}`);
  }
}

/** "Show What Was Learned": a few pairs the workspace's memory learns from, as a Markdown page. */
async function showExamples(): Promise<void> {
  const c = client;
  if (!c || c.state !== State.Running) {
    void vscode.window.showErrorMessage(clientError ?? "pema: the daemon is not running.");
    return;
  }
  const root = rootOf(activeFsPath(), roots) ?? roots[0];
  try {
    const r = (await c.sendRequest(EXAMPLES_METHOD, { workspace: root, limit: 10 })) as ExamplesResult;
    const uri = vscode.Uri.from({ scheme: LEARNED_SCHEME, path: `/${path.basename(root)} - what pema learned.md` });
    learnedPages.set(uri, formatExamples(root, r));
    const doc = await vscode.workspace.openTextDocument(uri);
    await vscode.window.showTextDocument(doc, { preview: true });
    trace("examples", { root, count: r.examples.length, pseudo: r.examples.filter((e) => e.pseudo).length });
  } catch (e) {
    void vscode.window.showErrorMessage(`pema: examples: ${errorMessage(e)}`);
  }
}

// ---------------------------------------------------------------------------------------------

export async function activate(context: vscode.ExtensionContext): Promise<void> {
  extensionPath = context.extensionPath;
  output = vscode.window.createOutputChannel("pema");
  statusItem = vscode.window.createStatusBarItem("pema.status", vscode.StatusBarAlignment.Right, 100);
  statusItem.name = "pema";
  statusItem.command = "pema.showStatus";
  statusItem.text = "$(sync~spin) pema: starting…";
  statusItem.show();
  context.subscriptions.push(
    output,
    statusItem,
    vscode.workspace.registerTextDocumentContentProvider(PREVIEW_SCHEME, preview),
    vscode.workspace.registerTextDocumentContentProvider(LEARNED_SCHEME, learnedPages),
    vscode.commands.registerCommand("pema.rewriteSelection", () => rewriteSelection()),
    vscode.commands.registerCommand("pema.rewriteLighter", () => rewriteSelection(PRESETS.lighter)),
    vscode.commands.registerCommand("pema.rewriteStronger", () => rewriteSelection(PRESETS.stronger)),
    vscode.commands.registerCommand("pema.retryRewrite", retryRewrite),
    vscode.commands.registerCommand("pema.showExamples", showExamples),
    vscode.commands.registerCommand("pema.acceptRewrite", acceptRewrite),
    vscode.commands.registerCommand("pema.acceptHunk", acceptHunk),
    vscode.commands.registerCommand("pema.compare", compareSelection),
    vscode.commands.registerCommand("pema.discardRewrite", discardRewrite),
    vscode.commands.registerCommand("pema.showStatus", showStatus),
    vscode.commands.registerCommand("pema.learnFolder", learnFolder),
    vscode.commands.registerCommand("pema.showFiles", showFiles),
    vscode.commands.registerCommand("pema.restartServer", async () => {
      await stopClient();
      await startClient();
    }),
    vscode.window.onDidChangeActiveTextEditor(() => updateStatusBar()),
    vscode.workspace.onDidChangeConfiguration(async (e) => {
      if (RESTART_SETTINGS.some((k) => e.affectsConfiguration(k))) {
        output.appendLine("settings changed: restarting the daemon");
        await stopClient();
        await startClient();
      }
    }),
    { dispose: () => void stopClient() },
  );
  setPending(false);
  await startClient();
}

export async function deactivate(): Promise<void> {
  if (pending) await endPending(pending, true);
  await stopClient();
}
