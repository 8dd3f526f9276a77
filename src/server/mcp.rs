//! `pema mcp`: a Model Context Protocol server over stdio (newline-delimited JSON-RPC 2.0), so
//! that coding agents can restyle what they write. Tools: `rewrite` (text, workspace,
//! strength, mode), `status`, `examples` (the worked examples a workspace's prompt carries).
//! Like `pema lsp`, it runs its own daemon in the process; workspaces are opened by
//! `--workspace` or by the first tool call that names one, and learn in the background.
//!
//! Hand-rolled rather than built on an MCP crate: the part of MCP a tools-only stdio server
//! needs is initialize, ping, tools/list, tools/call and notifications/cancelled, a few dozen
//! lines over serde_json, which pema already has; see ARCHITECTURE.md.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt as _, AsyncWriteExt as _};

use crate::daemon::{Daemon, RequestError, RewriteRequest};
use crate::decode::Mode;

/// MCP versions this server speaks; the client's is echoed when it is one of them.
const VERSIONS: &[&str] = &["2025-06-18", "2025-03-26", "2024-11-05"];

/// The tools, with their input schemas.
pub fn tools() -> Value {
    json!([
        {
            "name": "rewrite",
            "title": "Rewrite in a workspace's style",
            "description": "Rewrites text in the writing style pema learned from a folder of \
                documents (a workspace). Line breaks, blank lines and indentation are kept; each \
                line is rewritten on its own. Fails with a clear message while the workspace's \
                style is still being learned (see the status tool).",
            "inputSchema": {
                "type": "object",
                "properties": {
                    "text": {"type": "string", "description": "The text to rewrite (at most 20,000 characters, 200 lines)."},
                    "workspace": {"type": "string", "description": "A folder whose style to use (opened when needed). Optional when exactly one workspace is open."},
                    "strength": {"type": "number", "minimum": 0, "maximum": 1, "description": "How strongly the learned style weighs (λ of the fixed mode; 0 is the plain model). Default: the workspace's own choice."},
                    "mode": {"type": "string", "enum": ["gu", "fixed", "plain"], "description": "gu (Gradual Unrolling), fixed, or plain (the model alone). Default: the workspace's own choice."}
                },
                "required": ["text"],
                "additionalProperties": false
            }
        },
        {
            "name": "status",
            "title": "pema's state",
            "description": "What pema knows: open workspaces, how far learning each one's style has come (files, units, memory entries, adapter state), and the work queue.",
            "inputSchema": {
                "type": "object",
                "properties": {
                    "workspace": {"type": "string", "description": "Only this workspace (opened when needed)."}
                },
                "additionalProperties": false
            }
        },
        {
            "name": "examples",
            "title": "What a workspace taught",
            "description": "The worked examples (plain source → the workspace's own sentence) that pema puts in front of every rewrite in this workspace's style: a sample of what it learned from the files.",
            "inputSchema": {
                "type": "object",
                "properties": {
                    "workspace": {"type": "string", "description": "A folder (opened when needed). Optional when exactly one workspace is open."}
                },
                "additionalProperties": false
            }
        }
    ])
}

struct Mcp {
    daemon: std::result::Result<Arc<Daemon>, String>,
    /// Cancellation flags of calls in flight, by request id.
    running: Mutex<HashMap<String, Arc<AtomicBool>>>,
}

/// A tool's failure: reported as a result with `isError` (MCP's way for tool errors).
struct ToolError(String);

impl From<RequestError> for ToolError {
    fn from(e: RequestError) -> Self {
        Self(e.to_string())
    }
}

fn tool_result(r: Result<(String, Option<Value>), ToolError>) -> Value {
    match r {
        Ok((text, structured)) => {
            let mut v = json!({"content": [{"type": "text", "text": text}], "isError": false});
            if let Some(s) = structured {
                v["structuredContent"] = s;
            }
            v
        }
        Err(ToolError(m)) => json!({"content": [{"type": "text", "text": m}], "isError": true}),
    }
}

impl Mcp {
    fn daemon(&self) -> Result<Arc<Daemon>, ToolError> {
        self.daemon
            .clone()
            .map_err(|e| ToolError(format!("pema cannot start: {e}")))
    }

