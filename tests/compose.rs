//! The docker compose stack (docker-compose.yml): one chat completion streamed
//! through Envoy's published listener arrives live, and the collector on the
//! compose network gets its summary.
//!
//! Driven by `make compose-test`, which builds the images, runs
//! `docker-compose up -d`, sets `STREAMTAP_COMPOSE_TEST=1`, runs this test and
//! always tears the stack down. Without that variable the test returns at once.
//!
//! The mock upstream runs in its own container, so its send times are not
//! visible here: liveness is judged from the client's arrival times alone.
//! The tokens are written 100 ms apart; each must arrive within 50 ms of
//! 100 ms after the previous one. A filter or proxy that held the stream back
//! delivers them together (gaps near 0 and one long wait) and fails.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use serde_json::Value;
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use testbed::client::{self, StreamResult};
use testbed::wait::eventually;

/// Published by docker-compose.yml on 127.0.0.1.
const LISTENER: &str = "127.0.0.1:10000";
const ADMIN: &str = "127.0.0.1:9901";
const COLLECTOR: &str = "127.0.0.1:18082";
/// The compose Prometheus, scraping Envoy every 5 s.
const PROMETHEUS: &str = "127.0.0.1:19090";

const TOKENS: usize = 10;
const INTERVAL_MS: u64 = 100;
/// How far a token's gap to the previous one may be from `INTERVAL_MS`.
const SLACK_MS: u64 = 50;
const READY_TIMEOUT: Duration = Duration::from_secs(60);

const REQUEST: &str = r#"{"model":"gpt-4o-mini","stream":true,"messages":[{"role":"user","content":"compose test"}]}"#;

fn addr(text: &str) -> SocketAddr {
    text.parse().unwrap()
}

fn enabled() -> bool {
    if std::env::var("STREAMTAP_COMPOSE_TEST").as_deref() == Ok("1") {
        return true;
    }
    println!(
        "compose test skipped: STREAMTAP_COMPOSE_TEST=1 is not set \
         (`make compose-test` builds the images, starts docker-compose.yml and sets it)"
    );
    false
}

/// Polls `GET path` until it answers 200, or panics after `timeout`.
fn wait_for_200(at: SocketAddr, path: &str, timeout: Duration) {
    let mut last = String::new();
    eventually(timeout, || {
        last = match client::get(at, path) {
            Ok((200, _)) => return Some(()),
            Ok((status, body)) => format!("status {status}: {}", body.trim()),
            Err(err) => err.to_string(),
        };
        None
    })
    .unwrap_or_else(|| {
        panic!("GET http://{at}{path} did not answer 200 within {timeout:?}; last: {last}")
    });
}

/// Where each SSE event ends in `body` (offset just past its blank line), with
/// its `data:` payload.
fn events(body: &[u8]) -> Vec<(usize, String)> {
    let text = std::str::from_utf8(body).expect("stream is UTF-8");
    let mut out = Vec::new();
    let mut offset = 0;
    for block in text.split_inclusive("\n\n") {
        offset += block.len();
        let data: Vec<&str> = block
            .lines()
            .filter_map(|l| l.strip_prefix("data:"))
            .map(str::trim_start)
            .collect();
        if !data.is_empty() {
            out.push((offset, data.join("\n")));
        }
    }
    out
}

/// The `content` of a chat completion chunk's first choice, if any.
fn delta_content(data: &str) -> Option<String> {
    let chunk: Value = serde_json::from_str(data)
        .unwrap_or_else(|e| panic!("event data is not JSON ({e}): {data:?}"));
    chunk["choices"][0]["delta"]["content"]
        .as_str()
        .filter(|c| !c.is_empty())
        .map(str::to_string)
}

/// Checks the stream's bytes; returns the end offset of each token's event.
fn check_bytes(got: &StreamResult) -> Vec<usize> {
    assert_eq!(
        got.status,
        200,
        "body: {}",
        String::from_utf8_lossy(&got.body)
    );
    assert!(
        got.header("content-type")
            .is_some_and(|v| v.starts_with("text/event-stream")),
        "content-type {:?}",
        got.header("content-type")
    );
    assert!(
        got.body.ends_with(b"data: [DONE]\n\n"),
        "stream does not end with [DONE]: {}",
        String::from_utf8_lossy(&got.body)
    );
    let events = events(&got.body);
    assert_eq!(
        events.last().map(|(end, _)| *end),
        Some(got.body.len()),
        "bytes after the last event"
    );
    let mut token_ends = Vec::new();
    for (end, data) in &events {
        if data == "[DONE]" {
            continue;
        }
        if let Some(content) = delta_content(data) {
            assert_eq!(
                content,
                format!("tok{} ", token_ends.len()),
                "token {} out of order",
                token_ends.len()
            );
            token_ends.push(*end);
        }
    }
    assert_eq!(token_ends.len(), TOKENS, "tokens in the stream");
    token_ends
}

/// When each token arrived, from the socket reads' timestamps.
fn arrivals(got: &StreamResult, token_ends: &[usize]) -> Vec<Instant> {
    token_ends
        .iter()
        .map(|&end| got.arrival_of_offset(end).expect("token arrived"))
        .collect()
}

/// Every token must arrive `interval` ± `slack` after the previous one.
fn check_live(arrivals: &[Instant], interval: Duration, slack: Duration) -> Result<(), String> {
    let gaps_ms: Vec<u128> = arrivals
        .windows(2)
        .map(|w| w[1].saturating_duration_since(w[0]).as_millis())
        .collect();
    let low = interval.saturating_sub(slack);
    let high = interval + slack;
    for (i, pair) in arrivals.windows(2).enumerate() {
        let gap = pair[1].saturating_duration_since(pair[0]);
        if gap < low || gap > high {
            return Err(format!(
                "token {} arrived {} ms after token {}, outside {}..={} ms: \
                 not streamed live; gaps ms: {gaps_ms:?}",
                i + 1,
                gap.as_millis(),
                i,
                low.as_millis(),
                high.as_millis()
            ));
        }
    }
    Ok(())
}

