//! Building memories from real pairs with the real model.

mod common;

use std::path::Path;

use pema::memory::{self, format, BuildOptions, BuildReport, KeyType, Memory, Pair, Template};
use pema::model::{Session, SessionOptions};

fn build_in(
    session: &mut Session,
    pairs_file: &Path,
    out: &Path,
    template: Template,
    replace: bool,
) -> anyhow::Result<BuildReport> {
    memory::build(
        session,
        &BuildOptions {
            pairs_files: vec![pairs_file.to_path_buf()],
            template,
            out: out.to_path_buf(),
            key_type: KeyType::F16,
            replace,
            cancel: None,
            max_entries: None,
            shots: 0,
        },
        |_| {},
    )
}

#[test]
fn entries_are_target_tokens_plus_end_and_keys_are_the_hidden_states() {
    let dir = tempfile::tempdir().unwrap();
    let pairs = common::bible_pairs(12);
    let file = dir.path().join("pairs.jsonl");
    common::write_pairs(&file, &pairs);
    let mut s = common::session();
    let r = build_in(
        &mut s,
        &file,
        &dir.path().join("mem"),
        Template::default(),
        false,
    )
    .unwrap();
    assert_eq!((r.pairs, r.pairs_computed, r.pairs_reused), (12, 12, 0));

    let model = common::model();
    let newline = model.tokenize("\n").unwrap()[0];
    let mut expected_tokens = vec![];
    for p in &pairs {
        let t = model.tokenize(&format!(" {}", p.target)).unwrap();
        expected_tokens.extend(t.iter().copied());
        expected_tokens.push(newline);
    }
    let m = Memory::open(&dir.path().join("mem")).unwrap();
    assert_eq!(m.len(), expected_tokens.len());
    assert_eq!(r.entries, m.len());
    assert_eq!(m.tokens(), &expected_tokens[..]);
    assert_eq!(m.hidden_size(), model.info().n_embd);
    m.check_compatible(model.info(), &Template::default())
        .unwrap();

    // Keys of the third pair are the hidden states of prompt ⊕ target at the positions before
    // each target token, prompt positions excluded.
    let tpl = Template::default();
    let mut toks: Vec<_> = model.bos().into_iter().collect();
    toks.extend(model.tokenize(&tpl.prompt(&pairs[2].source)).unwrap());
    let prompt_len = toks.len();
    toks.extend(model.tokenize(&format!(" {}", pairs[2].target)).unwrap());
    let full = s.eval_all(&toks).unwrap();
    let g = m.groups()[2];
    assert_eq!(g.prompt_tokens as usize, prompt_len);
    assert_eq!(g.rows as usize, toks.len() - prompt_len + 1);
    let all: Vec<&[f32]> = full.iter().map(|s| &s.hidden[..]).collect();
    for i in 0..g.rows as usize {
        let row = g.first_row as usize + i;
        let key = m.keys_f32(row..row + 1);
        common::assert_is_state_at(&key, &all, prompt_len - 1 + i, &format!("row {i}"));
    }
}

#[test]
fn editing_one_pair_recomputes_exactly_that_pair() {
    let dir = tempfile::tempdir().unwrap();
    let mut pairs = common::bible_pairs(8);
    let file = dir.path().join("pairs.jsonl");
    let out = dir.path().join("mem");
    common::write_pairs(&file, &pairs);
    let mut s = common::session();
    build_in(&mut s, &file, &out, Template::default(), false).unwrap();
    let before = std::fs::read(out.join(format::FILE_NAME)).unwrap();

    // Rebuilding unchanged input computes nothing.
    let r = build_in(&mut s, &file, &out, Template::default(), false).unwrap();
    assert_eq!(
        (r.pairs_computed, r.pairs_reused, r.tokens_processed),
        (0, 8, 0)
    );
    assert_eq!(std::fs::read(out.join(format::FILE_NAME)).unwrap(), before);

    pairs[5].target.push_str(" Selah.");
    pairs.remove(1);
    pairs.push(Pair {
        source: "A new plain verse.".into(),
        target: "A new verse, verily.".into(),
    });
    common::write_pairs(&file, &pairs);
    let r = build_in(&mut s, &file, &out, Template::default(), false).unwrap();
    assert_eq!(
        (r.pairs_computed, r.pairs_reused, r.pairs_removed),
        (2, 6, 2),
        "{r:?}"
    );

    // The incremental result holds the same pairs, rows and tokens as a fresh build.
    let fresh = dir.path().join("fresh");
    build_in(&mut s, &file, &fresh, Template::default(), false).unwrap();
    let (a, b) = (Memory::open(&out).unwrap(), Memory::open(&fresh).unwrap());
    assert_eq!(a.tokens(), b.tokens());
    assert_eq!(a.groups(), b.groups());
}

