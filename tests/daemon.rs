//! The daemon end to end: the real `pema` binary, the real model, a workspace of real files,
//! and a JSON-RPC client over stdio (`pema lsp`) and TCP (`pema serve`).

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use common::rpc::{self, file_uri, Rpc};
use serde_json::{json, Value};

const LONG: Duration = Duration::from_secs(900);

/// Prose in the style to learn (the archaic English of the shipped Bible targets), a pairs file,
/// and files pema must skip or ignore.
fn make_workspace(dir: &Path) {
    let targets: Vec<String> = common::bible_pairs(60)
        .into_iter()
        .map(|p| p.target)
        .collect();
    let train = common::bible_train_pairs(40);
    std::fs::create_dir_all(dir.join("style")).unwrap();
    std::fs::create_dir_all(dir.join("drafts")).unwrap();
    std::fs::write(
        dir.join(".pema.toml"),
        "# retrain soon after a change, and skip files over 20 kB\nretrain_after_seconds = 1.0\nmax_file_bytes = 20000\n",
    )
    .unwrap();
    let md = format!(
        "# Sayings\n\n{}\n\n```\nlet code = \"not prose\";\n```\n\n{}\n",
        targets[..4].join(" "),
        targets[4..8].join("\n")
    );
    std::fs::write(dir.join("style/sayings.md"), md).unwrap();
    std::fs::write(dir.join("letters.txt"), targets[8..11].join("\n\n")).unwrap();
    common::write_pairs(&dir.join("examples.pairs.jsonl"), &train);
    std::fs::write(dir.join("notes.txt"), b"binary\0\x01\x02 data").unwrap();
    std::fs::write(
        dir.join("latin1.txt"),
        b"caf\xe9 au lait, s'il vous pla\xeet",
    )
    .unwrap();
    std::fs::write(dir.join("huge.md"), "Words and more words. ".repeat(1500)).unwrap();
    std::fs::write(dir.join(".gitignore"), "drafts/\n").unwrap();
    std::fs::write(
        dir.join("drafts/secret.md"),
        "A draft that must never be read by pema.",
    )
    .unwrap();
}

fn progress_of<'a>(seen: &'a [Value], task: &str) -> Vec<&'a Value> {
    seen.iter()
        .filter(|m| {
            m["method"] == "$/progress"
                && m["params"]["token"]
                    .as_str()
                    .is_some_and(|t| t.starts_with(&format!("pema/{task}/")))
        })
        .collect()
}

fn kinds(msgs: &[&Value]) -> Vec<String> {
    msgs.iter()
        .map(|m| {
            m["params"]["value"]["kind"]
                .as_str()
                .unwrap_or("")
                .to_string()
        })
        .collect()
}

fn wait_ready(c: &mut Rpc) -> Value {
    c.wait_status(LONG, |w| {
        w["adapter"]["state"] == "ready"
            && w["unitsPending"] == 0
            && w["memory"]["builds"].as_u64() > Some(0)
    })
}

fn error_code(e: &Value) -> i64 {
    e["code"].as_i64().unwrap_or(0)
}

