//! The protocol: LSP over stdio for editors, the same JSON-RPC over TCP or a unix socket for
//! other tools. The only module that knows LSP or JSON-RPC.

mod auth;
mod backend;
pub mod client;
mod documents;
mod framing;
mod http;
pub mod mcp;
mod methods;
mod progress;
mod protocol;
mod to_proto;

use std::net::SocketAddr;
use std::os::unix::fs::DirBuilderExt as _;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{bail, Context as _, Result};
use tower_lsp_server::{LspService, Server};

use crate::daemon::Daemon;
use backend::Backend;

/// Where `pema serve` listens.
#[derive(Clone, Debug)]
pub enum Listen {
    /// A TCP address (loopback by default); every client authenticates with the token.
    Tcp(SocketAddr),
    /// A unix socket at this path (made 0600; its clients authenticate only when the daemon
    /// was given a token).
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

/// Connections `pema serve` holds at once; more are answered with an error and closed.
pub const MAX_CONNECTIONS: usize = 64;

/// What one connection's backend shares with its transport.
#[derive(Clone)]
pub(crate) struct Conn {
    /// True once the client is gone (or is being disconnected): its rewrites stop.
    pub closed: tokio::sync::watch::Sender<bool>,
}

fn service(
    daemon: std::result::Result<Arc<Daemon>, String>,
    token: Option<String>,
    conn: Conn,
) -> (LspService<Backend>, tower_lsp_server::ClientSocket) {
    LspService::build(move |client| Backend::new(client, daemon, token, conn))
        .custom_method("pema/rewrite", Backend::pema_rewrite)
        .custom_method("pema/status", Backend::pema_status)
        .custom_method("pema/files", Backend::pema_files)
        .custom_method("pema/examples", Backend::pema_examples)
        .custom_method("pema/train", Backend::pema_train)
        .custom_method("pema/rebuild", Backend::pema_rebuild)
        .custom_method("pema/openWorkspace", Backend::pema_open_workspace)
        .custom_method("pema/closeWorkspace", Backend::pema_close_workspace)
        .finish()
}

/// Serves one connection until it ends, or until it is closed (input ended, limits, failed
/// authentication); answers already on their way get a moment to be written.
async fn serve_connection<R, W>(
    r: R,
    w: W,
    daemon: std::result::Result<Arc<Daemon>, String>,
    token: Option<String>,
    limits: framing::Limits,
) where
    R: tokio::io::AsyncRead + Unpin + Send + 'static,
    W: tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (closed, mut closed_rx) = tokio::sync::watch::channel(false);
    let (svc, socket) = service(
        daemon,
        token,
        Conn {
            closed: closed.clone(),
        },
    );
    let (r, w) = framing::guard(r, w, limits, closed);
    tokio::select! {
        _ = Server::new(r, w, socket).serve(svc) => {}
        _ = async {
            let _ = closed_rx.wait_for(|c| *c).await;
            tokio::time::sleep(std::time::Duration::from_secs(2)).await;
        } => {}
    }
}

/// `pema lsp`: one editor over stdin/stdout. A daemon that cannot start (no model) still
/// answers, so the editor can show why.
pub async fn serve_stdio(daemon: std::result::Result<Arc<Daemon>, String>) {
    serve_connection(
        tokio::io::stdin(),
        tokio::io::stdout(),
        daemon,
        None,
        framing::Limits::EDITOR,
    )
    .await;
}

/// Where `pema serve`'s TCP token comes from (see [`auth`]).
#[derive(Clone, Debug, Default)]
pub enum TokenSource {
    /// `--token-file PATH`.
    File(PathBuf),
    /// `$PEMA_TOKEN` or `--token`.
    Given(String),
    /// The daemon's own token file, made on first use.
    #[default]
    Own,
}

