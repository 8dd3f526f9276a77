//! The command line. Every command that reports figures takes `--json` and then prints exactly
//! one JSON object on stdout; human-readable text otherwise. Progress goes to stderr, and only
//! when stderr is a terminal.

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context as _, Result};
use clap::{Args, Parser, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};

use pema::adapter::{self, Adapter, TrainOptions};
use pema::decode::{self, Mode, RewriteOptions};
use pema::eval::{self, System};
use pema::memory::{self, KeyType, Memory, Pair, PairsRead, Template};
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
    /// Train a PEMA adapter on a memory.
    Train(TrainArgs),
    /// Rewrite text: with --workspace DIR through the running daemon (a pipe for any editor:
    /// standard input to standard output, lines, blank lines and indentation kept), or with
    /// --adapter FILE locally (TEXT, or each line of standard input).
    Rewrite(RewriteArgs),
    /// Score rewrites against reference targets: BLEU and chrF of plain, 3-shot, fixed λ and GU.
    Eval(EvalArgs),
    /// The language server for editors: LSP over stdin/stdout (editors start this).
    Lsp {
        /// Accepted and ignored: some LSP clients add it; stdio is the only transport here.
        #[arg(long, hide = true)]
        stdio: bool,
    },
    /// The daemon for other tools: the same JSON-RPC over TCP or a unix socket, many clients
    /// (and with --http, an OpenAI-compatible HTTP API).
    Serve(ServeArgs),
    /// An MCP server over stdin/stdout for coding agents: tools rewrite, status, examples.
    Mcp {
        /// Open this workspace at start (repeatable); a tool call can name others.
        #[arg(long, value_name = "DIR")]
        workspace: Vec<PathBuf>,
    },
    /// Back-paraphrase the targets of a pairs file (as if they were a plain corpus) into
    /// pseudo-pairs: the base model's plain rewrite of each target → the target.
    Paraphrase(ParaphraseArgs),
    /// Benchmarks (figures for BENCHMARKS.md).
    #[command(subcommand)]
    Bench(BenchCommand),
}

#[derive(Args)]
struct ServeArgs {
    /// HOST:PORT, PORT (loopback) or unix:/path/to/socket.
    #[arg(long, default_value = "127.0.0.1:7858")]
    listen: String,
    /// Allow a TCP address other than loopback (needs --token-file or PEMA_TOKEN).
    #[arg(long)]
    allow_remote: bool,
    /// A file holding the token TCP clients pass as initializationOptions.token. Default:
    /// $PEMA_TOKEN, else the daemon's own token in $XDG_CACHE_HOME/pema/serve.token (made once,
    /// 0600).
    #[arg(long, value_name = "PATH")]
    token_file: Option<PathBuf>,
    /// The token itself (discouraged: other users see command lines in `ps`; use --token-file
    /// or PEMA_TOKEN).
    #[arg(long, env = "PEMA_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// Open this workspace at start (repeatable); clients can open more.
    #[arg(long, value_name = "DIR")]
    workspace: Vec<PathBuf>,
    /// Also serve the OpenAI-compatible HTTP API here (HOST:PORT or PORT for loopback): GET
    /// /v1/models, POST /v1/chat/completions and /v1/completions; the API key is the token.
    #[arg(long, value_name = "ADDR")]
    http: Option<String>,
}

#[derive(Args)]
struct ParaphraseArgs {
    /// Pairs file whose targets are the units (sources are ignored).
    #[arg(long, value_name = "FILE")]
    pairs: PathBuf,
    #[arg(long, value_name = "FILE")]
    out: PathBuf,
    #[arg(long)]
    limit: Option<usize>,
    /// Write identity pairs (unit → unit) instead of running the model.
    #[arg(long)]
    identity: bool,
}

