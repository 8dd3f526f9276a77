// Pure logic of the pema extension: no `vscode` import here, so that unit tests and the
// daemon test (test/daemon.test.ts) run it under plain Node.

import * as path from "path";
import { TextDocument } from "vscode-languageserver-textdocument";

// ---------------------------------------------------------------------------------------------
// Finding the binary

export interface BinaryCandidate {
  path: string;
  source: "setting" | "bundled" | "PATH";
}

export interface ResolveEnv {
  /** `pema.serverPath` (may be empty). */
  serverPath?: string;
  /** The extension's install folder. */
  extensionPath?: string;
  /** `process.env.PATH`. */
  pathEnv?: string;
  platform?: NodeJS.Platform;
  /** Whether a file exists and is executable (injected so tests need no files). */
  isExecutable: (p: string) => boolean;
  /** Expands `~` at the start of the setting. */
  homeDir?: string;
}

export type ResolveResult =
  | { ok: true; path: string; source: BinaryCandidate["source"] }
  | { ok: false; message: string; tried: string[] };

export const INSTALL_HINT =
  "Install pema (from the pema repository: `cargo install --path .`, or build it with " +
  "`cargo build --release` and put `target/release/pema` on your PATH), or set " +
  "`pema.serverPath` to the binary.";

function exeName(platform: NodeJS.Platform): string {
  return platform === "win32" ? "pema.exe" : "pema";
}

/**
 * The binary to start: `pema.serverPath`, else `<extension>/bin/pema`, else `pema` on PATH.
 * A `pema.serverPath` that does not exist is an error (not silently replaced by another binary).
 */
export function resolveServerBinary(env: ResolveEnv): ResolveResult {
  const platform = env.platform ?? process.platform;
  const exe = exeName(platform);
  const tried: string[] = [];
  let setting = (env.serverPath ?? "").trim();
  if (setting) {
    if (setting === "~" || setting.startsWith("~/")) {
      setting = path.join(env.homeDir ?? "", setting.slice(1));
    }
    if (env.isExecutable(setting)) {
      return { ok: true, path: setting, source: "setting" };
    }
    return {
      ok: false,
      tried: [setting],
      message:
        `pema: the binary set in pema.serverPath (${setting}) does not exist or is not executable. ` +
        `Fix the setting, or clear it to use \`pema\` from your PATH. ${INSTALL_HINT}`,
    };
  }
  if (env.extensionPath) {
    const bundled = path.join(env.extensionPath, "bin", exe);
    tried.push(bundled);
    if (env.isExecutable(bundled)) {
      return { ok: true, path: bundled, source: "bundled" };
    }
  }
  const sep = platform === "win32" ? ";" : ":";
  for (const dir of (env.pathEnv ?? "").split(sep)) {
    if (!dir) continue;
    const candidate = path.join(dir, exe);
    tried.push(candidate);
    if (env.isExecutable(candidate)) {
      return { ok: true, path: candidate, source: "PATH" };
    }
  }
  return {
    ok: false,
    tried,
    message: `pema: the \`pema\` binary was not found (not in pema.serverPath, not bundled, not on PATH). ${INSTALL_HINT}`,
  };
}

// ---------------------------------------------------------------------------------------------
// Settings

export type Mode = "gu" | "fixed" | "plain";
export const MODES: readonly Mode[] = ["gu", "fixed", "plain"];

export interface Settings {
  serverPath?: string;
  modelPath?: string;
  mode?: string;
  lambdaMax?: number | null;
  /** `pema.logLevel`: how much the daemon logs to the *pema server* output channel. */
  logLevel?: string;
}

export interface InitializationOptions {
  mode?: Mode;
  lambdaMax?: number;
  /** The daemon's token, for a connection to `pema serve` (docs/protocol.md, Authentication). */
  token?: string;
}

