//! One client connection: the LSP methods and pema's own, on top of the shared daemon.

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use line_index::LineIndex;
use serde_json::{json, Value};
use tower_lsp_server::jsonrpc::{Error, Result};
use tower_lsp_server::lsp_types::*;
use tower_lsp_server::{Client, LanguageServer, UriExt};

use super::documents::{
    apply_changes, offset, read_document, uses_crlf, Encoding, Selection, MAX_DOCUMENTS,
    MAX_DOCUMENT_BYTES, MAX_OPEN_DOCUMENT_BYTES,
};
use super::protocol::*;
use super::to_proto;
use super::{auth, Conn};
use crate::daemon::{Daemon, Event, RequestError, WorkspaceStatus};
use crate::decode::Mode;

pub const REWRITE_COMMAND: &str = "pema.rewrite";
pub const REWRITE_TITLE: &str = "Rewrite in workspace style";

pub struct Backend {
    pub(super) client: Client,
    /// None when the daemon could not start (e.g. no model): every request answers why.
    pub(super) daemon: std::result::Result<Arc<Daemon>, String>,
    /// The token clients must present, if the daemon was started with one.
    pub(super) token: Option<String>,
    pub(super) authorized: AtomicBool,
    /// Failed `initialize` attempts; the connection closes at [`auth::MAX_FAILED_INITIALIZE`].
    pub(super) failed_initialize: std::sync::atomic::AtomicUsize,
    pub(super) conn: Conn,
    /// Workspaces this connection opened (closed when it goes).
    pub(super) roots: Arc<Mutex<HashSet<PathBuf>>>,
    pub(super) documents: Mutex<HashMap<Uri, String>>,
    /// How this connection counts a position's `character` (negotiated in `initialize`).
    pub(super) encoding: Mutex<Encoding>,
    pub(super) work_done_progress: AtomicBool,
    pub(super) default_mode: Mutex<Option<Mode>>,
    pub(super) lambda_max: Mutex<Option<f32>>,
    /// The tasks forwarding the daemon's progress and status changes to this connection.
    pub(super) forwarders: Mutex<Vec<tokio::task::AbortHandle>>,
    /// Subscribed before the workspaces open, so that no progress is missed before
    /// `initialized` starts the forwarding.
    pub(super) events: Mutex<Option<tokio::sync::broadcast::Receiver<Event>>>,
    /// Likewise for status changes.
    pub(super) status_events: Mutex<Option<tokio::sync::broadcast::Receiver<WorkspaceStatus>>>,
    /// `initialized` has come: a workspace opened from now on is announced at once with its
    /// `pema/statusChanged` (notifications may not precede the answer to `initialize`).
    pub(super) announcing: AtomicBool,
}

impl Backend {
    pub fn new(
        client: Client,
        daemon: std::result::Result<Arc<Daemon>, String>,
        token: Option<String>,
        conn: Conn,
    ) -> Self {
        Self {
            client,
            daemon,
            token,
            authorized: AtomicBool::new(false),
            failed_initialize: Default::default(),
            conn,
            roots: Arc::new(Mutex::new(HashSet::new())),
            documents: Mutex::new(HashMap::new()),
            encoding: Mutex::new(Encoding::Utf16),
            work_done_progress: AtomicBool::new(false),
            default_mode: Mutex::new(None),
            lambda_max: Mutex::new(None),
            forwarders: Mutex::new(vec![]),
            events: Mutex::new(None),
            status_events: Mutex::new(None),
            announcing: AtomicBool::new(false),
        }
    }

    pub(super) fn daemon(&self) -> Result<&Arc<Daemon>> {
        if !self.authorized.load(Ordering::SeqCst) {
            return Err(Error {
                code: tower_lsp_server::jsonrpc::ErrorCode::InvalidRequest,
                message: "not authorized: initialize with the daemon's token first".into(),
                data: to_proto::ErrorData::of("unauthorized"),
            });
        }
        self.daemon.as_ref().map_err(|e| Error {
            code: tower_lsp_server::jsonrpc::ErrorCode::ServerError(REQUEST_FAILED),
            message: e.clone().into(),
            data: to_proto::ErrorData::of("unavailable"),
        })
    }

