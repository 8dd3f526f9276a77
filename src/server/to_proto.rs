//! The daemon's answers as the wire carries them (rust-analyzer's `to_proto`): one explicit,
//! serializable struct per response, built from the daemon's own types by the conversion
//! functions here. Keys are camelCase and enum values explicit strings, so that renaming a
//! daemon field changes nothing a client reads unless this file changes too (and
//! `tests/wire.rs` pins every key).

use std::path::Path;

use serde::Serialize;
use tower_lsp_server::lsp_types::ProgressToken;

use super::protocol::RewriteResult;
use crate::daemon::{self, AdapterState, Event, Lambda, RequestError, Stage};
use crate::decode::StopReason;
use crate::memory::{BuildReport, SkippedLine};
use crate::schedule::Mode;
use crate::workspace::{FileKind, FilesReport, LearnedFile, Refresh, Skipped};

fn path(p: &Path) -> String {
    p.display().to_string()
}

/// `pema/status`.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DaemonStatus {
    pub version: String,
    pub model: String,
    pub uptime_seconds: f64,
    pub queue: QueueStatus,
    pub workspaces: Vec<WorkspaceStatus>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct QueueStatus {
    pub rewrites_waiting: usize,
    pub background_waiting: Vec<String>,
    pub busy: Option<String>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct WorkspaceStatus {
    pub root: String,
    pub state_dir: String,
    pub files: usize,
    pub corpus_files: usize,
    pub pairs_files: usize,
    pub units: usize,
    pub units_paraphrased: usize,
    pub units_pending: usize,
    pub pairs: usize,
    pub memory: MemoryStatus,
    pub adapter: AdapterStatus,
    pub last_refresh: RefreshStatus,
    pub files_read: usize,
    pub skipped: Vec<SkippedFile>,
    pub errors: Vec<String>,
    pub config_error: Option<String>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct MemoryStatus {
    pub entries: usize,
    pub pairs: usize,
    pub builds: usize,
    pub last_build: Option<LastBuild>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct LastBuild {
    pub path: String,
    pub pairs: usize,
    pub entries: usize,
    pub pairs_computed: usize,
    pub pairs_reused: usize,
    pub pairs_removed: usize,
    pub duplicate_pairs: usize,
    pub pairs_too_long: usize,
    pub pairs_over_cap: usize,
    pub skipped_lines: Vec<SkippedPairsLine>,
    pub tokens_processed: usize,
    pub seconds: f64,
    pub tokens_per_second: f64,
    pub examples: usize,
    pub shared_prefix_tokens: usize,
    pub batches_interrupted: usize,
    pub warnings: Vec<String>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SkippedPairsLine {
    pub file: String,
    pub line: usize,
    pub reason: String,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AdapterStatus {
    /// `none`, `loading`, `building`, `training` or `ready`.
    pub state: &'static str,
    pub available: bool,
    pub stale: bool,
    pub held_out_loss: Option<f32>,
    pub held_out_ce: Option<f32>,
    pub trainings: usize,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RefreshStatus {
    pub files_read: usize,
    pub files_removed: usize,
    pub files_unchanged: usize,
    pub config_reloaded: bool,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SkippedFile {
    pub path: String,
    pub reason: String,
}

/// `pema/files`.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct FilesResult {
    pub root: String,
    pub learned: Vec<FileLearned>,
    pub waiting: Vec<String>,
    pub skipped: Vec<SkippedFile>,
    pub truncated: bool,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct FileLearned {
    pub path: String,
    /// `corpus` or `pairs`.
    pub kind: &'static str,
    pub units: usize,
    pub pairs: usize,
    pub bad_lines: usize,
}

/// `pema/examples`.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ExamplesResult {
    pub examples: Vec<ExamplePair>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ExamplePair {
    pub source: String,
    pub target: String,
    pub pseudo: bool,
}

/// `pema/statusChanged`: what a status line shows of one workspace, under the same names as
/// its entry in `pema/status` (so a client updates that entry with it).
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct StatusChanged {
    pub root: String,
    pub units: usize,
    pub units_pending: usize,
    pub pairs: usize,
    pub memory: MemoryCounts,
    pub adapter: AdapterStatus,
    pub errors: Vec<String>,
    pub config_error: Option<String>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct MemoryCounts {
    pub entries: usize,
    pub pairs: usize,
}

/// `pema/openWorkspace`.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct OpenWorkspaceResult {
    pub root: String,
}

/// `pema/closeWorkspace`.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CloseWorkspaceResult {
    pub closed: bool,
}

/// `pema/train` and `pema/rebuild`: the workspace the work was queued for.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct QueuedResult {
    pub workspace: String,
}

/// The `data` of an error the daemon refused a request with: what kind of refusal, and for a
/// path outside the open workspaces, the path and the open ones.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ErrorData {
    /// `invalidRequest` (with `open` when the request named no workspace and several are
    /// open), `notInWorkspace`, `outOfRange`, `noAdapter`, `cancelled`, `failed`,
    /// `unauthorized` (no or a wrong token) or `unavailable` (the daemon could not start).
    pub kind: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub open: Option<Vec<String>>,
}

/// `$/progress` of a rewrite's partial result.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PartialRewrite<'a> {
    pub token: &'a ProgressToken,
    pub value: PartialText<'a>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PartialText<'a> {
    /// The text added since the last notification.
    pub delta: &'a str,
    /// The text so far.
    pub text: &'a str,
}

impl<'a> PartialRewrite<'a> {
    pub fn new(token: &'a ProgressToken, delta: &'a str, text: &'a str) -> Self {
        Self {
            token,
            value: PartialText { delta, text },
        }
    }
}

/// `pema/progress`: background work of a workspace.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PemaProgress {
    pub token: ProgressToken,
    pub value: ProgressValue,
    pub workspace: String,
}

/// `$/progress` of background work, for clients that declared `window.workDoneProgress`.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct WorkDoneProgress {
    pub token: ProgressToken,
    pub value: ProgressValue,
}

/// LSP's work-done progress value.
#[derive(Debug, Serialize)]
#[serde(tag = "kind", rename_all = "camelCase")]
pub enum ProgressValue {
    Begin {
        title: &'static str,
        message: String,
        percentage: u32,
        cancellable: bool,
    },
    Report {
        message: String,
        percentage: u32,
    },
    End {
        message: String,
    },
}

pub fn progress(e: &Event, token: ProgressToken) -> PemaProgress {
    let message = e.message.clone();
    PemaProgress {
        token,
        value: match e.stage {
            Stage::Begin => ProgressValue::Begin {
                title: e.task.title(),
                message,
                percentage: 0,
                cancellable: false,
            },
            Stage::Report { percent } => ProgressValue::Report {
                message,
                percentage: percent,
            },
            Stage::End => ProgressValue::End { message },
        },
        workspace: path(&e.workspace),
    }
}

/// `workspace/executeCommand` of `pema.rewrite`: the rewrite, and whether the client applied it.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ExecuteCommandResult {
    #[serde(flatten)]
    pub rewrite: RewriteResult,
    pub applied: bool,
}

pub fn daemon_status(s: daemon::DaemonStatus) -> DaemonStatus {
    DaemonStatus {
        version: s.version.to_string(),
        model: s.model,
        uptime_seconds: s.uptime_seconds,
        queue: QueueStatus {
            rewrites_waiting: s.queue.rewrites_waiting,
            background_waiting: s.queue.background_waiting,
            busy: s.queue.busy,
        },
        workspaces: s.workspaces.into_iter().map(workspace_status).collect(),
    }
}

pub fn workspace_status(w: daemon::WorkspaceStatus) -> WorkspaceStatus {
    WorkspaceStatus {
        root: path(&w.root),
        state_dir: path(&w.state_dir),
        files: w.files,
        corpus_files: w.corpus_files,
        pairs_files: w.pairs_files,
        units: w.units,
        units_paraphrased: w.units_paraphrased,
        units_pending: w.units_pending,
        pairs: w.pairs,
        memory: MemoryStatus {
            entries: w.memory.entries,
            pairs: w.memory.pairs,
            builds: w.memory.builds,
            last_build: w.memory.last_build.map(last_build),
        },
        adapter: adapter_status(&w.adapter),
        last_refresh: refresh(w.last_refresh),
        files_read: w.files_read,
        skipped: w.skipped.into_iter().map(skipped).collect(),
        errors: w.errors,
        config_error: w.config_error,
    }
}

pub fn status_changed(w: daemon::WorkspaceStatus) -> StatusChanged {
    StatusChanged {
        root: path(&w.root),
        units: w.units,
        units_pending: w.units_pending,
        pairs: w.pairs,
        memory: MemoryCounts {
            entries: w.memory.entries,
            pairs: w.memory.pairs,
        },
        adapter: adapter_status(&w.adapter),
        errors: w.errors,
        config_error: w.config_error,
    }
}

fn adapter_status(a: &daemon::AdapterStatus) -> AdapterStatus {
    AdapterStatus {
        state: adapter_state(a.state),
        available: a.available,
        stale: a.stale,
        held_out_loss: a.held_out_loss,
        held_out_ce: a.held_out_ce,
        trainings: a.trainings,
    }
}

pub fn examples_result(examples: Vec<daemon::Example>) -> ExamplesResult {
    ExamplesResult {
        examples: examples
            .into_iter()
            .map(|e| ExamplePair {
                source: e.source,
                target: e.target,
                pseudo: e.pseudo,
            })
            .collect(),
    }
}

pub fn adapter_state(s: AdapterState) -> &'static str {
    match s {
        AdapterState::None => "none",
        AdapterState::Loading => "loading",
        AdapterState::Building => "building",
        AdapterState::Training => "training",
        AdapterState::Ready => "ready",
    }
}