/// Refuses a non-loopback TCP address without `allow_remote` and a token of the user's own
/// (checked before the model loads, so the mistake is reported at once).
pub fn check_listen(listen: &Listen, allow_remote: bool, token: &TokenSource) -> Result<()> {
    if let Listen::Tcp(addr) = listen {
        if !addr.ip().is_loopback() {
            if !allow_remote {
                bail!(
                    "{addr} is not a loopback address: pass --allow-remote (and a --token-file) \
                     to listen beyond this machine"
                );
            }
            if matches!(token, TokenSource::Own) {
                bail!(
                    "listening on {addr} needs a token of your own that remote clients present: \
                     --token-file PATH (or PEMA_TOKEN)"
                );
            }
        }
    }
    match token {
        TokenSource::File(p) => auth::read_token_file(p).map(drop),
        TokenSource::Given(t) => auth::check_token(t).map(drop),
        TokenSource::Own => Ok(()),
    }
}

/// Counts open connections; one fewer when dropped.
struct Slot(Arc<std::sync::atomic::AtomicUsize>);

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
    }
}

fn take_slot(open: &Arc<std::sync::atomic::AtomicUsize>) -> Option<Slot> {
    let n = open.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    let slot = Slot(open.clone());
    (n < MAX_CONNECTIONS).then_some(slot)
}

/// Answers a connection over the cap with an error, then closes it.
async fn refuse(mut w: impl tokio::io::AsyncWrite + Unpin) {
    use tokio::io::AsyncWriteExt as _;
    let msg = format!(
        "pema serve already has {MAX_CONNECTIONS} connections open; close one and try again"
    );
    let _ = tokio::time::timeout(std::time::Duration::from_secs(5), async {
        let _ = w.write_all(&framing::refusal(&msg)).await;
        let _ = w.shutdown().await;
    })
    .await;
}

/// A failed accept (too many open files, a connection reset before it was taken) is logged and
/// retried after a pause instead of ending the daemon.
async fn accept_failed(e: std::io::Error) {
    tracing::warn!("cannot accept a connection: {e}; retrying");
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
}

/// `pema serve`: any number of clients (up to [`MAX_CONNECTIONS`] at once), one daemon. Every TCP
/// client authenticates with the token; a unix socket is 0600 in a 0700 folder, and its clients
/// authenticate only when the daemon was given a token.
///
/// With `http`, the OpenAI-compatible endpoint (see [`http`]) listens there too, on the same
/// runtime, with the same token (the daemon's own unless one is given). Once everything is
/// bound, the addresses go to [`client::addr_file`] so that local clients find this daemon.
pub async fn serve_listen(
    daemon: Arc<Daemon>,
    listen: Listen,
    http: Option<SocketAddr>,
    allow_remote: bool,
    token: TokenSource,
    on_ready: impl FnOnce(String),
) -> Result<()> {
    check_listen(&listen, allow_remote, &token)?;
    if let Some(h) = http {
        check_listen(&Listen::Tcp(h), allow_remote, &token)?;
    }
    let needs_token = matches!(listen, Listen::Tcp(_)) || http.is_some();
    let tcp_token = match &token {
        TokenSource::File(p) => Some(auth::read_token_file(p)?),
        TokenSource::Given(t) => Some(t.clone()),
        TokenSource::Own if needs_token => {
            let (t, path) = auth::own_token()?;
            eprintln!(
                "pema: clients authenticate with the token in {}",
                path.display()
            );
            Some(t)
        }
        TokenSource::Own => None,
    };
    let http_at = match http {
        Some(addr) => {
            let l = tokio::net::TcpListener::bind(addr)
                .await
                .with_context(|| format!("cannot listen for HTTP on {addr}"))?;
            let at = l.local_addr()?;
            let (d, t) = (daemon.clone(), tcp_token.clone().unwrap_or_default());
            tokio::spawn(async move {
                if let Err(e) = http::serve(l, d, t).await {
                    tracing::error!("the HTTP endpoint stopped: {e}");
                }
            });
            eprintln!("pema: OpenAI-compatible HTTP on http://{at}/v1");
            Some(at.to_string())
        }
        None => None,
    };
    let open = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    match listen {
        Listen::Tcp(addr) => {
            let token = tcp_token.unwrap_or_default();
            let listener = tokio::net::TcpListener::bind(addr)
                .await
                .with_context(|| format!("cannot listen on {addr}"))?;
            let at = listener.local_addr()?;
            client::write_addr_file(&at.to_string(), http_at.as_deref());
            on_ready(format!("tcp {at}"));
            loop {
                let (stream, peer) = match listener.accept().await {
                    Ok(c) => c,
                    Err(e) => {
                        accept_failed(e).await;
                        continue;
                    }
                };
                let _ = stream.set_nodelay(true);
                let (r, w) = stream.into_split();
                let Some(slot) = take_slot(&open) else {
                    tracing::warn!("client {peer} refused: {MAX_CONNECTIONS} connections open");
                    tokio::spawn(refuse(w));
                    continue;
                };
                tracing::info!("client {peer} connected");
                let (daemon, token) = (daemon.clone(), token.clone());
                tokio::spawn(async move {
                    serve_connection(r, w, Ok(daemon), Some(token), framing::Limits::NETWORK).await;
                    drop(slot);
                    tracing::info!("client {peer} gone");
                });
            }
        }
        Listen::Unix(path) => {
            // The socket's clients authenticate only when the daemon was given a token.
            let token = match token {
                TokenSource::Own => None,
                _ => tcp_token,
            };
            let listener = bind_unix(&path)?;
            let abs = std::path::absolute(&path).unwrap_or(path.clone());
            client::write_addr_file(&format!("unix:{}", abs.display()), http_at.as_deref());
            on_ready(format!("unix {}", path.display()));
            loop {
                let (stream, _) = match listener.accept().await {
                    Ok(c) => c,
                    Err(e) => {
                        accept_failed(e).await;
                        continue;
                    }
                };
                let (r, w) = stream.into_split();
                let Some(slot) = take_slot(&open) else {
                    tokio::spawn(refuse(w));
                    continue;
                };
                let (daemon, token) = (daemon.clone(), token.clone());
                tokio::spawn(async move {
                    serve_connection(r, w, Ok(daemon), token, framing::Limits::NETWORK).await;
                    drop(slot);
                });
            }
        }
    }
}

