//! The pipeline's paraphrasing: units without a pseudo-source go to the worker in small
//! batches, which give way to rewrites between tokens; the results go to the paraphrase cache.

use super::*;

impl Pipeline {
    pub(super) fn made_by(&self) -> String {
        made_by(
            self.ws.config().pseudo_sources,
            self.style_words.as_ref(),
            &self.model,
        )
    }

    /// Makes the style words when the settings ask for them and there are none yet, the
    /// `language` setting changed, or the units have doubled since they were made (docs/method.md
    /// §8.5): the pseudo-sources made with the previous list are then made again. Counting words
    /// takes milliseconds a megabyte, here on the pipeline thread.
    pub(super) fn update_style_words(&mut self) {
        if self.ws.config().pseudo_sources != PseudoSources::StyleWords {
            return;
        }
        let (units, language) = (self.ws.counts().units, &self.ws.config().language);
        if !StyleWords::due(self.style_words.as_ref(), units, language) {
            return;
        }
        match StyleWords::make(self.ws.units(), language) {
            Ok(s) => {
                if let Err(e) = s.save(self.ws.state_dir()) {
                    self.error(format!("{e:#}"));
                }
                self.style_words = Some(s);
            }
            Err(e) => self.error(format!("cannot find the style words: {e:#}")),
        }
    }

    pub(super) fn start_paraphrase(&mut self, pending: Vec<String>) {
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
        let how = self.ws.config().pseudo_sources;
        let size = match how {
            PseudoSources::StyleWords => STYLE_WORDS_BATCH,
            _ => PARAPHRASE_BATCH,
        };
        let batch: Vec<String> = pending.into_iter().take(size).collect();
        let style_words = Arc::new(
            self.style_words
                .as_ref()
                .map(StyleWords::set)
                .unwrap_or_default(),
        );
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
                        style_words: &style_words,
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

/// What made the pseudo-sources of a workspace: the way its settings say (with the style words
/// it used), and the model.
pub(in crate::daemon) fn made_by(
    how: PseudoSources,
    style_words: Option<&StyleWords>,
    model: &Model,
) -> String {
    made_by_with(how, style_words, &model.info().identity)
}

/// The same with the model's other identities ([`crate::model::ModelInfo::aliases`]): pseudo-
/// sources made under one of them are this model's too.
pub(in crate::daemon) fn made_by_aliases(
    how: PseudoSources,
    style_words: Option<&StyleWords>,
    model: &Model,
) -> Vec<String> {
    let info = model.info();
    info.aliases
        .iter()
        .map(|a| made_by_with(how, style_words, a))
        .collect()
}

fn made_by_with(how: PseudoSources, style_words: Option<&StyleWords>, identity: &str) -> String {
    let words = match (how, style_words) {
        (PseudoSources::StyleWords, Some(s)) => format!(" {}", s.digest()),
        _ => String::new(),
    };
    format!("{}{words} {identity}", paraphrase::version(how))
}

/// How a batch makes pseudo-sources, and the cache they go to (only while it still takes
/// pseudo-sources made that way: the settings may change while the batch runs).
struct PseudoJob<'a> {
    how: PseudoSources,
    style_words: &'a std::collections::HashSet<String>,
    made_by: &'a str,
    cache: &'a Mutex<ParaphraseCache>,
}

/// Makes the pseudo-sources of one batch on the worker, giving way to rewrites between tokens.
fn paraphrase_batch(
    session: &mut crate::model::Session,
    y: &crate::daemon::worker::Yield,
    batch: &[String],
    job: &PseudoJob,
    shared: &Published,
    errors: &mut Vec<String>,
) {
    let PseudoJob {
        how,
        style_words,
        made_by,
        cache,
    } = *job;
    for unit in batch {
        // A rewrite asked for meanwhile goes first: a neutralisation is not stopped mid-unit.
        y.serve_waiting(session);
        let p = loop {
            if shared.closed.load(Ordering::SeqCst) {
                break None;
            }
            match paraphrase::pseudo_source(session, unit, how, style_words, Some(y.waiting())) {
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
