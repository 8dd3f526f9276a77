//! The command line. Every command that reports figures takes `--json` and then prints exactly
//! one JSON object on stdout; human-readable text otherwise. Progress goes to stderr, and only
//! when stderr is a terminal.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Result;
use clap::{Args, Parser, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};

use pema::memory::{self, KeyType, Memory, Template};
use pema::model::{self, Model};

#[derive(Parser)]
#[command(
    name = "pema",
    version,
    about = "Learns the writing style of your files and rewrites text in it"
)]
struct Cli {
    /// The GGUF model (else $PEMA_MODEL, else the installed default Gemma 3 270M).
    #[arg(long, global = true, value_name = "PATH")]
    model: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Build and inspect external memories.
    #[command(subcommand)]
    Memory(MemoryCommand),
    /// Inspect the model: identity, sizes, and a check that the LM head reproduces its logits.
    Model(ModelArgs),
    /// Benchmarks (figures for BENCHMARKS.md).
    #[command(subcommand)]
    Bench(BenchCommand),
}

#[derive(Subcommand)]
enum MemoryCommand {
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
struct BuildArgs {
    /// JSON Lines of {"source": ..., "target": ...}; may be repeated.
    #[arg(long = "pairs", required = true, value_name = "FILE")]
    pairs: Vec<PathBuf>,
    /// A preset (rewrite, translate-de, formal) or a template text with a {source} slot.
    #[arg(long, default_value = "rewrite")]
    template: String,
    #[arg(long, value_name = "DIR")]
    out: PathBuf,
    /// Store keys as f32 instead of f16 (twice the size).
    #[arg(long)]
    f32: bool,
    /// Discard a memory in DIR that was built with another model or template.
    #[arg(long)]
    replace: bool,
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
struct ModelArgs {
    /// Check W·h against llama.cpp's own logits on this text.
    #[arg(long, value_name = "TEXT")]
    check: Option<String>,
    #[arg(long)]
    json: bool,
}

#[derive(Subcommand)]
enum BenchCommand {
    /// Memory-build throughput against llama.cpp's plain forward pass, as a ratio.
    Memory {
        #[arg(long = "pairs", value_name = "FILE")]
        pairs: PathBuf,
        /// Use only the first N pairs.
        #[arg(long)]
        limit: Option<usize>,
        #[arg(long)]
        json: bool,
    },
}

pub fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_env("PEMA_LOG"))
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn load_model(explicit: Option<&PathBuf>) -> Result<Arc<Model>> {
    let path = model::resolve_model(explicit.map(|p| p.as_path()))?;
    Model::load(&path)
}

fn print_json(v: &impl serde::Serialize) -> Result<()> {
    println!("{}", serde_json::to_string(v)?);
    Ok(())
}

fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Memory(MemoryCommand::Build(a)) => memory_build(cli.model.as_ref(), a),
        Command::Memory(MemoryCommand::Stats { dir, json }) => {
            let s = Memory::open(&dir)?.stats();
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
        Command::Model(a) => model_info(cli.model.as_ref(), a),
        Command::Bench(BenchCommand::Memory { pairs, limit, json }) => {
            let model = load_model(cli.model.as_ref())?;
            let work = pema::bench::scratch_dir()?;
            let r = pema::bench::memory_build(&model, &pairs, limit, &work);
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

fn memory_build(model: Option<&PathBuf>, a: BuildArgs) -> Result<()> {
    let template = Template::from_arg(&a.template)?;
    let model = load_model(model)?;
    let mut session = model.session(Default::default())?;
    let bar = if std::io::stderr().is_terminal() && !a.json {
        let b = ProgressBar::new(0);
        b.set_style(
            ProgressStyle::with_template(
                "{spinner} [{bar:30}] {pos}/{len} tokens  {per_sec}  ETA {eta}  {msg}",
            )?
            .progress_chars("=> "),
        );
        b
    } else {
        ProgressBar::hidden()
    };
    let report = memory::build(
        &mut session,
        &memory::BuildOptions {
            pairs_files: a.pairs,
            template,
            out: a.out,
            key_type: if a.f32 { KeyType::F32 } else { KeyType::F16 },
            replace: a.replace,
            cancel: None,
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

#[derive(serde::Serialize)]
struct ModelReport {
    #[serde(flatten)]
    info: model::ModelInfo,
    check: Option<model::HeadCheck>,
}

fn model_info(model: Option<&PathBuf>, a: ModelArgs) -> Result<()> {
    let model = load_model(model)?;
    let check = match &a.check {
        Some(text) => Some(model.check_head(text)?),
        None => None,
    };
    let r = ModelReport {
        info: model.info().clone(),
        check,
    };
    if a.json {
        return print_json(&r);
    }
    println!("model       {} ({})", r.info.name, r.info.path.display());
    println!("identity    {}", r.info.identity);
    println!(
        "hidden size {}, vocabulary {}, trained context {}",
        r.info.n_embd, r.info.n_vocab, r.info.n_ctx_train
    );
    if let Some(c) = r.check {
        println!(
            "LM head     W·h argmax matches llama.cpp at {}/{} positions, max |diff| {:.4}",
            c.argmax_matches, c.positions, c.max_abs_diff
        );
    }
    Ok(())
}
