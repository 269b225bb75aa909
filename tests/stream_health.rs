//! Streaming health (issue 10) against a real Envoy: each arrival pattern the
//! scripted upstream writes gets the verdict the README's rules give, seen
//! from the summary the filter exported; a stall shows in `/stats` while it
//! lasts; an event stream without its end marker is `truncated`.
//!
//! Each verdict has its opposite in the same file (smooth against buffered,
//! stalled against the same stream without the silence), so a check that
//! always said one thing would fail.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod support;

use serde_json::Value;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};
use support::timeline::{patterns, Timeline};
use support::{eventually, next_id, DownstreamStack, FaultStack, Run};
use testbed::scripted::{Chunking, End, Script};

fn judged(chain: &DownstreamStack, t: &Timeline) -> (Run, Value) {
    let run = chain.call(t, &[]);
    assert_eq!(run.got.body, t.body(), "bytes changed\n{}", run.describe());
    let s = chain.summary_for(&run);
    (run, s)
}

fn health(s: &Value) -> &Value {
    let h = &s["stream_health"];
    assert!(h.is_object(), "no stream_health: {s}");
    h
}

#[test]
fn smooth_fast_and_buffered_streams_get_their_verdicts() {
    let chain = DownstreamStack::direct();

    let (run, s) = judged(&chain, &patterns::smooth());
    let h = health(&s);
    assert_eq!(h["verdict"], "smooth", "{h}\n{}", run.describe());
    assert_eq!(h["content_deltas"], 40);
    assert!(h["largest_burst"].as_u64().unwrap() <= 3, "{h}");
    assert_eq!(h["end_marker"], true);
    assert_eq!(s["outcome"], "completed");
    let rate = s["output_tokens_per_s"].as_f64().unwrap();
    assert!(
        (20.0..=30.0).contains(&rate),
        "40 ms apart is ~25/s: {rate}"
    );

    // 300 deltas 3 ms apart: coalesced at the stream's own pace, still smooth.
    let (run, s) = judged(&chain, &patterns::fast());
    let h = health(&s);
    assert_eq!(h["verdict"], "smooth", "{h}\n{}", run.describe());
    assert_eq!(h["content_deltas"], 300);

    // The first delta, 1.5 s of silence, then 40 at once.
    let (run, s) = judged(&chain, &patterns::first_then_wall());
    let h = health(&s);
    assert!(
        h["verdict"] == "buffered" || h["verdict"] == "bursty",
        "{h}\n{}",
        run.describe()
    );
    assert!(h["largest_burst"].as_u64().unwrap() >= 40, "{h}");
    assert!(h["burst_share"].as_f64().unwrap() > 0.9, "{h}");

    // A fully buffering upstream: everything in one write after 2 s.
    let (run, s) = judged(&chain, &patterns::one_wall());
    let h = health(&s);
    assert_eq!(h["verdict"], "buffered", "{h}\n{}", run.describe());
    assert_eq!(h["largest_burst"], 40);
    assert_eq!(s["output_tokens_per_s"], Value::Null, "no span to measure");

    // Too few deltas to judge, though they came in one chunk.
    let (_, s) = judged(&chain, &patterns::too_short());
    assert_eq!(health(&s)["verdict"], "too_short", "{s}");
    let stat = |v: &str| {
        chain
            .stack
            .envoy
            .stat(&format!("wasmcustom.streamtap.verdict.{v}"))
    };
    assert_eq!(stat("buffered") + stat("bursty"), 2);
    assert_eq!(stat("smooth"), 2);
    assert_eq!(stat("too_short"), 1);

    // The collector serves them by verdict, and judges the last 5 minutes.
    let collector = chain.stack.collector.addr;
    let get = |path: &str| -> Value {
        let (status, body) = testbed::client::get(collector, path).unwrap();
        assert_eq!(status, 200, "{path}: {body}");
        serde_json::from_str(&body).unwrap()
    };
    let buffered = get("/calls?verdict=buffered");
    let calls = buffered["calls"].as_array().unwrap();
    assert!(!calls.is_empty() && calls.len() <= 2, "{buffered}");
    assert!(calls
        .iter()
        .all(|c| c["stream_health"]["verdict"] == "buffered"));
    assert_eq!(
        get("/calls?verdict=smooth")["calls"]
            .as_array()
            .unwrap()
            .len(),
        2
    );
    let health = get("/health/streaming");
    assert_eq!(health["status"], "degraded", "{health}");
    assert!(
        health["reasons"].to_string().contains("not smooth"),
        "{health}"
    );
}

