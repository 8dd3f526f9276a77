//! `pema memory build` and `pema memory stats`.

use std::path::{Path, PathBuf};

use anyhow::Result;
use clap::{Args, Subcommand};

use pema::memory::{self, KeyType, Memory, Template};

use super::{load_model, print_json, progress_bar, ModelChoice};

#[derive(Subcommand)]
pub(super) enum MemoryCommand {
    /// Build (or incrementally rebuild) a memory from pairs files.
    Build(BuildArgs),
    /// Print a memory's figures.
    Stats {
        dir: PathBuf,
        #[arg(long)]
        json: bool,
    },
}

#[derive(Args)]
pub(super) struct BuildArgs {
    /// JSON Lines of {"source": ..., "target": ...}; may be repeated.
    #[arg(long = "pairs", required = true, value_name = "FILE")]
    pairs: Vec<PathBuf>,
    /// A preset (rewrite, translate-de, formal) or a template text with a {source} slot.
    #[arg(long, default_value = memory::DEFAULT_TEMPLATE)]
    template: String,
    #[arg(long, value_name = "DIR")]
    out: PathBuf,
    /// Store keys as f32 instead of f16 (twice the size).
    #[arg(long)]
    f32: bool,
    /// Discard a memory in DIR that was built with another model or template.
    #[arg(long)]
    replace: bool,
    /// Worked examples, drawn from the pairs, in front of every prompt (0: none).
    #[arg(long, default_value_t = memory::DEFAULT_SHOTS)]
    shots: usize,
    #[arg(long)]
    json: bool,
}

pub(super) fn run(model: &ModelChoice, c: MemoryCommand) -> Result<()> {
    match c {
        MemoryCommand::Build(a) => build(model, a),
        MemoryCommand::Stats { dir, json } => stats(&dir, json),
    }
}

fn stats(dir: &Path, json: bool) -> Result<()> {
    let s = Memory::open(dir)?.stats();
    if json {
        return print_json(&s);
    }
    println!("memory      {}", s.path.display());
    println!("entries     {}", s.entries);
    println!(
        "pairs       {} ({} held out for validation)",
        s.pairs, s.held_out_pairs
    );
    println!("hidden size {} ({:?} keys)", s.hidden_size, s.key_type);
    println!(
        "bytes       {} ({:.0} per entry)",
        s.bytes, s.bytes_per_entry
    );
    println!("model       {} ({})", s.model_name, &s.model_identity[..16]);
    println!("template    {:?}", s.template);
    Ok(())
}

fn build(model: &ModelChoice, a: BuildArgs) -> Result<()> {
    let template = Template::from_arg(&a.template)?;
    let model = load_model(model)?;
    let mut session = model.session(Default::default())?;
    let bar = progress_bar(
        !a.json,
        0,
        "{spinner} [{bar:30}] {pos}/{len} tokens  {per_sec}  ETA {eta}  {msg}",
    )?;
    let report = memory::build(
        &mut session,
        &memory::BuildOptions {
            pairs_files: a.pairs,
            template,
            out: a.out,
            key_type: if a.f32 { KeyType::F32 } else { KeyType::F16 },
            replace: a.replace,
            cancel: None,
            max_entries: None,
            shots: a.shots,
        },
        |p| {
            bar.set_length(p.tokens_total as u64);
            bar.set_position(p.tokens_done as u64);
            bar.set_message(format!("{}/{} pairs", p.pairs_done, p.pairs_total));
        },
    );
    bar.finish_and_clear();
    let report = report?;
    for w in &report.warnings {
        eprintln!("warning: {w}");
    }
    for s in report.skipped_lines.iter().take(10) {
        eprintln!("skipped {s}");
    }
    if report.skipped_lines.len() > 10 {
        eprintln!(
            "... and {} more skipped lines",
            report.skipped_lines.len() - 10
        );
    }
    if a.json {
        return print_json(&report);
    }
    println!("memory      {}", report.path.display());
    println!(
        "pairs       {} ({} computed, {} reused, {} removed)",
        report.pairs, report.pairs_computed, report.pairs_reused, report.pairs_removed
    );
    println!("entries     {}", report.entries);
    println!(
        "skipped     {} bad lines, {} duplicates, {} longer than the context",
        report.skipped_lines.len(),
        report.duplicate_pairs,
        report.pairs_too_long
    );
    println!(
        "throughput  {} tokens in {:.1} s ({:.0} tokens/s)",
        report.tokens_processed, report.seconds, report.tokens_per_second
    );
    Ok(())
}