#[test]
fn lsp_over_stdio_learns_the_workspace_and_rewrites() {
    let ws = tempfile::tempdir().unwrap();
    let cache = tempfile::tempdir().unwrap();
    make_workspace(ws.path());
    let root = ws.path().canonicalize().unwrap();
    let (mut child, mut c) = rpc::lsp(cache.path());

    let init = c.initialize(&[&root], json!({})).expect("initialize");
    let caps = &init["capabilities"];
    assert_eq!(
        caps["codeActionProvider"]["codeActionKinds"],
        json!(["refactor.rewrite"])
    );
    assert_eq!(caps["codeActionProvider"]["resolveProvider"], json!(true));
    assert_eq!(
        caps["executeCommandProvider"]["commands"],
        json!(["pema.rewrite"])
    );

    eprintln!("== Progress: style words taken out, then the memory and the first training");
    // Progress: making pseudo-sources, memory and training each begin, report and end. Taking a
    // unit's style words out costs about half of its memory build, so every unit has its
    // pseudo-source before the first build begins: the first adapter learns the style.
    let ended = |c: &mut Rpc, task: &str| {
        let prefix = format!("pema/{task}/");
        c.wait_for(0, LONG, |m| {
            m["method"] == "$/progress"
                && m["params"]["token"]
                    .as_str()
                    .is_some_and(|t| t.starts_with(&prefix))
                && m["params"]["value"]["kind"] == "end"
        })
    };
    let first_training = ended(&mut c, "training");
    let paraphrased = ended(&mut c, "paraphrase");
    let first_build = c.seen[..first_training]
        .iter()
        .position(|m| {
            m["method"] == "$/progress"
                && m["params"]["token"]
                    .as_str()
                    .is_some_and(|t| t.starts_with("pema/memory/"))
        })
        .expect("a memory build before the first training");
    assert!(
        paraphrased < first_build,
        "the first memory build began before the pseudo-sources were made"
    );
    c.wait_status(LONG, |w| w["adapter"]["available"] == true);
    for task in ["paraphrase", "memory", "training"] {
        let k = kinds(&progress_of(&c.seen, task));
        assert_eq!(
            k.first().map(String::as_str),
            Some("begin"),
            "{task}: {k:?}"
        );
        assert!(k.iter().any(|k| k == "report"), "{task}: {k:?}");
        assert!(k.iter().any(|k| k == "end"), "{task}: {k:?}");
    }
    let creates = c
        .seen
        .iter()
        .filter(|m| m["method"] == "window/workDoneProgress/create")
        .count();
    assert!(
        creates >= 3,
        "progress tokens are created first ({creates} created)"
    );

    let st = wait_ready(&mut c);
    assert_eq!(st["root"], json!(root));
    assert_eq!(
        (st["corpusFiles"].as_u64(), st["pairsFiles"].as_u64()),
        (Some(2), Some(1)),
        "{st:#}"
    );
    assert!(st["units"].as_u64().unwrap() >= 8, "{st:#}");
    assert!(st["memory"]["entries"].as_u64().unwrap() > 500, "{st:#}");
    assert!(st["adapter"]["heldOutLoss"].as_f64().unwrap().is_finite());
    let skipped: Vec<(String, String)> = st["skipped"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["path"].as_str().unwrap().to_string(),
                s["reason"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    let reason = |name: &str| {
        skipped
            .iter()
            .find(|(p, _)| p.ends_with(name))
            .map(|(_, r)| r.clone())
            .unwrap_or_else(|| panic!("{name} not reported as skipped: {skipped:?}"))
    };
    assert!(reason("notes.txt").contains("binary"));
    assert!(reason("latin1.txt").contains("UTF-8"));
    assert!(reason("huge.md").contains("limit"));
    assert!(
        !skipped.iter().any(|(p, _)| p.contains("drafts")),
        "ignored files are not even looked at"
    );
    // The state lives in the cache folder, not in the user's tree.
    assert!(st["stateDir"]
        .as_str()
        .unwrap()
        .starts_with(&cache.path().display().to_string()));
    assert_eq!(
        std::fs::read_dir(&root).unwrap().count(),
        9,
        "the daemon wrote into the workspace"
    );

    eprintln!("== A rewrite streams");
    // A rewrite streams its text as partial results.
    let source = "Do not be troubled in your heart: have faith in God and have faith in me.";
    let r = c
        .call(
            "pema/rewrite",
            json!({"text": source, "partialResultToken": "p1"}),
        )
        .expect("pema/rewrite");
    let text = r["text"].as_str().unwrap();
    assert!(
        // No mode asked for: the adapter's own choice (fixed λ or GU), never the plain model.
        !text.is_empty()
            && (r["mode"] == "gu" || r["mode"] == "fixed")
            && r["tokens"].as_u64() > Some(0),
        "{r:#}"
    );
    let partials: Vec<&Value> = c
        .seen
        .iter()
        .filter(|m| m["method"] == "$/progress" && m["params"]["token"] == "p1")
        .collect();
    assert!(partials.len() > 1, "partial results stream");
    let streamed: String = partials
        .iter()
        .map(|m| m["params"]["value"]["delta"].as_str().unwrap())
        .collect();
    assert_eq!(streamed.trim(), text);

    eprintln!("== The CLI rewrites a selection of several lines as the daemon does");
    // One rewrite path (decode::rewrite_text): line by line, blank lines and indentation kept,
    // the same defaults (the adapter's own choice) whoever asks.
    let selection = "Do not be troubled in your heart.\n\n  - Have faith in God, and have faith in me.\nThe last line.";
    let daemon = c
        .call("pema/rewrite", json!({"text": selection}))
        .expect("pema/rewrite of several lines");
    let adapter = Path::new(st["stateDir"].as_str().unwrap()).join("adapter.safetensors");
    let cli = rpc::pema_command(cache.path())
        .args(["rewrite", "--json", "--adapter"])
        .arg(&adapter)
        .arg(selection)
        .output()
        .expect("pema rewrite");
    assert!(cli.status.success(), "{cli:?}");
    let cli: Value = serde_json::from_slice(&cli.stdout).expect("pema rewrite --json");
    assert_eq!(
        cli["text"], daemon["text"],
        "CLI {cli:#}\ndaemon {daemon:#}"
    );
    assert_eq!(cli["mode"], daemon["mode"]);
    let lines: Vec<&str> = daemon["text"].as_str().unwrap().split('\n').collect();
    assert_eq!(lines.len(), 4, "{lines:?}");
    assert!(lines[1].is_empty() && lines[2].starts_with("  ") && !lines[3].is_empty());

    eprintln!("== The code action is offered");
    // The code action is offered on a selection and resolved lazily to an edit.
    let doc = root.join("letters.txt");
    let uri = file_uri(&doc);
    let first_line = std::fs::read_to_string(&doc)
        .unwrap()
        .lines()
        .next()
        .unwrap()
        .to_string();
    let range = json!({"start": {"line": 0, "character": 0}, "end": {"line": 0, "character": first_line.encode_utf16().count()}});
    let actions = c
        .call(
            "textDocument/codeAction",
            json!({"textDocument": {"uri": uri}, "range": range, "context": {"diagnostics": []}}),
        )
        .unwrap();
    let action = &actions[0];
    assert_eq!(action["kind"], "refactor.rewrite");
    assert_eq!(action["title"], "Rewrite in workspace style");
    assert!(action.get("edit").is_none(), "computed only when resolved");
    let resolved = c.call("codeAction/resolve", action.clone()).unwrap();
    let edit = &resolved["edit"]["changes"][&uri][0];
    assert_eq!(edit["range"], range);
    assert!(!edit["newText"].as_str().unwrap().is_empty());
    // No action on an empty selection or outside the workspace.
    let empty = json!({"start": {"line": 0, "character": 3}, "end": {"line": 0, "character": 3}});
    let none = c
        .call(
            "textDocument/codeAction",
            json!({"textDocument": {"uri": uri}, "range": empty, "context": {"diagnostics": []}}),
        )
        .unwrap();
    assert!(none.is_null() || none == json!([]), "{none}");

    eprintln!("== The command applies");
    // The command applies its edit through workspace/applyEdit.
    let from = c.seen.len();
    let done = c
        .call(
            "workspace/executeCommand",
            json!({"command": "pema.rewrite", "arguments": [{"uri": uri, "range": range}]}),
        )
        .unwrap();
    assert_eq!(done["applied"], json!(true));
    let i = c.wait_for(from, Duration::from_secs(5), |m| {
        m["method"] == "workspace/applyEdit"
    });
    assert_eq!(
        c.seen[i]["params"]["edit"]["changes"][&uri][0]["newText"],
        done["text"]
    );

    eprintln!("== Bad input gets errors");
    // Bad input gets errors and the daemon goes on serving.
    let from = c.seen.len();
    c.send_raw(b"Content-Length: 9\r\n\r\n{\"bad\": }");
    let i = c.wait_for(from, Duration::from_secs(10), |m| m.get("error").is_some());
    assert_eq!(error_code(&c.seen[i]["error"]), -32700);
    assert_eq!(
        error_code(&c.call("pema/nonsense", json!({})).unwrap_err()),
        -32601
    );
    assert_eq!(
        error_code(&c.call("pema/rewrite", json!({"text": 5})).unwrap_err()),
        -32602
    );
    let e = c.call("pema/rewrite", json!({})).unwrap_err();
    assert_eq!(error_code(&e), -32602);
    assert!(e["message"].as_str().unwrap().contains("text"), "{e}");
    let e = c
        .call("pema/rewrite", json!({"text": "x y z", "mode": "loud"}))
        .unwrap_err();
    assert!(
        e["message"]
            .as_str()
            .unwrap()
            .contains("gu, fixed or plain"),
        "{e}"
    );
    let outside = tempfile::tempdir().unwrap();
    std::fs::write(
        outside.path().join("a.txt"),
        "Some text outside the workspace.",
    )
    .unwrap();
    let e = c
        .call(
            "pema/rewrite",
            json!({"uri": file_uri(&outside.path().join("a.txt")), "range": range}),
        )
        .unwrap_err();
    assert!(
        e["message"]
            .as_str()
            .unwrap()
            .contains("inside a workspace this connection opened"),
        "{e}"
    );
    c.call("pema/status", json!({})).expect("still serving");

    eprintln!("== Editing one file");
    // Editing one file recomputes only that file's new unit.
    let before = c.call("pema/status", json!({})).unwrap()["workspaces"][0].clone();
    let added =
        "And the king said unto his servants, Behold, the day cometh when all shall be made known.";
    let mut letters = std::fs::read_to_string(&doc).unwrap();
    letters.push_str("\n\n");
    letters.push_str(added);
    std::fs::write(&doc, letters).unwrap();
    let builds = before["memory"]["builds"].as_u64().unwrap();
    let after = c.wait_status(LONG, |w| {
        w["memory"]["builds"].as_u64() > Some(builds) && w["unitsPending"] == 0
    });
    assert_eq!(
        after["filesRead"].as_u64(),
        before["filesRead"].as_u64().map(|n| n + 1),
        "{after:#}"
    );
    assert_eq!(
        after["unitsParaphrased"].as_u64(),
        before["unitsParaphrased"].as_u64().map(|n| n + 1)
    );
    let last = &after["memory"]["lastBuild"];
    // The new unit's pair is the only one computed (a last build that swaps the unit's
    // placeholder (unit → unit) for its paraphrase also removes that placeholder).
    assert_eq!(last["pairsComputed"].as_u64(), Some(1), "{last:#}");
    assert!(last["pairsRemoved"].as_u64() <= Some(1), "{last:#}");
    assert_eq!(
        last["pairsReused"].as_u64(),
        before["memory"]["pairs"].as_u64(),
        "{last:#}"
    );

    eprintln!("== A cancelled rewrite");
    // A cancelled rewrite stops within a token.
    let long = common::bible_pairs(8)
        .iter()
        .map(|p| p.source.clone())
        .collect::<Vec<_>>()
        .join(" ");
    let id = c.request(
        "pema/rewrite",
        json!({"text": long, "mode": "plain", "partialResultToken": "c1"}),
    );
    let first = c.wait_for(0, Duration::from_secs(300), |m| {
        m["params"]["token"] == "c1"
    });
    c.notify("$/cancelRequest", json!({"id": id}));
    let cancelled_at = c.seen.len();
    let e = c.response(id, Duration::from_secs(60)).unwrap_err();
    assert_eq!(error_code(&e), -32800, "{e}");
    let after_cancel = c.seen[cancelled_at..]
        .iter()
        .filter(|m| m["params"]["token"] == "c1")
        .count();
    assert!(
        after_cancel <= 1,
        "{after_cancel} tokens streamed after the cancel (first at {first})"
    );
    c.call("pema/status", json!({}))
        .expect("serving after a cancel");

    c.call("shutdown", Value::Null).unwrap();
    c.notify("exit", Value::Null);
    let status = child.wait().unwrap();
    assert!(status.success(), "pema lsp exits cleanly: {status}");
}

#[test]
fn serve_over_tcp_two_clients_and_restart_after_kill() {
    let ws = tempfile::tempdir().unwrap();
    let cache = tempfile::tempdir().unwrap();
    make_workspace(ws.path());
    let root = ws.path().canonicalize().unwrap();
    let (mut child, addr) = rpc::serve(cache.path(), &[]);
    assert!(
        addr.starts_with("127.0.0.1:"),
        "loopback by default: {addr}"
    );

    eprintln!("== Two clients, one workspace");
    // Two clients, one workspace, one daemon.
    let mut a = rpc::connect(&addr);
    let mut b = rpc::connect(&addr);
    a.initialize(&[], json!({})).unwrap();
    b.initialize(&[], json!({})).unwrap();
    let ra = a.call("pema/openWorkspace", json!({"path": root})).unwrap();
    let rb = b
        .call("pema/openWorkspace", json!({"path": root.join("style")}))
        .unwrap();
    assert_eq!(ra["root"], json!(root));
    assert_eq!(
        rb["root"],
        json!(root.join("style")),
        "a sub-folder can be a workspace of its own"
    );
    b.call("pema/closeWorkspace", json!({"path": root.join("style")}))
        .unwrap();
    b.call("pema/openWorkspace", json!({"path": root})).unwrap();
    let st = wait_ready(&mut a);
    let entries = st["memory"]["entries"].as_u64().unwrap();

    eprintln!("== Both ask at once");
    // Both ask at once; both are answered.
    let ia = a.request(
        "pema/rewrite",
        json!({"text": "And he said to them, Go into the town.", "workspace": root}),
    );
    let ib = b.request(
        "pema/rewrite",
        json!({"text": "Give ear to my words, O Lord.", "workspace": root, "mode": "fixed"}),
    );
    let ta = a.response(ia, LONG).unwrap();
    let tb = b.response(ib, LONG).unwrap();
    assert!(!ta["text"].as_str().unwrap().is_empty() && tb["mode"] == "fixed");
    assert!(!tb["text"].as_str().unwrap().is_empty());
    // Progress went to both clients of the workspace.
    for c in [&a, &b] {
        assert!(!progress_of(&c.seen, "training").is_empty());
    }

    eprintln!("== An edit starts a training");
    // An edit starts a training; the daemon is killed in the middle of it.
    let from = a.seen.len();
    let doc = root.join("letters.txt");
    let mut text = std::fs::read_to_string(&doc).unwrap();
    text.push_str("\n\nAnd the people answered and said, We will serve Jehovah our God all the days of our life.");
    std::fs::write(&doc, text).unwrap();
    a.wait_for(from, LONG, |m| {
        m["method"] == "$/progress"
            && m["params"]["token"]
                .as_str()
                .is_some_and(|t| t.starts_with("pema/training/"))
            && m["params"]["value"]["kind"] == "begin"
    });
    let during = a.call("pema/status", json!({})).unwrap()["workspaces"][0].clone();
    assert_eq!(during["adapter"]["state"], "training");
    let new_entries = during["memory"]["entries"].as_u64().unwrap();
    assert!(new_entries > entries, "the new sentence is in the memory");
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();

    eprintln!("== Restart: the memory");
    // Restart: the memory and the last good adapter load from disk; nothing is recomputed.
    let (mut child, addr) = rpc::serve(cache.path(), &[]);
    let mut c = rpc::connect(&addr);
    c.initialize(&[], json!({})).unwrap();
    c.call("pema/openWorkspace", json!({"path": root})).unwrap();
    let st = c.call("pema/status", json!({})).unwrap()["workspaces"][0].clone();
    assert_eq!(
        st["adapter"]["available"],
        json!(true),
        "the last good adapter serves at once: {st:#}"
    );
    assert_eq!(st["memory"]["entries"].as_u64(), Some(new_entries));
    let r = c
        .call(
            "pema/rewrite",
            json!({"text": "Let your hearts be strong.", "workspace": root}),
        )
        .unwrap();
    assert!(!r["text"].as_str().unwrap().is_empty());
    let st = c.wait_status(LONG, |w| w["memory"]["builds"].as_u64() > Some(0));
    assert_eq!(st["unitsParaphrased"], json!(0), "{st:#}");
    assert_eq!(
        st["memory"]["lastBuild"]["pairsComputed"],
        json!(0),
        "{st:#}"
    );
    assert_eq!(st["memory"]["entries"].as_u64(), Some(new_entries));
    // The stale adapter is retrained (warm) and becomes ready again.
    let st = wait_ready(&mut c);
    assert_eq!(st["adapter"]["stale"], json!(false));
    child.kill().unwrap();
    child.wait().unwrap();
}

/// After training, the daemon tries the style gate on the held-out pairs, as `pema train` does:
/// rewrites, which run as background work on the worker (the one session).
#[test]
fn a_trained_workspace_tries_the_style_gate() {
    let ws = tempfile::tempdir().unwrap();
    let cache = tempfile::tempdir().unwrap();
    let root = ws.path().canonicalize().unwrap();
    // Enough pairs for held-out ones, whose targets write words their sources never do
    // ("unto", "shall").
    common::write_pairs(
        &root.join("bible.pairs.jsonl"),
        &common::bible_train_pairs(120),
    );
    std::fs::write(root.join(".pema.toml"), "retrain_after_seconds = 1.0\n").unwrap();
    let (mut child, addr) = rpc::serve(cache.path(), &[]);
    let mut c = rpc::connect(&addr);
    c.initialize(&[], json!({})).unwrap();
    c.call("pema/openWorkspace", json!({"path": root})).unwrap();
    let st = wait_ready(&mut c);
    let state = Path::new(st["stateDir"].as_str().unwrap());
    let learned = pema::adapter::Adapter::load(&state.join("adapter.safetensors")).unwrap();
    let held = pema::memory::Memory::open(&state.join("memory"))
        .unwrap()
        .held_out_pairs(pema::memory::DEFAULT_HELD_OUT_PERCENT)
        .len();
    let info = learned.info();
    eprintln!(
        "marked words {:?}; {held} held-out pairs; decoding {:?}",
        info.marked_words, info.decoding
    );
    assert!(
        info.marked_words.iter().any(|w| w == "unto"),
        "{:?}",
        info.marked_words
    );
    assert!(held >= pema::eval::tune::MIN_PAIRS, "{held} held-out pairs");
    let d = info.decoding.expect("a chosen schedule");
    let [without, with] = d
        .style_gate_bleu
        .expect("the daemon did not try the style gate");
    assert!(without.is_finite() && with.is_finite());
    assert_eq!(d.style_gate.is_some(), with > without);
    // And the workspace rewrites with what it chose.
    let r = c
        .call(
            "pema/rewrite",
            json!({"text": "And he said to them, Go in peace.", "workspace": root}),
        )
        .unwrap();
    assert!(!r["text"].as_str().unwrap().is_empty());
    child.kill().unwrap();
    child.wait().unwrap();
}

#[test]
fn remote_listening_needs_a_flag_and_a_token() {
    let cache = tempfile::tempdir().unwrap();
    let out = rpc::pema_command(cache.path())
        .args(["serve", "--listen", "0.0.0.0:0"])
        .stderr(std::process::Stdio::piped())
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--allow-remote"));
    let out = rpc::pema_command(cache.path())
        .args(["serve", "--listen", "0.0.0.0:0", "--allow-remote"])
        .env_remove("PEMA_TOKEN")
        .stderr(std::process::Stdio::piped())
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stderr).contains("--token-file"));
    // A short token is refused.
    let out = rpc::pema_command(cache.path())
        .args(["serve", "--listen", "127.0.0.1:0"])
        .env("PEMA_TOKEN", "s3cret")
        .stderr(std::process::Stdio::piped())
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("at least 16"));

    // With a token file, a client must present its token.
    let file = cache.path().join("my.token");
    std::fs::write(&file, "correct-horse-battery-staple\n").unwrap();
    let (mut child, addr) = rpc::serve(cache.path(), &["--token-file", file.to_str().unwrap()]);
    let mut c = rpc::connect(&addr);
    let e = c.initialize(&[], json!({"token": null})).unwrap_err();
    assert!(e["message"].as_str().unwrap().contains("token"), "{e}");
    let e = c.call("pema/status", json!({})).unwrap_err();
    assert!(
        error_code(&e) != 0,
        "nothing is served before a good initialize"
    );
    let mut c = rpc::connect(&addr);
    c.initialize(&[], json!({"token": "correct-horse-battery-staple"}))
        .unwrap();
    c.call("pema/status", json!({})).unwrap();
    child.kill().unwrap();
    child.wait().unwrap();
}

