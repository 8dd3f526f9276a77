//! Rewrites: token-by-token generation from the model mixed with the adapter, with Gradual
//! Unrolling (docs/method.md §4).

mod draft;
mod guard;
mod held;
mod mixture;
mod rewrite;

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use anyhow::{bail, Result};
use rand::{Rng, SeedableRng};

pub use crate::logspace::{log_add_exp, log_softmax};
pub use crate::schedule::{Mode, Schedule};
pub use draft::Drafts;
pub use guard::{RepeatGuard, WordGuard};
pub use held::HeldLine;
pub use mixture::{gated_lambda, mix_guided, mix_into, top_k_indices};
pub use rewrite::{rewrite_text, TextEvent};

use crate::adapter::{Adapter, Decoding};
use crate::memory::Template;
use crate::model::{Session, Token};

/// How a rewrite is generated: the mixing schedule, the adapter's reach, the length cap and
/// the sampling. [`Default`] is greedy reference Gradual Unrolling; an adapter's own choice
/// comes from [`Adapter::default_rewrite`].
#[derive(Clone, Copy, Debug)]
pub struct RewriteOptions {
    /// Which schedule: plain model, fixed λ or Gradual Unrolling.
    pub mode: Mode,
    /// λ_max of Gradual Unrolling.
    pub lambda_max: f32,
    /// λ of the fixed mode.
    pub lambda_fixed: f32,
    /// The lowest λ Gradual Unrolling decays to (0: the reference schedule).
    pub lambda_floor: f32,
    /// The adapter may lift only the model's this many most likely tokens (0: any token).
    pub adapter_top_k: usize,
    /// At most this many tokens; default twice the source's length plus 16.
    pub max_tokens: Option<usize>,
    /// 0 is greedy (the default).
    pub temperature: f32,
    /// Nucleus sampling: draw among the most likely tokens that together hold this much
    /// probability (1: all). Used only when sampling (temperature > 0).
    pub top_p: f32,
    /// Seed of the sampling; the same seed gives the same rewrite. Unused when greedy.
    pub seed: u64,
    /// Stop at end of text and at the boundary (off only to time a fixed number of tokens).
    pub stop_at_boundary: bool,
    /// Make a line again with less of the adapter when it lost part of its source: dropped a
    /// name the adapter's style keeps, or came out shorter than the style makes a rewrite
    /// (`fidelity`; only for an adapter that learned either).
    pub keep_names: bool,
    /// Feed the source and a line's earlier attempts to the model as drafts, several tokens to
    /// a decode ([`Drafts`]); off only to time what they save.
    pub drafts: bool,
    /// λ is multiplied by this wherever the adapter's likeliest token is none of its marked
    /// words (docs/method.md §8.8); None: the same λ at every token.
    pub style_gate: Option<f32>,
}

impl Default for RewriteOptions {
    fn default() -> Self {
        Self {
            mode: Mode::Gu,
            lambda_max: crate::schedule::REFERENCE_LAMBDA_MAX,
            lambda_fixed: crate::schedule::REFERENCE_LAMBDA_FIXED,
            lambda_floor: crate::schedule::REFERENCE_LAMBDA_FLOOR,
            adapter_top_k: crate::adapter::ADAPTER_TOP_K,
            max_tokens: None,
            temperature: 0.0,
            top_p: 1.0,
            seed: 0,
            stop_at_boundary: true,
            keep_names: false,
            drafts: true,
            style_gate: None,
        }
    }
}

impl RewriteOptions {
    /// These options with the schedule an adapter chose (`adapter::Decoding`).
    pub fn with_decoding(self, d: &Decoding) -> Self {
        Self {
            mode: d.mode,
            lambda_fixed: d.lambda,
            lambda_max: d.lambda_max,
            lambda_floor: d.lambda_floor,
            adapter_top_k: d.adapter_top_k,
            style_gate: d.style_gate,
            ..self
        }
    }
}

// The adapter stores its choice of schedule; turning it into rewrite options is the decoder's
// business, so that the adapter module never imports this one.
impl Adapter {
    /// The rewrite options this adapter was tuned for (its held-out choice), or the reference
    /// Gradual Unrolling for an adapter that has none.
    pub fn default_rewrite(&self) -> RewriteOptions {
        let o = RewriteOptions {
            keep_names: self.info().kept_names.is_some() || self.info().kept_length.is_some(),
            ..RewriteOptions::default()
        };
        match &self.info().decoding {
            Some(d) => o.with_decoding(d),
            None => o,
        }
    }
}

/// Why a rewrite ended.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum StopReason {
    /// The model emitted an end-of-generation token.
    EndOfText,
    /// The output reached a newline (the end marker, or a token containing one): a rewrite is
    /// one line.
    Boundary,
    /// A length cap: the token limit, the room left in the context, or twice the source's
    /// words plus 8.
    MaxTokens,
}

