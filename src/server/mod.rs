//! The protocol: LSP over stdio for editors, the same JSON-RPC over TCP or a unix socket for
//! other tools. The only module that knows LSP or JSON-RPC.

mod backend;
mod framing;
mod protocol;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{bail, Context as _, Result};
use tower_lsp_server::{LspService, Server};

use crate::daemon::Daemon;
use backend::Backend;

/// Where `pema serve` listens.
#[derive(Clone, Debug)]
pub enum Listen {
    Tcp(SocketAddr),
    Unix(PathBuf),
}

impl std::str::FromStr for Listen {
    type Err = anyhow::Error;
    fn from_str(s: &str) -> Result<Self> {
        if let Some(p) = s.strip_prefix("unix:") {
            return Ok(Self::Unix(PathBuf::from(p)));
        }
        if s.contains('/') {
            return Ok(Self::Unix(PathBuf::from(s)));
        }
        // A bare port means loopback.
        if let Ok(port) = s.parse::<u16>() {
            return Ok(Self::Tcp(SocketAddr::from(([127, 0, 0, 1], port))));
        }
        s.parse::<SocketAddr>().map(Self::Tcp).with_context(|| {
            format!("--listen takes HOST:PORT, PORT (loopback) or unix:/path/to/socket, not {s:?}")
        })
    }
}

fn service(
    daemon: std::result::Result<Arc<Daemon>, String>,
    token: Option<String>,
) -> (LspService<Backend>, tower_lsp_server::ClientSocket) {
    LspService::build(move |client| Backend::new(client, daemon, token))
        .custom_method("pema/rewrite", Backend::pema_rewrite)
        .custom_method("pema/status", Backend::pema_status)
        .custom_method("pema/train", Backend::pema_train)
        .custom_method("pema/rebuild", Backend::pema_rebuild)
        .custom_method("pema/openWorkspace", Backend::pema_open_workspace)
        .custom_method("pema/closeWorkspace", Backend::pema_close_workspace)
        .finish()
}

/// `pema lsp`: one editor over stdin/stdout. A daemon that cannot start (no model) still
/// answers, so the editor can show why.
pub async fn serve_stdio(daemon: std::result::Result<Arc<Daemon>, String>) {
    let (svc, socket) = service(daemon, None);
    let (r, w) = framing::guard(tokio::io::stdin(), tokio::io::stdout());
    Server::new(r, w, socket).serve(svc).await;
}

/// `pema serve`: any number of clients, one daemon. A TCP address other than loopback needs
/// `allow_remote` and a token.
/// Refuses a non-loopback TCP address without `allow_remote` and a token (checked before the
/// model loads, so the mistake is reported at once).
pub fn check_listen(listen: &Listen, allow_remote: bool, token: Option<&str>) -> Result<()> {
    if let Listen::Tcp(addr) = listen {
        if !addr.ip().is_loopback() {
            if !allow_remote {
                bail!(
                    "{addr} is not a loopback address: pass --allow-remote (and a --token) to \
                     listen beyond this machine"
                );
            }
            if token.is_none_or(str::is_empty) {
                bail!("listening on {addr} needs a --token (or PEMA_TOKEN) that clients present");
            }
        }
    }
    Ok(())
}

pub async fn serve_listen(
    daemon: Arc<Daemon>,
    listen: Listen,
    allow_remote: bool,
    token: Option<String>,
    on_ready: impl FnOnce(String),
) -> Result<()> {
    let listen_copy = listen.clone();
    match listen {
        Listen::Tcp(addr) => {
            check_listen(&listen_copy, allow_remote, token.as_deref())?;
            let listener = tokio::net::TcpListener::bind(addr)
                .await
                .with_context(|| format!("cannot listen on {addr}"))?;
            on_ready(format!("tcp {}", listener.local_addr()?));
            loop {
                let (stream, peer) = listener.accept().await?;
                tracing::info!("client {peer} connected");
                let _ = stream.set_nodelay(true);
                let (r, w) = stream.into_split();
                let (svc, socket) = service(Ok(daemon.clone()), token.clone());
                tokio::spawn(async move {
                    let (r, w) = framing::guard(r, w);
                    Server::new(r, w, socket).serve(svc).await;
                    tracing::info!("client {peer} gone");
                });
            }
        }
        Listen::Unix(path) => {
            if path.exists() {
                // A socket left by a daemon that died; a live one would answer.
                if std::os::unix::net::UnixStream::connect(&path).is_ok() {
                    bail!("{} is in use by a running daemon", path.display());
                }
                std::fs::remove_file(&path).with_context(|| {
                    format!("cannot remove the stale socket {}", path.display())
                })?;
            }
            let listener = tokio::net::UnixListener::bind(&path)
                .with_context(|| format!("cannot listen on {}", path.display()))?;
            on_ready(format!("unix {}", path.display()));
            loop {
                let (stream, _) = listener.accept().await?;
                let (r, w) = stream.into_split();
                let (svc, socket) = service(Ok(daemon.clone()), token.clone());
                tokio::spawn(async move {
                    let (r, w) = framing::guard(r, w);
                    Server::new(r, w, socket).serve(svc).await;
                });
            }
        }
    }
}