/// Every TCP client authenticates, with the daemon's own token by default: a random token in a
/// 0600 file under the cache folder (0700); three failed attempts close the connection.
#[test]
fn tcp_clients_authenticate_with_the_daemons_token() {
    use std::os::unix::fs::PermissionsExt as _;
    let cache = tempfile::tempdir().unwrap();
    let (mut child, addr) = rpc::serve(cache.path(), &[]);
    let file = rpc::token_file(cache.path());
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&file), 0o600);
    assert_eq!(mode(&cache.path().join("pema")), 0o700);
    let token = std::fs::read_to_string(&file).unwrap().trim().to_string();
    assert_eq!(token.len(), 64, "32 random bytes in hex: {token}");

    // No token, a wrong one, and one that differs only in its last character: refused; the
    // third failure closes the connection.
    let mut c = rpc::connect(&addr);
    let mut wrong = token.clone();
    wrong.pop();
    wrong.push(if token.ends_with('0') { '1' } else { '0' });
    for (i, t) in [json!(null), json!("nope"), json!(wrong)]
        .into_iter()
        .enumerate()
    {
        let e = c.initialize(&[], json!({"token": t})).unwrap_err();
        assert!(e["message"].as_str().unwrap().contains("token"), "{e}");
        if i == 2 {
            assert!(e["message"].as_str().unwrap().contains("closing"), "{e}");
        }
    }
    let s = c.request("pema/status", json!({}));
    let closed = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        c.response(s, Duration::from_secs(10))
    }));
    assert!(
        matches!(closed, Err(_) | Ok(Err(_))),
        "after three failures the connection is closed"
    );

    // The right token works, and a restart reuses the same token file.
    let mut c = rpc::connect(&addr);
    c.initialize(&[], json!({})).unwrap();
    c.call("pema/status", json!({})).unwrap();
    child.kill().unwrap();
    child.wait().unwrap();
    let (mut child, _addr) = rpc::serve(cache.path(), &[]);
    assert_eq!(
        std::fs::read_to_string(&file).unwrap().trim(),
        token,
        "the token file is reused"
    );
    child.kill().unwrap();
    child.wait().unwrap();
}

