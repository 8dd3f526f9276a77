import { strict as assert } from "node:assert";
import { describe, it } from "node:test";
import {
  PartialText,
  allReady,
  applyProgress,
  applyRewrite,
  buildRewriteParams,
  documentSelector,
  progressTask,
  progressText,
  resolveServerBinary,
  serverEnv,
  settingsToInitOptions,
  statusBarText,
  DaemonStatus,
  ProgressState,
  PRESETS,
  RETRY_TEMPERATURE,
  RETRY_TOP_P,
  StatusChange,
  applyStatusChange,
  formatExamples,
  retryChoice,
  parseAddress,
  readToken,
  defaultTokenFile,
  changedLines,
  acceptLine,
  endOf,
  compareRequests,
  requestChoice,
  RESTART_SETTINGS,
} from "../../src/logic";

describe("resolveServerBinary", () => {
  const exists = (set: string[]) => (p: string) => set.includes(p);

  it("uses pema.serverPath when it exists", () => {
    const r = resolveServerBinary({
      serverPath: "/opt/pema/bin/pema",
      extensionPath: "/ext",
      pathEnv: "/usr/bin",
      platform: "linux",
      isExecutable: exists(["/opt/pema/bin/pema", "/ext/bin/pema", "/usr/bin/pema"]),
    });
    assert.deepEqual(r, { ok: true, path: "/opt/pema/bin/pema", source: "setting" });
  });

  it("expands ~ in pema.serverPath", () => {
    const r = resolveServerBinary({
      serverPath: "~/bin/pema",
      homeDir: "/home/ann",
      platform: "linux",
      isExecutable: exists(["/home/ann/bin/pema"]),
    });
    assert.equal(r.ok && r.path, "/home/ann/bin/pema");
  });

  it("refuses a pema.serverPath that does not exist, without falling back", () => {
    const r = resolveServerBinary({
      serverPath: "/nope/pema",
      extensionPath: "/ext",
      pathEnv: "/usr/bin",
      platform: "linux",
      isExecutable: exists(["/usr/bin/pema"]),
    });
    assert.equal(r.ok, false);
    assert.match(!r.ok ? r.message : "", /pema\.serverPath \(\/nope\/pema\)/);
  });

  it("prefers the bundled binary to PATH", () => {
    const r = resolveServerBinary({
      extensionPath: "/ext",
      pathEnv: "/usr/local/bin:/usr/bin",
      platform: "linux",
      isExecutable: exists(["/ext/bin/pema", "/usr/bin/pema"]),
    });
    assert.deepEqual(r, { ok: true, path: "/ext/bin/pema", source: "bundled" });
  });

  it("searches PATH in order", () => {
    const r = resolveServerBinary({
      serverPath: "  ",
      extensionPath: "/ext",
      pathEnv: "/a::/b:/c",
      platform: "linux",
      isExecutable: exists(["/b/pema", "/c/pema"]),
    });
    assert.deepEqual(r, { ok: true, path: "/b/pema", source: "PATH" });
  });

  it("says how to fix a missing binary", () => {
    const r = resolveServerBinary({ extensionPath: "/ext", pathEnv: "/a", platform: "linux", isExecutable: () => false });
    assert.equal(r.ok, false);
    if (!r.ok) {
      assert.match(r.message, /not found/);
      assert.match(r.message, /cargo install --path \./);
      assert.match(r.message, /pema\.serverPath/);
      assert.deepEqual(r.tried, ["/ext/bin/pema", "/a/pema"]);
    }
  });
});

describe("settings", () => {
  it("maps mode and lambdaMax to initializationOptions", () => {
    assert.deepEqual(settingsToInitOptions({ mode: "fixed", lambdaMax: 0.7 }), { mode: "fixed", lambdaMax: 0.7 });
    assert.deepEqual(settingsToInitOptions({ mode: "gu", lambdaMax: null }), { mode: "gu" });
    assert.deepEqual(settingsToInitOptions({ mode: "bogus" }), {});
    // "default": no mode sent, so the daemon uses the adapter's own choice.
    assert.deepEqual(settingsToInitOptions({ mode: "default" }), {});
    assert.deepEqual(settingsToInitOptions({ lambdaMax: 3 }), { lambdaMax: 1 });
    assert.deepEqual(settingsToInitOptions({ lambdaMax: Number.NaN }), {});
  });

  it("passes pema.modelPath as PEMA_MODEL", () => {
    const env = serverEnv({ modelPath: "~/m.gguf" }, { PATH: "/usr/bin" }, "/home/ann");
    assert.equal(env.PEMA_MODEL, "/home/ann/m.gguf");
    assert.equal(env.PATH, "/usr/bin");
    assert.equal(serverEnv({ modelPath: "" }, { PEMA_MODEL: "/x" }).PEMA_MODEL, "/x");
  });

  it("builds the document selector", () => {
    assert.deepEqual(documentSelector(["markdown"]), [{ scheme: "file", language: "markdown" }]);
    assert.deepEqual(documentSelector(["markdown", "*"]), [{ scheme: "file" }]);
    assert.equal(documentSelector([]).length, 2);
  });
});

