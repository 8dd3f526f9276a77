//! `pema/examples`: a few of the pairs a workspace's memory learns from (pairs of its pairs
//! files, and pseudo-pairs: a paraphrase pema made → the user's own sentence), so that a user
//! can see what was learned. Read again from the files and the paraphrase cache on disk: the
//! pipeline keeps its pairs to itself and the memory file holds no text.

use std::collections::HashSet;
use std::path::Path;

use super::{Daemon, RequestError};
use crate::memory::split::{is_held_out, DEFAULT_HELD_OUT_PERCENT};
use crate::workspace::{ParaphraseCache, Workspace};

/// Most examples one request returns.
pub const MAX_EXAMPLES: usize = 50;

/// One pair the memory learns from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Example {
    /// What is rewritten: a pairs file's source, or pema's paraphrase of the user's sentence.
    pub source: String,
    /// The rewrite learned: a pairs file's target, or the user's own sentence.
    pub target: String,
    /// A pseudo-pair (its source made by pema from a unit of a prose file).
    pub pseudo: bool,
}

impl Daemon {
    /// Up to `limit` pairs the memory of the workspace at `root` learns from, in pair-hash order
    /// (a spread over the files that stays put while they do). Left out: held-out pairs and the
    /// prompt's worked examples (neither is in the memory's rows), and units still waiting for
    /// their paraphrase. Reads the workspace's files (no model): call it off the async runtime.
    pub fn learned_examples(
        &self,
        root: &Path,
        limit: usize,
    ) -> Result<Vec<Example>, RequestError> {
        let worked: HashSet<(String, String)> = self.examples(root)?.into_iter().collect();
        let mut ws = Workspace::open(root).map_err(RequestError::Failed)?;
        ws.refresh().map_err(RequestError::Failed)?;
        // A cache made another way is not this workspace's.
        let how = ws.config().pseudo_sources;
        let words = crate::workspace::StyleWords::load(ws.state_dir());
        let made_by = super::pipeline::pseudo_sources_made_by(how, words.as_ref(), &self.model);
        let before = super::pipeline::made_by_aliases(how, words.as_ref(), &self.model);
        let (cache, _) = ParaphraseCache::load_any(ws.state_dir(), &made_by, &before);
        let units: HashSet<&str> = ws.units().collect();
        let mut seen = HashSet::new();
        let mut out: Vec<([u8; 16], Example)> = vec![];
        for p in ws.pairs(&cache).pairs {
            let pseudo = units.contains(p.target.as_str())
                && (p.source == p.target || cache.get(&p.target) == Some(p.source.as_str()));
            let hash = p.hash();
            let stand_in = pseudo && p.source == p.target;
            if stand_in
                || is_held_out(&hash, DEFAULT_HELD_OUT_PERCENT)
                || worked.contains(&(p.source.clone(), p.target.clone()))
                || !seen.insert(hash)
            {
                continue;
            }
            out.push((
                hash,
                Example {
                    source: p.source,
                    target: p.target,
                    pseudo,
                },
            ));
        }
        out.sort_by_key(|(hash, _)| *hash);
        Ok(out.into_iter().take(limit).map(|(_, e)| e).collect())
    }
}
