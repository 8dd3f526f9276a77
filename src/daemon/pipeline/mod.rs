//! One thread per open workspace: it keeps the file table fresh (on watcher signals), asks the
//! worker for paraphrases and memory builds, and trains the adapter on its own thread after the
//! memory has been quiet for a while. Nothing here runs on a request's path.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result};

mod build;
mod pseudo;
pub(super) use pseudo::{made_by as pseudo_sources_made_by, made_by_aliases};
mod train;

use super::events::{Event, Task, TaskProgress};
use super::worker::Worker;
use super::{AdapterState, WorkspaceStatus};
use crate::adapter::{self, Adapter, TrainOptions};
use crate::memory::{self, BuildOptions, BuildReport, KeyType, Memory, Template};
use crate::model::Model;
use crate::workspace::{
    paraphrase, state, FileTable, ParaphraseCache, PendingUnits, PseudoSources, StyleWords,
    Workspace,
};
use pseudo::made_by;
pub(super) use train::release_memory;

/// Units paraphrased per worker job: small enough that the pipeline sees progress often.
const PARAPHRASE_BATCH: usize = 8;
/// Units a batch takes their style words out of (0.1 to 0.2 s each on two cores).
const STYLE_WORDS_BATCH: usize = 64;
/// New pseudo-pairs after which the memory is rebuilt while paraphrasing goes on.
const BUILD_EVERY: usize = 64;

pub(crate) enum Signal {
    /// Files changed on disk (from the watcher), or a rescan was asked for.
    Files,
    /// `pema/rebuild`: read every file again and rebuild; from scratch discards memory and adapter.
    Rebuild {
        from_scratch: bool,
    },
    /// `pema/train`: train now instead of after the quiet period.
    Train {
        from_scratch: bool,
    },
    /// A paraphrase batch ended, with this many new paraphrases.
    Paraphrased(usize),
    Built(Result<BuildReport>),
    Trained(Result<Box<Adapter>>),
    Stop,
    /// Tests only ([`super::Daemon::inject_fault`]): the pipeline panics.
    Fault,
}

/// What a rewrite of this workspace uses, swapped whole when an adapter finishes training.
#[derive(Clone)]
pub(crate) struct Serving {
    pub adapter: Option<Arc<Adapter>>,
    pub template: Template,
    /// The workspace's template without worked examples (`.pema.toml`), to tell them apart.
    pub base_template: Template,
    pub lambda_max: Option<f32>,
}

/// What a workspace publishes for requests to read (status, the adapter and template serving
/// rewrites), written by its pipeline.
pub(crate) struct Published {
    pub root: PathBuf,
    pub status: Mutex<WorkspaceStatus>,
    pub serving: RwLock<Serving>,
    /// The file table after the last refresh (`pema/files`); None until the first one.
    pub files: Mutex<Option<Arc<FileTable>>>,
    pub closed: AtomicBool,
}

impl Published {
    /// A workspace being opened: it answers requests (state `loading`, no adapter) at once.
    pub fn loading(root: &Path) -> Self {
        let mut status = WorkspaceStatus {
            root: root.to_path_buf(),
            ..Default::default()
        };
        status.adapter.state = AdapterState::Loading;
        Self {
            root: root.to_path_buf(),
            status: Mutex::new(status),
            serving: RwLock::new(Serving {
                adapter: None,
                template: Template::default(),
                base_template: Template::default(),
                // Unused until an adapter serves (only plain rewrites run before).
                lambda_max: Default::default(),
            }),
            files: Mutex::new(None),
            closed: AtomicBool::new(false),
        }
    }
}

