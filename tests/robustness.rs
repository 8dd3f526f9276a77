//! The daemon under faults and load: a job that panics, a client that goes away with rewrites
//! queued, roots that are not workspaces, a rewrite asked for in the middle of a memory build or
//! of a batch of pseudo-sources. Against the real model and the real daemon.

mod common;

use std::sync::atomic::AtomicBool;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use common::rpc;
use pema::daemon::{Daemon, RequestError, RewriteRequest};
use pema::decode::Mode;
use serde_json::json;

fn daemon() -> Arc<Daemon> {
    static D: OnceLock<(tempfile::TempDir, Arc<Daemon>)> = OnceLock::new();
    D.get_or_init(|| {
        let model = common::model_path();
        let cache = tempfile::tempdir().unwrap();
        std::env::set_var("XDG_CACHE_HOME", cache.path());
        let d = Daemon::start(&model).unwrap();
        (cache, d)
    })
    .1
    .clone()
}

// `.into()` keeps this test building where the mode is an `Option<Mode>`.
#[allow(clippy::useless_conversion)]
fn plain(text: &str) -> RewriteRequest {
    RewriteRequest {
        text: text.into(),
        mode: Mode::Plain.into(),
        max_tokens: Some(8),
        ..Default::default()
    }
}

/// Queues a rewrite from outside the async runtime, as a blocking caller would.
fn rewrite(d: &Arc<Daemon>, req: RewriteRequest) -> pema::daemon::RewriteStream {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(d.rewrite(req, Arc::new(AtomicBool::new(false))))
        .unwrap()
}

/// A short plain rewrite of the workspace at `root`, and how long its answer took.
fn timed_rewrite(d: &Arc<Daemon>, root: &std::path::Path) -> Duration {
    let asked = Instant::now();
    let r = rewrite(
        d,
        RewriteRequest {
            workspace: Some(root.to_path_buf()),
            ..plain("Give ear to my words, O Lord.")
        },
    )
    .blocking_result()
    .expect("the rewrite");
    assert!(!r.text.is_empty());
    asked.elapsed()
}

/// A rewrite that panics on the worker (here by an injected fault) is answered with an error,
/// and the worker goes on serving later rewrites. Before, the panic ended the worker thread:
/// that rewrite's answer never came and every later rewrite failed.
#[test]
fn the_worker_survives_a_panicking_rewrite() {
    let d = daemon();
    d.fail_next_rewrite();
    match rewrite(&d, plain("Give ear to my words, O Lord.")).blocking_result() {
        Err(RequestError::Failed(e)) => {
            let e = format!("{e:#}");
            assert!(e.contains("inside pema"), "{e}");
        }
        other => panic!("expected a failure, got {:?}", other.map(|r| r.text)),
    }
    for _ in 0..2 {
        let r = rewrite(&d, plain("Give ear to my words, O Lord."))
            .blocking_result()
            .expect("later rewrites work");
        assert!(!r.text.is_empty());
    }
}

/// `/`, the home folder and system folders are not workspaces.
#[test]
fn system_folders_are_not_workspaces() {
    let d = daemon();
    let mut roots = vec![
        "/".to_string(),
        "/etc".into(),
        "/usr/share".into(),
        "/proc".into(),
    ];
    if let Some(h) = std::env::var_os("HOME") {
        roots.push(h.to_string_lossy().into_owned());
    }
    for r in roots {
        match d.open_workspace(std::path::Path::new(&r)) {
            Err(e) => {
                let e = e.to_string();
                assert!(e.contains("cannot be a workspace"), "{r}: {e}");
            }
            Ok(_) => panic!("{r} was opened as a workspace"),
        }
    }
}