#[derive(Args)]
struct TrainArgs {
    #[arg(long, value_name = "DIR")]
    memory: PathBuf,
    #[arg(long, value_name = "FILE")]
    out: PathBuf,
    /// cpu, cuda or metal (the GPU ones need a build with --features cuda / metal).
    #[arg(long, default_value = "cpu")]
    device: String,
    #[arg(long, default_value_t = 128)]
    rank: usize,
    /// candidates (targets in the memory plus the model's top-k) or full (whole vocabulary).
    #[arg(long, default_value = "candidates")]
    vocab: String,
    #[arg(long, default_value_t = 30)]
    max_epochs: usize,
    /// Adam's learning rate.
    #[arg(long, default_value_t = 1e-3)]
    learning_rate: f64,
    /// Start from this adapter instead of from PCA.
    #[arg(long, value_name = "FILE")]
    warm_start: Option<PathBuf>,
    /// The reference adapter, softmax(W·B_pd·A·h), instead of the residual softmax(W·(h + B_pd·A·h)).
    #[arg(long)]
    bottleneck: bool,
    /// The adapter may lift only the model's K most likely tokens in rewrites (0: any token);
    /// stored in the adapter with the schedule chosen for it.
    #[arg(long, default_value_t = adapter::ADAPTER_TOP_K)]
    adapter_top_k: usize,
    /// Refine the default schedule by rewriting the memory's held-out pairs with each candidate
    /// (BLEU against their targets) instead of keeping the held-out likelihood's choice. Slower;
    /// measured and not the default: BENCHMARKS.md, "Style quality".
    #[arg(long)]
    choose_by_rewriting: bool,
    /// With --choose-by-rewriting: do not train, choose again for the adapter already at --out.
    #[arg(long, requires = "choose_by_rewriting")]
    choose_only: bool,
    #[arg(long)]
    json: bool,
}

/// Each flag overrides one setting; what no flag names comes from the adapter's own choice
/// (`pema rewrite`) or the reference values (the fixed and GU rows of `pema eval`).
#[derive(Args)]
struct GenerationArgs {
    /// λ_max of Gradual Unrolling [reference: 0.9].
    #[arg(long)]
    lambda_max: Option<f32>,
    /// λ of the fixed mode [reference: 0.5].
    #[arg(long)]
    lambda: Option<f32>,
    /// The lowest λ Gradual Unrolling decays to [reference: 0].
    #[arg(long)]
    lambda_floor: Option<f32>,
    /// The adapter may lift only the model's K most likely tokens (0: any token).
    #[arg(long)]
    adapter_top_k: Option<usize>,
    /// 0 is greedy.
    #[arg(long, default_value_t = 0.0)]
    temperature: f32,
    #[arg(long, default_value_t = 1.0)]
    top_p: f32,
    #[arg(long)]
    max_tokens: Option<usize>,
}