/// A rewrite of `uri` + `range` reads only regular files inside a workspace the connection
/// opened, and says the same about every other path (existing or not); an explicit workspace
/// does not change that. Options are validated before anything is queued.
#[test]
fn uri_reads_stay_inside_the_connections_workspaces() {
    let ws = tempfile::tempdir().unwrap();
    let other = tempfile::tempdir().unwrap();
    let cache = tempfile::tempdir().unwrap();
    let root = ws.path().canonicalize().unwrap();
    std::fs::write(root.join("notes.txt"), "Give ear to my words, O Lord.\n").unwrap();
    let secret = other.path().join("secret.txt");
    std::fs::write(&secret, "The secret words of another folder.\n").unwrap();
    std::os::unix::fs::symlink(&secret, root.join("link.txt")).unwrap();
    std::os::unix::fs::symlink(other.path(), root.join("linkdir")).unwrap();
    let (mut child, addr) = rpc::serve(cache.path(), &[]);
    let mut a = rpc::connect(&addr);
    a.initialize(&[], json!({})).unwrap();
    a.call("pema/openWorkspace", json!({"path": root})).unwrap();
    let range = json!({"start": {"line": 0, "character": 0}, "end": {"line": 0, "character": 12}});
    let rewrite = |c: &mut Rpc, path: &Path, extra: Value| {
        let mut p = json!({"uri": rpc::file_uri(path), "range": range, "mode": "plain"});
        for (k, v) in extra.as_object().unwrap() {
            p[k] = v.clone();
        }
        c.call("pema/rewrite", p)
    };
    let mut messages = vec![];
    for (path, extra) in [
        (secret.clone(), json!({})),
        (secret.clone(), json!({"workspace": root})),
        (other.path().join("missing.txt"), json!({"workspace": root})),
        (root.join("link.txt"), json!({})),
        (root.join("linkdir").join("secret.txt"), json!({})),
        (root.join("missing.txt"), json!({})),
        (
            root.join("..")
                .join(other.path().file_name().unwrap())
                .join("secret.txt"),
            json!({}),
        ),
        (PathBuf::from("/etc/passwd"), json!({"workspace": root})),
        (
            PathBuf::from("/proc/self/environ"),
            json!({"workspace": root}),
        ),
    ] {
        let e = rewrite(&mut a, &path, extra).unwrap_err();
        assert_eq!(error_code(&e), -32602, "{e}");
        let m = e["message"].as_str().unwrap();
        assert!(
            !m.contains("secret words") && !m.contains("No such file"),
            "{m}"
        );
        messages.push(m.split_once(": ").map_or(m, |x| x.1).to_string());
    }
    assert!(
        messages.iter().all(|m| m == &messages[0]),
        "one answer for every refused path: {messages:#?}"
    );
    // Another connection that did not open the workspace cannot read its files either.
    let mut b = rpc::connect(&addr);
    b.initialize(&[], json!({})).unwrap();
    let e = rewrite(&mut b, &root.join("notes.txt"), json!({})).unwrap_err();
    assert_eq!(error_code(&e), -32602, "{e}");
    // Options out of range are refused with a sentence.
    for (options, word) in [
        (json!({"temperature": 1e-45}), "temperature"),
        (json!({"temperature": -1}), "temperature"),
        (json!({"topP": 0}), "topP"),
        (json!({"lambdaFixed": 2}), "lambdaFixed"),
        (json!({"maxTokens": 100000000}), "maxTokens"),
    ] {
        let e = a
            .call(
                "pema/rewrite",
                json!({"text": "Give ear.", "mode": "plain", "options": options}),
            )
            .unwrap_err();
        assert_eq!(error_code(&e), -32602, "{e}");
        assert!(e["message"].as_str().unwrap().contains(word), "{e}");
    }
    let e = a
        .call(
            "pema/rewrite",
            json!({"text": "a b c\n".repeat(300), "mode": "plain"}),
        )
        .unwrap_err();
    assert!(e["message"].as_str().unwrap().contains("lines"), "{e}");
    // The file inside the workspace is read.
    let r = rewrite(&mut a, &root.join("notes.txt"), json!({})).unwrap();
    assert!(!r["text"].as_str().unwrap().is_empty(), "{r}");
    child.kill().unwrap();
    child.wait().unwrap();
}

