//! One thread per open workspace: it keeps the file table fresh (on watcher signals), asks the
//! worker for paraphrases and memory builds, and trains the adapter on its own thread after the
//! memory has been quiet for a while. Nothing here runs on a request's path.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result};

use super::events::{Event, Task, TaskProgress};
use super::worker::Worker;
use super::{AdapterState, WorkspaceStatus};
use crate::adapter::{self, Adapter, TrainOptions};
use crate::memory::{self, BuildOptions, BuildReport, KeyType, Memory, Template};
use crate::model::Model;
use crate::workspace::{
    paraphrase, state, FileTable, ParaphraseCache, PendingUnits, PseudoSources, Workspace,
};

/// Units paraphrased per worker job: small enough that the pipeline sees progress often.
const PARAPHRASE_BATCH: usize = 8;
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
    Trained(Result<Adapter>),
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
    ) -> Result<Self> {
        let ws = Workspace::open(root)?;
        let state_dir = ws.state_dir().to_path_buf();
        crate::fsutil::create_private_dir(&state_dir)
            .with_context(|| format!("cannot create the state folder {}", state_dir.display()))?;
        let made_by = made_by(ws.config().pseudo_sources, &model);
        let (cache, cache_warning) = ParaphraseCache::load(&state_dir, &made_by);
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
            match Adapter::load_for(&adapter_path, model.info(), model.head()) {
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
                self.trained(r);
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
        let identity = self.ws.config().pending_units == PendingUnits::Identity;
        // Changed files enter the memory at once when pending units stand in as identity pairs.
        // New paraphrases are gathered: the memory is rebuilt when none is pending any more, or
        // every BUILD_EVERY of them, so a large workspace is not rewritten after every batch.
        let files_due = self.need_build && (set.pending.is_empty() || identity);
        let paraphrases_due = self.paraphrased_since_build > 0
            && (set.pending.is_empty()
                || self.paraphrased_since_build >= BUILD_EVERY
                || self.memory_digest.is_none());
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
            self.start_paraphrase(set.pending);
            return;
        }
        self.paraphrasing = None;
        self.paraphrase_total = 0;
        if self.training.is_none() && self.should_train() {
            self.start_training();
        }
    }

    fn made_by(&self) -> String {
        made_by(self.ws.config().pseudo_sources, &self.model)
    }

    fn start_paraphrase(&mut self, pending: Vec<String>) {
        if self.paraphrasing.is_none() {
            self.paraphrase_total = pending.len();
            self.paraphrasing = Some(TaskProgress::begin(
                &self.events,
                self.shared.root.clone(),
                Task::Paraphrase,
                format!("{} units", pending.len()),
            ));
        }
        let total = self.paraphrase_total.max(pending.len());
        let done = total - pending.len();
        if let Some(p) = &mut self.paraphrasing {
            p.report((100 * done / total.max(1)) as u32, || {
                format!("{done}/{total} units")
            });
        }
        self.paraphrase_in_flight = true;
        let batch: Vec<String> = pending.into_iter().take(PARAPHRASE_BATCH).collect();
        let how = self.ws.config().pseudo_sources;
        let made_by = self.made_by();
        let cache = self.cache.clone();
        let shared = self.shared.clone();
        let tx = self.tx.clone();
        self.worker.background(
            format!("paraphrase {}", self.shared.root.display()),
            Box::new(move |session, y| {
                let mut errors = vec![];
                // Whatever happens in the batch, it reports its end (a panic included, its units
                // then standing for themselves so that they are not retried forever).
                let ran = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    let job = PseudoJob {
                        how,
                        made_by: &made_by,
                        cache: &cache,
                    };
                    paraphrase_batch(session, y, &batch, &job, &shared, &mut errors)
                }));
                if ran.is_err() {
                    errors.push(format!(
                        "paraphrasing {} units failed inside pema (a bug); they stand for \
                         themselves",
                        batch.len()
                    ));
                    let mut c = cache.lock().unwrap_or_else(|p| p.into_inner());
                    for unit in &batch {
                        if c.get(unit).is_none() {
                            c.insert(unit, unit.clone());
                        }
                    }
                }
                if let Err(e) = cache.lock().unwrap_or_else(|p| p.into_inner()).save() {
                    errors.push(format!("{e:#}"));
                }
                let mut st = shared.status.lock().unwrap_or_else(|p| p.into_inner());
                st.units_paraphrased += batch.len();
                for e in errors {
                    st.push_error(e);
                }
                drop(st);
                let _ = tx.send(Signal::Paraphrased(batch.len()));
            }),
        );
    }
}

/// What made the pseudo-sources of a workspace: the way its settings say, and the model.
fn made_by(how: PseudoSources, model: &Model) -> String {
    format!("{} {}", paraphrase::version(how), model.info().identity)
}