describe("rewrite requests", () => {
  const range = { start: { line: 1, character: 0 }, end: { line: 1, character: 5 } };
  it("sends uri + range for synced documents", () => {
    const p = buildRewriteParams({
      uri: "file:///w/notes.md",
      range,
      selectedText: "hello",
      synced: true,
      mode: "gu",
      partialResultToken: "t1",
    });
    assert.deepEqual(p, { uri: "file:///w/notes.md", range, mode: "gu", partialResultToken: "t1" });
  });
  it("sends text + workspace for documents the daemon does not see", () => {
    const p = buildRewriteParams({ uri: "file:///w/a.rs", range, selectedText: "hello", synced: false, fsPath: "/w/a.rs" });
    assert.deepEqual(p, { text: "hello", workspace: "/w" });
  });
  it("accumulates partial results", () => {
    const p = new PartialText();
    p.push({ delta: "Let" });
    p.push({ delta: " not" });
    assert.equal(p.text, "Let not");
    p.push({ delta: " your", text: "Let not your" });
    assert.equal(p.text, "Let not your");
    p.push(null);
    assert.equal(p.updates, 3);
  });
});

describe("applyRewrite (the preview's text)", () => {
  it("replaces UTF-16 ranges", () => {
    const r = { start: { line: 1, character: 4 }, end: { line: 1, character: 6 } };
    assert.equal(applyRewrite("one\ntwo 🙂 three\nfour", r, "x\ny"), "one\ntwo x\ny three\nfour");
  });
  it("handles CRLF, CJK, no final newline and out-of-range positions", () => {
    const t = "a\r\nbc\r\n";
    assert.equal(applyRewrite(t, { start: { line: 1, character: 0 }, end: { line: 1, character: 99 } }, "XY"), "a\r\nXY\r\n");
    assert.equal(applyRewrite("ab", { start: { line: 5, character: 0 }, end: { line: 6, character: 0 } }, "!"), "ab!");
    const cjk = "一二三\r\nlast 😀 line";
    assert.equal(applyRewrite(cjk, { start: { line: 1, character: 5 }, end: { line: 1, character: 7 } }, "🙂"), "一二三\r\nlast 🙂 line");
    assert.equal(applyRewrite(cjk, { start: { line: 0, character: 1 }, end: { line: 0, character: 2 } }, "x"), "一x三\r\nlast 😀 line");
  });
});

describe("status bar", () => {
  it("parses pema progress tokens", () => {
    assert.equal(progressTask("pema/training/5"), "training");
    assert.equal(progressTask("pema/memory/12"), "memory");
    assert.equal(progressTask("rw-7"), undefined);
    assert.equal(progressTask(3), undefined);
  });

  it("shows training 40%", () => {
    let s = applyProgress(undefined, "pema/training/5", {
      kind: "begin",
      title: "pema: training the adapter",
      message: "1650 entries",
      percentage: 0,
    });
    assert.equal(s && progressText(s), "pema: training 0%");
    s = applyProgress(s, "pema/training/5", { kind: "report", message: "epoch 3", percentage: 40 });
    assert.equal(statusBarText(undefined, [s!]), "pema: training 40%");
    s = applyProgress(s, "pema/training/5", { kind: "end", message: "held-out loss 2.364" });
    assert.equal(s!.done, true);
    assert.equal(applyProgress(undefined, "other", { kind: "begin" }), undefined);
  });

  it("names every task", () => {
    const p = (task: string, percentage?: number): ProgressState => ({ task, percentage, done: false });
    assert.equal(progressText(p("paraphrase", 12.4)), "pema: paraphrasing 12%");
    assert.equal(progressText(p("memory")), "pema: building memory…");
    // training wins over other running work
    assert.equal(statusBarText(undefined, [p("memory", 10), p("training", 40)]), "pema: training 40%");
  });

  it("shows the adapter state and memory entries", () => {
    const st = (state: string, extra: object = {}): DaemonStatus => ({
      workspaces: [{ root: "/w", memory: { entries: 1650 }, adapter: { state, available: state === "ready", ...extra } }],
    });
    assert.equal(statusBarText(undefined, []), "pema: starting…");
    assert.equal(statusBarText({ workspaces: [] }, []), "pema: no workspace");
    assert.equal(statusBarText(st("ready"), []), "pema: ready · 1650 entries");
    assert.equal(statusBarText(st("ready", { stale: true }), []), "pema: ready (retraining) · 1650 entries");
    assert.equal(statusBarText(st("building"), []), "pema: building memory");
    assert.equal(statusBarText(st("none"), []), "pema: no examples yet");
    assert.equal(statusBarText(st("training"), []), "pema: training · 1650 entries");
    assert.equal(allReady(st("ready")), true);
    assert.equal(allReady(st("training")), false);
    assert.equal(allReady({ workspaces: [] }), false);
  });

  it("picks the workspace of the active file", () => {
    const status: DaemonStatus = {
      workspaces: [
        { root: "/a", adapter: { state: "none" } },
        { root: "/b", adapter: { state: "ready", available: true }, memory: { entries: 3 } },
      ],
    };
    assert.equal(statusBarText(status, [], "/b/notes.md"), "pema: ready · 3 entries");
    assert.equal(statusBarText(status, [], "/bb/notes.md"), "pema: no examples yet");
  });
});

