//! Building a memory from pairs: teacher-force `prompt ⊕ target` through the model and keep the
//! hidden state before every target token and before the end marker (docs/method.md §1).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use anyhow::{bail, Context as _, Result};
use half::f16;

use super::format::{self, Header, KeyType, MappedMemory};
use super::pairs::{read_pairs_file, Pair, PairsRead, SkippedLine};
use super::template::Template;
use crate::model::{HiddenRequest, ModelInfo, Session, Token};

/// What [`build`] (or [`build_pairs`]) builds a memory from, and where it writes it.
pub struct BuildOptions<'a> {
    /// The JSON Lines pairs files [`build`] reads ([`build_pairs`] takes its pairs directly).
    pub pairs_files: Vec<PathBuf>,
    /// The instruction template, without worked examples: the build adds them in front.
    pub template: Template,
    /// The directory the memory is written to (`memory.pema` and `held-out.jsonl`).
    pub out: PathBuf,
    /// How the keys are stored.
    pub key_type: KeyType,
    /// Discard an existing memory made with another model or template instead of refusing.
    pub replace: bool,
    /// Checked between batches; a cancelled build leaves the previous memory as it was.
    pub cancel: Option<&'a AtomicBool>,
    /// At most this many entries: pairs past the cap (in input order) are left out.
    pub max_entries: Option<usize>,
    /// Worked examples drawn from the pairs and put in front of every prompt (0: none).
    pub shots: usize,
}

/// Worked examples a memory is built with by default (measured: BENCHMARKS.md, "Quality").
pub const DEFAULT_SHOTS: usize = 3;

/// How far a build is, passed to the progress callback after every model batch. Counts only
/// the pairs run through the model in this build (reused ones are not), and tokens after the
/// shared prefix.
#[derive(Clone, Copy, Debug, Default)]
pub struct BuildProgress {
    /// Tokens run through the model so far.
    pub tokens_done: usize,
    /// Tokens this build will run through the model.
    pub tokens_total: usize,
    /// Pairs computed so far.
    pub pairs_done: usize,
    /// Pairs this build computes.
    pub pairs_total: usize,
}

/// What a build did.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct BuildReport {
    /// The memory file (`memory.pema`); not rewritten when nothing changed.
    pub path: PathBuf,
    /// Pairs in the memory now.
    pub pairs: usize,
    /// Rows in the memory now: one per target token (end marker included).
    pub entries: usize,
    /// Pairs run through the model in this build.
    pub pairs_computed: usize,
    /// Pairs whose entries were taken from the previous memory unchanged.
    pub pairs_reused: usize,
    /// Pairs of the previous memory that are gone from the input.
    pub pairs_removed: usize,
    /// Input pairs identical to an earlier one (same source and target), left out.
    pub duplicate_pairs: usize,
    /// Pairs longer than the context (prompt and target together), left out.
    pub pairs_too_long: usize,
    /// Pairs left out because the memory reached its entry cap.
    pub pairs_over_cap: usize,
    /// Lines of the pairs files that were not used, and why (empty from [`build_pairs`]).
    pub skipped_lines: Vec<SkippedLine>,
    /// Tokens fed through the model (prompts and targets).
    pub tokens_processed: usize,
    /// Wall-clock seconds the build took.
    pub seconds: f64,
    /// `tokens_processed` per second of the build.
    pub tokens_per_second: f64,
    /// Pairs used as worked examples in the template (left out of the memory itself).
    pub examples: usize,
    /// Tokens of the prompt that every pair shares (computed once a batch, not once a pair).
    pub shared_prefix_tokens: usize,
    /// Model batches stopped mid-decode for a waiting rewrite and run again afterwards.
    pub batches_interrupted: usize,
    /// Things the user should know that did not stop the build (a previous memory replaced
    /// or unreadable, so every pair recomputed).
    pub warnings: Vec<String>,
}

/// Where a pair of the new memory gets its rows.
#[derive(Clone, Copy)]
enum Rows {
    /// From this group of the previous memory.
    Reused(usize),
    /// From the model: the pair's index among those computed.
    New(usize),
}

/// A pair ready for the model.
struct Prepared {
    tokens: Vec<Token>,
    prompt_len: usize,
}