/// A finished rewrite.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Rewrite {
    /// The rewritten text, surrounding whitespace trimmed.
    pub text: String,
    /// The schedule it was generated with.
    pub mode: Mode,
    /// Tokens generated into the text (a token that only ended the rewrite is not counted).
    pub tokens: usize,
    /// Why it ended.
    pub stopped_by: StopReason,
    /// Wall-clock seconds of the generation, prompt included.
    pub seconds: f64,
    /// `tokens` per second of the generation.
    pub tokens_per_second: f64,
    /// Lines made again with less of the adapter because a name or a clause was lost
    /// (`keep_names`).
    pub remade_lines: usize,
    /// The tokens one generation picked, its last (the one that ended it) included: the draft
    /// for an attempt made again. Empty for a whole text (`rewrite_text`).
    #[serde(skip)]
    pub output_tokens: Vec<Token>,
    /// Draft tokens the generation picked, and those it did not ([`Drafts`]).
    #[serde(skip)]
    pub draft_tokens: (usize, usize),
}

/// Where a generation starts: the prompt and the expected output length.
pub struct Prompt {
    /// BOS and the prompt's tokens (worked examples included).
    pub tokens: Vec<Token>,
    /// L of Gradual Unrolling, in tokens: the source's token count.
    pub expected_len: usize,
    /// The source as the output would hold it (for the repetition guard).
    pub source_tokens: Vec<Token>,
    /// Words in the source: a rewrite stops at twice as many plus 8.
    pub source_words: usize,
    /// The source (for the word-run guard).
    pub source_text: String,
    /// What the output may well repeat (the source, earlier attempts at the same line): fed to
    /// the model several tokens at a time, kept as far as the picks agree ([`Drafts`]).
    pub drafts: Drafts,
}

impl Prompt {
    /// The template around `source`; the expected length is the source's own token count.
    pub fn for_source(session: &Session, template: &Template, source: &str) -> Result<Self> {
        let model = session.model();
        let mut tokens: Vec<Token> = model.bos().into_iter().collect();
        tokens.extend(model.tokenize(&template.prompt(source))?);
        let source_tokens = model.tokenize(&Template::target_text(source))?;
        Ok(Self {
            tokens,
            expected_len: source_tokens.len(),
            drafts: Drafts::from_source(source_tokens.clone()),
            source_tokens,
            source_words: source.split_whitespace().count(),
            source_text: source.to_string(),
        })
    }

    /// Like [`Prompt::for_source`], after worked examples (a few-shot prompt).
    pub fn with_examples(
        session: &Session,
        template: &Template,
        examples: &[(String, String)],
        source: &str,
    ) -> Result<Self> {
        Self::for_source(session, &template.with_examples(examples)?, source)
    }
}

