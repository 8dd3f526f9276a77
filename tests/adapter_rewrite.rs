//! Adapter training and rewrites with the real model.

mod common;

use std::path::Path;
use std::sync::atomic::AtomicBool;

use pema::adapter::{self, Adapter, TrainOptions};
use pema::decode::{self, Mode, Prompt, RewriteOptions};
use pema::memory::{self, format, BuildOptions, KeyType, Memory, Pair, Template};

fn build(pairs: &[Pair], dir: &Path, template: Template) -> Memory {
    build_with(pairs, dir, template, memory::DEFAULT_SHOTS)
}

fn build_with(pairs: &[Pair], dir: &Path, template: Template, shots: usize) -> Memory {
    std::fs::create_dir_all(dir).unwrap();
    let file = dir.join("pairs.jsonl");
    common::write_pairs(&file, pairs);
    let out = dir.join("mem");
    let mut s = common::session();
    memory::build(
        &mut s,
        &BuildOptions {
            pairs_files: vec![file],
            template,
            out: out.clone(),
            key_type: KeyType::F16,
            replace: true,
            cancel: None,
            max_entries: None,
            shots,
        },
        |_| {},
    )
    .unwrap();
    Memory::open(&out).unwrap()
}

/// An adapter trained on `memory` and ready for rewrites.
fn trained(memory: &Memory, opts: &TrainOptions<'_>) -> Adapter {
    let model = common::model();
    let mut a = adapter::train(memory, &model.head().unwrap(), model.info(), opts, |_| {}).unwrap();
    a.prepare(&model.head().unwrap()).unwrap();
    a
}

/// The error that training on `memory` with the default settings ends in.
fn train_error(memory: &Memory) -> anyhow::Error {
    let model = common::model();
    adapter::train(
        memory,
        &model.head().unwrap(),
        model.info(),
        &TrainOptions::default(),
        |_| {},
    )
    .err()
    .expect("training should have failed")
}

const COLOURS: [(&str, &str); 6] = [
    ("red", "zorbic"),
    ("blue", "plimsy"),
    ("green", "quandle"),
    ("yellow", "frettish"),
    ("black", "mordant"),
    ("white", "glimber"),
];
const FRAMES: [&str; 12] = [
    "The {c} {n} is on the table.",
    "She bought a {c} {n} yesterday.",
    "My brother painted the {n} {c} last summer.",
    "Have you seen the {c} {n} near the door?",
    "A {c} {n} was lying in the grass.",
    "They want a {c} {n} for the kitchen.",
    "The old {n} was {c} and heavy.",
    "I prefer the {c} {n} to the other one.",
    "Our neighbour keeps a {c} {n} in the garden.",
    "Put the {c} {n} back where you found it.",
    "Nobody noticed the {c} {n} until morning.",
    "He carried the {c} {n} across the street.",
];
const NOUNS: [&str; 8] = [
    "car", "chair", "cup", "door", "bicycle", "blanket", "bucket", "kite",
];

/// Sentences where every colour word is replaced by an invented one: nothing the model could know.
fn colour_pairs() -> (Vec<Pair>, Vec<Pair>) {
    let (mut train, mut test) = (vec![], vec![]);
    for (fi, f) in FRAMES.iter().enumerate() {
        for (ni, n) in NOUNS.iter().enumerate() {
            let (c, x) = COLOURS[(fi * 5 + ni * 3) % COLOURS.len()];
            let src = f.replace("{c}", c).replace("{n}", n);
            let tgt = f.replace("{c}", x).replace("{n}", n);
            let p = Pair {
                source: src,
                target: tgt,
            };
            // Held-out sentences: frames and nouns seen in training, in combinations never seen.
            if (fi + ni) % 4 == 0 {
                test.push(p);
            } else {
                train.push(p);
            }
        }
    }
    (train, test)
}

fn invented_rate(outputs: &[String]) -> f64 {
    let hits = outputs
        .iter()
        .filter(|o| COLOURS.iter().any(|(_, x)| o.contains(x)))
        .count();
    hits as f64 / outputs.len() as f64
}

