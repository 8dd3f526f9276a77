//! The model host: a quantised GGUF model run by llama.cpp, seen by the rest of pema only as
//! tokens in, final hidden states and next-token logits out, plus the LM head.

mod head;
mod llama;
mod locate;

use std::fs::File;
use std::io::BufReader;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{bail, Context as _, Result};
use candle_core::quantized::gguf_file;

use crate::logspace::argmax;

pub use head::LmHead;
pub use llama::Token;
pub use locate::{default_model_path, resolve_model, INSTALL_DEFAULT_MODEL};

/// What identifies a model: memories and adapters record it and refuse any other.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct ModelInfo {
    /// The GGUF's `general.name`, or the file name without extension when it has none.
    pub name: String,
    /// The GGUF file the model was loaded from.
    pub path: PathBuf,
    /// blake3 of the GGUF's metadata, tensor table and size, in hex.
    pub identity: String,
    /// Hidden size d: the length of a hidden state (640 for Gemma 3 270M).
    pub n_embd: usize,
    /// Vocabulary size V.
    pub n_vocab: usize,
    /// The context length, in tokens, the model was trained with.
    pub n_ctx_train: usize,
}

/// A loaded GGUF model: llama.cpp's weights, the LM head read again from the same file, and
/// the [`ModelInfo`] that identifies it. Shared as `Arc<Model>` by every [`Session`] on it; it
/// tokenizes and detokenizes, and [`Model::session`] opens a context to run it. Loading checks
/// the file first and refuses a head whose shape differs from llama.cpp's model.
pub struct Model {
    llama: llama::LlamaModel,
    head: LmHead,
    info: ModelInfo,
    ending_tokens: std::sync::OnceLock<Vec<Token>>,
}

impl Model {
    /// Loads a GGUF model. The file is checked first so that a missing, truncated or foreign file
    /// gets a clear error instead of whatever llama.cpp would do with it.
    pub fn load(path: &Path) -> Result<Arc<Model>> {
        let gguf = read_gguf(path)?;
        let identity = identity_of(path, &gguf)?;
        let name = match gguf.metadata.get("general.name") {
            Some(v) => v.to_string().cloned().unwrap_or_default(),
            None => String::new(),
        };
        let head = LmHead::read(path, &gguf)?;
        drop(gguf);
        let n_gpu_layers = if cfg!(any(feature = "cuda", feature = "metal")) {
            999
        } else {
            0
        };
        let llama = llama::LlamaModel::load(path, n_gpu_layers)?;
        if llama.n_embd() != head.n_embd() || llama.n_vocab() != head.n_vocab() {
            bail!(
                "LM head is {}×{} but the model is {}×{}: unsupported model layout",
                head.n_vocab(),
                head.n_embd(),
                llama.n_vocab(),
                llama.n_embd()
            );
        }
        let info = ModelInfo {
            name: if name.is_empty() {
                path.file_stem()
                    .unwrap_or_default()
                    .to_string_lossy()
                    .into_owned()
            } else {
                name
            },
            path: path.to_path_buf(),
            identity,
            n_embd: llama.n_embd(),
            n_vocab: llama.n_vocab(),
            n_ctx_train: llama.n_ctx_train(),
        };
        Ok(Arc::new(Model {
            llama,
            head,
            info,
            ending_tokens: Default::default(),
        }))
    }

    /// What identifies this model (name, file, identity digest, sizes).
    pub fn info(&self) -> &ModelInfo {
        &self.info
    }

    /// The model's LM head `W` (V × d).
    pub fn head(&self) -> &LmHead {
        &self.head
    }

    /// The tokens of `text`, without a BOS token (see [`Model::bos`]); text that looks like a
    /// control token is tokenized as plain text.
    pub fn tokenize(&self, text: &str) -> Result<Vec<Token>> {
        self.llama.tokenize(text)
    }

    /// The text of `tokens`.
    pub fn detokenize(&self, tokens: &[Token]) -> String {
        self.llama.detokenize(tokens)
    }

    /// The raw bytes one token stands for (possibly part of a UTF-8 character).
    pub fn token_bytes(&self, t: Token) -> Vec<u8> {
        self.llama.token_bytes(t)
    }

    /// The token a prompt starts with, if the model wants one.
    pub fn bos(&self) -> Option<Token> {
        self.llama.bos()
    }

    /// Whether `t` ends generation (end of text, end of turn…) for this model.
    pub fn is_end_of_generation(&self, t: Token) -> bool {
        self.llama.is_end_of_generation(t)
    }

