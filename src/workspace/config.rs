//! `.pema.toml`: a workspace's settings, all optional. Documented in README.md ("Workspace
//! settings"); unknown keys are an error, so a typo is reported instead of silently ignored.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context as _, Result};
use serde::{Deserialize, Serialize};

use crate::memory::Template;

pub const FILE_NAME: &str = ".pema.toml";

/// How a prose file is cut into units, each of which becomes one pseudo-pair.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum UnitKind {
    Sentence,
    Paragraph,
}

/// What the memory holds for a unit whose back-paraphrase is not ready yet.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum PendingUnits {
    /// Nothing: the unit enters the memory once its paraphrase exists.
    Skip,
    /// The pair (unit → unit) until then.
    Identity,
}

#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct WorkspaceConfig {
    /// Globs (relative to the root) of the prose that is the style corpus.
    pub corpus: Vec<String>,
    /// Globs of JSONL pairs files (`{"source": …, "target": …}` per line), used as they are.
    pub pairs: Vec<String>,
    /// Globs left out even when they match the above (on top of .gitignore and .ignore).
    pub exclude: Vec<String>,
    /// A preset name or a template with a `{source}` slot.
    pub template: String,
    pub unit: UnitKind,
    pub pending_units: PendingUnits,
    /// Largest memory, in entries (target tokens); later pairs are left out.
    pub memory_cap: usize,
    /// Files larger than this are skipped.
    pub max_file_bytes: u64,
    /// Adapter rank.
    pub rank: usize,
    /// λ_max of Gradual Unrolling; None: the schedule the adapter chose on its held-out pairs.
    pub lambda_max: Option<f32>,
    /// Worked examples from the workspace's pairs in front of every prompt.
    pub shots: usize,
    /// Quiet time after the last memory change before the adapter retrains.
    pub retrain_after_seconds: f64,
    /// Where the workspace's memory and adapter live (default: the user's cache directory).
    pub state_dir: Option<PathBuf>,
}

impl Default for WorkspaceConfig {
    fn default() -> Self {
        Self {
            corpus: [
                "**/*.md",
                "**/*.markdown",
                "**/*.txt",
                "**/*.rst",
                "**/*.adoc",
                "**/*.asciidoc",
            ]
            .map(String::from)
            .to_vec(),
            pairs: vec!["**/*.pairs.jsonl".into()],
            exclude: vec![],
            template: "rewrite".into(),
            unit: UnitKind::Sentence,
            pending_units: PendingUnits::Identity,
            memory_cap: 500_000,
            max_file_bytes: 1 << 20,
            rank: 128,
            lambda_max: None,
            shots: crate::memory::DEFAULT_SHOTS,
            retrain_after_seconds: 3.0,
            state_dir: None,
        }
    }
}

impl WorkspaceConfig {
    /// The settings of the workspace at `root`: defaults when it has no `.pema.toml`.
    pub fn load(root: &Path) -> Result<Self> {
        let path = root.join(FILE_NAME);
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Self::default()),
            Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
        };
        let config: Self =
            toml::from_str(&text).with_context(|| format!("{} is not valid", path.display()))?;
        config
            .validate()
            .with_context(|| format!("in {}", path.display()))?;
        Ok(config)
    }

    fn validate(&self) -> Result<()> {
        Template::from_arg(&self.template)?;
        if let Some(l) = self.lambda_max.filter(|l| !(0.0..=1.0).contains(l)) {
            bail!("lambda_max must be between 0 and 1, not {l}");
        }
        if self.shots > 8 {
            bail!("shots must be 8 or fewer, not {}", self.shots);
        }
        if self.rank == 0 {
            bail!("rank must be at least 1");
        }
        if self.memory_cap == 0 {
            bail!("memory_cap must be at least 1");
        }
        for g in self.corpus.iter().chain(&self.pairs).chain(&self.exclude) {
            globset::Glob::new(g).with_context(|| format!("bad glob {g:?}"))?;
        }
        Ok(())
    }

    pub fn template(&self) -> Template {
        Template::from_arg(&self.template).expect("validated when loaded")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_without_file_and_errors_named() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(
            WorkspaceConfig::load(dir.path()).unwrap(),
            WorkspaceConfig::default()
        );
        std::fs::write(
            dir.path().join(FILE_NAME),
            "rank = 64\nunit = \"paragraph\"\n",
        )
        .unwrap();
        let c = WorkspaceConfig::load(dir.path()).unwrap();
        assert_eq!((c.rank, c.unit), (64, UnitKind::Paragraph));
        std::fs::write(dir.path().join(FILE_NAME), "rnak = 64\n").unwrap();
        let e = format!("{:#}", WorkspaceConfig::load(dir.path()).unwrap_err());
        assert!(e.contains("rnak") && e.contains(".pema.toml"), "{e}");
        std::fs::write(dir.path().join(FILE_NAME), "lambda_max = 3.0\n").unwrap();
        assert!(WorkspaceConfig::load(dir.path()).is_err());
    }
}
