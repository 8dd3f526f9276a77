//! A rewrite through the daemon: the request as a client gives it, the one place where what it
//! leaves out is filled in, and the one channel its text and its end come back on.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver};

use super::worker::RewriteJob;
use super::{root_of, Daemon, Lambda, RequestError, MAX_REWRITE_CHARS, MAX_REWRITE_LINES};
use crate::adapter::Adapter;
use crate::decode::{Mode, Rewrite, RewriteOptions};
use crate::memory::Template;

/// A rewrite as a client asks for it. What it leaves out (None) is filled in once, by
/// [`Daemon::rewrite`]: the workspace's settings, then the adapter's own choice (made on its
/// held-out pairs), then pema's defaults — the same defaults as `pema rewrite`.
#[derive(Clone, Debug, Default)]
pub struct RewriteRequest {
    /// The text to rewrite, line by line: at most [`MAX_REWRITE_CHARS`] characters and
    /// [`MAX_REWRITE_LINES`] non-blank lines.
    pub text: String,
    /// A path in the workspace whose style to use; None: the only open workspace.
    pub workspace: Option<PathBuf>,
    /// The schedule.
    pub mode: Option<Mode>,
    /// Overrides the workspace's λ_max.
    pub lambda_max: Option<f32>,
    /// λ of the fixed mode, 0 to 1.
    pub lambda_fixed: Option<f32>,
    /// Sampling temperature; 0 is greedy (the default).
    pub temperature: Option<f32>,
    /// Nucleus sampling: sample among the most likely tokens whose probabilities add up to
    /// this (1: all tokens). Only when `temperature` is above 0.
    pub top_p: Option<f32>,
    /// Seed of the sampler, so that a sampled rewrite can be repeated.
    pub seed: Option<u64>,
    /// At most this many tokens per line; None: twice the line's expected length plus 16.
    pub max_tokens: Option<usize>,
}

impl RewriteRequest {
    /// Refuses what no workspace could rewrite: empty or too long text, λ outside 0–1.
    fn check(&self) -> Result<(), RequestError> {
        if self.text.trim().is_empty() {
            return Err(RequestError::InvalidRequest(
                "nothing to rewrite: the text is empty".into(),
            ));
        }
        let chars = self.text.chars().count();
        if chars > MAX_REWRITE_CHARS {
            return Err(RequestError::InvalidRequest(format!(
                "the text is {chars} characters long; pema rewrites at most {MAX_REWRITE_CHARS} at once"
            )));
        }
        let lines = self.text.lines().filter(|l| !l.trim().is_empty()).count();
        if lines > MAX_REWRITE_LINES {
            return Err(RequestError::InvalidRequest(format!(
                "the text has {lines} lines; pema rewrites at most {MAX_REWRITE_LINES} at once"
            )));
        }
        for (option, v) in [
            (Lambda::Max, self.lambda_max),
            (Lambda::Fixed, self.lambda_fixed),
        ] {
            if let Some(value) = v.filter(|v| !(0.0..=1.0).contains(v)) {
                return Err(RequestError::OutOfRange { option, value });
            }
        }
        Ok(())
    }

    /// The options of the rewrite: what the request names, else the workspace's `lambda_max`
    /// (`.pema.toml`), else the adapter's own choice, else pema's defaults.
    fn options(
        &self,
        adapter: Option<&Adapter>,
        workspace_lambda_max: Option<f32>,
    ) -> RewriteOptions {
        let d = adapter.map_or_else(RewriteOptions::default, |a| a.default_rewrite());
        RewriteOptions {
            mode: self.mode.unwrap_or(d.mode),
            lambda_max: self
                .lambda_max
                .or(workspace_lambda_max)
                .unwrap_or(d.lambda_max),
            lambda_fixed: self.lambda_fixed.unwrap_or(d.lambda_fixed),
            max_tokens: self.max_tokens,
            temperature: self.temperature.unwrap_or(d.temperature),
            top_p: self.top_p.unwrap_or(d.top_p),
            seed: self.seed.unwrap_or(d.seed),
            ..d
        }
    }
}

