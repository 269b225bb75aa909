//! `streamtap-probe`: streams one chat completion through the user's own
//! path (their ingress, gateway, or Envoy itself), judges how it arrived at
//! the client with streamtap's own core, and, given the collector, sets
//! that beside streamtap's summary of the same call at Envoy, with one
//! sentence on where it was buffered.
//!
//! Headers the user passes are sent, and never printed: every text the
//! probe shows goes through [`Redactor`].

pub mod args;
pub mod collector;
pub mod diagnosis;
pub mod judge;
pub mod url;

use std::hash::{BuildHasher, Hasher};
use std::io;
use std::time::Duration;

use serde_json::{json, Value};
use testbed::client::{self, StreamResult};

use crate::args::Args;
use crate::diagnosis::{diagnose, ClientEnd, EnvoySide};
use crate::judge::{client_summary, unix_now_us, Sent};

/// How long the collector is asked for the call: the filter exports in
/// batches (every `flush_interval_ms`, 1 s by default).
pub const COLLECTOR_WAIT: Duration = Duration::from_secs(5);
/// The `accept-encoding` sent unless the user gives one.
pub const ACCEPT_ENCODING: &str = "gzip, deflate";
/// Header values shorter than this are not blanked in shown text.
const MIN_SECRET_BYTES: usize = 8;
/// Bytes of an unexpected body shown in an error.
const SHOWN_BODY_BYTES: usize = 200;

/// Everything the probe found.
#[derive(Debug, Clone)]
pub struct Report {
    pub request_id: String,
    /// The URL without its query.
    pub url: String,
    pub status: u16,
    /// Socket reads that brought body bytes.
    pub reads: usize,
    /// The core's summary of the client-side timeline.
    pub client: Value,
    pub end: ClientEnd,
    /// streamtap's summary from the collector, when found.
    pub envoy: Option<Value>,
    pub envoy_side: EnvoySide,
    /// The x-request-id Envoy answered with, when not the probe's own.
    pub replaced_id: Option<String>,
    pub diagnosis: String,
}

/// Removes the values of the user's headers from any text shown.
#[derive(Debug, Clone, Default)]
pub struct Redactor {
    secrets: Vec<String>,
}

impl Redactor {
    pub fn new(headers: &[(String, String)]) -> Redactor {
        let mut secrets: Vec<String> = Vec::new();
        for (_, value) in headers {
            secrets.push(value.clone());
            // `Bearer sk-…`: the token alone may be echoed too.
            if let Some((_, token)) = value.split_once(' ') {
                secrets.push(token.trim().to_string());
            }
        }
        // Short values (`1`, `on`, `json`) would blank ordinary words, and
        // are not credentials: the headers themselves are never printed.
        secrets.retain(|s| s.len() >= MIN_SECRET_BYTES);
        secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
        Redactor { secrets }
    }

    pub fn clean(&self, text: &str) -> String {
        let mut text = text.to_string();
        for secret in &self.secrets {
            text = text.replace(secret.as_str(), "[redacted]");
        }
        text
    }
}

/// Up to the first 200 bytes of `body` as text, on one line.
pub fn first_bytes(body: &[u8]) -> String {
    let shown = String::from_utf8_lossy(body.get(..SHOWN_BODY_BYTES).unwrap_or(body));
    let mut line: String = shown
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    if body.len() > SHOWN_BODY_BYTES {
        line.push('…');
    }
    line
}

/// A fresh `x-request-id`: `streamtap-probe-` and 16 random hex digits.
pub fn new_request_id() -> String {
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u64(unix_now_us());
    hasher.write_u32(std::process::id());
    format!("streamtap-probe-{:016x}", hasher.finish())
}

/// The request body: one streamed chat completion with usage at its end.
pub fn request_body(model: &str, prompt: &str) -> Vec<u8> {
    json!({
        "model": model,
        "stream": true,
        "stream_options": {"include_usage": true},
        "messages": [{"role": "user", "content": prompt}],
    })
    .to_string()
    .into_bytes()
}

/// Runs the probe; the error is one line, already redacted.
pub fn run(args: &Args, collector_wait: Duration) -> Result<Report, String> {
    let redactor = Redactor::new(&args.headers);
    run_inner(args, collector_wait).map_err(|err| redactor.clean(&err))
}