pub(crate) struct Pipeline {
    ws: Workspace,
    cache: Arc<Mutex<ParaphraseCache>>,
    model: Arc<Model>,
    worker: Arc<Worker>,
    events: tokio::sync::broadcast::Sender<Event>,
    shared: Arc<Published>,
    tx: Sender<Signal>,
    paraphrasing: Option<TaskProgress>,
    /// A paraphrase batch is on the worker (it signals `Paraphrased` when done).
    paraphrase_in_flight: bool,
    paraphrase_total: usize,
    paraphrased_since_build: usize,
    building: bool,
    training: Option<Arc<AtomicBool>>,
    need_refresh: bool,
    need_build: bool,
    replace_memory: bool,
    /// When the memory last changed; training waits for a quiet period after it.
    memory_changed: Option<Instant>,
    train_now: Option<bool>,
    memory_digest: Option<String>,
    /// The memory whose training last failed: not retried until the memory changes (or a
    /// `pema/train` asks), so that a memory training cannot use (one pair) does not loop.
    failed_digest: Option<String>,
    /// Where adapters train.
    train_device: candle_core::Device,
    /// The workspace's style words (`pseudo_sources = "style-words"`), kept in its state folder.
    style_words: Option<StyleWords>,
}

impl Pipeline {
    /// Opens the workspace: settings, the memory and adapter already on disk (no recomputation),
    /// and the paraphrase cache. Files are read on the pipeline thread, not here.
    /// `shared` is the workspace's entry in the daemon, already answering requests (state
    /// `loading`); this fills it in.
    pub fn open(
        root: &Path,
        shared: Arc<Published>,
        model: Arc<Model>,
        worker: Arc<Worker>,
        events: tokio::sync::broadcast::Sender<Event>,
        tx: Sender<Signal>,
        train_device: candle_core::Device,
    ) -> Result<Self> {
        let ws = Workspace::open(root)?;
        let state_dir = ws.state_dir().to_path_buf();
        crate::fsutil::create_private_dir(&state_dir)
            .with_context(|| format!("cannot create the state folder {}", state_dir.display()))?;
        let style_words = StyleWords::load(&state_dir);
        let how = ws.config().pseudo_sources;
        let made_by = made_by(how, style_words.as_ref(), &model);
        let before = pseudo::made_by_aliases(how, style_words.as_ref(), &model);
        let (cache, cache_warning) = ParaphraseCache::load_any(&state_dir, &made_by, &before);
        let mut status = WorkspaceStatus {
            root: ws.root().to_path_buf(),
            state_dir: state_dir.clone(),
            ..Default::default()
        };
        status.config_error = ws.config_error().map(String::from);
        status.errors.extend(cache_warning);
        let config = ws.config().clone();
        let mut serving = Serving {
            adapter: None,
            template: config.template(),
            base_template: config.template(),
            lambda_max: config.lambda_max,
        };
        let mut memory_digest = None;
        match Memory::open(&state_dir.join(state::MEMORY_DIR)) {
            Ok(m) => {
                status.memory.entries = m.len();
                status.memory.pairs = m.groups().len();
                memory_digest = Some(m.digest());
            }
            Err(e)
                if state_dir
                    .join(state::MEMORY_DIR)
                    .join(memory::format::FILE_NAME)
                    .exists() =>
            {
                status.errors.push(format!("{e:#}; it will be rebuilt"));
            }
            Err(_) => {}
        }
        let adapter_path = state_dir.join(state::ADAPTER_FILE);
        if adapter_path.exists() {
            match model
                .head()
                .and_then(|head| Adapter::load_for(&adapter_path, model.info(), &head))
            {
                Ok(a) => {
                    status.adapter.held_out_loss = Some(a.info().training.held_out_loss);
                    status.adapter.held_out_ce = Some(a.info().training.held_out_ce);
                    status.adapter.available = true;
                    if let Ok(t) = a.template() {
                        serving.template = t;
                    }
                    serving.adapter = Some(Arc::new(a));
                }
                Err(e) => status
                    .errors
                    .push(format!("{e:#}; a new adapter will be trained")),
            }
        }
        {
            let mut st = shared.status.lock().unwrap();
            // Problems recorded before (an earlier run of the pipeline) are kept.
            let earlier = std::mem::take(&mut st.errors);
            *st = status;
            for e in earlier.into_iter().rev() {
                st.errors.insert(0, e);
            }
        }
        *shared.serving.write().unwrap() = serving;
        let p = Self {
            ws,
            cache: Arc::new(Mutex::new(cache)),
            model,
            worker,
            events,
            shared: shared.clone(),
            tx,
            paraphrasing: None,
            paraphrase_in_flight: false,
            paraphrase_total: 0,
            paraphrased_since_build: 0,
            building: false,
            training: None,
            need_refresh: true,
            need_build: true,
            replace_memory: false,
            memory_changed: None,
            train_now: None,
            memory_digest,
            failed_digest: None,
            train_device,
            style_words,
        };
        p.publish_state();
        Ok(p)
    }