    /// Checks that the LM head read from the GGUF reproduces llama.cpp's own logits on `text`:
    /// `W · h` against the logits at every position.
    pub fn check_head(self: &Arc<Self>, text: &str) -> Result<HeadCheck> {
        let mut tokens: Vec<Token> = self.bos().into_iter().collect();
        tokens.extend(self.tokenize(text)?);
        let mut session = self.session(SessionOptions {
            n_ctx: tokens.len().next_multiple_of(64).max(64),
            n_seq_max: 1,
            ..Default::default()
        })?;
        let steps = session.eval_all(&tokens).context("evaluating the text")?;
        let mut c = HeadCheck {
            positions: steps.len(),
            argmax_matches: 0,
            max_abs_diff: 0.0,
        };
        for s in &steps {
            let mine = self.head.apply(&s.hidden)?;
            let diff = mine
                .iter()
                .zip(&s.logits)
                .map(|(a, b)| (a - b).abs())
                .fold(0f32, f32::max);
            c.max_abs_diff = c.max_abs_diff.max(diff);
            c.argmax_matches += (argmax(&mine) == argmax(&s.logits)) as usize;
        }
        Ok(c)
    }

    /// Tokens that would end a line of text at once: end-of-generation tokens and every token
    /// whose text starts with a newline. Computed once, on first use.
    pub fn ending_tokens(&self) -> &[Token] {
        self.ending_tokens.get_or_init(|| {
            (0..self.info.n_vocab as Token)
                .filter(|&t| {
                    self.is_end_of_generation(t) || self.token_bytes(t).first() == Some(&b'\n')
                })
                .collect()
        })
    }

    /// A new inference session (one llama.cpp context) on this model.
    pub fn session(self: &Arc<Self>, opts: SessionOptions) -> Result<Session> {
        let ctx = llama::LlamaContext::new(
            &self.llama,
            &llama::ContextParams {
                n_ctx: opts.n_ctx as u32,
                n_batch: opts.n_batch as u32,
                n_seq_max: opts.n_seq_max as u32,
                n_threads: opts.n_threads as i32,
                embeddings: true,
            },
        )?;
        Ok(Session {
            batch: llama::Batch::new(opts.n_batch),
            ctx,
            model: self.clone(),
            n_ctx: opts.n_ctx,
            cached: Vec::new(),
        })
    }
}

fn read_gguf(path: &Path) -> Result<gguf_file::Content> {
    let file = File::open(path).with_context(|| format!("cannot open model {}", path.display()))?;
    let size = file.metadata()?.len();
    let mut reader = BufReader::new(file);
    let gguf = gguf_file::Content::read(&mut reader)
        .map_err(|e| anyhow::anyhow!("{} is not a readable GGUF model: {e}", path.display()))?;
    for (name, t) in &gguf.tensor_infos {
        let bytes = t.shape.elem_count() / t.ggml_dtype.block_size() * t.ggml_dtype.type_size();
        let end = gguf.tensor_data_offset + t.offset + bytes as u64;
        if end > size {
            bail!(
                "{} is truncated: tensor {name} ends at byte {end} but the file has {size} bytes \
                 (re-install or re-download the model)",
                path.display()
            );
        }
    }
    Ok(gguf)
}

/// A digest of what makes a model produce the hidden states it does, cheap to compute: the
/// metadata, the tensor table and the file size (hashing 250 MB of weights on every start would
/// cost more than loading them).
fn identity_of(path: &Path, gguf: &gguf_file::Content) -> Result<String> {
    let mut h = blake3::Hasher::new();
    h.update(&std::fs::metadata(path)?.len().to_le_bytes());
    let mut keys: Vec<_> = gguf.metadata.keys().collect();
    keys.sort();
    for k in keys {
        h.update(k.as_bytes());
        h.update(format!("{:?}", gguf.metadata[k]).as_bytes());
    }
    let mut names: Vec<_> = gguf.tensor_infos.keys().collect();
    names.sort();
    for n in names {
        let t = &gguf.tensor_infos[n];
        h.update(format!("{n}:{:?}:{:?}:{}", t.shape.dims(), t.ggml_dtype, t.offset).as_bytes());
    }
    Ok(h.finalize().to_hex().to_string())
}