import { formatFiles, isForbiddenRoot, optedInRoots, rootOf, scopedSelector } from "../../src/logic";

describe("opt-in", () => {
  it("never takes the home folder or / as a root", () => {
    assert.equal(isForbiddenRoot("/", "/home/ann"), true);
    assert.equal(isForbiddenRoot("/home/ann/", "/home/ann"), true);
    assert.equal(isForbiddenRoot("/home/ann/notes", "/home/ann"), false);
    assert.deepEqual(
      optedInRoots(["/home/ann/.pema.toml", "/.pema.toml", "/home/ann/notes/.pema.toml", "/home/ann/b/.pema.toml", "/home/ann/notes/.pema.toml"], "/home/ann"),
      ["/home/ann/b", "/home/ann/notes"],
    );
  });
  it("finds the innermost opted-in root of a file, none outside", () => {
    const roots = ["/w", "/w/sub", "/x"];
    assert.equal(rootOf("/w/sub/a.md", roots), "/w/sub");
    assert.equal(rootOf("/w/a.md", roots), "/w");
    assert.equal(rootOf("/wx/a.md", roots), undefined);
    assert.equal(rootOf(undefined, roots), undefined);
  });
  it("syncs only documents under opted-in roots", () => {
    assert.deepEqual(scopedSelector(["markdown"], []), []);
    assert.deepEqual(scopedSelector(["markdown"], ["/w"]), [{ scheme: "file", language: "markdown", pattern: "/w/**" }]);
  });
  it("formats pema/files", () => {
    const lines = formatFiles({
      root: "/w",
      learned: [{ path: "/w/a.md", kind: "corpus", units: 3, pairs: 0, badLines: 0 }],
      waiting: [],
      skipped: [{ path: "/w/.git", reason: "hidden (name starts with a dot)" }],
      truncated: false,
    });
    assert.ok(lines.includes("  a.md  (corpus, 3 units)"), lines.join("\n"));
    assert.ok(lines.includes("  .git: hidden (name starts with a dot)"), lines.join("\n"));
  });
});

describe("pema/statusChanged", () => {
  const status: DaemonStatus = {
    model: "Gemma",
    workspaces: [
      { root: "/a", memory: { entries: 10 }, adapter: { state: "building", available: false, stale: false, heldOutLoss: null } },
      { root: "/b", adapter: { state: "ready", available: true, stale: false } },
    ],
  };

  it("updates the changed workspace only, keeping what the change does not carry", () => {
    const change: StatusChange = {
      root: "/a",
      unitsPending: 0,
      memory: { entries: 40, pairs: 12 },
      adapter: { state: "ready", available: true, stale: false, heldOutLoss: 2.5, trainings: 1 },
      errors: [],
      configError: null,
    };
    const next = applyStatusChange(status, change);
    assert.equal(next.model, "Gemma");
    assert.equal(next.workspaces!.length, 2);
    assert.equal(next.workspaces![0].adapter!.state, "ready");
    assert.equal(next.workspaces![0].memory!.entries, 40);
    assert.deepEqual(next.workspaces![1], status.workspaces![1]);
    assert.equal(statusBarText(next, [], "/a/notes.md"), "pema: ready · 40 entries");
    assert.equal(allReady(next), true);
    // the status it was applied to is unchanged
    assert.equal(status.workspaces![0].adapter!.state, "building");
  });

  it("adds a workspace it has not seen, also before any pema/status", () => {
    const next = applyStatusChange(undefined, { root: "/c", adapter: { state: "training", available: false } });
    assert.equal(next.workspaces!.length, 1);
    assert.equal(statusBarText(next, [], "/c/x.md"), "pema: training");
    const more = applyStatusChange(status, { root: "/c", adapter: { state: "none" } });
    assert.deepEqual(more.workspaces!.map((w) => w.root), ["/a", "/b", "/c"]);
  });
});

