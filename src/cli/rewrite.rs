//! `pema rewrite`: with `--workspace DIR` a pipe through the running daemon (standard input to
//! standard output, for any editor), with `--adapter FILE` a rewrite here, without a daemon.

use std::io::{IsTerminal, Write};
use std::path::PathBuf;

use anyhow::{Context as _, Result};
use clap::Args;

use pema::adapter::Adapter;
use pema::decode::{self, HeldLine, Mode, RewriteOptions, TextEvent};

use super::{load_model, print_json, rewrite_defaults, GenerationArgs, ModeArg, ModelChoice};

#[derive(Args)]
pub(super) struct RewriteArgs {
    /// An adapter file: rewrite here, without a daemon.
    #[arg(long, value_name = "FILE", conflicts_with_all = ["workspace", "daemon"])]
    adapter: Option<PathBuf>,
    /// Rewrite in this workspace's style through the running daemon (`pema serve`): reads the
    /// whole of standard input (or TEXT), writes the rewrite on standard output.
    #[arg(long, value_name = "DIR")]
    workspace: Option<PathBuf>,
    #[arg(
        long,
        env = "PEMA_DAEMON",
        value_name = "ADDR",
        help = format!(
            "The daemon: HOST:PORT, PORT or unix:/path [default: where the last `pema serve` \
             listens, else {}]",
            pema::server::client::DEFAULT_ADDR
        )
    )]
    daemon: Option<String>,
    /// The daemon's token [default: $PEMA_TOKEN, else $XDG_CACHE_HOME/pema/serve.token].
    #[arg(long, value_name = "PATH")]
    token_file: Option<PathBuf>,
    /// gu, fixed or plain [default: the adapter's own choice, made on its held-out pairs].
    #[arg(long, value_enum, hide_possible_values = true)]
    mode: Option<ModeArg>,
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

/// `pema rewrite --workspace DIR`: the selection on standard input, its rewrite on standard
/// output. On failure the input goes back unchanged (an editor filtering a selection keeps it)
/// and the reason goes to standard error.
fn pipe(a: RewriteArgs, workspace: PathBuf) -> Result<()> {
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
    let defaults = rewrite_defaults();
    let req = pema::server::client::PipeRewrite {
        text: text.clone(),
        workspace,
        daemon: a.daemon,
        token_file: a.token_file,
        token: std::env::var("PEMA_TOKEN").ok().filter(|t| !t.is_empty()),
        mode: a.mode.map(|m| m.name().to_string()),
        lambda_max: a.gen.lambda_max,
        lambda_fixed: a.gen.lambda,
        // Sent only when a flag moves them off the defaults.
        temperature: (a.gen.temperature != defaults.temperature).then_some(a.gen.temperature),
        top_p: (a.gen.top_p != defaults.top_p).then_some(a.gen.top_p),
        max_tokens: a.gen.max_tokens,
    };
    // On a terminal the rewrite streams; into a pipe it is written whole at the end, so that a
    // failure half-way leaves the input as it was.
    let tty = std::io::stdout().is_terminal();
    let mut out = std::io::stdout();
    let mut shown = 0;
    match pema::server::client::rewrite_via_daemon(&req, |piece| {
        if tty {
            shown += piece.len();
            let _ = write!(out, "{piece}");
            let _ = out.flush();
        }
    }) {
        Ok(r) => {
            if !tty {
                out.write_all(r.as_bytes())?;
            } else {
                // The last line streams once it is final.
                out.write_all(r.get(shown..).unwrap_or_default().as_bytes())?;
                if !r.ends_with('\n') {
                    writeln!(out)?;
                }
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

pub(super) fn run(model: &ModelChoice, a: RewriteArgs) -> Result<()> {
    let adapter_path = match (&a.adapter, &a.workspace) {
        (_, Some(w)) => {
            let w = w.clone();
            return pipe(a, w);
        }
        (Some(p), None) => p.clone(),
        (None, None) => anyhow::bail!(
            "say whose style: --workspace DIR (through the running daemon, `pema serve`) or \
             --adapter FILE (an adapter trained with `pema train`)"
        ),
    };
    let model = load_model(model)?;
    let adapter = Adapter::load_for(&adapter_path, model.info(), &*model.head()?)?;
    let template = adapter.template()?;
    let mut base = adapter.default_rewrite();
    if let Some(m) = a.mode {
        base.mode = m.into();
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
        let mut rewrite = |opts: &RewriteOptions, on_text: &mut dyn FnMut(TextEvent<'_>)| {
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
        // A line that may be made again (it dropped a name) is printed once it is final.
        let mut held = HeldLine::new(opts.mode != Mode::Plain && opts.keep_names);
        let r = rewrite(&opts, &mut |e| {
            if a.json {
                return;
            }
            match e {
                TextEvent::Text(piece) => {
                    if let Some(s) = held.push(piece) {
                        let _ = write!(out, "{s}");
                    }
                }
                TextEvent::Retract(n) => held.retract(n),
            }
            let _ = out.flush();
        })?;
        if a.json {
            print_json(&r)?;
        } else {
            println!("{}", held.finish().unwrap_or_default());
        }
    }
    Ok(())
}