fn run_inner(args: &Args, collector_wait: Duration) -> Result<Report, String> {
    let url = args.url.to_string();
    let addr = args.url.resolve("URL")?;
    let given = |name: &str| {
        args.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.clone())
    };
    let request_id = given("x-request-id").unwrap_or_else(new_request_id);
    let authority = args.url.authority();
    let mut headers: Vec<(&str, &str)> = Vec::new();
    if given("host").is_none() {
        headers.push(("host", &authority));
    }
    if given("accept").is_none() {
        headers.push(("accept", "text/event-stream"));
    }
    // What the OpenAI SDKs offer: a compressing proxy on the path then
    // compresses (and may buffer) for the probe as it does for them. The
    // core inflates gzip and deflate.
    if given("accept-encoding").is_none() {
        headers.push(("accept-encoding", ACCEPT_ENCODING));
    }
    if given("x-request-id").is_none() {
        headers.push(("x-request-id", &request_id));
    }
    headers.extend(args.headers.iter().map(|(n, v)| (n.as_str(), v.as_str())));
    let body = request_body(&args.model, &args.prompt);

    let start_unix_us = unix_now_us();
    let result = client::post_within(
        addr,
        &args.url.target,
        &headers,
        &body,
        args.timeout,
        &mut |_, _| {},
    )
    .map_err(|err| connect_error(&url, &args.url.target, args.url.path(), &err))?;
    check_response(&url, &result)?;

    let sent = Sent {
        target: &args.url.target,
        request_id: &request_id,
        body: &body,
        start_unix_us,
    };
    let client = client_summary(&sent, &result)?;
    let end = if !result.complete {
        ClientEnd::Cut
    } else if client["outcome"] == "completed" {
        ClientEnd::Completed
    } else {
        ClientEnd::NoEndMarker
    };

    // An Envoy with `always_set_request_id_in_response` tells the id it used.
    let replaced_id = result
        .header("x-request-id")
        .filter(|id| *id != request_id)
        .map(str::to_string);
    let (envoy, envoy_side) = match &args.collector {
        None => (None, EnvoySide::NotAsked),
        Some(collector) => {
            let mut ids = vec![request_id.clone()];
            ids.extend(replaced_id.clone());
            match collector::find_call(collector, &ids, collector_wait)? {
                None => (None, EnvoySide::NotFound),
                Some(summary) => {
                    let side = EnvoySide::Found {
                        verdict: summary["stream_health"]["verdict"]
                            .as_str()
                            .map(str::to_string),
                        outcome: summary["outcome"].as_str().map(str::to_string),
                    };
                    (Some(summary), side)
                }
            }
        }
    };
    let diagnosis = diagnose(
        &envoy_side,
        client["stream_health"]["verdict"].as_str(),
        end,
    );
    Ok(Report {
        request_id,
        url,
        status: result.status,
        reads: result.frames.len(),
        client,
        end,
        envoy,
        envoy_side,
        replaced_id,
        diagnosis,
    })
}

fn connect_error(url: &str, target: &str, path: &str, err: &io::Error) -> String {
    match err.kind() {
        io::ErrorKind::ConnectionRefused => {
            format!("{url}: connection refused: nothing listens there (is the port right, or the port-forward running?)")
        }
        io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock => {
            // The client's message names the request target, query included.
            format!(
                "{url}: timed out: {}",
                err.to_string().replace(target, path)
            )
        }
        _ => format!("{url}: {}", err.to_string().replace(target, path)),
    }
}

fn check_response(url: &str, result: &StreamResult) -> Result<(), String> {
    if !(200..300).contains(&result.status) {
        return Err(format!(
            "{url}: status {}: {}",
            result.status,
            first_bytes(&result.body)
        ));
    }
    let content_type = result.header("content-type").unwrap_or("(none)");
    let media_type = content_type.split(';').next().unwrap_or_default().trim();
    if !media_type.eq_ignore_ascii_case("text/event-stream") {
        return Err(format!(
            "{url}: the response is {content_type}, not text/event-stream: is this a streaming chat \
             completions endpoint? It begins: {}",
            first_bytes(&result.body)
        ));
    }
    Ok(())
}

/// One side's numbers for `--json`: `stream_health` and the timings.
fn side_json(summary: &Value) -> Value {
    json!({
        "outcome": summary["outcome"],
        "status": summary["status"],
        "ttft_ms": summary["ttft_ms"],
        "duration_ms": summary["duration_ms"],
        "output_tokens_per_s": summary["output_tokens_per_s"],
        "stream_health": summary["stream_health"],
    })
}