fn last_build(b: BuildReport) -> LastBuild {
    LastBuild {
        path: path(&b.path),
        pairs: b.pairs,
        entries: b.entries,
        pairs_computed: b.pairs_computed,
        pairs_reused: b.pairs_reused,
        pairs_removed: b.pairs_removed,
        duplicate_pairs: b.duplicate_pairs,
        pairs_too_long: b.pairs_too_long,
        pairs_over_cap: b.pairs_over_cap,
        skipped_lines: b.skipped_lines.into_iter().map(skipped_line).collect(),
        tokens_processed: b.tokens_processed,
        seconds: b.seconds,
        tokens_per_second: b.tokens_per_second,
        examples: b.examples,
        shared_prefix_tokens: b.shared_prefix_tokens,
        batches_interrupted: b.batches_interrupted,
        warnings: b.warnings,
    }
}

fn skipped_line(l: SkippedLine) -> SkippedPairsLine {
    SkippedPairsLine {
        file: path(&l.file),
        line: l.line,
        reason: l.reason,
    }
}

fn refresh(r: Refresh) -> RefreshStatus {
    RefreshStatus {
        files_read: r.files_read,
        files_removed: r.files_removed,
        files_unchanged: r.files_unchanged,
        config_reloaded: r.config_reloaded,
    }
}

