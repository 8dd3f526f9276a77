//! A text's rewrite, as every caller gets it: the daemon's worker, `pema rewrite` and `pema eval`.
//! A generation ends at a line break, so a text of several lines is rewritten line by line,
//! keeping its line breaks, blank lines and each line's indentation. A line that dropped a name
//! its style keeps is made again with less of the adapter (docs/method.md §8.7, §8.8).

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use anyhow::Result;

use super::{generate, Mode, Prompt, Rewrite, RewriteOptions, StopReason};
use crate::adapter::Adapter;
use crate::memory::Template;
use crate::model::Session;

/// What a rewrite streams while it runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TextEvent<'a> {
    /// Text added at the end.
    Text(&'a str),
    /// The last this many bytes sent are taken back: the line is being made again.
    Retract(usize),
}

/// Rewrites `text` with `template` around each of its lines. `on_event` receives the rewrite as
/// it grows, line breaks and indentation included, so that what it is sent (less what it is
/// told to take back) adds up to the returned text; `cancel` is checked before every token.
pub fn rewrite_text(
    session: &mut Session,
    adapter: Option<&Adapter>,
    template: &Template,
    text: &str,
    options: &RewriteOptions,
    mut on_event: impl FnMut(TextEvent<'_>),
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
        remade_lines: 0,
        output_tokens: Vec::new(),
        draft_tokens: (0, 0),
    };
    let kept_names = adapter
        .and_then(|a| a.info().kept_names.as_ref())
        .filter(|_| options.keep_names);
    let kept_length = adapter
        .and_then(|a| a.info().kept_length.as_ref())
        .filter(|_| options.keep_names);
    let marked = adapter.is_some_and(|a| !a.info().marked_words.is_empty());
    // A line lost part of its source: a name its style keeps, or more words than the style
    // ever drops.
    let lost = |body: &str, out: &str| {
        kept_names.is_some_and(|k| !k.keeps(body, out))
            || kept_length.is_some_and(|k| !k.keeps(body, out))
    };
    for (i, line) in text.split('\n').enumerate() {
        if i > 0 {
            total.text.push('\n');
            on_event(TextEvent::Text("\n"));
        }
        if cancel.is_some_and(|c| c.load(Ordering::Relaxed)) {
            return Err(crate::Cancelled("rewrite cancelled").into());
        }
        let body = line.trim();
        if body.is_empty() {
            total.text.push_str(line);
            if !line.is_empty() {
                on_event(TextEvent::Text(line));
            }
            continue;
        }
        // Keep the line's indentation (list items, quotes) around the rewritten text.
        let indent = &line[..line.len() - line.trim_start().len()];
        total.text.push_str(indent);
        if !indent.is_empty() {
            on_event(TextEvent::Text(indent));
        }
        let mut prompt = Prompt::for_source(session, template, body)?;
        let mut opts = *options;
        let mut attempt = 0;
        let r = loop {
            let mut first = true;
            let mut sent = 0usize;
            let r = generate(
                session,
                adapter,
                &prompt,
                &opts,
                |t| {
                    // The model's first token carries the space after the prompt's colon.
                    let t = if first { t.trim_start() } else { t };
                    if !t.is_empty() {
                        first = false;
                        sent += t.len();
                        on_event(TextEvent::Text(t));
                    }
                },
                cancel,
            )?;
            total.draft_tokens.0 += r.draft_tokens.0;
            total.draft_tokens.1 += r.draft_tokens.1;
            if opts.mode == Mode::Plain || !lost(body, &r.text) {
                break r;
            }
            // Another sentence, or a part of this one lost: less style, then none.
            if sent > 0 {
                on_event(TextEvent::Retract(sent));
            }
            total.remade_lines += 1;
            // The next attempt mostly writes the same tokens up to where this one went wrong:
            // they are fed as a draft, several to a decode.
            prompt.drafts.push(r.output_tokens);
            opts = weaker(options, attempt, marked);
            attempt += 1;
        };
        total.text.push_str(&r.text);
        total.tokens += r.tokens;
        total.stopped_by = r.stopped_by;
    }
    total.seconds = started.elapsed().as_secs_f64();
    total.tokens_per_second = total.tokens as f64 / total.seconds.max(1e-9);
    Ok(total)
}

/// The next attempt at a line that lost part of its source, from the options of the first:
/// the adapter at half its weight; then, for an adapter with marked words, its whole weight
/// only where it reaches for one of them (the model writes the rest, so the content stays and
/// the style's own words come in); then the plain model (which keeps its source's names all
/// but always: it copies).
fn weaker(first: &RewriteOptions, attempt: usize, marked: bool) -> RewriteOptions {
    match attempt {
        0 => RewriteOptions {
            lambda_fixed: first.lambda_fixed / 2.0,
            lambda_max: first.lambda_max / 2.0,
            lambda_floor: first.lambda_floor / 2.0,
            ..*first
        },
        1 if marked => RewriteOptions {
            style_gate: Some(0.0),
            ..*first
        },
        _ => RewriteOptions {
            mode: Mode::Plain,
            ..*first
        },
    }
}
