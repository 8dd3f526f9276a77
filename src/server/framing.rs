//! A guard in front of tower-lsp's codec, which ends the connection at the first frame it cannot
//! decode. Here a malformed frame (no Content-Length, a body that is not JSON or not a JSON-RPC
//! message) is answered with the JSON-RPC error and dropped, and the connection goes on. Good
//! frames pass through unchanged; the answers are written between whole outgoing frames.
//!
//! It also bounds what one client can make the daemon hold or wait for: a header line is at most
//! [`Limits::header_line`] bytes and a frame at most [`Limits::header_lines`] header lines; a body
//! larger than [`Limits::body`] is answered with an error and the connection closed; a frame
//! started but not finished within [`Limits::frame_timeout`] closes the connection; outgoing
//! queues are bounded, and a client that does not read its answers for
//! [`Limits::write_timeout`] is disconnected. When the input ends (or the guard closes the
//! connection) it sets the connection's `closed` flag, which cancels its pending rewrites.

use std::time::Duration;

use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::sync::{mpsc, watch};

#[derive(Clone, Copy, Debug)]
pub struct Limits {
    pub header_line: usize,
    pub header_lines: usize,
    pub body: usize,
    pub frame_timeout: Duration,
    pub write_timeout: Duration,
}

impl Limits {
    /// `pema serve`'s clients: a body fits a rewrite of the longest text (20,000 characters,
    /// escaped) with room to spare.
    pub const NETWORK: Self = Self {
        header_line: 8 << 10,
        header_lines: 32,
        body: 1 << 20,
        frame_timeout: Duration::from_secs(30),
        write_timeout: Duration::from_secs(30),
    };
    /// `pema lsp`: the editor that started the daemon (and is trusted with it) sends whole
    /// documents on every change, and a busy machine must not cut it off.
    pub const EDITOR: Self = Self {
        body: 64 << 20,
        frame_timeout: Duration::from_secs(24 * 3600),
        write_timeout: Duration::from_secs(24 * 3600),
        ..Self::NETWORK
    };
}

/// Limit for frames from tower-lsp (the daemon's own output).
const MAX_OUTGOING: usize = 256 << 20;

enum Read {
    /// A frame to pass on.
    Frame(Vec<u8>),
    /// A frame to answer with an error; the connection goes on.
    Bad(i64, String),
    /// Answer with an error and close the connection.
    Fatal(String),
    /// The input ended.
    End,
}

/// Reads one header line of at most `max` bytes (without its line break). None at end of input.
async fn read_line<R: AsyncRead + Unpin>(
    r: &mut BufReader<R>,
    max: usize,
) -> std::io::Result<Option<Result<String, String>>> {
    let mut buf = Vec::new();
    let n = (&mut *r)
        .take(max as u64 + 2)
        .read_until(b'\n', &mut buf)
        .await?;
    if n == 0 {
        return Ok(None);
    }
    if !buf.ends_with(b"\n") {
        if buf.len() > max {
            return Ok(Some(Err(format!("a header line longer than {max} bytes"))));
        }
        // End of input in the middle of a line.
        return Ok(None);
    }
    while matches!(buf.last(), Some(b'\n' | b'\r')) {
        buf.pop();
    }
    Ok(Some(Ok(String::from_utf8_lossy(&buf).into_owned())))
}

