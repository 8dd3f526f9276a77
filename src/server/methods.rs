//! pema's own methods on a connection: `pema/rewrite` (streamed as partial results, cancelled
//! when the client cancels or goes away), `pema/status`, `pema/files`, `pema/examples`,
//! `pema/train`, `pema/rebuild`, `pema/openWorkspace`, `pema/closeWorkspace`.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use serde_json::json;
use tower_lsp_server::jsonrpc::Result;
use tower_lsp_server::UriExt;

use super::backend::Backend;
use super::documents::fit_line_endings;
use super::protocol::*;
use super::to_proto::{self, CloseWorkspaceResult, OpenWorkspaceResult, QueuedResult};
use crate::daemon::{Daemon, RequestError, RewriteEvent, RewriteRequest, MAX_EXAMPLES};
use crate::decode::Mode;

/// The `pema/rewrite` of a connection.
impl Backend {
    /// Runs a rewrite to the end, streaming partial text to `partial` if given.
    pub(super) async fn rewrite(&self, p: RewriteParams) -> Result<RewriteResult> {
        let daemon = self.daemon()?.clone();
        let (text, document, selection) = match (&p.text, &p.uri, &p.range) {
            (Some(t), None, None) => (t.clone(), None, None),
            (None, Some(u), Some(r)) => {
                let sel = self.text_of(u, r).await?;
                (
                    sel.text.clone(),
                    u.to_file_path().map(|p| p.into_owned()),
                    Some(sel),
                )
            }
            _ => {
                return Err(invalid_params(
                    "give either text, or uri and range of a document",
                ))
            }
        };
        // The workspace: the one named, else the one holding the document (the daemon
        // resolves the root, once).
        let workspace = p
            .workspace
            .as_deref()
            .map(|w| self.workspace_path(w))
            .or(document);
        let mode: Option<Mode> = match &p.mode {
            Some(m) => Some(m.parse().map_err(|e| invalid_params(format!("{e:#}")))?),
            None => *self.default_mode.lock().unwrap(),
        };
        let o = &p.options;
        o.validate().map_err(invalid_params)?;
        let req = RewriteRequest {
            text,
            workspace,
            mode,
            lambda_max: o.lambda_max.or(*self.lambda_max.lock().unwrap()),
            lambda_fixed: o.lambda_fixed,
            temperature: o.temperature,
            top_p: o.top_p,
            seed: o.seed,
            max_tokens: o.max_tokens,
        };
        // Dropping this future ($/cancelRequest, a closed connection) stops the rewrite before
        // its next token.
        let cancel = Arc::new(AtomicBool::new(false));
        let _guard = CancelOnDrop(cancel.clone());
        let mut stream = daemon.rewrite(req, cancel.clone()).await.map_err(to_rpc)?;
        let mut so_far = String::new();
        // A client that goes away cancels its rewrites, queued or running.
        let closed = until_closed(self.conn.closed.subscribe());
        tokio::pin!(closed);
        let mut gone = false;
        let result = loop {
            tokio::select! {
                _ = &mut closed, if !gone => {
                    gone = true;
                    cancel.store(true, Ordering::SeqCst);
                }
                event = stream.next() => match event {
                    RewriteEvent::Text(delta) => {
                        so_far.push_str(&delta);
                        if let Some(token) = &p.partial_result_token {
                            let params = to_proto::PartialRewrite::new(token, &delta, &so_far);
                            self.client.send_notification::<AnyProgress>(json!(params)).await;
                        }
                    }
                    RewriteEvent::Retract(n) => {
                        // `text` is the whole rewrite so far: a client that follows it sees the
                        // line start again.
                        so_far.truncate(so_far.len().saturating_sub(n));
                        if let Some(token) = &p.partial_result_token {
                            let params = to_proto::PartialRewrite::new(token, "", &so_far);
                            self.client.send_notification::<AnyProgress>(json!(params)).await;
                        }
                    }
                    RewriteEvent::Done(r) => break r,
                },
            }
        };
        let r = result.map_err(to_rpc)?;
        // The replacement of a document's range keeps the document's line endings.
        let text = match &selection {
            Some(sel) => fit_line_endings(&sel.text, sel.crlf, &r.text),
            None => r.text,
        };
        Ok(RewriteResult {
            text,
            mode: to_proto::mode(r.mode).into(),
            tokens: r.tokens,
            stopped_by: to_proto::stop_reason(&r.stopped_by).into(),
            seconds: r.seconds,
            tokens_per_second: r.tokens_per_second,
            workspace: stream.workspace.map(|w| w.display().to_string()),
            range: p.range,
        })
    }
}

/// pema's own methods.
impl Backend {
    pub async fn pema_rewrite(&self, p: RewriteParams) -> Result<RewriteResult> {
        self.rewrite(p).await
    }

