//! The probe against in-process test bed servers, no Envoy: pointed straight
//! at a scripted upstream (standing in for the user's path), with the test
//! bed's collector holding the "Envoy side" summaries the test posts.

#![allow(clippy::unwrap_used, clippy::panic)]

use std::process::Command as Process;
use std::time::Duration;

use probe::args::{self, Args, Command};
use probe::diagnosis::{ClientEnd, EnvoySide};
use serde_json::{json, Value};
use testbed::client;
use testbed::collector::Collector;
use testbed::scripted::{Chunking, Script, ScriptedUpstream};

const SECRET: &str = "sk-live-e2e-0123456789";
const SHORT_WAIT: Duration = Duration::from_millis(400);

/// `deltas` chat completion events, then the finish and `[DONE]`; one
/// element per event.
fn chat_events(deltas: usize) -> Vec<Vec<u8>> {
    let mut events: Vec<Vec<u8>> = (0..deltas)
        .map(|i| {
            format!(
                "data: {{\"id\":\"c\",\"object\":\"chat.completion.chunk\",\"model\":\"gpt-4o-mini\",\"choices\":[{{\"index\":0,\"delta\":{{\"content\":\"word{i} \"}},\"finish_reason\":null}}]}}\n\n"
            )
            .into_bytes()
        })
        .collect();
    events.push(
        b"data: {\"id\":\"c\",\"object\":\"chat.completion.chunk\",\"model\":\"gpt-4o-mini\",\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"stop\"}]}\n\ndata: [DONE]\n\n"
            .to_vec(),
    );
    events
}

/// The stream written one event per write, `gap` apart.
fn paced(deltas: usize, gap: Duration) -> Script {
    let events = chat_events(deltas);
    let sizes = events.iter().map(Vec::len).collect();
    Script::sse(events.concat())
        .chunking(Chunking::Sizes(sizes))
        .gap(gap)
}

/// The probe's arguments for `script` on `upstream`, with a secret header.
fn probe_args(upstream: &ScriptedUpstream, script: &str, extra: &[&str]) -> Args {
    let url = format!("http://{}/v1/chat/completions", upstream.addr);
    let script_header = format!("x-script: {script}");
    let auth = format!("Authorization: Bearer {SECRET}");
    let mut list = vec![url.as_str(), "--header", &script_header, "--header", &auth];
    list.extend_from_slice(extra);
    let owned: Vec<String> = list.iter().map(|s| s.to_string()).collect();
    match args::parse(&owned).unwrap() {
        Command::Run(args) => *args,
        Command::Help => unreachable!(),
    }
}

fn post_summary(collector: &Collector, summary: &Value) {
    let got = client::post(
        collector.addr,
        "/v1/calls",
        &[],
        summary.to_string().as_bytes(),
    )
    .unwrap();
    assert_eq!(got.status, 200);
}

fn envoy_summary(id: &str, verdict: &str) -> Value {
    json!({
        "schema_version": 2, "id": id, "outcome": "completed", "ttft_ms": 90.0, "duration_ms": 1700.0,
        "stream_health": {"verdict": verdict, "content_deltas": 40, "largest_burst": 1, "burst_share": 0.025,
            "longest_stall_ms": 45.0, "stall_phase": "content", "events_per_chunk_max": 1,
            "events_per_chunk_p50": 1, "end_marker": true, "keepalives": 0}
    })
}

fn assert_no_secret(text: &str) {
    assert!(!text.contains(SECRET), "the header value leaked: {text}");
    assert!(!text.contains("Bearer"), "the header value leaked: {text}");
}

#[test]
fn judges_the_client_side_and_sends_the_users_headers() {
    let upstream = ScriptedUpstream::start().unwrap();
    upstream.script("paced", paced(40, Duration::from_millis(40)));
    let report = probe::run(&probe_args(&upstream, "paced", &[]), SHORT_WAIT).unwrap();

    let served = upstream
        .wait_served("paced", Duration::from_secs(5))
        .unwrap();
    assert_eq!(
        served.header("authorization"),
        Some(format!("Bearer {SECRET}").as_str())
    );
    assert_eq!(
        served.header("x-request-id"),
        Some(report.request_id.as_str())
    );
    assert_eq!(served.header("accept"), Some("text/event-stream"));
    assert_eq!(
        served.header("accept-encoding"),
        Some(probe::ACCEPT_ENCODING)
    );
    let body: Value = serde_json::from_slice(&served.request_body).unwrap();
    assert_eq!(body["stream"], true);
    assert_eq!(body["stream_options"]["include_usage"], true);
    assert_eq!(body["model"], "gpt-4o-mini");

    assert_eq!(report.status, 200);
    assert!(report.reads >= 40, "{} reads", report.reads);
    assert_eq!(report.end, ClientEnd::Completed);
    assert_eq!(report.client["outcome"], "completed");
    assert_eq!(report.client["id"], report.request_id.as_str());
    assert!(report.client["ttft_ms"].as_f64().unwrap() < 1000.0);
    assert!(report.client["duration_ms"].as_f64().unwrap() >= 1500.0);
    assert_eq!(report.envoy_side, EnvoySide::NotAsked);

    let text = report.to_text();
    let json = report.to_json().to_string();
    assert_no_secret(&text);
    assert_no_secret(&json);
    assert!(
        text.contains(&format!("x-request-id {}", report.request_id)),
        "{text}"
    );
    assert!(text.lines().count() >= 4, "{text}");
}