    pub fn run(mut self, rx: &Receiver<Signal>) {
        self.step();
        self.publish_state();
        loop {
            // Whatever is in flight signals its end; only the quiet period needs a timeout.
            let idle = self.training.is_none() && !self.building && !self.paraphrase_in_flight;
            let timeout = match self.quiet_left() {
                Some(t) if idle => t,
                _ => Duration::from_secs(3600),
            };
            let first = match rx.recv_timeout(timeout) {
                Ok(s) => Some(s),
                Err(RecvTimeoutError::Timeout) => None,
                Err(RecvTimeoutError::Disconnected) => break,
            };
            let mut stop = false;
            for s in first
                .into_iter()
                .chain(std::iter::from_fn(|| rx.try_recv().ok()))
            {
                stop |= self.handle(s);
            }
            if stop || self.shared.closed.load(Ordering::SeqCst) {
                break;
            }
            self.step();
            self.publish_state();
        }
        if let Some(c) = &self.training {
            c.store(true, Ordering::SeqCst);
        }
        let _ = self.cache.lock().unwrap().save();
    }

    /// Takes a signal in; true means stop.
    fn handle(&mut self, s: Signal) -> bool {
        match s {
            Signal::Files => self.need_refresh = true,
            Signal::Rebuild { from_scratch } => {
                self.ws.forget_files();
                self.need_refresh = true;
                self.need_build = true;
                if from_scratch {
                    self.replace_memory = true;
                    self.train_now = Some(true);
                }
            }
            Signal::Train { from_scratch } => self.train_now = Some(from_scratch),
            Signal::Paraphrased(n) => {
                self.paraphrase_in_flight = false;
                self.paraphrased_since_build += n;
            }
            Signal::Built(r) => {
                self.building = false;
                self.built(r);
            }
            Signal::Trained(r) => {
                self.training = None;
                self.trained(r.map(|a| *a));
            }
            Signal::Stop => return true,
            Signal::Fault => panic!("fault injected into the pipeline"),
        }
        false
    }

