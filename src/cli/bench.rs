//! `pema bench`: the figures of BENCHMARKS.md (memory build, generation and training).

use std::path::PathBuf;

use anyhow::Result;
use clap::Subcommand;

use pema::adapter::{Adapter, TrainOptions, VocabMode};
use pema::memory::{self, Memory, Template};
use pema::model::SessionOptions;

use super::{load_model, print_json, read_pairs, ModelChoice};

/// The defaults the flags show and start from.
fn defaults() -> TrainOptions<'static> {
    TrainOptions::default()
}

#[derive(Subcommand)]
pub(super) enum BenchCommand {
    /// Memory-build throughput against llama.cpp's plain forward pass, as a ratio.
    Memory {
        #[arg(long = "pairs", value_name = "FILE")]
        pairs: PathBuf,
        /// Use only the first N pairs.
        #[arg(long)]
        limit: Option<usize>,
        /// Tokens per decode of the memory build (the baseline packs the same batches).
        #[arg(long, default_value_t = SessionOptions::default().memory_batch)]
        memory_batch: usize,
        #[arg(long)]
        json: bool,
    },
    /// GU generation speed against the plain model's, as a ratio.
    Generate {
        #[arg(long, value_name = "FILE")]
        adapter: PathBuf,
        /// Sources to rewrite (pairs file).
        #[arg(long, value_name = "FILE")]
        pairs: PathBuf,
        #[arg(long, default_value_t = 20)]
        limit: usize,
        /// The zero-shot template whose time to first token is the baseline.
        #[arg(long, default_value = memory::DEFAULT_TEMPLATE)]
        baseline_template: String,
        #[arg(long)]
        json: bool,
    },
    /// Adapter training: time to early stop and peak RSS.
    Train {
        #[arg(long, value_name = "DIR")]
        memory: PathBuf,
        #[arg(long, default_value_t = defaults().rank)]
        rank: usize,
        /// candidates or full.
        #[arg(long, value_enum, hide_possible_values = true, default_value_t = defaults().vocab)]
        vocab: VocabMode,
        #[arg(long)]
        json: bool,
    },
}

pub(super) fn run(model: &ModelChoice, c: BenchCommand) -> Result<()> {
    match c {
        BenchCommand::Generate {
            adapter,
            pairs,
            limit,
            baseline_template,
            json,
        } => {
            let model = load_model(model)?;
            let adapter = Adapter::load_for(&adapter, model.info(), &*model.head()?)?;
            let pairs = read_pairs(&pairs, Some(limit))?;
            let base = Template::from_arg(&baseline_template)?;
            let r = pema::bench::generation(&model, &adapter, &pairs, &base)?;
            if json {
                return print_json(&r);
            }
            println!(
                "{} sources, {} threads\nplain:   {} tokens, {:.1} tok/s\ndefault: {} tokens, {:.1} tok/s\nratio: {:.3}\ntime to first token (median): {:.0} ms, zero-shot baseline {:.0} ms, ratio {:.2}\nwhole rewrites (lines made again included): plain {:.1} tok/s, default {:.1} tok/s, ratio {:.3}; {} lines made again\nwithout drafts: plain {:.1} tok/s, default {:.1} tok/s, ratio {:.3}; default's draft tokens picked {}, not picked {}; {} rewrites differ with drafts and without",
                r.sources, r.threads, r.plain_tokens, r.plain_tokens_per_second, r.default_tokens, r.default_tokens_per_second, r.ratio,
                r.first_token_ms_median, r.baseline_first_token_ms_median, r.first_token_ratio,
                r.whole_plain_tokens_per_second, r.whole_default_tokens_per_second, r.whole_ratio, r.remade_lines,
                r.whole_plain_without_drafts_tokens_per_second,
                r.whole_default_without_drafts_tokens_per_second, r.whole_ratio_without_drafts,
                r.draft_tokens_accepted, r.draft_tokens_wasted, r.rewrites_differing_with_drafts
            );
            Ok(())
        }
        BenchCommand::Train {
            memory,
            rank,
            vocab,
            json,
        } => {
            let model = load_model(model)?;
            let memory = Memory::open(&memory)?;
            let opts = TrainOptions {
                rank,
                vocab,
                ..Default::default()
            };
            let r = pema::bench::training(&model, &memory, &opts)?;
            if json {
                return print_json(&r);
            }
            println!(
                "{} training / {} held-out entries, vocabulary {}, rank {}\n{} epochs (best {}, {}), {:.1} s\nheld-out CE {:.3} -> {:.3}; peak RSS {:.0} MiB",
                r.report.train_entries,
                r.report.held_out_entries,
                r.report.vocab_size,
                r.rank,
                r.report.epochs,
                r.report.best_epoch,
                r.report.stopped_by,
                r.report.seconds,
                r.report.held_out_ce_start,
                r.report.held_out_ce,
                r.peak_rss_bytes as f64 / (1024.0 * 1024.0)
            );
            Ok(())
        }
        BenchCommand::Memory {
            pairs,
            limit,
            memory_batch,
            json,
        } => {
            let model = load_model(model)?;
            let work = pema::bench::scratch_dir()?;
            let r = pema::bench::memory_build(&model, &pairs, limit, memory_batch, &work);
            let _ = std::fs::remove_dir_all(&work);
            let r = r?;
            if json {
                return print_json(&r);
            }
            println!(
                "{} pairs, {} tokens, {} threads\nbaseline (llama.cpp, last-token logits): {:.1} / {:.1} tok/s (before / after)\nmemory build: {:.1} tok/s\nratio: {:.3}\nentries: {}, {:.0} bytes/entry, peak RSS {:.0} MiB",
                r.pairs,
                r.tokens,
                r.threads,
                r.baseline_tokens_per_second[0],
                r.baseline_tokens_per_second[1],
                r.build_tokens_per_second,
                r.ratio,
                r.entries,
                r.bytes_per_entry,
                r.peak_rss_bytes as f64 / (1024.0 * 1024.0)
            );
            Ok(())
        }
    }
}
