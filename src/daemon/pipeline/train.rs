//! The pipeline's training: after the memory has been quiet for a while, the adapter trains on
//! its own thread (warm-started, cancelled when the memory changes again) and replaces the one
//! serving rewrites when it is done.

use super::*;

impl Pipeline {
    pub(super) fn should_train(&self) -> bool {
        let Some(digest) = &self.memory_digest else {
            return false;
        };
        if self.train_now.is_some() {
            return true;
        }
        if self.failed_digest.as_ref() == Some(digest) {
            return false;
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

    /// No adapter serves this workspace yet and its memory can train one (enough pairs, not one
    /// whose training failed): the first adapter comes before paraphrasing.
    pub(super) fn first_adapter_due(&self) -> bool {
        let Some(digest) = &self.memory_digest else {
            return false;
        };
        self.shared.status.lock().unwrap().memory.pairs >= adapter::MIN_PAIRS
            && self.shared.serving.read().unwrap().adapter.is_none()
            && self.failed_digest.as_ref() != Some(digest)
    }

    /// Time left before the memory counts as quiet (zero once it does).
    pub(super) fn quiet_left(&self) -> Option<Duration> {
        let quiet = Duration::from_secs_f64(self.ws.config().retrain_after_seconds.max(0.0));
        self.memory_changed
            .map(|t| quiet.saturating_sub(t.elapsed()))
    }

    pub(super) fn start_training(&mut self) {
        let from_scratch = self.train_now.take().unwrap_or(false);
        self.memory_changed = None;
        self.failed_digest = None;
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
        let device = self.train_device.clone();
        let shared = self.shared.clone();
        let tx = self.tx.clone();
        let events = self.events.clone();
        let rewrites_open = self.worker.rewrites_open();
        let worker = self.worker.clone();
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
                    // Training shares the cores with the worker: a rewrite the user waits for
                    // goes first, so training waits while one is queued or running.
                    let wait_for_rewrites = || {
                        while rewrites_open.load(Ordering::Relaxed) > 0
                            && !cancel.load(Ordering::Relaxed)
                        {
                            std::thread::sleep(std::time::Duration::from_millis(5));
                        }
                    };
                    let opts = TrainOptions {
                        rank: rank.min(memory.hidden_size()),
                        cancel: Some(&cancel),
                        pause: Some(&wait_for_rewrites),
                        warm_start: warm.as_deref(),
                        device,
                        ..Default::default()
                    };
                    let head = model.head()?;
                    let mut train = || {
                        adapter::train(&memory, &head, model.info(), &opts, |p| {
                            let done = p.epoch * p.steps_per_epoch.max(1) + p.step;
                            let all = p.max_epochs * p.steps_per_epoch.max(1);
                            progress.report((100 * done / all.max(1)) as u32, || {
                                format!(
                                    "epoch {}, held-out loss {:.3}",
                                    p.epoch + 1,
                                    p.held_out_loss
                                )
                            });
                        })
                    };
                    let mut a = match training_pool() {
                        Some(pool) => pool.install(train),
                        None => train(),
                    }?;
                    a.prepare(&head)?;
                    let held = memory.held_out_pairs(opts.held_out_percent);
                    if crate::eval::tune::can_try_style_gate(&a, &held) {
                        progress.report(100, || "trying the style gate".to_string());
                        a = try_style_gate(&worker, &shared.root, a, held, cancel.clone())?;
                    }
                    a.save(&dir.join(state::ADAPTER_FILE))?;
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
                let _ = tx.send(Signal::Trained(r.map(Box::new)));
            });
        if let Err(e) = spawned {
            self.training = None;
            self.error(format!("cannot start training: {e}"));
        }
    }

    pub(super) fn trained(&mut self, r: Result<Adapter>) {
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
            Err(e) => {
                self.failed_digest = self.memory_digest.clone();
                self.error(format!("training failed: {e:#}"));
            }
        }
    }
}

/// Tries the style gate on the held-out pairs (`eval::choose_style_gate`): it rewrites them, and
/// only the worker's session may run rewrites, so it goes to the worker as background work that
/// gives way to the user's rewrites, while training's thread waits for it. A failure keeps the
/// adapter as trained (no gate); a cancellation cancels the training.
fn try_style_gate(
    worker: &Worker,
    root: &Path,
    adapter: Adapter,
    held: Vec<crate::memory::Pair>,
    cancel: Arc<AtomicBool>,
) -> Result<Adapter> {
    let template = adapter.template()?;
    let (tx, rx) = std::sync::mpsc::channel();
    worker.background(
        format!("style gate {}", root.display()),
        Box::new(move |session, y| {
            let mut a = adapter;
            let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                let serve = |s: &mut crate::model::Session| y.serve_waiting(s);
                crate::eval::choose_style_gate(
                    session,
                    &mut a,
                    &template,
                    &held,
                    Some(&cancel),
                    Some(crate::eval::GiveWay {
                        interrupt: y.waiting(),
                        serve: &serve,
                    }),
                    |_| {},
                )
            }));
            let _ = tx.send((a, r));
        }),
    );
    match rx.recv() {
        Ok((a, Ok(Ok(_)))) => Ok(a),
        Ok((_, Ok(Err(e)))) if crate::is_cancelled(&e) => Err(e),
        Ok((a, Ok(Err(e)))) => {
            tracing::warn!(
                "trying the style gate failed ({e:#}); the adapter mixes alike at every token"
            );
            Ok(a)
        }
        Ok((a, Err(_))) => {
            tracing::warn!("trying the style gate failed inside pema (a bug); the adapter mixes alike at every token");
            Ok(a)
        }
        Err(_) => Err(crate::Cancelled("the inference worker stopped").into()),
    }
}

/// Training's threads: candle computes on the current rayon pool, and this one's threads run at
/// the lowest CPU priority, so that when a rewrite needs the cores (the worker's llama.cpp
/// threads, at normal priority) the kernel gives them to it and training takes what is left.
/// None (training on the global pool) if the pool cannot be made.
fn training_pool() -> Option<&'static rayon::ThreadPool> {
    static POOL: std::sync::OnceLock<Option<rayon::ThreadPool>> = std::sync::OnceLock::new();
    POOL.get_or_init(|| {
        rayon::ThreadPoolBuilder::new()
            .thread_name(|i| format!("pema-train-{i}"))
            .start_handler(|_| lower_priority())
            .build()
            .map_err(|e| tracing::warn!("no thread pool for training: {e}"))
            .ok()
    })
    .as_ref()
}

/// Sets the calling thread's nice value to 19 (Linux: nice is per thread).
fn lower_priority() {
    #[cfg(target_os = "linux")]
    // SAFETY: setpriority only changes the scheduling priority of the calling thread (who = 0);
    // it touches no memory.
    unsafe {
        libc::setpriority(libc::PRIO_PROCESS, 0, 19);
    }
}

/// Training's and building's buffers are freed, but glibc keeps the pages; hand them back so
/// that an idle daemon stays small.
pub(in crate::daemon) fn release_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only releases free heap pages; it has no preconditions.
    unsafe {
        libc::malloc_trim(0);
    }
}