#[test]
fn serve_over_a_unix_socket() {
    let cache = tempfile::tempdir().unwrap();
    let sock = cache.path().join("pema.sock");
    let mut child = rpc::pema_command(cache.path())
        .args(["serve", "--listen", &format!("unix:{}", sock.display())])
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut err = std::io::BufReader::new(child.stderr.take().unwrap());
    let mut line = String::new();
    while !line.contains("listening on unix") {
        line.clear();
        assert!(
            std::io::BufRead::read_line(&mut err, &mut line).unwrap() > 0,
            "pema serve exited"
        );
    }
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(&sock).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "the socket is the user's only");
    }
    let s = std::os::unix::net::UnixStream::connect(&sock).unwrap();
    let mut c = Rpc::new(s.try_clone().unwrap(), s);
    c.initialize(&[], json!({})).unwrap();
    let st = c.call("pema/status", json!({})).unwrap();
    assert_eq!(st["workspaces"], json!([]));
    // Plain rewrites need no workspace.
    let r = c
        .call(
            "pema/rewrite",
            json!({"text": "Give ear to my words.", "mode": "plain"}),
        )
        .unwrap();
    assert!(!r["text"].as_str().unwrap().is_empty());
    let e = c
        .call("pema/rewrite", json!({"text": "Give ear to my words."}))
        .unwrap_err();
    assert!(e["message"].as_str().unwrap().contains("workspace"), "{e}");
    child.kill().unwrap();
    child.wait().unwrap();
}