/** `pema.mode` and `pema.lambdaMax` → the daemon's `initializationOptions`. */
export function settingsToInitOptions(s: Settings): InitializationOptions {
  const out: InitializationOptions = {};
  if (s.mode && (MODES as readonly string[]).includes(s.mode)) {
    out.mode = s.mode as Mode;
  }
  if (typeof s.lambdaMax === "number" && Number.isFinite(s.lambdaMax)) {
    out.lambdaMax = Math.min(1, Math.max(0, s.lambdaMax));
  }
  return out;
}

/** The environment of `pema lsp`: the editor's, plus `PEMA_MODEL` when `pema.modelPath` is set
 *  and `PEMA_LOG` from `pema.logLevel` (pema's own messages at that level, other crates' from
 *  `warn`). */
export function serverEnv(
  s: Settings,
  base: NodeJS.ProcessEnv,
  homeDir?: string,
): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { ...base };
  let model = (s.modelPath ?? "").trim();
  if (model) {
    if (model === "~" || model.startsWith("~/")) model = path.join(homeDir ?? "", model.slice(1));
    env.PEMA_MODEL = model;
  }
  const level = (s.logLevel ?? "").trim();
  if ((LOG_LEVELS as readonly string[]).includes(level)) {
    env.PEMA_LOG = level === "error" || level === "warn" ? level : `warn,pema=${level}`;
  }
  return env;
}

/** Settings whose change needs the daemon restarted (they are read at start). `pema.mode` and
 *  `pema.lambdaMax` are not among them: every rewrite sends them (`requestChoice`). */
export const RESTART_SETTINGS = [
  "pema.serverPath",
  "pema.modelPath",
  "pema.languages",
  "pema.logLevel",
  "pema.connect.address",
  "pema.connect.tokenFile",
];

/** `pema.languages` → an LSP document selector. */
export function documentSelector(languages: string[] | undefined): { scheme: string; language?: string }[] {
  const langs = languages && languages.length ? languages : ["markdown", "plaintext"];
  if (langs.includes("*")) return [{ scheme: "file" }];
  return langs.map((language) => ({ scheme: "file", language }));
}

// ---------------------------------------------------------------------------------------------
// Rewrite requests

export interface Position {
  line: number;
  character: number;
}
export interface Range {
  start: Position;
  end: Position;
}

export const REWRITE_METHOD = "pema/rewrite";
export const STATUS_METHOD = "pema/status";

export interface RewriteParams {
  uri?: string;
  range?: Range;
  text?: string;
  workspace?: string;
  mode?: Mode;
  options?: Record<string, number>;
  partialResultToken?: string;
}

export interface RewriteResult {
  text: string;
  mode: string;
  tokens: number;
  stoppedBy?: string;
  seconds?: number;
  tokensPerSecond?: number;
  workspace?: string;
  range?: Range | null;
}

export interface PartialRewrite {
  delta?: string;
  text?: string;
}

let tokenCounter = 0;
/** A fresh partial-result token for one rewrite. */
export function newPartialToken(prefix = "pema-vscode-rw"): string {
  tokenCounter += 1;
  return `${prefix}-${process.pid}-${tokenCounter}`;
}

/**
 * The params of `pema/rewrite` for a selection. A document the daemon sees (synced: its language
 * is in `pema.languages`) is sent as `uri` + `range`, so the daemon reads its unsaved text; any
 * other is sent as `text` with its folder as `workspace`.
 */
export function buildRewriteParams(req: {
  uri: string;
  range: Range;
  selectedText: string;
  synced: boolean;
  fsPath?: string;
  mode?: Mode;
  options?: Record<string, number>;
  partialResultToken?: string;
}): RewriteParams {
  const params: RewriteParams = req.synced
    ? { uri: req.uri, range: req.range }
    : { text: req.selectedText, workspace: req.fsPath ? path.dirname(req.fsPath) : req.uri };
  if (req.mode) params.mode = req.mode;
  if (req.options && Object.keys(req.options).length) params.options = { ...req.options };
  if (req.partialResultToken) params.partialResultToken = req.partialResultToken;
  return params;
}

// ---------------------------------------------------------------------------------------------
// Strength and retry: per request (the daemon's mixing options), no restart