    /// Opens a workspace for this connection. Opening reads settings and loads the memory and
    /// adapter from disk, so it runs off the async runtime.
    pub(super) async fn open_root(
        &self,
        daemon: &Arc<Daemon>,
        path: &std::path::Path,
    ) -> Result<PathBuf> {
        let d = daemon.clone();
        let p = path.to_path_buf();
        let roots = self.roots.clone();
        let (root, first_use) = tokio::task::spawn_blocking(move || {
            let root = d.open_workspace(&p)?;
            // One of this connection's roots before it has loaded, so that the progress of its
            // first tasks (which begin once it has) reaches this client.
            let first_use = roots.lock().unwrap().insert(root.clone());
            // This client gets the workspace as loaded from disk; others are not held up.
            d.wait_loaded(&root, std::time::Duration::from_secs(60));
            Ok((root, first_use))
        })
        .await
        .map_err(|e| to_rpc(RequestError::Failed(anyhow::anyhow!("{e}"))))?
        .map_err(to_rpc)?;
        if !first_use {
            // Already open on this connection: one use, not two.
            daemon.close_workspace(&root);
        } else if self.announcing.load(Ordering::SeqCst) {
            self.announce_status(daemon, &root).await;
        }
        Ok(root)
    }

    pub(super) fn workspace_path(&self, s: &str) -> PathBuf {
        if s.starts_with("file:") {
            if let Ok(u) = s.parse::<Uri>() {
                if let Some(p) = u.to_file_path() {
                    return p.into_owned();
                }
            }
        }
        PathBuf::from(s)
    }

    /// The text of `range` in the document `uri`: the client's copy when it opened the
    /// document, else the file, read only when it is a regular file (not a link) inside a
    /// workspace this connection opened and under [`MAX_DOCUMENT_BYTES`]. The error is the same
    /// whether or not such a file exists.
    pub(super) async fn text_of(&self, uri: &Uri, range: &Range) -> Result<Selection> {
        let doc = self.documents.lock().unwrap().get(uri).cloned();
        let text = match doc {
            Some(t) => t,
            None => {
                let refused = || {
                    invalid_params(format!(
                        "cannot read {}: pema reads only regular files of at most {} bytes \
                         inside a workspace this connection opened (or documents it sent)",
                        uri.as_str(),
                        MAX_DOCUMENT_BYTES
                    ))
                };
                let path = uri.to_file_path().ok_or_else(refused)?.into_owned();
                let roots: Vec<PathBuf> = self.roots.lock().unwrap().iter().cloned().collect();
                tokio::task::spawn_blocking(move || read_document(&path, &roots))
                    .await
                    .ok()
                    .flatten()
                    .ok_or_else(refused)?
            }
        };
        let encoding = *self.encoding.lock().unwrap();
        let index = LineIndex::new(&text);
        let (a, b) = (
            offset(&text, &index, encoding, range.start),
            offset(&text, &index, encoding, range.end),
        );
        match (a, b) {
            (Some(a), Some(b)) if a <= b => Ok(Selection {
                text: text[a..b].to_string(),
                crlf: uses_crlf(&text),
            }),
            _ => Err(invalid_params(format!(
                "the range {}:{}-{}:{} is outside the document",
                range.start.line, range.start.character, range.end.line, range.end.character
            ))),
        }
    }
}

impl Backend {
    /// Keeps the client's copy of a document (authenticated clients only, up to
    /// [`MAX_DOCUMENTS`]).
    fn keep_document(&self, uri: Uri, text: String) {
        if !self.authorized.load(Ordering::SeqCst) {
            return;
        }
        let mut docs = self.documents.lock().unwrap();
        if docs.len() >= MAX_DOCUMENTS && !docs.contains_key(&uri) {
            tracing::warn!("a client opened more than {MAX_DOCUMENTS} documents; ignoring more");
            return;
        }
        docs.insert(uri, text);
    }
}

impl Drop for Backend {
    fn drop(&mut self) {
        for t in self.forwarders.lock().unwrap().drain(..) {
            t.abort();
        }
        if let Ok(d) = &self.daemon {
            for r in self.roots.lock().unwrap().drain() {
                d.close_workspace(&r);
            }
        }
    }
}

fn folder_paths(params: &InitializeParams) -> Vec<PathBuf> {
    let mut out = vec![];
    if let Some(folders) = &params.workspace_folders {
        out.extend(
            folders
                .iter()
                .filter_map(|f| f.uri.to_file_path().map(|p| p.into_owned())),
        );
    }
    #[allow(deprecated)]
    if out.is_empty() {
        if let Some(u) = &params.root_uri {
            out.extend(u.to_file_path().map(|p| p.into_owned()));
        }
    }
    out
}