/// `pema/files` lists what a workspace learns from and why every other file or folder is passed
/// over; only a connection that opened the workspace may ask. `/` and the home folder are
/// refused as workspaces over the protocol too.
#[test]
fn files_lists_what_a_workspace_learns_from_and_why_not_the_rest() {
    let ws = tempfile::tempdir().unwrap();
    let cache = tempfile::tempdir().unwrap();
    let root = ws.path().canonicalize().unwrap();
    make_workspace(&root);
    std::fs::write(root.join("main.rs"), "fn main() {}\n").unwrap();
    std::os::unix::fs::symlink(root.join("letters.txt"), root.join("link.md")).unwrap();
    let (mut child, addr) = rpc::serve(cache.path(), &[]);
    let mut a = rpc::connect(&addr);
    a.initialize(&[], json!({})).unwrap();
    for bad in ["/".to_string(), std::env::var("HOME").unwrap()] {
        let e = a
            .call("pema/openWorkspace", json!({ "path": bad }))
            .unwrap_err();
        assert_eq!(error_code(&e), -32602, "{bad}: {e}");
        assert!(
            e["message"]
                .as_str()
                .unwrap()
                .contains("cannot be a workspace"),
            "{bad}: {e}"
        );
    }
    a.call("pema/openWorkspace", json!({ "path": root }))
        .unwrap();
    a.wait_status(LONG, |w| w["lastRefresh"]["filesRead"].as_u64() > Some(0));
    let f = a.call("pema/files", json!({})).unwrap();
    assert_eq!(f["root"], json!(root), "{f:#}");
    assert_eq!(f["truncated"], json!(false));
    let rel = |v: &Value| {
        Path::new(v["path"].as_str().unwrap())
            .strip_prefix(&root)
            .unwrap()
            .display()
            .to_string()
    };
    let mut learned: Vec<(String, String)> = f["learned"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| (rel(l), l["kind"].as_str().unwrap().to_string()))
        .collect();
    learned.sort();
    assert_eq!(
        learned,
        [
            ("examples.pairs.jsonl", "pairs"),
            ("letters.txt", "corpus"),
            ("style/sayings.md", "corpus"),
        ]
        .map(|(p, k)| (p.to_string(), k.to_string()))
    );
    let pairs_file = f["learned"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["kind"] == "pairs")
        .unwrap();
    assert_eq!(pairs_file["pairs"], json!(40), "{pairs_file}");
    let skipped: std::collections::BTreeMap<String, String> = f["skipped"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| (rel(s), s["reason"].as_str().unwrap().to_string()))
        .collect();
    for (path, why) in [
        ("notes.txt", "binary"),
        ("latin1.txt", "not valid UTF-8"),
        ("huge.md", "limit"),
        ("drafts", "ignored by .gitignore"),
        (".gitignore", "hidden"),
        (".pema.toml", "hidden"),
        ("main.rs", "not a file type pema reads"),
        ("link.md", "symbolic link"),
    ] {
        let got = skipped
            .get(path)
            .unwrap_or_else(|| panic!("{path} is not among the skipped: {skipped:#?}"));
        assert!(got.contains(why), "{path}: {got}");
    }
    assert!(
        !skipped.keys().any(|p| p.starts_with("drafts/")),
        "an ignored folder is not entered: {skipped:#?}"
    );
    assert_eq!(
        learned.len() + skipped.len() + f["waiting"].as_array().unwrap().len(),
        11,
        "every entry once: {f:#}"
    );
    // A connection that did not open the workspace may not list its files.
    let mut b = rpc::connect(&addr);
    b.initialize(&[], json!({})).unwrap();
    let e = b
        .call("pema/files", json!({ "workspace": root }))
        .unwrap_err();
    assert_eq!(error_code(&e), -32602, "{e}");
    child.kill().unwrap();
    child.wait().unwrap();
}