export interface RewriteChoice {
  mode?: Mode;
  options?: Record<string, number>;
}

/** "Rewrite (Lighter)" / "(Stronger)": a constant, small or large weight on the learned style
 *  (the same numbers as the Neovim client's presets). */
export const PRESETS: Record<"lighter" | "stronger", RewriteChoice> = {
  lighter: { mode: "fixed", options: { lambdaFixed: 0.3 } },
  stronger: { mode: "fixed", options: { lambdaFixed: 0.9 } },
};

/** What a rewrite request carries: the command's own mode and options (a preset, a retry)
 *  first, then the settings as they are now (`pema.mode`, `pema.lambdaMax`), so that a change
 *  of either applies to the next rewrite without restarting the daemon. */
export function requestChoice(s: Settings, how: RewriteChoice): RewriteChoice {
  const mode = how.mode ?? ((MODES as readonly string[]).includes(s.mode ?? "") ? (s.mode as Mode) : undefined);
  const options: Record<string, number> = {};
  const init = settingsToInitOptions(s);
  if (init.lambdaMax !== undefined) options.lambdaMax = init.lambdaMax;
  Object.assign(options, how.options ?? {});
  return Object.keys(options).length ? { mode, options } : { mode };
}

/** The sampling of "Retry Rewrite" (greedy decoding would give the same text): temperature 0.8
 *  over the smallest set of tokens holding 60% of the probability. Measured (BENCHMARKS.md,
 *  "Retry samples"): without the top-p cut, 9 of 30 samples lost the source's meaning; with it, 1
 *  (as greedy), and 25 of 30 still differ from the greedy text. */
export const RETRY_TEMPERATURE = 0.8;
export const RETRY_TOP_P = 0.6;

/** Another sample of a rewrite: its mode and options kept, with sampling and a new seed. */
export function retryChoice(prev: RewriteChoice | undefined, seed: number): RewriteChoice {
  return {
    mode: prev?.mode,
    options: {
      ...(prev?.options ?? {}),
      temperature: RETRY_TEMPERATURE,
      topP: RETRY_TOP_P,
      seed: Math.floor(Math.abs(seed)),
    },
  };
}

/** Accumulates the streamed `{delta, text}` values of a rewrite into the text so far. */
export class PartialText {
  private current = "";
  private count = 0;
  push(value: PartialRewrite | null | undefined): string {
    if (!value) return this.current;
    this.count += 1;
    if (typeof value.text === "string") this.current = value.text;
    else if (typeof value.delta === "string") this.current += value.delta;
    return this.current;
  }
  get text(): string {
    return this.current;
  }
  get updates(): number {
    return this.count;
  }
}

// ---------------------------------------------------------------------------------------------
// The preview's text: the LSP project's own document model (`vscode-languageserver-textdocument`,
// UTF-16 positions), which ends a line before its "\r\n" or "\n" and clamps a position past the
// end of a line or of the document as VS Code does.

/** `text` with `range` replaced by `newText` (the preview of a rewrite). */
export function applyRewrite(text: string, range: Range, newText: string): string {
  const doc = TextDocument.create("untitled:pema-preview", "plaintext", 0, text);
  return TextDocument.applyEdits(doc, [{ range, newText }]);
}

// ---------------------------------------------------------------------------------------------
// Status bar

export interface WorkDoneValue {
  kind: "begin" | "report" | "end";
  title?: string;
  message?: string;
  percentage?: number;
}

export interface ProgressState {
  task: string;
  workspace?: string;
  title?: string;
  message?: string;
  percentage?: number;
  done: boolean;
}

const TASK_WORDS: Record<string, string> = {
  paraphrase: "paraphrasing",
  memory: "building memory",
  training: "training",
};

/** `pema/<task>/<n>` → `<task>`, or undefined for tokens that are not pema's. */
export function progressTask(token: string | number): string | undefined {
  if (typeof token !== "string") return undefined;
  const m = /^pema\/([^/]+)\/\d+$/.exec(token);
  return m ? m[1] : undefined;
}

