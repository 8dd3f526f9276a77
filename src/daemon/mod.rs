//! The daemon: one model, one inference worker, and the open workspaces, each with its pipeline
//! thread and file watcher. This is the product's core in the user's terms (workspace, memory,
//! adapter, rewrite); the server module puts a protocol on it.

mod error;
mod events;
mod examples;
mod pipeline;
mod rewrite;
mod status;
mod worker;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::Sender;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Result;
use notify_debouncer_full::notify::RecursiveMode;

pub use error::{open_list, Lambda, RequestError};
pub use events::{Event, Stage, Task};
pub use examples::{Example, MAX_EXAMPLES};
pub use rewrite::{RewriteEvent, RewriteRequest, RewriteStream};
pub use status::{AdapterState, AdapterStatus, DaemonStatus, MemoryStatus, WorkspaceStatus};
pub use worker::QueueStatus;

use crate::model::{Model, SessionOptions};
use crate::workspace::FilesReport;
use pipeline::{Pipeline, Signal};
use worker::Worker;

struct OpenWorkspace {
    shared: Arc<pipeline::Published>,
    tx: Sender<Signal>,
    users: usize,
}

/// Times a workspace's pipeline is restarted after a panic before it stays stopped.
const PIPELINE_RESTARTS: usize = 3;

/// A workspace's thread: opens the pipeline (settings, memory, adapter from disk) and the
/// watcher, then runs the pipeline until the workspace closes. A panic becomes an error in
/// `pema/status` and the pipeline starts again from what is on disk (a few times at most).
fn run_workspace(
    root: &Path,
    shared: Arc<pipeline::Published>,
    host: Host,
    tx: Sender<Signal>,
    rx: std::sync::mpsc::Receiver<Signal>,
) {
    let Host {
        model,
        worker,
        events,
        train_device,
    } = host;
    for attempt in 0..=PIPELINE_RESTARTS {
        let ran = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| -> Result<()> {
            let p = Pipeline::open(
                root,
                shared.clone(),
                model.clone(),
                worker.clone(),
                events.clone(),
                tx.clone(),
                train_device.clone(),
            )?;
            let state_dir = shared.status.lock().unwrap().state_dir.clone();
            // Kept for as long as the pipeline runs.
            let _watcher = match watch(root, &state_dir, tx.clone()) {
                Ok(w) => Some(w),
                Err(e) => {
                    shared.status.lock().unwrap().push_error(format!(
                        "cannot watch {} for changes ({e:#}): rebuild the workspace after editing",
                        root.display()
                    ));
                    None
                }
            };
            p.run(&rx);
            Ok(())
        }));
        // A panic may have left a lock poisoned; what it guards is replaced on the next open.
        shared.status.clear_poison();
        shared.serving.clear_poison();
        let mut st = shared.status.lock().unwrap();
        match ran {
            Ok(Ok(())) => return,
            Ok(Err(e)) => {
                st.push_error(format!("cannot open the workspace: {e:#}"));
                st.adapter.state = AdapterState::None;
                return;
            }
            Err(_) if shared.closed.load(Ordering::SeqCst) => return,
            Err(_) if attempt < PIPELINE_RESTARTS => {
                tracing::error!("{}: the pipeline panicked; restarting it", root.display());
                st.push_error(
                    "the workspace's pipeline failed inside pema (a bug); it starts again from \
                     what is on disk"
                        .into(),
                );
            }
            Err(_) => {
                st.push_error(format!(
                    "the workspace's pipeline failed inside pema {} times and stays stopped; \
                     close and reopen the workspace",
                    PIPELINE_RESTARTS + 1
                ));
                st.adapter.state = AdapterState::None;
                return;
            }
        }
        drop(st);
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// How a daemon runs its model and trains its adapters (`pema serve --gpu-layers N --device D`).
#[derive(Clone, Debug)]
pub struct DaemonOptions {
    /// Model layers on the GPU in a CUDA or Metal build (None: all).
    pub gpu_layers: Option<u32>,
    /// Where adapters train (the CPU unless a GPU build is asked to use its GPU).
    pub train_device: candle_core::Device,
}

impl Default for DaemonOptions {
    fn default() -> Self {
        Self {
            gpu_layers: None,
            train_device: candle_core::Device::Cpu,
        }
    }
}

/// What every workspace's pipeline shares with the daemon.
struct Host {
    model: Arc<Model>,
    worker: Arc<Worker>,
    events: tokio::sync::broadcast::Sender<Event>,
    train_device: candle_core::Device,
}

