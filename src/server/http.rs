//! The OpenAI-compatible HTTP endpoint of `pema serve --http ADDR` (axum, on the daemon's tokio
//! runtime): `GET /v1/models`, `POST /v1/chat/completions`, `POST /v1/completions`, streamed as
//! server-sent events in OpenAI's chunk format. Every request presents the daemon's token as
//! `Authorization: Bearer TOKEN`. What is rewritten: the text of the last user message (or the
//! prompt), or, when it holds a fenced block (```), the first such block's content alone — so a
//! tool that wraps a selection in an instruction and a fence gets only the selection rewritten.
//! See docs/protocol.md, "OpenAI-compatible HTTP".

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::sse::{Event as SseEvent, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use serde::Deserialize;
use serde_json::{json, Value};

use super::auth;
use crate::daemon::{Daemon, RequestError, RewriteEvent, RewriteRequest};
use crate::decode::{HeldLine, Mode, StopReason};

/// The model id of the plain base model (no workspace's style).
pub const PLAIN_MODEL: &str = "pema/plain";

struct Http {
    daemon: Arc<Daemon>,
    token: String,
}

/// An error in OpenAI's shape: `{"error": {"message", "type", "param", "code"}}`.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    kind: &'static str,
    code: Option<&'static str>,
    param: Option<&'static str>,
    message: String,
}

impl ApiError {
    fn bad(message: impl Into<String>, param: Option<&'static str>) -> Self {
        Self {
            status: StatusCode::BAD_REQUEST,
            kind: "invalid_request_error",
            code: None,
            param,
            message: message.into(),
        }
    }

    fn json(&self) -> Value {
        json!({"error": {"message": self.message, "type": self.kind, "param": self.param,
                         "code": self.code}})
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.status, axum::Json(self.json())).into_response()
    }
}

impl From<RequestError> for ApiError {
    fn from(e: RequestError) -> Self {
        let (status, kind, code) = match &e {
            RequestError::InvalidRequest(_)
            | RequestError::WhichWorkspace { .. }
            | RequestError::NotInWorkspace { .. }
            | RequestError::OutOfRange { .. } => {
                (StatusCode::BAD_REQUEST, "invalid_request_error", None)
            }
            // The client went away: nobody reads this answer.
            RequestError::Cancelled => (
                StatusCode::from_u16(499).unwrap_or(StatusCode::BAD_REQUEST),
                "invalid_request_error",
                Some("cancelled"),
            ),
            RequestError::NoAdapter => (
                StatusCode::SERVICE_UNAVAILABLE,
                "server_error",
                Some("not_ready"),
            ),
            RequestError::Failed(_) => (StatusCode::INTERNAL_SERVER_ERROR, "server_error", None),
        };
        Self {
            status,
            kind,
            code,
            param: None,
            message: e.to_string(),
        }
    }
}

/// The router, with the daemon and the token every request presents.
pub fn router(daemon: Arc<Daemon>, token: String) -> Router {
    Router::new()
        .route("/v1/models", get(models))
        .route("/v1/chat/completions", post(chat_completions))
        .route("/v1/completions", post(completions))
        .fallback(|| async {
            ApiError {
                status: StatusCode::NOT_FOUND,
                kind: "invalid_request_error",
                code: Some("unknown_url"),
                param: None,
                message: "pema serves GET /v1/models, POST /v1/chat/completions and POST \
                          /v1/completions"
                    .into(),
            }
        })
        .with_state(Arc::new(Http { daemon, token }))
}

/// Serves HTTP on `listener` until the process ends.
pub async fn serve(
    listener: tokio::net::TcpListener,
    daemon: Arc<Daemon>,
    token: String,
) -> std::io::Result<()> {
    axum::serve(listener, router(daemon, token)).await
}

fn authorize(h: &Http, headers: &HeaderMap) -> Result<(), ApiError> {
    let presented = headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        })
        .map(str::trim);
    if auth::token_matches(&h.token, presented) {
        return Ok(());
    }
    Err(ApiError {
        status: StatusCode::UNAUTHORIZED,
        kind: "invalid_request_error",
        code: Some("invalid_api_key"),
        param: None,
        message: format!(
            "{}: pass the daemon's token as the API key (Authorization: Bearer TOKEN); it is in \
             {} unless the daemon was given one",
            if presented.is_some() {
                "wrong API key"
            } else {
                "no API key"
            },
            auth::token_file().display()
        ),
    })
}