impl GenerationArgs {
    /// The flags over `base`.
    fn over(&self, base: RewriteOptions) -> RewriteOptions {
        RewriteOptions {
            lambda_max: self.lambda_max.unwrap_or(base.lambda_max),
            lambda_fixed: self.lambda.unwrap_or(base.lambda_fixed),
            lambda_floor: self.lambda_floor.unwrap_or(base.lambda_floor),
            adapter_top_k: self.adapter_top_k.unwrap_or(base.adapter_top_k),
            max_tokens: self.max_tokens,
            temperature: self.temperature,
            top_p: self.top_p,
            seed: 0,
            stop_at_boundary: true,
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

#[derive(Args)]
struct RewriteArgs {
    /// An adapter file: rewrite here, without a daemon.
    #[arg(long, value_name = "FILE", conflicts_with_all = ["workspace", "daemon"])]
    adapter: Option<PathBuf>,
    /// Rewrite in this workspace's style through the running daemon (`pema serve`): reads the
    /// whole of standard input (or TEXT), writes the rewrite on standard output.
    #[arg(long, value_name = "DIR")]
    workspace: Option<PathBuf>,
    /// The daemon: HOST:PORT, PORT or unix:/path [default: where the last `pema serve` listens,
    /// else 127.0.0.1:7858].
    #[arg(long, env = "PEMA_DAEMON", value_name = "ADDR")]
    daemon: Option<String>,
    /// The daemon's token [default: $PEMA_TOKEN, else $XDG_CACHE_HOME/pema/serve.token].
    #[arg(long, value_name = "PATH")]
    token_file: Option<PathBuf>,
    /// gu, fixed or plain [default: the adapter's own choice, made on its held-out pairs].
    #[arg(long)]
    mode: Option<String>,
    #[command(flatten)]
    gen: GenerationArgs,
    /// The text; `-` or nothing reads standard input, one rewrite per line.
    text: Option<String>,
    /// Print the plain model's rewrite and the adapter's (the chosen mode) side by side.
    #[arg(long)]
    compare: bool,
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
struct EvalArgs {
    #[arg(long, value_name = "FILE")]
    adapter: PathBuf,
    #[arg(long, value_name = "FILE")]
    pairs: PathBuf,
    /// Evaluate only the first N pairs.
    #[arg(long)]
    limit: Option<usize>,
    /// Pairs whose first 3 are the worked examples of the 3-shot system (without it, no 3-shot).
    #[arg(long, value_name = "FILE")]
    shots: Option<PathBuf>,
    /// The 3-shot system's template (default: the adapter's).
    #[arg(long)]
    few_shot_template: Option<String>,
    /// Pairs to train the style classifier on (sources: not the style; targets: the style).
    /// Default: the --shots file.
    #[arg(long, value_name = "FILE")]
    style_pairs: Option<PathBuf>,
    /// Score only the held-out pairs of this memory's split among --pairs (to choose settings
    /// on the adapter's own held-out data, never on the evaluation set).
    #[arg(long)]
    held_out_only: bool,
    /// Score only these systems (comma-separated) [default: all].
    #[arg(long, value_enum, value_delimiter = ',')]
    systems: Vec<System>,
    #[command(flatten)]
    gen: GenerationArgs,
    /// With --json, include every output of every system.
    #[arg(long)]
    outputs: bool,
    #[arg(long)]
    json: bool,
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
    /// Worked examples, drawn from the pairs, in front of every prompt (0: none).
    #[arg(long, default_value_t = memory::DEFAULT_SHOTS)]
    shots: usize,
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
        #[arg(long, default_value = "rewrite")]
        baseline_template: String,
        #[arg(long)]
        json: bool,
    },
    /// Adapter training: time to early stop and peak RSS.
    Train {
        #[arg(long, value_name = "DIR")]
        memory: PathBuf,
        #[arg(long, default_value_t = 128)]
        rank: usize,
        /// candidates or full.
        #[arg(long, default_value = "candidates")]
        vocab: String,
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
        Command::Train(a) => train(cli.model.as_ref(), a),
        Command::Rewrite(a) => rewrite(cli.model.as_ref(), a),
        Command::Eval(a) => evaluate(cli.model.as_ref(), a),
        Command::Paraphrase(a) => paraphrase(cli.model.as_ref(), a),
        Command::Lsp { .. } => {
            let daemon = model::resolve_model(cli.model.as_deref())
                .and_then(|p| pema::daemon::Daemon::start(&p))
                .map_err(|e| format!("{e:#}"));
            if let Err(e) = &daemon {
                eprintln!("error: {e}");
            }
            let rt = runtime()?;
            rt.block_on(pema::server::serve_stdio(daemon));
            // Background threads may be mid-paraphrase or mid-training, and stdin's reader
            // blocks until the editor closes it; everything pema writes is written atomically,
            // so the process can end now rather than wait for them.
            rt.shutdown_background();
            std::process::exit(0)
        }
        Command::Serve(a) => serve(cli.model.as_ref(), a),
        Command::Mcp { workspace } => {
            let daemon = model::resolve_model(cli.model.as_deref())
                .and_then(|p| pema::daemon::Daemon::start(&p))
                .map_err(|e| format!("{e:#}"));
            match &daemon {
                Err(e) => eprintln!("error: {e}"),
                Ok(d) => {
                    for w in &workspace {
                        d.open_workspace(w)?;
                    }
                }
            }
            let rt = runtime()?;
            rt.block_on(pema::server::mcp::serve_stdio(daemon));
            // As `pema lsp`: background work is written atomically, so the process ends now.
            rt.shutdown_background();
            std::process::exit(0)
        }
        Command::Bench(BenchCommand::Generate {
            adapter,
            pairs,
            limit,
            baseline_template,
            json,
        }) => {
            let model = load_model(cli.model.as_ref())?;
            let adapter = load_adapter(&model, &adapter)?;
            let pairs = read_pairs(&pairs, Some(limit))?;
            let base = Template::from_arg(&baseline_template)?;
            let r = pema::bench::generation(&model, &adapter, &pairs, &base)?;
            if json {
                return print_json(&r);
            }
            println!(
                "{} sources, {} threads\nplain:   {} tokens, {:.1} tok/s\ndefault: {} tokens, {:.1} tok/s\nratio: {:.3}\ntime to first token (median): {:.0} ms, zero-shot baseline {:.0} ms, ratio {:.2}",
                r.sources, r.threads, r.plain_tokens, r.plain_tokens_per_second, r.default_tokens, r.default_tokens_per_second, r.ratio,
                r.first_token_ms_median, r.baseline_first_token_ms_median, r.first_token_ratio
            );
            Ok(())
        }
        Command::Bench(BenchCommand::Train {
            memory,
            rank,
            vocab,
            json,
        }) => {
            let model = load_model(cli.model.as_ref())?;
            let memory = Memory::open(&memory)?;
            let opts = TrainOptions {
                rank,
                vocab: vocab.parse()?,
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

fn runtime() -> Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?)
}

fn serve(model: Option<&PathBuf>, a: ServeArgs) -> Result<()> {
    let listen: pema::server::Listen = a.listen.parse()?;
    let token = match (a.token_file, a.token) {
        (Some(p), _) => pema::server::TokenSource::File(p),
        (None, Some(t)) => pema::server::TokenSource::Given(t),
        (None, None) => pema::server::TokenSource::Own,
    };
    pema::server::check_listen(&listen, a.allow_remote, &token)?;
    let http = match &a.http {
        None => None,
        Some(h) => match h.parse::<pema::server::Listen>() {
            Ok(pema::server::Listen::Tcp(addr)) => {
                pema::server::check_listen(
                    &pema::server::Listen::Tcp(addr),
                    a.allow_remote,
                    &token,
                )?;
                Some(addr)
            }
            _ => anyhow::bail!("--http takes HOST:PORT or PORT (loopback), not {h:?}"),
        },
    };
    let path = model::resolve_model(model.map(|p| p.as_path()))?;
    let daemon = pema::daemon::Daemon::start(&path)?;
    for w in &a.workspace {
        daemon.open_workspace(w)?;
    }
    runtime()?.block_on(pema::server::serve_listen(
        daemon,
        listen,
        http,
        a.allow_remote,
        token,
        |at| {
            // Tools and tests wait for this line before connecting.
            eprintln!("pema: listening on {at}");
        },
    ))
}

fn paraphrase(model: Option<&PathBuf>, a: ParaphraseArgs) -> Result<()> {
    use pema::workspace::paraphrase;
    let units: Vec<String> = read_pairs(&a.pairs, a.limit)?
        .into_iter()
        .map(|p| p.target)
        .collect();
    let mut out = Vec::with_capacity(units.len());
    if a.identity {
        out.extend(units.iter().map(|u| paraphrase::pseudo_pair(u, u)));
    } else {
        let model = load_model(model)?;
        let mut session = model.session(Default::default())?;
        let bar = if std::io::stderr().is_terminal() {
            ProgressBar::new(units.len() as u64)
        } else {
            ProgressBar::hidden()
        };
        for u in &units {
            let p = paraphrase::paraphrase(&mut session, u, None)?;
            out.push(paraphrase::pseudo_pair(u, &p));
            bar.inc(1);
        }
        bar.finish_and_clear();
    }
    memory::write_pairs_file(&a.out, &out)?;
    eprintln!("{} pseudo-pairs written to {}", out.len(), a.out.display());
    Ok(())
}

fn read_pairs(path: &std::path::Path, limit: Option<usize>) -> Result<Vec<Pair>> {
    let mut r = PairsRead::default();
    memory::read_pairs_file(path, &mut r)?;
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

fn load_adapter(model: &Arc<Model>, path: &std::path::Path) -> Result<Adapter> {
    let mut a = Adapter::load(path)?;
    a.check_model(model.info())?;
    a.prepare(model.head())?;
    Ok(a)
}

fn parse_device(name: &str) -> Result<candle_core::Device> {
    let d = match name {
        "cpu" => return Ok(candle_core::Device::Cpu),
        "cuda" => candle_core::Device::new_cuda(0),
        "metal" => candle_core::Device::new_metal(0),
        _ => anyhow::bail!("device is cpu, cuda or metal, not {name:?}"),
    };
    d.map_err(|e| {
        anyhow::anyhow!(
            "cannot use {name}: {e}. GPU training needs a build with `cargo build --release --features {name}`"
        )
    })
}

fn train(model: Option<&PathBuf>, a: TrainArgs) -> Result<()> {
    let device = parse_device(&a.device)?;
    let model = load_model(model)?;
    let memory = Memory::open(&a.memory)?;
    let warm = match &a.warm_start {
        Some(p) => Some(Adapter::load(p)?),
        None => None,
    };
    let opts = TrainOptions {
        rank: a.rank,
        vocab: a.vocab.parse()?,
        max_epochs: a.max_epochs,
        learning_rate: a.learning_rate,
        device,
        warm_start: warm.as_ref(),
        residual: !a.bottleneck,
        adapter_top_k: a.adapter_top_k,
        ..Default::default()
    };
    let trained = if a.choose_only {
        let adapter = load_adapter(&model, &a.out)?;
        adapter.check_memory(&memory)?;
        adapter
    } else {
        train_adapter(&model, &memory, &opts, a.json)?
    };
    let mut adapter = trained;
    let held_out = memory.held_out_pairs(opts.held_out_percent);
    let schedules = if !a.choose_by_rewriting || held_out.len() < eval::tune::MIN_PAIRS {
        vec![]
    } else {
        adapter.prepare(model.head())?;
        let template = adapter.template()?;
        let mut session = model.session(Default::default())?;
        let bar = progress_bar(
            !a.json,
            "choosing the schedule: {pos}/{len} rewrites [{bar:20}]",
        )?;
        let scores = eval::choose_schedule(
            &mut session,
            &mut adapter,
            &template,
            &held_out,
            None,
            |p| {
                bar.set_length(p.total as u64);
                bar.set_position(p.done as u64);
            },
        )?;
        bar.finish_and_clear();
        scores
    };
    adapter.save(&a.out)?;
    let t = &adapter.info().training;
    if a.json {
        // The adapter's figures as before, with the schedules tried beside them.
        let mut v = serde_json::to_value(adapter.info())?;
        v["schedules"] = serde_json::to_value(&schedules)?;
        return print_json(&v);
    }
    println!("adapter     {}", a.out.display());
    println!(
        "trained     {} epochs ({}), best epoch {}, {:.1} s",
        t.epochs, t.stopped_by, t.best_epoch, t.seconds
    );
    println!(
        "entries     {} training, {} held out",
        t.train_entries, t.held_out_entries
    );
    println!(
        "held-out CE {:.3} before, {:.3} after (vocabulary {})",
        t.held_out_ce_start, t.held_out_ce, t.vocab_size
    );
    for s in &schedules {
        println!(
            "schedule    {:<24} BLEU {:5.2} on {} held-out pairs (chrF vs source {:.1}, {} degenerate)",
            describe(&s.decoding),
            s.bleu,
            s.pairs,
            s.chrf_source,
            s.degenerate
        );
    }
    if let Some(d) = &adapter.info().decoding {
        println!("default     {}", describe(d));
    }
    Ok(())
}

fn train_adapter(
    model: &Arc<Model>,
    memory: &Memory,
    opts: &TrainOptions,
    json: bool,
) -> Result<Adapter> {
    let bar = if std::io::stderr().is_terminal() && !json {
        let b = ProgressBar::new(opts.max_epochs as u64);
        b.set_style(
            ProgressStyle::with_template("{spinner} epoch {pos}/{len} [{bar:20}] {msg}")?
                .progress_chars("=> "),
        );
        b
    } else {
        ProgressBar::hidden()
    };
    let adapter = adapter::train(memory, model.head(), model.info(), opts, |p| {
        bar.set_position(p.epoch.saturating_sub(1) as u64);
        let per_step =
            p.elapsed_seconds / ((p.epoch - 1) * p.steps_per_epoch + p.step).max(1) as f64;
        let left = (p.steps_per_epoch - p.step) as f64 * per_step;
        bar.set_message(format!(
            "step {}/{}  train loss {:.3}  held-out loss {:.3}  epoch ETA {:.0}s",
            p.step, p.steps_per_epoch, p.train_loss, p.held_out_loss, left
        ));
    });
    bar.finish_and_clear();
    adapter
}

fn describe(d: &adapter::Decoding) -> String {
    match d.mode {
        decode::Mode::Fixed => format!("fixed λ {:.1}", d.lambda),
        decode::Mode::Gu => format!("GU λmax {:.1} floor {:.1}", d.lambda_max, d.lambda_floor),
        decode::Mode::Plain => "plain".into(),
    }
}

fn progress_bar(show: bool, template: &str) -> Result<ProgressBar> {
    if !show || !std::io::stderr().is_terminal() {
        return Ok(ProgressBar::hidden());
    }
    let b = ProgressBar::new(0);
    b.set_style(ProgressStyle::with_template(template)?.progress_chars("=> "));
    Ok(b)
}

/// `pema rewrite --workspace DIR`: the selection on standard input, its rewrite on standard
/// output. On failure the input goes back unchanged (an editor filtering a selection keeps it)
/// and the reason goes to standard error.
fn rewrite_pipe(a: RewriteArgs, workspace: PathBuf) -> Result<()> {
    if a.compare || a.json {
        anyhow::bail!("--compare and --json work with --adapter only");
    }
    let text = match a.text.as_deref() {
        Some(t) if t != "-" => t.to_string(),
        _ => {
            let mut s = String::new();
            std::io::Read::read_to_string(&mut std::io::stdin(), &mut s)
                .context("reading standard input")?;
            s
        }
    };
    let req = pema::server::client::PipeRewrite {
        text: text.clone(),
        workspace,
        daemon: a.daemon,
        token_file: a.token_file,
        token: std::env::var("PEMA_TOKEN").ok().filter(|t| !t.is_empty()),
        mode: a.mode,
        lambda_max: a.gen.lambda_max,
        lambda_fixed: a.gen.lambda,
        temperature: (a.gen.temperature != 0.0).then_some(a.gen.temperature),
        top_p: (a.gen.top_p != 1.0).then_some(a.gen.top_p),
        max_tokens: a.gen.max_tokens,
    };
    // On a terminal the rewrite streams; into a pipe it is written whole at the end, so that a
    // failure half-way leaves the input as it was.
    let tty = std::io::stdout().is_terminal();
    let mut out = std::io::stdout();
    match pema::server::client::rewrite_via_daemon(&req, |piece| {
        if tty {
            let _ = write!(out, "{piece}");
            let _ = out.flush();
        }
    }) {
        Ok(r) => {
            if !tty {
                out.write_all(r.as_bytes())?;
            } else if !r.ends_with('\n') {
                writeln!(out)?;
            }
            out.flush()?;
            Ok(())
        }
        Err(e) => {
            if !tty {
                let _ = out.write_all(text.as_bytes());
                let _ = out.flush();
            }
            Err(e.context("pema rewrite: the text is left as it was"))
        }
    }
}

fn rewrite(model: Option<&PathBuf>, a: RewriteArgs) -> Result<()> {
    let adapter_path = match (&a.adapter, &a.workspace) {
        (_, Some(w)) => {
            let w = w.clone();
            return rewrite_pipe(a, w);
        }
        (Some(p), None) => p.clone(),
        (None, None) => anyhow::bail!(
            "say whose style: --workspace DIR (through the running daemon, `pema serve`) or \
             --adapter FILE (an adapter trained with `pema train`)"
        ),
    };
    let model = load_model(model)?;
    let adapter = load_adapter(&model, &adapter_path)?;
    let template = adapter.template()?;
    let mut base = adapter.default_rewrite();
    if let Some(m) = &a.mode {
        base.mode = m.parse()?;
    }
    let opts = a.gen.over(base);
    let mut session = model.session(Default::default())?;
    let inputs: Vec<String> = match a.text.as_deref() {
        Some(t) if t != "-" => vec![t.to_string()],
        _ => {
            let mut s = String::new();
            std::io::Read::read_to_string(&mut std::io::stdin(), &mut s)
                .context("reading standard input")?;
            s.lines()
                .filter(|l| !l.trim().is_empty())
                .map(String::from)
                .collect()
        }
    };
    for text in inputs {
        // The same path as the daemon's: `decode::rewrite_text`, line by line.
        let mut rewrite = |opts: &RewriteOptions, on_text: &mut dyn FnMut(&str)| {
            decode::rewrite_text(
                &mut session,
                Some(&adapter),
                &template,
                &text,
                opts,
                on_text,
                None,
            )
        };
        if a.compare {
            let plain = rewrite(
                &RewriteOptions {
                    mode: Mode::Plain,
                    ..opts
                },
                &mut |_| {},
            )?;
            let pema = rewrite(&opts, &mut |_| {})?;
            if a.json {
                print_json(&serde_json::json!({"source": text, "plain": plain, "pema": pema}))?;
            } else {
                let show = |t: &str| {
                    if t.is_empty() {
                        "(nothing: the plain model ends its answer at once)".to_string()
                    } else {
                        t.to_string()
                    }
                };
                println!(
                    "source: {text}\nplain:  {}\npema:   {}\n",
                    show(&plain.text),
                    show(&pema.text)
                );
            }
            continue;
        }
        let mut out = std::io::stdout();
        let r = rewrite(&opts, &mut |piece| {
            if !a.json {
                let _ = write!(out, "{piece}");
                let _ = out.flush();
            }
        })?;
        if a.json {
            print_json(&r)?;
        } else {
            println!();
        }
    }
    Ok(())
}

fn evaluate(model: Option<&PathBuf>, a: EvalArgs) -> Result<()> {
    let model = load_model(model)?;
    let adapter = load_adapter(&model, &a.adapter)?;
    let template = adapter.template()?;
    let mut pairs = read_pairs(&a.pairs, None)?;
    if a.held_out_only {
        pairs.retain(|p| memory::split::is_held_out(&p.hash(), memory::DEFAULT_HELD_OUT_PERCENT));
    }
    if let Some(n) = a.limit {
        pairs.truncate(n);
    }
    let mut systems = vec![System::CopySource, System::Plain];
    let shots = match &a.shots {
        Some(p) => {
            systems.push(System::FewShot);
            read_pairs(p, Some(3))?
        }
        None => vec![],
    };
    systems.extend([System::Fixed, System::Gu, System::Default]);
    if !a.systems.is_empty() {
        systems.retain(|s| a.systems.contains(s));
    }
    let style = match a.style_pairs.as_ref().or(a.shots.as_ref()) {
        Some(p) => {
            let train = read_pairs(p, None)?;
            let mut ex: Vec<(&str, bool)> = Vec::with_capacity(2 * train.len());
            for t in &train {
                ex.push((&t.source, false));
                ex.push((&t.target, true));
            }
            Some(eval::StyleClassifier::train(&ex))
        }
        None => None,
    };
    let few_shot_template = match &a.few_shot_template {
        Some(t) => Some(Template::from_arg(t)?),
        None => None,
    };
    let mut session = model.session(Default::default())?;
    let bar = if std::io::stderr().is_terminal() && !a.json {
        ProgressBar::new((systems.len() * pairs.len()) as u64)
    } else {
        ProgressBar::hidden()
    };
    let scores = eval::evaluate(
        &mut session,
        &adapter,
        &template,
        &pairs,
        &eval::EvalOptions {
            systems,
            shots,
            few_shot_template,
            rewrite: a.gen.options(Mode::Gu),
            default_rewrite: adapter.default_rewrite(),
            style,
        },
        |p| bar.set_position((p.system * p.pairs + p.pair) as u64),
    );
    bar.finish_and_clear();
    let mut scores = scores?;
    if a.json {
        if !a.outputs {
            for s in &mut scores {
                s.outputs.truncate(3);
            }
        }
        return print_json(&serde_json::json!({"pairs": pairs.len(), "systems": scores}));
    }
    println!("{} pairs from {} (BLEU: sacreBLEU-compatible, 13a tokenisation; chrF: char 6-grams, beta 2)", pairs.len(), a.pairs.display());
    println!(
        "{:<12} {:>7} {:>7} {:>9} {:>7} {:>6} {:>9}",
        "system", "BLEU", "chrF", "chrF-src", "style", "degen", "tok/s"
    );
    for s in &scores {
        let name = serde_json::to_value(&s.system)?
            .as_str()
            .unwrap_or("")
            .to_string();
        let style = s
            .style_accuracy
            .map_or("-".to_string(), |v| format!("{v:.2}"));
        println!(
            "{:<12} {:>7.2} {:>7.2} {:>9.2} {:>7} {:>6} {:>9.1}",
            name, s.bleu, s.chrf, s.chrf_source, style, s.degenerate, s.tokens_per_second
        );
    }
    Ok(())
}