/// Prompt and target tokens of a pair: `[BOS] prompt ⊕ " target"`, and the target tokens with
/// the end marker appended (the memory's values).
pub(crate) fn tokenize_pair(
    session: &Session,
    template: &Template,
    pair: &Pair,
    end: Token,
) -> Result<(Vec<Token>, usize, Vec<Token>)> {
    let model = session.model();
    let mut tokens: Vec<Token> = model.bos().into_iter().collect();
    tokens.extend(model.tokenize(&template.prompt(&pair.source))?);
    let prompt_len = tokens.len();
    let target = model.tokenize(&Template::target_text(&pair.target))?;
    let mut values = target.clone();
    values.push(end);
    tokens.extend(target);
    Ok((tokens, prompt_len, values))
}

/// The single token that ends every target.
pub(crate) fn end_token(session: &Session) -> Result<Token> {
    let t = session.model().tokenize(Template::END)?;
    match t[..] {
        [t] => Ok(t),
        _ => bail!(
            "the model's tokenizer splits the end marker {:?} into {} tokens",
            Template::END,
            t.len()
        ),
    }
}

/// Builds (or updates) the memory in `opts.out` from the pairs files: pairs already in the
/// previous memory keep their rows, new ones are run through the model. Bad lines are skipped
/// and listed in the report; no usable pair at all is an error.
pub fn build(
    session: &mut Session,
    opts: &BuildOptions<'_>,
    progress: impl FnMut(BuildProgress),
) -> Result<BuildReport> {
    let mut read = PairsRead::default();
    for f in &opts.pairs_files {
        read_pairs_file(f, &mut read)?;
    }
    if read.pairs.is_empty() {
        let why = read
            .skipped
            .first()
            .map(|s| format!(" (first problem: {s})"))
            .unwrap_or_default();
        bail!(
            "no usable pairs in {}: {} lines skipped{why}",
            opts.pairs_files
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(", "),
            read.skipped.len()
        );
    }
    let mut report = build_pairs(session, read.pairs, opts, progress, |_| Ok(()))?;
    report.skipped_lines = read.skipped;
    Ok(report)
}

impl BuildOptions<'_> {
    /// An error once the build is cancelled (checked between steps).
    fn check_cancelled(&self) -> Result<()> {
        if self.cancel.is_some_and(|c| c.load(Ordering::Relaxed)) {
            return Err(crate::Cancelled(
                "memory build cancelled; the previous memory is unchanged",
            )
            .into());
        }
        Ok(())
    }
}

/// Pairs tokenized between two calls of a build's `between_batches` (a few milliseconds).
const YIELD_EVERY_PAIRS: usize = 64;

