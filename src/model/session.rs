//! A session: one llama.cpp context (KV cache, compute buffers) on a shared [`Model`], driven by
//! one thread at a time. It reads final hidden states of packed sequences (the memory build),
//! and serves token-by-token generation with hidden states and logits.

use super::*;
use std::sync::atomic::AtomicBool;

/// The sizes of a new [`Session`]'s llama.cpp context.
#[derive(Clone, Copy, Debug)]
pub struct SessionOptions {
    /// KV-cache size: the longest sequence (shared prefix included) a session holds.
    pub n_ctx: usize,
    /// Tokens per decode.
    pub n_batch: usize,
    /// Tokens per decode of a memory build (at most `n_batch`). Every token of a memory batch
    /// is an output, and llama.cpp keeps an output buffer of rows × V floats for the largest
    /// such batch (V = 262,144 for Gemma 3: 1 MiB a row), so this bounds a build's memory.
    pub memory_batch: usize,
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
            // Measured (BENCHMARKS.md, "Memory build throughput"): on 2 CPU cores a build is no
            // slower in 64-token batches than in 512-token ones (faster: ratio 1.14 against
            // 0.95), its output buffer is an eighth, and a waiting rewrite waits for less.
            memory_batch: 64,
            // llama.cpp keeps an output buffer of at least this many rows of V floats (1 MiB a
            // row for Gemma 3), cleared, so resident for the context's life: 16 rows are what a
            // rewrite's draft decode asks for anyway, and 14 pairs fill a 64-token memory batch
            // only when each is under 5 tokens (measured: 32 held 16 MiB more in an idle daemon).
            n_seq_max: 16,
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
/// Sequence 0 of the KV cache holds `cached`: the last prompt and its generated tokens. The
/// last sequence holds `stash`: the shared prefix of the last memory batch. A new prompt (or
/// batch) that starts with the same tokens reuses those cells instead of recomputing them:
/// worked examples in front of every rewrite (or every pair) are computed once, and a rewrite
/// that comes between two batches of a build neither recomputes its own worked examples nor
/// makes the build recompute its prefix. The sequences in between are a batch's pairs.
pub struct Session {
    // Field order matters: the context must be freed before the model it points into.
    pub(super) batch: llama::Batch,
    pub(super) ctx: llama::LlamaContext,
    pub(super) params: llama::ContextParams,
    pub(super) model: Arc<Model>,
    pub(super) n_ctx: usize,
    pub(super) cached: Vec<Token>,
    pub(super) stash: Vec<Token>,
    pub(super) memory_batch: usize,
    /// Stops a memory batch mid-decode when it turns true (a rewrite is waiting).
    pub(super) interrupt: Option<Arc<AtomicBool>>,
}

/// Which kept sequence a prefix goes in.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Home {
    /// Sequence 0: the last prompt and its generation (`cached`).
    Prompt,
    /// The last sequence: the shared prefix of memory batches (`stash`).
    Prefix,
}

/// Cells a generation may need past its prompt: the stash is given up when there is less
/// room than this.
const GENERATION_ROOM: usize = 512;

impl Session {
    /// The model this session runs.
    pub fn model(&self) -> &Arc<Model> {
        &self.model
    }

    /// Tokens the cache keeps for reuse: the last prompt with its output, and the shared
    /// prefix of the last memory batch.
    pub fn kept_tokens(&self) -> (usize, usize) {
        (self.cached.len(), self.stash.len())
    }

    /// The longest sequence the session holds (prompt and output together).
    pub fn n_ctx(&self) -> usize {
        self.n_ctx
    }

    /// Gives back the memory a context keeps after a decode with many outputs: llama.cpp holds
    /// its output buffer at the most rows ever asked for (a memory batch: 512 × V floats,
    /// 512 MiB for Gemma 3), so the context is made anew when it asked for more than
    /// `max_rows`. Its cached prompt goes with it. Returns whether it was renewed.
    pub fn shed_outputs(&mut self, max_rows: usize) -> Result<bool> {
        if self.ctx.outputs_high() <= max_rows {
            return Ok(false);
        }
        // The new context briefly stands beside the old one: its KV cache (tens of MiB) is
        // all it touches before use.
        self.ctx = llama::LlamaContext::new(&self.model.llama, &self.params)?;
        self.cached.clear();
        self.stash.clear();
        Ok(true)
    }