/// Reads one frame. `check` parses the body (incoming frames); outgoing frames from tower-lsp are
/// only framed.
async fn read_frame<R: AsyncRead + Unpin>(
    r: &mut BufReader<R>,
    check: bool,
    limits: &Limits,
) -> std::io::Result<Read> {
    let mut len: Option<usize> = None;
    let mut bad_header = None;
    let mut lines = 0;
    loop {
        let t = match read_line(r, limits.header_line).await? {
            None => return Ok(Read::End),
            Some(Err(why)) => return Ok(Read::Fatal(format!("Parse error: {why}"))),
            Some(Ok(t)) => t,
        };
        if t.is_empty() {
            if lines > 0 {
                break;
            }
            continue;
        }
        lines += 1;
        if lines > limits.header_lines {
            return Ok(Read::Fatal(format!(
                "Parse error: more than {} header lines",
                limits.header_lines
            )));
        }
        match t.split_once(':') {
            Some((k, v)) if k.eq_ignore_ascii_case("content-length") => match v.trim().parse() {
                Ok(n) => len = Some(n),
                Err(_) => bad_header = Some(format!("bad Content-Length {:?}", short(v.trim()))),
            },
            Some(_) => {}
            None => bad_header = Some(format!("not a header line: {:?}", short(&t))),
        }
    }
    let Some(len) = len else {
        let why = bad_header.unwrap_or_else(|| "no Content-Length header".into());
        return Ok(Read::Bad(-32700, format!("Parse error: {why}")));
    };
    let max = if check { limits.body } else { MAX_OUTGOING };
    if len > max {
        return Ok(Read::Fatal(format!(
            "Invalid request: a frame of {len} bytes is larger than the {max}-byte limit; \
             closing the connection"
        )));
    }
    let mut body = vec![0; len];
    if let Err(e) = r.read_exact(&mut body).await {
        return if e.kind() == std::io::ErrorKind::UnexpectedEof {
            Ok(Read::End)
        } else {
            Err(e)
        };
    }
    if !check {
        return Ok(Read::Frame(body));
    }
    let v: Value = match serde_json::from_slice(&body) {
        Ok(v) => v,
        Err(e) => return Ok(Read::Bad(-32700, format!("Parse error: {e}"))),
    };
    let is_message = v.get("jsonrpc") == Some(&json!("2.0"))
        && (v.get("method").is_some_and(Value::is_string)
            || (v.get("id").is_some() && (v.get("result").is_some() || v.get("error").is_some())));
    if !is_message {
        let id = v.get("id").cloned().unwrap_or(Value::Null);
        return Ok(Read::Bad(
            -32600,
            format!(
                "Invalid request: not a JSON-RPC 2.0 message (id {})",
                short(&id.to_string())
            ),
        ));
    }
    Ok(Read::Frame(body))
}

fn short(s: &str) -> String {
    if s.chars().count() > 80 {
        format!("{}…", s.chars().take(80).collect::<String>())
    } else {
        s.to_string()
    }
}

fn frame(body: &[u8]) -> Vec<u8> {
    let mut out = format!("Content-Length: {}\r\n\r\n", body.len()).into_bytes();
    out.extend_from_slice(body);
    out
}

fn error_body(code: i64, message: &str) -> Vec<u8> {
    let e = json!({"jsonrpc": "2.0", "id": null, "error": {"code": code, "message": message}});
    serde_json::to_vec(&e).unwrap_or_default()
}

/// A JSON-RPC error frame with id null, for a connection refused before it starts.
pub fn refusal(message: &str) -> Vec<u8> {
    frame(&error_body(-32803, message))
}