#[test]
fn another_template_or_model_is_refused_never_mixed() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("pairs.jsonl");
    let out = dir.path().join("mem");
    common::write_pairs(&file, &common::bible_pairs(3));
    let mut s = common::session();
    build_in(&mut s, &file, &out, Template::default(), false).unwrap();

    let formal = Template::from_arg("formal").unwrap();
    let e = format!(
        "{:#}",
        build_in(&mut s, &file, &out, formal.clone(), false).unwrap_err()
    );
    assert!(
        e.contains("another template") && e.contains("--replace"),
        "{e}"
    );
    let m = Memory::open(&out).unwrap();
    let e = m
        .check_compatible(common::model().info(), &formal)
        .unwrap_err()
        .to_string();
    assert!(e.contains("another template"), "{e}");
    drop(m);
    let r = build_in(&mut s, &file, &out, formal.clone(), true).unwrap();
    assert_eq!(r.pairs_computed, 3);
    assert_eq!(Memory::open(&out).unwrap().template().unwrap(), formal);

    // A memory that records another model.
    let other = dir.path().join("other");
    let header = format::Header {
        key_type: KeyType::F16,
        hidden: common::model().info().n_embd,
        model_identity: [1; 32],
        model_name: "some-other-model".into(),
        template: Template::default().text().into(),
        template_digest: Template::default().digest(),
    };
    format::write(&other, &header, &[]).unwrap();
    let e = format!(
        "{:#}",
        build_in(&mut s, &file, &other, Template::default(), false).unwrap_err()
    );
    assert!(e.contains("another model (some-other-model)"), "{e}");
    let e = Memory::open(&other)
        .unwrap()
        .check_compatible(common::model().info(), &Template::default())
        .unwrap_err();
    assert!(e.to_string().contains("another model"), "{e}");
}

#[test]
fn bad_lines_are_skipped_and_named_and_long_pairs_counted() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("pairs.jsonl");
    let good = common::bible_pairs(2);
    let long = "word ".repeat(120);
    let mut data = Vec::new();
    data.extend(
        format!(
            "{}\n",
            serde_json::json!({"source": good[0].source, "target": good[0].target})
        )
        .bytes(),
    );
    data.extend(b"{\"source\": \"unterminated\n");
    data.extend(b"{\"source\": \"caf\xe9\", \"target\": \"latin-1, not UTF-8\"}\n");
    data.extend(format!("{}\n", serde_json::json!({"source": long, "target": long})).bytes());
    data.extend(
        format!(
            "{}\n",
            serde_json::json!({"source": good[1].source, "target": good[1].target})
        )
        .bytes(),
    );
    data.extend(
        format!(
            "{}\n",
            serde_json::json!({"source": good[1].source, "target": good[1].target})
        )
        .bytes(),
    );
    std::fs::write(&file, data).unwrap();

    let mut s = common::model()
        .session(SessionOptions {
            n_ctx: 192,
            ..Default::default()
        })
        .unwrap();
    let r = build_in(
        &mut s,
        &file,
        &dir.path().join("mem"),
        Template::default(),
        false,
    )
    .unwrap();
    assert_eq!(r.pairs, 2);
    assert_eq!(r.pairs_too_long, 1);
    assert_eq!(r.duplicate_pairs, 1);
    let lines: Vec<_> = r.skipped_lines.iter().map(|l| l.line).collect();
    assert_eq!(lines, vec![2, 3]);
    assert!(r.skipped_lines[1].reason.contains("UTF-8"));

    std::fs::write(&file, b"nothing useful\n").unwrap();
    let e = build_in(
        &mut s,
        &file,
        &dir.path().join("mem2"),
        Template::default(),
        false,
    )
    .unwrap_err()
    .to_string();
    assert!(
        e.contains("no usable pairs") && e.contains("pairs.jsonl:1"),
        "{e}"
    );
}