impl Report {
    /// The `--json` object.
    pub fn to_json(&self) -> Value {
        let mut client = side_json(&self.client);
        client["reads"] = json!(self.reads);
        client["status"] = json!(self.status);
        client["end"] = json!(match self.end {
            ClientEnd::Completed => "completed",
            ClientEnd::NoEndMarker => "no_end_marker",
            ClientEnd::Cut => "cut",
        });
        json!({
            "request_id": self.request_id,
            "url": self.url,
            "client": client,
            "envoy": self.envoy.as_ref().map(side_json),
            "envoy_lookup": match self.envoy_side {
                EnvoySide::NotAsked => "not_asked",
                EnvoySide::NotFound => "not_found",
                EnvoySide::Found { .. } => "found",
            },
            "replaced_request_id": self.replaced_id,
            "diagnosis": self.diagnosis,
        })
    }

    /// The human lines.
    pub fn to_text(&self) -> String {
        let mut out = format!(
            "probe      POST {} (x-request-id {})\n",
            self.url, self.request_id
        );
        let end = match self.end {
            ClientEnd::Completed => "",
            ClientEnd::NoEndMarker => ", no end marker",
            ClientEnd::Cut => ", cut short",
        };
        out.push_str(&format!(
            "client     {}, {} reads{end}, {}\n",
            self.status,
            self.reads,
            side_text(&self.client)
        ));
        let envoy = match (&self.envoy_side, &self.envoy) {
            (EnvoySide::NotAsked, _) => {
                "not asked (add --collector URL to compare with streamtap's summary)".to_string()
            }
            (EnvoySide::NotFound, _) => {
                "no summary with this x-request-id at the collector".to_string()
            }
            (EnvoySide::Found { .. }, Some(summary)) => format!(
                "{}, {}",
                summary["outcome"].as_str().unwrap_or("no outcome"),
                side_text(summary)
            ),
            (EnvoySide::Found { .. }, None) => String::new(),
        };
        out.push_str(&format!("envoy      {envoy}\n"));
        if let Some(id) = &self.replaced_id {
            out.push_str(&format!(
                "note       Envoy answered with x-request-id {id}: it replaced the probe's\n"
            ));
        }
        out.push_str(&format!("diagnosis  {}\n", self.diagnosis));
        out
    }
}

fn ms(value: &Value) -> String {
    value
        .as_f64()
        .map_or_else(|| "-".to_string(), |ms| format!("{ms:.0} ms"))
}

/// `ttft 212 ms, 2051 ms in all; smooth: 40 deltas, largest burst 1 (3%), longest stall 48 ms (content)`
fn side_text(summary: &Value) -> String {
    let timing = format!(
        "ttft {}, {} in all",
        ms(&summary["ttft_ms"]),
        ms(&summary["duration_ms"])
    );
    let health = &summary["stream_health"];
    let Some(verdict) = health["verdict"].as_str() else {
        return format!("{timing}; no stream_health");
    };
    let phase = health["stall_phase"]
        .as_str()
        .map_or_else(String::new, |phase| format!(" ({phase})"));
    format!(
        "{timing}; {verdict}: {} deltas, largest burst {} ({:.0}%), longest stall {}{phase}",
        health["content_deltas"].as_u64().unwrap_or(0),
        health["largest_burst"].as_u64().unwrap_or(0),
        health["burst_share"].as_f64().unwrap_or(0.0) * 100.0,
        ms(&health["longest_stall_ms"]),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redactor_removes_header_values_and_their_tokens() {
        let headers = vec![
            (
                "Authorization".to_string(),
                "Bearer sk-live-abcdef".to_string(),
            ),
            ("x-flag".to_string(), "on".to_string()),
            ("x-script".to_string(), "json".to_string()),
        ];
        let redactor = Redactor::new(&headers);
        assert_eq!(
            redactor
                .clean("401: bad key sk-live-abcdef (header Bearer sk-live-abcdef), flag on, json"),
            "401: bad key [redacted] (header [redacted]), flag on, json"
        );
    }

    #[test]
    fn first_bytes_is_one_line_of_at_most_200_bytes() {
        assert_eq!(
            first_bytes(b"{\"error\":\n\"nope\"}"),
            "{\"error\": \"nope\"}"
        );
        let long = vec![b'x'; 500];
        assert_eq!(first_bytes(&long).chars().count(), 201);
    }

    #[test]
    fn request_ids_and_body() {
        let (a, b) = (new_request_id(), new_request_id());
        assert!(a.starts_with("streamtap-probe-") && a.len() == 32, "{a}");
        assert_ne!(a, b);
        let body: Value = serde_json::from_slice(&request_body("m", "hi")).unwrap();
        assert_eq!(
            body,
            json!({"model": "m", "stream": true, "stream_options": {"include_usage": true}, "messages": [{"role": "user", "content": "hi"}]})
        );
    }
}