fn rewrites(
    s: &mut pema::model::Session,
    a: &Adapter,
    test: &[Pair],
    opts: &RewriteOptions,
) -> Vec<String> {
    let tpl = a.template().unwrap();
    test.iter()
        .map(|p| {
            let prompt = Prompt::for_source(s, &tpl, &p.source).unwrap();
            decode::generate(s, Some(a), &prompt, opts, |_| {}, None)
                .unwrap()
                .text
        })
        .collect()
}

/// The reference setup of docs/method.md (zero-shot prompt, bottleneck adapter): plain, fixed λ and GU.
#[test]
fn gu_learns_an_invented_word_substitution_the_plain_model_cannot_know() {
    let dir = tempfile::tempdir().unwrap();
    let (train, test) = colour_pairs();
    let memory = build_with(&train, dir.path(), Template::default(), 0);
    // The daemon's hook that lets rewrites go first: called between steps and evaluations.
    let pauses = std::sync::atomic::AtomicUsize::new(0);
    let pause = || {
        pauses.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    };
    let a = trained(
        &memory,
        &TrainOptions {
            residual: false,
            pause: Some(&pause),
            ..Default::default()
        },
    );
    let t = &a.info().training;
    println!("training: {t:?}");
    let pauses = pauses.into_inner();
    assert!(
        pauses > t.epochs,
        "pause ran {pauses} times in {} epochs",
        t.epochs
    );
    assert_eq!(a.template().unwrap(), Template::default());

    let mut s = common::session();
    let mut outs = |mode| {
        rewrites(
            &mut s,
            &a,
            &test,
            &RewriteOptions {
                mode,
                ..Default::default()
            },
        )
    };
    let gu = outs(Mode::Gu);
    let fixed = outs(Mode::Fixed);
    let plain = outs(Mode::Plain);
    let (rg, rf, rp) = (
        invented_rate(&gu),
        invented_rate(&fixed),
        invented_rate(&plain),
    );
    println!(
        "invented-word rate over {} held-out sentences: GU {rg:.2}, fixed λ {rf:.2}, plain {rp:.2}",
        test.len()
    );
    println!("GU: {gu:?}\nfixed: {fixed:?}\nplain: {:?}", &plain[..3]);
    assert!(
        rp <= 0.05,
        "the plain model cannot know the invented words, yet used them at {rp}"
    );
    // The adapter has learned the whole substitution: with the same weight everywhere it applies
    // it wherever a colour stands.
    assert!(
        rf >= 0.5,
        "fixed λ used the invented words in only {rf} of held-out rewrites"
    );
    // GU gives the adapter most of the weight on the first tokens only (λ < 0.5 after about a
    // fifth of the expected length), so a colour word in mid-sentence stays with the model, which
    // copies it from the source: GU uses the invented words far more often than the plain model
    // (never), not in every sentence. Measured here: 0.26 to 0.37 over runs and splits.
    assert!(
        rg >= 0.2 && rg >= rp + 0.2,
        "GU used the invented words in only {rg} of held-out rewrites (plain {rp})"
    );
}

