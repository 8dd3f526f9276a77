//! What the daemon reports of itself and its workspaces (`pema/status`), in the user's terms;
//! the server's `to_proto` puts it on the wire.

use std::path::PathBuf;

use super::QueueStatus;
use crate::memory::BuildReport;
use crate::workspace::{Refresh, Skipped};

/// Where a workspace's adapter stands.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum AdapterState {
    /// No adapter and nothing under way (e.g. no files to learn from).
    #[default]
    None,
    /// The workspace is being opened (settings, memory and adapter loading from disk).
    Loading,
    /// Paraphrasing or building the memory.
    Building,
    /// Training a new adapter (an earlier one, if any, serves rewrites meanwhile).
    Training,
    /// An adapter serves rewrites and nothing newer is under way.
    Ready,
}

/// What the status says of a workspace's memory.
#[derive(Clone, Debug, Default)]
pub struct MemoryStatus {
    /// Rows in the memory: one per target token of its pairs (0 while there is no memory).
    pub entries: usize,
    /// Pairs the memory was built from.
    pub pairs: usize,
    /// Builds since the daemon started (a build that changes nothing writes nothing).
    pub builds: usize,
    /// Every count of the latest build; None until a build since the daemon started.
    pub last_build: Option<BuildReport>,
}

/// What the status says of a workspace's adapter.
#[derive(Clone, Debug, Default)]
pub struct AdapterStatus {
    /// Where the adapter stands: loading, building, training, ready or none.
    pub state: AdapterState,
    /// An adapter is loaded: rewrites in the `gu` and `fixed` modes work.
    pub available: bool,
    /// The loaded adapter was trained on an earlier memory.
    pub stale: bool,
    /// The loaded adapter's training loss on the held-out pairs' entries at its best epoch
    /// (reconstruction and cross-entropy mixed, docs/method.md §3; lower is better); None while no
    /// adapter is loaded.
    pub held_out_loss: Option<f32>,
    /// The loaded adapter's mean cross-entropy of the next token on the held-out pairs' entries
    /// (lower is better); None while no adapter is loaded.
    pub held_out_ce: Option<f32>,
    /// Trainings finished since the daemon started.
    pub trainings: usize,
}

/// What `pema/status` says of one open workspace. The file and unit counts are those of the
/// latest refresh of its files (0 until the first).
#[derive(Clone, Debug, Default)]
pub struct WorkspaceStatus {
    /// The workspace's root folder, symbolic links resolved.
    pub root: PathBuf,
    /// The folder holding the workspace's memory, adapter and caches.
    pub state_dir: PathBuf,
    /// Files learned from: `corpus_files` + `pairs_files`.
    pub files: usize,
    /// Prose files read (Markdown, text, …), each cut into units.
    pub corpus_files: usize,
    /// `*.pairs.jsonl` files read.
    pub pairs_files: usize,
    /// Units (sentences or paragraphs, as `.pema.toml` says) cut from the corpus files.
    pub units: usize,
    /// Units paraphrased since the daemon started (the rest came from the cache).
    pub units_paraphrased: usize,
    /// Units whose paraphrase is not ready yet (of those within `paraphrase_limit`).
    pub units_pending: usize,
    /// Pairs the next memory build takes: those of the pairs files, one per paraphrased unit
    /// and, with `pending_units = "identity"`, one per unit still pending.
    pub pairs: usize,
    /// The workspace's memory.
    pub memory: MemoryStatus,
    /// The workspace's adapter.
    pub adapter: AdapterStatus,
    /// What the latest refresh of the files found.
    pub last_refresh: Refresh,
    /// Files read (new or changed) since the daemon started.
    pub files_read: usize,
    /// Files not read and lines of pairs files skipped, each with why.
    pub skipped: Vec<Skipped>,
    /// The most recent problems, oldest first.
    pub errors: Vec<String>,
    /// Why `.pema.toml` could not be used (the defaults or the previous settings apply);
    /// None when it loaded or there is none.
    pub config_error: Option<String>,
}

