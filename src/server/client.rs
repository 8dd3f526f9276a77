//! A small blocking client of a running `pema serve`, for `pema rewrite --workspace DIR`: the
//! pipe any editor can send a selection through. It finds the daemon (an address given, else
//! the one the last `pema serve` wrote to [`addr_file`], else the default `127.0.0.1:7858`),
//! authenticates with the daemon's token, opens the workspace and streams the rewrite.

use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{anyhow, bail, Context as _, Result};
use serde_json::{json, Value};

use super::{auth, Listen};

/// Where `pema serve` writes the addresses it listens on, one `KEY VALUE` per line (`rpc
/// tcp:127.0.0.1:7858` or `rpc unix:/path`, `http 127.0.0.1:8080`, `pid N`), so that clients
/// on this machine find the last daemon started.
pub fn addr_file() -> PathBuf {
    crate::dirs::pema_cache().join("serve.addr")
}

/// The default address of `pema serve`.
pub const DEFAULT_ADDR: &str = "127.0.0.1:7858";

/// Writes [`addr_file`] (atomically; 0600).
pub(crate) fn write_addr_file(rpc: &str, http: Option<&str>) {
    let mut s = format!("rpc {rpc}\npid {}\n", std::process::id());
    if let Some(h) = http {
        s.push_str(&format!("http {h}\n"));
    }
    if let Err(e) = crate::fsutil::write_atomic(&addr_file(), s.as_bytes()) {
        tracing::warn!("cannot write {}: {e:#}", addr_file().display());
    }
}

/// The value of `key` in [`addr_file`], if the file is there.
pub fn addr_file_entry(key: &str) -> Option<String> {
    let s = std::fs::read_to_string(addr_file()).ok()?;
    s.lines()
        .filter_map(|l| l.split_once(' '))
        .find(|(k, _)| *k == key)
        .map(|(_, v)| v.trim().to_string())
}

/// How to reach the daemon and what to send it.
#[derive(Clone, Debug, Default)]
pub struct PipeRewrite {
    /// The selection, as the editor sent it.
    pub text: String,
    /// A folder whose style to use: the daemon opens it as a workspace (or shares it, open).
    pub workspace: PathBuf,
    /// `HOST:PORT`, `PORT` or `unix:/path`; else [`addr_file`], else [`DEFAULT_ADDR`].
    pub daemon: Option<String>,
    /// Else `$PEMA_TOKEN` (in `token`), else the daemon's own token file.
    pub token_file: Option<PathBuf>,
    /// The token itself (the command line takes it from `$PEMA_TOKEN`); used when `token_file`
    /// is None.
    pub token: Option<String>,
    /// `gu`, `fixed` or `plain`; None: the adapter's own choice.
    pub mode: Option<String>,
    /// λ_max of Gradual Unrolling, 0 to 1; None: the workspace's or the adapter's.
    pub lambda_max: Option<f32>,
    /// λ of the fixed mode, 0 to 1; None: the adapter's.
    pub lambda_fixed: Option<f32>,
    /// Sampling temperature; None: the daemon's default (0, greedy).
    pub temperature: Option<f32>,
    /// Nucleus sampling's probability mass; None: the daemon's default (1, all tokens).
    pub top_p: Option<f32>,
    /// At most this many tokens per line; None: the daemon's default (from the line's length).
    pub max_tokens: Option<usize>,
}

enum Stream {
    Tcp(std::net::TcpStream),
    Unix(std::os::unix::net::UnixStream),
}

impl Stream {
    fn try_clone(&self) -> std::io::Result<Self> {
        Ok(match self {
            Self::Tcp(s) => Self::Tcp(s.try_clone()?),
            Self::Unix(s) => Self::Unix(s.try_clone()?),
        })
    }
}

impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        match self {
            Self::Tcp(s) => s.read(buf),
            Self::Unix(s) => s.read(buf),
        }
    }
}

