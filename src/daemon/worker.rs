//! The inference worker: one thread that owns the llama.cpp context. Rewrites and background
//! work (paraphrasing, memory building) reach it through one queue; rewrites always go first,
//! and background work yields to a waiting rewrite: a memory batch stops mid-decode (and runs
//! again after the rewrite), a paraphrase between two tokens.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};

use anyhow::Result;
use tokio::sync::mpsc::UnboundedSender;

use super::{RequestError, RewriteEvent};
use crate::adapter::Adapter;
use crate::decode::{self, Rewrite, RewriteOptions, TextEvent};
use crate::memory::Template;
use crate::model::{Model, Session, SessionOptions};

/// After background work that asked llama.cpp for more output rows than this in one decode,
/// the context is made anew so that its output buffer (rows × V floats) does not stay.
const SHED_ABOVE_ROWS: usize = 16;

/// A rewrite waiting for the worker.
pub struct RewriteJob {
    pub text: String,
    pub template: Template,
    pub adapter: Option<Arc<Adapter>>,
    pub options: RewriteOptions,
    /// Where the text goes as it grows, then the rewrite's end.
    pub events: UnboundedSender<RewriteEvent>,
    pub cancel: Arc<AtomicBool>,
    /// Panic on the worker instead (the test that a failing rewrite is answered and the
    /// worker goes on).
    pub fault: bool,
}

/// Background work: runs on the worker with its session; it must call
/// [`Yield::serve_waiting`] between steps and stop its current step when
/// [`Yield::waiting`] turns true.
pub type BackgroundJob = Box<dyn FnOnce(&mut Session, &Yield) + Send>;

#[derive(Default)]
struct Queues {
    rewrites: VecDeque<RewriteJob>,
    background: VecDeque<(String, BackgroundJob)>,
    /// What the worker is doing now.
    busy: Option<String>,
    shutdown: bool,
}

/// The worker's queues and what wakes it, shared with those who queue work.
struct Inbox {
    queues: Mutex<Queues>,
    wake: Condvar,
    /// True while a rewrite waits: background work checks it between tokens, and llama.cpp
    /// between the graph nodes of a memory batch (the session's interrupt flag).
    rewrite_waiting: Arc<AtomicBool>,
    /// Rewrites queued or running: training (on its own thread, on the same cores) waits
    /// while there are any.
    rewrites_open: Arc<AtomicUsize>,
}

/// What background work uses to give way to rewrites.
pub struct Yield {
    shared: Arc<Inbox>,
}

impl Yield {
    /// Turns true when a rewrite is waiting: pass it as a cancel flag to interruptible steps.
    pub fn waiting(&self) -> &AtomicBool {
        &self.shared.rewrite_waiting
    }

    /// Runs every waiting rewrite now, with the session the background work lent.
    pub fn serve_waiting(&self, session: &mut Session) {
        loop {
            let job = {
                let mut q = self.shared.queues.lock().unwrap();
                let job = q.rewrites.pop_front();
                if job.is_none() {
                    self.shared.rewrite_waiting.store(false, Ordering::SeqCst);
                }
                job
            };
            match job {
                Some(j) => {
                    run_rewrite(session, j);
                    self.shared.rewrites_open.fetch_sub(1, Ordering::SeqCst);
                }
                None => return,
            }
        }
    }
}

/// Snapshot of the queue for the status.
#[derive(Clone, Debug, Default)]
pub struct QueueStatus {
    /// Rewrites queued and not started (they go before any background job).
    pub rewrites_waiting: usize,
    /// Background jobs queued, oldest first, each named by what and where (e.g.
    /// "memory /home/ann/notes").
    pub background_waiting: Vec<String>,
    /// What the worker is doing now ("rewrite", or a background job's name); None when idle.
    pub busy: Option<String>,
}

