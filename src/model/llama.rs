//! Thin safe layer over llama.cpp's C API (`llama-cpp-sys-2`, the sys crate of `llama-cpp-2`).
//!
//! `llama-cpp-2`'s safe types keep their raw pointers crate-private and have no setter for the
//! graph-evaluation callback, and the callback is how we read the final hidden state of every
//! token without paying for the LM head. So the model and context live here, on the sys crate;
//! `llama-cpp-2` still owns process-wide backend initialisation.

use std::ffi::{c_char, c_void, CStr, CString};
use std::path::Path;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};

use anyhow::{anyhow, bail, Context as _, Result};
use llama_cpp_sys_2 as sys;

/// A token id in the model's vocabulary, 0 ≤ id < V: the one type for token ids everywhere in
/// pema (memory values, adapter vocabularies, candle indices are u32). llama.cpp's own
/// `llama_token` (i32) appears only at the calls into llama.cpp, here.
pub type Token = u32;

/// llama.cpp may be initialised once per process; every model goes through here.
fn backend() -> Result<()> {
    static BACKEND: OnceLock<std::result::Result<(), String>> = OnceLock::new();
    BACKEND
        .get_or_init(|| {
            let mut b =
                llama_cpp_2::llama_backend::LlamaBackend::init().map_err(|e| e.to_string())?;
            if std::env::var_os("PEMA_LLAMA_LOG").is_none() {
                b.void_logs();
            }
            // The backend lives for the whole process.
            std::mem::forget(b);
            Ok(())
        })
        .clone()
        .map_err(|e| anyhow!("llama.cpp backend failed to initialise: {e}"))
}

/// A loaded GGUF model. Read-only after loading, so it may be shared between threads.
pub struct LlamaModel {
    ptr: NonNull<sys::llama_model>,
    vocab: NonNull<sys::llama_vocab>,
}

// SAFETY: llama.cpp treats a loaded model as immutable; contexts hold their own mutable state.
unsafe impl Send for LlamaModel {}
unsafe impl Sync for LlamaModel {}

impl Drop for LlamaModel {
    fn drop(&mut self) {
        unsafe { sys::llama_model_free(self.ptr.as_ptr()) }
    }
}

impl LlamaModel {
    pub fn load(path: &Path, n_gpu_layers: i32) -> Result<Self> {
        backend()?;
        let c_path = CString::new(path.to_string_lossy().as_bytes())?;
        let mut params = unsafe { sys::llama_model_default_params() };
        params.n_gpu_layers = n_gpu_layers;
        let ptr = unsafe { sys::llama_model_load_from_file(c_path.as_ptr(), params) };
        let ptr = NonNull::new(ptr).ok_or_else(|| {
            anyhow!(
                "llama.cpp could not load the model {} (set PEMA_LLAMA_LOG=1 to see its log)",
                path.display()
            )
        })?;
        let vocab = unsafe { sys::llama_model_get_vocab(ptr.as_ptr()) };
        let vocab = NonNull::new(vocab as *mut _).context("model has no vocabulary")?;
        Ok(Self { ptr, vocab })
    }

    pub fn n_embd(&self) -> usize {
        unsafe { sys::llama_model_n_embd(self.ptr.as_ptr()) as usize }
    }

    pub fn n_vocab(&self) -> usize {
        unsafe { sys::llama_vocab_n_tokens(self.vocab.as_ptr()) as usize }
    }

    pub fn n_ctx_train(&self) -> usize {
        unsafe { sys::llama_model_n_ctx_train(self.ptr.as_ptr()) as usize }
    }

    pub fn bos(&self) -> Option<Token> {
        let add = unsafe { sys::llama_vocab_get_add_bos(self.vocab.as_ptr()) };
        let bos = unsafe { sys::llama_vocab_bos(self.vocab.as_ptr()) };
        (add && bos >= 0).then_some(bos as Token)
    }