    pub async fn pema_status(&self, p: Option<WorkspaceParams>) -> Result<to_proto::DaemonStatus> {
        let d = self.daemon()?;
        let root = p.and_then(|p| p.workspace).map(|w| self.workspace_path(&w));
        let s = d.status(root.as_deref()).map_err(to_rpc)?;
        Ok(to_proto::daemon_status(s))
    }

    fn root_of(&self, d: &Daemon, p: &WorkspaceParams) -> Result<PathBuf> {
        match &p.workspace {
            Some(w) => d.workspace_of(&self.workspace_path(w)).map_err(to_rpc),
            None => {
                let roots = self.roots.lock().unwrap();
                match roots.len() {
                    1 => Ok(roots.iter().next().unwrap().clone()),
                    _ => Err(to_rpc(RequestError::InvalidRequest(
                        "say which workspace (workspace: a path inside it)".into(),
                    ))),
                }
            }
        }
    }

    /// The root of a workspace this connection opened (`pema/files`, `pema/examples`: what a
    /// workspace holds is told only to a client that opened it).
    fn own_root(&self, d: &Daemon, workspace: Option<String>) -> Result<PathBuf> {
        let root = self.root_of(
            d,
            &WorkspaceParams {
                workspace,
                from_scratch: false,
            },
        )?;
        if !self.roots.lock().unwrap().contains(&root) {
            return Err(to_rpc(RequestError::NotInWorkspace {
                path: root,
                open: self.roots.lock().unwrap().iter().cloned().collect(),
            }));
        }
        Ok(root)
    }

    /// `pema/files`: what a workspace this connection opened learns from, and why not the rest.
    pub async fn pema_files(&self, p: Option<WorkspaceParams>) -> Result<to_proto::FilesResult> {
        let d = self.daemon()?.clone();
        let root = self.own_root(&d, p.unwrap_or_default().workspace)?;
        let report = tokio::task::spawn_blocking(move || d.files(&root))
            .await
            .map_err(|e| to_rpc(RequestError::Failed(e.into())))?
            .map_err(to_rpc)?;
        Ok(to_proto::files_result(report))
    }

    /// `pema/examples`: a few pairs the memory of a workspace this connection opened learns
    /// from.
    pub async fn pema_examples(
        &self,
        p: Option<ExamplesParams>,
    ) -> Result<to_proto::ExamplesResult> {
        let d = self.daemon()?.clone();
        let p = p.unwrap_or_default();
        let limit = p.limit.unwrap_or(DEFAULT_EXAMPLES);
        if limit == 0 || limit > MAX_EXAMPLES {
            return Err(invalid_params(format!(
                "limit must be between 1 and {MAX_EXAMPLES}, not {limit}"
            )));
        }
        let root = self.own_root(&d, p.workspace)?;
        let examples = tokio::task::spawn_blocking(move || d.learned_examples(&root, limit))
            .await
            .map_err(|e| to_rpc(RequestError::Failed(e.into())))?
            .map_err(to_rpc)?;
        Ok(to_proto::examples_result(examples))
    }

    pub async fn pema_train(&self, p: WorkspaceParams) -> Result<QueuedResult> {
        let d = self.daemon()?;
        let root = self.root_of(d, &p)?;
        d.train(&root, p.from_scratch).map_err(to_rpc)?;
        Ok(QueuedResult {
            workspace: root.display().to_string(),
        })
    }

    pub async fn pema_rebuild(&self, p: WorkspaceParams) -> Result<QueuedResult> {
        let d = self.daemon()?;
        let root = self.root_of(d, &p)?;
        d.rebuild(&root, p.from_scratch).map_err(to_rpc)?;
        Ok(QueuedResult {
            workspace: root.display().to_string(),
        })
    }

    pub async fn pema_open_workspace(&self, p: OpenWorkspaceParams) -> Result<OpenWorkspaceResult> {
        let d = self.daemon()?.clone();
        let root = self.open_root(&d, &self.workspace_path(&p.path)).await?;
        Ok(OpenWorkspaceResult {
            root: root.display().to_string(),
        })
    }

    pub async fn pema_close_workspace(
        &self,
        p: OpenWorkspaceParams,
    ) -> Result<CloseWorkspaceResult> {
        let d = self.daemon()?;
        let path = self.workspace_path(&p.path);
        let root = path.canonicalize().unwrap_or(path);
        if self.roots.lock().unwrap().remove(&root) {
            d.close_workspace(&root);
            Ok(CloseWorkspaceResult { closed: true })
        } else {
            Err(invalid_params(format!(
                "{} is not open on this connection",
                root.display()
            )))
        }
    }
}

/// Resolves once the connection is closed (or its flag is gone).
async fn until_closed(mut rx: tokio::sync::watch::Receiver<bool>) {
    loop {
        if *rx.borrow_and_update() {
            return;
        }
        if rx.changed().await.is_err() {
            return;
        }
    }
}

struct CancelOnDrop(Arc<AtomicBool>);

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::SeqCst);
    }
}