    /// A flag that stops a batch of [`Session::hidden_states`] mid-decode when it turns true:
    /// the call then fails with [`crate::model::Interrupted`], keeps nothing of the batch
    /// (the shared prefix stays cached) and may be made again. Set by the daemon's worker, so
    /// that a rewrite waits for no memory batch.
    pub fn set_interrupt(&mut self, flag: Option<Arc<AtomicBool>>) {
        self.interrupt = flag;
    }

    /// The most tokens one decode takes: the longest suffix a batch of pairs may hold.
    pub fn n_batch(&self) -> usize {
        self.ctx.n_batch()
    }

    /// Groups sequences of the given lengths (after any shared prefix), in order, into batches
    /// that fit one decode. A sequence longer than a batch gets a batch of its own (and an
    /// error when run).
    pub fn pack(&self, lengths: impl IntoIterator<Item = usize>) -> Vec<Range<usize>> {
        // The first and the last sequence are kept (`Home`).
        let (cap, max_seqs) = (self.memory_batch, self.ctx.n_seq_max() - 2);
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

    /// The sequence id of a home.
    fn seq(&self, home: Home) -> i32 {
        match home {
            Home::Prompt => 0,
            Home::Prefix => self.ctx.n_seq_max() as i32 - 1,
        }
    }

    fn kept(&mut self, home: Home) -> &mut Vec<Token> {
        match home {
            Home::Prompt => &mut self.cached,
            Home::Prefix => &mut self.stash,
        }
    }

    /// Gives up what `home` holds (its cells go back to the cache).
    fn drop_home(&mut self, home: Home) {
        let seq = self.seq(home);
        if !self.ctx.seq_rm(seq, 0) {
            self.ctx.clear();
            self.cached.clear();
            self.stash.clear();
        }
        self.kept(home).clear();
    }

    /// Makes `home` hold exactly `prefix` (reusing what it holds already), with no batch
    /// sequences beside it, and the other home untouched. Decodes what is missing without
    /// outputs except, with `want_last`, the prefix's last token (whose batch row is returned).
    fn hold(&mut self, home: Home, prefix: &[Token], want_last: bool) -> Result<Option<usize>> {
        if prefix.len() > self.n_ctx {
            bail!(
                "{} tokens do not fit the context of {} tokens",
                prefix.len(),
                self.n_ctx
            );
        }
        for s in 1..self.seq(Home::Prefix) {
            self.ctx.seq_rm(s, 0);
        }
        let seq = self.seq(home);
        let mut keep = common_prefix(self.kept(home), prefix);
        if want_last {
            keep = keep.min(prefix.len().saturating_sub(1));
        }
        // Always cut: the cache may hold more than `cached` says (a batch of `fill_batch`).
        if !self.ctx.seq_rm(seq, keep) {
            self.ctx.clear();
            self.cached.clear();
            self.stash.clear();
            keep = 0;
        }
        self.kept(home).truncate(keep);
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
        while self.kept(home).len() < body {
            let from = self.kept(home).len();
            let to = (from + chunk).min(body);
            self.batch.clear();
            for (p, &t) in prefix.iter().enumerate().take(to).skip(from) {
                self.batch.push(t, p, seq, false);
            }
            self.decode_kept(home, &prefix[from..to])?;
        }
        if !want_last {
            return Ok(None);
        }
        self.ctx.set_embeddings(true);
        let last = prefix.len() - 1;
        self.batch.clear();
        self.batch.push(prefix[last], last, seq, true);
        self.decode_kept(home, &prefix[last..])?;
        Ok(Some(0))
    }

    /// Decodes the batch, which extends `home` by `tokens`. A failed decode leaves an empty
    /// cache, so the bookkeeping never claims cells llama.cpp does not hold.
    fn decode_kept(&mut self, home: Home, tokens: &[Token]) -> Result<()> {
        if let Err(e) = self.ctx.decode(&self.batch) {
            self.ctx.clear();
            self.cached.clear();
            self.stash.clear();
            return Err(e);
        }
        self.kept(home).extend_from_slice(tokens);
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
            || seqs.len() + 2 > self.ctx.n_seq_max()
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
                self.ctx.n_seq_max() - 2,
                self.n_ctx
            );
        }
        // The cells of the prefix, the batch and a kept prompt share one cache: the prompt
        // goes when all three do not fit.
        if shared + total + self.cached.len() > self.n_ctx {
            self.drop_home(Home::Prompt);
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
        self.hold(Home::Prefix, &seqs[0].tokens[..shared], false)?;
        let prefix = self.seq(Home::Prefix);
        self.batch.clear();
        for (s, req) in seqs.iter().enumerate() {
            let id = s as i32 + 1;
            if shared > 0 {
                self.ctx.seq_cp(prefix, id, shared);
            }
            for (p, &t) in req.tokens.iter().enumerate().skip(shared) {
                self.batch.push(t, p, id, p >= req.from);
            }
        }
        // Only this decode is interruptible: the prefix above and other sessions' work are not.
        self.ctx.set_interrupt(self.interrupt.clone());
        let r = self.ctx.decode(&self.batch);
        self.ctx.set_interrupt(None);
        r?;
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
        self.stash.clear();
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
        if self.stash.len() + prompt.len() + GENERATION_ROOM > self.n_ctx {
            self.drop_home(Home::Prefix);
        }
        let row = self
            .hold(Home::Prompt, prompt, true)?
            .expect("the last token is decoded");
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
        if pos + self.stash.len() >= self.n_ctx {
            self.drop_home(Home::Prefix);
        }
        self.batch.clear();
        self.batch.push(token, pos, 0, true);
        self.ctx.set_embeddings(true);
        self.decode_kept(Home::Prompt, &[token])?;
        self.step_at(0)
    }