    /// The workspace a call names (opened when needed), or the only open one.
    async fn workspace(&self, d: &Arc<Daemon>, arg: Option<&str>) -> Result<PathBuf, ToolError> {
        match arg {
            Some(w) => {
                let path = PathBuf::from(w);
                if let Ok(root) = d.workspace_of(&path) {
                    return Ok(root);
                }
                let d = d.clone();
                tokio::task::spawn_blocking(move || {
                    let root = d.open_workspace(&path)?;
                    d.wait_loaded(&root, std::time::Duration::from_secs(60));
                    Ok::<_, RequestError>(root)
                })
                .await
                .map_err(|e| ToolError(format!("{e}")))?
                .map_err(ToolError::from)
            }
            None => {
                let roots: Vec<PathBuf> = d
                    .status(None)?
                    .workspaces
                    .into_iter()
                    .map(|w| w.root)
                    .collect();
                match roots.as_slice() {
                    [one] => Ok(one.clone()),
                    [] => Err(ToolError(
                        "no workspace is open: pass workspace (a folder of your documents)".into(),
                    )),
                    _ => Err(ToolError(format!(
                        "several workspaces are open ({}): pass workspace",
                        roots
                            .iter()
                            .map(|r| r.display().to_string())
                            .collect::<Vec<_>>()
                            .join(", ")
                    ))),
                }
            }
        }
    }

    async fn call_tool(&self, params: &Value, cancel: Arc<AtomicBool>) -> Value {
        let name = params["name"].as_str().unwrap_or("");
        let args = &params["arguments"];
        let r = match name {
            "rewrite" => self.rewrite(args, cancel).await,
            "status" => self.status(args).await,
            "examples" => self.examples(args).await,
            _ => Err(ToolError(format!(
                "unknown tool {name:?}: pema has rewrite, status and examples"
            ))),
        };
        tool_result(r)
    }

    async fn rewrite(
        &self,
        args: &Value,
        cancel: Arc<AtomicBool>,
    ) -> Result<(String, Option<Value>), ToolError> {
        let d = self.daemon()?;
        let text = args["text"]
            .as_str()
            .ok_or_else(|| ToolError("text is required (a string)".into()))?
            .to_string();
        let root = self.workspace(&d, args["workspace"].as_str()).await?;
        let strength = match &args["strength"] {
            Value::Null => None,
            v => match v.as_f64() {
                Some(s) if (0.0..=1.0).contains(&s) => Some(s as f32),
                _ => {
                    return Err(ToolError(format!(
                        "strength must be a number from 0 to 1, not {v}"
                    )))
                }
            },
        };
        let mode: Option<Mode> = match args["mode"].as_str() {
            Some(m) => Some(m.parse().map_err(|e| ToolError(format!("{e:#}")))?),
            None if strength.is_some() => Some(Mode::Fixed),
            None => None,
        };
        let req = RewriteRequest {
            text,
            workspace: Some(root.clone()),
            mode,
            lambda_fixed: strength,
            ..Default::default()
        };
        let r = d.rewrite(req, cancel).await?.result().await?;
        let meta = json!({"text": r.text, "mode": super::to_proto::mode(r.mode),
                          "tokens": r.tokens, "seconds": r.seconds, "workspace": root});
        Ok((r.text, Some(meta)))
    }

    async fn status(&self, args: &Value) -> Result<(String, Option<Value>), ToolError> {
        let d = self.daemon()?;
        let root = match args["workspace"].as_str() {
            Some(w) => Some(self.workspace(&d, Some(w)).await?),
            None => None,
        };
        let s = serde_json::to_value(super::to_proto::daemon_status(d.status(root.as_deref())?))
            .unwrap_or(Value::Null);
        let text = serde_json::to_string_pretty(&s).unwrap_or_default();
        Ok((text, Some(s)))
    }

    async fn examples(&self, args: &Value) -> Result<(String, Option<Value>), ToolError> {
        let d = self.daemon()?;
        let root = self.workspace(&d, args["workspace"].as_str()).await?;
        d.until_loaded(Some(&root)).await;
        let ex = d.examples(&root)?;
        let text = if ex.is_empty() {
            format!(
                "{} has no worked examples yet: they are drawn from its files when its memory is \
                 built (see the status tool), unless .pema.toml sets shots = 0",
                root.display()
            )
        } else {
            ex.iter()
                .map(|(s, t)| format!("plain: {s}\nstyle: {t}"))
                .collect::<Vec<_>>()
                .join("\n\n")
        };
        let items: Vec<Value> = ex
            .iter()
            .map(|(s, t)| json!({"source": s, "target": t}))
            .collect();
        Ok((text, Some(json!({"workspace": root, "examples": items}))))
    }
}

