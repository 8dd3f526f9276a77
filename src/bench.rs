//! Benchmarks that anyone can run (`pema bench ...`); their figures go into BENCHMARKS.md.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use anyhow::{bail, Result};

use crate::memory::{self, KeyType, PairsRead, Template};
use crate::model::{Model, SessionOptions, Token};

/// What `pema bench memory` measures: building a memory from pairs against llama.cpp's plain
/// forward pass over the same tokens.
#[derive(Debug, serde::Serialize)]
pub struct MemoryBench {
    /// Pairs read from the pairs file (after `limit`).
    pub pairs: usize,
    /// Tokens of the pairs (template applied) that fit one batch, the baseline's work: pairs
    /// longer than a batch are left out of the baseline.
    pub tokens: usize,
    /// CPU threads llama.cpp used.
    pub threads: usize,
    /// Tokens per decode (memory build and baseline alike).
    pub memory_batch: usize,
    /// llama.cpp's ordinary forward pass over the same packed sequences, logits of each
    /// sequence's last token only: tokens/s, before and after the memory build.
    pub baseline_tokens_per_second: [f64; 2],
    /// `pema memory build` end to end (tokenize, forward, write, checksum).
    pub build_tokens_per_second: f64,
    /// build / mean(baseline).
    pub ratio: f64,
    /// Rows in the built memory: one per target token.
    pub entries: usize,
    /// The memory file's size on disk over its entries, in bytes.
    pub bytes_per_entry: f64,
    /// Peak resident set size of the process at the end, in bytes (0 where `/proc` is missing).
    pub peak_rss_bytes: u64,
}

/// Peak resident set size of this process so far.
pub fn peak_rss_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<u64>().ok())
        })
        .map_or(0, |kb| kb * 1024)
}

/// Times llama.cpp's forward pass over the pairs of `pairs_file` (at most `limit` of them),
/// then a memory build of the same pairs in the scratch folder `work`, then the forward pass
/// again. Fails when the file holds no pairs.
pub fn memory_build(
    model: &Arc<Model>,
    pairs_file: &Path,
    limit: Option<usize>,
    memory_batch: usize,
    work: &Path,
) -> Result<MemoryBench> {
    let mut read = PairsRead::default();
    memory::read_pairs_file(pairs_file, &mut read)?;
    let mut pairs = read.pairs;
    if let Some(n) = limit {
        pairs.truncate(n);
    }
    if pairs.is_empty() {
        bail!("no pairs in {}", pairs_file.display());
    }
    let defaults = SessionOptions::default();
    let opts = SessionOptions {
        memory_batch,
        // The build's own session at the default batch; a larger batch may pack more (short)
        // pairs, in proportion.
        n_seq_max: defaults.n_seq_max * memory_batch.div_ceil(defaults.memory_batch).max(1),
        ..defaults
    };
    let mut session = model.session(opts)?;
    let template = Template::default();
    let end = memory::end_token(&session)?;
    let seqs: Vec<Vec<Token>> = pairs
        .iter()
        .map(|p| memory::tokenize_pair(&session, &template, p, end).map(|t| t.0))
        .filter(|s| s.as_ref().map_or(true, |s| s.len() <= session.n_batch()))
        .collect::<Result<_>>()?;
    let tokens: usize = seqs.iter().map(|s| s.len()).sum();
    let batches = session.pack(seqs.iter().map(|s| s.len()));

    let baseline = |session: &mut crate::model::Session| -> Result<f64> {
        let t = Instant::now();
        let mut sink = 0f32;
        for r in &batches {
            let b: Vec<&[Token]> = seqs[r.clone()].iter().map(|s| &s[..]).collect();
            session.last_logits(&b, |_, l| sink += l[0])?;
        }
        std::hint::black_box(sink);
        Ok(tokens as f64 / t.elapsed().as_secs_f64())
    };
    // Warm up caches and llama.cpp's graph allocation before timing anything.
    {
        let b: Vec<&[Token]> = seqs[batches[0].clone()].iter().map(|s| &s[..]).collect();
        session.last_logits(&b, |_, _| {})?;
    }
    let before = baseline(&mut session)?;

    let jsonl = work.join("bench-pairs.jsonl");
    memory::write_pairs_file(&jsonl, &pairs)?;
    let out = work.join("bench-memory");
    let _ = std::fs::remove_dir_all(&out);
    let report = memory::build(
        &mut session,
        &memory::BuildOptions {
            pairs_files: vec![jsonl],
            template,
            out: out.clone(),
            key_type: KeyType::F16,
            replace: true,
            cancel: None,
            max_entries: None,
            shots: 0,
        },
        |_| {},
    )?;
    let after = baseline(&mut session)?;
    let stats = memory::Memory::open(&out)?.stats();
    let _ = std::fs::remove_dir_all(&out);
    Ok(MemoryBench {
        pairs: pairs.len(),
        tokens,
        threads: opts.n_threads,
        memory_batch,
        baseline_tokens_per_second: [before, after],
        build_tokens_per_second: report.tokens_per_second,
        ratio: report.tokens_per_second / ((before + after) / 2.0),
        entries: stats.entries,
        bytes_per_entry: stats.bytes_per_entry,
        peak_rss_bytes: peak_rss_bytes(),
    })
}

