//! The integrations of plugins/ from the Rust side: the OpenAI-compatible HTTP endpoint of the
//! real `pema serve --http` over a raw HTTP/1.1 connection (plain rewrites, and a streamed one
//! with the adapter the daemon trains on a 20-pair workspace), and the `pema rewrite
//! --workspace` pipe through the same daemon. The full suites
//! (the `openai` package, the MCP SDK, Neovim) are in plugins/ (`bash plugins/test.sh`).

mod common;

use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::process::Stdio;

use common::rpc;
use serde_json::{json, Value};

/// `pema serve --http` on free loopback ports: (process, rpc address, http address, token).
fn serve_http(
    cache: &std::path::Path,
    ws: &std::path::Path,
) -> (std::process::Child, String, String) {
    let mut child = rpc::pema_command(cache)
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--http",
            "127.0.0.1:0",
            "--workspace",
        ])
        .arg(ws)
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut err = BufReader::new(child.stderr.take().unwrap());
    let (mut rpc_at, mut http_at) = (None, None);
    while rpc_at.is_none() {
        let mut line = String::new();
        assert!(err.read_line(&mut line).unwrap() > 0, "pema serve exited");
        eprint!("{line}");
        if let Some(a) = line
            .trim()
            .strip_prefix("pema: OpenAI-compatible HTTP on http://")
        {
            http_at = Some(a.trim_end_matches("/v1").to_string());
        }
        if let Some(a) = line.trim().strip_prefix("pema: listening on tcp ") {
            rpc_at = Some(a.to_string());
        }
    }
    std::thread::spawn(move || {
        let mut s = String::new();
        let _ = err.read_to_string(&mut s);
    });
    (
        child,
        rpc_at.unwrap(),
        http_at.expect("the HTTP address is announced"),
    )
}

/// The body of a `Transfer-Encoding: chunked` response, its chunks joined.
fn dechunk(mut body: &str) -> String {
    let mut out = String::new();
    loop {
        let (size, rest) = body.split_once("\r\n").expect("a chunk size line");
        let n = usize::from_str_radix(size.split(';').next().unwrap().trim(), 16).unwrap();
        if n == 0 {
            return out;
        }
        out.push_str(&rest[..n]);
        body = rest[n..]
            .strip_prefix("\r\n")
            .expect("a chunk ends in CRLF");
    }
}

/// One HTTP/1.1 request; (status, body).
fn http(addr: &str, method: &str, path: &str, token: &str, body: &Value) -> (u16, String) {
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    let body = body.to_string();
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {token}\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    let status = out[9..12].parse().unwrap();
    let (head, body) = out.split_once("\r\n\r\n").unwrap_or((&out, ""));
    let chunked = head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked");
    let body = if chunked {
        dechunk(body)
    } else {
        body.to_string()
    };
    (status, body)
}