/** Folds one `$/progress` value into the state of its token. */
export function applyProgress(
  prev: ProgressState | undefined,
  token: string,
  value: WorkDoneValue,
): ProgressState | undefined {
  const task = progressTask(token);
  if (!task) return undefined;
  const base: ProgressState = prev ?? { task, done: false };
  switch (value.kind) {
    case "begin":
      return { task, title: value.title, message: value.message, percentage: value.percentage, done: false };
    case "report":
      return {
        ...base,
        message: value.message ?? base.message,
        percentage: value.percentage ?? base.percentage,
      };
    case "end":
      return { ...base, message: value.message ?? base.message, percentage: 100, done: true };
    default:
      return base;
  }
}

/** "pema: training 40%" */
export function progressText(p: ProgressState): string {
  const word = TASK_WORDS[p.task] ?? p.task;
  if (typeof p.percentage === "number") return `pema: ${word} ${Math.round(p.percentage)}%`;
  return `pema: ${word}…`;
}

export interface StatusWorkspace {
  root: string;
  memory?: { entries?: number } | null;
  adapter?: { state?: string; available?: boolean; stale?: boolean; heldOutLoss?: number | null } | null;
  errors?: unknown[];
  configError?: string | null;
  unitsPending?: number;
}

export interface DaemonStatus {
  version?: string;
  model?: string;
  workspaces?: StatusWorkspace[];
}

/** `pema/statusChanged`: the fields of a workspace's `pema/status` entry that a status line
 *  shows, under the same names. */
export const STATUS_CHANGED_NOTIFICATION = "pema/statusChanged";

export interface StatusChange {
  root: string;
  units?: number;
  unitsPending?: number;
  pairs?: number;
  memory?: { entries?: number; pairs?: number };
  adapter?: { state?: string; available?: boolean; stale?: boolean; heldOutLoss?: number | null; heldOutCe?: number | null; trainings?: number };
  errors?: unknown[];
  configError?: string | null;
}

/** The status with one workspace's change applied (a new workspace is added); the other
 *  fields of its entry (files, last build, …) stay as the last `pema/status` gave them. */
export function applyStatusChange(status: DaemonStatus | undefined, change: StatusChange): DaemonStatus {
  const wss = [...(status?.workspaces ?? [])];
  const i = wss.findIndex((w) => w.root === change.root);
  const old = i >= 0 ? wss[i] : { root: change.root };
  const merged: StatusWorkspace = {
    ...old,
    ...change,
    memory: { ...(old.memory ?? {}), ...(change.memory ?? {}) },
    adapter: { ...(old.adapter ?? {}), ...(change.adapter ?? {}) },
  };
  if (i >= 0) wss[i] = merged;
  else wss.push(merged);
  return { ...(status ?? {}), workspaces: wss };
}

/** The workspace of `fsPath` (the longest root that holds it), else the first. */
export function pickWorkspace(status: DaemonStatus | undefined, fsPath?: string): StatusWorkspace | undefined {
  const wss = status?.workspaces ?? [];
  if (fsPath) {
    let best: StatusWorkspace | undefined;
    for (const ws of wss) {
      const root = ws.root.endsWith(path.sep) ? ws.root : ws.root + path.sep;
      if ((fsPath === ws.root || fsPath.startsWith(root)) && (!best || ws.root.length > best.root.length)) best = ws;
    }
    if (best) return best;
  }
  return wss[0];
}

export function adapterReady(ws: StatusWorkspace | undefined): boolean {
  return !!ws && ws.adapter?.state === "ready" && ws.adapter?.available !== false && !ws.adapter?.stale;
}

/** Whether every open workspace is ready. */
export function allReady(status: DaemonStatus | undefined): boolean {
  const wss = status?.workspaces ?? [];
  return wss.length > 0 && wss.every(adapterReady);
}

function entries(ws: StatusWorkspace): string {
  const n = ws.memory?.entries;
  return typeof n === "number" ? ` · ${n} entries` : "";
}

