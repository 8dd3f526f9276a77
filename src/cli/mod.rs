//! The command line: one file per command, with its clap arguments and what it runs; this file
//! holds the command tree, the dispatch and the few helpers the commands share. Every command
//! that reports figures takes `--json` and then prints exactly one JSON object on stdout;
//! human-readable text otherwise. Progress goes to stderr, and only when stderr is a terminal.
//! A flag's default is the default of the options type it fills (`RewriteOptions`,
//! `TrainOptions`, …), never a second literal.

mod bench;
mod eval;
mod memory;
mod model_info;
mod paraphrase;
mod rewrite;
mod serve;
mod train;

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Result;
use clap::{Args, Parser, Subcommand, ValueEnum};
use indicatif::{ProgressBar, ProgressStyle};

use pema::decode::{Mode, RewriteOptions};
use pema::memory::{Pair, PairsRead};
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
    /// Model layers to run on the GPU in a CUDA or Metal build (default: all; 0: none). A CPU
    /// build ignores it.
    #[arg(long, global = true, value_name = "N")]
    gpu_layers: Option<u32>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Build and inspect external memories.
    #[command(subcommand)]
    Memory(memory::MemoryCommand),
    /// Inspect the model: identity, sizes, and a check that the LM head reproduces its logits.
    Model(model_info::ModelArgs),
    /// Train a PEMA adapter on a memory.
    Train(train::TrainArgs),
    /// Rewrite text: with --workspace DIR through the running daemon (a pipe for any editor:
    /// standard input to standard output, lines, blank lines and indentation kept), or with
    /// --adapter FILE locally (TEXT, or each line of standard input).
    Rewrite(rewrite::RewriteArgs),
    /// Score rewrites against reference targets: BLEU and chrF of plain, 3-shot, fixed λ and GU.
    Eval(eval::EvalArgs),
    /// The language server for editors: LSP over stdin/stdout (editors start this).
    Lsp(serve::LspArgs),
    /// The daemon for other tools: the same JSON-RPC over TCP or a unix socket, many clients
    /// (and with --http, an OpenAI-compatible HTTP API).
    Serve(serve::ServeArgs),
    /// An MCP server over stdin/stdout for coding agents: tools rewrite, status, examples.
    Mcp(serve::McpArgs),
    /// Back-paraphrase the targets of a pairs file (as if they were a plain corpus) into
    /// pseudo-pairs: the base model's plain rewrite of each target → the target.
    Paraphrase(paraphrase::ParaphraseArgs),
    /// Benchmarks (figures for BENCHMARKS.md).
    #[command(subcommand)]
    Bench(bench::BenchCommand),
    /// Print the JSON schema of `.pema.toml` (the repository publishes it as
    /// docs/pema.schema.json, for editors' TOML language servers).
    Schema,
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

fn run(cli: Cli) -> Result<()> {
    let model = &ModelChoice {
        path: cli.model,
        gpu_layers: cli.gpu_layers,
    };
    match cli.command {
        Command::Memory(c) => memory::run(model, c),
        Command::Model(a) => model_info::run(model, a),
        Command::Train(a) => train::run(model, a),
        Command::Rewrite(a) => rewrite::run(model, a),
        Command::Eval(a) => eval::run(model, a),
        Command::Lsp(a) => serve::lsp(model, a),
        Command::Serve(a) => serve::serve(model, a),
        Command::Mcp(a) => serve::mcp(model, a),
        Command::Paraphrase(a) => paraphrase::run(model, a),
        Command::Bench(c) => bench::run(model, c),
        Command::Schema => {
            print!("{}", pema::workspace::WorkspaceConfig::json_schema());
            Ok(())
        }
    }
}

/// Which distribution a rewrite draws from: [`Mode`] as a flag (`--mode gu|fixed|plain`, in
/// that order in messages). The flag's help lists the values, so the variants carry no doc
/// comment (one would turn `--help` into its long layout).
#[derive(Clone, Copy, Debug, ValueEnum)]
enum ModeArg {
    Gu,
    Fixed,
    Plain,
}

impl From<ModeArg> for Mode {
    fn from(m: ModeArg) -> Self {
        match m {
            ModeArg::Gu => Mode::Gu,
            ModeArg::Fixed => Mode::Fixed,
            ModeArg::Plain => Mode::Plain,
        }
    }
}

impl ModeArg {
    /// The flag's spelling (what the daemon's `mode` option takes too).
    fn name(self) -> &'static str {
        match self {
            ModeArg::Gu => "gu",
            ModeArg::Fixed => "fixed",
            ModeArg::Plain => "plain",
        }
    }
}