/// How a batch makes pseudo-sources, and the cache they go to (only while it still takes
/// pseudo-sources made that way: the settings may change while the batch runs).
struct PseudoJob<'a> {
    how: PseudoSources,
    made_by: &'a str,
    cache: &'a Mutex<ParaphraseCache>,
}

/// Makes the pseudo-sources of one batch on the worker, giving way to rewrites between tokens.
fn paraphrase_batch(
    session: &mut crate::model::Session,
    y: &super::worker::Yield,
    batch: &[String],
    job: &PseudoJob,
    shared: &Published,
    errors: &mut Vec<String>,
) {
    let PseudoJob {
        how,
        made_by,
        cache,
    } = *job;
    for unit in batch {
        let p = loop {
            if shared.closed.load(Ordering::SeqCst) {
                break None;
            }
            match paraphrase::pseudo_source(session, unit, how, Some(y.waiting())) {
                Ok(p) => break Some(p),
                Err(e) if crate::is_cancelled(&e) => y.serve_waiting(session),
                Err(e) => {
                    // Kept as its own paraphrase so that it is not retried forever.
                    errors.push(format!("cannot paraphrase {:?}: {e:#}", short(unit)));
                    break Some(unit.clone());
                }
            }
        };
        if let Some(p) = p {
            let p = if p.is_empty() { unit.clone() } else { p };
            let mut c = cache.lock().unwrap();
            if c.made_by() == made_by {
                c.insert(unit, p);
            }
        }
    }
}