describe("strength presets and retry", () => {
  it("maps lighter and stronger to a fixed mix (the Neovim presets' numbers)", () => {
    assert.deepEqual(PRESETS.lighter, { mode: "fixed", options: { lambdaFixed: 0.3 } });
    assert.deepEqual(PRESETS.stronger, { mode: "fixed", options: { lambdaFixed: 0.9 } });
    const p = buildRewriteParams({
      uri: "file:///w/a.md",
      range: { start: { line: 0, character: 0 }, end: { line: 0, character: 3 } },
      selectedText: "abc",
      synced: true,
      mode: PRESETS.stronger.mode,
      options: PRESETS.stronger.options,
    });
    assert.equal(p.mode, "fixed");
    assert.deepEqual(p.options, { lambdaFixed: 0.9 });
    const plain = buildRewriteParams({ uri: "file:///w/a.md", range: p.range!, selectedText: "abc", synced: true, options: {} });
    assert.equal(plain.options, undefined);
  });

  it("retries with sampling and a new seed, keeping the mode and mix", () => {
    const r = retryChoice(PRESETS.lighter, 1234.7);
    assert.deepEqual(r, {
      mode: "fixed",
      options: { lambdaFixed: 0.3, temperature: RETRY_TEMPERATURE, topP: RETRY_TOP_P, seed: 1234 },
    });
    assert.ok(RETRY_TOP_P > 0 && RETRY_TOP_P <= 1, "a top-p the daemon accepts");
    assert.ok(RETRY_TEMPERATURE >= 0.05 && RETRY_TEMPERATURE <= 5, "a temperature the daemon accepts");
    assert.deepEqual(retryChoice(undefined, 7), {
      mode: undefined,
      options: { temperature: RETRY_TEMPERATURE, topP: RETRY_TOP_P, seed: 7 },
    });
    // the preset itself is not changed
    assert.deepEqual(PRESETS.lighter.options, { lambdaFixed: 0.3 });
  });
});

