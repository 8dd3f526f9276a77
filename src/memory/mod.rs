//! The external memory of docs/method.md §1: one (key, token) row per target token, the key being the
//! model's final hidden state just before that token. Built from pairs, grouped by pair and keyed
//! by the pair's content hash, so that a rebuild recomputes only what changed.

mod build;
pub mod format;
mod marked;
mod pairs;
pub mod split;
mod template;

use std::path::{Path, PathBuf};

use anyhow::{bail, Result};

pub use build::{
    build, build_pairs, choose_examples, BuildOptions, BuildProgress, BuildReport, DEFAULT_SHOTS,
};
pub(crate) use build::{end_token, tokenize_pair};
pub use format::{Group, KeyType};
pub use marked::{marked_words, read_marked_words, write_marked_words, MARKED_WORDS_FILE};
pub use pairs::{
    parse_pairs, read_held_out, read_pairs_file, write_pairs_file, Pair, PairsRead, SkippedLine,
    HELD_OUT_FILE,
};

/// Held-out pairs whose text is kept beside a memory: enough to choose a schedule by and to
/// learn which names the style keeps (`fidelity`), at a few hundred KiB at most.
pub const MAX_HELD_OUT_TEXTS: usize = 512;
pub use split::{held_out, DEFAULT_HELD_OUT_PERCENT};
pub use template::{Template, DEFAULT_TEMPLATE, PRESETS};

use crate::model::ModelInfo;

/// A memory on disk, opened read-only.
///
/// The external memory of docs/method.md §1: N rows, one per target token of the training
/// pairs, each a key (the model's final hidden state before that token, d floats stored as
/// f16 or f32) and a value (the token id). Rows are grouped by pair ([`Group`]), in file order.
/// The file is memory-mapped and its checksum verified on opening; it records the model and
/// template it was built with, and refuses to be used with others.
pub struct Memory {
    file: format::MappedMemory,
}

/// What `pema memory stats` reports.
#[derive(Clone, Debug, serde::Serialize)]
pub struct MemoryStats {
    /// The memory file.
    pub path: PathBuf,
    /// The file's format version.
    pub format_version: u32,
    /// Rows N: one per target token.
    pub entries: usize,
    /// Pairs the rows come from.
    pub pairs: usize,
    /// Pairs held out at the default split ([`DEFAULT_HELD_OUT_PERCENT`]).
    pub held_out_pairs: usize,
    /// Hidden size d: floats per key.
    pub hidden_size: usize,
    /// How the keys are stored.
    pub key_type: KeyType,
    /// The file's size in bytes.
    pub bytes: usize,
    /// `bytes / entries`: what one row costs on disk, header and index included.
    pub bytes_per_entry: f64,
    /// The name of the model it was built with.
    pub model_name: String,
    /// That model's identity digest, in hex.
    pub model_identity: String,
    /// The template text, worked examples included.
    pub template: String,
}

impl Memory {
    /// Opens `dir/memory.pema`, checking its integrity.
    pub fn open(dir: &Path) -> Result<Self> {
        let path = dir.join(format::FILE_NAME);
        if !path.is_file() {
            bail!(
                "no memory in {} (expected {}); build one with `pema memory build`",
                dir.display(),
                path.display()
            );
        }
        Ok(Self {
            file: format::MappedMemory::open(&path)?,
        })
    }

    /// The memory file (`…/memory.pema`).
    pub fn path(&self) -> &Path {
        &self.file.path
    }

    /// Rows N: one per target token.
    pub fn len(&self) -> usize {
        self.file.n_entries
    }

    /// Whether the memory has no rows.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Hidden size d: floats per key.
    pub fn hidden_size(&self) -> usize {
        self.file.header.hidden
    }

    /// How the keys are stored (f16 or f32).
    pub fn key_type(&self) -> KeyType {
        self.file.header.key_type
    }

    /// The template the memory was built with, worked examples included; inference must use
    /// the same.
    pub fn template(&self) -> Result<Template> {
        Template::new(&self.file.header.template)
    }

    /// The identity digest of the model it was built with, in hex (as [`ModelInfo::identity`]).
    pub fn model_identity(&self) -> String {
        blake3::Hash::from_bytes(self.file.header.model_identity)
            .to_hex()
            .to_string()
    }

    /// The pairs, in file order, each with its rows.
    pub fn groups(&self) -> &[Group] {
        &self.file.groups
    }

    /// Target token of every row.
    pub fn tokens(&self) -> &[u32] {
        self.file.tokens()
    }

    /// Refuses a memory with a target token outside the model's vocabulary.
    pub fn check_tokens(&self, n_vocab: usize) -> Result<()> {
        self.file.check_tokens(n_vocab)
    }