fn skipped(s: Skipped) -> SkippedFile {
    SkippedFile {
        path: path(&s.path),
        reason: s.reason,
    }
}

pub fn files_result(r: FilesReport) -> FilesResult {
    FilesResult {
        root: path(&r.root),
        learned: r.learned.into_iter().map(learned_file).collect(),
        waiting: r.waiting.iter().map(|p| path(p)).collect(),
        skipped: r.skipped.into_iter().map(skipped).collect(),
        truncated: r.truncated,
    }
}

fn learned_file(f: LearnedFile) -> FileLearned {
    FileLearned {
        path: path(&f.path),
        kind: file_kind(f.kind),
        units: f.units,
        pairs: f.pairs,
        bad_lines: f.bad_lines,
    }
}

pub fn file_kind(k: FileKind) -> &'static str {
    match k {
        FileKind::Corpus => "corpus",
        FileKind::Pairs => "pairs",
    }
}

/// A rewrite's mode as the wire (and `RewriteParams.mode`) names it.
pub fn mode(m: Mode) -> &'static str {
    match m {
        Mode::Plain => "plain",
        Mode::Fixed => "fixed",
        Mode::Gu => "gu",
    }
}

pub fn stop_reason(r: &StopReason) -> &'static str {
    match r {
        StopReason::EndOfText => "endOfText",
        StopReason::Boundary => "boundary",
        StopReason::MaxTokens => "maxTokens",
    }
}

/// A progress task's name, in progress tokens (`pema/<task>/<id>`).
pub fn task(t: daemon::Task) -> &'static str {
    match t {
        daemon::Task::Paraphrase => "paraphrase",
        daemon::Task::Memory => "memory",
        daemon::Task::Training => "training",
    }
}

/// A rewrite option by its wire name.
pub fn lambda_option(l: Lambda) -> &'static str {
    match l {
        Lambda::Max => "lambdaMax",
        Lambda::Fixed => "lambdaFixed",
    }
}

/// An error's message on the wire: the daemon's words, with the protocol's names for options
/// and methods where the daemon speaks of them in its own terms.
pub fn error_message(e: &RequestError) -> String {
    match e {
        RequestError::OutOfRange { option, value } => format!(
            "{} must be between 0 and 1, not {value}",
            lambda_option(*option)
        ),
        RequestError::NoAdapter => "this workspace's style is still being learned (no adapter \
                                   yet); see pema/status for progress, or ask for mode \"plain\""
            .into(),
        RequestError::WhichWorkspace { open } => format!(
            "say which workspace's style to use (workspace or uri){}",
            daemon::open_list(open)
        ),
        e => e.to_string(),
    }
}

impl ErrorData {
    /// The data of an error of `kind` that names no path.
    pub fn of(kind: &'static str) -> Option<serde_json::Value> {
        serde_json::to_value(ErrorData {
            kind,
            path: None,
            open: None,
        })
        .ok()
    }
}