impl WorkspaceStatus {
    pub(super) fn push_error(&mut self, e: String) {
        const KEEP: usize = 20;
        self.errors.push(e);
        if self.errors.len() > KEEP {
            self.errors.remove(0);
        }
    }
}

/// What `pema/status` answers: the daemon and its open workspaces.
#[derive(Clone, Debug)]
pub struct DaemonStatus {
    /// pema's version (its Cargo package version).
    pub version: &'static str,
    /// The loaded model's name (from its file's metadata, else the file's name).
    pub model: String,
    /// Seconds since the daemon started.
    pub uptime_seconds: f64,
    /// What the inference worker is doing and has waiting.
    pub queue: QueueStatus,
    /// The open workspaces, or only the one asked for.
    pub workspaces: Vec<WorkspaceStatus>,
}

/// How often the status watcher compares each workspace's status with what it last pushed: at
/// most this many `pema/statusChanged` a second per workspace, however busy a build is.
const STATUS_EVERY: std::time::Duration = std::time::Duration::from_millis(250);

/// What a client's status line shows of a workspace; a change in any of it is pushed.
#[derive(PartialEq)]
struct Shown {
    state: AdapterState,
    available: bool,
    stale: bool,
    entries: usize,
    memory_pairs: usize,
    units: usize,
    units_pending: usize,
    pairs: usize,
    trainings: usize,
    // Bits, so that equality is plain equality.
    held_out_loss: Option<u32>,
    errors: Vec<String>,
    config_error: Option<String>,
}

impl Shown {
    fn of(s: &WorkspaceStatus) -> Self {
        Self {
            state: s.adapter.state,
            available: s.adapter.available,
            stale: s.adapter.stale,
            entries: s.memory.entries,
            memory_pairs: s.memory.pairs,
            units: s.units,
            units_pending: s.units_pending,
            pairs: s.pairs,
            trainings: s.adapter.trainings,
            held_out_loss: s.adapter.held_out_loss.map(f32::to_bits),
            errors: s.errors.clone(),
            config_error: s.config_error.clone(),
        }
    }
}

impl super::Daemon {
    /// Status changes of every open workspace (its state, memory, adapter, errors), sampled at
    /// most four times a second; the server pushes them as `pema/statusChanged`. A workspace is
    /// sent once when first seen after someone subscribed.
    pub fn subscribe_status(&self) -> tokio::sync::broadcast::Receiver<WorkspaceStatus> {
        self.status_tx.subscribe()
    }
}

/// Starts the thread that compares the workspaces' statuses with what it last sent (the
/// pipeline only writes its status; nothing there needs to know who listens). It sleeps while
/// nobody subscribes and ends with the daemon.
pub(super) fn spawn_watcher(daemon: &std::sync::Arc<super::Daemon>) {
    let weak = std::sync::Arc::downgrade(daemon);
    let spawned = std::thread::Builder::new()
        .name("pema-status".into())
        .spawn(move || {
            let mut last: std::collections::HashMap<PathBuf, Shown> = Default::default();
            loop {
                std::thread::sleep(STATUS_EVERY);
                let Some(d) = weak.upgrade() else { return };
                if d.status_tx.receiver_count() == 0 {
                    // A later subscriber hears every workspace once.
                    last.clear();
                    continue;
                }
                let mut changed = vec![];
                {
                    let all = d.workspaces.lock().unwrap();
                    last.retain(|root, _| all.contains_key(root));
                    for (root, w) in all.iter() {
                        let st = w.shared.status.lock().unwrap();
                        let shown = Shown::of(&st);
                        if last.get(root) != Some(&shown) {
                            last.insert(root.clone(), shown);
                            changed.push(st.clone());
                        }
                    }
                }
                for st in changed {
                    // No receiver left is fine.
                    let _ = d.status_tx.send(st);
                }
            }
        });
    if let Err(e) = spawned {
        tracing::warn!("cannot start the status watcher ({e}); clients get no pema/statusChanged");
    }
}