#[test]
fn http_endpoint_and_pipe_through_the_real_daemon() {
    let cache = tempfile::tempdir().unwrap();
    let ws = tempfile::tempdir().unwrap();
    common::write_pairs(
        &ws.path().join("style.pairs.jsonl"),
        &common::bible_pairs(20),
    );
    let (mut child, rpc_at, http_at) = serve_http(cache.path(), ws.path());
    let token = std::fs::read_to_string(rpc::token_file(cache.path()))
        .unwrap()
        .trim()
        .to_string();
    let addr_file = std::fs::read_to_string(cache.path().join("pema/serve.addr")).unwrap();
    assert!(
        addr_file.contains(&format!("rpc {rpc_at}"))
            && addr_file.contains(&format!("http {http_at}")),
        "{addr_file}"
    );

    // A wrong token: 401 in OpenAI's error shape.
    let (status, body) = http(
        &http_at,
        "GET",
        "/v1/models",
        "wrong-token-wrong-token",
        &json!(null),
    );
    assert_eq!(status, 401, "{body}");
    let e: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(e["error"]["code"], "invalid_api_key");

    let (status, body) = http(&http_at, "GET", "/v1/models", &token, &json!(null));
    assert_eq!(status, 200, "{body}");
    let m: Value = serde_json::from_str(&body).unwrap();
    let ids: Vec<&str> = m["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap())
        .collect();
    let name = format!("pema/{}", ws.path().file_name().unwrap().to_string_lossy());
    assert_eq!(ids, [name.as_str(), "pema/plain"]);

    // A plain rewrite over HTTP equals the same rewrite over JSON-RPC.
    let text = "He went up into the mountain.";
    let (status, body) = http(
        &http_at,
        "POST",
        "/v1/chat/completions",
        &token,
        &json!({"model": "pema/plain", "messages": [{"role": "user", "content": text}]}),
    );
    assert_eq!(status, 200, "{body}");
    let r: Value = serde_json::from_str(&body).unwrap();
    let got = r["choices"][0]["message"]["content"]
        .as_str()
        .unwrap()
        .to_string();
    let mut c = rpc::connect(&rpc_at);
    c.token = Some(token.clone());
    c.initialize(&[ws.path()], json!({})).unwrap();
    let want = c
        .call(
            "pema/rewrite",
            json!({"text": text, "mode": "plain", "workspace": ws.path()}),
        )
        .unwrap();
    assert_eq!(got, want["text"].as_str().unwrap());
    assert!(!got.trim().is_empty());

    // Errors: bad options 400, unknown model 404, an unknown path 404.
    let (status, body) = http(
        &http_at,
        "POST",
        "/v1/chat/completions",
        &token,
        &json!({"model": "pema/plain", "temperature": -1, "messages": [{"role": "user", "content": text}]}),
    );
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("temperature"), "{body}");
    let (status, _) = http(
        &http_at,
        "POST",
        "/v1/chat/completions",
        &token,
        &json!({"model": "pema/none", "messages": [{"role": "user", "content": text}]}),
    );
    assert_eq!(status, 404);
    let (status, _) = http(&http_at, "GET", "/v2/other", &token, &json!(null));
    assert_eq!(status, 404);

    // The pipe finds the daemon through serve.addr and keeps the layout.
    let input = format!("{text}\n\n  {text}\n");
    let mut p = rpc::pema_command(cache.path())
        .args(["rewrite", "--mode", "plain", "--workspace"])
        .arg(ws.path())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    p.stdin.take().unwrap().write_all(input.as_bytes()).unwrap();
    let out = p.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = String::from_utf8(out.stdout).unwrap();
    assert_eq!(out, format!("{got}\n\n  {got}\n"));

    // The workspace's own adapter, streamed: once the daemon has trained on the 20 pairs, the
    // pieces of a streamed completion with the workspace's model add up to the daemon's default
    // rewrite (a line made again is held back, never sent and taken back).
    c.wait_status(std::time::Duration::from_secs(900), |w| {
        w["adapter"]["available"] == json!(true)
    });
    let text = "And he said to them, Go into the town, and you will see a man there.";
    let want = c
        .call(
            "pema/rewrite",
            json!({"text": text, "workspace": ws.path()}),
        )
        .unwrap();
    assert_ne!(want["mode"], "plain", "{want}");
    let (status, body) = http(
        &http_at,
        "POST",
        "/v1/chat/completions",
        &token,
        &json!({"model": name, "stream": true, "messages": [{"role": "user", "content": text}]}),
    );
    assert_eq!(status, 200, "{body}");
    let (mut streamed, mut pieces, mut done) = (String::new(), 0, false);
    for line in body.lines() {
        let Some(data) = line.strip_prefix("data: ") else {
            continue;
        };
        assert!(!done, "nothing after [DONE]: {body}");
        if data == "[DONE]" {
            done = true;
            continue;
        }
        let chunk: Value = serde_json::from_str(data).unwrap();
        if let Some(t) = chunk["choices"][0]["delta"]["content"].as_str() {
            streamed.push_str(t);
            pieces += 1;
        }
    }
    assert!(done && pieces > 0, "{body}");
    assert_eq!(streamed, want["text"].as_str().unwrap(), "{body}");

    child.kill().unwrap();
    child.wait().unwrap();

    // No daemon any more: the input comes back unchanged, and the error says how to start one.
    let mut p = rpc::pema_command(cache.path())
        .args(["rewrite", "--workspace"])
        .arg(ws.path())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    p.stdin.take().unwrap().write_all(input.as_bytes()).unwrap();
    let out = p.wait_with_output().unwrap();
    assert!(!out.status.success());
    assert_eq!(String::from_utf8(out.stdout).unwrap(), input);
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(err.contains("pema serve --workspace"), "{err}");
}
