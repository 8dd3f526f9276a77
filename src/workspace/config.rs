//! `.pema.toml`: a workspace's settings, all optional. Documented in README.md ("Workspace
//! settings"); unknown keys are an error, so a typo is reported instead of silently ignored.

use std::path::Path;

use anyhow::{bail, Context as _, Result};
use serde::{Deserialize, Serialize};

use super::units::{Language, SplitOptions};
use crate::memory::Template;

/// The settings file's name, at the workspace's root.
pub const FILE_NAME: &str = ".pema.toml";
/// A larger `.pema.toml` is refused.
pub const MAX_CONFIG_BYTES: u64 = 64 << 10;

/// How a prose file is cut into units, each of which becomes one pseudo-pair.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum UnitKind {
    /// One sentence per unit (the default).
    Sentence,
    /// One paragraph per unit (or list item, table cell, …: one block of running text).
    Paragraph,
}

/// What the memory holds for a unit whose back-paraphrase is not ready yet.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum PendingUnits {
    /// Nothing: the unit enters the memory once its paraphrase exists.
    Skip,
    /// The pair (unit → unit) until then.
    Identity,
}

/// How a unit of prose gets the source of its pseudo-pair.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum PseudoSources {
    /// The unit with the words the model finds far less likely than its own choice replaced by
    /// that choice. Measured worse than leaving prose alone on Bible prose (BENCHMARKS.md,
    /// "Learning from prose"): an option, not the default.
    Neutralise,
    /// The model's plain paraphrase of the unit. Teaches little but "copy" with the 270M model
    /// (BENCHMARKS.md, "Back-paraphrase"): an option.
    Paraphrase,
    /// The unit with its style words (the words it uses far more often than plain text of its
    /// language) replaced by the model's likeliest other word (the default; BENCHMARKS.md,
    /// "Style words").
    #[serde(rename = "style-words")]
    StyleWords,
}

/// A workspace's settings as `.pema.toml` gives them, defaults for what it leaves out.
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize, schemars::JsonSchema)]
#[serde(default, deny_unknown_fields)]
#[schemars(title = "pema workspace settings (.pema.toml)")]
pub struct WorkspaceConfig {
    /// Globs (relative to the root) of the prose that is the style corpus.
    #[schemars(length(max = 256), inner(length(max = 1024)))]
    pub corpus: Vec<String>,
    /// Globs of JSONL pairs files (`{"source": …, "target": …}` per line), used as they are.
    #[schemars(length(max = 256), inner(length(max = 1024)))]
    pub pairs: Vec<String>,
    /// Globs left out even when they match the above (on top of .gitignore and .ignore).
    #[schemars(length(max = 256), inner(length(max = 1024)))]
    pub exclude: Vec<String>,
    /// A preset name or a template with a `{source}` slot.
    pub template: String,
    /// How prose is cut into units: `sentence` (default) or `paragraph`.
    pub unit: UnitKind,
    /// Headings (section titles) are units too.
    pub headings: bool,
    /// The language of the prose, for sentence boundaries: `auto` (detected per file from its
    /// stopwords), `en`, `de`, `fr` or `es`.
    #[schemars(extend("enum" = ["auto", "en", "de", "fr", "es"]))]
    pub language: String,
    /// How a unit of prose gets its pseudo-source: `style-words` (default), `paraphrase` or
    /// `neutralise`.
    pub pseudo_sources: PseudoSources,
    /// What the memory holds for a unit not paraphrased yet: `identity` (default) or `skip`.
    pub pending_units: PendingUnits,
    /// Most units given a pseudo-source (paraphrased), picked by a hash of their text so that
    /// they spread over the files; the others stand as `pending_units` says. Bounds the
    /// background work of a large folder (on two cores, 0.1 to 0.2 s a unit with style words,
    /// 1.4 s with `paraphrase`).
    #[schemars(range(max = 10_000_000))]
    pub paraphrase_limit: usize,
    /// Largest memory, in entries (target tokens); later pairs are left out.
    #[schemars(range(min = 1, max = 100_000_000))]
    pub memory_cap: usize,
    /// Files larger than this are skipped.
    #[schemars(range(min = 1, max = 67_108_864))]
    pub max_file_bytes: u64,
    /// Adapter rank.
    #[schemars(range(min = 1, max = 4096))]
    pub rank: usize,
    /// λ_max of Gradual Unrolling; unset: the schedule the adapter chose on its held-out pairs.
    #[schemars(range(min = 0.0, max = 1.0))]
    pub lambda_max: Option<f32>,
    /// Worked examples from the workspace's pairs in front of every prompt.
    #[schemars(range(max = 8))]
    pub shots: usize,
    /// Quiet time after the last memory change before the adapter retrains.
    #[schemars(range(min = 0.0, max = 86_400.0))]
    pub retrain_after_seconds: f64,
    /// A name for the workspace's state folder, `<cache>/pema/named/<name>` (default: one
    /// folder per workspace root). One plain name, never a path: a workspace's settings cannot
    /// send its state outside the cache.
    #[schemars(regex(pattern = r"^[A-Za-z0-9_-][A-Za-z0-9._-]{0,63}$"))]
    pub state_dir: Option<String>,
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
            template: crate::memory::DEFAULT_TEMPLATE.into(),
            unit: UnitKind::Sentence,
            headings: false,
            language: "auto".into(),
            pseudo_sources: PseudoSources::StyleWords,
            pending_units: PendingUnits::Identity,
            paraphrase_limit: 1_000,
            memory_cap: 500_000,
            max_file_bytes: 1 << 20,
            rank: crate::adapter::DEFAULT_RANK,
            lambda_max: None,
            shots: crate::memory::DEFAULT_SHOTS,
            retrain_after_seconds: 3.0,
            state_dir: None,
        }
    }
}