    fn step(&mut self) {
        if self.need_refresh {
            self.need_refresh = false;
            match self.ws.refresh() {
                Ok(r) => {
                    if r.files_read > 0 || r.files_removed > 0 || r.config_reloaded {
                        self.need_build = true;
                    }
                    let mut st = self.shared.status.lock().unwrap();
                    st.last_refresh = r;
                    st.files_read += r.files_read;
                    st.config_error = self.ws.config_error().map(String::from);
                    drop(st);
                    *self.shared.files.lock().unwrap() = Some(Arc::new(self.ws.file_table()));
                    self.update_style_words();
                    // Paraphrases of units no longer in the workspace are not kept, nor those
                    // made another way than the settings now say.
                    let made_by = self.made_by();
                    let mut cache = self.cache.lock().unwrap();
                    cache.set_made_by(&made_by);
                    cache.retain_units(self.ws.units());
                    drop(cache);
                    let c = self.ws.config();
                    let mut s = self.shared.serving.write().unwrap();
                    s.lambda_max = c.lambda_max;
                    s.base_template = c.template();
                    if s.adapter.is_none() {
                        s.template = c.template();
                    }
                }
                Err(e) => self.error(format!("{e:#}")),
            }
        }
        if self.paraphrase_in_flight || self.building {
            return;
        }
        let set = self.ws.pairs(&self.cache.lock().unwrap());
        {
            let mut st = self.shared.status.lock().unwrap();
            let c = self.ws.counts();
            st.files = c.corpus_files + c.pairs_files;
            st.corpus_files = c.corpus_files;
            st.pairs_files = c.pairs_files;
            st.units = c.units;
            st.units_pending = set.pending.len();
            st.pairs = set.pairs.len();
            st.skipped = self.ws.skipped();
        }
        if set.pending.is_empty() {
            // Every unit that gets a pseudo-source has one: that task ends here, not after the
            // build it leads to.
            self.paraphrasing = None;
            self.paraphrase_total = 0;
        }
        // A unit's style words are taken out in about half of what the memory build then spends on
        // it: its pseudo-source is made before it enters the memory. A paraphrase costs more than
        // the build, so meanwhile its unit stands for itself (`pending_units = "identity"`).
        let cheap = self.ws.config().pseudo_sources == PseudoSources::StyleWords;
        let stand_in = self.ws.config().pending_units == PendingUnits::Identity && !cheap;
        // Changed files enter the memory at once when pending units stand in as identity pairs.
        // New paraphrases are gathered: the memory is rebuilt when none is pending any more, or
        // every BUILD_EVERY of them, so a large workspace is not rewritten after every batch.
        let files_due = self.need_build && (set.pending.is_empty() || stand_in);
        let paraphrases_due = self.paraphrased_since_build > 0
            && (set.pending.is_empty()
                || (!cheap
                    && (self.paraphrased_since_build >= BUILD_EVERY
                        || self.memory_digest.is_none())));
        if files_due || paraphrases_due {
            self.need_build = false;
            self.paraphrased_since_build = 0;
            if set.pairs.is_empty() {
                self.error(
                    "no pairs yet: the workspace has no prose files (Markdown, text, \
                     reStructuredText, AsciiDoc) or *.pairs.jsonl files pema reads"
                        .into(),
                );
            } else {
                self.start_build(set.pairs);
                return;
            }
        }
        if !set.pending.is_empty() {
            // A workspace with no adapter yet gets one trained on the memory as it stands (units
            // standing for themselves) before any paraphrasing: its first style-adapted rewrite
            // comes in minutes, not after every unit is paraphrased. Paraphrasing waits for that
            // training, which would otherwise share the cores with it.
            if stand_in && self.first_adapter_due() {
                if self.training.is_none() && self.should_train() {
                    self.start_training();
                }
                return;
            }
            self.start_paraphrase(set.pending);
            return;
        }
        if self.training.is_none() && self.should_train() {
            self.start_training();
        }
    }

    fn error(&self, e: String) {
        tracing::warn!("{}: {e}", self.shared.root.display());
        self.shared.status.lock().unwrap().push_error(e);
    }

    fn publish_state(&self) {
        let fresh = {
            let s = self.shared.serving.read().unwrap();
            s.adapter
                .as_ref()
                .is_some_and(|a| self.memory_digest.as_ref() == Some(&a.info().memory_digest))
        };
        let mut st = self.shared.status.lock().unwrap();
        st.adapter.state =
            if self.training.is_some() || (self.train_now.is_some() && !self.building) {
                AdapterState::Training
            } else if self.building
                || self.paraphrase_in_flight
                || st.units_pending > 0
                || self.need_build
                || (self.memory_changed.is_some() && !fresh)
            {
                AdapterState::Building
            } else if st.adapter.available {
                // Fresh, or an adapter of an earlier memory serving while nothing newer can be
                // trained (`stale` tells them apart).
                AdapterState::Ready
            } else {
                AdapterState::None
            };
        st.adapter.stale = st.adapter.available && !fresh;
    }
}

fn short(s: &str) -> String {
    if s.chars().count() > 60 {
        format!("{}…", s.chars().take(60).collect::<String>())
    } else {
        s.to_string()
    }
}