/// A client that disconnects with rewrites queued and running: they are cancelled, and the
/// worker is free again within seconds (before, tower-lsp ran every one of them to the end).
#[test]
fn a_closed_connections_rewrites_are_cancelled() {
    let cache = tempfile::tempdir().unwrap();
    let (mut child, addr) = rpc::serve(cache.path(), &[]);
    let stream = std::net::TcpStream::connect(&addr).unwrap();
    let hang_up = stream.try_clone().unwrap();
    let mut a = rpc::Rpc::new(stream.try_clone().unwrap(), stream);
    a.token = Some(
        std::fs::read_to_string(rpc::token_file(cache.path()))
            .unwrap()
            .trim()
            .into(),
    );
    a.initialize(&[], json!({})).unwrap();
    let long = "Give ear to my words, O Lord, and consider my meditation.\n".repeat(60);
    for _ in 0..3 {
        a.request(
            "pema/rewrite",
            json!({"text": long, "mode": "plain", "options": {"maxTokens": 64}}),
        );
    }
    let mut b = rpc::connect(&addr);
    b.initialize(&[], json!({})).unwrap();
    // Wait until the worker is busy with them, then hang up.
    let until = Instant::now() + Duration::from_secs(60);
    loop {
        let s = b.call("pema/status", json!({})).unwrap();
        if s["queue"]["busy"] == json!("rewrite") {
            break;
        }
        assert!(Instant::now() < until, "the rewrites never started: {s}");
        std::thread::sleep(Duration::from_millis(50));
    }
    hang_up.shutdown(std::net::Shutdown::Both).unwrap();
    drop(a);
    let hung_up = Instant::now();
    loop {
        let s = b.call("pema/status", json!({})).unwrap();
        let q = &s["queue"];
        if q["busy"].is_null() && q["rewritesWaiting"] == json!(0) {
            break;
        }
        assert!(
            hung_up.elapsed() < Duration::from_secs(10),
            "the closed connection's rewrites still run: {q}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    eprintln!(
        "worker idle {:?} after the client hung up",
        hung_up.elapsed()
    );
    // The daemon still serves.
    let r = b
        .call(
            "pema/rewrite",
            json!({"text": "Give ear to my words.", "mode": "plain"}),
        )
        .unwrap();
    assert!(!r["text"].as_str().unwrap().is_empty());
    child.kill().unwrap();
    child.wait().unwrap();
}

/// A panic on a workspace's pipeline thread becomes an error in its status, and the pipeline
/// starts again from what is on disk: the workspace keeps being served and learning.
#[test]
fn a_panicking_pipeline_is_restarted() {
    let d = daemon();
    let ws = tempfile::tempdir().unwrap();
    std::fs::write(
        ws.path().join("notes.txt"),
        "Give ear to my words, O Lord, and consider my meditation.\n",
    )
    .unwrap();
    let root = d.open_workspace(ws.path()).unwrap();
    d.wait_loaded(&root, Duration::from_secs(60));
    d.inject_fault(&root).unwrap();
    let until = Instant::now() + Duration::from_secs(60);
    let st = loop {
        let st = d.status(Some(&root)).unwrap().workspaces[0].clone();
        if st.errors.iter().any(|e| e.contains("failed inside pema"))
            && st.adapter.state != pema::daemon::AdapterState::Loading
            && st.units > 0
        {
            break st;
        }
        assert!(Instant::now() < until, "no recovery: {st:?}");
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(
        st.units, 1,
        "the restarted pipeline read the files again: {st:?}"
    );
    // Signals still reach the restarted pipeline, and rewrites are served.
    d.rebuild(&root, false).unwrap();
    let r = rewrite(&d, plain("Give ear to my words, O Lord."));
    assert!(!r.blocking_result().unwrap().text.is_empty());
    d.close_workspace(&root);
}

/// Rewrites go first: a rewrite asked for while a workspace's memory is being built is answered
/// while that build still runs (the build yields to it between two model batches), not after it.
#[test]
fn a_rewrite_is_answered_while_a_memory_builds() {
    // A daemon of its own: this workspace trains after its build, which must not slow the
    // other tests' shared daemon.
    let _ = daemon();
    let d = Daemon::start(&common::model_path()).unwrap();
    let ws = tempfile::tempdir().unwrap();
    let pairs = common::bible_train_pairs(400);
    common::write_pairs(&ws.path().join("style.pairs.jsonl"), &pairs);
    let root = d.open_workspace(ws.path()).unwrap();
    let building = |d: &Daemon| {
        let s = d.status(None).unwrap();
        let busy = s.queue.busy.clone().unwrap_or_default();
        (busy.starts_with("memory"), s.workspaces[0].memory.builds)
    };
    let until = Instant::now() + Duration::from_secs(300);
    while !building(&d).0 {
        assert!(Instant::now() < until, "the memory build never started");
        std::thread::sleep(Duration::from_millis(20));
    }
    let answered = timed_rewrite(&d, &root);
    let (still_building, builds) = building(&d);
    eprintln!("rewrite answered in {answered:?} during the memory build");
    assert!(
        still_building && builds == 0,
        "the rewrite waited for the build to end ({answered:?})"
    );
    d.close_workspace(&root);
}

/// Taking the style words out of prose runs in batches of many units, each not stopped midway:
/// a rewrite asked for during a batch is answered between two of its units, not after the batch.
#[test]
fn a_rewrite_is_answered_while_pseudo_sources_are_made() {
    let _ = daemon();
    let d = Daemon::start(&common::model_path()).unwrap();
    let ws = tempfile::tempdir().unwrap();
    let pairs = common::bible_train_pairs(400);
    for (i, chunk) in pairs.chunks(20).enumerate() {
        let text: Vec<&str> = chunk.iter().map(|p| p.target.as_str()).collect();
        std::fs::write(ws.path().join(format!("part{i}.md")), text.join("\n\n")).unwrap();
    }
    let root = d.open_workspace(ws.path()).unwrap();
    let made = |d: &Daemon| {
        let s = d.status(None).unwrap();
        let busy = s.queue.busy.clone().unwrap_or_default();
        (
            busy.starts_with("paraphrase"),
            s.workspaces[0].units_paraphrased,
        )
    };
    // Ask one second into a batch (one has just ended), so that the batch is still running.
    let until = Instant::now() + Duration::from_secs(300);
    let first = loop {
        let (busy, n) = made(&d);
        if busy && n > 0 {
            break n;
        }
        assert!(Instant::now() < until, "no batch of pseudo-sources ended");
        std::thread::sleep(Duration::from_millis(20));
    };
    while made(&d).1 == first {
        assert!(Instant::now() < until, "the second batch never ended");
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_secs(1));
    let (busy, before) = made(&d);
    assert!(busy, "no batch running to ask during");
    let answered = timed_rewrite(&d, &root);
    let (_, after) = made(&d);
    eprintln!("rewrite answered in {answered:?} while pseudo-sources were made");
    assert_eq!(
        after, before,
        "the rewrite waited for the batch of pseudo-sources to end ({answered:?})"
    );
    d.close_workspace(&root);
}