/// `pema/examples` shows pairs the memory learns from: the pairs file's and pseudo-pairs (pema's
/// paraphrase → a sentence of the user's prose), only to a connection that opened the workspace.
/// `pema/statusChanged` follows the initial build as it happens, at most a few a second.
#[test]
fn examples_and_status_changes_of_a_learning_workspace() {
    let ws = tempfile::tempdir().unwrap();
    let cache = tempfile::tempdir().unwrap();
    let root = ws.path().canonicalize().unwrap();
    make_workspace(&root);
    let (mut child, addr) = rpc::serve(cache.path(), &[]);
    let mut a = rpc::connect(&addr);
    a.initialize(&[], json!({})).unwrap();
    let t0 = std::time::Instant::now();
    a.call("pema/openWorkspace", json!({ "path": root }))
        .unwrap();
    // Pushed, not polled: every state the build passes through arrives as it happens.
    let built = a.wait_for(0, LONG, |m| {
        m["method"] == "pema/statusChanged"
            && m["params"]["unitsPending"] == 0
            && m["params"]["units"].as_u64() > Some(0)
            && m["params"]["memory"]["entries"].as_u64() > Some(0)
    });
    let elapsed = t0.elapsed().as_secs_f64();
    let changes: Vec<&Value> = a.seen[..=built]
        .iter()
        .filter(|m| m["method"] == "pema/statusChanged")
        .map(|m| &m["params"])
        .collect();
    assert!(
        changes.iter().all(|p| p["root"] == json!(root)),
        "{changes:#?}"
    );
    assert!(
        changes
            .iter()
            .any(|p| p["adapter"]["state"] == "building" && p["unitsPending"].as_u64() > Some(0)),
        "no change while paraphrasing: {changes:#?}"
    );
    // The daemon samples statuses four times a second: a busy build cannot flood the client.
    assert!(
        changes.len() as f64 <= 4.0 * elapsed + 2.0,
        "{} changes in {elapsed:.1} s",
        changes.len()
    );
    // The client that opened the workspace follows its first memory build from its begin (the
    // build starts as soon as the workspace has loaded, before `pema/openWorkspace` answers).
    let memory: Vec<&str> = a.seen[..=built]
        .iter()
        .filter(|m| {
            (m["method"] == "pema/progress" || m["method"] == "$/progress")
                && m["params"]["token"]
                    .as_str()
                    .is_some_and(|t| t.starts_with("pema/memory/"))
        })
        .filter_map(|m| m["params"]["value"]["kind"].as_str())
        .collect();
    assert_eq!(memory.first(), Some(&"begin"), "{memory:?}");
    // A pseudo-pair's target is a unit of the prose (a paragraph's lines joined by spaces).
    let words = |t: &str| t.split_whitespace().collect::<Vec<_>>().join(" ");
    let prose: Vec<String> = ["style/sayings.md", "letters.txt"]
        .iter()
        .map(|p| words(&std::fs::read_to_string(root.join(p)).unwrap()))
        .collect();
    let x = a.call("pema/examples", json!({ "limit": 50 })).unwrap();
    let examples = x["examples"].as_array().unwrap();
    let pseudo: Vec<&Value> = examples.iter().filter(|e| e["pseudo"] == true).collect();
    let real: Vec<&Value> = examples.iter().filter(|e| e["pseudo"] == false).collect();
    assert!(!pseudo.is_empty() && !real.is_empty(), "{x:#}");
    // The pseudo-sources are the units with their style words taken out (the default): the
    // words the prose over-uses, kept in the state folder, and only those differ.
    let st = a.call("pema/status", json!({})).unwrap();
    let state = Path::new(st["workspaces"][0]["stateDir"].as_str().unwrap()).to_path_buf();
    let kept: Value =
        serde_json::from_slice(&std::fs::read(state.join("style-words.json")).unwrap()).unwrap();
    let style: Vec<&str> = kept["words"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w.as_str().unwrap())
        .collect();
    assert!(style.contains(&"unto") && style.contains(&"thou"), "{kept}");
    let bare = |w: &str| w.trim_matches(|c: char| !c.is_alphabetic()).to_lowercase();
    for e in &pseudo {
        let target = e["target"].as_str().unwrap();
        assert!(
            prose.iter().any(|text| text.contains(&words(target))),
            "a pseudo-pair's target is not the user's prose: {e}"
        );
        assert_ne!(e["source"], e["target"], "{e}");
        let (src, tgt) = (e["source"].as_str().unwrap(), target);
        assert_eq!(
            src.split_whitespace().count(),
            tgt.split_whitespace().count(),
            "{e}"
        );
        for (s, t) in src.split_whitespace().zip(tgt.split_whitespace()) {
            if s != t {
                assert!(
                    style.contains(&bare(t).as_str()),
                    "{t} is no style word: {e}"
                );
            }
        }
    }
    let pairs = std::fs::read_to_string(root.join("examples.pairs.jsonl")).unwrap();
    for e in &real {
        let line = json!({"source": e["source"], "target": e["target"]}).to_string();
        assert!(pairs.contains(&line), "not a line of the pairs file: {e}");
    }
    // The default is five; the same request gives the same examples.
    let five = a.call("pema/examples", json!({})).unwrap();
    assert_eq!(
        five["examples"].as_array().unwrap().len(),
        5.min(examples.len())
    );
    assert_eq!(five["examples"][0], examples[0]);
    // A connection that did not open the workspace is told nothing of it.
    let mut b = rpc::connect(&addr);
    b.initialize(&[], json!({})).unwrap();
    let e = b
        .call("pema/examples", json!({ "workspace": root }))
        .unwrap_err();
    assert_eq!(error_code(&e), -32602, "{e}");
    child.kill().unwrap();
    child.wait().unwrap();
}

/// Where a byte offset of `doc` lies as an LSP position counted in `enc`, computed here
/// independently of the daemon (which uses rust-analyzer's `line-index`).
fn lsp_position(doc: &str, byte: usize, enc: &str) -> Value {
    let line_start = doc[..byte].rfind('\n').map_or(0, |i| i + 1);
    let before = &doc[line_start..byte];
    let character = match enc {
        "utf-8" => before.len(),
        "utf-16" => before.chars().map(char::len_utf16).sum(),
        _ => before.chars().count(),
    };
    json!({"line": doc[..byte].matches('\n').count(), "character": character})
}