/// Builds from pairs in memory. `between_batches` runs between two model batches with the
/// session: the daemon serves waiting rewrites there, so a long build never delays one by more
/// than a batch.
pub fn build_pairs(
    session: &mut Session,
    input: Vec<Pair>,
    opts: &BuildOptions<'_>,
    mut progress: impl FnMut(BuildProgress),
    mut between_batches: impl FnMut(&mut Session) -> Result<()>,
) -> Result<BuildReport> {
    let started = Instant::now();
    let mut report = BuildReport::default();
    let info = session.model().info().clone();
    if input.is_empty() {
        bail!("no pairs to build a memory from");
    }
    let mut seen = std::collections::HashSet::new();
    let mut pairs: Vec<Pair> = Vec::with_capacity(input.len());
    for p in input {
        if seen.insert(p.hash()) {
            pairs.push(p);
        } else {
            report.duplicate_pairs += 1;
        }
    }

    // The memory already there, opened (and checksummed) once: its template keeps the worked
    // examples stable, its rows are reused below.
    // A build killed mid-way left its partly written file: the next one, whatever it writes,
    // clears it.
    crate::fsutil::remove_stale_temporaries(&opts.out, format::FILE_NAME);
    let existing = {
        let path = opts.out.join(format::FILE_NAME);
        path.exists().then(|| MappedMemory::open(&path))
    };
    let previous_template = existing
        .as_ref()
        .and_then(|m| m.as_ref().ok())
        .map(|m| m.header.template.clone());
    let mut template = opts.template.clone();
    if opts.shots > 0 && pairs.len() > 2 * opts.shots {
        let chosen = choose_examples(
            &pairs,
            opts.shots,
            &opts.template,
            previous_template.as_deref(),
        );
        if !chosen.is_empty() {
            let examples: Vec<(String, String)> = chosen
                .iter()
                .map(|&i| (pairs[i].source.clone(), pairs[i].target.clone()))
                .collect();
            template = opts.template.with_examples(&examples)?;
            report.examples = chosen.len();
            // An example's own entries would teach "copy the example above".
            let mut i = 0;
            pairs.retain(|_| {
                i += 1;
                !chosen.contains(&(i - 1))
            });
        }
    }
    let header = Header {
        key_type: opts.key_type,
        hidden: info.n_embd,
        model_identity: *blake3::Hash::from_hex(&info.identity)?.as_bytes(),
        model_name: info.name.clone(),
        template: template.text().to_string(),
        template_digest: template.digest(),
    };
    let previous = open_previous(
        &opts.out,
        existing,
        &header,
        &info,
        opts.replace,
        &mut report.warnings,
    )?;
    let reusable: HashMap<[u8; 16], usize> = previous
        .as_ref()
        .map(|m| {
            m.groups
                .iter()
                .enumerate()
                .map(|(i, g)| (g.hash, i))
                .collect()
        })
        .unwrap_or_default();

    // Tokenize what must be computed. A large folder's tens of thousands of pairs take the
    // tokenizer seconds (each prompt holds the worked examples): waiting rewrites go first every
    // few pairs, and tokenizing ends once the pairs so far fill the cap, since the rest would be
    // left out anyway.
    let end = end_token(session)?;
    let (n_ctx, n_batch) = (session.n_ctx(), session.n_batch());
    let cap = opts.max_entries.unwrap_or(usize::MAX);
    let mut tokenized = Vec::with_capacity(pairs.len());
    // Rows of the pairs so far that fit the context: never fewer than the loop below keeps.
    let mut filled = 0usize;
    for (i, p) in pairs.iter().enumerate() {
        if filled >= cap {
            break;
        }
        if i % YIELD_EVERY_PAIRS == YIELD_EVERY_PAIRS - 1 {
            opts.check_cancelled()?;
            between_batches(session)?;
        }
        let tok = match reusable.get(&p.hash()) {
            Some(&g) => {
                filled += previous.as_ref().unwrap().groups[g].rows as usize;
                None
            }
            None => {
                let t = tokenize_pair(session, &template, p, end)?;
                if t.0.len() <= n_ctx {
                    filled += t.2.len();
                }
                Some(t)
            }
        };
        tokenized.push(tok);
    }
    report.pairs_over_cap = pairs.len() - tokenized.len();
    // The prompt's start (BOS and the worked examples) is the same for every pair: the model
    // computes it once a batch, so batches are packed by what follows it.
    let mut prefix: Vec<Token> = session.model().bos().into_iter().collect();
    prefix.extend(session.model().tokenize(template.prefix())?);
    let shared = tokenized
        .iter()
        .flatten()
        .map(|(t, prompt_len, _)| crate::model::common_prefix(&prefix, t).min(prompt_len - 1))
        .min()
        .filter(|&n| n >= crate::model::MIN_SHARED_PREFIX)
        .unwrap_or(0);
    report.shared_prefix_tokens = shared;
    let mut keep: Vec<([u8; 16], Rows)> = Vec::with_capacity(tokenized.len());
    let mut todo: Vec<Prepared> = Vec::new();
    let mut todo_values: Vec<Vec<u32>> = Vec::new();
    let mut entries = 0usize;
    for (p, tok) in pairs.iter().zip(tokenized) {
        let hash = p.hash();
        let Some((tokens, prompt_len, values)) = tok else {
            let g = reusable[&hash];
            let rows = previous.as_ref().unwrap().groups[g].rows as usize;
            if entries + rows > cap {
                report.pairs_over_cap += 1;
                continue;
            }
            entries += rows;
            keep.push((hash, Rows::Reused(g)));
            continue;
        };
        if tokens.len() > n_ctx || tokens.len() - shared > n_batch {
            report.pairs_too_long += 1;
            continue;
        }
        if entries + values.len() > cap {
            report.pairs_over_cap += 1;
            continue;
        }
        entries += values.len();
        keep.push((hash, Rows::New(todo.len())));
        todo.push(Prepared { tokens, prompt_len });
        todo_values.push(values);
    }

    // The file's layout is known now: its keys are written as the batches finish, so that a
    // build holds one batch of keys in RAM whatever the memory's size.
    let index: Vec<format::IndexEntry> = keep
        .iter()
        .map(|&(hash, rows)| match rows {
            Rows::Reused(g) => {
                let g = previous.as_ref().unwrap().groups[g];
                format::IndexEntry {
                    hash,
                    rows: g.rows,
                    prompt_tokens: g.prompt_tokens,
                }
            }
            Rows::New(i) => format::IndexEntry {
                hash,
                rows: todo_values[i].len() as u32,
                prompt_tokens: todo[i].prompt_len as u32,
            },
        })
        .collect();
    report.pairs_computed = todo.len();
    report.pairs_reused = keep.len() - todo.len();
    if let Some(m) = &previous {
        report.pairs_removed = m.groups.len() - report.pairs_reused;
    }
    let unchanged = previous.as_ref().is_some_and(|m| {
        todo.is_empty()
            && m.groups.len() == keep.len()
            && m.groups.iter().zip(&keep).all(|(a, b)| a.hash == b.0)
    });
    let mut writer = if unchanged {
        None
    } else {
        Some(format::Writer::create(&opts.out, &header, &index)?)
    };
    // Keys of the pairs before the next computed one: taken from the previous memory.
    let mut written = 0; // pairs of `keep` whose keys are written
    let copy_reused = |writer: &mut format::Writer, written: &mut usize| -> Result<()> {
        while let Some(&(_, Rows::Reused(g))) = keep.get(*written) {
            let g = previous.as_ref().unwrap().groups[g];
            let first = g.first_row as usize;
            writer.keys(
                previous
                    .as_ref()
                    .unwrap()
                    .key_bytes(first..first + g.rows as usize),
            )?;
            *written += 1;
        }
        Ok(())
    };

    // Run the model over the new pairs, a packed batch at a time.
    let d = info.n_embd;
    let row_bytes = d * opts.key_type.size();
    let mut prog = BuildProgress {
        tokens_total: todo.iter().map(|p| p.tokens.len() - shared).sum(),
        pairs_total: todo.len(),
        ..Default::default()
    };
    progress(prog);
    for range in session.pack(todo.iter().map(|p| p.tokens.len() - shared)) {
        opts.check_cancelled()?;
        let reqs: Vec<HiddenRequest> = todo[range.clone()]
            .iter()
            .map(|p| HiddenRequest {
                tokens: &p.tokens,
                from: p.prompt_len - 1,
            })
            .collect();
        let mut keys: Vec<Vec<u8>> = todo_values[range.clone()]
            .iter()
            .map(|v| Vec::with_capacity(v.len() * row_bytes))
            .collect();
        // A batch interrupted for a waiting rewrite kept nothing: serve the rewrite, run it again.
        loop {
            let r = session.hidden_states(&reqs, |s, _pos, h| match opts.key_type {
                KeyType::F16 => {
                    keys[s].extend(h.iter().flat_map(|&x| f16::from_f32(x).to_le_bytes()))
                }
                KeyType::F32 => keys[s].extend(h.iter().flat_map(|&x| x.to_le_bytes())),
            });
            match r {
                Err(e) if e.is::<crate::model::Interrupted>() => {
                    report.batches_interrupted += 1;
                    keys.iter_mut().for_each(Vec::clear);
                    between_batches(session)?;
                }
                r => break r?,
            }
        }
        let writer = writer.as_mut().expect("a build that computes pairs writes");
        for (k, values) in keys.iter().zip(&todo_values[range.clone()]) {
            debug_assert_eq!(k.len(), values.len() * row_bytes);
            copy_reused(writer, &mut written)?;
            writer.keys(k)?;
            written += 1;
        }
        prog.tokens_done += reqs.iter().map(|r| r.tokens.len() - shared).sum::<usize>();
        prog.pairs_done += reqs.len();
        progress(prog);
        between_batches(session)?;
    }
    report.tokens_processed = prog.tokens_done;
    opts.check_cancelled()?;
    report.path = match writer {
        // Nothing to write: the file on disk is already this memory.
        None => opts.out.join(format::FILE_NAME),
        Some(mut writer) => {
            copy_reused(&mut writer, &mut written)?;
            let tokens = keep.iter().map(|&(_, rows)| match rows {
                Rows::Reused(g) => {
                    let m = previous.as_ref().unwrap();
                    let g = m.groups[g];
                    &m.tokens()[g.first_row as usize..(g.first_row + g.rows as u64) as usize]
                }
                Rows::New(i) => &todo_values[i][..],
            });
            writer.finish(tokens)?
        }
    };
    // The held-out pairs' text, so that training can try rewriting them (the memory itself
    // keeps only hidden states and target tokens).
    let by_hash: HashMap<[u8; 16], &Pair> = pairs.iter().map(|p| (p.hash(), p)).collect();
    let hashes: Vec<[u8; 16]> = keep.iter().map(|g| g.0).collect();
    let is_held = super::split::held_out(&hashes, super::DEFAULT_HELD_OUT_PERCENT);
    let held: Vec<Pair> = hashes
        .iter()
        .zip(&is_held)
        .filter(|(_, h)| **h)
        .filter_map(|(hash, _)| by_hash.get(hash).map(|p| (*p).clone()))
        .take(super::MAX_HELD_OUT_TEXTS)
        .collect();
    super::pairs::write_held_out(&opts.out, &held)?;
    // And the words the training side's targets write and its sources do not.
    let marked = super::marked_words(
        hashes
            .iter()
            .zip(&is_held)
            .filter(|(_, h)| !**h)
            .filter_map(|(hash, _)| by_hash.get(hash))
            .map(|p| (p.source.as_str(), p.target.as_str())),
    );
    super::write_marked_words(&opts.out, &marked)?;
    report.pairs = index.len();
    report.entries = index.iter().map(|g| g.rows as usize).sum();
    report.seconds = started.elapsed().as_secs_f64();
    report.tokens_per_second = report.tokens_processed as f64 / report.seconds.max(1e-9);
    Ok(report)
}

