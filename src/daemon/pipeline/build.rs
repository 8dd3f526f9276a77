//! The pipeline's memory builds: the workspace's pairs and pseudo-pairs go to the worker, which
//! computes only the pairs the memory lacks and gives way to rewrites between batches.

use super::*;

impl Pipeline {
    pub(super) fn start_build(&mut self, pairs: Vec<memory::Pair>) {
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

    pub(super) fn built(&mut self, r: Result<BuildReport>) {
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
}