/// A scratch folder for benchmark output, removed by the caller.
pub fn scratch_dir() -> Result<PathBuf> {
    let d = std::env::temp_dir().join(format!("pema-bench-{}", std::process::id()));
    std::fs::create_dir_all(&d)?;
    Ok(d)
}

const GENERATED: usize = 48;

/// What `pema bench generate` measures: the adapter's default rewrite against plain greedy
/// generation.
#[derive(Debug, serde::Serialize)]
pub struct GenerationBench {
    /// Source texts rewritten (one rewrite per mode each).
    pub sources: usize,
    /// CPU threads llama.cpp used.
    pub threads: usize,
    /// The adapter's default rewrite options (its held-out choice).
    pub default_options: String,
    /// Tokens generated by plain greedy generation, all sources together.
    pub plain_tokens: usize,
    /// Plain greedy tokens/s, reading the prompt included.
    pub plain_tokens_per_second: f64,
    /// Tokens generated in the adapter's default mode, all sources together.
    pub default_tokens: usize,
    /// Default-mode tokens/s, reading the prompt included.
    pub default_tokens_per_second: f64,
    /// Default-mode tokens/s over plain greedy tokens/s, same prompt.
    pub ratio: f64,
    /// Time to first token, median over the sources: the default mode with the adapter's prompt
    /// (worked examples, reused from the previous rewrite's cache), and the plain model with the
    /// zero-shot baseline template (the prompt pema used before worked examples).
    pub first_token_ms_median: f64,
    /// Time to first token of the plain model with the zero-shot baseline template, median over
    /// the sources, in milliseconds.
    pub baseline_first_token_ms_median: f64,
    /// `first_token_ms_median` / `baseline_first_token_ms_median`.
    pub first_token_ratio: f64,
    /// The rewrite as a user gets it (`decode::rewrite_text`: stops honoured, a line that
    /// dropped a name made again, the source and earlier attempts fed as drafts): tokens kept
    /// per second of the whole rewrite, plain model.
    pub whole_plain_tokens_per_second: f64,
    /// The same, in the adapter's default mode: a line made again costs its discarded tokens.
    pub whole_default_tokens_per_second: f64,
    /// `whole_default_tokens_per_second` / `whole_plain_tokens_per_second`.
    pub whole_ratio: f64,
    /// Lines the default mode made again, all sources together.
    pub remade_lines: usize,
    /// Whole rewrites of the plain model with no drafts (one decode a token, as before drafts).
    pub whole_plain_without_drafts_tokens_per_second: f64,
    /// Whole rewrites of the default mode with no drafts.
    pub whole_default_without_drafts_tokens_per_second: f64,
    /// `whole_default_without_drafts_tokens_per_second` /
    /// `whole_plain_without_drafts_tokens_per_second`.
    pub whole_ratio_without_drafts: f64,
    /// Draft tokens the default mode picked.
    pub draft_tokens_accepted: usize,
    /// Draft tokens it was fed but did not pick.
    pub draft_tokens_wasted: usize,
    /// Rewrites (of both modes) whose text differs with drafts and without: a batched decode
    /// rounds a little differently from one token at a time, which can tip a near tie.
    pub rewrites_differing_with_drafts: usize,
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(0.0)
}