/// How closely `W · h` matches llama.cpp's logits.
#[derive(Clone, Debug, serde::Serialize)]
pub struct HeadCheck {
    /// Positions of the text compared (BOS included).
    pub positions: usize,
    /// Positions where `W · h` and llama.cpp's logits pick the same most likely token.
    pub argmax_matches: usize,
    /// The largest absolute difference between a logit of `W · h` and llama.cpp's, over all
    /// positions and tokens.
    pub max_abs_diff: f32,
}

/// The sizes of a new [`Session`]'s llama.cpp context.
#[derive(Clone, Copy, Debug)]
pub struct SessionOptions {
    /// KV-cache size: the longest sequence (shared prefix included) a session holds.
    pub n_ctx: usize,
    /// Tokens per decode.
    pub n_batch: usize,
    /// How many sequences one batch may pack.
    pub n_seq_max: usize,
    /// CPU threads llama.cpp uses (default: all the machine's).
    pub n_threads: usize,
}

impl Default for SessionOptions {
    fn default() -> Self {
        Self {
            // Room for a prompt of worked examples (a few hundred tokens) in front of a
            // 512-token batch of pairs, and for a rewrite after such a prompt.
            n_ctx: 2048,
            n_batch: 512,
            n_seq_max: 32,
            n_threads: std::thread::available_parallelism().map_or(2, |n| n.get()),
        }
    }
}

/// A sequence whose hidden states are wanted at positions `from..tokens.len()`.
#[derive(Clone, Copy, Debug)]
pub struct HiddenRequest<'a> {
    /// The whole sequence, BOS and prompt included.
    pub tokens: &'a [Token],
    /// The first position whose hidden state is wanted (the prompt before it gives none).
    pub from: usize,
}

/// The hidden state and the model's own logits at one position.
pub struct Step {
    /// The final hidden state `h` (after the final norm), d floats.
    pub hidden: Vec<f32>,
    /// llama.cpp's next-token logits, V floats (soft-capped where the model does).
    pub logits: Vec<f32>,
}

/// Shared prefixes shorter than this are recomputed rather than shared (not worth the
/// bookkeeping).
pub const MIN_SHARED_PREFIX: usize = 16;

/// The length of the common prefix of two token sequences.
pub fn common_prefix(a: &[Token], b: &[Token]) -> usize {
    a.iter().zip(b).take_while(|(x, y)| x == y).count()
}

/// One llama.cpp context on a model. `Send` but not `Sync`: one thread drives it at a time.
///
/// Sequence 0 of the KV cache holds `cached`: the last prompt (and generated tokens), or the
/// shared prefix of the last memory batch. A new prompt or batch that starts with the same
/// tokens reuses those cells instead of recomputing them: worked examples in front of every
/// pair or every rewrite are computed once.
pub struct Session {
    // Field order matters: the context must be freed before the model it points into.
    batch: llama::Batch,
    ctx: llama::LlamaContext,
    model: Arc<Model>,
    n_ctx: usize,
    cached: Vec<Token>,
}

impl Session {
    /// The model this session runs.
    pub fn model(&self) -> &Arc<Model> {
        &self.model
    }

    /// The longest sequence the session holds (prompt and output together).
    pub fn n_ctx(&self) -> usize {
        self.n_ctx
    }

    /// The most tokens one decode takes: the longest suffix a batch of pairs may hold.
    pub fn n_batch(&self) -> usize {
        self.ctx.n_batch()
    }

    /// Groups sequences of the given lengths (after any shared prefix), in order, into batches
    /// that fit one decode. A sequence longer than a batch gets a batch of its own (and an
    /// error when run).
    pub fn pack(&self, lengths: impl IntoIterator<Item = usize>) -> Vec<Range<usize>> {
        // Sequence 0 is kept for the shared prefix.
        let (cap, max_seqs) = (self.ctx.n_batch(), self.ctx.n_seq_max() - 1);
        let mut out = Vec::new();
        let (mut start, mut used, mut i) = (0, 0, 0);
        for len in lengths {
            if i > start && (used + len > cap || i - start == max_seqs) {
                out.push(start..i);
                start = i;
                used = 0;
            }
            used += len;
            i += 1;
        }
        if i > start {
            out.push(start..i);
        }
        out
    }

