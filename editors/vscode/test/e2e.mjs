// End-to-end: the packaged extension in code-server, driven by headless Chromium.
// Started by test/run.sh, which sets:
//   CODE_SERVER   the code-server binary        E2E_DIR     scratch folder (user data, logs)
//   PLAYWRIGHT    path of playwright-core        CHROMIUM    the Chromium binary
//   VSIX          the packaged extension        WORKSPACE   the test workspace (has notes.md)
//   PEMA_BIN, PEMA_MODEL, XDG_CACHE_HOME         SCREENSHOT  where the final screenshot goes
//   PEMA_READY_TIMEOUT (s, default 400)
import { spawn, execFileSync } from "node:child_process";
import fs from "node:fs";
import net from "node:net";
import path from "node:path";
import { createRequire } from "node:module";

const env = process.env;
const need = (k) => {
  if (!env[k]) throw new Error(`e2e: ${k} is not set (run test/run.sh)`);
  return env[k];
};
const CODE_SERVER = need("CODE_SERVER");
const E2E_DIR = need("E2E_DIR");
const WORKSPACE = need("WORKSPACE");
const VSIX = need("VSIX");
const SCREENSHOT = need("SCREENSHOT");
const CHROMIUM = env.CHROMIUM || "/usr/bin/chromium";
const READY_TIMEOUT_MS = Number(env.PEMA_READY_TIMEOUT || 400) * 1000;
const { chromium } = createRequire(import.meta.url)(need("PLAYWRIGHT"));

const t0 = Date.now();
const log = (m) => console.log(`[e2e +${((Date.now() - t0) / 1000).toFixed(1)}s] ${m}`);

const userData = path.join(E2E_DIR, "user-data");
const extDir = path.join(E2E_DIR, "extensions");
const trace = path.join(E2E_DIR, "trace.jsonl");
fs.rmSync(userData, { recursive: true, force: true });
fs.rmSync(extDir, { recursive: true, force: true });
fs.rmSync(trace, { force: true });
fs.mkdirSync(path.join(userData, "User"), { recursive: true });
fs.writeFileSync(
  path.join(userData, "User", "settings.json"),
  JSON.stringify(
    {
      "pema.serverPath": need("PEMA_BIN"),
      "pema.modelPath": need("PEMA_MODEL"),
      "editor.wordWrap": "off",
      "[markdown]": { "editor.wordWrap": "off", "editor.quickSuggestions": { other: false, comments: false, strings: false } },
      "workbench.startupEditor": "none",
      "workbench.tips.enabled": false,
      "workbench.enableExperiments": false,
      "security.workspace.trust.enabled": false,
      "telemetry.telemetryLevel": "off",
      "extensions.ignoreRecommendations": true,
      "extensions.autoUpdate": false,
      "update.mode": "none",
      "files.autoSave": "off",
    },
    null,
    2,
  ),
);

// A CRLF document with emoji and CJK text and no final newline, for the round trip at the end.
const CRLF_HEAD = "Grüße 😀 from the first line of this note.\r\n一二三 the second line of the text.\r\n";
const CRLF_LAST = "The third line 😀 has 日本語 and no final newline.";
fs.writeFileSync(path.join(WORKSPACE, "crlf.md"), CRLF_HEAD + CRLF_LAST);

// drafts/draft.md: two plain sentences (sources of the shipped pairs) in a folder the workspace
// does not learn from: rewrites of text the memory has not seen vary when sampled.
const DEV = new URL("../../../examples/bible_bbe_asv/dev.jsonl", import.meta.url);
const DRAFT = fs
  .readFileSync(DEV, "utf8")
  .split("\n")
  .filter(Boolean)
  .map((l) => JSON.parse(l).source)
  .filter((t) => t.length > 40 && t.length < 110)
  .slice(10, 12);
fs.mkdirSync(path.join(WORKSPACE, "drafts"), { recursive: true });
fs.writeFileSync(path.join(WORKSPACE, "drafts", "draft.md"), DRAFT.join("\n") + "\n");
fs.appendFileSync(path.join(WORKSPACE, ".pema.toml"), 'exclude = ["drafts/**"]\n');

const base = [`--user-data-dir=${userData}`, `--extensions-dir=${extDir}`];
log(`installing ${VSIX}`);
execFileSync(CODE_SERVER, [...base, "--install-extension", VSIX], { stdio: "inherit", timeout: 120_000 });