/// The daemon: one model, one inference worker and the open workspaces. Servers share it
/// (`Arc`) among their connections.
pub struct Daemon {
    options: DaemonOptions,
    model: Arc<Model>,
    worker: Arc<Worker>,
    events: tokio::sync::broadcast::Sender<Event>,
    /// Workspace statuses that changed (`status::spawn_watcher`).
    status_tx: tokio::sync::broadcast::Sender<WorkspaceStatus>,
    workspaces: Mutex<BTreeMap<PathBuf, OpenWorkspace>>,
    started: Instant,
    /// The next rewrite panics on the worker ([`Daemon::fail_next_rewrite`]).
    fail_next_rewrite: AtomicBool,
}

/// Longest text a rewrite takes (characters); longer selections are refused with this figure.
pub const MAX_REWRITE_CHARS: usize = 20_000;
/// Most non-blank lines one rewrite takes (each is one rewrite on the worker).
pub const MAX_REWRITE_LINES: usize = 200;

impl Daemon {
    /// Loads the model and starts the worker, with the default options (all layers on the GPU
    /// of a GPU build, adapters trained on the CPU).
    pub fn start(model_path: &Path) -> Result<Arc<Self>> {
        Self::start_with(model_path, DaemonOptions::default())
    }

    /// [`Daemon::start`] with options.
    pub fn start_with(model_path: &Path, options: DaemonOptions) -> Result<Arc<Self>> {
        // pema's cache folder holds the user's text (paraphrases, memories) and the daemon's
        // token: readable by the user only.
        let cache = crate::dirs::pema_cache();
        crate::fsutil::create_private_dir(&cache)
            .map_err(|e| anyhow::anyhow!("cannot create {}: {e}", cache.display()))?;
        {
            use std::os::unix::fs::PermissionsExt as _;
            let _ = std::fs::set_permissions(&cache, std::fs::Permissions::from_mode(0o700));
        }
        let model = Model::load_with(model_path, options.gpu_layers)?;
        let worker = Arc::new(Worker::start(&model, SessionOptions::default())?);
        let (events, _) = tokio::sync::broadcast::channel(1024);
        let (status_tx, _) = tokio::sync::broadcast::channel(256);
        let daemon = Arc::new(Self {
            options,
            model,
            worker,
            events,
            status_tx,
            workspaces: Mutex::new(BTreeMap::new()),
            started: Instant::now(),
            fail_next_rewrite: AtomicBool::new(false),
        });
        status::spawn_watcher(&daemon);
        Ok(daemon)
    }

    /// The loaded model.
    pub fn model(&self) -> &Arc<Model> {
        &self.model
    }

    /// Progress of background work, for every workspace.
    pub fn subscribe(&self) -> tokio::sync::broadcast::Receiver<Event> {
        self.events.subscribe()
    }

    /// Opens (or shares) the workspace at `path` and returns its root. Loading, reading files
    /// and learning happen in the background; this returns at once.
    pub fn open_workspace(&self, path: &Path) -> Result<PathBuf, RequestError> {
        let root = path.canonicalize().map_err(|e| {
            RequestError::InvalidRequest(format!(
                "cannot open the workspace {}: {e}",
                path.display()
            ))
        })?;
        if !root.is_dir() {
            return Err(RequestError::InvalidRequest(format!(
                "the workspace {} is not a folder",
                root.display()
            )));
        }
        crate::workspace::check_root(&root)
            .map_err(|e| RequestError::InvalidRequest(format!("{e:#}")))?;
        let mut all = self.workspaces.lock().unwrap();
        if let Some(w) = all.get_mut(&root) {
            w.users += 1;
            return Ok(root);
        }
        // The entry answers at once (state `loading`); settings, memory, adapter and the
        // watcher load on the workspace's own thread, not under the daemon's lock.
        let (tx, rx) = std::sync::mpsc::channel();
        let shared = Arc::new(pipeline::Published::loading(&root));
        let host = Host {
            model: self.model.clone(),
            worker: self.worker.clone(),
            events: self.events.clone(),
            train_device: self.options.train_device.clone(),
        };
        let (r, s, t) = (root.clone(), shared.clone(), tx.clone());
        std::thread::Builder::new()
            .name("pema-workspace".into())
            .spawn(move || run_workspace(&r, s, host, t, rx))
            .map_err(|e| RequestError::Failed(e.into()))?;
        all.insert(
            root.clone(),
            OpenWorkspace {
                shared,
                tx,
                users: 1,
            },
        );
        Ok(root)
    }

