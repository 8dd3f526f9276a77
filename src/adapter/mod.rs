//! The PEMA adapter (docs/method.md §2): a low-rank bottleneck on the final hidden state,
//! `P_PEMA(· | h) = softmax(W_C · B_pd · A · h)`, trained on an external memory.
//!
//! This module sees hidden states and the LM head only — never the rest of the model (PEMA's
//! offsite property). `W_C` is the LM head restricted to the adapter's candidate vocabulary: the
//! tokens it was trained to produce (the whole vocabulary in `full` mode).

mod decoding;
mod file;
mod pca;
mod train;

use std::path::Path;

use anyhow::{bail, Result};
use candle_core::{DType, Device, Tensor};

pub use crate::fidelity::{KeptLength, KeptNames};
pub use decoding::{choose_decoding, Decoding, DecodingScore, ADAPTER_TOP_K};
pub use train::{train, TrainOptions, TrainProgress, TrainReport, VocabMode, MIN_PAIRS};

/// The adapter's rank unless a flag or a workspace's `.pema.toml` says otherwise.
pub const DEFAULT_RANK: usize = 128;

use crate::memory::{Memory, Template};
use crate::model::{LmHead, ModelInfo};

/// What an adapter was made from and how; stored in the adapter file's metadata.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct AdapterInfo {
    /// The [`ModelInfo::identity`] of the model it was trained for; any other is refused.
    pub model_identity: String,
    /// That model's name, for messages.
    pub model_name: String,
    /// The memory's template text, worked examples included: a rewrite must use this very
    /// prompt.
    pub template: String,
    /// Checksum of the memory it was trained on.
    pub memory_digest: String,
    /// Hidden size d of the model.
    pub hidden_size: usize,
    /// Rank r of the bottleneck.
    pub rank: usize,
    /// Whether the softmax runs over candidate tokens or the whole vocabulary.
    pub vocab_mode: VocabMode,
    /// Size |C| of the candidate vocabulary (V in `full` mode).
    pub vocab_size: usize,
    /// How training went.
    pub training: TrainReport,
    /// How this adapter rewrites when no options say otherwise: chosen on its held-out pairs;
    /// None when it had none to choose on.
    pub decoding: Option<Decoding>,
    /// `P_PEMA = softmax(W·(h + B_pd·A·h))` instead of the reference `softmax(W·B_pd·A·h)`.
    pub residual: bool,
    /// Which names its held-out pairs keep, when they keep them (a rewrite that drops one is
    /// made again with less of the adapter); None when the style renames things or no
    /// held-out text was kept.
    pub kept_names: Option<KeptNames>,
    /// How short a rewrite of its held-out pairs' style may be (a shorter one is made again
    /// with less of the adapter); None with too few held-out pairs.
    pub kept_length: Option<KeptLength>,
    /// The words its memory's targets write and their sources do not (`memory::marked_words`):
    /// where a rewrite may give it its whole weight (`Decoding::style_gate`). Empty for a memory
    /// or an adapter from before pema kept them.
    pub marked_words: Vec<String>,
}

/// A trained PEMA adapter: encoder `A` (r × d), predictive decoder `B_pd` (d × r), the
/// reconstruction decoder `B_rct` kept for warm starts, and its candidate vocabulary `C`. Given
/// a final hidden state `h` it gives `log P_PEMA` over `C` ([`Adapter::log_probs`]), which a
/// rewrite blends with the model's own distribution. It must be [`Adapter::prepare`]d with the
/// model's LM head before use, and refuses a model or memory other than its own. Stored in one
/// file with its [`AdapterInfo`].
pub struct Adapter {
    /// Encoder, r × d.
    a: Tensor,
    /// Predictive decoder, d × r.
    b_pd: Tensor,
    /// Reconstruction decoder, d × r (kept for warm starts).
    b_rct: Tensor,
    /// The candidate vocabulary, ascending token ids.
    vocab: Vec<u32>,
    info: AdapterInfo,
    /// `W_C · B_pd` (|C| × r), precomputed for inference (docs/method.md §3's regrouping).
    proj: Option<Tensor>,
    /// `W_C` (|C| × d), for a residual adapter.
    w_c: Option<Tensor>,
    /// The tokens that spell its marked words, ascending: made once, by the decoder's tokenizer.
    marked_tokens: std::sync::OnceLock<Vec<u32>>,
}

impl Adapter {
    /// Learns from the memory's held-out pairs (their text, kept beside the memory) which
    /// names this style keeps and how short it makes a rewrite (`fidelity`); nothing when no
    /// held-out text was kept.
    pub fn learn_fidelity(&mut self, memory: &Memory, held_out_percent: u32) {
        let held = memory.held_out_pairs(held_out_percent);
        let pairs = || held.iter().map(|p| (p.source.as_str(), p.target.as_str()));
        self.info.kept_names = KeptNames::learn(pairs());
        self.info.kept_length = KeptLength::learn(pairs());
        self.info.marked_words = memory.marked_words();
    }