/** The status-bar text: running background work first, else the adapter's state. */
export function statusBarText(status: DaemonStatus | undefined, running: ProgressState[], fsPath?: string): string {
  const active = running.filter((p) => !p.done);
  if (active.length) {
    // training first, then memory, then paraphrase
    const order = ["training", "memory", "paraphrase"];
    active.sort((a, b) => order.indexOf(a.task) - order.indexOf(b.task));
    return progressText(active[0]);
  }
  if (!status) return "pema: starting…";
  const ws = pickWorkspace(status, fsPath);
  if (!ws) return "pema: no workspace";
  if (ws.configError) return "pema: config error";
  const state = ws.adapter?.state ?? "none";
  switch (state) {
    case "ready":
      return ws.adapter?.stale ? `pema: ready (retraining)${entries(ws)}` : `pema: ready${entries(ws)}`;
    case "training":
      return ws.adapter?.available ? `pema: ready (training)${entries(ws)}` : `pema: training${entries(ws)}`;
    case "building":
      return "pema: building memory";
    case "none":
      return "pema: no examples yet";
    default:
      return `pema: ${state}`;
  }
}

export function statusTooltip(status: DaemonStatus | undefined, running: ProgressState[], fsPath?: string): string {
  const lines: string[] = [];
  for (const p of running.filter((x) => !x.done)) {
    lines.push(`${p.title ?? p.task}: ${p.message ?? ""}${typeof p.percentage === "number" ? ` (${p.percentage}%)` : ""}`);
  }
  const ws = pickWorkspace(status, fsPath);
  if (ws) {
    lines.push(`workspace: ${ws.root}`);
    lines.push(`adapter: ${ws.adapter?.state ?? "none"}${ws.adapter?.stale ? " (stale)" : ""}`);
    if (typeof ws.memory?.entries === "number") lines.push(`memory: ${ws.memory.entries} entries`);
    if (typeof ws.adapter?.heldOutLoss === "number") lines.push(`held-out loss: ${ws.adapter.heldOutLoss.toFixed(3)}`);
    if (ws.configError) lines.push(`config error: ${ws.configError}`);
  }
  if (status?.model) lines.push(`model: ${status.model}`);
  lines.push("Click for the full status");
  return lines.join("\n");
}

// ---------------------------------------------------------------------------------------------
// Opt-in: pema learns only folders holding a `.pema.toml`, never the home folder or `/`.

export const CONFIG_FILE = ".pema.toml";
export const FILES_METHOD = "pema/files";
export const OPEN_WORKSPACE_METHOD = "pema/openWorkspace";

/** The first lines a "learn this folder's style" command writes into `.pema.toml`. */
export const MINIMAL_CONFIG =
  "# pema learns the writing style of this folder (prose files and *.pairs.jsonl under it).\n" +
  "# Every setting is optional. Delete this file to stop learning here.\n";

function trimSlash(p: string): string {
  return p.length > 1 ? p.replace(/\/+$/, "") : p;
}

/** `/` and the home folder itself are never a workspace. */
export function isForbiddenRoot(dir: string, homeDir: string | undefined): boolean {
  const d = trimSlash(dir);
  return d === "/" || (homeDir !== undefined && homeDir !== "" && d === trimSlash(homeDir));
}

/** The opted-in roots: the folders of the given `.pema.toml` files, without home and `/`,
 *  without duplicates, sorted. */
export function optedInRoots(configFiles: string[], homeDir: string | undefined): string[] {
  const roots = new Set<string>();
  for (const f of configFiles) {
    const i = f.lastIndexOf("/");
    const dir = i <= 0 ? "/" : f.slice(0, i);
    if (!isForbiddenRoot(dir, homeDir)) roots.add(dir);
  }
  return [...roots].sort();
}

/** The opted-in root holding a file (the innermost), if any. */
export function rootOf(fsPath: string | undefined, roots: string[]): string | undefined {
  if (!fsPath) return undefined;
  let best: string | undefined;
  for (const r of roots) {
    if ((fsPath === r || fsPath.startsWith(r + "/")) && (!best || r.length > best.length)) best = r;
  }
  return best;
}