/// What a queued rewrite reports, in order: its text as it grows, then its end.
#[derive(Debug)]
pub enum RewriteEvent {
    /// Text added since the last event.
    Text(String),
    /// The last this many bytes of text sent are taken back (the line is being made again
    /// with less style: it had dropped a name).
    Retract(usize),
    /// The rewrite's end: the last event.
    Done(Result<Rewrite, RequestError>),
}

/// A queued rewrite: the workspace whose style it uses, and its events. Dropping it does not
/// stop the rewrite; its cancel flag does.
pub struct RewriteStream {
    /// The root of the workspace whose style (adapter, template) the rewrite uses; None for a
    /// plain rewrite with no workspace open.
    pub workspace: Option<PathBuf>,
    events: UnboundedReceiver<RewriteEvent>,
}

impl RewriteStream {
    /// The next event. Once [`RewriteEvent::Done`] has come, there is none: asking again is an
    /// error, as is a worker that stopped without answering.
    pub async fn next(&mut self) -> RewriteEvent {
        self.events.recv().await.unwrap_or_else(worker_gone)
    }

    /// [`RewriteStream::next`] for a caller outside the async runtime.
    pub fn blocking_next(&mut self) -> RewriteEvent {
        self.events.blocking_recv().unwrap_or_else(worker_gone)
    }

    /// The rewrite's result, its text events passed over.
    pub async fn result(mut self) -> Result<Rewrite, RequestError> {
        loop {
            if let RewriteEvent::Done(r) = self.next().await {
                return r;
            }
        }
    }

    /// [`RewriteStream::result`] for a caller outside the async runtime.
    pub fn blocking_result(mut self) -> Result<Rewrite, RequestError> {
        loop {
            if let RewriteEvent::Done(r) = self.blocking_next() {
                return r;
            }
        }
    }
}

fn worker_gone() -> RewriteEvent {
    RewriteEvent::Done(Err(RequestError::Failed(anyhow::anyhow!(
        "the inference worker stopped before finishing the rewrite"
    ))))
}

impl Daemon {
    /// Queues a rewrite in the style of the workspace it names (or the only one open; none for
    /// a plain rewrite), once that workspace has loaded from disk. Setting `cancel` stops it
    /// before its next token.
    pub async fn rewrite(
        self: &Arc<Self>,
        req: RewriteRequest,
        cancel: Arc<AtomicBool>,
    ) -> Result<RewriteStream, RequestError> {
        req.check()?;
        let plain = req.mode == Some(Mode::Plain);
        let root = {
            let all = self.workspaces.lock().unwrap();
            match &req.workspace {
                Some(p) => Some(root_of(&all, p)?),
                None if all.len() == 1 => all.keys().next().cloned(),
                None if plain => None,
                None => {
                    return Err(RequestError::WhichWorkspace {
                        open: all.keys().cloned().collect(),
                    })
                }
            }
        };
        let serving = match &root {
            Some(r) => {
                self.until_root_loaded(r.clone()).await;
                Some(self.with_workspace(r, |w| w.shared.serving.read().unwrap().clone())?)
            }
            None => None,
        };
        let (adapter, template, lambda_max) = match serving {
            Some(s) => (s.adapter, s.template, s.lambda_max),
            None => (None, Template::default(), None),
        };
        if !plain && adapter.is_none() {
            return Err(RequestError::NoAdapter);
        }
        let options = req.options(adapter.as_deref(), lambda_max);
        let (events, rx) = unbounded_channel();
        self.worker.rewrite(RewriteJob {
            text: req.text,
            template,
            adapter: if plain { None } else { adapter },
            options,
            events,
            cancel,
            fault: self.fail_next_rewrite.swap(false, Ordering::SeqCst),
        });
        Ok(RewriteStream {
            workspace: root,
            events: rx,
        })
    }
}