describe("what was learned (pema/examples)", () => {
  it("shows each pair as source → target, saying which are pseudo-pairs", () => {
    const page = formatExamples("/w", {
      examples: [
        { source: "Do not be troubled.", target: "Let not your heart be troubled.", pseudo: true },
        { source: "Give ear.", target: "Hearken unto me.", pseudo: false },
      ],
    });
    assert.match(page, /^# What pema learned from \/w\n/);
    assert.match(page, /## 1\. pseudo-pair \(from your prose\)\n\n> Do not be troubled\.\n\n→\n\n> Let not your heart be troubled\.\n/);
    assert.match(page, /## 2\. pair \(from a pairs file\)/);
    assert.match(formatExamples("/w", { examples: [] }), /No pairs yet/);
  });
});

describe("connecting to a running pema serve", () => {
  it("parses the addresses pema serve --listen takes, and refuses others", () => {
    assert.deepEqual(parseAddress("127.0.0.1:7777"), { host: "127.0.0.1", port: 7777 });
    assert.deepEqual(parseAddress("7777"), { host: "127.0.0.1", port: 7777 });
    assert.deepEqual(parseAddress("[::1]:7777"), { host: "::1", port: 7777 });
    assert.deepEqual(parseAddress("localhost:80"), { host: "localhost", port: 80 });
    assert.deepEqual(parseAddress("unix:/run/user/1000/pema.sock"), { path: "/run/user/1000/pema.sock" });
    for (const bad of ["", "unix:", "host", "host:0", "host:70000", "http://x:1"]) {
      assert.ok("error" in parseAddress(bad), bad);
    }
  });

  it("reads the token from the setting's file, else the daemon's own file", () => {
    const files: Record<string, string> = { "/home/ann/.cache/pema/serve.token": "own-token-1234567890\n", "/secret/t": "given\r\nrest" };
    const read = (p: string) => {
      if (!(p in files)) throw new Error(`ENOENT ${p}`);
      return files[p];
    };
    assert.equal(defaultTokenFile({}, "/home/ann"), "/home/ann/.cache/pema/serve.token");
    assert.equal(defaultTokenFile({ XDG_CACHE_HOME: "/c" }, "/home/ann"), "/c/pema/serve.token");
    assert.equal(defaultTokenFile({ XDG_CACHE_HOME: "rel" }, "/home/ann"), "/home/ann/.cache/pema/serve.token");
    assert.deepEqual(readToken("", {}, "/home/ann", read), { token: "own-token-1234567890", file: "/home/ann/.cache/pema/serve.token" });
    assert.deepEqual(readToken("/secret/t", {}, "/home/ann", read), { token: "given", file: "/secret/t" });
    // No default file (a unix socket of a daemon without a token): no token, no error.
    assert.deepEqual(readToken("", { XDG_CACHE_HOME: "/none" }, "/home/ann", read), { file: "/none/pema/serve.token" });
    // A file the user named must exist.
    const r = readToken("~/missing", {}, "/home/ann", read);
    assert.equal(r.token, undefined);
    assert.match(r.error ?? "", /cannot read the token file \/home\/ann\/missing/);
  });
});

describe("accepting one line of a rewrite", () => {
  it("lists the changed lines, none when the line counts differ", () => {
    assert.deepEqual(changedLines("a\nb\nc", "a\nB\nC"), [1, 2]);
    assert.deepEqual(changedLines("a\r\nb", "a\r\nb"), []);
    assert.equal(changedLines("a\nb", "a b"), undefined);
  });

  it("replaces only that line, keeping every line end", () => {
    assert.equal(acceptLine("one\r\ntwo\r\nthree", "One\r\nTwo\r\nThree", 1), "one\r\nTwo\r\nthree");
    assert.equal(acceptLine("one\ntwo\n", "One\nTwo\n", 0), "One\ntwo\n");
    assert.equal(acceptLine("one\ntwo", "One", 0), "one\ntwo");
    assert.equal(acceptLine("one\ntwo", "One\nTwo", 5), "one\ntwo");
    // Accepting every changed line gives the rewrite.
    let t = "a\nb\nc";
    for (const n of changedLines(t, "A\nb\nC") ?? []) t = acceptLine(t, "A\nb\nC", n);
    assert.equal(t, "A\nb\nC");
  });

  it("finds the end of the selection that now holds a text", () => {
    assert.deepEqual(endOf({ line: 3, character: 4 }, "abc"), { line: 3, character: 7 });
    assert.deepEqual(endOf({ line: 3, character: 4 }, "abc\r\nde"), { line: 4, character: 2 });
    assert.deepEqual(endOf({ line: 0, character: 0 }, "x\n"), { line: 1, character: 0 });
  });
});

describe("compare and the log level", () => {
  it("compares the plain model with the settings' mode", () => {
    assert.deepEqual(compareRequests(undefined), [
      { label: "plain model", mode: "plain" },
      { label: "pema (default)", mode: undefined },
    ]);
    assert.equal(compareRequests("gu")[1].mode, "gu");
  });

  it("passes pema.logLevel to the daemon as PEMA_LOG", () => {
    assert.equal(serverEnv({ logLevel: "debug" }, {}).PEMA_LOG, "warn,pema=debug");
    assert.equal(serverEnv({ logLevel: "error" }, {}).PEMA_LOG, "error");
    assert.equal(serverEnv({ logLevel: "loud" }, { PEMA_LOG: "info" }).PEMA_LOG, "info");
    assert.equal(serverEnv({}, {}).PEMA_LOG, undefined);
  });
});

describe("mode and λ per request", () => {
  it("sends the settings' mode and λ_max with every rewrite, a preset's or retry's own first", () => {
    assert.deepEqual(requestChoice({ mode: "default" }, {}), { mode: undefined });
    assert.deepEqual(requestChoice({ mode: "gu", lambdaMax: 0.7 }, {}), { mode: "gu", options: { lambdaMax: 0.7 } });
    assert.deepEqual(requestChoice({ mode: "gu", lambdaMax: 0.7 }, PRESETS.lighter), {
      mode: "fixed",
      options: { lambdaMax: 0.7, lambdaFixed: 0.3 },
    });
    assert.deepEqual(requestChoice({ mode: "plain" }, retryChoice(undefined, 5)), {
      mode: "plain",
      options: { temperature: RETRY_TEMPERATURE, topP: RETRY_TOP_P, seed: 5 },
    });
  });

  it("does not restart the daemon for mode and λ, which apply to the next rewrite", () => {
    assert.ok(!RESTART_SETTINGS.includes("pema.mode") && !RESTART_SETTINGS.includes("pema.lambdaMax"));
    assert.ok(RESTART_SETTINGS.includes("pema.logLevel") && RESTART_SETTINGS.includes("pema.connect.address"));
  });
});
