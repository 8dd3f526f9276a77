//! Benchmarks that anyone can run (`pema bench ...`); their figures go into BENCHMARKS.md.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use anyhow::{bail, Result};

use crate::memory::{self, KeyType, PairsRead, Template};
use crate::model::{Model, SessionOptions, Token};

#[derive(Debug, serde::Serialize)]
pub struct MemoryBench {
    pub pairs: usize,
    pub tokens: usize,
    pub threads: usize,
    /// llama.cpp's ordinary forward pass over the same packed sequences, logits of each
    /// sequence's last token only: tokens/s, before and after the memory build.
    pub baseline_tokens_per_second: [f64; 2],
    /// `pema memory build` end to end (tokenize, forward, write, checksum).
    pub build_tokens_per_second: f64,
    /// build / mean(baseline).
    pub ratio: f64,
    pub entries: usize,
    pub bytes_per_entry: f64,
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

pub fn memory_build(
    model: &Arc<Model>,
    pairs_file: &Path,
    limit: Option<usize>,
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
    let opts = SessionOptions::default();
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

#[derive(Debug, serde::Serialize)]
pub struct GenerationBench {
    pub sources: usize,
    pub threads: usize,
    pub plain_tokens: usize,
    pub plain_tokens_per_second: f64,
    pub gu_tokens: usize,
    pub gu_tokens_per_second: f64,
    /// GU tokens/s over plain greedy tokens/s.
    pub ratio: f64,
}

/// GU against plain greedy generation over the same sources, interleaved so that both see the
/// same machine state. Each generates exactly `GENERATED` tokens (stops ignored): the plain model
/// ends most zero-shot answers at once, which would leave nothing to time.
pub fn generation(
    model: &Arc<Model>,
    adapter: &crate::adapter::Adapter,
    pairs: &[crate::memory::Pair],
) -> Result<GenerationBench> {
    use crate::decode::{generate, Mode, Prompt, RewriteOptions};
    let opts = SessionOptions::default();
    let mut session = model.session(opts)?;
    let template = adapter.template()?;
    let (mut plain, mut gu) = ((0usize, 0f64), (0usize, 0f64));
    // Warm-up.
    let p = Prompt::for_source(&session, &template, &pairs[0].source)?;
    generate(
        &mut session,
        Some(adapter),
        &p,
        &RewriteOptions {
            max_tokens: Some(4),
            ..Default::default()
        },
        |_| {},
        None,
    )?;
    for pair in pairs {
        let p = Prompt::for_source(&session, &template, &pair.source)?;
        for (mode, acc) in [(Mode::Plain, &mut plain), (Mode::Gu, &mut gu)] {
            let r = generate(
                &mut session,
                Some(adapter),
                &p,
                &RewriteOptions {
                    mode,
                    max_tokens: Some(GENERATED),
                    stop_at_boundary: false,
                    ..Default::default()
                },
                |_| {},
                None,
            )?;
            // Each rewrite is timed whole, reading the prompt included, as a user waits for it.
            acc.0 += r.tokens;
            acc.1 += r.seconds;
        }
    }
    let (pt, gt) = (plain.0 as f64 / plain.1, gu.0 as f64 / gu.1);
    Ok(GenerationBench {
        sources: pairs.len(),
        threads: opts.n_threads,
        plain_tokens: plain.0,
        plain_tokens_per_second: pt,
        gu_tokens: gu.0,
        gu_tokens_per_second: gt,
        ratio: gt / pt,
    })
}

#[derive(Debug, serde::Serialize)]
pub struct TrainBench {
    pub rank: usize,
    pub report: crate::adapter::TrainReport,
    pub peak_rss_bytes: u64,
}

/// Training to early stop.
pub fn training(
    model: &Arc<Model>,
    memory: &memory::Memory,
    opts: &crate::adapter::TrainOptions<'_>,
) -> Result<TrainBench> {
    let a = crate::adapter::train(memory, model.head(), model.info(), opts, |_| {})?;
    Ok(TrainBench {
        rank: opts.rank,
        report: a.info().training.clone(),
        peak_rss_bytes: peak_rss_bytes(),
    })
}