impl Pipeline {
    fn start_build(&mut self, pairs: Vec<memory::Pair>) {
        self.building = true;
        let c = self.ws.config();
        let opts_template = c.template();
        let shots = c.shots;
        let cap = c.memory_cap;
        let out = self.ws.state_dir().join(state::MEMORY_DIR);
        let replace = std::mem::take(&mut self.replace_memory);
        if replace {
            let _ = std::fs::remove_file(out.join(memory::format::FILE_NAME));
        }
        let shared = self.shared.clone();
        let tx = self.tx.clone();
        let events = self.events.clone();
        self.worker.background(
            format!("memory {}", self.shared.root.display()),
            Box::new(move |session, y| {
                let mut progress = TaskProgress::begin(
                    &events,
                    shared.root.clone(),
                    Task::Memory,
                    format!("{} pairs", pairs.len()),
                );
                let opts = BuildOptions {
                    pairs_files: vec![],
                    template: opts_template,
                    out,
                    key_type: KeyType::F16,
                    // The workspace's own memory: a settings change (template) replaces it.
                    replace: true,
                    cancel: Some(&shared.closed),
                    max_entries: Some(cap),
                    shots,
                };
                // A panic in the build is reported as a failed build (the previous memory file
                // is whole: it is replaced only by rename).
                let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    memory::build_pairs(
                        session,
                        pairs,
                        &opts,
                        |p| {
                            let pct = (100 * p.tokens_done / p.tokens_total.max(1)) as u32;
                            progress.report(pct, || {
                                format!("{}/{} new pairs", p.pairs_done, p.pairs_total)
                            })
                        },
                        |s| {
                            y.serve_waiting(s);
                            Ok(())
                        },
                    )
                }))
                .unwrap_or_else(|_| Err(anyhow::anyhow!("the build failed inside pema (a bug)")));
                progress.finish(match &r {
                    Ok(r) => format!(
                        "{} entries; {} pairs computed, {} reused",
                        r.entries, r.pairs_computed, r.pairs_reused
                    ),
                    Err(e) => format!("failed: {e:#}"),
                });
                release_memory();
                let _ = tx.send(Signal::Built(r));
            }),
        );
    }

    fn built(&mut self, r: Result<BuildReport>) {
        let r = match r {
            Ok(r) => r,
            Err(e) if crate::is_cancelled(&e) => return,
            Err(e) => return self.error(format!("memory build failed: {e:#}")),
        };
        let dir = self.ws.state_dir().join(state::MEMORY_DIR);
        let digest = match Memory::open(&dir) {
            Ok(m) => m.digest(),
            Err(e) => return self.error(format!("{e:#}")),
        };
        let changed = self.memory_digest.as_ref() != Some(&digest);
        if changed {
            self.memory_digest = Some(digest);
            self.memory_changed = Some(Instant::now());
            // A training on the previous memory is stale.
            if let Some(c) = &self.training {
                c.store(true, Ordering::SeqCst);
            }
        }
        let mut st = self.shared.status.lock().unwrap();
        st.memory.entries = r.entries;
        st.memory.pairs = r.pairs;
        st.memory.builds += 1;
        st.memory.last_build = Some(r);
    }

    fn should_train(&self) -> bool {
        let Some(digest) = &self.memory_digest else {
            return false;
        };
        if self.train_now.is_some() {
            return true;
        }
        let s = self.shared.serving.read().unwrap();
        let fresh = s
            .adapter
            .as_ref()
            .is_some_and(|a| &a.info().memory_digest == digest);
        // Train once the memory has been quiet long enough, or at once when it did not change
        // in this run (a restart found an adapter older than the memory).
        !fresh && (self.memory_changed.is_none() || self.quiet_left() == Some(Duration::ZERO))
    }

    /// Time left before the memory counts as quiet (zero once it does).
    fn quiet_left(&self) -> Option<Duration> {
        let quiet = Duration::from_secs_f64(self.ws.config().retrain_after_seconds.max(0.0));
        self.memory_changed
            .map(|t| quiet.saturating_sub(t.elapsed()))
    }

    fn start_training(&mut self) {
        let from_scratch = self.train_now.take().unwrap_or(false);
        self.memory_changed = None;
        let cancel = Arc::new(AtomicBool::new(false));
        self.training = Some(cancel.clone());
        let dir = self.ws.state_dir().to_path_buf();
        let rank = self.ws.config().rank;
        let warm = if from_scratch {
            None
        } else {
            self.shared.serving.read().unwrap().adapter.clone()
        };
        let model = self.model.clone();
        let shared = self.shared.clone();
        let tx = self.tx.clone();
        let events = self.events.clone();
        let spawned = std::thread::Builder::new()
            .name("pema-train".into())
            .spawn(move || {
                let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    let memory = Memory::open(&dir.join(state::MEMORY_DIR))?;
                    memory.check_tokens(model.info().n_vocab)?;
                    // Warm start only from an adapter that fits this memory and rank.
                    let warm = warm.filter(|w| {
                        w.check_memory(&memory).is_ok()
                            && w.info().rank == rank.min(memory.hidden_size())
                    });
                    let mut progress = TaskProgress::begin(
                        &events,
                        shared.root.clone(),
                        Task::Training,
                        format!(
                            "{} entries{}",
                            memory.len(),
                            if warm.is_some() { ", warm start" } else { "" }
                        ),
                    );
                    let opts = TrainOptions {
                        rank: rank.min(memory.hidden_size()),
                        cancel: Some(&cancel),
                        warm_start: warm.as_deref(),
                        ..Default::default()
                    };
                    let mut a = adapter::train(&memory, model.head(), model.info(), &opts, |p| {
                        let done = p.epoch * p.steps_per_epoch.max(1) + p.step;
                        let all = p.max_epochs * p.steps_per_epoch.max(1);
                        progress.report((100 * done / all.max(1)) as u32, || {
                            format!(
                                "epoch {}, held-out loss {:.3}",
                                p.epoch + 1,
                                p.held_out_loss
                            )
                        });
                    })?;
                    a.save(&dir.join(state::ADAPTER_FILE))?;
                    a.prepare(model.head())?;
                    progress.finish(format!(
                        "held-out loss {:.3}",
                        a.info().training.held_out_loss
                    ));
                    Ok(a)
                }))
                .unwrap_or_else(|_| {
                    Err(anyhow::anyhow!(
                        "training failed inside pema (a bug); the previous adapter is kept"
                    ))
                });
                release_memory();
                let _ = tx.send(Signal::Trained(r));
            });
        if let Err(e) = spawned {
            self.training = None;
            self.error(format!("cannot start training: {e}"));
        }
    }

    fn trained(&mut self, r: Result<Adapter>) {
        match r {
            Ok(a) => {
                let mut st = self.shared.status.lock().unwrap();
                st.adapter.held_out_loss = Some(a.info().training.held_out_loss);
                st.adapter.held_out_ce = Some(a.info().training.held_out_ce);
                st.adapter.available = true;
                st.adapter.trainings += 1;
                drop(st);
                let mut s = self.shared.serving.write().unwrap();
                if let Ok(t) = a.template() {
                    s.template = t;
                }
                s.adapter = Some(Arc::new(a));
            }
            Err(e) if crate::is_cancelled(&e) => {}
            Err(e) => self.error(format!("training failed: {e:#}")),
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

/// Training's and building's buffers are freed, but glibc keeps the pages; hand them back so
/// that an idle daemon stays small.
fn release_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only releases free heap pages; it has no preconditions.
    unsafe {
        libc::malloc_trim(0);
    }
}

fn short(s: &str) -> String {
    if s.chars().count() > 60 {
        format!("{}…", s.chars().take(60).collect::<String>())
    } else {
        s.to_string()
    }
}