/// What a user gets: the default memory (worked examples in the prompt), the default adapter
/// and the rewrite options it chose on its held-out pairs, as `pema rewrite` and the daemon use
/// them with no options.
#[test]
fn the_default_rewrite_learns_an_invented_word_substitution() {
    let dir = tempfile::tempdir().unwrap();
    let (train, test) = colour_pairs();
    let memory = build(&train, dir.path(), Template::default());
    let mut a = trained(&memory, &TrainOptions::default());
    assert_eq!(
        a.template().unwrap().text(),
        memory.template().unwrap().text()
    );
    assert_ne!(
        a.template().unwrap(),
        Template::default(),
        "no worked examples"
    );
    // The memory marked the words its targets write and its sources do not: the invented ones.
    let marked = &a.info().marked_words;
    println!("marked words: {marked:?}");
    assert!(!marked.is_empty(), "no marked words");
    assert!(
        marked.iter().all(|w| COLOURS.iter().any(|(_, x)| x == w)),
        "marked words that are not the invented ones: {marked:?}"
    );
    // As `pema train` and the daemon do: the style gate tried on the held-out pairs.
    let held_out = memory.held_out_pairs(memory::DEFAULT_HELD_OUT_PERCENT);
    let template = a.template().unwrap();
    let mut s = common::session();
    let gate =
        pema::eval::choose_style_gate(&mut s, &mut a, &template, &held_out, None, None, |_| {})
            .unwrap();
    println!("style gate: {gate:?}");
    let g = gate.expect("the style gate was not tried");
    assert!(g.pairs > 0 && g.bleu_with.is_finite() && g.bleu_without.is_finite());
    assert_eq!(a.info().decoding.unwrap().style_gate.is_some(), g.gated);
    let default = rewrites(&mut s, &a, &test, &a.default_rewrite());
    let plain = rewrites(
        &mut s,
        &a,
        &test,
        &RewriteOptions {
            mode: Mode::Plain,
            ..Default::default()
        },
    );
    let (rd, rp) = (invented_rate(&default), invented_rate(&plain));
    println!(
        "default ({:?}): {rd:.2} of {} held-out rewrites use the invented words; the plain \
         model with the same worked examples: {rp:.2}\n{default:?}",
        a.info().decoding,
        test.len()
    );
    assert!(a.info().decoding.is_some());
    // Bar set before measuring it: at least fixed λ's bar in the reference setup.
    assert!(
        rd >= 0.5,
        "the default rewrite used the invented words in only {rd} of held-out rewrites"
    );

    // `pema train --choose-by-rewriting`: the memory kept its held-out pairs' text, each
    // candidate rewrites them, and the best is stored with its score.
    let scores =
        pema::eval::choose_schedule(&mut s, &mut a, &template, &held_out, None, |_| {}).unwrap();
    println!("{} held-out pairs; schedules: {scores:#?}", held_out.len());
    assert!(!scores.is_empty(), "too few held-out pairs to choose by");
    assert!(scores.iter().all(|x| x.pairs > 0 && x.bleu.is_finite()));
    assert_eq!(
        a.info().decoding.and_then(|d| d.held_out_bleu),
        Some(scores[0].bleu)
    );
}

#[test]
fn training_lowers_held_out_cross_entropy_and_round_trips_through_a_file() {
    let dir = tempfile::tempdir().unwrap();
    let memory = build(&common::bible_pairs(40), dir.path(), Template::default());
    let model = common::model();
    let a = adapter::train(
        &memory,
        &model.head().unwrap(),
        model.info(),
        &TrainOptions::default(),
        |_| {},
    )
    .unwrap();
    let t = a.info().training.clone();
    println!("{t:?}");
    assert!(t.held_out_entries > 0 && t.train_entries > t.held_out_entries);
    assert!(
        t.held_out_ce < t.held_out_ce_start,
        "held-out CE {} -> {}",
        t.held_out_ce_start,
        t.held_out_ce
    );

    let path = dir.path().join("style.safetensors");
    a.save(&path).unwrap();
    let mut b = Adapter::load(&path).unwrap();
    assert_eq!(b.info(), a.info());
    assert_eq!(b.vocab(), a.vocab());
    b.check_model(model.info()).unwrap();
    b.check_memory(&memory).unwrap();
    b.prepare(&model.head().unwrap()).unwrap();
    let h = memory.keys_f32(0..1);
    let lp = b.log_probs(&h).unwrap();
    let total: f32 = lp.iter().map(|x| x.exp()).sum();
    assert!((total - 1.0).abs() < 1e-3);

    // Warm start from it continues from its weights.
    let warm = adapter::train(
        &memory,
        &model.head().unwrap(),
        model.info(),
        &TrainOptions {
            warm_start: Some(&b),
            max_epochs: 2,
            ..Default::default()
        },
        |_| {},
    )
    .unwrap();
    assert!(warm.info().training.held_out_ce_start <= t.held_out_ce + 1e-3);
}