    /// Waits (blocking, without the daemon's lock) until the workspace at `root` has loaded
    /// from disk, or `timeout` passes.
    pub fn wait_loaded(&self, root: &Path, timeout: Duration) {
        let until = Instant::now() + timeout;
        while Instant::now() < until {
            let shared = match self.workspaces.lock().unwrap().get(root) {
                Some(w) => w.shared.clone(),
                None => return,
            };
            if shared.status.lock().unwrap().adapter.state != AdapterState::Loading {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits, off the async runtime, until the workspace a request names (or the only open one,
    /// as [`Daemon::rewrite`] picks it) has loaded from disk, or 60 s pass. Until then it has no
    /// adapter and not its own template (worked examples): a rewrite would fail as "not ready"
    /// or, in plain mode, use another prompt than the workspace's. Clients that open their
    /// workspace wait at opening; this is for workspaces opened by the command line
    /// (`pema serve --workspace`, `pema mcp --workspace`) that a first request may beat.
    pub async fn until_loaded(self: &Arc<Self>, workspace: Option<&Path>) {
        let root = {
            let all = self.workspaces.lock().unwrap();
            match workspace {
                Some(p) => root_of(&all, p).ok(),
                None if all.len() == 1 => all.keys().next().cloned(),
                None => None,
            }
        };
        if let Some(root) = root {
            self.until_root_loaded(root).await;
        }
    }

    /// Waits, off the async runtime, until the workspace at `root` has loaded (or 60 s pass).
    async fn until_root_loaded(self: &Arc<Self>, root: PathBuf) {
        let loading = self
            .with_workspace(&root, |w| {
                w.shared.status.lock().unwrap().adapter.state == AdapterState::Loading
            })
            .unwrap_or(false);
        if loading {
            let d = self.clone();
            let _ =
                tokio::task::spawn_blocking(move || d.wait_loaded(&root, Duration::from_secs(60)))
                    .await;
        }
    }

    /// One user fewer; the last one closes the workspace (its files stay on disk).
    pub fn close_workspace(&self, root: &Path) {
        let mut all = self.workspaces.lock().unwrap();
        if let Some(w) = all.get_mut(root) {
            w.users -= 1;
            if w.users == 0 {
                let w = all.remove(root).unwrap();
                w.shared.closed.store(true, Ordering::SeqCst);
                let _ = w.tx.send(Signal::Stop);
            }
        }
    }

    /// The root of the open workspace that holds `path` (the innermost one).
    pub fn workspace_of(&self, path: &Path) -> Result<PathBuf, RequestError> {
        root_of(&self.workspaces.lock().unwrap(), path)
    }

    fn with_workspace<T>(
        &self,
        root: &Path,
        f: impl FnOnce(&OpenWorkspace) -> T,
    ) -> Result<T, RequestError> {
        let all = self.workspaces.lock().unwrap();
        all.get(root)
            .map(f)
            .ok_or_else(|| RequestError::NotInWorkspace {
                path: root.to_path_buf(),
                open: all.keys().cloned().collect(),
            })
    }

    /// `pema/status`: the daemon's state with every open workspace, or only the innermost one
    /// holding `root` ([`RequestError::NotInWorkspace`] when none does).
    pub fn status(&self, root: Option<&Path>) -> Result<DaemonStatus, RequestError> {
        let all = self.workspaces.lock().unwrap();
        let workspaces = match root {
            Some(r) => {
                let r = root_of(&all, r)?;
                vec![all[&r].shared.status.lock().unwrap().clone()]
            }
            None => all
                .values()
                .map(|w| w.shared.status.lock().unwrap().clone())
                .collect(),
        };
        Ok(DaemonStatus {
            version: env!("CARGO_PKG_VERSION"),
            model: self.model.info().name.clone(),
            uptime_seconds: self.started.elapsed().as_secs_f64(),
            queue: self.worker.status(),
            workspaces,
        })
    }

    /// `pema/files`: the files the workspace at `root` learns from, and why each other file or
    /// folder is passed over. Walks the tree (reading no file): call it off the async runtime.
    pub fn files(&self, root: &Path) -> Result<FilesReport, RequestError> {
        let shared = self.with_workspace(root, |w| w.shared.clone())?;
        let table = shared.files.lock().unwrap().clone();
        let table = match table {
            Some(t) => t,
            // Still loading: nothing read yet, every file pema will read is waiting.
            None => Arc::new(
                crate::workspace::Workspace::open(root)
                    .map_err(RequestError::Failed)?
                    .file_table(),
            ),
        };
        table
            .report(crate::workspace::FILES_LIMIT)
            .map_err(RequestError::Failed)
    }

    /// `pema/train`: train now (after any build under way).
    pub fn train(&self, root: &Path, from_scratch: bool) -> Result<(), RequestError> {
        self.with_workspace(root, |w| {
            let _ = w.tx.send(Signal::Train { from_scratch });
        })
    }

    /// Makes the next rewrite panic on the worker, for tests that a failing rewrite is answered
    /// and the worker goes on. Not for use otherwise.
    #[doc(hidden)]
    pub fn fail_next_rewrite(&self) {
        self.fail_next_rewrite.store(true, Ordering::SeqCst);
    }

    /// Makes the workspace's pipeline panic, for tests of its recovery. Not for use otherwise.
    #[doc(hidden)]
    pub fn inject_fault(&self, root: &Path) -> Result<(), RequestError> {
        self.with_workspace(root, |w| {
            let _ = w.tx.send(Signal::Fault);
        })
    }

    /// `pema/rebuild`: read every file again and rebuild the memory.
    pub fn rebuild(&self, root: &Path, from_scratch: bool) -> Result<(), RequestError> {
        self.with_workspace(root, |w| {
            let _ = w.tx.send(Signal::Rebuild { from_scratch });
        })
    }

    /// The worked examples (source, target) the workspace's prompt carries: pairs of its own,
    /// in front of every rewrite, drawn from its files when the memory was built.
    pub fn examples(&self, root: &Path) -> Result<Vec<(String, String)>, RequestError> {
        let all = self.workspaces.lock().unwrap();
        let r = root_of(&all, root)?;
        let s = all[&r].shared.serving.read().unwrap();
        Ok(s.template.worked_examples(&s.base_template))
    }
}

/// The innermost open workspace holding `path`.
fn root_of(all: &BTreeMap<PathBuf, OpenWorkspace>, path: &Path) -> Result<PathBuf, RequestError> {
    let canonical = path.canonicalize().unwrap_or_else(|_| path.to_path_buf());
    all.keys()
        .filter(|r| canonical.starts_with(r))
        .max_by_key(|r| r.as_os_str().len())
        .cloned()
        .ok_or_else(|| RequestError::NotInWorkspace {
            // As given: the answer says nothing of what the path resolves to outside.
            path: path.to_path_buf(),
            open: all.keys().cloned().collect(),
        })
}

/// Watches the workspace; changes inside the state folder and inside `.git` (other than ignore
/// files) are not the user's files and do not count.
fn watch(
    root: &Path,
    state_dir: &Path,
    tx: Sender<Signal>,
) -> Result<
    notify_debouncer_full::Debouncer<
        notify_debouncer_full::notify::RecommendedWatcher,
        notify_debouncer_full::RecommendedCache,
    >,
> {
    let state_dir = state_dir.to_path_buf();
    let tx = Mutex::new(tx);
    // Links inside the workspace are not followed: a link to `/` would otherwise watch the
    // whole machine.
    let mut d = notify_debouncer_full::new_debouncer_opt::<
        _,
        notify_debouncer_full::notify::RecommendedWatcher,
        notify_debouncer_full::RecommendedCache,
    >(
        Duration::from_millis(300),
        None,
        move |r: notify_debouncer_full::DebounceEventResult| {
            let relevant = match &r {
                // Opening and reading files (pema's own reads included) changes nothing.
                Ok(events) => events
                    .iter()
                    .filter(|e| !e.kind.is_access())
                    .flat_map(|e| e.paths.iter())
                    .any(|p| {
                        let in_git = p.components().any(|c| c.as_os_str() == ".git")
                            && p.file_name().is_none_or(|n| n != ".gitignore");
                        !p.starts_with(&state_dir) && !in_git
                    }),
                Err(_) => true,
            };
            if relevant {
                let _ = tx.lock().unwrap().send(Signal::Files);
            }
        },
        notify_debouncer_full::RecommendedCache::new(),
        notify_debouncer_full::notify::Config::default().with_follow_symlinks(false),
    )?;
    d.watch(root, RecursiveMode::Recursive)?;
    Ok(d)
}