/// Worked examples for the prompt: `k` pairs of the training side of the held-out split (so
/// validation never sees its own pair as an example), of an ordinary length, in hash order, and
/// the ones the previous memory used first while they are still there, so that an edit
/// elsewhere does not change the prompt (and recompute the whole memory).
pub fn choose_examples(
    pairs: &[Pair],
    k: usize,
    template: &Template,
    previous_template: Option<&str>,
) -> Vec<usize> {
    let words = |s: &str| s.split_whitespace().count();
    let mut candidates: Vec<(bool, [u8; 16], usize)> = pairs
        .iter()
        .enumerate()
        .filter(|(_, p)| {
            !super::split::is_held_out(&p.hash(), super::split::DEFAULT_HELD_OUT_PERCENT)
                && (6..=30).contains(&words(&p.source))
                && (6..=30).contains(&words(&p.target))
                && !p.source.contains(super::template::SOURCE_SLOT)
                && !p.target.contains(super::template::SOURCE_SLOT)
        })
        .map(|(i, p)| {
            let reused = previous_template
                .is_some_and(|t| t.contains(&template.example(&p.source, &p.target)));
            (!reused, p.hash(), i)
        })
        .collect();
    candidates.sort_unstable();
    let mut chosen: Vec<usize> = candidates.iter().take(k).map(|c| c.2).collect();
    // In input order: the prompt then reads like the user's own file.
    chosen.sort_unstable();
    chosen
}

