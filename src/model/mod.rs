//! The model host: a quantised GGUF model run by llama.cpp, seen by the rest of pema only as
//! tokens in, final hidden states and next-token logits out, plus the LM head.

mod cpu_copy;
mod head;
mod llama;
mod locate;
mod session;

use std::fs::File;
use std::io::BufReader;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{bail, Context as _, Result};
use candle_core::quantized::gguf_file;

use crate::logspace::argmax;

pub use head::LmHead;
pub use llama::{Interrupted, Token};
pub use locate::{default_model_path, resolve_model, INSTALL_DEFAULT_MODEL};
pub use session::{common_prefix, HiddenRequest, Session, SessionOptions, Step, MIN_SHARED_PREFIX};

/// What identifies a model: memories and adapters record it and refuse any other.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct ModelInfo {
    /// The GGUF's `general.name`, or the file name without extension when it has none.
    pub name: String,
    /// The GGUF file the model was loaded from: the one given, or its copy for the CPU
    /// (`cpu_copy.rs`).
    pub path: PathBuf,
    /// The GGUF file given (`--model`, `PEMA_MODEL` or the default).
    pub given: PathBuf,
    /// blake3 of the GGUF's metadata, tensor table and size, in hex: the given file's, which
    /// its exact copy answers to as well.
    pub identity: String,
    /// Other identities of the same weights: the copy's own digest, which memories and adapters
    /// made while the copy had an identity of its own (2026-12-07) carry.
    pub aliases: Vec<String>,
    /// Hidden size d: the length of a hidden state (640 for Gemma 3 270M).
    pub n_embd: usize,
    /// Vocabulary size V.
    pub n_vocab: usize,
    /// The context length, in tokens, the model was trained with.
    pub n_ctx_train: usize,
}

impl ModelInfo {
    /// Whether a memory or adapter that records the identity `id` was made with this model.
    pub fn answers_to(&self, id: &str) -> bool {
        self.identity == id || self.aliases.iter().any(|a| a == id)
    }
}

/// A loaded GGUF model: llama.cpp's weights, the LM head read again from the same file when
/// asked for, and the [`ModelInfo`] that identifies it. Shared as `Arc<Model>` by every [`Session`] on it; it
/// tokenizes and detokenizes, and [`Model::session`] opens a context to run it. Loading checks
/// the file first and refuses a head whose shape differs from llama.cpp's model.
pub struct Model {
    llama: llama::LlamaModel,
    /// The LM head while someone holds it. A second copy of the head (170 MiB for Gemma 3
    /// 270M) is needed only to train or load an adapter; an idle daemon should not keep it.
    head: std::sync::Mutex<std::sync::Weak<LmHead>>,
    info: ModelInfo,
    /// The digest of the file loaded (the copy's own, when a copy runs), to notice it change.
    file_digest: String,
    ending_tokens: std::sync::OnceLock<Vec<Token>>,
}

impl Model {
    /// Loads a GGUF model. The file is checked first so that a missing, truncated or foreign file
    /// gets a clear error instead of whatever llama.cpp would do with it.
    pub fn load(path: &Path) -> Result<Arc<Model>> {
        Self::load_with(path, None)
    }