    /// The tokens that spell a marked word (with and without a space before it), ascending;
    /// `token` gives a text's token when it is one, from the model's tokenizer, which this
    /// module does not see. Made on the first call, then kept.
    pub fn marked_tokens(&self, token: impl Fn(&str) -> Option<u32>) -> &[u32] {
        self.marked_tokens.get_or_init(|| {
            let mut t: Vec<u32> = self
                .info
                .marked_words
                .iter()
                .flat_map(|w| [token(&format!(" {w}")), token(w)])
                .flatten()
                .collect();
            t.sort_unstable();
            t.dedup();
            t
        })
    }

    /// What the adapter was made from and how.
    pub fn info(&self) -> &AdapterInfo {
        &self.info
    }

    /// The candidate vocabulary `C`: the token ids its distribution covers, ascending.
    pub fn vocab(&self) -> &[u32] {
        &self.vocab
    }

    /// The prompt template (worked examples included) a rewrite with this adapter must use.
    pub fn template(&self) -> Result<Template> {
        Template::new(&self.info.template)
    }

    /// Makes `d` this adapter's default schedule.
    pub fn set_decoding(&mut self, d: Decoding) {
        self.info.decoding = Some(d);
    }

    /// Reads an adapter file; it must still be checked against the model and
    /// [`Adapter::prepare`]d (or use [`Adapter::load_for`]).
    pub fn load(path: &Path) -> Result<Self> {
        file::load(path)
    }

    /// Loads the adapter at `path` for the model of `info` and `head`, ready to rewrite: refuses
    /// one made for another model, then [`Adapter::prepare`]s it.
    pub fn load_for(path: &Path, info: &ModelInfo, head: &LmHead) -> Result<Self> {
        let mut a = Self::load(path)?;
        a.check_model(info)?;
        a.prepare(head)?;
        Ok(a)
    }

    /// Writes the adapter atomically; the previous file stays whole until the rename.
    pub fn save(&self, path: &Path) -> Result<()> {
        file::save(self, path)
    }

    /// Refuses an adapter made for another model.
    pub fn check_model(&self, model: &ModelInfo) -> Result<()> {
        if !model.answers_to(&self.info.model_identity) || self.info.hidden_size != model.n_embd {
            bail!(
                "this adapter was trained for another model ({}), not {} ({}); train one for this model",
                self.info.model_name,
                model.name,
                model.path.display()
            );
        }
        Ok(())
    }

    /// Refuses to pair the adapter with a memory of another model or template (its hidden
    /// states would not be the ones the adapter learned from).
    pub fn check_memory(&self, memory: &Memory) -> Result<()> {
        if memory.model_identity() != self.info.model_identity
            || memory.hidden_size() != self.info.hidden_size
        {
            bail!(
                "the memory {} was built with another model than this adapter ({})",
                memory.path().display(),
                self.info.model_name
            );
        }
        if memory.template()?.text() != self.info.template {
            bail!(
                "the memory {} was built with another template ({:?}) than this adapter ({:?})",
                memory.path().display(),
                memory.template()?.text(),
                self.info.template
            );
        }
        Ok(())
    }

    /// Precomputes `W_C · B_pd` so that a token costs two small matrix-vector products.
    pub fn prepare(&mut self, head: &LmHead) -> Result<()> {
        if self
            .vocab
            .last()
            .is_some_and(|&t| t as usize >= head.n_vocab())
            || self.info.hidden_size != head.n_embd()
        {
            bail!(
                "this adapter does not fit the model's LM head ({} × {})",
                head.n_vocab(),
                head.n_embd()
            );
        }
        let w = candidate_rows(head, &self.vocab, &Device::Cpu)?;
        let b = self.b_pd.to_device(&Device::Cpu)?;
        self.proj = Some(w.matmul(&b)?);
        self.w_c = self.info.residual.then_some(w);
        self.a = self.a.to_device(&Device::Cpu)?;
        Ok(())
    }

    /// log P_PEMA over the candidate vocabulary (aligned with [`Adapter::vocab`]).
    pub fn log_probs(&self, h: &[f32]) -> Result<Vec<f32>> {
        let Some(proj) = &self.proj else {
            bail!("adapter not prepared: call prepare() first")
        };
        let h = Tensor::from_slice(h, (h.len(), 1), &Device::Cpu)?;
        let code = self.a.matmul(&h)?;
        let mut z = proj.matmul(&code)?;
        if let Some(w) = &self.w_c {
            z = (z + w.matmul(&h)?)?;
        }
        let mut logits = z.flatten_all()?.to_vec1::<f32>()?;
        crate::logspace::log_softmax(&mut logits);
        Ok(logits)
    }
}

/// Rows of the LM head for the candidate tokens, dequantised to f32 (|C| × d).
fn candidate_rows(head: &LmHead, vocab: &[u32], device: &Device) -> Result<Tensor> {
    let w = if vocab.len() == head.n_vocab() {
        head.weight().dequantize(&Device::Cpu)?
    } else {
        let ids = Tensor::from_slice(vocab, vocab.len(), &Device::Cpu)?;
        head.weight().embedding(&ids)?
    };
    Ok(w.to_dtype(DType::F32)?.to_device(device)?)
}
