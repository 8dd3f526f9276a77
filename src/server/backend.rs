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
    apply_changes, fit_line_endings, offset, read_document, uses_crlf, Encoding, Selection,
    MAX_DOCUMENTS, MAX_DOCUMENT_BYTES, MAX_OPEN_DOCUMENT_BYTES,
};
use super::protocol::*;
use super::to_proto::{self, CloseWorkspaceResult, OpenWorkspaceResult, QueuedResult};
use super::{auth, Conn};
use crate::daemon::{Daemon, Event, RequestError, RewriteEvent, RewriteRequest, Stage};
use crate::decode::Mode;

pub const REWRITE_COMMAND: &str = "pema.rewrite";
pub const REWRITE_TITLE: &str = "Rewrite in workspace style";

pub struct Backend {
    client: Client,
    /// None when the daemon could not start (e.g. no model): every request answers why.
    daemon: std::result::Result<Arc<Daemon>, String>,
    /// The token clients must present, if the daemon was started with one.
    token: Option<String>,
    authorized: AtomicBool,
    /// Failed `initialize` attempts; the connection closes at [`auth::MAX_FAILED_INITIALIZE`].
    failed_initialize: std::sync::atomic::AtomicUsize,
    conn: Conn,
    /// Workspaces this connection opened (closed when it goes).
    roots: Arc<Mutex<HashSet<PathBuf>>>,
    documents: Mutex<HashMap<Uri, String>>,
    /// How this connection counts a position's `character` (negotiated in `initialize`).
    encoding: Mutex<Encoding>,
    work_done_progress: AtomicBool,
    default_mode: Mutex<Option<Mode>>,
    lambda_max: Mutex<Option<f32>>,
    forwarder: Mutex<Option<tokio::task::AbortHandle>>,
    /// Subscribed before the workspaces open, so that no progress is missed before
    /// `initialized` starts the forwarding.
    events: Mutex<Option<tokio::sync::broadcast::Receiver<Event>>>,
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
            forwarder: Mutex::new(None),
            events: Mutex::new(None),
        }
    }

    fn daemon(&self) -> Result<&Arc<Daemon>> {
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
    async fn open_root(&self, daemon: &Arc<Daemon>, path: &std::path::Path) -> Result<PathBuf> {
        let d = daemon.clone();
        let p = path.to_path_buf();
        let root = tokio::task::spawn_blocking(move || {
            let root = d.open_workspace(&p)?;
            // This client gets the workspace as loaded from disk; others are not held up.
            d.wait_loaded(&root, std::time::Duration::from_secs(60));
            Ok(root)
        })
        .await
        .map_err(|e| to_rpc(RequestError::Failed(anyhow::anyhow!("{e}"))))?
        .map_err(to_rpc)?;
        if !self.roots.lock().unwrap().insert(root.clone()) {
            // Already open on this connection: one use, not two.
            daemon.close_workspace(&root);
        }
        Ok(root)
    }

    fn workspace_path(&self, s: &str) -> PathBuf {
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
    async fn text_of(&self, uri: &Uri, range: &Range) -> Result<Selection> {
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

    /// Runs a rewrite to the end, streaming partial text to `partial` if given.
    async fn rewrite(&self, p: RewriteParams) -> Result<RewriteResult> {
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

    fn spawn_forwarder(&self, daemon: &Arc<Daemon>) {
        let mut events = self
            .events
            .lock()
            .unwrap()
            .take()
            .unwrap_or_else(|| daemon.subscribe());
        let client = self.client.clone();
        let roots = self.roots.clone();
        let standard = self.work_done_progress.load(Ordering::SeqCst);
        let task = tokio::spawn(async move {
            let mut tokens: HashMap<u64, ProgressToken> = HashMap::new();
            loop {
                let e: Event = match events.recv().await {
                    Ok(e) => e,
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => continue,
                    Err(_) => return,
                };
                // A task is forwarded from its begin or not at all: a report or end without
                // the begin (a workspace added mid-task, a refused token) is not work-done
                // progress, and Neovim's `vim.lsp.status()` fails on one (it has no title).
                let begin = matches!(e.stage, Stage::Begin);
                if begin && !roots.lock().unwrap().iter().any(|r| r == &e.workspace) {
                    continue;
                }
                let token = if begin {
                    ProgressToken::String(format!("pema/{}/{}", to_proto::task(e.task), e.id))
                } else if matches!(e.stage, Stage::End) {
                    match tokens.remove(&e.id) {
                        Some(t) => t,
                        None => continue,
                    }
                } else {
                    match tokens.get(&e.id) {
                        Some(t) => t.clone(),
                        None => continue,
                    }
                };
                let params = to_proto::progress(&e, token.clone());
                if standard {
                    if begin {
                        let created = client
                            .send_request::<request::WorkDoneProgressCreate>(
                                WorkDoneProgressCreateParams {
                                    token: token.clone(),
                                },
                            )
                            .await;
                        if created.is_err() {
                            continue;
                        }
                        tokens.insert(e.id, token.clone());
                    }
                    let params = to_proto::WorkDoneProgress {
                        token: params.token,
                        value: params.value,
                    };
                    client.send_notification::<AnyProgress>(json!(params)).await;
                } else {
                    if begin {
                        tokens.insert(e.id, token.clone());
                    }
                    client
                        .send_notification::<PemaProgress>(json!(params))
                        .await;
                }
            }
        });
        *self.forwarder.lock().unwrap() = Some(task.abort_handle());
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

impl Drop for Backend {
    fn drop(&mut self) {
        if let Some(t) = self.forwarder.lock().unwrap().take() {
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
            Ok(d) => self.spawn_forwarder(d),
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

    /// `pema/files`: what a workspace this connection opened learns from, and why not the rest.
    pub async fn pema_files(&self, p: Option<WorkspaceParams>) -> Result<to_proto::FilesResult> {
        let d = self.daemon()?.clone();
        let p = p.unwrap_or_default();
        let root = self.root_of(&d, &p)?;
        if !self.roots.lock().unwrap().contains(&root) {
            return Err(to_rpc(RequestError::NotInWorkspace {
                path: root,
                open: self.roots.lock().unwrap().iter().cloned().collect(),
            }));
        }
        let report = tokio::task::spawn_blocking(move || d.files(&root))
            .await
            .map_err(|e| to_rpc(RequestError::Failed(e.into())))?
            .map_err(to_rpc)?;
        Ok(to_proto::files_result(report))
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