/// Wraps a transport: returns the reader and writer to give tower-lsp. `closed` is set when the
/// input ends or the guard closes the connection; setting it from outside closes the input.
pub fn guard<R, W>(
    input: R,
    output: W,
    limits: Limits,
    closed: watch::Sender<bool>,
) -> (tokio::io::DuplexStream, tokio::io::DuplexStream)
where
    R: AsyncRead + Unpin + Send + 'static,
    W: AsyncWrite + Unpin + Send + 'static,
{
    let (mut to_server, server_in) = tokio::io::duplex(1 << 16);
    let (server_out, from_server) = tokio::io::duplex(1 << 16);
    // Bounded: a client whose errors are not written yet is not read further.
    let (errors_tx, mut errors_rx) = mpsc::channel::<Vec<u8>>(16);
    let mut stop = closed.subscribe();

    tokio::spawn(async move {
        let mut r = BufReader::new(input);
        let mut fatal = None;
        loop {
            // Waiting for a frame to start takes as long as the client likes; once its first
            // byte is here, the whole frame must follow within the timeout.
            let started = tokio::select! {
                s = r.fill_buf() => match s {
                    Ok(b) => !b.is_empty(),
                    // A signal interrupted the read: read again.
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                    Err(_) => false,
                },
                _ = stop.wait_for(|c| *c) => false,
            };
            if !started {
                break;
            }
            let read = tokio::select! {
                r = tokio::time::timeout(limits.frame_timeout, read_frame(&mut r, true, &limits)) => r,
                _ = stop.wait_for(|c| *c) => break,
            };
            match read {
                Err(_) => {
                    fatal = Some(format!(
                        "Invalid request: a frame was not finished within {} s; closing the \
                         connection",
                        limits.frame_timeout.as_secs()
                    ));
                    break;
                }
                Ok(Err(_)) | Ok(Ok(Read::End)) => break,
                Ok(Ok(Read::Frame(body))) => {
                    if to_server.write_all(&frame(&body)).await.is_err() {
                        break;
                    }
                }
                Ok(Ok(Read::Bad(code, message))) => {
                    tracing::warn!("{message}");
                    if errors_tx.send(error_body(code, &message)).await.is_err() {
                        break;
                    }
                }
                Ok(Ok(Read::Fatal(message))) => {
                    fatal = Some(message);
                    break;
                }
            }
        }
        if let Some(message) = fatal {
            tracing::warn!("{message}");
            let _ = errors_tx.send(error_body(-32600, &message)).await;
        }
        let _ = closed.send(true);
        let _ = to_server.shutdown().await;
    });

    // Whole frames from tower-lsp, read by their own task: reading is not cancel-safe, so it
    // must not sit in a select! beside the error channel.
    let (frames_tx, mut frames_rx) = mpsc::channel::<Vec<u8>>(64);
    tokio::spawn(async move {
        let mut from = BufReader::new(from_server);
        while let Ok(Read::Frame(body)) = read_frame(&mut from, false, &limits).await {
            if frames_tx.send(body).await.is_err() {
                break;
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
            let write = async {
                out.write_all(&frame(&body)).await?;
                out.flush().await
            };
            match tokio::time::timeout(limits.write_timeout, write).await {
                Ok(Ok(())) => {}
                Ok(Err(_)) => break,
                Err(_) => {
                    tracing::warn!(
                        "a client read nothing for {} s; closing its connection",
                        limits.write_timeout.as_secs()
                    );
                    break;
                }
            }
        }
        let _ = out.shutdown().await;
    });

    (server_in, server_out)
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn one(input: &[u8], limits: Limits) -> Read {
        let mut r = BufReader::new(input);
        read_frame(&mut r, true, &limits).await.unwrap()
    }

    #[tokio::test]
    async fn limits_hold() {
        let l = Limits::NETWORK;
        let long = format!("X-Long: {}\r\n\r\n", "a".repeat(10_000));
        assert!(
            matches!(one(long.as_bytes(), l).await, Read::Fatal(m) if m.contains("header line"))
        );
        let many = "X: 1\r\n".repeat(40) + "\r\n";
        assert!(
            matches!(one(many.as_bytes(), l).await, Read::Fatal(m) if m.contains("header lines"))
        );
        let big = "Content-Length: 2000000\r\n\r\n";
        assert!(matches!(one(big.as_bytes(), l).await, Read::Fatal(m) if m.contains("limit")));
        let overflow = "Content-Length: 99999999999999999999999\r\n\r\n";
        assert!(matches!(
            one(overflow.as_bytes(), l).await,
            Read::Bad(-32700, _)
        ));
        let ok = b"Content-Length: 34\r\n\r\n{\"jsonrpc\":\"2.0\",\"method\":\"x\"}    ";
        assert!(matches!(one(ok, l).await, Read::Frame(_)));
    }

    #[tokio::test]
    async fn an_unfinished_frame_closes_the_connection() {
        let (mut client, server) = tokio::io::duplex(1 << 16);
        let (r, w) = tokio::io::split(server);
        let (closed, mut closed_rx) = watch::channel(false);
        let limits = Limits {
            frame_timeout: Duration::from_millis(300),
            ..Limits::NETWORK
        };
        let (to_tower, from_tower) = guard(r, w, limits, closed);
        client
            .write_all(b"Content-Length: 50\r\n\r\n{")
            .await
            .unwrap();
        closed_rx.wait_for(|c| *c).await.unwrap();
        drop((to_tower, from_tower));
        let mut out = Vec::new();
        client.read_to_end(&mut out).await.unwrap();
        let out = String::from_utf8_lossy(&out);
        assert!(out.contains("not finished within"), "{out}");
    }
}