/// The adapter's default rewrite against plain greedy generation over the same sources and
/// prompt, interleaved so that both see the same machine state. Each generates exactly
/// `GENERATED` tokens (stops ignored), so both time the same work.
pub fn generation(
    model: &Arc<Model>,
    adapter: &crate::adapter::Adapter,
    pairs: &[crate::memory::Pair],
    baseline_template: &Template,
) -> Result<GenerationBench> {
    use crate::decode::{generate, Mode, Prompt, RewriteOptions};
    let opts = SessionOptions::default();
    let mut session = model.session(opts)?;
    let template = adapter.template()?;
    let default = adapter.default_rewrite();
    let (mut plain, mut dflt) = ((0usize, 0f64), (0usize, 0f64));
    let (mut ttft, mut ttft_base) = (Vec::new(), Vec::new());
    // Warm-up.
    let p = Prompt::for_source(&session, &template, &pairs[0].source)?;
    generate(
        &mut session,
        Some(adapter),
        &p,
        &RewriteOptions {
            max_tokens: Some(4),
            ..default
        },
        |_| {},
        None,
    )?;
    for (i, pair) in pairs.iter().enumerate() {
        let p = Prompt::for_source(&session, &template, &pair.source)?;
        // Alternate which goes first: the second finds its whole prompt in the cache.
        let mut runs = [(Mode::Plain, &mut plain), (default.mode, &mut dflt)];
        if i % 2 == 1 {
            runs.reverse();
        }
        for (mode, acc) in runs {
            let r = generate(
                &mut session,
                Some(adapter),
                &p,
                &RewriteOptions {
                    mode,
                    max_tokens: Some(GENERATED),
                    stop_at_boundary: false,
                    // The adapter's own cost per token, drafts aside (the whole rewrites below
                    // have them).
                    drafts: false,
                    ..default
                },
                |_| {},
                None,
            )?;
            // Each rewrite is timed whole, reading the prompt included, as a user waits for it.
            acc.0 += r.tokens;
            acc.1 += r.seconds;
        }
    }
    // Time to first token, as a user sees it: one sentence after another, each prompt new but
    // for what it shares with the previous one (the worked examples, the template).
    for (prompt_of, adapter_or_none, opts, out) in [
        (&template, Some(adapter), default, &mut ttft),
        (
            baseline_template,
            None,
            RewriteOptions {
                mode: Mode::Plain,
                ..Default::default()
            },
            &mut ttft_base,
        ),
    ] {
        for pair in pairs {
            let p = Prompt::for_source(&session, prompt_of, &pair.source)?;
            let r = generate(
                &mut session,
                adapter_or_none,
                &p,
                &RewriteOptions {
                    max_tokens: Some(1),
                    ..opts
                },
                |_| {},
                None,
            )?;
            out.push(r.seconds * 1e3);
        }
    }
    // Whole rewrites, as `pema rewrite` and the daemon make them, interleaved the same way;
    // each mode with drafts and without.
    let mut whole = [(0usize, 0f64); 4];
    let (mut remade, mut drafted, mut differing) = (0, (0, 0), 0);
    // Plain and default, each with drafts and without.
    let plain_opts = RewriteOptions {
        mode: Mode::Plain,
        ..default
    };
    let runs = [plain_opts, default].map(|o| [o, RewriteOptions { drafts: false, ..o }]);
    for (i, pair) in pairs.iter().enumerate() {
        let mut order: Vec<usize> = (0..4).collect();
        if i % 2 == 1 {
            order.reverse();
        }
        let mut texts: [String; 4] = Default::default();
        for k in order {
            let r = crate::decode::rewrite_text(
                &mut session,
                Some(adapter),
                &template,
                &pair.source,
                &runs[k / 2][k % 2],
                |_| {},
                None,
            )?;
            whole[k].0 += r.tokens;
            whole[k].1 += r.seconds;
            if k == 2 {
                remade += r.remade_lines;
                drafted.0 += r.draft_tokens.0;
                drafted.1 += r.draft_tokens.1;
            }
            texts[k] = r.text;
        }
        differing += usize::from(texts[0] != texts[1]) + usize::from(texts[2] != texts[3]);
    }
    let tps = |w: (usize, f64)| w.0 as f64 / w.1;
    let (wp, wpn, wd, wdn) = (tps(whole[0]), tps(whole[1]), tps(whole[2]), tps(whole[3]));
    let (pt, dt) = (plain.0 as f64 / plain.1, dflt.0 as f64 / dflt.1);
    let (t, tb) = (median(&mut ttft), median(&mut ttft_base));
    Ok(GenerationBench {
        sources: pairs.len(),
        threads: opts.n_threads,
        default_options: format!("{default:?}"),
        plain_tokens: plain.0,
        plain_tokens_per_second: pt,
        default_tokens: dflt.0,
        default_tokens_per_second: dt,
        ratio: dt / pt,
        first_token_ms_median: t,
        baseline_first_token_ms_median: tb,
        first_token_ratio: t / tb,
        whole_plain_tokens_per_second: wp,
        whole_default_tokens_per_second: wd,
        whole_ratio: wd / wp,
        remade_lines: remade,
        whole_plain_without_drafts_tokens_per_second: wpn,
        whole_default_without_drafts_tokens_per_second: wdn,
        whole_ratio_without_drafts: wdn / wpn,
        draft_tokens_accepted: drafted.0,
        draft_tokens_wasted: drafted.1,
        rewrites_differing_with_drafts: differing,
    })
}

/// What `pema bench train` measures: one adapter training to early stop.
#[derive(Debug, serde::Serialize)]
pub struct TrainBench {
    /// The adapter's rank (width of its low-rank bottleneck).
    pub rank: usize,
    /// The training's own report (epochs, held-out losses, seconds).
    pub report: crate::adapter::TrainReport,
    /// Peak resident set size of the process after training, in bytes (0 where `/proc` is
    /// missing).
    pub peak_rss_bytes: u64,
}

/// Training to early stop.
pub fn training(
    model: &Arc<Model>,
    memory: &memory::Memory,
    opts: &crate::adapter::TrainOptions<'_>,
) -> Result<TrainBench> {
    let a = crate::adapter::train(memory, &*model.head()?, model.info(), opts, |_| {})?;
    Ok(TrainBench {
        rank: opts.rank,
        report: a.info().training.clone(),
        peak_rss_bytes: peak_rss_bytes(),
    })
}