impl Write for Stream {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match self {
            Self::Tcp(s) => s.write(buf),
            Self::Unix(s) => s.write(buf),
        }
    }
    fn flush(&mut self) -> std::io::Result<()> {
        match self {
            Self::Tcp(s) => s.flush(),
            Self::Unix(s) => s.flush(),
        }
    }
}

/// A JSON-RPC connection to `pema serve`, initialized.
pub struct Client {
    r: BufReader<Stream>,
    w: Stream,
    next_id: i64,
}

/// How to start a daemon, for messages about a missing one.
fn how_to_start(workspace: Option<&Path>) -> String {
    let ws = workspace.map_or("DIR".into(), |p| p.display().to_string());
    format!(
        "start one with `pema serve --workspace {ws} &` (it keeps running and learns the \
         workspace's style in the background), or point --daemon / PEMA_DAEMON at a running one"
    )
}

impl Client {
    /// Connects to the daemon at `addr` (see [`PipeRewrite::daemon`]) and initializes with the
    /// token.
    pub fn connect(
        addr: Option<&str>,
        token: Option<String>,
        workspace: Option<&Path>,
    ) -> Result<Self> {
        let (addr, from) = match addr {
            Some(a) => (a.to_string(), "given"),
            None => match addr_file_entry("rpc") {
                Some(a) => (a, "from the address file"),
                None => (DEFAULT_ADDR.to_string(), "the default"),
            },
        };
        let listen: Listen = addr.parse()?;
        let stream = match &listen {
            Listen::Tcp(a) => {
                std::net::TcpStream::connect_timeout(a, Duration::from_secs(5)).map(|s| {
                    let _ = s.set_nodelay(true);
                    Stream::Tcp(s)
                })
            }
            Listen::Unix(p) => std::os::unix::net::UnixStream::connect(p).map(Stream::Unix),
        }
        .map_err(|e| {
            anyhow!(
                "no pema daemon answers at {addr} ({from}: {e}); {}",
                how_to_start(workspace)
            )
        })?;
        let w = stream.try_clone()?;
        let mut c = Self {
            r: BufReader::new(stream),
            w,
            next_id: 1,
        };
        let mut options = json!({});
        if let Some(t) = token {
            options["token"] = json!(t);
        }
        c.call(
            "initialize",
            json!({"processId": std::process::id(), "rootUri": null, "capabilities": {},
                   "initializationOptions": options}),
            |_| {},
        )
        .with_context(|| format!("the daemon at {addr} refused this client"))?;
        c.send(&json!({"jsonrpc": "2.0", "method": "initialized", "params": {}}))?;
        Ok(c)
    }

    fn send(&mut self, v: &Value) -> Result<()> {
        let body = serde_json::to_vec(v)?;
        self.w
            .write_all(format!("Content-Length: {}\r\n\r\n", body.len()).as_bytes())?;
        self.w.write_all(&body)?;
        self.w.flush()?;
        Ok(())
    }

    fn read(&mut self) -> Result<Value> {
        let mut len = None;
        loop {
            let mut line = String::new();
            if self.r.read_line(&mut line)? == 0 {
                bail!("the daemon closed the connection");
            }
            let line = line.trim_end();
            if line.is_empty() {
                break;
            }
            if let Some(v) = line.strip_prefix("Content-Length:") {
                len = v.trim().parse::<usize>().ok();
            }
        }
        let mut body = vec![0; len.context("a frame without Content-Length from the daemon")?];
        self.r.read_exact(&mut body)?;
        Ok(serde_json::from_slice(&body)?)
    }