/// Generates a rewrite. `on_text` receives the text as it grows (whole UTF-8 characters only);
/// `cancel` is checked before every token.
pub fn generate(
    session: &mut Session,
    adapter: Option<&Adapter>,
    prompt: &Prompt,
    opts: &RewriteOptions,
    mut on_text: impl FnMut(&str),
    cancel: Option<&AtomicBool>,
) -> Result<Rewrite> {
    let started = Instant::now();
    let model = session.model().clone();
    let schedule = match (opts.mode, adapter) {
        (Mode::Plain, _) => Schedule::Plain,
        (_, None) => bail!("the {:?} mode needs an adapter", opts.mode),
        (Mode::Fixed, _) => Schedule::Fixed {
            lambda: opts.lambda_fixed,
        },
        (Mode::Gu, _) => Schedule::Gu {
            lambda_max: opts.lambda_max,
            expected_len: prompt.expected_len,
            floor: opts.lambda_floor,
        },
    };
    let mut guard = RepeatGuard::new(&prompt.source_tokens);
    let mut out: Vec<Token> = Vec::new();
    let mut feeder = draft::Feeder::default();
    let no_drafts = Drafts::default();
    let drafts = if opts.drafts {
        &prompt.drafts
    } else {
        &no_drafts
    };
    let word_guard = WordGuard::new(&prompt.source_text);
    let max_words = 2 * prompt.source_words + 8;
    let end = crate::memory::end_token(session)?;
    let room = session.n_ctx().saturating_sub(prompt.tokens.len() + 1);
    let max = opts
        .max_tokens
        .unwrap_or(2 * prompt.expected_len + 16)
        .min(room);
    let mut rng = rand::rngs::StdRng::seed_from_u64(opts.seed);
    let mut bytes: Vec<u8> = Vec::new();
    let mut emitted = 0usize;
    let mut n = 0usize;
    let mut stopped_by = StopReason::MaxTokens;
    let marked: &[u32] = match (opts.style_gate, adapter) {
        // A marked word counts only as one whole token: the first piece of a longer word
        // (" com" of " commanded") also begins words the style does not mark.
        (Some(_), Some(a)) => a.marked_tokens(|w| match model.tokenize(w).ok()?.as_slice() {
            [t] => Some(*t),
            _ => None,
        }),
        _ => &[],
    };
    let mut step = session.start(&prompt.tokens)?;
    for lambda in schedule.lambdas().take(max) {
        if cancel.is_some_and(|c| c.load(Ordering::Relaxed)) {
            return Err(crate::Cancelled("rewrite cancelled").into());
        }
        let mut logp = step.logits;
        log_softmax(&mut logp);
        if let (Some(a), true) = (adapter, lambda > 0.0) {
            let lp = a.log_probs(&step.hidden)?;
            let lambda = gated_lambda(lambda, opts.style_gate, marked, a.vocab(), &lp);
            if opts.adapter_top_k > 0 {
                mix_guided(
                    &mut logp,
                    lambda,
                    a.vocab(),
                    &lp,
                    opts.adapter_top_k,
                    model.ending_tokens(),
                );
            } else {
                // The reference mixture.
                mix_into(&mut logp, lambda, a.vocab(), &lp);
            }
        }
        if opts.stop_at_boundary && bytes.iter().all(u8::is_ascii_whitespace) {
            // A rewrite of a non-empty text is never empty: nothing may end it before its first
            // visible character. (After a zero-shot prompt the base model often wants to end its
            // answer at once.)
            for &t in model.ending_tokens() {
                logp[t as usize] = f32::NEG_INFINITY;
            }
        }
        if opts.stop_at_boundary {
            // Never a loop: a run of tokens the output already holds more often than the
            // source does cannot be continued the same way again.
            for t in guard.banned() {
                logp[t as usize] = f32::NEG_INFINITY;
            }
        }
        let mut token = pick(&mut logp, opts, &mut rng) as Token;
        if opts.stop_at_boundary {
            // The same over words: a token that would repeat a 4-word run a third time is
            // struck out and the pick made again (a few times at most; then it stands).
            let text = String::from_utf8_lossy(&bytes);
            for _ in 0..8 {
                let piece = model.token_bytes(token);
                if !word_guard.vetoes(&text, &String::from_utf8_lossy(&piece)) {
                    break;
                }
                logp[token as usize] = f32::NEG_INFINITY;
                token = pick(&mut logp, opts, &mut rng) as Token;
            }
        }
        guard.push(token);
        out.push(token);
        if !opts.stop_at_boundary {
            n += 1;
            if n == max {
                break;
            }
            step = feeder.feed(session, drafts, &out, max - n)?;
            continue;
        }
        if model.is_end_of_generation(token) {
            stopped_by = StopReason::EndOfText;
            break;
        }
        if token == end {
            stopped_by = StopReason::Boundary;
            break;
        }
        let piece = model.token_bytes(token);
        // Tokens such as "\n\n" or ".\n" also cross the boundary: keep what precedes it.
        if let Some(cut) = piece.iter().position(|&b| b == b'\n') {
            bytes.extend(&piece[..cut]);
            n += 1;
            stopped_by = StopReason::Boundary;
            break;
        }
        if piece.first().is_some_and(u8::is_ascii_whitespace)
            && bytes
                .split(u8::is_ascii_whitespace)
                .filter(|w| !w.is_empty())
                .count()
                >= max_words
        {
            // A word past twice the source's length plus 8: no rewrite of it is this long.
            stopped_by = StopReason::MaxTokens;
            break;
        }
        n += 1;
        bytes.extend(&piece);
        let valid = match std::str::from_utf8(&bytes) {
            Ok(s) => s.len(),
            Err(e) => e.valid_up_to(),
        };
        if valid > emitted {
            on_text(std::str::from_utf8(&bytes[emitted..valid]).unwrap());
            emitted = valid;
        }
        if n == max {
            break;
        }
        step = feeder.feed(session, drafts, &out, max - n)?;
    }
    if emitted < bytes.len() {
        on_text(&String::from_utf8_lossy(&bytes[emitted..]));
    }
    let seconds = started.elapsed().as_secs_f64();
    let text = String::from_utf8_lossy(&bytes).trim().to_string();
    Ok(Rewrite {
        text,
        mode: opts.mode,
        tokens: n,
        stopped_by,
        seconds,
        tokens_per_second: n as f64 / seconds.max(1e-9),
        remade_lines: 0,
        output_tokens: out,
        draft_tokens: (feeder.accepted, feeder.wasted),
    })
}

/// Greedy, or sampling with temperature and nucleus (top-p) truncation.
fn pick(logp: &mut [f32], opts: &RewriteOptions, rng: &mut impl Rng) -> usize {
    // Below 1e-3 sampling is greedy in all but name, and dividing by it overflows.
    if opts.temperature.is_nan() || opts.temperature < 1e-3 {
        return crate::logspace::argmax(logp);
    }
    let best = crate::logspace::argmax(logp);
    for x in logp.iter_mut() {
        *x /= opts.temperature;
    }
    log_softmax(logp);
    let mut idx: Vec<usize> = (0..logp.len()).filter(|&i| logp[i] > -30.0).collect();
    if idx.is_empty() {
        return best;
    }
    idx.sort_unstable_by(|&a, &b| logp[b].total_cmp(&logp[a]));
    let mut mass = 0f32;
    let mut cut = idx.len();
    for (k, &i) in idx.iter().enumerate() {
        mass += logp[i].exp();
        if mass >= opts.top_p {
            cut = k + 1;
            break;
        }
    }
    let mut u = rng.random::<f32>() * mass;
    for &i in &idx[..cut] {
        u -= logp[i].exp();
        if u <= 0.0 {
            return i;
        }
    }
    idx[0]
}