#[test]
fn compose_stack_streams_live_and_the_collector_gets_the_summary() {
    if !enabled() {
        return;
    }
    wait_for_200(addr(ADMIN), "/ready", READY_TIMEOUT);
    wait_for_200(addr(COLLECTOR), "/calls", READY_TIMEOUT);

    let tokens = TOKENS.to_string();
    let interval = INTERVAL_MS.to_string();
    let t0 = Instant::now();
    println!("streaming {TOKENS} tokens {INTERVAL_MS} ms apart through http://{LISTENER}:");
    let got = client::post_with(
        addr(LISTENER),
        "/v1/chat/completions",
        &[
            ("x-mock-tokens", tokens.as_str()),
            ("x-mock-interval-ms", interval.as_str()),
        ],
        REQUEST.as_bytes(),
        &mut |at, bytes| {
            if let Some(token) = std::str::from_utf8(bytes)
                .ok()
                .and_then(|t| t.split("\"content\":\"").nth(1))
                .and_then(|t| t.split('"').next())
                .filter(|t| !t.is_empty())
            {
                println!("  {:>5} ms  {token}", at.duration_since(t0).as_millis());
            }
        },
    )
    .expect("stream through the compose Envoy");

    let token_ends = check_bytes(&got);
    let arrivals = arrivals(&got, &token_ends);
    let from_start: Vec<u128> = arrivals
        .iter()
        .map(|a| a.duration_since(got.started).as_millis())
        .collect();
    println!("token arrivals, ms after the request: {from_start:?}");
    if let Err(message) = check_live(
        &arrivals,
        Duration::from_millis(INTERVAL_MS),
        Duration::from_millis(SLACK_MS),
    ) {
        panic!("{message}");
    }

    // The filter exports every 100 ms; the collector is reached by its
    // compose service name from inside Envoy's container.
    let expected_content: String = (0..TOKENS).map(|i| format!("tok{i} ")).collect();
    let mut body = String::new();
    let summary = eventually(Duration::from_secs(10), || {
        let (status, answer) = client::get(addr(COLLECTOR), "/calls").expect("GET /calls");
        body = answer;
        assert_eq!(status, 200, "{body}");
        let calls: Value = serde_json::from_str(&body).expect("collector answers JSON");
        calls["calls"]
            .as_array()
            .expect("calls array")
            .iter()
            .find(|c| c["content"] == expected_content.as_str())
            .cloned()
    })
    .unwrap_or_else(|| panic!("the collector has no summary of the call after 10 s: {body}"));
    println!("collector summary: {summary}");
    assert_eq!(summary["path"], "/v1/chat/completions");
    assert_eq!(summary["provider"], "openai");
    assert_eq!(summary["model"], "gpt-4o-mini");
    assert_eq!(summary["stream"], true);
    assert_eq!(summary["outcome"], "completed");
    assert_eq!(summary["status"], 200);
    assert_eq!(summary["bytes"], got.body.len());
    assert_eq!(summary["parse_errors"], 0);
    let max_gap = summary["max_gap_ms"].as_f64().expect("max_gap_ms");
    assert!(
        (50.0..=150.0).contains(&max_gap),
        "max_gap_ms {max_gap} for tokens {INTERVAL_MS} ms apart"
    );

    // The compose Prometheus has the call's labelled stats from Envoy.
    let prometheus = testbed::prometheus::Api {
        addr: addr(PROMETHEUS),
    };
    let output = prometheus
        .query_until(
            r#"sum by (gen_ai_request_model) (streamtap_gen_ai_tokens{gen_ai_token_type="output"})"#,
            Duration::from_secs(30),
            |s| !s.is_empty(),
        )
        .unwrap_or_else(|e| panic!("the compose Prometheus has no token counts: {e}"));
    println!("Prometheus: output tokens by model {output:?}");
    assert_eq!(output[0].0["gen_ai_request_model"], "gpt-4o-mini");
    assert_eq!(Some(output[0].1), summary["output_tokens"].as_f64());
}

/// The liveness check itself: tokens spaced as sent pass; the same tokens
/// held back and delivered together (a buffering hop) fail, and so does a
/// stall in the middle. Runs without docker.
#[test]
fn liveness_check_rejects_a_buffered_or_stalled_stream() {
    let start = Instant::now();
    let at = |ms: u64| start + Duration::from_millis(ms);
    let interval = Duration::from_millis(INTERVAL_MS);
    let slack = Duration::from_millis(SLACK_MS);

    let live: Vec<Instant> = (0..10).map(|i| at(100 + i * 100 + i % 3 * 10)).collect();
    check_live(&live, interval, slack).unwrap();

    let buffered: Vec<Instant> = (0..10).map(|i| at(1000 + i)).collect();
    let err = check_live(&buffered, interval, slack).unwrap_err();
    assert!(err.contains("not streamed live"), "{err}");

    let mut stalled = live.clone();
    for a in stalled.iter_mut().skip(5) {
        *a += Duration::from_millis(300);
    }
    assert!(check_live(&stalled, interval, slack).is_err());

    // Batches of two: every other gap near 0.
    let pairs: Vec<Instant> = (0..10).map(|i| at(100 + (i / 2) * 200)).collect();
    assert!(check_live(&pairs, interval, slack).is_err());
}