    /// Identifies this exact memory (its checksum), so an adapter can say what it was trained on.
    pub fn digest(&self) -> String {
        blake3::Hash::from_bytes(self.file.checksum())
            .to_hex()
            .to_string()
    }

    /// Appends the keys of `rows`, in that order, to `out` as f32 (row-major): a batch of
    /// training read straight from the map, with no copy of the whole memory.
    pub fn gather_keys_f32(&self, rows: impl IntoIterator<Item = usize>, out: &mut Vec<f32>) {
        use half::slice::HalfFloatSliceExt as _;
        let d = self.hidden_size();
        match (self.file.keys_f16(), self.file.keys_f32()) {
            (Some(k), _) => {
                for r in rows {
                    let at = out.len();
                    out.resize(at + d, 0.0);
                    k[r * d..(r + 1) * d].convert_to_f32_slice(&mut out[at..]);
                }
            }
            (_, Some(k)) => {
                for r in rows {
                    out.extend_from_slice(&k[r * d..(r + 1) * d]);
                }
            }
            _ => unreachable!("a memory has one key type"),
        }
    }

    /// Whether every key of `rows` is finite (a damaged memory's may not be).
    pub fn keys_finite(&self, rows: std::ops::Range<usize>) -> bool {
        let d = self.hidden_size();
        match (self.file.keys_f16(), self.file.keys_f32()) {
            (Some(k), _) => k[rows.start * d..rows.end * d]
                .iter()
                .all(|x| x.is_finite()),
            (_, Some(k)) => k[rows.start * d..rows.end * d]
                .iter()
                .all(|x| x.is_finite()),
            _ => unreachable!("a memory has one key type"),
        }
    }

    /// Keys of `rows`, as f32, row-major.
    pub fn keys_f32(&self, rows: std::ops::Range<usize>) -> Vec<f32> {
        let mut out = Vec::with_capacity(rows.len() * self.hidden_size());
        self.gather_keys_f32(rows, &mut out);
        out
    }

    /// Whether each pair is held out for validation.
    pub fn held_out(&self, percent: u32) -> Vec<bool> {
        let hashes: Vec<_> = self.groups().iter().map(|g| g.hash).collect();
        split::held_out(&hashes, percent)
    }

    /// The text of this memory's held-out pairs (split at `percent`) that the build kept
    /// beside it, at most [`MAX_HELD_OUT_TEXTS`]; none for a memory built before pema kept them.
    pub fn held_out_pairs(&self, percent: u32) -> Vec<Pair> {
        let held: std::collections::HashSet<[u8; 16]> = self
            .groups()
            .iter()
            .zip(self.held_out(percent))
            .filter(|(_, h)| *h)
            .map(|(g, _)| g.hash)
            .collect();
        let dir = self.path().parent().unwrap_or(Path::new("."));
        let mut pairs = read_held_out(dir);
        pairs.retain(|p| held.contains(&p.hash()));
        pairs
    }

    /// The words its training pairs' targets write and their sources do not (kept beside it;
    /// none for a memory built before pema kept them).
    pub fn marked_words(&self) -> Vec<String> {
        read_marked_words(self.path().parent().unwrap_or(Path::new(".")))
    }

    /// Refuses a memory made with another model or template: its keys would not match.
    pub fn check_compatible(&self, model: &ModelInfo, template: &Template) -> Result<()> {
        let h = &self.file.header;
        if !model.answers_to(&self.model_identity()) || h.hidden != model.n_embd {
            bail!(
                "the memory {} was built with another model ({}), not {} ({}); rebuild it for this model",
                self.path().display(),
                h.model_name,
                model.name,
                model.path.display()
            );
        }
        if h.template_digest != template.digest() {
            bail!(
                "the memory {} was built with another template ({:?}), not {:?}; rebuild it or use its template",
                self.path().display(),
                h.template,
                template.text()
            );
        }
        Ok(())
    }

    /// What `pema memory stats` shows about this memory.
    pub fn stats(&self) -> MemoryStats {
        let h = &self.file.header;
        MemoryStats {
            path: self.file.path.clone(),
            format_version: format::FORMAT_VERSION,
            entries: self.len(),
            pairs: self.groups().len(),
            held_out_pairs: self
                .held_out(DEFAULT_HELD_OUT_PERCENT)
                .iter()
                .filter(|&&b| b)
                .count(),
            hidden_size: h.hidden,
            key_type: h.key_type,
            bytes: self.file.file_bytes(),
            bytes_per_entry: self.file.file_bytes() as f64 / self.len().max(1) as f64,
            model_name: h.model_name.clone(),
            model_identity: self.model_identity(),
            template: h.template.clone(),
        }
    }
}