impl LanguageServer for Backend {
    async fn initialize(&self, params: InitializeParams) -> Result<InitializeResult> {
        // The token is checked first, so that malformed options count as a failed attempt.
        let presented = params
            .initialization_options
            .as_ref()
            .and_then(|v| v.get("token"))
            .and_then(Value::as_str);
        if let Some(expected) = &self.token {
            if !auth::token_matches(expected, presented) {
                let failed = self.failed_initialize.fetch_add(1, Ordering::SeqCst) + 1;
                let last = failed >= auth::MAX_FAILED_INITIALIZE;
                if last {
                    // After this answer is written, the connection closes.
                    let closed = self.conn.closed.clone();
                    tokio::spawn(async move {
                        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
                        let _ = closed.send(true);
                    });
                }
                return Err(Error {
                    code: tower_lsp_server::jsonrpc::ErrorCode::InvalidRequest,
                    message: format!(
                        "this pema daemon needs its token: pass initializationOptions.token{}",
                        if last {
                            "; too many failed attempts, closing the connection"
                        } else {
                            ""
                        }
                    )
                    .into(),
                    data: to_proto::ErrorData::of("unauthorized"),
                });
            }
        }
        let opts: InitOptions = match &params.initialization_options {
            Some(v) => serde_json::from_value(v.clone())
                .map_err(|e| invalid_params(format!("initializationOptions: {e}")))?,
            None => InitOptions::default(),
        };
        self.authorized.store(true, Ordering::SeqCst);
        if let Some(m) = &opts.mode {
            *self.default_mode.lock().unwrap() = Some(
                m.parse()
                    .map_err(|e| invalid_params(format!("initializationOptions.mode: {e:#}")))?,
            );
        }
        if let Some(l) = opts.lambda_max {
            check_lambda("initializationOptions.lambdaMax", l).map_err(invalid_params)?;
        }
        *self.lambda_max.lock().unwrap() = opts.lambda_max;
        let wdp = params
            .capabilities
            .window
            .as_ref()
            .and_then(|w| w.work_done_progress)
            .unwrap_or(false);
        self.work_done_progress.store(wdp, Ordering::SeqCst);
        let encoding = Encoding::negotiate(&params);
        *self.encoding.lock().unwrap() = encoding;
        if let Ok(d) = &self.daemon {
            *self.events.lock().unwrap() = Some(d.subscribe());
            *self.status_events.lock().unwrap() = Some(d.subscribe_status());
            for path in folder_paths(&params) {
                if let Err(e) = self.open_root(d, &path).await {
                    tracing::warn!("{}", e.message);
                }
            }
        }
        Ok(InitializeResult {
            capabilities: ServerCapabilities {
                position_encoding: Some(encoding.kind()),
                text_document_sync: Some(TextDocumentSyncCapability::Kind(
                    TextDocumentSyncKind::INCREMENTAL,
                )),
                code_action_provider: Some(CodeActionProviderCapability::Options(
                    CodeActionOptions {
                        code_action_kinds: Some(vec![CodeActionKind::REFACTOR_REWRITE]),
                        resolve_provider: Some(true),
                        work_done_progress_options: Default::default(),
                    },
                )),
                execute_command_provider: Some(ExecuteCommandOptions {
                    commands: vec![REWRITE_COMMAND.into()],
                    work_done_progress_options: Default::default(),
                }),
                workspace: Some(WorkspaceServerCapabilities {
                    workspace_folders: Some(WorkspaceFoldersServerCapabilities {
                        supported: Some(true),
                        change_notifications: Some(OneOf::Left(true)),
                    }),
                    file_operations: None,
                }),
                ..Default::default()
            },
            server_info: Some(ServerInfo {
                name: "pema".into(),
                version: Some(env!("CARGO_PKG_VERSION").into()),
            }),
        })
    }

    async fn initialized(&self, _: InitializedParams) {
        match &self.daemon {
            Ok(d) => {
                self.spawn_forwarder(d);
                self.spawn_status_forwarder(d);
                self.announcing.store(true, Ordering::SeqCst);
                let roots: Vec<PathBuf> = self.roots.lock().unwrap().iter().cloned().collect();
                for r in roots {
                    self.announce_status(d, &r).await;
                }
            }
            Err(e) => {
                self.client
                    .show_message(MessageType::ERROR, format!("pema cannot start: {e}"))
                    .await
            }
        }
    }

    async fn shutdown(&self) -> Result<()> {
        Ok(())
    }

    async fn did_open(&self, p: DidOpenTextDocumentParams) {
        self.keep_document(p.text_document.uri, p.text_document.text);
    }