#[test]
fn smooth_at_the_client_and_at_envoy() {
    let upstream = ScriptedUpstream::start().unwrap();
    upstream.script("paced", paced(40, Duration::from_millis(40)));
    let collector = Collector::start().unwrap();
    let id = "streamtap-probe-e2e-smooth";
    post_summary(&collector, &envoy_summary(id, "smooth"));
    let collector_url = format!("http://{}", collector.addr);
    let header = format!("x-request-id: {id}");
    let args = probe_args(
        &upstream,
        "paced",
        &["--collector", &collector_url, "--header", &header],
    );
    let report = probe::run(&args, SHORT_WAIT).unwrap();

    assert_eq!(
        report.client["stream_health"]["verdict"], "smooth",
        "{}",
        report.client
    );
    assert_eq!(report.client["stream_health"]["content_deltas"], 40);
    assert_eq!(report.client["stream_health"]["end_marker"], true);
    assert!(matches!(report.envoy_side, EnvoySide::Found { .. }));
    assert_eq!(report.diagnosis, "smooth at Envoy and at the client");
    let json = report.to_json();
    assert_eq!(json["client"]["stream_health"]["verdict"], "smooth");
    assert_eq!(json["envoy"]["stream_health"]["verdict"], "smooth");
    assert_eq!(json["envoy_lookup"], "found");
    assert_eq!(json["diagnosis"], "smooth at Envoy and at the client");
}

#[test]
fn buffered_at_the_client_only_points_between_envoy_and_the_client() {
    let upstream = ScriptedUpstream::start().unwrap();
    // Everything in one write after a silence: what a buffering proxy delivers.
    let events = chat_events(40);
    upstream.script(
        "buffered",
        Script::sse(events.concat())
            .chunking(Chunking::Sizes(vec![
                events[0].len(),
                events.concat().len(),
            ]))
            .gap(Duration::from_millis(1500)),
    );
    let collector = Collector::start().unwrap();
    let id = "streamtap-probe-e2e-buffered";
    post_summary(&collector, &envoy_summary(id, "smooth"));
    let collector_url = format!("http://{}", collector.addr);
    let header = format!("x-request-id: {id}");
    let args = probe_args(
        &upstream,
        "buffered",
        &["--collector", &collector_url, "--header", &header],
    );
    let report = probe::run(&args, SHORT_WAIT).unwrap();
    assert_eq!(
        report.client["stream_health"]["verdict"], "buffered",
        "{}",
        report.client
    );
    assert!(
        report.diagnosis.starts_with(
            "smooth at Envoy, buffered at the client: something between Envoy and you buffers"
        ),
        "{}",
        report.diagnosis
    );
}

#[test]
fn a_call_the_collector_does_not_have_says_why() {
    let upstream = ScriptedUpstream::start().unwrap();
    upstream.script("paced", paced(20, Duration::from_millis(20)));
    let collector = Collector::start().unwrap();
    let collector_url = format!("http://{}", collector.addr);
    let report = probe::run(
        &probe_args(&upstream, "paced", &["--collector", &collector_url]),
        SHORT_WAIT,
    )
    .unwrap();
    assert_eq!(report.envoy_side, EnvoySide::NotFound);
    assert!(
        report.diagnosis.contains("sample_rate"),
        "{}",
        report.diagnosis
    );
    assert!(
        report.diagnosis.contains("preserve_external_request_id"),
        "{}",
        report.diagnosis
    );
    assert_eq!(report.to_json()["envoy"], Value::Null);
}

#[test]
fn a_gzipped_stream_is_read_after_inflating() {
    let upstream = ScriptedUpstream::start().unwrap();
    let body = testbed::replay::gzip(&chat_events(40).concat());
    upstream.script(
        "gzip",
        Script::sse(body.clone())
            .header("content-encoding", "gzip")
            .chunking(Chunking::Fixed(body.len() / 8 + 1))
            .gap(Duration::from_millis(20)),
    );
    let report = probe::run(&probe_args(&upstream, "gzip", &[]), SHORT_WAIT).unwrap();
    assert_eq!(report.client["outcome"], "completed", "{}", report.client);
    assert_eq!(report.client["model"], "gpt-4o-mini");
    assert_eq!(report.client["finish_reasons"], json!(["stop"]));
    assert_eq!(report.client["stream_health"]["content_deltas"], 40);
}