/// The memory already in `dir`, if it can be reused. A memory of another model or template is
/// refused unless `replace`; a damaged one is recomputed, with a warning.
fn open_previous(
    dir: &Path,
    existing: Option<Result<MappedMemory>>,
    header: &Header,
    model: &ModelInfo,
    replace: bool,
    warnings: &mut Vec<String>,
) -> Result<Option<MappedMemory>> {
    let path = dir.join(format::FILE_NAME);
    let Some(existing) = existing else {
        return Ok(None);
    };
    let m = match existing {
        Ok(m) => m,
        Err(e) => {
            warnings.push(format!("{e:#}; recomputing every pair"));
            return Ok(None);
        }
    };
    let h = &m.header;
    let same_model = model.answers_to(&blake3::Hash::from_bytes(h.model_identity).to_hex())
        && h.hidden == header.hidden;
    let same_template = h.template_digest == header.template_digest;
    if same_model && same_template && h.key_type == header.key_type {
        return Ok(Some(m));
    }
    let what = if !same_model {
        format!("another model ({})", h.model_name)
    } else if !same_template {
        format!("another template ({:?})", h.template)
    } else {
        format!("another key type ({:?})", h.key_type)
    };
    if replace {
        warnings.push(format!("replacing {} built with {what}", path.display()));
        return Ok(None);
    }
    Err(anyhow::anyhow!(
        "{} holds a memory built with {what}; memories are never mixed. Use another --out, or \
         --replace to discard it and rebuild",
        path.display()
    ))
    .context("refusing to build")
}