const port = await new Promise((resolve) => {
  const srv = net.createServer();
  srv.listen(0, "127.0.0.1", () => {
    const p = srv.address().port;
    srv.close(() => resolve(p));
  });
});
const csLog = fs.openSync(path.join(E2E_DIR, "code-server.log"), "w");
const cs = spawn(
  CODE_SERVER,
  [
    ...base,
    "--auth=none",
    `--bind-addr=127.0.0.1:${port}`,
    "--disable-telemetry",
    "--disable-update-check",
    "--disable-workspace-trust",
    "--disable-getting-started-override",
    WORKSPACE,
  ],
  { env: { ...env, PEMA_VSCODE_TRACE: trace }, stdio: ["ignore", csLog, csLog], detached: true },
);
let browser;
const cleanup = async () => {
  try {
    if (browser) await browser.close();
  } catch {
    /* closed */
  }
  try {
    process.kill(-cs.pid, "SIGTERM"); // code-server and its children (extension host, pema lsp)
  } catch {
    /* gone */
  }
};

for (const sig of ["SIGINT", "SIGTERM"]) {
  process.on(sig, () => {
    void cleanup().then(() => process.exit(130));
  });
}

const traceEvents = () =>
  fs.existsSync(trace)
    ? fs.readFileSync(trace, "utf8").split("\n").filter(Boolean).map((l) => JSON.parse(l))
    : [];