    pub fn is_end_of_generation(&self, t: Token) -> bool {
        i32::try_from(t).is_ok_and(|t| unsafe { sys::llama_vocab_is_eog(self.vocab.as_ptr(), t) })
    }

    /// Tokenizes `text` without adding BOS; special-token syntax is treated as plain text so user
    /// files cannot inject control tokens.
    pub fn tokenize(&self, text: &str) -> Result<Vec<Token>> {
        let len = i32::try_from(text.len()).context("text too long to tokenize")?;
        let call = |out: &mut Vec<sys::llama_token>| unsafe {
            sys::llama_tokenize(
                self.vocab.as_ptr(),
                text.as_ptr() as *const c_char,
                len,
                out.as_mut_ptr(),
                out.len() as i32,
                false,
                false,
            )
        };
        let mut out: Vec<sys::llama_token> = vec![0; text.len() + 8];
        let mut n = call(&mut out);
        if n < 0 {
            // Too small: llama.cpp says how many tokens it needs.
            out.resize((-n) as usize, 0);
            n = call(&mut out);
            if n < 0 {
                bail!("tokenization failed");
            }
        }
        out.truncate(n as usize);
        // llama.cpp's ids are never negative.
        Ok(out.into_iter().map(|t| t as Token).collect())
    }

    /// The bytes of one token (a token may hold part of a UTF-8 character).
    pub fn token_bytes(&self, t: Token) -> Vec<u8> {
        let mut buf = vec![0u8; 64];
        loop {
            let n = unsafe {
                sys::llama_token_to_piece(
                    self.vocab.as_ptr(),
                    t as sys::llama_token,
                    buf.as_mut_ptr() as *mut c_char,
                    buf.len() as i32,
                    0,
                    false,
                )
            };
            if n >= 0 {
                buf.truncate(n as usize);
                return buf;
            }
            buf.resize((-n) as usize, 0);
        }
    }

    pub fn detokenize(&self, tokens: &[Token]) -> String {
        let bytes: Vec<u8> = tokens.iter().flat_map(|&t| self.token_bytes(t)).collect();
        String::from_utf8_lossy(&bytes).into_owned()
    }
}

/// What the graph callback does on the next decode.
#[derive(Default)]
struct CallbackState {
    /// Stop the graph right after the final norm, so the LM head (V × d per row) never runs.
    stop_after_norm: bool,
}

unsafe extern "C" fn eval_callback(t: *mut sys::ggml_tensor, ask: bool, user: *mut c_void) -> bool {
    let state = &*(user as *const CallbackState);
    if !state.stop_after_norm {
        // Observe nothing: the scheduler runs the graph in one piece.
        return false;
    }
    // With pooling NONE llama.cpp renames the final norm's output `result_embd_pooled`.
    let name = CStr::from_ptr((*t).name.as_ptr()).to_bytes();
    let is_norm = name == b"result_norm" || name == b"result_embd_pooled";
    if ask {
        is_norm
    } else {
        // Returning false after the final norm ends the graph: llama.cpp still extracts the
        // (complete) norm output as embeddings and skips the head.
        !is_norm
    }
}

/// What the abort callback reads: while armed with a flag, ggml stops the graph at its next
/// node once the flag is true (llama.cpp then drops the batch's cells from the cache).
#[derive(Default)]
struct AbortState {
    flag: Option<Arc<AtomicBool>>,
}

unsafe extern "C" fn abort_callback(user: *mut c_void) -> bool {
    let state = &*(user as *const AbortState);
    state
        .flag
        .as_ref()
        .is_some_and(|f| f.load(Ordering::Relaxed))
}

/// A decode stopped by its interrupt flag ([`LlamaContext::set_interrupt`]): nothing of the
/// batch was kept, and the same batch can be decoded again.
#[derive(Debug)]
pub struct Interrupted;