/** Documents synced to the daemon: the languages, only under opted-in roots. */
export function scopedSelector(
  languages: string[] | undefined,
  roots: string[],
): { scheme: string; language?: string; pattern?: string }[] {
  const out: { scheme: string; language?: string; pattern?: string }[] = [];
  for (const r of roots) {
    for (const s of documentSelector(languages)) out.push({ ...s, pattern: `${r}/**` });
  }
  return out;
}

export interface FilesResult {
  root: string;
  learned: { path: string; kind: string; units: number; pairs: number; badLines: number }[];
  waiting: string[];
  skipped: { path: string; reason: string }[];
  truncated: boolean;
}

/** Readable lines of a `pema/files` result. */
export function formatFiles(r: FilesResult): string[] {
  const rel = (p: string) => (p.startsWith(r.root + "/") ? p.slice(r.root.length + 1) : p);
  const out = [
    `${r.root}: learns from ${r.learned.length} file(s), ${r.waiting.length} waiting, ${r.skipped.length} skipped`,
    "learned from:",
  ];
  for (const f of r.learned) {
    const what = f.kind === "pairs" ? `${f.pairs} pairs` : `${f.units} units`;
    out.push(`  ${rel(f.path)}  (${f.kind}, ${what}${f.badLines ? `, ${f.badLines} bad lines` : ""})`);
  }
  if (r.waiting.length) {
    out.push("not read yet:");
    for (const p of r.waiting) out.push(`  ${rel(p)}`);
  }
  out.push("skipped:");
  for (const s of r.skipped) out.push(`  ${rel(s.path)}: ${s.reason}`);
  if (r.truncated) out.push("… (more entries than the listing shows)");
  return out;
}

// ---------------------------------------------------------------------------------------------
// What was learned: `pema/examples`

export const EXAMPLES_METHOD = "pema/examples";

export interface ExamplesResult {
  examples: { source: string; target: string; pseudo: boolean }[];
}

/** A Markdown page of a `pema/examples` result: each pair as source → target. */
export function formatExamples(root: string, r: ExamplesResult): string {
  const quote = (t: string) => t.split(/\r?\n/).map((l) => `> ${l}`).join("\n");
  const out = [`# What pema learned from ${root}`, ""];
  if (!r.examples.length) {
    out.push("No pairs yet: pema is still reading and paraphrasing this folder (see PEMA: Show Status).");
    return out.join("\n") + "\n";
  }
  out.push(
    `${r.examples.length} of the pairs the style is learned from. A *pseudo-pair* is one of your sentences ` +
      "with a plain paraphrase pema made of it: the style is what turns the paraphrase back into your sentence.",
  );
  r.examples.forEach((e, i) => {
    out.push("", `## ${i + 1}. ${e.pseudo ? "pseudo-pair (from your prose)" : "pair (from a pairs file)"}`, "");
    out.push(quote(e.source), "", "→", "", quote(e.target));
  });
  return out.join("\n") + "\n";
}

// ---------------------------------------------------------------------------------------------
// Connecting to a running `pema serve` instead of starting `pema lsp`

/** Where a running daemon listens: `pema.connect.address` parsed. */
export type ConnectTarget = { host: string; port: number } | { path: string };

/** `HOST:PORT`, `PORT` (loopback), `[::1]:PORT` or `unix:/path/to/socket` (as `pema serve
 *  --listen` takes them); an error message for anything else. */
export function parseAddress(address: string): ConnectTarget | { error: string } {
  const a = address.trim();
  if (a.startsWith("unix:")) {
    const p = a.slice("unix:".length);
    return p ? { path: p } : { error: "pema.connect.address: unix: needs a socket path (unix:/path/to/socket)" };
  }
  const m = /^(?:(\[[^\]]+\]|[^:]+):)?(\d{1,5})$/.exec(a);
  const port = m ? Number(m[2]) : NaN;
  if (!m || port < 1 || port > 65535) {
    return { error: `pema.connect.address ${JSON.stringify(address)} is neither HOST:PORT, PORT nor unix:/path/to/socket` };
  }
  const host = (m[1] ?? "127.0.0.1").replace(/^\[(.*)\]$/, "$1");
  return { host, port };
}