impl WorkspaceConfig {
    /// The JSON schema of `.pema.toml` (published as `docs/pema.schema.json`, for editors'
    /// TOML language servers), generated from this type so that it cannot drift from it.
    pub fn json_schema() -> String {
        let schema = schemars::schema_for!(WorkspaceConfig);
        let mut s = serde_json::to_string_pretty(&schema).expect("a schema serialises");
        s.push('\n');
        s
    }

    /// The settings of the workspace at `root`: defaults when it has no `.pema.toml`.
    pub fn load(root: &Path) -> Result<Self> {
        let path = root.join(FILE_NAME);
        let text = match read_small_file(&path, MAX_CONFIG_BYTES) {
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
        if self.language != "auto" && Language::from_code(&self.language).is_none() {
            bail!(
                "language must be \"auto\", \"en\", \"de\", \"fr\" or \"es\", not {:?}",
                self.language
            );
        }
        if let Some(l) = self.lambda_max.filter(|l| !(0.0..=1.0).contains(l)) {
            bail!("lambda_max must be between 0 and 1, not {l}");
        }
        if self.shots > 8 {
            bail!("shots must be 8 or fewer, not {}", self.shots);
        }
        if self.rank == 0 {
            bail!("rank must be at least 1");
        }
        if self.rank > 4096 {
            bail!("rank must be at most 4096, not {}", self.rank);
        }
        if self.paraphrase_limit > 10_000_000 {
            bail!("paraphrase_limit must be at most 10000000");
        }
        if self.memory_cap == 0 || self.memory_cap > 100_000_000 {
            bail!("memory_cap must be between 1 and 100000000");
        }
        if self.max_file_bytes == 0 || self.max_file_bytes > 64 << 20 {
            bail!("max_file_bytes must be between 1 and 67108864 (64 MiB)");
        }
        if !self.retrain_after_seconds.is_finite()
            || !(0.0..=86_400.0).contains(&self.retrain_after_seconds)
        {
            bail!(
                "retrain_after_seconds must be between 0 and 86400, not {}",
                self.retrain_after_seconds
            );
        }
        if let Some(d) = &self.state_dir {
            if !super::state::valid_state_name(d) {
                bail!(
                    "state_dir must be one plain name (letters, digits, -, _, .; not a path), \
                     not {d:?}: state always lives in pema's cache folder"
                );
            }
        }
        for (name, globs) in [
            ("corpus", &self.corpus),
            ("pairs", &self.pairs),
            ("exclude", &self.exclude),
        ] {
            if globs.len() > 256 || globs.iter().any(|g| g.len() > 1024) {
                bail!("{name} takes at most 256 globs of at most 1024 characters");
            }
        }
        for g in self.corpus.iter().chain(&self.pairs).chain(&self.exclude) {
            globset::Glob::new(g).with_context(|| format!("bad glob {g:?}"))?;
        }
        Ok(())
    }

    /// How the corpus files are cut into units.
    pub fn split_options(&self) -> SplitOptions {
        SplitOptions {
            kind: self.unit,
            headings: self.headings,
            language: Language::from_code(&self.language),
        }
    }

    /// The prompt template `template` names (checked when the settings were loaded).
    pub fn template(&self) -> Template {
        Template::from_arg(&self.template).expect("validated when loaded")
    }
}

/// Reads a small regular file without following a link at its name and without blocking on a
/// FIFO or device: anything else, or a file over `max` bytes, is an error of kind
/// `InvalidData` with the reason.
pub fn read_small_file(path: &Path, max: u64) -> std::io::Result<String> {
    use std::io::Read as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let f = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path)
        .map_err(|e| {
            if e.raw_os_error() == Some(libc::ELOOP) {
                std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    "it is a symbolic link, which pema does not follow",
                )
            } else {
                e
            }
        })?;
    let meta = f.metadata()?;
    let invalid = |m: String| std::io::Error::new(std::io::ErrorKind::InvalidData, m);
    if !meta.is_file() {
        return Err(invalid("it is not a regular file".into()));
    }
    if meta.len() > max {
        return Err(invalid(format!(
            "it is {} bytes, more than the {max}-byte limit",
            meta.len()
        )));
    }
    let mut bytes = Vec::new();
    f.take(max + 1).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > max {
        return Err(invalid(format!("it grew past the {max}-byte limit")));
    }
    String::from_utf8(bytes).map_err(|_| invalid("it is not UTF-8".into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The published schema is the one the settings type makes: regenerate it with
    /// `cargo run --release -- schema > docs/pema.schema.json` after changing a setting.
    #[test]
    fn published_schema_is_current() {
        let published = include_str!("../../docs/pema.schema.json");
        let made = WorkspaceConfig::json_schema();
        assert!(
            published == made,
            "docs/pema.schema.json is stale: run `cargo run --release -- schema > docs/pema.schema.json`"
        );
        // Every setting is in it, and unknown keys are refused as the loader refuses them.
        let schema: serde_json::Value = serde_json::from_str(&made).unwrap();
        let props = schema["properties"].as_object().unwrap();
        let defaults = serde_json::to_value(WorkspaceConfig::default()).unwrap();
        for key in defaults.as_object().unwrap().keys() {
            assert!(props.contains_key(key), "{key} missing from the schema");
        }
        assert_eq!(schema["additionalProperties"], false);
    }

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
        assert_eq!(c.split_options().language, None);
        std::fs::write(
            dir.path().join(FILE_NAME),
            "language = \"de\"\nheadings = true\n",
        )
        .unwrap();
        let o = WorkspaceConfig::load(dir.path()).unwrap().split_options();
        assert_eq!((o.language, o.headings), (Some(Language::German), true));
        std::fs::write(
            dir.path().join(FILE_NAME),
            "pseudo_sources = \"neutralise\"\n",
        )
        .unwrap();
        let c = WorkspaceConfig::load(dir.path()).unwrap();
        assert_eq!(c.pseudo_sources, PseudoSources::Neutralise);
        std::fs::write(dir.path().join(FILE_NAME), "pseudo_sources = \"guess\"\n").unwrap();
        assert!(WorkspaceConfig::load(dir.path()).is_err());
        std::fs::write(dir.path().join(FILE_NAME), "rnak = 64\n").unwrap();
        let e = format!("{:#}", WorkspaceConfig::load(dir.path()).unwrap_err());
        assert!(e.contains("rnak") && e.contains(".pema.toml"), "{e}");
        std::fs::write(dir.path().join(FILE_NAME), "lambda_max = 3.0\n").unwrap();
        assert!(WorkspaceConfig::load(dir.path()).is_err());
    }

    #[test]
    fn unsafe_settings_and_files_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = dir.path().join(FILE_NAME);
        for bad in [
            "state_dir = \"/etc\"\n",
            "state_dir = \"../elsewhere\"\n",
            "state_dir = \"a/b\"\n",
            "state_dir = \".hidden\"\n",
            "retrain_after_seconds = -1.0\n",
            "retrain_after_seconds = nan\n",
            "retrain_after_seconds = inf\n",
            "retrain_after_seconds = 1e300\n",
            "lambda_max = nan\n",
            "max_file_bytes = 0\n",
            "rank = 100000\n",
            "language = \"klingon\"\n",
        ] {
            std::fs::write(&cfg, bad).unwrap();
            assert!(WorkspaceConfig::load(dir.path()).is_err(), "{bad}");
        }
        std::fs::write(&cfg, "state_dir = \"my-notes\"\n").unwrap();
        let c = WorkspaceConfig::load(dir.path()).unwrap();
        let s = super::super::state::state_dir(dir.path(), &c);
        assert!(s.starts_with(crate::dirs::pema_cache()), "{}", s.display());
        // A link, a FIFO and an oversized file are refused with the reason.
        std::fs::remove_file(&cfg).unwrap();
        let target = dir.path().join("real.toml");
        std::fs::write(&target, "rank = 8\n").unwrap();
        std::os::unix::fs::symlink(&target, &cfg).unwrap();
        let e = format!("{:#}", WorkspaceConfig::load(dir.path()).unwrap_err());
        assert!(e.contains("symbolic link"), "{e}");
        std::fs::remove_file(&cfg).unwrap();
        assert!(std::process::Command::new("mkfifo")
            .arg(&cfg)
            .status()
            .unwrap()
            .success());
        let e = format!("{:#}", WorkspaceConfig::load(dir.path()).unwrap_err());
        assert!(e.contains("not a regular file"), "{e}");
        std::fs::remove_file(&cfg).unwrap();
        std::fs::write(&cfg, format!("# {}\n", "x".repeat(70_000))).unwrap();
        let e = format!("{:#}", WorkspaceConfig::load(dir.path()).unwrap_err());
        assert!(e.contains("limit"), "{e}");
    }
}
