#![allow(dead_code)]
//! Shared by the integration tests: the real default model, loaded once per test binary, and
//! real pairs from the shipped examples.

use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use pema::memory::{Pair, PairsRead};
use pema::model::{Model, SessionOptions};

/// Resolved once per test binary (a test may point `XDG_CACHE_HOME`, where the default model
/// is looked for, elsewhere afterwards).
pub fn model_path() -> PathBuf {
    static PATH: OnceLock<PathBuf> = OnceLock::new();
    PATH.get_or_init(|| {
        pema::model::resolve_model(None).unwrap_or_else(|e| {
            panic!("the tests need the default model; `bash scripts/test.sh` installs it.\n{e:#}")
        })
    })
    .clone()
}

pub fn model() -> Arc<Model> {
    static MODEL: OnceLock<Arc<Model>> = OnceLock::new();
    MODEL
        .get_or_init(|| Model::load(&model_path()).expect("loading the default model"))
        .clone()
}

pub fn session() -> pema::model::Session {
    model().session(SessionOptions::default()).unwrap()
}

pub fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// The first `n` pairs of the shipped Bible examples (their dev split).
pub fn bible_pairs(n: usize) -> Vec<Pair> {
    example_pairs("dev.jsonl", n)
}

/// The first `n` pairs of the shipped Bible examples' training split.
pub fn bible_train_pairs(n: usize) -> Vec<Pair> {
    example_pairs("train.jsonl", n)
}

fn example_pairs(file: &str, n: usize) -> Vec<Pair> {
    let mut r = PairsRead::default();
    pema::memory::read_pairs_file(&repo().join("examples/bible_bbe_asv").join(file), &mut r)
        .unwrap();
    r.pairs.truncate(n);
    r.pairs
}

pub fn write_pairs(path: &Path, pairs: &[Pair]) {
    pema::memory::write_pairs_file(path, pairs).unwrap();
}

pub fn cosine(x: &[f32], y: &[f32]) -> f32 {
    let dot: f32 = x.iter().zip(y).map(|(a, b)| a * b).sum();
    let nx: f32 = x.iter().map(|a| a * a).sum::<f32>().sqrt();
    let ny: f32 = y.iter().map(|a| a * a).sum::<f32>().sqrt();
    dot / (nx * ny)
}

/// Checks that `got` is the hidden state at position `pos` of `all`: nearly parallel to it, and
/// closer to it than to the state at any other position. (Exact equality is not expected: llama.cpp
/// picks matmul kernels by batch shape, so packing sequences together changes the last bits, and
/// 18 layers amplify them to a cosine of about 0.9995.)
pub fn assert_is_state_at(got: &[f32], all: &[&[f32]], pos: usize, what: &str) {
    let cos: Vec<f32> = all.iter().map(|h| cosine(got, h)).collect();
    assert!(
        cos[pos] > 0.995,
        "{what}: cosine with position {pos} is only {}",
        cos[pos]
    );
    let best = (0..cos.len())
        .max_by(|&a, &b| cos[a].total_cmp(&cos[b]))
        .unwrap();
    assert_eq!(
        best, pos,
        "{what}: closest to position {best} ({}), not {pos} ({})",
        cos[best], cos[pos]
    );
}
pub mod rpc;
