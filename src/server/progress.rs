//! The daemon's progress, forwarded to one connection: standard work-done progress
//! (`window/workDoneProgress/create`, then `$/progress`) where the client supports it, else
//! `pema/progress`; only for the workspaces this connection opened, a task from its begin or
//! not at all. Status changes likewise, as `pema/statusChanged`.

use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use serde_json::json;
use tower_lsp_server::lsp_types::*;

use super::backend::Backend;
use super::protocol::*;
use super::to_proto;
use crate::daemon::{Daemon, Event, Stage};

impl Backend {
    pub(super) fn spawn_forwarder(&self, daemon: &Arc<Daemon>) {
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
        self.forwarders.lock().unwrap().push(task.abort_handle());
    }

    /// Sends the status of a workspace this connection just opened: changes are pushed only
    /// when they happen, so a client learns the state it starts from here.
    pub(super) async fn announce_status(&self, daemon: &Daemon, root: &Path) {
        if let Ok(s) = daemon.status(Some(root)) {
            for w in s.workspaces {
                let params = to_proto::status_changed(w);
                self.client
                    .send_notification::<PemaStatusChanged>(json!(params))
                    .await;
            }
        }
    }

    /// Forwards the daemon's status changes of the workspaces this connection opened as
    /// `pema/statusChanged` (the daemon samples them at most four times a second).
    pub(super) fn spawn_status_forwarder(&self, daemon: &Arc<Daemon>) {
        let mut changes = self
            .status_events
            .lock()
            .unwrap()
            .take()
            .unwrap_or_else(|| daemon.subscribe_status());
        let client = self.client.clone();
        let roots = self.roots.clone();
        let task = tokio::spawn(async move {
            loop {
                let st = match changes.recv().await {
                    Ok(st) => st,
                    // 256 changes unread (a minute of them, at four a second): the missed
                    // ones are dropped, the next change of a workspace carries its whole state.
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => continue,
                    Err(_) => return,
                };
                if !roots.lock().unwrap().contains(&st.root) {
                    continue;
                }
                let params = to_proto::status_changed(st);
                client
                    .send_notification::<PemaStatusChanged>(json!(params))
                    .await;
            }
        });
        self.forwarders.lock().unwrap().push(task.abort_handle());
    }
}