    /// Makes sequence 0 hold exactly `prefix` (reusing what it holds already) and nothing else
    /// in the cache. Decodes what is missing without outputs except, with `want_last`, the
    /// prefix's last token (whose batch row is returned).
    fn hold(&mut self, prefix: &[Token], want_last: bool) -> Result<Option<usize>> {
        if prefix.len() > self.n_ctx {
            bail!(
                "{} tokens do not fit the context of {} tokens",
                prefix.len(),
                self.n_ctx
            );
        }
        for s in 1..self.ctx.n_seq_max() as i32 {
            self.ctx.seq_rm(s, 0);
        }
        let mut keep = common_prefix(&self.cached, prefix);
        if want_last {
            keep = keep.min(prefix.len().saturating_sub(1));
        }
        // Always cut: the cache may hold more than `cached` says (a batch of `fill_batch`).
        if !self.ctx.seq_rm(0, keep) {
            self.ctx.clear();
            keep = 0;
        }
        self.cached.truncate(keep);
        // With embeddings on, llama.cpp outputs every token; a prompt's body needs no output,
        // so it runs without them (the LM head would otherwise run over every prompt token).
        let body = if want_last {
            prefix.len() - 1
        } else {
            prefix.len()
        };
        if want_last {
            self.ctx.set_embeddings(false);
        }
        let chunk = self.ctx.n_batch();
        while self.cached.len() < body {
            let from = self.cached.len();
            let to = (from + chunk).min(body);
            self.batch.clear();
            for (p, &t) in prefix.iter().enumerate().take(to).skip(from) {
                self.batch.push(t, p, 0, false);
            }
            self.decode_cached(&prefix[from..to])?;
        }
        if !want_last {
            return Ok(None);
        }
        self.ctx.set_embeddings(true);
        let last = prefix.len() - 1;
        self.batch.clear();
        self.batch.push(prefix[last], last, 0, true);
        self.decode_cached(&prefix[last..])?;
        Ok(Some(0))
    }

    /// Decodes the batch, which extends sequence 0 by `tokens`. A failed decode leaves an empty
    /// cache, so the bookkeeping never claims cells llama.cpp does not hold.
    fn decode_cached(&mut self, tokens: &[Token]) -> Result<()> {
        if let Err(e) = self.ctx.decode(&self.batch) {
            self.ctx.clear();
            self.cached.clear();
            return Err(e);
        }
        self.cached.extend_from_slice(tokens);
        Ok(())
    }