#[test]
fn adapters_for_another_model_memory_or_template_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let memory = build(
        &common::bible_pairs(6),
        &dir.path().join("a"),
        Template::default(),
    );
    let model = common::model();
    let a = trained(
        &memory,
        &TrainOptions {
            max_epochs: 1,
            ..Default::default()
        },
    );

    let mut other = model.info().clone();
    other.identity = "0".repeat(64);
    other.name = "another-model".into();
    let e = a.check_model(&other).unwrap_err().to_string();
    assert!(e.contains("another model"), "{e}");

    let formal = build(
        &common::bible_pairs(6),
        &dir.path().join("b"),
        Template::from_arg("formal").unwrap(),
    );
    let e = a.check_memory(&formal).unwrap_err().to_string();
    assert!(e.contains("another template"), "{e}");
    let e = adapter::train(
        &formal,
        &model.head().unwrap(),
        model.info(),
        &TrainOptions {
            warm_start: Some(&a),
            ..Default::default()
        },
        |_| {},
    )
    .err()
    .unwrap();
    assert!(format!("{e:#}").contains("another template"), "{e:#}");

    let e = adapter::train(
        &memory,
        &model.head().unwrap(),
        &other,
        &TrainOptions::default(),
        |_| {},
    )
    .err()
    .unwrap();
    assert!(e.to_string().contains("another model"), "{e}");

    // Files that are not adapters.
    let junk = dir.path().join("junk.safetensors");
    std::fs::write(&junk, "not an adapter").unwrap();
    assert!(Adapter::load(&junk)
        .err()
        .unwrap()
        .to_string()
        .contains("not a usable pema adapter"));
    let good = dir.path().join("good.safetensors");
    a.save(&good).unwrap();
    let bytes = std::fs::read(&good).unwrap();
    std::fs::write(&junk, &bytes[..bytes.len() - 100]).unwrap();
    assert!(Adapter::load(&junk).is_err());
}

#[test]
fn empty_and_diverging_memories_are_clear_errors_and_keep_the_last_adapter() {
    let dir = tempfile::tempdir().unwrap();
    let model = common::model();
    let d = model.info().n_embd;
    let header = format::Header {
        key_type: KeyType::F16,
        hidden: d,
        model_identity: *blake3::Hash::from_hex(&model.info().identity)
            .unwrap()
            .as_bytes(),
        model_name: model.info().name.clone(),
        template: Template::default().text().into(),
        template_digest: Template::default().digest(),
    };
    format::write(&dir.path().join("empty"), &header, &[]).unwrap();
    let empty = Memory::open(&dir.path().join("empty")).unwrap();
    let e = train_error(&empty);
    assert!(e.to_string().contains("is empty"), "{e}");

    // Keys full of NaN (a corrupted producer): refused before training.
    let nan = vec![half::f16::NAN; 3 * d];
    let nan_bytes: &[u8] = bytemuck::cast_slice(&nan);
    let groups = [
        format::GroupData {
            hash: [1; 16],
            prompt_tokens: 3,
            keys: &nan_bytes[..2 * d * 2],
            tokens: &[10, 11],
        },
        format::GroupData {
            hash: [2; 16],
            prompt_tokens: 3,
            keys: &nan_bytes[2 * d * 2..],
            tokens: &[12],
        },
    ];
    format::write(&dir.path().join("nan"), &header, &groups).unwrap();
    let e = train_error(&Memory::open(&dir.path().join("nan")).unwrap());
    assert!(e.to_string().contains("non-finite"), "{e}");

    // A loss that becomes NaN (here: an absurd learning rate) stops training; the last good
    // adapter file is untouched.
    let good = build(
        &common::bible_pairs(4),
        &dir.path().join("g"),
        Template::default(),
    );
    let a = trained(
        &good,
        &TrainOptions {
            max_epochs: 1,
            ..Default::default()
        },
    );
    let path = dir.path().join("style.safetensors");
    a.save(&path).unwrap();
    let before = std::fs::read(&path).unwrap();

    let o = std::process::Command::new(env!("CARGO_BIN_EXE_pema"))
        .arg("--model")
        .arg(common::model_path())
        .args(["train", "--learning-rate", "1e30", "--memory"])
        .arg(dir.path().join("g").join("mem"))
        .arg("--out")
        .arg(&path)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success() && err.contains("diverged"), "{err}");
    assert_eq!(std::fs::read(&path).unwrap(), before);
}

