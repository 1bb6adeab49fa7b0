//! One request: send the body, stamp every received chunk on arrival, split it into lines after the
//! stamp, and keep the lines as received. Metrics are not computed here: trbench reads the lines
//! with the same code as its own clients (docs/runner-contract.md).

use std::time::Duration;

use serde_json::{json, Value};

use crate::clock::{monotonic_ns, process_cpu_ns, unix_s};

pub struct Limits {
    pub timeout_s: f64,
    pub stall_timeout_s: Option<f64>,
}

impl Limits {
    /// As trbench's Python clients: a stall watchdog only when it is shorter than the whole-request bound.
    fn stalls(&self) -> bool {
        matches!(self.stall_timeout_s, Some(s) if s > 0.0 && s < self.timeout_s)
    }

    fn per_read_s(&self) -> f64 {
        if self.stalls() { self.stall_timeout_s.unwrap() } else { self.timeout_s }
    }
}

/// Where a line leaves the stream: the live clients stop reading at the same lines.
#[derive(PartialEq)]
enum LineEnd {
    More,
    Done,
}

/// The record written for one request, plus what a multi-agent workflow needs for its next call.
pub struct Outcome {
    pub record: Value,
    pub answer: String,
    pub ok: bool,
}

struct Observed {
    sent_at_unix: f64,
    t_send_ns: i64,
    lines: Vec<Value>,
    http_status: Option<u16>,
    error: Option<(&'static str, String)>,
    error_body: Option<String>,
    answer: String,
    text_chunks: usize,
    line_failed: bool, // an error object or a line that is not JSON: trbench fails the exchange there
    unanswered: bool,  // the connection closed before any byte of a response came back
}

impl Observed {
    fn fail(&mut self, kind: &'static str, message: String) {
        self.error = Some((kind, message));
    }
}

fn observed() -> Observed {
    Observed {
        sent_at_unix: unix_s(),
        t_send_ns: monotonic_ns(),
        lines: Vec::new(),
        http_status: None,
        error: None,
        error_body: None,
        answer: String::new(),
        text_chunks: 0,
        line_failed: false,
        unanswered: false,
    }
}

pub async fn run(client: &reqwest::Client, backend: &str, url: &str, body: &Value, limits: &Limits) -> Outcome {
    let cpu0 = process_cpu_ns();
    // A kept-alive connection the server had just closed (llama.cpp closes idle ones; the close can
    // cross the next request on the wire) answers nothing: the server never took the request, so it
    // is sent once more, on a new connection, and timed from that send, as trbench's Python client
    // does (trbench/backends/streaming.py `unanswered`); a second such close is the error it is.
    let mut obs = observed();
    for attempt in 0..2 {
        obs = observed();
        let deadline_ns = obs.t_send_ns + (limits.timeout_s * 1e9) as i64;
        exchange(client, backend, url, body, limits, deadline_ns, &mut obs).await;
        if !(attempt == 0 && obs.unanswered) {
            break;
        }
    }
    let t_end_ns = monotonic_ns();
    let cpu_ns = process_cpu_ns() - cpu0;
    let ok = obs.error.is_none() && !obs.line_failed && obs.text_chunks > 0;
    let (kind, message) = match &obs.error {
        Some((k, m)) => (Value::from(*k), Value::from(m.as_str())),
        None => (Value::Null, Value::Null),
    };
    let record = json!({
        "url": url,
        "sent_at_unix": obs.sent_at_unix,
        "t_send_ns": obs.t_send_ns,
        "end_offset_ns": t_end_ns - obs.t_send_ns,
        "http_status": obs.http_status,
        "lines": obs.lines,
        "error_kind": kind,
        "error_message": message,
        "error_body": obs.error_body,
        "cpu_ns": cpu_ns,
    });
    Outcome { record, answer: obs.answer, ok }
}

/// How long the next wait may last, and the error kind if it runs out.
fn next_wait(limits: &Limits, deadline_ns: i64) -> (Duration, bool) {
    let left_s = (deadline_ns - monotonic_ns()) as f64 / 1e9;
    let per_read = limits.per_read_s();
    if left_s <= per_read {
        (Duration::from_secs_f64(left_s.max(0.0)), true)
    } else {
        (Duration::from_secs_f64(per_read), false)
    }
}

fn waited_too_long(obs: &mut Observed, limits: &Limits, deadline_hit: bool) {
    if deadline_hit || !limits.stalls() {
        obs.fail("timeout", format!("the request took longer than timeout_s={} s", limits.timeout_s));
    } else {
        obs.fail(
            "stall",
            format!(
                "the server sent no byte for {} s (stall_timeout_s); cut after {} text {}",
                limits.per_read_s(),
                obs.text_chunks,
                if obs.text_chunks == 1 { "chunk" } else { "chunks" }
            ),
        );
    }
}

async fn exchange(
    client: &reqwest::Client,
    backend: &str,
    url: &str,
    body: &Value,
    limits: &Limits,
    deadline_ns: i64,
    obs: &mut Observed,
) {
    let (wait, deadline_hit) = next_wait(limits, deadline_ns);
    let sent = tokio::time::timeout(wait, client.post(url).header("content-type", "application/json").body(body.to_string()).send()).await;
    let mut resp = match sent {
        Err(_) => return waited_too_long(obs, limits, deadline_hit),
        Ok(Err(err)) => {
            obs.unanswered = transport_kind(&err) == "bad_response";
            return obs.fail(transport_kind(&err), transport_message(url, &err));
        }
        Ok(Ok(resp)) => resp,
    };
    let status = resp.status().as_u16();
    obs.http_status = Some(status);
    if status >= 400 {
        // the body names the error (an OOM among them): trbench classifies it with its own code
        let (wait, _) = next_wait(limits, deadline_ns);
        let text = match tokio::time::timeout(wait, resp.text()).await {
            Ok(Ok(t)) => t,
            _ => String::new(),
        };
        let kind = if status >= 500 { "http_5xx" } else { "http_4xx" };
        obs.fail(kind, format!("HTTP {}: {}", status, text.trim()));
        obs.error_body = Some(text);
        return;
    }
    let mut pending: Vec<u8> = Vec::new();
    loop {
        let (wait, deadline_hit) = next_wait(limits, deadline_ns);
        let chunk = match tokio::time::timeout(wait, resp.chunk()).await {
            Err(_) => return waited_too_long(obs, limits, deadline_hit),
            Ok(Err(err)) => return obs.fail("bad_response", format!("stream broke: {}", describe(&err))),
            Ok(Ok(None)) => break,
            Ok(Ok(Some(chunk))) => chunk,
        };
        let t_ns = monotonic_ns(); // first, before any parsing: the arrival of every line in this chunk
        pending.extend_from_slice(&chunk);
        for line in take_lines(&mut pending) {
            if read_line(backend, line, t_ns - obs.t_send_ns, obs) == LineEnd::Done {
                return;
            }
        }
        if t_ns > deadline_ns {
            return obs.fail("timeout", format!("the request took longer than timeout_s={} s", limits.timeout_s));
        }
    }
    if !pending.is_empty() {
        let line = String::from_utf8_lossy(&pending).into_owned();
        read_line(backend, line, monotonic_ns() - obs.t_send_ns, obs);
    }
}

/// The complete lines in `pending` (ended by \r\n, \r or \n, as Python's line splitting), leaving the rest.
fn take_lines(pending: &mut Vec<u8>) -> Vec<String> {
    let mut lines = Vec::new();
    let mut start = 0;
    let mut i = 0;
    while i < pending.len() {
        let b = pending[i];
        if b == b'\n' || b == b'\r' {
            lines.push(String::from_utf8_lossy(&pending[start..i]).into_owned());
            if b == b'\r' && i + 1 < pending.len() && pending[i + 1] == b'\n' {
                i += 1;
            }
            start = i + 1;
        }
        i += 1;
    }
    pending.drain(..start);
    lines
}

/// Keep the line as received; look into it only to know where the stream ends (where the live
/// clients stop reading) and, for a multi-agent workflow, the answer text its next call is fed.
fn read_line(backend: &str, line: String, offset_ns: i64, obs: &mut Observed) -> LineEnd {
    let payload = if backend == "openai" {
        match line.strip_prefix("data:") {
            Some(rest) => rest.trim().to_string(),
            None => {
                obs.lines.push(json!([offset_ns, line]));
                return LineEnd::More; // SSE comments, event names, keep-alives
            }
        }
    } else {
        line.clone()
    };
    obs.lines.push(json!([offset_ns, line]));
    if backend == "openai" && payload == "[DONE]" {
        return LineEnd::Done;
    }
    if payload.trim().is_empty() {
        return LineEnd::More;
    }
    let data: Value = match serde_json::from_str(&payload) {
        Ok(v) => v,
        Err(_) => {
            obs.line_failed = true;
            return LineEnd::Done;
        }
    };
    if data.get("error").is_some() {
        obs.line_failed = true;
        return LineEnd::Done;
    }
    let (content, reasoning) = texts(backend, &data);
    for text in [content, reasoning].into_iter().flatten() {
        if !text.is_empty() {
            obs.text_chunks += 1;
        }
    }
    if let Some(text) = content {
        obs.answer.push_str(text);
    }
    if backend == "ollama" && data.get("done").and_then(Value::as_bool) == Some(true) {
        return LineEnd::Done;
    }
    LineEnd::More
}

/// (content, reasoning) of one chunk: OpenAI chat deltas or completion text; Ollama chat or generate.
fn texts<'a>(backend: &str, data: &'a Value) -> (Option<&'a str>, Option<&'a str>) {
    if backend == "openai" {
        let choice = data.get("choices").and_then(|c| c.get(0));
        let delta = choice.and_then(|c| c.get("delta"));
        let content = match delta {
            Some(d) => d.get("content"),
            None => choice.and_then(|c| c.get("text")),
        };
        let reasoning = delta.and_then(|d| d.get("reasoning_content").or_else(|| d.get("reasoning")));
        (content.and_then(Value::as_str), reasoning.and_then(Value::as_str))
    } else {
        let message = data.get("message");
        let content = message.and_then(|m| m.get("content")).or_else(|| data.get("response"));
        let reasoning = message.and_then(|m| m.get("thinking")).or_else(|| data.get("thinking"));
        (content.and_then(Value::as_str), reasoning.and_then(Value::as_str))
    }
}

fn transport_kind(err: &reqwest::Error) -> &'static str {
    if err.is_timeout() {
        "timeout"
    } else if err.is_connect() {
        "connect"
    } else {
        "bad_response"
    }
}

fn transport_message(url: &str, err: &reqwest::Error) -> String {
    if err.is_connect() && !err.is_timeout() {
        format!("cannot connect to {}: {}", url, describe(err))
    } else {
        describe(err)
    }
}

/// reqwest's message with its causes (the OS error of a refused connection, hyper's of a cut stream).
fn describe(err: &reqwest::Error) -> String {
    let mut text = err.to_string();
    let mut source = std::error::Error::source(err);
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}