fn name_of(root: &std::path::Path) -> String {
    root.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| root.display().to_string())
}

fn roots(d: &Daemon) -> Vec<PathBuf> {
    d.status(None)
        .map(|s| s.workspaces.into_iter().map(|w| w.root).collect())
        .unwrap_or_default()
}

async fn models(State(h): State<Arc<Http>>, headers: HeaderMap) -> Response {
    if let Err(e) = authorize(&h, &headers) {
        return e.into_response();
    }
    let mut data: Vec<Value> = roots(&h.daemon)
        .iter()
        .map(|r| {
            json!({"id": format!("pema/{}", name_of(r)), "object": "model", "created": 0,
                   "owned_by": "pema", "root": r})
        })
        .collect();
    data.push(json!({"id": PLAIN_MODEL, "object": "model", "created": 0, "owned_by": "pema",
                     "description": format!("the base model alone ({})", h.daemon.model().info().name)}));
    axum::Json(json!({"object": "list", "data": data})).into_response()
}

/// The fields pema reads; every other OpenAI field is accepted and ignored.
#[derive(Debug, Deserialize)]
struct CompletionParams {
    model: Option<String>,
    #[serde(default)]
    messages: Option<Vec<Message>>,
    #[serde(default)]
    prompt: Option<Value>,
    #[serde(default)]
    stream: bool,
    max_tokens: Option<u64>,
    max_completion_tokens: Option<u64>,
    temperature: Option<f32>,
    top_p: Option<f32>,
    seed: Option<u64>,
    n: Option<u64>,
    // pema's own.
    mode: Option<String>,
    lambda: Option<f32>,
    lambda_max: Option<f32>,
    workspace: Option<String>,
}

#[derive(Debug, Deserialize)]
struct Message {
    role: String,
    #[serde(default)]
    content: Value,
}

/// The text of a message's content: a string, or the text parts of an array.
fn content_text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Array(parts) => Some(
            parts
                .iter()
                .filter(|p| p["type"] == "text")
                .filter_map(|p| p["text"].as_str())
                .collect::<Vec<_>>()
                .join("\n"),
        ),
        _ => None,
    }
}

