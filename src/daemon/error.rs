//! Why a request cannot be served, in words a person understands.

use std::path::PathBuf;

/// Why a request cannot be served, in words a person understands; the server maps each kind to
/// a protocol error code and words it in the protocol's terms.
#[derive(Debug, thiserror::Error)]
pub enum RequestError {
    /// The request itself cannot be served (empty or too long text, a folder that cannot be a
    /// workspace, …); the message says why.
    #[error("{0}")]
    InvalidRequest(String),
    /// The path the request names is inside none of the open workspaces.
    #[error("{} is not inside an open workspace{}", .path.display(), open_list(.open))]
    NotInWorkspace {
        /// The path as the request gave it.
        path: PathBuf,
        /// The roots of the open workspaces.
        open: Vec<PathBuf>,
    },
    /// Several workspaces are open (or none) and the request named none.
    #[error("say which workspace's style to use{}", open_list(.open))]
    WhichWorkspace {
        /// The roots of the open workspaces.
        open: Vec<PathBuf>,
    },
    /// A rewrite option outside its range.
    #[error("{option} must be between 0 and 1, not {value}")]
    OutOfRange {
        /// Which λ.
        option: Lambda,
        /// The value the request gave.
        value: f32,
    },
    /// The workspace has no adapter yet: only plain rewrites work.
    #[error(
        "this workspace's style is still being learned (no adapter yet): wait for its training \
         (the status shows progress), or ask for a plain rewrite"
    )]
    NoAdapter,
    /// The rewrite was cancelled (by its client) before it finished.
    #[error("cancelled")]
    Cancelled,
    /// Something failed inside the daemon (the model, the worker, a thread); the error's chain
    /// says what.
    #[error("{0:#}")]
    Failed(anyhow::Error),
}

/// Which λ of a rewrite.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Lambda {
    /// λ_max, the strength Gradual Unrolling rises to.
    Max,
    /// λ of the fixed mode.
    Fixed,
}

impl std::fmt::Display for Lambda {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Lambda::Max => "λ_max",
            Lambda::Fixed => "λ_fixed",
        })
    }
}

/// " (open: a, b)", or " (no workspace is open)": the end of a message naming the open
/// workspaces.
pub fn open_list(open: &[PathBuf]) -> String {
    if open.is_empty() {
        " (no workspace is open)".into()
    } else {
        format!(
            " (open: {})",
            open.iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        )
    }
}