#[test]
fn rewrites_stream_and_cancel() {
    let dir = tempfile::tempdir().unwrap();
    let memory = build(&common::bible_pairs(12), dir.path(), Template::default());
    let a = trained(&memory, &TrainOptions::default());
    let mut s = common::session();
    let prompt = Prompt::for_source(
        &s,
        &Template::default(),
        "And he said to them, Go in peace.",
    )
    .unwrap();
    let mut streamed = String::new();
    let r = decode::generate(
        &mut s,
        Some(&a),
        &prompt,
        &RewriteOptions::default(),
        |p| streamed.push_str(p),
        None,
    )
    .unwrap();
    assert!(r.tokens > 0);
    assert_eq!(streamed.trim(), r.text);

    let cancel = AtomicBool::new(true);
    let e = decode::generate(
        &mut s,
        Some(&a),
        &prompt,
        &RewriteOptions::default(),
        |_| {},
        Some(&cancel),
    )
    .unwrap_err();
    assert!(e.to_string().contains("cancelled"));

    let e = decode::generate(
        &mut s,
        None,
        &prompt,
        &RewriteOptions::default(),
        |_| {},
        None,
    )
    .unwrap_err();
    assert!(e.to_string().contains("needs an adapter"));
}

/// A style that keeps names (here: people's names, colours invented) is learned as one, and a
/// rewritten line that lacks a name, or comes out too short, is made again, with less of the
/// adapter and then without it, its stream taken back first, so that what was streamed adds up
/// to the result.
#[test]
fn a_line_that_drops_a_name_is_made_again_and_its_stream_adds_up() {
    const PEOPLE: [&str; 6] = ["Anna", "Boris", "Clara", "Dmitri", "Elena", "Farid"];
    let mut pairs = Vec::new();
    let frames = [
        "Yesterday {p} bought a {c} {n} at the market.",
        "On Monday {p} found the {c} {n} in the attic.",
        "I think {p} would like the {c} {n} best.",
        "Last week {p} sold the old {c} {n} to a neighbour.",
    ];
    for (h, frame) in frames.iter().enumerate() {
        for (i, p) in PEOPLE.iter().enumerate() {
            for (j, n) in NOUNS.iter().enumerate() {
                let (c, x) = COLOURS[(h + i + 2 * j) % COLOURS.len()];
                let f = |c: &str| frame.replace("{p}", p).replace("{c}", c).replace("{n}", n);
                pairs.push(Pair {
                    source: f(c),
                    target: f(x),
                });
            }
        }
    }
    let dir = tempfile::tempdir().unwrap();
    let memory = build(&pairs, dir.path(), Template::default());
    let a = trained(&memory, &TrainOptions::default());
    let k = a
        .info()
        .kept_names
        .clone()
        .expect("a style that keeps names");
    println!("{k:?}");
    assert!(k.changed.is_empty() && k.share_kept == 1.0);
    // Its targets are as long as their sources: a rewrite that falls 4 words short is too.
    let length = a.info().kept_length.clone().expect("a length learned");
    assert_eq!(length.min_ratio, 1.0);
    let opts = a.default_rewrite();
    assert!(opts.keep_names && opts.mode != Mode::Plain);

    let mut s = common::session();
    let template = a.template().unwrap();
    let run = |s: &mut pema::model::Session, text: &str, opts: &RewriteOptions| {
        let mut streamed = String::new();
        let mut retracts = 0;
        let r = decode::rewrite_text(
            s,
            Some(&a),
            &template,
            text,
            opts,
            |e| match e {
                decode::TextEvent::Text(t) => streamed.push_str(t),
                decode::TextEvent::Retract(n) => {
                    retracts += 1;
                    streamed.truncate(streamed.len() - n);
                }
            },
            None,
        )
        .unwrap();
        assert_eq!(streamed.trim(), r.text, "the stream adds up to the result");
        (r, retracts)
    };
    // Cut after three tokens, no line can keep the name at the end of its source: each is made
    // again at half λ, then (its memory marked the words its targets write: the invented
    // colours) with the adapter only at those words, then by the plain model.
    println!("marked words: {:?}", a.info().marked_words);
    assert!(!a.info().marked_words.is_empty(), "no marked words");
    let again = 3;
    let cut = RewriteOptions {
        max_tokens: Some(3),
        ..opts
    };
    let text = "Then they gave the old green lamp to Clara.\nAnd the bread went to Farid.";
    let (r, retracts) = run(&mut s, text, &cut);
    println!("{r:?}");
    assert_eq!(r.remade_lines, 2 * again);
    assert_eq!(retracts, 2 * again);
    assert!(!r.text.contains("Clara") && r.text.contains('\n'));
    // A line whose only name opens it (so is no name) but that comes out too short is made
    // again too; a short line is not checked.
    let long = "Clara then gave the old green lamp to a neighbour at the market.";
    let (r, retracts) = run(&mut s, long, &cut);
    assert_eq!((r.remade_lines, retracts), (again, again), "{r:?}");
    let (r, retracts) = run(&mut s, "Clara sold the lamp.", &cut);
    assert_eq!((r.remade_lines, retracts), (0, 0), "{r:?}");
    // Without the check nothing is made again.
    let (r, retracts) = run(
        &mut s,
        text,
        &RewriteOptions {
            keep_names: false,
            ..cut
        },
    );
    assert_eq!((r.remade_lines, retracts), (0, 0));
    // Whole rewrites of unseen combinations keep their names, or were made again until they did
    // (or by the plain model).
    for p in [
        "Yesterday Clara bought a red kite at the market.",
        "Yesterday Boris bought a white cup at the market.",
    ] {
        let (r, _) = run(&mut s, p, &opts);
        println!("{p} -> {} ({} remade)", r.text, r.remade_lines);
        assert!(k.keeps(p, &r.text) || r.remade_lines == 2, "{}", r.text);
    }
}

