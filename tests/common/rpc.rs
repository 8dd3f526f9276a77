//! A small JSON-RPC client with LSP framing, for driving the real daemon over stdio or a socket.
//! Requests the server sends (progress tokens, workspace edits) are answered at once by the
//! reader thread, as an editor would.

use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

pub struct Rpc {
    writer: Arc<Mutex<Box<dyn Write + Send>>>,
    inbox: Receiver<Value>,
    next_id: i64,
    /// The daemon's token, sent by [`Rpc::initialize`] unless the options name one.
    pub token: Option<String>,
    /// Every message received, in order.
    pub seen: Vec<Value>,
}

fn read_frame(r: &mut impl BufRead) -> Option<Value> {
    let mut len = None;
    loop {
        let mut line = String::new();
        if r.read_line(&mut line).ok()? == 0 {
            return None;
        }
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        if let Some(v) = line.strip_prefix("Content-Length: ") {
            len = v.parse::<usize>().ok();
        }
    }
    let mut body = vec![0; len?];
    r.read_exact(&mut body).ok()?;
    serde_json::from_slice(&body).ok()
}

fn frame(v: &Value) -> Vec<u8> {
    let body = serde_json::to_vec(v).unwrap();
    let mut out = format!("Content-Length: {}\r\n\r\n", body.len()).into_bytes();
    out.extend(body);
    out
}

impl Rpc {
    pub fn new(read: impl Read + Send + 'static, write: impl Write + Send + 'static) -> Self {
        let writer: Arc<Mutex<Box<dyn Write + Send>>> = Arc::new(Mutex::new(Box::new(write)));
        let (tx, inbox) = std::sync::mpsc::channel();
        let w = writer.clone();
        std::thread::spawn(move || {
            let mut r = BufReader::new(read);
            while let Some(msg) = read_frame(&mut r) {
                if let (Some(id), Some(method)) = (msg.get("id"), msg["method"].as_str()) {
                    let result = match method {
                        "workspace/applyEdit" => json!({"applied": true}),
                        _ => Value::Null,
                    };
                    let reply = json!({"jsonrpc": "2.0", "id": id, "result": result});
                    let mut w = w.lock().unwrap();
                    let _ = w.write_all(&frame(&reply));
                    let _ = w.flush();
                }
                if tx.send(msg).is_err() {
                    return;
                }
            }
        });
        Self {
            writer,
            inbox,
            next_id: 1,
            token: None,
            seen: vec![],
        }
    }

    pub fn send_raw(&self, bytes: &[u8]) {
        let mut w = self.writer.lock().unwrap();
        w.write_all(bytes).unwrap();
        w.flush().unwrap();
    }

    pub fn notify(&self, method: &str, params: Value) {
        self.send_raw(&frame(
            &json!({"jsonrpc": "2.0", "method": method, "params": params}),
        ));
    }

    /// Sends a request and returns its id without waiting.
    pub fn request(&mut self, method: &str, params: Value) -> i64 {
        let id = self.next_id;
        self.next_id += 1;
        self.send_raw(&frame(
            &json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params}),
        ));
        id
    }

    /// Sends a request and waits for its response: Ok(result) or Err(error object).
    pub fn call(&mut self, method: &str, params: Value) -> Result<Value, Value> {
        let id = self.request(method, params);
        self.response(id, Duration::from_secs(600))
    }

    fn pull(&mut self, until: Instant) -> bool {
        let left = until.saturating_duration_since(Instant::now());
        match self.inbox.recv_timeout(left) {
            Ok(m) => {
                self.seen.push(m);
                true
            }
            Err(RecvTimeoutError::Timeout) => false,
            Err(RecvTimeoutError::Disconnected) => panic!("the daemon closed the connection"),
        }
    }

    pub fn response(&mut self, id: i64, timeout: Duration) -> Result<Value, Value> {
        let until = Instant::now() + timeout;
        let mut checked = 0;
        loop {
            for m in &self.seen[checked..] {
                if m.get("method").is_none() && m["id"] == json!(id) {
                    return match m.get("error") {
                        Some(e) => Err(e.clone()),
                        None => Ok(m["result"].clone()),
                    };
                }
            }
            checked = self.seen.len();
            assert!(
                self.pull(until),
                "no response to request {id} within {timeout:?}"
            );
        }
    }

    /// Waits for a message (received from now on, or already seen after index `from`) that
    /// satisfies `pred`; returns its index in `seen`.
    pub fn wait_for(
        &mut self,
        from: usize,
        timeout: Duration,
        mut pred: impl FnMut(&Value) -> bool,
    ) -> usize {
        let until = Instant::now() + timeout;
        let mut i = from;
        loop {
            while i < self.seen.len() {
                if pred(&self.seen[i]) {
                    return i;
                }
                i += 1;
            }
            assert!(
                self.pull(until),
                "nothing expected arrived within {timeout:?}"
            );
        }
    }

    /// Polls `pema/status` until `pred` holds for the workspace's status (the first one).
    pub fn wait_status(
        &mut self,
        timeout: Duration,
        mut pred: impl FnMut(&Value) -> bool,
    ) -> Value {
        let until = Instant::now() + timeout;
        loop {
            let s = self.call("pema/status", json!({})).expect("pema/status");
            let ws = s["workspaces"][0].clone();
            if pred(&ws) {
                return ws;
            }
            assert!(
                Instant::now() < until,
                "status never reached the expected state within {timeout:?}; last: {ws:#}"
            );
            std::thread::sleep(Duration::from_millis(300));
        }
    }

    /// Initializes as an editor would, with the given workspace folders.
    pub fn initialize(
        &mut self,
        folders: &[&std::path::Path],
        options: Value,
    ) -> Result<Value, Value> {
        let folders: Vec<Value> = folders
            .iter()
            .map(|p| json!({"uri": file_uri(p), "name": p.file_name().unwrap().to_string_lossy()}))
            .collect();
        let mut options = options;
        if let (Some(t), Some(o)) = (&self.token, options.as_object_mut()) {
            o.entry("token").or_insert(json!(t));
        }
        let r = self.call(
            "initialize",
            json!({
                "processId": null,
                "rootUri": null,
                "capabilities": {"window": {"workDoneProgress": true}},
                "workspaceFolders": folders,
                "initializationOptions": options,
            }),
        );
        if r.is_ok() {
            self.notify("initialized", json!({}));
        }
        r
    }
}