#[test]
fn a_silence_then_the_normal_pace_is_a_stall_and_a_slow_first_token_is_not() {
    let chain = DownstreamStack::direct();

    let (run, s) = judged(&chain, &patterns::stall_mid_stream());
    let h = health(&s);
    assert_eq!(h["verdict"], "stalled", "{h}\n{}", run.describe());
    let stall = h["longest_stall_ms"].as_f64().unwrap();
    assert!((2900.0..3300.0).contains(&stall), "{h}");
    assert_eq!(h["stall_phase"], "content");

    // 5 s before the first (reasoning) token: slow, not stalled.
    let (run, s) = judged(&chain, &patterns::slow_start_reasoning());
    let h = health(&s);
    assert_eq!(h["verdict"], "smooth", "{h}\n{}", run.describe());
    assert_eq!(h["stall_phase"], "first_token");
    assert!(h["longest_stall_ms"].as_f64().unwrap() >= 4900.0, "{h}");

    // Only pings for 3 s after the content started: pings are no progress.
    let (run, s) = judged(&chain, &patterns::anthropic_keepalives());
    let h = health(&s);
    assert_eq!(h["verdict"], "stalled", "{h}\n{}", run.describe());
    assert_eq!(h["keepalives"], 6);
    assert!(h["longest_stall_ms"].as_f64().unwrap() >= 2900.0, "{h}");
    assert_eq!(
        chain
            .stack
            .envoy
            .stat("wasmcustom.streamtap.verdict.stalled"),
        2
    );
}

#[test]
fn a_stream_that_closes_without_its_end_marker_is_truncated() {
    let stack = FaultStack::start(support::FAST_EXPORT);
    let t = patterns::smooth();
    let body = String::from_utf8(t.body()).unwrap();
    let without_done = body.strip_suffix("data: [DONE]\n\n").unwrap().to_string();
    for (body, outcome, end_marker) in [
        (without_done, "truncated", false),
        (body, "completed", true),
    ] {
        let (_, served, got) = stack.call(t.path, Script::sse(body.clone()), &[], &t.request);
        assert_eq!(got.body, body.as_bytes());
        let s = stack.summary_for(&served);
        assert_eq!(s["outcome"], outcome, "{s}");
        assert_eq!(s["stream_health"]["end_marker"], end_marker, "{s}");
    }
}

/// A stream holding still after its deltas: `/stats` shows it stalled while
/// it lasts (no collector configured: the tick runs anyway), Envoy's log says
/// so once, and both gauges return to 0 when the client goes away.
#[test]
fn a_stall_shows_in_stats_while_it_lasts() {
    let stack = FaultStack::start(r#"{"stream_health":{"stall_ms":500}}"#);
    let envoy = &stack.envoy;
    let deltas: String = (0..12)
        .map(|i| support::chat_event(&format!("t{i} ")))
        .collect();
    let id = next_id("stall");
    stack.upstream.script(
        &id,
        Script {
            chunking: Chunking::Fixed(deltas.len() / 12),
            gap: Duration::from_millis(20),
            end: End::Hold,
            ..Script::sse(deltas.clone())
        },
    );
    let request = support::chat_request(true);
    let mut socket = TcpStream::connect(envoy.listener).unwrap();
    write!(
        socket,
        "POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\nx-script: {id}\r\nx-request-id: {id}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
        request.len()
    )
    .unwrap();
    socket.write_all(&request).unwrap();
    socket
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    // Read until every delta arrived: the stream then holds.
    let mut got = Vec::new();
    let started = Instant::now();
    while !String::from_utf8_lossy(&got).contains("t11 ") {
        let mut buf = [0u8; 4096];
        let n = socket.read(&mut buf).unwrap();
        assert!(n > 0 && started.elapsed() < Duration::from_secs(5));
        got.extend_from_slice(&buf[..n]);
    }
    let gauge = |name: &str| envoy.stat(&format!("wasmcustom.streamtap.{name}"));
    assert_eq!(gauge("streams_active"), 1);
    assert_eq!(gauge("streams_stalled"), 0, "not stalled before stall_ms");
    let stalled = eventually(Duration::from_secs(3), || {
        (gauge("streams_stalled") == 1).then_some(())
    });
    assert!(stalled.is_some(), "no stall in /stats\n{}", envoy.log());
    assert!(
        envoy.wait_for_log(&format!("stream {id} stalled"), Duration::from_secs(2)),
        "{}",
        envoy.log()
    );
    // Logged once, however long it lasts.
    std::thread::sleep(Duration::from_millis(600));
    assert_eq!(
        envoy.log().matches(&format!("stream {id} stalled")).count(),
        1
    );

    drop(socket);
    let settled = eventually(Duration::from_secs(5), || {
        (gauge("streams_active") == 0 && gauge("streams_stalled") == 0).then_some(())
    });
    assert!(
        settled.is_some(),
        "gauges did not return to 0: active {}, stalled {}",
        gauge("streams_active"),
        gauge("streams_stalled")
    );
    let line = eventually(Duration::from_secs(5), || {
        envoy
            .access_log()
            .lines()
            .find(|l| l.contains(&id) || l.contains("\"outcome\":\"client_cancelled\""))
            .map(str::to_string)
    })
    .unwrap_or_else(|| panic!("no access-log line\n{}", envoy.access_log()));
    assert!(line.contains("\"verdict\":\"stalled\""), "{line}");
    assert_eq!(gauge("verdict.stalled"), 1);
}