pub fn error_data(e: &RequestError) -> ErrorData {
    let kind = match e {
        RequestError::InvalidRequest(_) | RequestError::WhichWorkspace { .. } => "invalidRequest",
        RequestError::NotInWorkspace { .. } => "notInWorkspace",
        RequestError::OutOfRange { .. } => "outOfRange",
        RequestError::NoAdapter => "noAdapter",
        RequestError::Cancelled => "cancelled",
        RequestError::Failed(_) => "failed",
    };
    let list = |open: &[std::path::PathBuf]| Some(open.iter().map(|p| path(p)).collect());
    let (path_, open) = match e {
        RequestError::NotInWorkspace { path: p, open } => (Some(path(p)), list(open)),
        RequestError::WhichWorkspace { open } => (None, list(open)),
        _ => (None, None),
    };
    ErrorData {
        kind,
        path: path_,
        open,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn keys(v: &serde_json::Value) -> Vec<&str> {
        let mut k: Vec<&str> = v.as_object().unwrap().keys().map(|s| s.as_str()).collect();
        k.sort();
        k
    }

    #[test]
    fn status_is_camel_case_with_explicit_values() {
        let mut w = daemon::WorkspaceStatus {
            root: "/w".into(),
            state_dir: "/w/.state".into(),
            ..Default::default()
        };
        w.adapter.state = AdapterState::Training;
        w.memory.last_build = Some(BuildReport {
            skipped_lines: vec![SkippedLine {
                file: "/w/a.pairs.jsonl".into(),
                line: 3,
                reason: "not JSON".into(),
            }],
            ..Default::default()
        });
        let v = serde_json::to_value(workspace_status(w)).unwrap();
        assert_eq!(v["stateDir"], "/w/.state");
        assert_eq!(v["adapter"]["state"], "training");
        assert_eq!(v["adapter"]["heldOutLoss"], json!(null));
        assert_eq!(v["lastRefresh"]["configReloaded"], false);
        let b = &v["memory"]["lastBuild"];
        assert_eq!(
            b["skippedLines"][0],
            json!({"file": "/w/a.pairs.jsonl", "line": 3, "reason": "not JSON"})
        );
        assert!(keys(b).contains(&"pairsComputed") && keys(b).contains(&"sharedPrefixTokens"));
        // No key anywhere has an underscore.
        fn no_snake(v: &serde_json::Value) {
            match v {
                serde_json::Value::Object(m) => m.iter().for_each(|(k, v)| {
                    assert!(!k.contains('_'), "{k}");
                    no_snake(v)
                }),
                serde_json::Value::Array(a) => a.iter().for_each(no_snake),
                _ => {}
            }
        }
        no_snake(&v);
    }

    #[test]
    fn enums_and_errors_by_name() {
        assert_eq!(mode(Mode::Gu), "gu");
        for m in [Mode::Plain, Mode::Fixed, Mode::Gu] {
            assert_eq!(mode(m).parse::<Mode>().unwrap(), m);
        }
        assert_eq!(stop_reason(&StopReason::MaxTokens), "maxTokens");
        assert_eq!(adapter_state(AdapterState::None), "none");
        let e = RequestError::OutOfRange {
            option: Lambda::Fixed,
            value: 1.5,
        };
        assert_eq!(
            error_message(&e),
            "lambdaFixed must be between 0 and 1, not 1.5"
        );
        assert!(!e.to_string().contains("lambdaFixed"), "{e}");
        assert!(error_message(&RequestError::NoAdapter).contains("pema/status"));
        assert!(!RequestError::NoAdapter.to_string().contains("pema/"));
        let e = RequestError::NotInWorkspace {
            path: "/x".into(),
            open: vec!["/w".into()],
        };
        assert_eq!(
            serde_json::to_value(error_data(&e)).unwrap(),
            json!({"kind": "notInWorkspace", "path": "/x", "open": ["/w"]})
        );
        let e = RequestError::WhichWorkspace {
            open: vec!["/a".into(), "/b".into()],
        };
        assert_eq!(
            error_message(&e),
            "say which workspace's style to use (workspace or uri) (open: /a, /b)"
        );
        assert_eq!(
            e.to_string(),
            "say which workspace's style to use (open: /a, /b)"
        );
        assert_eq!(
            serde_json::to_value(error_data(&e)).unwrap(),
            json!({"kind": "invalidRequest", "open": ["/a", "/b"]})
        );
        assert_eq!(
            serde_json::to_value(error_data(&RequestError::Cancelled)).unwrap(),
            json!({"kind": "cancelled"})
        );
    }
}