pub fn file_uri(p: &std::path::Path) -> String {
    format!("file://{}", p.display())
}

pub fn pema_command(cache: &std::path::Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_pema"));
    // Every daemon shares one 8-bit copy of the model, not one per cache folder.
    let copies = std::env::var_os("PEMA_MODEL_CACHE")
        .unwrap_or_else(|| concat!(env!("CARGO_TARGET_TMPDIR"), "/pema-models").into());
    c.env("XDG_CACHE_HOME", cache)
        .env("PEMA_MODEL", super::model_path())
        .env("PEMA_MODEL_CACHE", copies)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    c
}

/// `pema lsp` with its state under `cache`.
pub fn lsp(cache: &std::path::Path) -> (Child, Rpc) {
    let mut child = pema_command(cache)
        .arg("lsp")
        .spawn()
        .expect("starting pema lsp");
    let rpc = Rpc::new(child.stdout.take().unwrap(), child.stdin.take().unwrap());
    (child, rpc)
}

/// The tokens of the daemons `serve` started, by address.
static TOKENS: Mutex<Vec<(String, String)>> = Mutex::new(Vec::new());

/// The daemon's own token file under `cache`.
pub fn token_file(cache: &std::path::Path) -> std::path::PathBuf {
    cache.join("pema").join("serve.token")
}

/// `pema serve` on a free loopback port; returns the process and the address. Clients made by
/// [`connect`] present its token.
pub fn serve(cache: &std::path::Path, extra: &[&str]) -> (Child, String) {
    let mut child = pema_command(cache)
        .args(["serve", "--listen", "127.0.0.1:0"])
        .args(extra)
        .stderr(Stdio::piped())
        .spawn()
        .expect("starting pema serve");
    let mut err = BufReader::new(child.stderr.take().unwrap());
    let addr = loop {
        let mut line = String::new();
        if err.read_line(&mut line).unwrap() == 0 {
            panic!("pema serve exited before listening");
        }
        eprint!("{line}");
        if let Some(a) = line.trim().strip_prefix("pema: listening on tcp ") {
            break a.to_string();
        }
    };
    let file = extra
        .iter()
        .position(|a| *a == "--token-file")
        .map(|i| std::path::PathBuf::from(extra[i + 1]))
        .unwrap_or_else(|| token_file(cache));
    let token = std::fs::read_to_string(&file)
        .unwrap_or_else(|e| panic!("no token in {}: {e}", file.display()))
        .trim()
        .to_string();
    TOKENS.lock().unwrap().push((addr.clone(), token));
    // Keep draining stderr so the daemon never blocks on a full pipe.
    std::thread::spawn(move || {
        let mut line = String::new();
        while err.read_line(&mut line).map(|n| n > 0).unwrap_or(false) {
            eprint!("{line}");
            line.clear();
        }
    });
    (child, addr)
}

/// A client of the daemon at `addr` that presents its token when it initializes.
pub fn connect(addr: &str) -> Rpc {
    let s = std::net::TcpStream::connect(addr).expect("connecting to pema serve");
    let mut c = Rpc::new(s.try_clone().unwrap(), s);
    c.token = TOKENS
        .lock()
        .unwrap()
        .iter()
        .rev()
        .find(|(a, _)| a == addr)
        .map(|(_, t)| t.clone());
    c
}