    /// [`Model::load`] with `gpu_layers` of the model's layers on the GPU (None: all of them in
    /// a CUDA or Metal build; a CPU build runs everything on the CPU whatever is asked).
    pub fn load_with(path: &Path, gpu_layers: Option<u32>) -> Result<Arc<Model>> {
        let gpu = cfg!(any(feature = "cuda", feature = "metal")) && gpu_layers != Some(0);
        let mut gguf = read_gguf(path)?;
        // The copy answers to the original's identity: it holds the same weights and computes
        // the same hidden states (to float rounding, as a GPU does), so memories and adapters
        // made with either serve both, and neither an upgrade nor `PEMA_MODEL_AS_IS` nor a GPU
        // build throws a workspace's memory away.
        let identity = identity_of(path, &gguf)?;
        let mut file_digest = identity.clone();
        let original = path;
        let mut path = path.to_path_buf();
        if !gpu && !cpu_copy::as_is() && cpu_copy::worth_it(&gguf) {
            // A copy that cannot be made or read costs speed, not the start: the file is loaded as
            // it is.
            let copy = cpu_copy::ensure(&path, &identity)
                .and_then(|(g, c)| Ok((identity_of(&c, &g)?, g, c)));
            match copy {
                Ok((d, g, c)) => (file_digest, gguf, path) = (d, g, c),
                Err(e) => tracing::warn!("using {} as it is: {e:#}", path.display()),
            }
        }
        let path = path.as_path();
        let name = match gguf.metadata.get("general.name") {
            Some(v) => v.to_string().cloned().unwrap_or_default(),
            None => String::new(),
        };
        let (head_vocab, head_embd) = LmHead::shape_in(&gguf)?;
        drop(gguf);
        let n_gpu_layers = if gpu {
            gpu_layers.map_or(999, |n| n.min(999) as i32)
        } else {
            0
        };
        let llama = llama::LlamaModel::load(path, n_gpu_layers)?;
        if llama.n_embd() != head_embd || llama.n_vocab() != head_vocab {
            bail!(
                "LM head is {}×{} but the model is {}×{}: unsupported model layout",
                head_vocab,
                head_embd,
                llama.n_vocab(),
                llama.n_embd()
            );
        }
        let info = ModelInfo {
            name: if name.is_empty() {
                original
                    .file_stem()
                    .unwrap_or_default()
                    .to_string_lossy()
                    .into_owned()
            } else {
                name
            },
            path: path.to_path_buf(),
            given: original.to_path_buf(),
            aliases: if file_digest == identity {
                Vec::new()
            } else {
                vec![file_digest.clone()]
            },
            identity,
            n_embd: llama.n_embd(),
            n_vocab: llama.n_vocab(),
            n_ctx_train: llama.n_ctx_train(),
        };
        Ok(Arc::new(Model {
            llama,
            head: Default::default(),
            info,
            file_digest,
            ending_tokens: Default::default(),
        }))
    }

    /// What identifies this model (name, file, identity digest, sizes).
    pub fn info(&self) -> &ModelInfo {
        &self.info
    }

    /// The model's LM head `W` (V × d), read from the model file on first use and kept while
    /// anyone holds it (the adapter's own rows are copied out by `Adapter::prepare`, so a
    /// daemon at rest holds no head). Fails when the file is gone or no longer the model
    /// loaded.
    pub fn head(&self) -> Result<Arc<LmHead>> {
        let mut slot = self.head.lock().unwrap();
        if let Some(h) = slot.upgrade() {
            return Ok(h);
        }
        let path = &self.info.path;
        let gguf = read_gguf(path)?;
        if identity_of(path, &gguf)? != self.file_digest {
            bail!(
                "{} changed since pema loaded it: restart pema to use the new model",
                path.display()
            );
        }
        let h = Arc::new(LmHead::read(path, &gguf)?);
        *slot = Arc::downgrade(&h);
        Ok(h)
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
        let head = self.head()?;
        let mut c = HeadCheck {
            positions: steps.len(),
            argmax_matches: 0,
            max_abs_diff: 0.0,
        };
        for s in &steps {
            let mine = head.apply(&s.hidden)?;
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
        let params = llama::ContextParams {
            n_ctx: opts.n_ctx as u32,
            n_batch: opts.n_batch as u32,
            n_seq_max: opts.n_seq_max as u32,
            n_threads: opts.n_threads as i32,
            embeddings: true,
        };
        let ctx = llama::LlamaContext::new(&self.llama, &params)?;
        Ok(Session {
            batch: llama::Batch::new(opts.n_batch),
            ctx,
            params,
            model: self.clone(),
            n_ctx: opts.n_ctx,
            cached: Vec::new(),
            stash: Vec::new(),
            memory_batch: opts.memory_batch.clamp(1, opts.n_batch),
            interrupt: None,
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