/// What is rewritten from a message or prompt: the first fenced block's content when there is
/// one (```lang\n…\n```), else the whole text.
pub fn selection(text: &str) -> &str {
    let Some(open) = text.find("```") else {
        return text;
    };
    let after = &text[open + 3..];
    // The info string (a language name) runs to the end of the opening line.
    let Some(nl) = after.find('\n') else {
        return text;
    };
    let body = &after[nl + 1..];
    match body.find("```") {
        // The block's content, with the newline before the closing fence left out.
        Some(close) => body[..close].strip_suffix('\n').unwrap_or(&body[..close]),
        None => text,
    }
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn completion_id(prefix: &str) -> String {
    use std::sync::atomic::AtomicU64;
    static N: AtomicU64 = AtomicU64::new(0);
    format!(
        "{prefix}-pema-{}-{}",
        now(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// Resolves `model` (and the `workspace` field) to a workspace root, or None for the plain model.
fn workspace_for(
    h: &Http,
    model: Option<&str>,
    workspace: Option<&str>,
) -> Result<Option<PathBuf>, ApiError> {
    if let Some(w) = workspace {
        return Ok(Some(h.daemon.workspace_of(std::path::Path::new(w))?));
    }
    let all = roots(&h.daemon);
    let not_found = |m: &str| ApiError {
        status: StatusCode::NOT_FOUND,
        kind: "invalid_request_error",
        code: Some("model_not_found"),
        param: Some("model"),
        message: format!(
            "the model {m:?} does not exist: pema serves {} (GET /v1/models)",
            all.iter()
                .map(|r| format!("pema/{}", name_of(r)))
                .chain([PLAIN_MODEL.to_string()])
                .collect::<Vec<_>>()
                .join(", ")
        ),
    };
    match model {
        Some(PLAIN_MODEL) => Ok(None),
        // No model, or pema's bare name: the only open workspace.
        None | Some("") | Some("pema") => match all.len() {
            1 => Ok(Some(all[0].clone())),
            _ => Err(not_found(model.unwrap_or(""))),
        },
        Some(m) => {
            let name = m.strip_prefix("pema/").unwrap_or(m);
            let hits: Vec<&PathBuf> = all.iter().filter(|r| name_of(r) == name).collect();
            match hits.as_slice() {
                [one] => Ok(Some((*one).clone())),
                [] => Err(not_found(m)),
                _ => Err(ApiError::bad(
                    format!(
                        "several open workspaces are named {name:?}: say which with the \
                         \"workspace\" field (a path inside it)"
                    ),
                    Some("model"),
                )),
            }
        }
    }
}

/// A request turned into the daemon's terms.
fn rewrite_request(
    h: &Http,
    p: &CompletionParams,
    text: String,
) -> Result<(RewriteRequest, String), ApiError> {
    if p.n.is_some_and(|n| n != 1) {
        return Err(ApiError::bad(
            "pema answers with one choice: n must be 1",
            Some("n"),
        ));
    }
    let root = workspace_for(h, p.model.as_deref(), p.workspace.as_deref())?;
    let model = match &root {
        Some(r) => format!("pema/{}", name_of(r)),
        None => PLAIN_MODEL.to_string(),
    };
    let mode: Option<Mode> = match (&p.mode, &root, p.lambda) {
        (Some(m), _, _) => Some(
            m.parse()
                .map_err(|e| ApiError::bad(format!("{e:#}"), Some("mode")))?,
        ),
        (None, None, _) => Some(Mode::Plain),
        // A λ without a mode: the fixed mode with that λ.
        (None, Some(_), Some(_)) => Some(Mode::Fixed),
        (None, Some(_), None) => None,
    };
    if root.is_none() && mode != Some(Mode::Plain) {
        return Err(ApiError::bad(
            format!("{PLAIN_MODEL} has no style: its mode is plain"),
            Some("mode"),
        ));
    }
    // What the request leaves out, the daemon fills in (greedy, all tokens).
    let (temperature, top_p) = (p.temperature, p.top_p);
    if let Some(temperature) =
        temperature.filter(|t| !t.is_finite() || !(*t == 0.0 || (0.05..=5.0).contains(t)))
    {
        return Err(ApiError::bad(
            format!("temperature must be 0 (greedy) or between 0.05 and 5, not {temperature}"),
            Some("temperature"),
        ));
    }
    if let Some(top_p) = top_p.filter(|t| !t.is_finite() || *t <= 0.0 || *t > 1.0) {
        return Err(ApiError::bad(
            format!("top_p must be above 0 and at most 1, not {top_p}"),
            Some("top_p"),
        ));
    }
    for (name, v) in [("lambda", p.lambda), ("lambda_max", p.lambda_max)] {
        if let Some(v) = v {
            if !v.is_finite() || !(0.0..=1.0).contains(&v) {
                return Err(ApiError::bad(
                    format!("{name} must be between 0 and 1, not {v}"),
                    Some(if name == "lambda" {
                        "lambda"
                    } else {
                        "lambda_max"
                    }),
                ));
            }
        }
    }
    let max_tokens = match p.max_completion_tokens.or(p.max_tokens) {
        Some(n) if n == 0 || n > super::protocol::MAX_TOKENS as u64 => {
            return Err(ApiError::bad(
                format!(
                    "max_tokens must be between 1 and {}, not {n}",
                    super::protocol::MAX_TOKENS
                ),
                Some("max_tokens"),
            ))
        }
        n => n.map(|n| n as usize),
    };
    Ok((
        RewriteRequest {
            text,
            workspace: root,
            mode,
            lambda_max: p.lambda_max,
            lambda_fixed: p.lambda,
            temperature,
            top_p,
            seed: p.seed,
            max_tokens,
        },
        model,
    ))
}

fn parse(body: &Bytes) -> Result<CompletionParams, ApiError> {
    serde_json::from_slice(body).map_err(|e| {
        ApiError::bad(
            format!("the request body is not what pema reads: {e}"),
            None,
        )
    })
}

async fn chat_completions(State(h): State<Arc<Http>>, headers: HeaderMap, body: Bytes) -> Response {
    if let Err(e) = authorize(&h, &headers) {
        return e.into_response();
    }
    let run = || -> Result<_, ApiError> {
        let p = parse(&body)?;
        let messages = p
            .messages
            .as_ref()
            .ok_or_else(|| ApiError::bad("messages is required", Some("messages")))?;
        let last = messages
            .iter()
            .rev()
            .find(|m| m.role == "user")
            .ok_or_else(|| {
                ApiError::bad("there is no user message to rewrite", Some("messages"))
            })?;
        let text = content_text(&last.content)
            .ok_or_else(|| ApiError::bad("the last user message has no text", Some("messages")))?;
        let (req, model) = rewrite_request(&h, &p, selection(&text).to_string())?;
        Ok((req, model, p.stream))
    };
    match run() {
        Ok((req, model, stream)) => respond(&h, req, model, stream, Kind::Chat).await,
        Err(e) => e.into_response(),
    }
}

async fn completions(State(h): State<Arc<Http>>, headers: HeaderMap, body: Bytes) -> Response {
    if let Err(e) = authorize(&h, &headers) {
        return e.into_response();
    }
    let run = || -> Result<_, ApiError> {
        let p = parse(&body)?;
        let text = match &p.prompt {
            Some(Value::String(s)) => s.clone(),
            Some(Value::Array(a)) if a.len() == 1 && a[0].is_string() => {
                a[0].as_str().unwrap_or_default().to_string()
            }
            Some(Value::Array(_)) => {
                return Err(ApiError::bad(
                    "pema rewrites one prompt at a time: give prompt as a string",
                    Some("prompt"),
                ))
            }
            _ => {
                return Err(ApiError::bad(
                    "prompt is required (a string)",
                    Some("prompt"),
                ))
            }
        };
        let (req, model) = rewrite_request(&h, &p, selection(&text).to_string())?;
        Ok((req, model, p.stream))
    };
    match run() {
        Ok((req, model, stream)) => respond(&h, req, model, stream, Kind::Text).await,
        Err(e) => e.into_response(),
    }
}

#[derive(Clone, Copy)]
enum Kind {
    Chat,
    Text,
}

struct CancelOnDrop(Arc<AtomicBool>);

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::SeqCst);
    }
}

fn finish_reason(r: &StopReason) -> &'static str {
    match r {
        StopReason::MaxTokens => "length",
        _ => "stop",
    }
}