    /// Sends a request and waits for its answer; `$/progress` values for this request's
    /// partial-result token go to `on_partial`.
    fn call(
        &mut self,
        method: &str,
        params: Value,
        mut on_partial: impl FnMut(&Value),
    ) -> Result<Value> {
        let id = self.next_id;
        self.next_id += 1;
        let token = format!("pipe-{id}");
        let mut params = params;
        if method == "pema/rewrite" {
            params["partialResultToken"] = json!(token);
        }
        self.send(&json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params}))?;
        loop {
            let m = self.read()?;
            match (m.get("id"), m.get("method").and_then(Value::as_str)) {
                (Some(rid), Some(_)) => {
                    // A request from the daemon (e.g. progress tokens): acknowledged.
                    let rid = rid.clone();
                    self.send(&json!({"jsonrpc": "2.0", "id": rid, "result": null}))?;
                }
                (None, Some("$/progress")) if m["params"]["token"] == json!(token) => {
                    on_partial(&m["params"]["value"])
                }
                (Some(rid), None) if *rid == json!(id) => {
                    if let Some(e) = m.get("error") {
                        bail!("{}", e["message"].as_str().unwrap_or("the daemon refused"));
                    }
                    return Ok(m["result"].clone());
                }
                _ => {}
            }
        }
    }

    /// Opens `path` as a workspace on the daemon; its canonical root.
    pub fn open_workspace(&mut self, path: &Path) -> Result<String> {
        let r = self.call("pema/openWorkspace", json!({"path": path}), |_| {})?;
        Ok(r["root"].as_str().unwrap_or_default().to_string())
    }
}

/// The token to present: the one given, else the daemon's own token file when it exists.
fn token_for(req: &PipeRewrite) -> Result<Option<String>> {
    if let Some(p) = &req.token_file {
        return auth::read_token_file(p).map(Some);
    }
    if let Some(t) = &req.token {
        return Ok(Some(t.clone()));
    }
    let own = auth::token_file();
    Ok(auth::read_token_file(&own).ok())
}

/// Rewrites `req.text` on the running daemon in the workspace's style, streaming the rewritten
/// text to `on_text` line by line as lines complete (a line may still be made again until
/// then: docs/protocol.md); the whole rewrite is returned. Line breaks (`\n` or `\r\n`),
/// blank lines, each line's indentation and the trailing newline are kept as they were.
pub fn rewrite_via_daemon(req: &PipeRewrite, mut on_text: impl FnMut(&str)) -> Result<String> {
    let workspace = req
        .workspace
        .canonicalize()
        .with_context(|| format!("the workspace {} is not a folder", req.workspace.display()))?;
    if !workspace.is_dir() {
        bail!("the workspace {} is not a folder", workspace.display());
    }
    let crlf = req.text.contains("\r\n");
    let text = if crlf {
        req.text.replace("\r\n", "\n")
    } else {
        req.text.clone()
    };
    if text.trim().is_empty() {
        // Nothing to rewrite: the selection goes back as it came.
        on_text(&req.text);
        return Ok(req.text.clone());
    }
    let mut c = Client::connect(req.daemon.as_deref(), token_for(req)?, Some(&workspace))?;
    let root = c.open_workspace(&workspace)?;
    let mut options = json!({});
    for (k, v) in [
        ("lambdaMax", req.lambda_max),
        ("lambdaFixed", req.lambda_fixed),
        ("temperature", req.temperature),
        ("topP", req.top_p),
    ] {
        if let Some(v) = v {
            options[k] = json!(v);
        }
    }
    if let Some(n) = req.max_tokens {
        options["maxTokens"] = json!(n);
    }
    let mut params = json!({"text": text, "workspace": root, "options": options});
    if let Some(m) = &req.mode {
        params["mode"] = json!(m);
    }
    let mut sent = 0;
    let r = c.call("pema/rewrite", params, |v| {
        let Some(so_far) = v["text"].as_str() else {
            return;
        };
        // Only whole lines: the line being written may be taken back.
        let done = so_far.rfind('\n').map_or(0, |i| i + 1);
        if done > sent {
            let d = &so_far[sent..done];
            sent = done;
            if crlf {
                on_text(&d.replace('\n', "\r\n"));
            } else {
                on_text(d);
            }
        }
    })?;
    let out = r["text"].as_str().unwrap_or_default();
    Ok(if crlf {
        out.replace('\n', "\r\n")
    } else {
        out.to_string()
    })
}