/// The defaults [`GenerationArgs`] show and start from.
fn rewrite_defaults() -> RewriteOptions {
    RewriteOptions::default()
}

/// Each flag overrides one setting; what no flag names comes from the adapter's own choice
/// (`pema rewrite`) or the reference values (the fixed and GU rows of `pema eval`).
#[derive(Args)]
struct GenerationArgs {
    #[arg(
        long,
        help = format!("λ_max of Gradual Unrolling [reference: {}]", rewrite_defaults().lambda_max)
    )]
    lambda_max: Option<f32>,
    #[arg(
        long,
        help = format!("λ of the fixed mode [reference: {}]", rewrite_defaults().lambda_fixed)
    )]
    lambda: Option<f32>,
    #[arg(
        long,
        help = format!(
            "The lowest λ Gradual Unrolling decays to [reference: {}]",
            rewrite_defaults().lambda_floor
        )
    )]
    lambda_floor: Option<f32>,
    /// The adapter may lift only the model's K most likely tokens (0: any token).
    #[arg(long)]
    adapter_top_k: Option<usize>,
    /// 0 is greedy.
    #[arg(long, default_value_t = rewrite_defaults().temperature)]
    temperature: f32,
    #[arg(long, default_value_t = rewrite_defaults().top_p)]
    top_p: f32,
    #[arg(long)]
    max_tokens: Option<usize>,
    /// Decode one token at a time, with no drafts from the source or earlier attempts (slower;
    /// to compare).
    #[arg(long)]
    no_drafts: bool,
    /// λ × F wherever the adapter reaches for none of its marked words (1: the same λ at every
    /// token) [default: the adapter's held-out choice]
    #[arg(long, value_name = "F")]
    style_gate: Option<f32>,
}

impl GenerationArgs {
    /// The flags over `base`.
    fn over(&self, base: RewriteOptions) -> RewriteOptions {
        RewriteOptions {
            lambda_max: self.lambda_max.unwrap_or(base.lambda_max),
            lambda_fixed: self.lambda.unwrap_or(base.lambda_fixed),
            lambda_floor: self.lambda_floor.unwrap_or(base.lambda_floor),
            adapter_top_k: self.adapter_top_k.unwrap_or(base.adapter_top_k),
            style_gate: match self.style_gate {
                Some(g) if g >= 1.0 => None,
                Some(g) => Some(g.max(0.0)),
                None => base.style_gate,
            },
            max_tokens: self.max_tokens,
            temperature: self.temperature,
            top_p: self.top_p,
            seed: 0,
            stop_at_boundary: true,
            drafts: !self.no_drafts,
            ..base
        }
    }

    fn options(&self, mode: Mode) -> RewriteOptions {
        self.over(RewriteOptions {
            mode,
            ..RewriteOptions::default()
        })
    }
}

/// The model the global flags name, and how to run it.
pub(super) struct ModelChoice {
    /// `--model`, else `$PEMA_MODEL`, else the installed default.
    path: Option<PathBuf>,
    /// `--gpu-layers`.
    gpu_layers: Option<u32>,
}

impl ModelChoice {
    /// The model file to load.
    fn resolve(&self) -> Result<PathBuf> {
        model::resolve_model(self.path.as_deref())
    }
}

fn load_model(choice: &ModelChoice) -> Result<Arc<Model>> {
    Model::load_with(&choice.resolve()?, choice.gpu_layers)
}

fn print_json(v: &impl serde::Serialize) -> Result<()> {
    println!("{}", serde_json::to_string(v)?);
    Ok(())
}

fn read_pairs(path: &Path, limit: Option<usize>) -> Result<Vec<Pair>> {
    let mut r = PairsRead::default();
    pema::memory::read_pairs_file(path, &mut r)?;
    for s in r.skipped.iter().take(5) {
        eprintln!("skipped {s}");
    }
    if let Some(n) = limit {
        r.pairs.truncate(n);
    }
    if r.pairs.is_empty() {
        anyhow::bail!("no usable pairs in {}", path.display());
    }
    Ok(r.pairs)
}

/// The one progress bar of the CLI: `len` steps drawn with `template` on stderr when `show` and
/// stderr is a terminal, else a hidden bar (so that callers update it either way).
fn progress_bar(show: bool, len: u64, template: &str) -> Result<ProgressBar> {
    if !show || !std::io::stderr().is_terminal() {
        return Ok(ProgressBar::hidden());
    }
    let b = ProgressBar::new(len);
    b.set_style(ProgressStyle::with_template(template)?.progress_chars("=> "));
    Ok(b)
}