fn chunk(kind: Kind, id: &str, created: u64, model: &str, delta: Value, finish: Value) -> Value {
    match kind {
        Kind::Chat => json!({"id": id, "object": "chat.completion.chunk", "created": created,
            "model": model, "system_fingerprint": null,
            "choices": [{"index": 0, "delta": delta, "logprobs": null, "finish_reason": finish}]}),
        Kind::Text => json!({"id": id, "object": "text_completion", "created": created,
            "model": model,
            "choices": [{"index": 0, "text": delta.get("content").cloned().unwrap_or(json!("")),
                         "logprobs": null, "finish_reason": finish}]}),
    }
}

/// Runs the rewrite: one JSON answer, or a stream of chunks ending in `data: [DONE]`. A client
/// that goes away drops the response, which cancels the rewrite before its next token.
async fn respond(
    h: &Http,
    req: RewriteRequest,
    model: String,
    streamed: bool,
    kind: Kind,
) -> Response {
    let cancel = Arc::new(AtomicBool::new(false));
    let guard = CancelOnDrop(cancel.clone());
    // A line rewritten with an adapter may be taken back and made again (it dropped a name):
    // such a stream holds each line back until it is final, as SSE cannot take text back.
    let mut held = HeldLine::new(req.mode != Some(Mode::Plain));
    let mut stream = match h.daemon.rewrite(req, cancel).await {
        Ok(s) => s,
        Err(e) => return ApiError::from(e).into_response(),
    };
    let id = completion_id(match kind {
        Kind::Chat => "chatcmpl",
        Kind::Text => "cmpl",
    });
    let created = now();
    if !streamed {
        let r = match stream.result().await.map_err(ApiError::from) {
            Ok(r) => r,
            Err(e) => return e.into_response(),
        };
        drop(guard);
        let usage = json!({"prompt_tokens": 0, "completion_tokens": r.tokens,
                           "total_tokens": r.tokens});
        let choice = match kind {
            Kind::Chat => json!({"index": 0, "message": {"role": "assistant", "content": r.text},
                                 "logprobs": null, "finish_reason": finish_reason(&r.stopped_by)}),
            Kind::Text => json!({"index": 0, "text": r.text, "logprobs": null,
                                 "finish_reason": finish_reason(&r.stopped_by)}),
        };
        return axum::Json(json!({
            "id": id, "object": match kind { Kind::Chat => "chat.completion", Kind::Text => "text_completion" },
            "created": created, "model": model, "system_fingerprint": null,
            "choices": [choice], "usage": usage,
        }))
        .into_response();
    }
    // Streamed: the rewrite's pieces as they come, then the finish reason, then [DONE]. An error
    // after the first byte cannot change the status any more: it is sent as an error event.
    let (etx, erx) = tokio::sync::mpsc::channel::<SseEvent>(64);
    tokio::spawn(async move {
        let _guard = guard;
        let send = |v: Value| SseEvent::default().data(v.to_string());
        if let Kind::Chat = kind {
            let first = chunk(
                kind,
                &id,
                created,
                &model,
                json!({"role": "assistant", "content": ""}),
                Value::Null,
            );
            if etx.send(send(first)).await.is_err() {
                return;
            }
        }
        let result = loop {
            let piece = match stream.next().await {
                RewriteEvent::Text(piece) => held.push(&piece),
                RewriteEvent::Retract(n) => {
                    held.retract(n);
                    None
                }
                RewriteEvent::Done(r) => break r,
            };
            if let Some(piece) = piece {
                let c = chunk(
                    kind,
                    &id,
                    created,
                    &model,
                    json!({"content": piece}),
                    Value::Null,
                );
                if etx.send(send(c)).await.is_err() {
                    return; // the client is gone: the guard cancels the rewrite
                }
            }
        };
        if let (Ok(_), Some(rest)) = (&result, held.finish()) {
            let c = chunk(
                kind,
                &id,
                created,
                &model,
                json!({"content": rest}),
                Value::Null,
            );
            if etx.send(send(c)).await.is_err() {
                return;
            }
        }
        let last = match result.map_err(ApiError::from) {
            Ok(r) => chunk(
                kind,
                &id,
                created,
                &model,
                json!({}),
                json!(finish_reason(&r.stopped_by)),
            ),
            Err(e) => e.json(),
        };
        let _ = etx.send(send(last)).await;
        let _ = etx.send(SseEvent::default().data("[DONE]")).await;
    });
    let events = futures::stream::unfold(erx, |mut erx| async move {
        erx.recv()
            .await
            .map(|e| (Ok::<_, std::convert::Infallible>(e), erx))
    });
    Sse::new(events).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_selection_is_the_first_fenced_block_or_the_whole_text() {
        assert_eq!(selection("Just this."), "Just this.");
        assert_eq!(
            selection("Rewrite this:\n```markdown\nThe text.\nTwo lines.\n```\nThanks"),
            "The text.\nTwo lines."
        );
        assert_eq!(selection("```\n\n```"), "");
        assert_eq!(
            selection("an open ``` fence and no close"),
            "an open ``` fence and no close"
        );
    }

    #[test]
    fn errors_have_openais_shape() {
        let e = ApiError::bad("nope", Some("n")).json();
        assert_eq!(e["error"]["message"], "nope");
        assert_eq!(e["error"]["type"], "invalid_request_error");
        assert_eq!(e["error"]["param"], "n");
        let e = ApiError::from(RequestError::NoAdapter);
        assert_eq!(e.status, StatusCode::SERVICE_UNAVAILABLE);
    }
}
