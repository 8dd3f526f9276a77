//! The long-running commands: `pema lsp` (editors), `pema serve` (JSON-RPC over TCP or a unix
//! socket, and the OpenAI-compatible HTTP API) and `pema mcp` (coding agents).

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Result;
use clap::Args;

use super::train::DeviceArg;
use super::ModelChoice;

use pema::daemon::{Daemon, DaemonOptions};
use pema::server::{self, Listen, TokenSource};

/// How the daemon runs (lsp, serve and mcp alike).
#[derive(Args)]
pub(super) struct DaemonArgs {
    /// Where adapters train: cpu, cuda or metal (the GPU ones need a build with --features
    /// cuda / metal). The model's layers go to the GPU of such a build by --gpu-layers.
    #[arg(long, value_enum, hide_possible_values = true, default_value_t = DeviceArg::Cpu)]
    device: DeviceArg,
}

impl DaemonArgs {
    fn options(&self, model: &ModelChoice) -> Result<DaemonOptions> {
        Ok(DaemonOptions {
            gpu_layers: model.gpu_layers,
            train_device: self.device.device()?,
        })
    }
}

#[derive(Args)]
pub(super) struct LspArgs {
    /// Accepted and ignored: some LSP clients add it; stdio is the only transport here.
    #[arg(long, hide = true)]
    stdio: bool,
    #[command(flatten)]
    daemon: DaemonArgs,
}

#[derive(Args)]
pub(super) struct McpArgs {
    /// Open this workspace at start (repeatable); a tool call can name others.
    #[arg(long, value_name = "DIR")]
    workspace: Vec<PathBuf>,
    #[command(flatten)]
    daemon: DaemonArgs,
}

#[derive(Args)]
pub(super) struct ServeArgs {
    /// HOST:PORT, PORT (loopback) or unix:/path/to/socket.
    #[arg(long, default_value = server::client::DEFAULT_ADDR)]
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
    #[command(flatten)]
    daemon: DaemonArgs,
}

fn runtime() -> Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?)
}

/// The daemon for a stdio server: a failure to start is reported to the client rather than
/// ending the process, so that the editor can show it.
fn start_for_stdio(
    model: &ModelChoice,
    args: &DaemonArgs,
) -> std::result::Result<Arc<Daemon>, String> {
    let daemon = args
        .options(model)
        .and_then(|o| Daemon::start_with(&model.resolve()?, o))
        .map_err(|e| format!("{e:#}"));
    if let Err(e) = &daemon {
        eprintln!("error: {e}");
    }
    daemon
}

pub(super) fn lsp(model: &ModelChoice, a: LspArgs) -> Result<()> {
    let daemon = start_for_stdio(model, &a.daemon);
    let rt = runtime()?;
    rt.block_on(server::serve_stdio(daemon));
    // Background threads may be mid-paraphrase or mid-training, and stdin's reader
    // blocks until the editor closes it; everything pema writes is written atomically,
    // so the process can end now rather than wait for them.
    rt.shutdown_background();
    std::process::exit(0)
}

pub(super) fn mcp(model: &ModelChoice, a: McpArgs) -> Result<()> {
    let daemon = start_for_stdio(model, &a.daemon);
    if let Ok(d) = &daemon {
        for w in &a.workspace {
            d.open_workspace(w)?;
        }
    }
    let rt = runtime()?;
    rt.block_on(server::mcp::serve_stdio(daemon));
    // As `pema lsp`: background work is written atomically, so the process ends now.
    rt.shutdown_background();
    std::process::exit(0)
}

pub(super) fn serve(model: &ModelChoice, a: ServeArgs) -> Result<()> {
    let listen: Listen = a.listen.parse()?;
    let token = match (a.token_file, a.token) {
        (Some(p), _) => TokenSource::File(p),
        (None, Some(t)) => TokenSource::Given(t),
        (None, None) => TokenSource::Own,
    };
    server::check_listen(&listen, a.allow_remote, &token)?;
    let http = match &a.http {
        None => None,
        Some(h) => match h.parse::<Listen>() {
            Ok(Listen::Tcp(addr)) => {
                server::check_listen(&Listen::Tcp(addr), a.allow_remote, &token)?;
                Some(addr)
            }
            _ => anyhow::bail!("--http takes HOST:PORT or PORT (loopback), not {h:?}"),
        },
    };
    let daemon = Daemon::start_with(&model.resolve()?, a.daemon.options(model)?)?;
    for w in &a.workspace {
        daemon.open_workspace(w)?;
    }
    runtime()?.block_on(server::serve_listen(
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