fn response(id: &Value, result: Result<Value, (i64, String)>) -> Value {
    match result {
        Ok(r) => json!({"jsonrpc": "2.0", "id": id, "result": r}),
        Err((code, message)) => {
            json!({"jsonrpc": "2.0", "id": id, "error": {"code": code, "message": message}})
        }
    }
}

/// Serves MCP on stdin/stdout until stdin ends.
pub async fn serve_stdio(daemon: std::result::Result<Arc<Daemon>, String>) {
    let mcp = Arc::new(Mcp {
        daemon,
        running: Mutex::new(HashMap::new()),
    });
    let (out_tx, mut out_rx) = tokio::sync::mpsc::unbounded_channel::<Value>();
    let writer = tokio::spawn(async move {
        let mut stdout = tokio::io::stdout();
        while let Some(v) = out_rx.recv().await {
            let mut line = v.to_string();
            line.push('\n');
            if stdout.write_all(line.as_bytes()).await.is_err() || stdout.flush().await.is_err() {
                return;
            }
        }
    });
    let mut lines = tokio::io::BufReader::new(tokio::io::stdin()).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        if line.trim().is_empty() {
            continue;
        }
        if line.len() > 64 << 20 {
            let _ = out_tx.send(response(
                &Value::Null,
                Err((-32600, "message too large".into())),
            ));
            continue;
        }
        let msg: Value = match serde_json::from_str(&line) {
            Ok(v) => v,
            Err(e) => {
                let _ = out_tx.send(response(
                    &Value::Null,
                    Err((-32700, format!("not JSON: {e}"))),
                ));
                continue;
            }
        };
        let method = msg["method"].as_str().unwrap_or("").to_string();
        let id = msg.get("id").cloned();
        let params = msg.get("params").cloned().unwrap_or(Value::Null);
        let Some(id) = id else {
            // Notifications.
            if method == "notifications/cancelled" {
                let key = params["requestId"].to_string();
                if let Some(c) = mcp.running.lock().unwrap().get(&key) {
                    c.store(true, Ordering::SeqCst);
                }
            }
            continue;
        };
        if method.is_empty() {
            continue; // a response to something we never asked
        }
        let (mcp, out) = (mcp.clone(), out_tx.clone());
        tokio::spawn(async move {
            let result = match method.as_str() {
                "initialize" => {
                    let asked = params["protocolVersion"].as_str().unwrap_or("");
                    let version = VERSIONS
                        .iter()
                        .find(|v| **v == asked)
                        .unwrap_or(&VERSIONS[0]);
                    Ok(json!({
                        "protocolVersion": version,
                        "capabilities": {"tools": {"listChanged": false}},
                        "serverInfo": {"name": "pema", "title": "pema: rewrite in your own style",
                                       "version": env!("CARGO_PKG_VERSION")},
                        "instructions": "Call rewrite to restyle text in the style of a folder of \
                            the user's documents (workspace); status says whether that style has \
                            been learned yet; examples shows what it learned from."
                    }))
                }
                "ping" => Ok(json!({})),
                "tools/list" => Ok(json!({"tools": tools()})),
                "tools/call" => {
                    let key = id.to_string();
                    let cancel = Arc::new(AtomicBool::new(false));
                    mcp.running
                        .lock()
                        .unwrap()
                        .insert(key.clone(), cancel.clone());
                    let r = mcp.call_tool(&params, cancel).await;
                    mcp.running.lock().unwrap().remove(&key);
                    Ok(r)
                }
                m => Err((-32601, format!("pema's MCP server has no method {m:?}"))),
            };
            let _ = out.send(response(&id, result));
        });
    }
    drop(out_tx);
    let _ = tokio::time::timeout(std::time::Duration::from_secs(2), writer).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_tool_has_a_schema() {
        let t = tools();
        let names: Vec<&str> = t
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["name"].as_str().unwrap())
            .collect();
        assert_eq!(names, ["rewrite", "status", "examples"]);
        for tool in t.as_array().unwrap() {
            assert_eq!(tool["inputSchema"]["type"], "object", "{tool}");
        }
        assert_eq!(t[0]["inputSchema"]["required"], json!(["text"]));
    }
}