async function waitFor(what, fn, timeoutMs, everyMs = 500) {
  const end = Date.now() + timeoutMs;
  for (;;) {
    const v = await fn();
    if (v) return v;
    if (Date.now() > end) throw new Error(`e2e: timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, everyMs));
  }
}

// Quick Open leaves the editor focused; a click is only the fallback, since in one CI run an
// overlay (<html> by Playwright's account) took the click for 30 s. What covered it is logged.
async function focusEditor(page) {
  const focused = ".editor-instance .monaco-editor.focused";
  if (await page.waitForSelector(focused, { timeout: 5_000 }).then(() => true, () => false)) {
    log("the editor has focus");
    return;
  }
  await page.keyboard.press("Escape");
  const lines = page.locator(".editor-instance .monaco-editor .view-lines").first();
  const clicked = await lines.click({ position: { x: 5, y: 5 }, timeout: 10_000 }).then(() => true, () => false);
  if (!clicked) {
    const box = await lines.boundingBox();
    const cover = box
      ? await page.evaluate(([x, y]) => {
          const e = globalThis.document.elementFromPoint(x, y);
          return e ? `${e.tagName}.${e.className}` : "nothing";
        }, [box.x + 5, box.y + 5])
      : "no box";
    log(`the editor could not be clicked (covered by ${cover}); focusing it by command`);
    await page.keyboard.press("F1");
    await page.waitForSelector(".quick-input-widget input", { state: "visible" });
    await page.keyboard.type("View: Focus Active Editor Group");
    await page.waitForTimeout(300);
    await page.keyboard.press("Enter");
  }
  await page.waitForSelector(focused, { timeout: 10_000 });
}

// Opens a file of the workspace with Quick Open and focuses its editor.
async function openFile(page, name) {
  await page.keyboard.press("Control+P");
  await page.waitForSelector(".quick-input-widget input", { state: "visible" });
  await page.keyboard.type(name);
  await page.locator(".quick-input-list .monaco-list-row", { hasText: name }).first().waitFor();
  await page.waitForTimeout(300);
  await page.keyboard.press("Enter");
  await page.locator(".tab.active", { hasText: name }).first().waitFor();
  await focusEditor(page);
}

// Runs a command from the palette (F1), by its full title.
async function palette(page, title) {
  await page.keyboard.press("F1");
  await page.waitForSelector(".quick-input-widget input", { state: "visible" });
  await page.keyboard.type(title);
  await page.locator(".quick-input-list .monaco-list-row", { hasText: title }).first().waitFor();
  await page.waitForTimeout(300);
  await page.keyboard.press("Enter");
  log(`ran ${title}`);
}

// The n-th (0-based) trace event of a kind, waited for.
const nth = (event, n, timeoutMs = 180_000) =>
  waitFor(`trace event ${event} #${n + 1}`, () => traceEvents().filter((e) => e.event === event)[n], timeoutMs);
const count = (event) => traceEvents().filter((e) => e.event === event).length;

// Settings changed on disk (as the Settings editor writes them): the extension restarts its client.
const settingsFile = path.join(userData, "User", "settings.json");
function setSettings(extra) {
  const cur = JSON.parse(fs.readFileSync(settingsFile, "utf8"));
  fs.writeFileSync(settingsFile, JSON.stringify({ ...cur, ...extra }, null, 2));
}

let serve;
let failed = false;
try {
  await waitFor(
    "code-server to listen",
    () =>
      fetch(`http://127.0.0.1:${port}/healthz`).then(
        (r) => r.ok,
        () => false,
      ),
    60_000,
  );
  log(`code-server on 127.0.0.1:${port}`);
  browser = await chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"],
  });
  const page = await browser.newPage({ viewport: { width: 1400, height: 850 } });
  page.on("pageerror", (e) => log(`page error: ${e.message}`));
  await page.goto(`http://127.0.0.1:${port}/?folder=${encodeURIComponent(WORKSPACE)}`);
  await page.waitForSelector(".monaco-workbench", { timeout: 120_000 });
  log("workbench loaded");

  // The status bar shows the daemon's progress, then "pema: ready".
  const item = page.locator(".statusbar-item", { hasText: "pema:" }).first();
  await item.waitFor({ timeout: 120_000 });
  const seen = new Set();
  await waitFor(
    "the status bar to say 'pema: ready'",
    async () => {
      const text = (await item.innerText().catch(() => "")).trim();
      if (text && !seen.has(text)) {
        seen.add(text);
        log(`status bar: ${text}`);
      }
      return /pema: ready/.test(text) && !/retraining|training\)/.test(text);
    },
    READY_TIMEOUT_MS,
    300,
  );

  // The status bar got there from the daemon's pushed pema/statusChanged (the client does not poll).
  const changed = traceEvents().filter((e) => e.event === "status-changed");
  if (!changed.some((e) => e.change?.adapter?.state === "ready")) {
    throw new Error(`e2e: no pema/statusChanged said ready (${changed.length} arrived)`);
  }
  log(`pema/statusChanged: ${changed.map((e) => e.change.adapter?.state).join(" → ")}`);

  // Command palette: PEMA: Show What Was Learned (pema/examples as a Markdown page).
  await palette(page, "PEMA: Show What Was Learned");
  const shown = await waitFor("the examples page", () => traceEvents().find((e) => e.event === "examples"), 60_000);
  if (!(shown.count >= 1)) throw new Error(`e2e: Show What Was Learned listed ${shown.count} pairs`);
  await page.locator(".tab.active", { hasText: "what pema learned" }).first().waitFor();
  log(`Show What Was Learned: ${shown.count} pairs (${shown.pseudo} pseudo)`);

  // Open notes.md with Quick Open, select its first line.
  await openFile(page, "notes.md");
  await page.keyboard.press("Control+Home");
  await page.keyboard.press("Shift+End");
  const original = fs.readFileSync(path.join(WORKSPACE, "notes.md"), "utf8");
  log(`selected line 1: ${JSON.stringify(original.split("\n")[0])}`);

  await palette(page, "PEMA: Rewrite Selection");

  const toast = page.locator(".notifications-toasts .notification-toast", { hasText: "pema: rewrite ready" });
  await toast.waitFor({ timeout: 180_000 });
  const result = traceEvents().find((e) => e.event === "rewrite-result");
  if (!result) throw new Error("e2e: no rewrite-result in the trace");
  log(`rewrite: ${JSON.stringify(result.result.text)} (${result.partialUpdates} partial results)`);
  const previewTab = page.locator(".tab", { hasText: "pema rewrite" });
  if (!(await previewTab.count())) throw new Error("e2e: the diff preview is not open");
  await page.screenshot({ path: SCREENSHOT.replace(/\.png$/, "-preview.png") });

  await toast.getByRole("button", { name: "Accept" }).click();
  log("clicked Accept");
  const accepted = await waitFor("the accepted edit", () => traceEvents().find((e) => e.event === "accepted"), 30_000);
  if (!accepted.applied) throw new Error("e2e: the edit was not applied");
  await page.locator(".tab.active", { hasText: "notes.md" }).first().waitFor();
  await page.waitForTimeout(500);

  // Save, and check the file on disk.
  await page.keyboard.press("Control+S");
  const expected = [result.result.text, ...original.split("\n").slice(1)].join("\n");
  // (The rewrite may equal the source: a faithful default changes only what the style changes.)
  const saved = await waitFor(
    "notes.md to be saved",
    () => {
      const t = fs.readFileSync(path.join(WORKSPACE, "notes.md"), "utf8");
      return t === expected ? t : undefined;
    },
    15_000,
  );
  if (saved !== expected) {
    throw new Error(`e2e: notes.md is\n${saved}\nexpected\n${expected}`);
  }
  if (accepted.documentText !== expected) throw new Error("e2e: the editor's text is not the rewrite");
  log("notes.md holds the daemon's rewrite");
  await page.screenshot({ path: SCREENSHOT });
  log(`screenshot: ${SCREENSHOT}`);
  log(`status texts seen: ${[...seen].join(" | ")}`);

  // crlf.md: its last line rewritten, accepted and saved; every other byte as it was.
  await openFile(page, "crlf.md");
  await page.keyboard.press("Control+End");
  await page.keyboard.press("Shift+Home");
  await palette(page, "PEMA: Rewrite Selection");
  const request = await waitFor(
    "the crlf.md rewrite request",
    () => traceEvents().filter((e) => e.event === "rewrite-request")[1],
    30_000,
  );
  if (request.originalText !== CRLF_LAST) throw new Error(`e2e: crlf.md selection was ${JSON.stringify(request.originalText)}`);
  const toast2 = page.locator(".notifications-toasts .notification-toast", { hasText: "pema: rewrite ready" }).last();
  await toast2.waitFor({ timeout: 180_000 });
  const result2 = traceEvents().filter((e) => e.event === "rewrite-result")[1];
  if (!result2) throw new Error("e2e: no second rewrite-result in the trace");
  await toast2.getByRole("button", { name: "Accept" }).click();
  const accepted2 = await waitFor(
    "the crlf.md edit",
    () => traceEvents().filter((e) => e.event === "accepted")[1],
    30_000,
  );
  if (!accepted2.applied) throw new Error("e2e: the crlf.md edit was not applied");
  await page.locator(".tab.active", { hasText: "crlf.md" }).first().waitFor();
  await page.waitForTimeout(500);
  await page.keyboard.press("Control+S");
  const want = CRLF_HEAD + result2.result.text;
  const got = await waitFor(
    "crlf.md to be saved",
    () => {
      const t = fs.readFileSync(path.join(WORKSPACE, "crlf.md"), "utf8");
      return t !== CRLF_HEAD + CRLF_LAST || want === CRLF_HEAD + CRLF_LAST ? t : undefined;
    },
    15_000,
  );
  if (got !== want || /(^|[^\r])\n/.test(got) || got.endsWith("\n")) {
    throw new Error(`e2e: crlf.md is ${JSON.stringify(got)}, want ${JSON.stringify(want)} (CRLF, no final newline)`);
  }
  log(`crlf.md: ${JSON.stringify(CRLF_LAST)} -> ${JSON.stringify(result2.result.text)}; every other byte unchanged`);

  // drafts/draft.md, both lines: "Rewrite (Stronger)" (a preset: fixed mix, λ 0.9), retried,
  // then one line accepted.
  await openFile(page, "draft.md");
  await page.keyboard.press("Control+Home");
  await page.keyboard.press("Shift+ArrowDown");
  await page.keyboard.press("Shift+End");
  const before3 = fs.readFileSync(path.join(WORKSPACE, "drafts", "draft.md"), "utf8");
  let n = count("rewrite-result");
  const q3 = count("rewrite-request");
  await palette(page, "PEMA: Rewrite (Stronger)");
  const req3 = await nth("rewrite-request", q3, 30_000);
  if (req3.params.mode !== "fixed" || req3.params.options?.lambdaFixed !== 0.9) {
    throw new Error(`e2e: Rewrite (Stronger) sent ${JSON.stringify(req3.params)}`);
  }
  const res3 = await nth("rewrite-result", n);
  const lines3 = before3.split("\n");
  const sel3 = lines3.slice(0, 2).join("\n");
  if (req3.originalText !== sel3) throw new Error(`e2e: the selection was ${JSON.stringify(req3.originalText)}, want ${JSON.stringify(sel3)}`);
  log(`Rewrite (Stronger), draft.md: ${JSON.stringify(res3.result.text)}`);

  // Retry: another sample (sampling, a new seed) of the same range, kept mode and mix, until the
  // text differs; each retry replaces the preview.
  const texts = [res3.result.text];
  let last = res3;
  for (let attempt = 1; attempt <= 12 && (texts.at(-1) === texts[0] || texts.at(-1) === sel3); attempt++) {
    n = count("rewrite-result");
    await palette(page, "PEMA: Retry Rewrite");
    last = await nth("rewrite-result", n);
    const q = traceEvents().filter((e) => e.event === "rewrite-request").at(-1);
    if (q.params.mode !== "fixed" || q.params.options?.lambdaFixed !== 0.9 || q.params.options?.temperature !== 0.8 || q.params.options?.topP !== 0.6 || typeof q.params.options?.seed !== "number") {
      throw new Error(`e2e: Retry sent ${JSON.stringify(q.params)}`);
    }
    if (q.originalText !== sel3) throw new Error(`e2e: Retry rewrote ${JSON.stringify(q.originalText)}`);
    texts.push(last.result.text);
    log(`retry ${attempt}: ${JSON.stringify(last.result.text)}`);
  }
  if (texts.at(-1) === texts[0]) throw new Error(`e2e: twelve retries gave the same text: ${JSON.stringify(texts)}`);

  // Accept one line of the rewrite in preview: that line changes, the other stays as it was.
  const new3 = last.result.text.split("\n");
  if (new3.length !== 2) throw new Error(`e2e: a 2-line selection came back with ${new3.length} lines`);
  const changedK = [0, 1].filter((k) => new3[k] !== lines3[k]);
  if (changedK.length === 0) throw new Error(`e2e: no retry changed a line: ${JSON.stringify(texts)}`);
  // The diff editor has the focus, its cursor on the selection's first line.
  await page.locator(".tab.active", { hasText: "pema rewrite" }).waitFor({ timeout: 15_000 });
  await palette(page, "PEMA: Accept Line of Rewrite");
  const acc = await nth("accepted-line", 0, 30_000);
  if (!changedK.includes(acc.line)) throw new Error(`e2e: accepted line ${acc.line}, which did not change`);
  const want3 = [...lines3];
  want3[acc.line] = new3[acc.line];
  if (acc.documentText !== want3.join("\n")) {
    throw new Error(`e2e: after accepting line ${acc.line} the document is\n${acc.documentText}\nwant\n${want3.join("\n")}`);
  }
  log(`accepted line ${acc.line + 1} of the rewrite only (${changedK.length} changed); the other lines are as they were`);
  if (changedK.length === 2) await palette(page, "PEMA: Discard Rewrite");
  await waitFor("no rewrite pending", () => page.locator(".tab", { hasText: "pema rewrite" }).count().then((c) => c === 0), 15_000);

  // Rewrite (Lighter) of line 4: the other preset.
  await openFile(page, "notes.md");
  await page.keyboard.press("Control+Home");
  for (let i = 0; i < 3; i++) await page.keyboard.press("ArrowDown");
  await page.keyboard.press("Home");
  await page.keyboard.press("Shift+End");
  n = count("rewrite-result");
  await palette(page, "PEMA: Rewrite (Lighter)");
  const res5 = await nth("rewrite-result", n);
  const req5 = traceEvents().filter((e) => e.event === "rewrite-request").at(-1);
  if (req5.params.mode !== "fixed" || req5.params.options?.lambdaFixed !== 0.3) {
    throw new Error(`e2e: Rewrite (Lighter) sent ${JSON.stringify(req5.params)}`);
  }
  log(`Rewrite (Lighter), line 4: ${JSON.stringify(req5.originalText)} -> ${JSON.stringify(res5.result.text)}`);
  await palette(page, "PEMA: Discard Rewrite");
  await waitFor("the preview to close", () => page.locator(".tab", { hasText: "pema rewrite" }).count().then((c) => c === 0), 15_000);

  // Compare: the plain model and the style, side by side (draft.md, line 2).
  await openFile(page, "draft.md");
  await page.keyboard.press("Control+Home");
  await page.keyboard.press("ArrowDown");
  await page.keyboard.press("Home");
  await page.keyboard.press("Shift+End");
  await palette(page, "PEMA: Compare With the Plain Model");
  const cmp = await nth("compare", 0);
  if (typeof cmp.plain !== "string" || typeof cmp.pema !== "string" || !cmp.pema) throw new Error(`e2e: compare gave ${JSON.stringify(cmp)}`);
  await page.locator(".tab", { hasText: "plain model ↔ pema" }).first().waitFor();
  log(`Compare: ${JSON.stringify(cmp.source)}: plain ${JSON.stringify(cmp.plain)} | pema ${JSON.stringify(cmp.pema)}`);

  // Connect to a running `pema serve` (its own cache) with its token file, instead of `pema lsp`.
  const servePort = await new Promise((resolve) => {
    const srv = net.createServer();
    srv.listen(0, "127.0.0.1", () => {
      const p = srv.address().port;
      srv.close(() => resolve(p));
    });
  });
  const serveCache = path.join(E2E_DIR, "serve-cache");
  fs.rmSync(serveCache, { recursive: true, force: true });
  fs.mkdirSync(serveCache, { recursive: true });
  const address = `127.0.0.1:${servePort}`;
  serve = spawn(need("PEMA_BIN"), ["serve", "--listen", address], {
    env: { ...env, XDG_CACHE_HOME: serveCache },
    stdio: ["ignore", "ignore", "pipe"],
  });
  let serveErr = "";
  serve.stderr.on("data", (d) => (serveErr += d.toString()));
  await waitFor("pema serve to listen", () => serveErr.includes("listening on"), 60_000, 100);
  const started0 = count("started");
  const first0 = count("first-status");
  // As a user edits settings.json and reloads the window (code-server does not see the file
  // change on its own).
  setSettings({ "pema.connect.address": address, "pema.connect.tokenFile": path.join(serveCache, "pema", "serve.token") });
  await page.reload();
  await page.waitForSelector(".monaco-workbench", { timeout: 120_000 });
  const st = await nth("started", started0, 90_000);
  if (!st.server.includes(address)) throw new Error(`e2e: the client started ${st.server}, not a connection to ${address}`);
  const fst = await nth("first-status", first0, 60_000);
  if (!fst.server.includes(address) || typeof fst.model !== "string" || !fst.workspaces?.includes(WORKSPACE)) {
    throw new Error(`e2e: pema/status over the connection gave ${JSON.stringify(fst)}`);
  }
  log(`connected to pema serve: ${st.server}; pema/status: model ${fst.model}, workspaces ${fst.workspaces}`);
  const badToken = path.join(E2E_DIR, "wrong.token");
  fs.writeFileSync(badToken, "not-the-daemons-token-0123456789\n");
  const failed0 = count("start-failed");
  setSettings({ "pema.connect.tokenFile": badToken });
  await page.reload();
  await page.waitForSelector(".monaco-workbench", { timeout: 120_000 });
  const refused = await nth("start-failed", failed0, 90_000);
  if (!/needs its token/.test(refused.message)) throw new Error(`e2e: a wrong token gave ${refused.message}`);
  log(`a wrong token is refused: ${refused.message}`);
  await page.locator(".statusbar-item", { hasText: "pema: not running" }).first().waitFor({ timeout: 15_000 });

  if (![...seen].some((s) => /pema: (training|building memory|paraphrasing)/.test(s))) {
    log("note: no background progress was seen in the status bar (the daemon may have been ready at once)");
  }
} catch (e) {
  failed = true;
  console.error(e);
  try {
    const pages = browser ? browser.contexts().flatMap((c) => c.pages()) : [];
    if (pages[0]) await pages[0].screenshot({ path: path.join(E2E_DIR, "failure.png") });
  } catch {
    /* no screenshot */
  }
  console.error(`code-server log: ${path.join(E2E_DIR, "code-server.log")}; trace: ${trace}`);
} finally {
  if (serve) serve.kill("SIGTERM");
  await cleanup();
}
log(failed ? "FAILED" : "PASSED");
process.exit(failed ? 1 : 0);