impl std::fmt::Display for Interrupted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the decode was interrupted (a rewrite is waiting)")
    }
}

impl std::error::Error for Interrupted {}

#[derive(Clone, Copy, Debug)]
pub struct ContextParams {
    pub n_ctx: u32,
    pub n_batch: u32,
    pub n_seq_max: u32,
    pub n_threads: i32,
    pub embeddings: bool,
}

/// One llama.cpp context: a KV cache and compute buffers. `Send`, not `Sync`.
pub struct LlamaContext {
    ptr: NonNull<sys::llama_context>,
    callback: Box<CallbackState>,
    abort: Box<AbortState>,
    n_batch: usize,
    n_seq_max: usize,
    n_vocab: usize,
    n_embd: usize,
    embeddings: bool,
    /// The most output rows one decode has asked for: llama.cpp's output buffer is kept at that
    /// size (rows × (V + d) floats) for the context's life.
    outputs_high: usize,
}

// SAFETY: a context is used by one thread at a time (&mut self everywhere).
unsafe impl Send for LlamaContext {}

impl Drop for LlamaContext {
    fn drop(&mut self) {
        unsafe { sys::llama_free(self.ptr.as_ptr()) }
    }
}

impl LlamaContext {
    /// The context must not outlive `model`; callers keep the model in an `Arc` next to it.
    pub fn new(model: &LlamaModel, p: &ContextParams) -> Result<Self> {
        let mut callback = Box::<CallbackState>::default();
        let mut params = unsafe { sys::llama_context_default_params() };
        params.n_ctx = p.n_ctx;
        params.n_batch = p.n_batch;
        params.n_ubatch = p.n_batch;
        params.n_seq_max = p.n_seq_max;
        params.kv_unified = true;
        // Sequences share a cached prefix (worked examples) and a rewrite reuses the cache of
        // the previous prompt; both need whole sliding-window layers, not a pruned window.
        params.swa_full = true;
        params.n_threads = p.n_threads;
        params.n_threads_batch = p.n_threads;
        params.embeddings = p.embeddings;
        params.pooling_type = sys::LLAMA_POOLING_TYPE_NONE;
        params.no_perf = true;
        params.cb_eval = Some(eval_callback);
        params.cb_eval_user_data = (&mut *callback) as *mut CallbackState as *mut c_void;
        let mut abort = Box::<AbortState>::default();
        params.abort_callback = Some(abort_callback);
        params.abort_callback_data = (&mut *abort) as *mut AbortState as *mut c_void;
        let ptr = unsafe { sys::llama_init_from_model(model.ptr.as_ptr(), params) };
        let ptr = NonNull::new(ptr).ok_or_else(|| {
            anyhow!(
                "llama.cpp could not create a context (n_ctx {}, n_batch {})",
                p.n_ctx,
                p.n_batch
            )
        })?;
        Ok(Self {
            ptr,
            callback,
            abort,
            n_batch: p.n_batch as usize,
            n_seq_max: p.n_seq_max as usize,
            n_vocab: model.n_vocab(),
            n_embd: model.n_embd(),
            embeddings: p.embeddings,
            outputs_high: 0,
        })
    }

    pub fn n_batch(&self) -> usize {
        self.n_batch
    }

    pub fn n_seq_max(&self) -> usize {
        self.n_seq_max
    }

    pub fn clear(&mut self) {
        unsafe { sys::llama_memory_clear(sys::llama_get_memory(self.ptr.as_ptr()), true) }
    }

    /// Drops positions `from..` of sequence `seq` (all of it with `from` 0). False when
    /// llama.cpp cannot cut the cache there.
    pub fn seq_rm(&mut self, seq: i32, from: usize) -> bool {
        unsafe {
            sys::llama_memory_seq_rm(
                sys::llama_get_memory(self.ptr.as_ptr()),
                seq,
                from as i32,
                -1,
            )
        }
    }

