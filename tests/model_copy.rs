//! The 8-bit copy of the default model (src/model/cpu_copy.rs), with the real model: made once,
//! reused, made again when damaged, close to the original, and never in the way of a start. Its
//! own test binary: it sets `PEMA_MODEL_CACHE` and `PEMA_MODEL_AS_IS` for the whole process.

mod common;

use pema::model::{Model, SessionOptions};

fn hidden_states(model: &std::sync::Arc<Model>, text: &str) -> Vec<Vec<f32>> {
    let mut s = model.session(SessionOptions::default()).unwrap();
    let mut tokens: Vec<u32> = model.bos().into_iter().collect();
    tokens.extend(model.tokenize(text).unwrap());
    s.eval_all(&tokens)
        .unwrap()
        .into_iter()
        .map(|step| step.hidden)
        .collect()
}

/// The model's own greedy continuation of `text`, `n` tokens.
fn greedy(model: &std::sync::Arc<Model>, text: &str, n: usize) -> Vec<u32> {
    let mut s = model.session(SessionOptions::default()).unwrap();
    let mut tokens: Vec<u32> = model.bos().into_iter().collect();
    tokens.extend(model.tokenize(text).unwrap());
    let mut step = s.start(&tokens).unwrap();
    let mut out = vec![];
    for _ in 0..n {
        let t = pema::logspace::argmax(&step.logits) as u32;
        out.push(t);
        step = s.advance(t).unwrap();
    }
    out
}

#[test]
fn the_default_model_runs_from_an_8_bit_copy_made_once() {
    let original = common::model_path();
    let cache = tempfile::tempdir().unwrap();
    std::env::set_var("PEMA_MODEL_CACHE", cache.path());

    std::env::set_var("PEMA_MODEL_AS_IS", "1");
    let as_is = Model::load(&original).unwrap();
    assert_eq!(as_is.info().path, original);
    assert_eq!(std::fs::read_dir(cache.path()).unwrap().count(), 0);
    std::env::remove_var("PEMA_MODEL_AS_IS");

    let copied = Model::load(&original).unwrap();
    let copy = copied.info().path.clone();
    assert_eq!(copy.parent(), Some(cache.path()), "{}", copy.display());
    // It answers to the original's identity: a memory or adapter made with either serves both.
    assert_eq!(copied.info().identity, as_is.info().identity);
    // And to the copy's own digest, which what was made while it had its own identity carries.
    assert!(as_is.info().aliases.is_empty());
    assert_eq!(copied.info().aliases.len(), 1);
    assert_ne!(copied.info().aliases[0], copied.info().identity);
    assert!(copied.info().answers_to(&copied.info().aliases[0]));
    assert!(!as_is.info().answers_to(&copied.info().aliases[0]));
    assert_eq!(copied.info().name, as_is.info().name);
    assert_eq!(copied.info().given, original);
    let size = std::fs::metadata(&copy).unwrap().len();
    let original_size = std::fs::metadata(&original).unwrap().len();
    assert!(
        size > original_size && (size as f64) < 1.2 * original_size as f64,
        "{size} against {original_size}"
    );

    // The copy holds the same weights: the same hidden states (to float rounding, as llama.cpp
    // sums in another order) and the same greedy text.
    let text = "And he said unto them, Go ye into all the world.";
    let (a, b) = (hidden_states(&as_is, text), hidden_states(&copied, text));
    for (x, y) in a.iter().zip(&b) {
        let c = common::cosine(x, y);
        assert!(c > 0.9999, "cosine {c}");
    }
    let prompt = "Rewrite the text in the house style:\nThe king went to the town.\nRewritten:";
    assert_eq!(greedy(&as_is, prompt, 24), greedy(&copied, prompt, 24));
    // Its LM head is the original's (already 8-bit, copied as it is).
    assert_eq!(
        copied.head().unwrap().apply(&a[3]).unwrap(),
        as_is.head().unwrap().apply(&a[3]).unwrap()
    );

    // A memory built with the file as it is serves the copy: checked compatible, and a build
    // with the copy reuses every pair instead of computing the memory again.
    let dir = tempfile::tempdir().unwrap();
    let pairs = dir.path().join("pairs.jsonl");
    common::write_pairs(&pairs, &common::bible_pairs(4));
    let build = |model: &std::sync::Arc<Model>| {
        let mut s = model.session(SessionOptions::default()).unwrap();
        pema::memory::build(
            &mut s,
            &pema::memory::BuildOptions {
                pairs_files: vec![pairs.clone()],
                template: pema::memory::Template::default(),
                out: dir.path().join("mem"),
                key_type: pema::memory::KeyType::F16,
                replace: false,
                cancel: None,
                max_entries: None,
                shots: 0,
            },
            |_| {},
        )
        .unwrap()
    };
    assert_eq!(build(&as_is).pairs_reused, 0);
    let memory = pema::memory::Memory::open(&dir.path().join("mem")).unwrap();
    memory
        .check_compatible(copied.info(), &pema::memory::Template::default())
        .unwrap();
    let reused = build(&copied);
    assert_eq!((reused.pairs_reused, reused.pairs), (4, 4), "{reused:?}");

    // Made once: the next load reads the same file.
    let modified = std::fs::metadata(&copy).unwrap().modified().unwrap();
    let again = Model::load(&original).unwrap();
    assert_eq!(again.info().identity, copied.info().identity);
    assert_eq!(
        std::fs::metadata(&copy).unwrap().modified().unwrap(),
        modified
    );
    drop((again, copied));

    // A damaged copy is made again.
    let bytes = std::fs::read(&copy).unwrap();
    std::fs::write(&copy, &bytes[..bytes.len() / 2]).unwrap();
    let remade = Model::load(&original).unwrap();
    assert_eq!(remade.info().path, copy);
    assert_eq!(std::fs::metadata(&copy).unwrap().len(), size);
    drop(remade);

    // Where no copy can be written, the model loads as it is.
    let blocked = cache.path().join("a-file");
    std::fs::write(&blocked, "not a folder").unwrap();
    std::env::set_var("PEMA_MODEL_CACHE", &blocked);
    let fallback = Model::load(&original).unwrap();
    assert_eq!(fallback.info().path, original);
    assert_eq!(fallback.info().identity, as_is.info().identity);
}