    /// Feeds several tokens of the generation in one decode (a draft to verify): the state
    /// after each, in order. Cheaper than as many [`Session::advance`] calls: the weights are
    /// read once for all of them.
    pub fn advance_many(&mut self, tokens: &[Token]) -> Result<Vec<Step>> {
        let pos = self.cached.len();
        if pos == 0 {
            bail!("advance_many() before start()");
        }
        if tokens.is_empty() || tokens.len() > self.ctx.n_batch() {
            bail!("a draft of {} tokens", tokens.len());
        }
        if pos + tokens.len() > self.n_ctx {
            bail!(
                "the generation reached the context size ({} tokens)",
                self.n_ctx
            );
        }
        if pos + tokens.len() + self.stash.len() > self.n_ctx {
            self.drop_home(Home::Prefix);
        }
        self.batch.clear();
        for (i, &t) in tokens.iter().enumerate() {
            self.batch.push(t, pos + i, 0, true);
        }
        self.ctx.set_embeddings(true);
        self.decode_kept(Home::Prompt, tokens)?;
        (0..tokens.len()).map(|i| self.step_at(i)).collect()
    }

    /// Takes back the last `n` tokens fed to the generation (a draft's rejected tail).
    pub fn rewind(&mut self, n: usize) -> Result<()> {
        let keep = self.cached.len().saturating_sub(n);
        if !self.ctx.seq_rm(0, keep) {
            self.ctx.clear();
            self.cached.clear();
            self.stash.clear();
            bail!("llama.cpp could not take back the last {n} tokens");
        }
        self.cached.truncate(keep);
        Ok(())
    }

    fn step_at(&self, row: usize) -> Result<Step> {
        Ok(Step {
            hidden: self.ctx.hidden(row)?.to_vec(),
            logits: self.ctx.logits(row)?.to_vec(),
        })
    }
}