/** The daemon's own token file, as `pema serve` writes it: `$XDG_CACHE_HOME/pema/serve.token`,
 *  else `~/.cache/pema/serve.token`. */
export function defaultTokenFile(env: NodeJS.ProcessEnv, homeDir: string): string {
  const cache = env.XDG_CACHE_HOME && path.isAbsolute(env.XDG_CACHE_HOME) ? env.XDG_CACHE_HOME : path.join(homeDir, ".cache");
  return path.join(cache, "pema", "serve.token");
}

/** The token a TCP client passes as `initializationOptions.token`: the first line of
 *  `pema.connect.tokenFile`, else of the daemon's own token file. Undefined when there is none
 *  (a unix socket of a daemon started without a token needs none). */
export function readToken(
  tokenFile: string | undefined,
  env: NodeJS.ProcessEnv,
  homeDir: string,
  read: (p: string) => string,
): { token?: string; file: string; error?: string } {
  let file = (tokenFile ?? "").trim();
  if (file === "~" || file.startsWith("~/")) file = path.join(homeDir, file.slice(1));
  const given = file !== "";
  if (!given) file = defaultTokenFile(env, homeDir);
  let text: string;
  try {
    text = read(file);
  } catch (e) {
    // The default file may well be absent (unix socket, no token); a file the user named may not.
    return given ? { file, error: `pema: cannot read the token file ${file} (pema.connect.tokenFile): ${String(e)}` } : { file };
  }
  const token = text.split(/\r?\n/)[0].trim();
  return token ? { token, file } : { file };
}

// ---------------------------------------------------------------------------------------------
// Accepting one line (hunk) of a rewrite

/** The lines of a text, without their "\r\n" / "\n" ends. */
function splitLines(text: string): string[] {
  return text.split(/\r?\n/);
}

/** The lines (0-based, within the selection) where a rewrite differs from the selection: each is
 *  one hunk. Undefined when the line counts differ: such a rewrite is accepted whole only.
 *  (Rewrites are made line by line, so line n of the rewrite is the rewrite of line n.) */
export function changedLines(original: string, rewrite: string): number[] | undefined {
  const a = splitLines(original);
  const b = splitLines(rewrite);
  if (a.length !== b.length) return undefined;
  const out: number[] = [];
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) out.push(i);
  return out;
}

/** The selection's text after accepting line `n` of the rewrite (the line end kept as it was). */
export function acceptLine(original: string, rewrite: string, n: number): string {
  const a = splitLines(original);
  const b = splitLines(rewrite);
  if (a.length !== b.length || n < 0 || n >= a.length) return original;
  const ends = original.match(/\r?\n/g) ?? [];
  a[n] = b[n];
  return a.map((l, i) => l + (ends[i] ?? "")).join("");
}

/** The end of a range starting at `start` that holds `text` (for a selection whose text changed). */
export function endOf(start: Position, text: string): Position {
  const lines = splitLines(text);
  const last = lines[lines.length - 1];
  return lines.length === 1
    ? { line: start.line, character: start.character + last.length }
    : { line: start.line + lines.length - 1, character: last.length };
}

// ---------------------------------------------------------------------------------------------
// Compare: the plain model and the workspace's style, side by side

/** The two requests of "Compare With the Plain Model": the model alone, then the style as the
 *  settings ask for it (mode undefined: the adapter's own choice). */
export function compareRequests(mode: Mode | undefined): { label: string; mode?: Mode }[] {
  return [
    { label: "plain model", mode: "plain" },
    { label: `pema (${mode ?? "default"})`, mode },
  ];
}

// ---------------------------------------------------------------------------------------------
// Logging

/** `pema.logLevel` values; the daemon reads them as `PEMA_LOG` (a tracing filter). */
export const LOG_LEVELS = ["error", "warn", "info", "debug", "trace"] as const;