/// A CRLF document with emoji and CJK text and no final newline: for each position encoding a
/// client may offer, the daemon agrees on one, reads exactly the selected text (the rewrite of
/// the range equals the rewrite of the same text sent inline) and returns a replacement that
/// keeps the document's CRLF line endings and its missing final newline, so that applying the
/// edit changes no other byte. Changes arrive incrementally, as ranges in the same encoding.
#[test]
fn positions_and_line_endings_survive_a_rewrite() {
    let doc = "Grüße 😀 from the first line of this note\r\n一二三 the second line of the text\r\nthe third line has no final newline";
    let ws = tempfile::tempdir().unwrap();
    let root = ws.path().canonicalize().unwrap();
    let path = root.join("crlf.md");
    std::fs::write(&path, doc).unwrap();
    let uri = file_uri(&path);
    // (byte range, whether its end is sent as a character past the end of its line)
    let first = doc.find("from").unwrap();
    let second = doc.find("二").unwrap();
    let third = doc.find("the third").unwrap();
    let ranges = [
        (first, doc.find("\r\n").unwrap(), true),
        (second, doc.find("has no").unwrap(), false),
        (third, doc.len(), true),
    ];
    for (offered, agreed) in [
        (None, "utf-16"),
        (Some(json!(["utf-8", "utf-16"])), "utf-8"),
        (Some(json!(["utf-32", "utf-16"])), "utf-32"),
    ] {
        let cache = tempfile::tempdir().unwrap();
        let (mut child, mut c) = rpc::lsp(cache.path());
        let mut caps = json!({});
        if let Some(o) = &offered {
            caps = json!({"general": {"positionEncodings": o}});
        }
        let init = c
            .call(
                "initialize",
                json!({
                    "processId": null, "rootUri": null, "capabilities": caps,
                    "workspaceFolders": [{"uri": file_uri(&root), "name": "ws"}],
                    // The code action below rewrites with the plain model: no adapter needed.
                    "initializationOptions": {"mode": "plain"},
                }),
            )
            .expect("initialize");
        c.notify("initialized", json!({}));
        assert_eq!(init["capabilities"]["positionEncoding"], json!(agreed));
        c.notify(
            "textDocument/didOpen",
            json!({"textDocument": {"uri": uri, "languageId": "markdown", "version": 1, "text": doc}}),
        );
        for &(a, b, past_end) in &ranges {
            let mut end = lsp_position(doc, b, agreed);
            if past_end {
                end["character"] = json!(10_000);
            }
            let range = json!({"start": lsp_position(doc, a, agreed), "end": end});
            let options = json!({"temperature": 0.0, "maxTokens": 16});
            let by_range = c
                .call(
                    "pema/rewrite",
                    json!({"uri": uri, "range": range, "mode": "plain", "options": options}),
                )
                .unwrap_or_else(|e| panic!("{agreed} {range}: {e}"));
            let inline = c
                .call(
                    "pema/rewrite",
                    json!({"text": doc[a..b], "mode": "plain", "options": options,
                           "workspace": root.display().to_string()}),
                )
                .expect("inline rewrite");
            let new_text = by_range["text"].as_str().unwrap();
            let same_words = |s: &str| s.split_whitespace().collect::<Vec<_>>().join(" ");
            assert_eq!(
                same_words(new_text),
                same_words(inline["text"].as_str().unwrap()),
                "{agreed}: the range {range} was not read as {:?}",
                &doc[a..b]
            );
            assert_eq!(by_range["range"], range);
            assert!(
                !new_text.ends_with('\n')
                    && new_text
                        .match_indices('\n')
                        .all(|(i, _)| i > 0 && new_text.as_bytes()[i - 1] == b'\r'),
                "{agreed}: {new_text:?} does not keep the document's line endings"
            );
            let edited = format!("{}{}{}", &doc[..a], new_text, &doc[b..]);
            assert!(edited.starts_with(&doc[..a]) && edited.ends_with(&doc[b..]));
            assert_eq!(
                edited.matches("\r\n").count(),
                edited.matches('\n').count(),
                "{edited:?}"
            );
            assert!(!edited.ends_with('\n'), "{edited:?}");
        }
        // The code action's edit carries the same fitted text.
        let range = json!({"start": lsp_position(doc, second, agreed), "end": {"line": 2, "character": 10_000}});
        let actions = c
            .call(
                "textDocument/codeAction",
                json!({"textDocument": {"uri": uri}, "range": range, "context": {"diagnostics": []}}),
            )
            .expect("codeAction");
        let resolved = c
            .call("codeAction/resolve", actions[0].clone())
            .expect("resolve");
        let edit = &resolved["edit"]["changes"][&uri][0];
        assert_eq!(edit["range"], range);
        let t = edit["newText"].as_str().unwrap();
        assert!(
            !t.ends_with('\n') && !t.replace("\r\n", "").contains('\n'),
            "{t:?}"
        );
        // Incremental sync: one word changed, sent as a range in the agreed encoding; the
        // next rewrite of that line reads the changed text.
        assert_eq!(init["capabilities"]["textDocumentSync"], json!(2));
        let at = doc.find("second").unwrap();
        c.notify(
            "textDocument/didChange",
            json!({"textDocument": {"uri": uri, "version": 2}, "contentChanges": [{
                "range": {"start": lsp_position(doc, at, agreed),
                          "end": lsp_position(doc, at + "second".len(), agreed)},
                "text": "2nd"}]}),
        );
        let changed = doc.replacen("second", "2nd", 1);
        let (a, b) = (
            changed.find("二").unwrap(),
            changed.find("\r\nthe third").unwrap(),
        );
        let range = json!({"start": lsp_position(&changed, a, agreed), "end": lsp_position(&changed, b, agreed)});
        let options = json!({"temperature": 0.0, "maxTokens": 16});
        let by_range = c
            .call(
                "pema/rewrite",
                json!({"uri": uri, "range": range, "mode": "plain", "options": options}),
            )
            .expect("rewrite after a change");
        let inline = c
            .call(
                "pema/rewrite",
                json!({"text": changed[a..b], "mode": "plain", "options": options,
                       "workspace": root.display().to_string()}),
            )
            .expect("inline rewrite");
        assert_eq!(
            by_range["text"]
                .as_str()
                .unwrap()
                .split_whitespace()
                .collect::<Vec<_>>(),
            inline["text"]
                .as_str()
                .unwrap()
                .split_whitespace()
                .collect::<Vec<_>>(),
            "{agreed}: after the change the range was not read as {:?}",
            &changed[a..b]
        );
        drop(c);
        let _ = child.wait();
    }
}

/// A folder of one sentence gives a memory of one pair, which training cannot use (one pair is
/// held out): the failure is reported once, and not retried until the memory changes.
#[test]
fn a_memory_training_cannot_use_is_not_retrained_in_a_loop() {
    let ws = tempfile::tempdir().unwrap();
    let cache = tempfile::tempdir().unwrap();
    let root = ws.path().canonicalize().unwrap();
    std::fs::write(root.join(".pema.toml"), "retrain_after_seconds = 0.2\n").unwrap();
    std::fs::write(
        root.join("loose.md"),
        "Loose words in a folder with one sentence.\n",
    )
    .unwrap();
    let (mut child, addr) = rpc::serve(cache.path(), &[]);
    let mut c = rpc::connect(&addr);
    c.initialize(&[&root], json!({})).unwrap();
    let failed = |w: &Value| -> usize {
        w["errors"]
            .as_array()
            .map(|e| {
                e.iter()
                    .filter(|m| m.to_string().contains("training failed"))
                    .count()
            })
            .unwrap_or(0)
    };
    let w = c.wait_status(LONG, |w| failed(w) > 0);
    assert!(
        w["errors"].to_string().contains("at least 2 pairs"),
        "{w:#}"
    );
    // A loop would fail again every few hundred milliseconds.
    std::thread::sleep(Duration::from_secs(4));
    let w = c.wait_status(LONG, |_| true);
    assert_eq!(failed(&w), 1, "training was retried: {w:#}");
    assert_ne!(w["adapter"]["state"], json!("training"), "{w:#}");
    child.kill().unwrap();
    child.wait().unwrap();
}
