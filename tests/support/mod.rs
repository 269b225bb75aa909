//! What the integration tests share: the two stacks (mock or scripted upstream,
//! collector, real Envoy with `dist/streamtap.wasm`), chains with nginx or a
//! buffering Envoy around them, timed streams, chat bodies, and waiting.

#![allow(dead_code, unused_imports)] // each test binary uses its own part of this module

mod chat;
mod downstream;
mod mock_stack;
pub mod prometheus;
mod scripted_stack;
pub mod timeline;

pub use chat::{
    chat_end_events, chat_event, chat_reasoning_event, chat_request, chat_role_event, chat_stream,
};
pub use downstream::{buffering_envoy, DownstreamStack, Run};
pub use mock_stack::{header, Call, Stack};
pub use scripted_stack::FaultStack;
pub use testbed::wait::eventually;

use serde_json::Value;
use std::net::{SocketAddr, TcpListener};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use testbed::collector::Collector;
use testbed::envoy::Envoy;

/// Plugin config of most tests: export every 50 ms.
pub const FAST_EXPORT: &str =
    r#"{"collector":{"cluster":"streamtap_collector","flush_interval_ms":50,"timeout_ms":1000}}"#;

/// How long a summary may take to reach the collector.
const SUMMARY_TIMEOUT: Duration = Duration::from_secs(10);

/// An id unique in this test run: `prefix-<pid>-<n>`.
pub fn next_id(prefix: &str) -> String {
    static COUNTER: AtomicUsize = AtomicUsize::new(0);
    format!(
        "{prefix}-{}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

/// The collector's summary whose `id` is `request_id` (the request id Envoy
/// forwarded upstream); panics with Envoy's log when none arrives.
pub fn summary_with_id(collector: &Collector, envoy: &Envoy, request_id: &str) -> Value {
    eventually(SUMMARY_TIMEOUT, || {
        collector
            .calls()
            .into_iter()
            .find(|s| s["id"] == request_id)
    })
    .unwrap_or_else(|| {
        panic!(
            "collector has no summary for {request_id}; it has {:?}\nenvoy log:\n{}",
            collector.calls(),
            tail(&envoy.log(), 4000)
        )
    })
}

/// The last `n` bytes of `s` (at a char boundary).
pub fn tail(s: &str, n: usize) -> &str {
    let mut start = s.len().saturating_sub(n);
    while !s.is_char_boundary(start) {
        start += 1;
    }
    &s[start..]
}

/// An address on which nothing listens: a dead collector.
pub fn dead_address() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    drop(listener);
    addr
}

/// The summaries the filter's stop lines leave unaccounted for: what each
/// `on_done` said it held ("stopping with N") less what its last line says
/// was sent ("stopped: M of the N"). A root that never wrote its last line
/// (Envoy exited first) lost all it held.
pub fn lost_in_log(log: &str) -> usize {
    let first_number = |marker: &str| -> usize {
        log.lines()
            .filter_map(|l| l.split(marker).nth(1))
            .filter_map(|rest| rest.split(' ').next()?.parse::<usize>().ok())
            .sum()
    };
    first_number("stopping with ").saturating_sub(first_number("stopped: "))
}

/// A 20-token chat stream (50 ms apart) through `envoy` under `test_id`, on
/// its own thread: what the push and restart tests hold in flight.
pub fn stream_in_background(
    envoy: &Envoy,
    test_id: String,
) -> std::thread::JoinHandle<(String, testbed::client::StreamResult)> {
    let addr = envoy.listener;
    std::thread::spawn(move || {
        let body =
            br#"{"model":"gpt-4o-mini","stream":true,"messages":[{"role":"user","content":"hi"}]}"#;
        let headers = [
            ("x-test-id", test_id.as_str()),
            ("x-mock-tokens", "20"),
            ("x-mock-interval-ms", "50"),
        ];
        let got = testbed::client::post(addr, "/v1/chat/completions", &headers, body)
            .expect("a stream through Envoy");
        (test_id, got)
    })
}
