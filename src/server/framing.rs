//! A guard in front of tower-lsp's codec, which ends the connection at the first frame it cannot
//! decode. Here a malformed frame (no Content-Length, a body that is not JSON or not a JSON-RPC
//! message) is answered with the JSON-RPC error and dropped, and the connection goes on. Good
//! frames pass through unchanged; the answers are written between whole outgoing frames.

use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::sync::mpsc;

/// A frame larger than this is refused and the connection closed (it cannot be skipped safely).
const MAX_FRAME: usize = 64 << 20;

/// Reads one frame: Ok(None) at end of input; Err(message) for a frame to answer with an error.
/// `check` parses the body (incoming frames); outgoing frames from tower-lsp are only framed.
async fn read_frame<R: AsyncRead + Unpin>(
    r: &mut BufReader<R>,
    check: bool,
) -> std::io::Result<Option<Result<Vec<u8>, (i64, String)>>> {
    let mut len: Option<usize> = None;
    let mut bad_header = None;
    let mut any = false;
    loop {
        let mut line = String::new();
        if r.read_line(&mut line).await? == 0 {
            return Ok(None);
        }
        let t = line.trim_end_matches(['\r', '\n']);
        if t.is_empty() {
            if any {
                break;
            }
            continue;
        }
        any = true;
        match t.split_once(':') {
            Some((k, v)) if k.eq_ignore_ascii_case("content-length") => match v.trim().parse() {
                Ok(n) => len = Some(n),
                Err(_) => bad_header = Some(format!("bad Content-Length {:?}", v.trim())),
            },
            Some(_) => {}
            None => bad_header = Some(format!("not a header line: {t:?}")),
        }
    }
    let Some(len) = len else {
        let why = bad_header.unwrap_or_else(|| "no Content-Length header".into());
        return Ok(Some(Err((-32700, format!("Parse error: {why}")))));
    };
    if len > MAX_FRAME {
        return Err(std::io::Error::other(format!(
            "frame of {len} bytes is too large"
        )));
    }
    let mut body = vec![0; len];
    r.read_exact(&mut body).await?;
    if !check {
        return Ok(Some(Ok(body)));
    }
    let v: Value = match serde_json::from_slice(&body) {
        Ok(v) => v,
        Err(e) => return Ok(Some(Err((-32700, format!("Parse error: {e}"))))),
    };
    let is_message = v.get("jsonrpc") == Some(&json!("2.0"))
        && (v.get("method").is_some_and(Value::is_string)
            || (v.get("id").is_some() && (v.get("result").is_some() || v.get("error").is_some())));
    if !is_message {
        let id = v.get("id").cloned().unwrap_or(Value::Null);
        return Ok(Some(Err((
            -32600,
            format!("Invalid request: not a JSON-RPC 2.0 message (id {id})"),
        ))));
    }
    Ok(Some(Ok(body)))
}

fn frame(body: &[u8]) -> Vec<u8> {
    let mut out = format!("Content-Length: {}\r\n\r\n", body.len()).into_bytes();
    out.extend_from_slice(body);
    out
}

/// Wraps a transport: returns the reader and writer to give tower-lsp.
pub fn guard<R, W>(input: R, output: W) -> (tokio::io::DuplexStream, tokio::io::DuplexStream)
where
    R: AsyncRead + Unpin + Send + 'static,
    W: AsyncWrite + Unpin + Send + 'static,
{
    let (mut to_server, server_in) = tokio::io::duplex(1 << 16);
    let (server_out, from_server) = tokio::io::duplex(1 << 16);
    let (errors_tx, mut errors_rx) = mpsc::unbounded_channel::<Vec<u8>>();

    tokio::spawn(async move {
        let mut r = BufReader::new(input);
        while let Ok(Some(frame_or_error)) = read_frame(&mut r, true).await {
            match frame_or_error {
                Ok(body) => {
                    if to_server.write_all(&frame(&body)).await.is_err() {
                        break;
                    }
                }
                Err((code, message)) => {
                    tracing::warn!("{message}");
                    let e = json!({"jsonrpc": "2.0", "id": null, "error": {"code": code, "message": message}});
                    let _ = errors_tx.send(serde_json::to_vec(&e).unwrap());
                }
            }
        }
        let _ = to_server.shutdown().await;
    });

    // Whole frames from tower-lsp, read by their own task: reading is not cancel-safe, so it
    // must not sit in a select! beside the error channel.
    let (frames_tx, mut frames_rx) = mpsc::unbounded_channel::<Vec<u8>>();
    tokio::spawn(async move {
        let mut from = BufReader::new(from_server);
        while let Ok(Some(f)) = read_frame(&mut from, false).await {
            if let Ok(body) = f {
                if frames_tx.send(body).is_err() {
                    break;
                }
            }
        }
    });
    tokio::spawn(async move {
        let mut out = output;
        let mut errors_open = true;
        loop {
            let body = tokio::select! {
                f = frames_rx.recv() => match f {
                    Some(body) => body,
                    None => break,
                },
                e = errors_rx.recv(), if errors_open => match e {
                    Some(body) => body,
                    None => {
                        errors_open = false;
                        continue;
                    }
                },
            };
            if out.write_all(&frame(&body)).await.is_err() || out.flush().await.is_err() {
                break;
            }
        }
    });

    (server_in, server_out)
}
