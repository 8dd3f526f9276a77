//! The wire types of pema's own methods (docs/protocol.md), and the daemon's errors as JSON-RPC
//! errors.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use tower_lsp_server::jsonrpc::{Error, ErrorCode};
use tower_lsp_server::lsp_types::{ProgressToken, Range, Uri};

use super::to_proto;
use crate::daemon::RequestError;

/// LSP's RequestFailed: the request was valid but could not be done now.
pub const REQUEST_FAILED: i64 = -32803;

pub fn to_rpc(e: RequestError) -> Error {
    let code = match &e {
        RequestError::InvalidRequest(_)
        | RequestError::WhichWorkspace { .. }
        | RequestError::NotInWorkspace { .. }
        | RequestError::OutOfRange { .. } => ErrorCode::InvalidParams,
        RequestError::Cancelled => ErrorCode::RequestCancelled,
        RequestError::NoAdapter | RequestError::Failed(_) => ErrorCode::ServerError(REQUEST_FAILED),
    };
    Error {
        code,
        message: to_proto::error_message(&e).into(),
        data: serde_json::to_value(to_proto::error_data(&e)).ok(),
    }
}

pub fn invalid_params(message: impl Into<String>) -> Error {
    Error {
        code: ErrorCode::InvalidParams,
        message: message.into().into(),
        data: to_proto::ErrorData::of("invalidRequest"),
    }
}

#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RewriteOptionsParams {
    pub lambda_max: Option<f32>,
    pub lambda_fixed: Option<f32>,
    pub temperature: Option<f32>,
    pub top_p: Option<f32>,
    pub seed: Option<u64>,
    pub max_tokens: Option<usize>,
}

/// Most tokens one rewritten line may have.
pub const MAX_TOKENS: usize = 2048;

impl RewriteOptionsParams {
    /// Refuses values the sampler cannot use sensibly, with a sentence saying what is allowed.
    pub fn validate(&self) -> Result<(), String> {
        if let Some(t) = self.temperature {
            if !t.is_finite() || !(t == 0.0 || (0.05..=5.0).contains(&t)) {
                return Err(format!(
                    "temperature must be 0 (greedy) or between 0.05 and 5, not {t}"
                ));
            }
        }
        if let Some(p) = self.top_p {
            if !p.is_finite() || p <= 0.0 || p > 1.0 {
                return Err(format!("topP must be above 0 and at most 1, not {p}"));
            }
        }
        for (name, v) in [
            ("lambdaMax", self.lambda_max),
            ("lambdaFixed", self.lambda_fixed),
        ] {
            if let Some(v) = v {
                check_lambda(name, v)?;
            }
        }
        if let Some(n) = self.max_tokens {
            if n == 0 || n > MAX_TOKENS {
                return Err(format!(
                    "maxTokens must be between 1 and {MAX_TOKENS}, not {n}"
                ));
            }
        }
        Ok(())
    }
}

pub fn check_lambda(name: &str, v: f32) -> Result<(), String> {
    if !v.is_finite() || !(0.0..=1.0).contains(&v) {
        return Err(format!("{name} must be between 0 and 1, not {v}"));
    }
    Ok(())
}

#[derive(Debug, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RewriteParams {
    /// The text to rewrite; or `uri` and `range` of a document.
    pub text: Option<String>,
    pub uri: Option<Uri>,
    pub range: Option<Range>,
    /// A path (or file URI) inside the workspace whose style to use.
    pub workspace: Option<String>,
    /// `gu` (default), `fixed` or `plain`.
    pub mode: Option<String>,
    #[serde(default)]
    pub options: RewriteOptionsParams,
    pub partial_result_token: Option<ProgressToken>,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RewriteResult {
    pub text: String,
    pub mode: String,
    pub tokens: usize,
    pub stopped_by: String,
    pub seconds: f64,
    pub tokens_per_second: f64,
    pub workspace: Option<String>,
    /// The rewritten range, when the request named a document.
    pub range: Option<Range>,
}

#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct WorkspaceParams {
    pub workspace: Option<String>,
    #[serde(default)]
    pub from_scratch: bool,
}

/// `pema/examples`.
#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ExamplesParams {
    pub workspace: Option<String>,
    /// How many examples (default [`DEFAULT_EXAMPLES`], at most `daemon::MAX_EXAMPLES`).
    pub limit: Option<usize>,
}

/// Examples `pema/examples` returns when the request says no `limit`.
pub const DEFAULT_EXAMPLES: usize = 5;

#[derive(Debug, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct OpenWorkspaceParams {
    pub path: String,
}

/// What the rewrite code action carries until it is resolved.
#[derive(Debug, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CodeActionData {
    pub uri: Uri,
    pub range: Range,
}

/// Settings an editor passes in `initializationOptions`.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct InitOptions {
    /// Required when the daemon was started with a token.
    pub token: Option<String>,
    /// Mode of code actions and `pema.rewrite` (default `gu`).
    pub mode: Option<String>,
    /// Overrides the workspaces' λ_max. Unknown settings are ignored, not refused, so that
    /// newer clients work with older daemons.
    pub lambda_max: Option<f32>,
}

/// `$/progress` with any value (partial results; lsp-types only knows work-done values).
pub enum AnyProgress {}

impl tower_lsp_server::lsp_types::notification::Notification for AnyProgress {
    type Params = Value;
    const METHOD: &'static str = "$/progress";
}

/// Progress for clients that did not declare `window.workDoneProgress`.
pub enum PemaProgress {}

impl tower_lsp_server::lsp_types::notification::Notification for PemaProgress {
    type Params = Value;
    const METHOD: &'static str = "pema/progress";
}

/// A workspace's status changed (state, memory, adapter, errors): pushed to every connection
/// that has it open.
pub enum PemaStatusChanged {}

impl tower_lsp_server::lsp_types::notification::Notification for PemaStatusChanged {
    type Params = Value;
    const METHOD: &'static str = "pema/statusChanged";
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_are_validated() {
        let ok = |o: RewriteOptionsParams| o.validate().is_ok();
        let t = |v| RewriteOptionsParams {
            temperature: Some(v),
            ..Default::default()
        };
        assert!(ok(t(0.0)) && ok(t(0.05)) && ok(t(5.0)) && ok(Default::default()));
        for bad in [1e-45, 0.01, -1.0, 5.5, f32::NAN, f32::INFINITY] {
            assert!(!ok(t(bad)), "{bad}");
        }
        let p = |v| RewriteOptionsParams {
            top_p: Some(v),
            ..Default::default()
        };
        assert!(ok(p(1.0)) && ok(p(0.5)) && !ok(p(0.0)) && !ok(p(1.5)) && !ok(p(f32::NAN)));
        let l = |v| RewriteOptionsParams {
            lambda_fixed: Some(v),
            ..Default::default()
        };
        assert!(ok(l(0.0)) && ok(l(1.0)) && !ok(l(-0.1)) && !ok(l(f32::NAN)));
        let m = |v| RewriteOptionsParams {
            max_tokens: Some(v),
            ..Default::default()
        };
        assert!(ok(m(64)) && !ok(m(0)) && !ok(m(1 << 40)));
        let e = t(1e-45).validate().unwrap_err();
        assert!(e.starts_with("temperature must be"), "{e}");
    }
}