#[test]
fn a_corrupted_memory_is_detected_and_rebuilt() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("pairs.jsonl");
    let out = dir.path().join("mem");
    common::write_pairs(&file, &common::bible_pairs(3));
    let mut s = common::session();
    build_in(&mut s, &file, &out, Template::default(), false).unwrap();
    let path = out.join(format::FILE_NAME);
    let mut bytes = std::fs::read(&path).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0xff;
    std::fs::write(&path, &bytes).unwrap();
    let e = Memory::open(&out).err().unwrap().to_string();
    assert!(e.contains("corrupted"), "{e}");

    let r = build_in(&mut s, &file, &out, Template::default(), false).unwrap();
    assert_eq!(r.pairs_computed, 3);
    assert!(r.warnings[0].contains("corrupted"), "{:?}", r.warnings);
    Memory::open(&out).unwrap();
}

#[test]
fn kill_during_build_leaves_the_previous_memory_usable() {
    let dir = tempfile::tempdir().unwrap();
    let small = dir.path().join("small.jsonl");
    let big = dir.path().join("big.jsonl");
    let out = dir.path().join("mem");
    common::write_pairs(&small, &common::bible_pairs(2));
    common::write_pairs(&big, &common::bible_pairs(200));
    let mut s = common::session();
    build_in(&mut s, &small, &out, Template::default(), false).unwrap();
    let before = std::fs::read(out.join(format::FILE_NAME)).unwrap();

    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_pema"))
        .args(["memory", "build", "--pairs"])
        .arg(&big)
        .arg("--out")
        .arg(&out)
        // The template of the memory it replaces (no worked examples), else it refuses at once.
        .args(["--shots", "0"])
        .arg("--model")
        .arg(common::model_path())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_secs(4));
    assert!(
        child.try_wait().unwrap().is_none(),
        "the build finished before it could be killed"
    );
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();

    assert_eq!(std::fs::read(out.join(format::FILE_NAME)).unwrap(), before);
    assert_eq!(Memory::open(&out).unwrap().groups().len(), 2);

    // The next build clears what the killed one left behind.
    build_in(&mut s, &small, &out, Template::default(), false).unwrap();
    let mut names: Vec<_> = std::fs::read_dir(&out)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    names.sort();
    // The memory, the text of its held-out pairs and its marked words; no temporary file.
    assert_eq!(
        names,
        vec![
            std::ffi::OsString::from(memory::HELD_OUT_FILE),
            std::ffi::OsString::from(memory::MARKED_WORDS_FILE),
            std::ffi::OsString::from(format::FILE_NAME)
        ]
    );
}

#[test]
fn a_capped_build_keeps_the_first_pairs_and_serves_rewrites_while_it_tokenizes() {
    // 70 pairs fill the cap exactly. Tokenizing gives way every 64 pairs: once before any batch
    // runs if it stops at the cap, three times had it tokenized all 200.
    let dir = tempfile::tempdir().unwrap();
    let pairs = common::bible_pairs(200);
    assert_eq!(pairs.len(), 200);
    let model = common::model();
    let cap: usize = pairs[..70]
        .iter()
        .map(|p| model.tokenize(&format!(" {}", p.target)).unwrap().len() + 1)
        .sum();
    let mut s = common::session();
    let batches_begun = std::cell::Cell::new(false);
    let yields_before_batches = std::cell::Cell::new(0);
    let r = memory::build_pairs(
        &mut s,
        pairs,
        &BuildOptions {
            pairs_files: vec![],
            template: Template::default(),
            out: dir.path().join("mem"),
            key_type: KeyType::F16,
            replace: false,
            cancel: None,
            max_entries: Some(cap),
            shots: 0,
        },
        |_| batches_begun.set(true),
        |_| {
            if !batches_begun.get() {
                yields_before_batches.set(yields_before_batches.get() + 1);
            }
            Ok(())
        },
    )
    .unwrap();
    assert_eq!((r.pairs, r.pairs_computed, r.pairs_over_cap), (70, 70, 130));
    assert_eq!(r.entries, cap);
    assert_eq!(Memory::open(&dir.path().join("mem")).unwrap().len(), cap);
    assert_eq!(yields_before_batches.get(), 1);
}