#[test]
fn a_short_answer_is_too_short_to_judge() {
    let upstream = ScriptedUpstream::start().unwrap();
    upstream.script("short", paced(2, Duration::from_millis(5)));
    let report = probe::run(&probe_args(&upstream, "short", &[]), SHORT_WAIT).unwrap();
    assert_eq!(report.client["stream_health"]["verdict"], "too_short");
    assert_eq!(
        report.diagnosis,
        "answer too short to judge: ask for a longer answer with --prompt"
    );
}

#[test]
fn a_stream_without_its_end_says_so_first() {
    let upstream = ScriptedUpstream::start().unwrap();
    let mut events = chat_events(20);
    events.pop();
    let sizes = events.iter().map(Vec::len).collect();
    upstream.script(
        "no-end",
        Script::sse(events.concat())
            .chunking(Chunking::Sizes(sizes))
            .gap(Duration::from_millis(20)),
    );
    let report = probe::run(&probe_args(&upstream, "no-end", &[]), SHORT_WAIT).unwrap();
    assert_eq!(report.end, ClientEnd::NoEndMarker);
    assert_eq!(report.client["outcome"], "truncated");
    assert_eq!(report.client["stream_health"]["end_marker"], false);
    assert_eq!(
        report.diagnosis,
        "the stream ended without saying it was done (no [DONE], no finish reason); smooth at the client"
    );
    assert_eq!(report.to_json()["client"]["end"], "no_end_marker");
}

#[test]
fn errors_are_one_clear_line_without_the_header_values() {
    let upstream = ScriptedUpstream::start().unwrap();
    // An error body that echoes the credential.
    upstream.script(
        "denied",
        Script::json(
            401,
            format!(
                "{{\"error\":{{\"message\":\"Incorrect API key provided: Bearer {SECRET}\"}}}}"
            ),
        ),
    );
    upstream.script("json", Script::json(200, "{\"choices\":[]}"));
    let err = probe::run(&probe_args(&upstream, "denied", &[]), SHORT_WAIT).unwrap_err();
    assert!(
        err.contains(
            "status 401: {\"error\":{\"message\":\"Incorrect API key provided: [redacted]"
        ),
        "{err}"
    );
    assert_no_secret(&err);
    let err = probe::run(&probe_args(&upstream, "json", &[]), SHORT_WAIT).unwrap_err();
    assert!(
        err.contains("the response is application/json, not text/event-stream"),
        "{err}"
    );

    // Nothing listens on the port.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut args = probe_args(&upstream, "json", &[]);
    args.url.port = port;
    let err = probe::run(&args, SHORT_WAIT).unwrap_err();
    assert!(err.contains("connection refused"), "{err}");

    // A collector that does not answer.
    upstream.script("paced", paced(3, Duration::ZERO));
    let collector = format!("http://127.0.0.1:{port}");
    let err = probe::run(
        &probe_args(&upstream, "paced", &["--collector", &collector]),
        SHORT_WAIT,
    )
    .unwrap_err();
    assert!(
        err.starts_with(&format!(
            "collector http://127.0.0.1:{port}/: cannot ask it"
        )),
        "{err}"
    );

    // An unknown host.
    let mut args = probe_args(&upstream, "json", &[]);
    args.url.host = "no-such-host.invalid".to_string();
    let err = probe::run(&args, SHORT_WAIT).unwrap_err();
    assert!(
        err.starts_with("URL: cannot resolve no-such-host.invalid"),
        "{err}"
    );
}

#[test]
fn the_timeout_ends_a_stream_that_does_not_end() {
    let upstream = ScriptedUpstream::start().unwrap();
    upstream.script("slow", paced(40, Duration::from_millis(100)));
    let args = probe_args(&upstream, "slow", &["--timeout-s", "0.5"]);
    let err = probe::run(&args, SHORT_WAIT).unwrap_err();
    assert!(err.contains("timed out"), "{err}");
    assert!(
        err.contains("0.5s timeout") || err.contains("500ms timeout"),
        "{err}"
    );
}

#[test]
fn the_binary_exits_non_zero_with_one_line() {
    let exe = env!("CARGO_BIN_EXE_streamtap-probe");
    let out = Process::new(exe).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert_eq!(stderr, "streamtap-probe: no URL given (--help for usage)\n");

    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let out = Process::new(exe)
        .args([
            &format!("http://127.0.0.1:{port}/v1/chat/completions"),
            "--header",
            &format!("Authorization: Bearer {SECRET}"),
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.contains("connection refused"), "{stderr}");
    assert_no_secret(&stderr);

    let out = Process::new(exe).arg("--help").output().unwrap();
    assert!(out.status.success());
    assert!(String::from_utf8(out.stdout)
        .unwrap()
        .starts_with("usage: streamtap-probe URL"));
}