    /// Lets sequence `dst` see positions `0..len` of sequence `src` (shared cells, no copy in a
    /// unified cache).
    pub fn seq_cp(&mut self, src: i32, dst: i32, len: usize) {
        unsafe {
            sys::llama_memory_seq_cp(
                sys::llama_get_memory(self.ptr.as_ptr()),
                src,
                dst,
                0,
                len as i32,
            )
        }
    }

    /// The most output rows one decode of this context has produced.
    pub fn outputs_high(&self) -> usize {
        self.outputs_high
    }

    pub fn set_embeddings(&mut self, on: bool) {
        self.embeddings = on;
        unsafe { sys::llama_set_embeddings(self.ptr.as_ptr(), on) }
    }

    pub fn set_stop_after_norm(&mut self, on: bool) {
        self.callback.stop_after_norm = on;
    }

    /// Decodes from now on stop when `flag` turns true ([`Interrupted`]); None: never.
    pub fn set_interrupt(&mut self, flag: Option<Arc<AtomicBool>>) {
        self.abort.flag = flag;
    }

    pub fn decode(&mut self, batch: &Batch) -> Result<()> {
        // With embeddings on (and no pooling) llama.cpp outputs every token of the batch.
        let outputs = if self.embeddings {
            batch.raw.n_tokens as usize
        } else {
            batch.outputs
        };
        self.outputs_high = self.outputs_high.max(outputs);
        let rc = unsafe { sys::llama_decode(self.ptr.as_ptr(), batch.raw) };
        match rc {
            0 => Ok(()),
            1 => bail!("llama.cpp found no room in the KV cache for this batch"),
            2 => Err(Interrupted.into()),
            rc => bail!("llama.cpp decode failed (code {rc})"),
        }
    }

    /// The logits of output row `i` of the last decode.
    pub fn logits(&self, i: usize) -> Result<&[f32]> {
        let p = unsafe { sys::llama_get_logits_ith(self.ptr.as_ptr(), i as i32) };
        if p.is_null() {
            bail!("no logits for batch row {i}");
        }
        Ok(unsafe { std::slice::from_raw_parts(p, self.n_vocab) })
    }

    /// The final hidden state (after the final norm) of output row `i` of the last decode.
    pub fn hidden(&self, i: usize) -> Result<&[f32]> {
        let p = unsafe { sys::llama_get_embeddings_ith(self.ptr.as_ptr(), i as i32) };
        if p.is_null() {
            bail!("no hidden state for batch row {i} (embeddings off?)");
        }
        Ok(unsafe { std::slice::from_raw_parts(p, self.n_embd) })
    }
}

/// A llama.cpp batch of tokens, each with its position, one sequence id and an output flag.
pub struct Batch {
    raw: sys::llama_batch,
    capacity: usize,
    /// Tokens flagged for output.
    outputs: usize,
}

impl Drop for Batch {
    fn drop(&mut self) {
        unsafe { sys::llama_batch_free(self.raw) }
    }
}

impl Batch {
    pub fn new(capacity: usize) -> Self {
        let raw = unsafe { sys::llama_batch_init(capacity as i32, 0, 1) };
        Self {
            raw,
            capacity,
            outputs: 0,
        }
    }

    pub fn clear(&mut self) {
        self.raw.n_tokens = 0;
        self.outputs = 0;
    }

    pub fn push(&mut self, token: Token, pos: usize, seq: i32, output: bool) {
        let i = self.raw.n_tokens as usize;
        assert!(i < self.capacity, "batch overflow");
        unsafe {
            *self.raw.token.add(i) = token as sys::llama_token;
            *self.raw.pos.add(i) = pos as i32;
            *self.raw.n_seq_id.add(i) = 1;
            *(*self.raw.seq_id.add(i)) = seq;
            *self.raw.logits.add(i) = output as i8;
        }
        self.raw.n_tokens += 1;
        self.outputs += output as usize;
    }
}