/// Binds a unix socket at `path` that only this user can connect to: made 0600 inside a fresh
/// 0700 folder beside `path`, then renamed into place (so there is no moment when it is open to
/// others). The folder holding `path` is created 0700 when missing. A stale socket left by a dead
/// daemon is replaced; anything else at `path` is left alone.
fn bind_unix(path: &std::path::Path) -> Result<tokio::net::UnixListener> {
    use std::os::unix::fs::{FileTypeExt as _, PermissionsExt as _};
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(std::path::Path::new("."));
    crate::fsutil::create_private_dir(dir)
        .with_context(|| format!("cannot create {}", dir.display()))?;
    if let Ok(meta) = std::fs::symlink_metadata(path) {
        if !meta.file_type().is_socket() {
            bail!(
                "{} exists and is not a socket; pema will not replace it",
                path.display()
            );
        }
        // A socket left by a daemon that died; a live one would answer.
        if std::os::unix::net::UnixStream::connect(path).is_ok() {
            bail!("{} is in use by a running daemon", path.display());
        }
        std::fs::remove_file(path)
            .with_context(|| format!("cannot remove the stale socket {}", path.display()))?;
    }
    if let Ok(meta) = std::fs::metadata(dir) {
        if meta.permissions().mode() & 0o077 != 0 {
            tracing::warn!(
                "{} is open to other users; the socket itself is 0600",
                dir.display()
            );
        }
    }
    let private = dir.join(format!(".pema-socket-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&private);
    std::fs::DirBuilder::new()
        .mode(0o700)
        .create(&private)
        .with_context(|| format!("cannot create {}", private.display()))?;
    let inner = private.join("s");
    let bound = (|| -> Result<tokio::net::UnixListener> {
        let l = tokio::net::UnixListener::bind(&inner)
            .with_context(|| format!("cannot listen on {}", path.display()))?;
        std::fs::set_permissions(&inner, std::fs::Permissions::from_mode(0o600))?;
        std::fs::rename(&inner, path)
            .with_context(|| format!("cannot listen on {}", path.display()))?;
        Ok(l)
    })();
    let _ = std::fs::remove_file(&inner);
    let _ = std::fs::remove_dir(&private);
    bound
}