#[test]
fn a_rewrite_fed_its_own_output_as_a_draft_takes_it_and_writes_the_same() {
    let mut s = common::session();
    let template = Template::from_arg("rewrite").unwrap();
    let source = "The council wrote to say the lamp would be automated in the spring.";
    let mut prompt = Prompt::for_source(&s, &template, source).unwrap();
    let plain = RewriteOptions {
        mode: Mode::Plain,
        ..RewriteOptions::default()
    };
    let alone = decode::generate(
        &mut s,
        None,
        &prompt,
        &RewriteOptions {
            drafts: false,
            ..plain
        },
        |_| {},
        None,
    )
    .unwrap();
    assert_eq!(alone.draft_tokens, (0, 0));
    assert!(alone.tokens > 5, "{alone:?}");
    // Its own tokens as the only draft: every one is picked (bar a tie that a batched decode
    // rounds the other way), each still from its own state, and the text is the same.
    prompt.drafts = decode::Drafts::default();
    prompt.drafts.push(alone.output_tokens.clone());
    let mut streamed = String::new();
    let drafted = decode::generate(
        &mut s,
        None,
        &prompt,
        &plain,
        |t| streamed.push_str(t),
        None,
    )
    .unwrap();
    assert_eq!(drafted.text, alone.text);
    assert_eq!(streamed.trim(), drafted.text);
    let (picked, not_picked) = drafted.draft_tokens;
    println!("draft tokens picked {picked}, not picked {not_picked}");
    assert!(picked + 2 >= alone.tokens, "{:?}", drafted.draft_tokens);
    // A draft that goes wrong after its first two tokens: the tokens fed after those are taken
    // back, and the text is the same.
    let mut wrong = alone.output_tokens[..2].to_vec();
    wrong.extend(alone.output_tokens[2..].iter().rev());
    prompt.drafts = decode::Drafts::default();
    prompt.drafts.push(wrong);
    let w = decode::generate(&mut s, None, &prompt, &plain, |_| {}, None).unwrap();
    println!(
        "wrong draft: picked {}, not picked {}",
        w.draft_tokens.0, w.draft_tokens.1
    );
    assert!(w.draft_tokens.1 > 0, "{:?}", w.draft_tokens);
    assert_eq!(w.text, alone.text);
}
