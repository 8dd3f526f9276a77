//! Where a workspace's state lives (never inside the user's tree unless they say so) and the
//! cache of back-paraphrases, so that neither an edit nor a restart paraphrases a unit twice.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context as _, Result};
use serde::{Deserialize, Serialize};

use super::config::WorkspaceConfig;

/// The workspace's state folder: `<cache>/pema/named/<state_dir>` when `.pema.toml` names one
/// (a plain name, checked when the settings load), else
/// `<cache>/pema/workspaces/<folder name>-<hash of the root path>`. A workspace's settings cannot
/// put its state anywhere else.
pub fn state_dir(root: &Path, config: &WorkspaceConfig) -> PathBuf {
    if let Some(d) = config.state_dir.as_deref().filter(|d| valid_state_name(d)) {
        return crate::dirs::pema_cache().join("named").join(d);
    }
    let name: String = root
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "root".into())
        .chars()
        .map(|c| {
            if c.is_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .take(40)
        .collect();
    let hash = blake3::hash(root.as_os_str().as_encoded_bytes()).to_hex();
    crate::dirs::pema_cache()
        .join("workspaces")
        .join(format!("{name}-{}", &hash[..16]))
}

/// A `state_dir` of `.pema.toml`: one plain name (letters, digits, `-`, `_`, `.`; not starting
/// with a dot; at most 64 characters), never a path.
pub fn valid_state_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && !name.starts_with('.')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

/// The workspace's memory: this folder inside its state folder.
pub const MEMORY_DIR: &str = "memory";
/// The workspace's adapter: this file inside its state folder.
pub const ADAPTER_FILE: &str = "adapter.safetensors";
const PARAPHRASES_FILE: &str = "paraphrases.json";
const FORMAT: &str = "pema-paraphrases";
const VERSION: u32 = 1;

#[derive(Serialize, Deserialize)]
struct CacheFile {
    format: String,
    version: u32,
    /// What made the paraphrases: the paraphraser's version and the model's identity.
    made_by: String,
    /// Unit hash (hex) → paraphrase.
    entries: HashMap<String, String>,
}

/// Back-paraphrases by unit content.
pub struct ParaphraseCache {
    path: PathBuf,
    made_by: String,
    map: HashMap<String, String>,
    unsaved: usize,
}

fn unit_key(unit: &str) -> String {
    blake3::hash(unit.as_bytes()).to_hex()[..32].to_string()
}

impl ParaphraseCache {
    /// The cache in `state`, made by `made_by`. A cache made another way is discarded; a damaged
    /// one is discarded with the reason returned (the paraphrases are then recomputed).
    pub fn load(state: &Path, made_by: &str) -> (Self, Option<String>) {
        Self::load_any(state, made_by, &[])
    }

    /// [`ParaphraseCache::load`], keeping a cache made by one of `also` (what `made_by` was
    /// called before: the same model under another identity) as if `made_by` had made it.
    pub fn load_any(state: &Path, made_by: &str, also: &[String]) -> (Self, Option<String>) {
        let path = state.join(PARAPHRASES_FILE);
        let mut cache = Self {
            path: path.clone(),
            made_by: made_by.to_string(),
            map: HashMap::new(),
            unsaved: 0,
        };
        let read = || -> Result<Option<CacheFile>> {
            let bytes = match std::fs::read(&path) {
                Ok(b) => b,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
                Err(e) => return Err(e.into()),
            };
            let f: CacheFile = serde_json::from_slice(&bytes)?;
            if f.format != FORMAT {
                bail!("not a paraphrase cache");
            }
            if f.version > VERSION {
                bail!("written by a newer pema (version {})", f.version);
            }
            Ok(Some(f))
        };
        match read() {
            Ok(Some(f)) if f.made_by == made_by => cache.map = f.entries,
            Ok(Some(f)) if also.contains(&f.made_by) => {
                cache.map = f.entries;
                // Written again under the name it goes by now.
                cache.unsaved = cache.map.len().max(1);
            }
            Ok(_) => {}
            Err(e) => {
                return (
                    cache,
                    Some(format!(
                        "the paraphrase cache {} is unusable ({e:#}); paraphrasing again",
                        path.display()
                    )),
                )
            }
        }
        (cache, None)
    }

    /// What made the pseudo-sources held.
    pub fn made_by(&self) -> &str {
        &self.made_by
    }

    /// From now on pseudo-sources are made by `made_by`: those made another way are dropped.
    pub fn set_made_by(&mut self, made_by: &str) {
        if self.made_by != made_by {
            self.made_by = made_by.to_string();
            self.unsaved += self.map.len().max(1);
            self.map.clear();
        }
    }

    /// The paraphrase of `unit` (its exact text), if there is one.
    pub fn get(&self, unit: &str) -> Option<&str> {
        self.map.get(&unit_key(unit)).map(String::as_str)
    }

    /// Keeps `paraphrase` as the paraphrase of `unit` (in memory until the cache is saved).
    pub fn insert(&mut self, unit: &str, paraphrase: String) {
        self.map.insert(unit_key(unit), paraphrase);
        self.unsaved += 1;
    }

    /// Units with a paraphrase.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// No unit has a paraphrase.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// Drops the paraphrases of units no longer in the workspace.
    pub fn retain_units<'a>(&mut self, units: impl IntoIterator<Item = &'a str>) {
        let keep: std::collections::HashSet<String> = units.into_iter().map(unit_key).collect();
        let before = self.map.len();
        self.map.retain(|k, _| keep.contains(k));
        self.unsaved += before - self.map.len();
    }

    /// Writes the cache if it changed (atomically).
    pub fn save(&mut self) -> Result<()> {
        if self.unsaved == 0 {
            return Ok(());
        }
        let f = CacheFile {
            format: FORMAT.into(),
            version: VERSION,
            made_by: self.made_by.clone(),
            entries: self.map.clone(),
        };
        crate::fsutil::write_atomic(&self.path, &serde_json::to_vec(&f)?)
            .context("saving paraphrases")?;
        self.unsaved = 0;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cache_round_trip_and_damage() {
        let d = tempfile::tempdir().unwrap();
        let (mut c, w) = ParaphraseCache::load(d.path(), "v1 m");
        assert!(w.is_none() && c.is_empty());
        c.insert("A unit.", "plain".into());
        c.save().unwrap();
        let (c, _) = ParaphraseCache::load(d.path(), "v1 m");
        assert_eq!(c.get("A unit."), Some("plain"));
        let (c, w) = ParaphraseCache::load(d.path(), "v2 m");
        assert!(c.is_empty() && w.is_none());
        // Made under a name the same maker had before: kept, and saved under the new one.
        let (mut c, _) = ParaphraseCache::load_any(d.path(), "v1 n", &["v1 m".to_string()]);
        assert_eq!((c.get("A unit."), c.made_by()), (Some("plain"), "v1 n"));
        c.save().unwrap();
        let (c, _) = ParaphraseCache::load(d.path(), "v1 n");
        assert_eq!(c.get("A unit."), Some("plain"));
        std::fs::write(d.path().join(PARAPHRASES_FILE), b"{trunc").unwrap();
        let (c, w) = ParaphraseCache::load(d.path(), "v1 m");
        assert!(c.is_empty() && w.unwrap().contains("unusable"));
    }
}