    /// Final hidden states of several independent sequences in one decode, without running the LM
    /// head. `sink(seq, pos, h)` receives each wanted state in order. Tokens all sequences share
    /// at their start (worked examples) are computed once and kept for the next batch.
    pub fn hidden_states(
        &mut self,
        seqs: &[HiddenRequest<'_>],
        mut sink: impl FnMut(usize, usize, &[f32]),
    ) -> Result<()> {
        if seqs.is_empty() {
            return Ok(());
        }
        // The shared prefix ends before the first wanted position of every sequence.
        let mut shared = seqs.iter().map(|s| s.from).min().unwrap_or(0);
        for s in &seqs[1..] {
            shared = shared.min(common_prefix(seqs[0].tokens, s.tokens));
        }
        if shared < MIN_SHARED_PREFIX {
            shared = 0;
        }
        let total: usize = seqs.iter().map(|s| s.tokens.len() - shared).sum();
        if total > self.ctx.n_batch()
            || seqs.len() + 1 > self.ctx.n_seq_max()
            || shared
                + seqs
                    .iter()
                    .map(|s| s.tokens.len() - shared)
                    .max()
                    .unwrap_or(0)
                > self.n_ctx
        {
            bail!(
                "batch of {} tokens in {} sequences exceeds the context ({} tokens a batch, {} \
                 sequences, {} in all)",
                total,
                seqs.len(),
                self.ctx.n_batch(),
                self.ctx.n_seq_max() - 1,
                self.n_ctx
            );
        }
        self.ctx.set_embeddings(true);
        self.ctx.set_stop_after_norm(true);
        let r = self.decode_after_prefix(seqs, shared, &mut sink);
        self.ctx.set_stop_after_norm(false);
        for s in 1..=seqs.len() as i32 {
            self.ctx.seq_rm(s, 0);
        }
        r
    }

    fn decode_after_prefix(
        &mut self,
        seqs: &[HiddenRequest<'_>],
        shared: usize,
        sink: &mut impl FnMut(usize, usize, &[f32]),
    ) -> Result<()> {
        self.hold(&seqs[0].tokens[..shared], false)?;
        self.batch.clear();
        for (s, req) in seqs.iter().enumerate() {
            let id = s as i32 + 1;
            if shared > 0 {
                self.ctx.seq_cp(0, id, shared);
            }
            for (p, &t) in req.tokens.iter().enumerate().skip(shared) {
                self.batch.push(t, p, id, p >= req.from);
            }
        }
        self.ctx.decode(&self.batch)?;
        let mut row = 0;
        for (s, req) in seqs.iter().enumerate() {
            for p in shared..req.tokens.len() {
                if p >= req.from {
                    sink(s, p, self.ctx.hidden(row)?);
                }
                row += 1;
            }
        }
        Ok(())
    }

    fn fill_batch(
        &mut self,
        seqs: &[&[Token]],
        output: impl Fn(usize, usize) -> bool,
    ) -> Result<()> {
        let total: usize = seqs.iter().map(|s| s.len()).sum();
        if total > self.ctx.n_batch() || seqs.len() > self.ctx.n_seq_max() {
            bail!(
                "batch of {} tokens in {} sequences exceeds the context ({} tokens, {} sequences)",
                total,
                seqs.len(),
                self.ctx.n_batch(),
                self.ctx.n_seq_max()
            );
        }
        self.ctx.clear();
        self.cached.clear();
        self.batch.clear();
        for (s, toks) in seqs.iter().enumerate() {
            for (p, &t) in toks.iter().enumerate() {
                self.batch.push(t, p, s as i32, output(s, p));
            }
        }
        Ok(())
    }

    /// llama.cpp's ordinary forward pass: logits of the last token of each sequence only.
    pub fn last_logits(
        &mut self,
        seqs: &[&[Token]],
        mut sink: impl FnMut(usize, &[f32]),
    ) -> Result<()> {
        self.fill_batch(seqs, |s, p| p + 1 == seqs[s].len())?;
        self.ctx.set_embeddings(false);
        self.ctx.decode(&self.batch)?;
        let mut row = 0;
        for (s, t) in seqs.iter().enumerate() {
            row += t.len();
            sink(s, self.ctx.logits(row - 1)?);
        }
        Ok(())
    }

    /// llama.cpp's next-token logits at the given positions of one sequence, each handed to
    /// `sink` with its position; no other position pays for the LM head.
    pub fn logits_at(
        &mut self,
        tokens: &[Token],
        positions: &[usize],
        mut sink: impl FnMut(usize, &[f32]),
    ) -> Result<()> {
        let want: std::collections::HashSet<usize> = positions.iter().copied().collect();
        self.fill_batch(&[tokens], |_, p| want.contains(&p))?;
        self.ctx.set_embeddings(false);
        self.ctx.decode(&self.batch)?;
        // llama.cpp finds an output by its index in the batch.
        for &p in positions {
            sink(p, self.ctx.logits(p)?);
        }
        Ok(())
    }

    /// Hidden state and logits at every position of one sequence (for checks, not for speed).
    pub fn eval_all(&mut self, tokens: &[Token]) -> Result<Vec<Step>> {
        self.fill_batch(&[tokens], |_, _| true)?;
        self.ctx.set_embeddings(true);
        self.ctx.decode(&self.batch)?;
        (0..tokens.len())
            .map(|i| {
                Ok(Step {
                    hidden: self.ctx.hidden(i)?.to_vec(),
                    logits: self.ctx.logits(i)?.to_vec(),
                })
            })
            .collect()
    }

    /// Starts a generation: feeds the prompt, returns the state after its last token. The part
    /// of the prompt that the previous prompt shared (worked examples) is not recomputed.
    pub fn start(&mut self, prompt: &[Token]) -> Result<Step> {
        if prompt.is_empty() {
            bail!("empty prompt");
        }
        if prompt.len() >= self.n_ctx {
            bail!(
                "prompt of {} tokens does not fit the context of {} tokens",
                prompt.len(),
                self.n_ctx
            );
        }
        let row = self.hold(prompt, true)?.expect("the last token is decoded");
        self.step_at(row)
    }

    /// Feeds one more token of the generation started by [`Session::start`].
    pub fn advance(&mut self, token: Token) -> Result<Step> {
        let pos = self.cached.len();
        if pos == 0 {
            bail!("advance() before start()");
        }
        if pos >= self.n_ctx {
            bail!(
                "the generation reached the context size ({} tokens)",
                self.n_ctx
            );
        }
        self.batch.clear();
        self.batch.push(token, pos, 0, true);
        self.ctx.set_embeddings(true);
        self.decode_cached(&[token])?;
        self.step_at(0)
    }

    fn step_at(&self, row: usize) -> Result<Step> {
        Ok(Step {
            hidden: self.ctx.hidden(row)?.to_vec(),
            logits: self.ctx.logits(row)?.to_vec(),
        })
    }
}