pub struct Worker {
    shared: Arc<Inbox>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Worker {
    /// Starts the worker thread with a new session on `model`.
    pub fn start(model: &Arc<Model>, options: SessionOptions) -> Result<Self> {
        let shared = Arc::new(Inbox {
            queues: Mutex::new(Queues::default()),
            wake: Condvar::new(),
            rewrite_waiting: Arc::new(AtomicBool::new(false)),
            rewrites_open: Arc::new(AtomicUsize::new(0)),
        });
        let s = shared.clone();
        let interrupt = shared.rewrite_waiting.clone();
        let model = model.clone();
        // The context is made on the thread that uses it (llama.cpp's batch is not Send).
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("pema-worker".into())
            .spawn(move || match model.session(options) {
                Ok(mut session) => {
                    session.set_interrupt(Some(interrupt));
                    let _ = ready_tx.send(Ok(()));
                    run(&mut session, s)
                }
                Err(e) => {
                    let _ = ready_tx.send(Err(e));
                }
            })?;
        ready_rx
            .recv()
            .map_err(|_| anyhow::anyhow!("the inference worker died while starting"))??;
        Ok(Self {
            shared,
            thread: Some(thread),
        })
    }

    pub fn rewrite(&self, job: RewriteJob) {
        let mut q = self.shared.queues.lock().unwrap();
        q.rewrites.push_back(job);
        self.shared.rewrites_open.fetch_add(1, Ordering::SeqCst);
        self.shared.rewrite_waiting.store(true, Ordering::SeqCst);
        self.shared.wake.notify_one();
    }

    /// Queues background work; `what` names it in the status.
    pub fn background(&self, what: String, job: BackgroundJob) {
        let mut q = self.shared.queues.lock().unwrap();
        q.background.push_back((what, job));
        self.shared.wake.notify_one();
    }

    /// How many rewrites are queued or running now (shared: it changes as they come and go).
    pub fn rewrites_open(&self) -> Arc<AtomicUsize> {
        self.shared.rewrites_open.clone()
    }

    pub fn status(&self) -> QueueStatus {
        let q = self.shared.queues.lock().unwrap();
        QueueStatus {
            rewrites_waiting: q.rewrites.len(),
            background_waiting: q.background.iter().map(|(w, _)| w.clone()).collect(),
            busy: q.busy.clone(),
        }
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        self.shared.queues.lock().unwrap().shutdown = true;
        self.shared.wake.notify_all();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn run(session: &mut Session, shared: Arc<Inbox>) {
    let yielder = Yield {
        shared: shared.clone(),
    };
    loop {
        enum Next {
            Rewrite(RewriteJob),
            Background(BackgroundJob),
        }
        let next = {
            let mut q = shared.queues.lock().unwrap();
            q.busy = None;
            loop {
                if q.shutdown {
                    return;
                }
                if let Some(j) = q.rewrites.pop_front() {
                    if q.rewrites.is_empty() {
                        shared.rewrite_waiting.store(false, Ordering::SeqCst);
                    }
                    q.busy = Some("rewrite".into());
                    break Next::Rewrite(j);
                }
                if let Some((what, j)) = q.background.pop_front() {
                    q.busy = Some(what);
                    break Next::Background(j);
                }
                q = shared.wake.wait(q).unwrap();
            }
        };
        match next {
            Next::Rewrite(j) => {
                run_rewrite(session, j);
                shared.rewrites_open.fetch_sub(1, Ordering::SeqCst);
            }
            Next::Background(j) => {
                // A panic in background work must not take the worker (and every later rewrite)
                // down with it.
                let r =
                    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| j(session, &yielder)));
                if r.is_err() {
                    tracing::error!("background work panicked; the worker goes on");
                }
                // A memory build leaves llama.cpp's output buffer at 512 rows of the vocabulary
                // (512 MiB): an idle daemon should not keep it.
                match session.shed_outputs(SHED_ABOVE_ROWS) {
                    Ok(true) => {
                        tracing::debug!("context renewed after background work");
                        super::pipeline::release_memory();
                    }
                    Ok(false) => {}
                    Err(e) => tracing::warn!("could not renew the context: {e:#}"),
                }
            }
        }
    }
}

fn run_rewrite(session: &mut Session, job: RewriteJob) {
    // A panic in a rewrite (a bug) answers that rewrite with an error; the worker and every
    // later rewrite go on.
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        rewrite_lines(session, &job)
    }))
    .unwrap_or_else(|p| {
        let what = p
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| p.downcast_ref::<String>().cloned())
            .unwrap_or_default();
        tracing::error!("a rewrite panicked: {what}; the worker goes on");
        Err(anyhow::anyhow!(
            "the rewrite failed inside pema (a bug: {what}); later rewrites are not affected"
        ))
    });
    let r = r.map_err(|e| {
        if crate::is_cancelled(&e) {
            RequestError::Cancelled
        } else {
            RequestError::Failed(e)
        }
    });
    // A caller that went away reads nothing: nothing to do.
    let _ = job.events.send(RewriteEvent::Done(r));
}

fn rewrite_lines(session: &mut Session, job: &RewriteJob) -> Result<Rewrite> {
    if job.fault {
        panic!("injected fault");
    }
    let mut on_text = |e: TextEvent<'_>| {
        let e = match e {
            TextEvent::Text(t) => RewriteEvent::Text(t.to_string()),
            TextEvent::Retract(n) => RewriteEvent::Retract(n),
        };
        // A caller that went away reads nothing.
        drop(job.events.send(e))
    };
    decode::rewrite_text(
        session,
        job.adapter.as_deref(),
        &job.template,
        &job.text,
        &job.options,
        &mut on_text,
        Some(&job.cancel),
    )
}
