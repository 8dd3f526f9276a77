//! A text's rewrite, as every caller gets it: the daemon's worker, `pema rewrite` and `pema eval`.
//! A generation ends at a line break, so a text of several lines is rewritten line by line,
//! keeping its line breaks, blank lines and each line's indentation.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use anyhow::Result;

use super::{generate, Prompt, Rewrite, RewriteOptions, StopReason};
use crate::adapter::Adapter;
use crate::memory::Template;
use crate::model::Session;

/// Rewrites `text` with `template` around each of its lines. `on_text` receives the rewrite as
/// it grows, line breaks and indentation included, so that what it is sent adds up to the
/// returned text; `cancel` is checked before every token.
pub fn rewrite_text(
    session: &mut Session,
    adapter: Option<&Adapter>,
    template: &Template,
    text: &str,
    options: &RewriteOptions,
    mut on_text: impl FnMut(&str),
    cancel: Option<&AtomicBool>,
) -> Result<Rewrite> {
    let started = Instant::now();
    let mut total = Rewrite {
        text: String::new(),
        mode: options.mode,
        tokens: 0,
        stopped_by: StopReason::EndOfText,
        seconds: 0.0,
        tokens_per_second: 0.0,
    };
    for (i, line) in text.split('\n').enumerate() {
        if i > 0 {
            total.text.push('\n');
            on_text("\n");
        }
        if cancel.is_some_and(|c| c.load(Ordering::Relaxed)) {
            return Err(crate::Cancelled("rewrite cancelled").into());
        }
        let body = line.trim();
        if body.is_empty() {
            total.text.push_str(line);
            if !line.is_empty() {
                on_text(line);
            }
            continue;
        }
        // Keep the line's indentation (list items, quotes) around the rewritten text.
        let indent = &line[..line.len() - line.trim_start().len()];
        total.text.push_str(indent);
        if !indent.is_empty() {
            on_text(indent);
        }
        let prompt = Prompt::for_source(session, template, body)?;
        let mut first = true;
        let r = generate(
            session,
            adapter,
            &prompt,
            options,
            |t| {
                // The model's first token carries the space after the prompt's colon.
                let t = if first { t.trim_start() } else { t };
                if !t.is_empty() {
                    first = false;
                    on_text(t);
                }
            },
            cancel,
        )?;
        total.text.push_str(&r.text);
        total.tokens += r.tokens;
        total.stopped_by = r.stopped_by;
    }
    total.seconds = started.elapsed().as_secs_f64();
    total.tokens_per_second = total.tokens as f64 / total.seconds.max(1e-9);
    Ok(total)
}