    async fn did_change(&self, p: DidChangeTextDocumentParams) {
        let uri = p.text_document.uri;
        let encoding = *self.encoding.lock().unwrap();
        let old = self.documents.lock().unwrap().remove(&uri);
        match apply_changes(old, p.content_changes, encoding) {
            Some(text) if text.len() <= MAX_OPEN_DOCUMENT_BYTES => self.keep_document(uri, text),
            // Out of step or too large: the document is read from disk from now on.
            _ => tracing::warn!(
                "dropped the copy of {}: a change did not fit it, or it grew past {} bytes",
                uri.as_str(),
                MAX_OPEN_DOCUMENT_BYTES
            ),
        }
    }

    async fn did_close(&self, p: DidCloseTextDocumentParams) {
        self.documents.lock().unwrap().remove(&p.text_document.uri);
    }

    async fn did_change_workspace_folders(&self, p: DidChangeWorkspaceFoldersParams) {
        let Ok(d) = self.daemon() else { return };
        for f in p.event.removed {
            if let Some(path) = f.uri.to_file_path() {
                let root = path.canonicalize().unwrap_or_else(|_| path.to_path_buf());
                if self.roots.lock().unwrap().remove(&root) {
                    d.close_workspace(&root);
                }
            }
        }
        for f in p.event.added {
            if let Some(path) = f.uri.to_file_path() {
                if let Err(e) = self.open_root(d, &path).await {
                    self.client
                        .show_message(MessageType::ERROR, e.message)
                        .await;
                }
            }
        }
    }

    async fn code_action(&self, p: CodeActionParams) -> Result<Option<CodeActionResponse>> {
        let d = self.daemon()?;
        let wanted = p.context.only.as_ref().is_none_or(|kinds| {
            kinds.iter().any(|k| {
                CodeActionKind::REFACTOR_REWRITE
                    .as_str()
                    .starts_with(k.as_str())
            })
        });
        let path = p.text_document.uri.to_file_path().map(|p| p.into_owned());
        let in_workspace = path.is_some_and(|p| d.workspace_of(&p).is_ok());
        if !wanted || !in_workspace || p.range.start == p.range.end {
            return Ok(None);
        }
        // Resolved lazily: nothing runs until the user picks the action.
        Ok(Some(vec![CodeActionOrCommand::CodeAction(CodeAction {
            title: REWRITE_TITLE.into(),
            kind: Some(CodeActionKind::REFACTOR_REWRITE),
            data: Some(json!(CodeActionData {
                uri: p.text_document.uri,
                range: p.range,
            })),
            ..Default::default()
        })]))
    }

    async fn code_action_resolve(&self, mut action: CodeAction) -> Result<CodeAction> {
        let data: CodeActionData = action
            .data
            .clone()
            .and_then(|v| serde_json::from_value(v).ok())
            .ok_or_else(|| invalid_params("this code action carries no pema data"))?;
        let r = self
            .rewrite(RewriteParams {
                text: None,
                uri: Some(data.uri.clone()),
                range: Some(data.range),
                workspace: None,
                mode: None,
                options: Default::default(),
                partial_result_token: None,
            })
            .await?;
        action.edit = Some(edit(data.uri, data.range, r.text));
        Ok(action)
    }

    async fn execute_command(&self, p: ExecuteCommandParams) -> Result<Option<LSPAny>> {
        if p.command != REWRITE_COMMAND {
            return Err(invalid_params(format!("unknown command {:?}", p.command)));
        }
        let arg =
            p.arguments.into_iter().next().ok_or_else(|| {
                invalid_params("pema.rewrite takes one argument {uri, range, mode?}")
            })?;
        let params: RewriteParams = serde_json::from_value(arg)
            .map_err(|e| invalid_params(format!("pema.rewrite: {e}")))?;
        let (Some(uri), Some(range)) = (params.uri.clone(), params.range) else {
            return Err(invalid_params("pema.rewrite needs uri and range"));
        };
        let r = self.rewrite(params).await?;
        let applied = self
            .client
            .apply_edit(edit(uri, range, r.text.clone()))
            .await
            .map(|a| a.applied)
            .unwrap_or(false);
        Ok(Some(json!(to_proto::ExecuteCommandResult {
            rewrite: r,
            applied
        })))
    }
}

fn edit(uri: Uri, range: Range, text: String) -> WorkspaceEdit {
    WorkspaceEdit {
        changes: Some(HashMap::from([(
            uri,
            vec![TextEdit {
                range,
                new_text: text,
            }],
        )])),
        ..Default::default()
    }
}
