//! Shared set-up of the real-Envoy tests: a mock LLM upstream, a collector and
//! Envoy with the built `dist/streamtap.wasm`, all on 127.0.0.1 with free ports.

#![allow(dead_code)] // each test binary uses its own part of this module

use serde_json::Value;
use std::net::{SocketAddr, TcpListener};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use testbed::client::{self, StreamResult};
use testbed::collector::Collector;
use testbed::envoy::{Envoy, EnvoyOptions, FilterVariant};
use testbed::upstream::{MockUpstream, SentStream};

pub struct Stack {
    pub upstream: MockUpstream,
    pub collector: Collector,
    pub envoy: Envoy,
}

/// Plugin config used by most tests: export every 50 ms.
pub const FAST_EXPORT: &str =
    r#"{"collector":{"cluster":"streamtap_collector","flush_interval_ms":50,"timeout_ms":1000}}"#;

impl Stack {
    pub fn start(filter: FilterVariant, plugin_config: &str) -> Stack {
        let upstream = MockUpstream::start().expect("mock upstream");
        let collector = Collector::start().expect("collector");
        let opts = EnvoyOptions::new(upstream.addr, collector.addr)
            .with_filter(filter)
            .with_plugin_config(plugin_config);
        let envoy = Envoy::start(&opts).unwrap_or_else(|e| panic!("envoy did not start:\n{e}"));
        Stack {
            upstream,
            collector,
            envoy,
        }
    }

    pub fn streamtap() -> Stack {
        Stack::start(FilterVariant::Streamtap, FAST_EXPORT)
    }

    /// Sends a chat completion through Envoy; returns what the upstream sent
    /// and what the client received.
    pub fn chat(&self, call: &Call) -> (SentStream, StreamResult) {
        let test_id = next_test_id();
        let got = self.chat_as(&test_id, call);
        let sent = self
            .upstream
            .wait_sent(&test_id, Duration::from_secs(10))
            .unwrap_or_else(|| panic!("upstream has no record of {test_id}\n{}", self.envoy.log()));
        (sent, got)
    }

    pub fn chat_as(&self, test_id: &str, call: &Call) -> StreamResult {
        let tokens = call.tokens.to_string();
        let interval = call.interval_ms.to_string();
        let mut headers = vec![
            ("content-type", "application/json"),
            ("x-test-id", test_id),
            ("x-mock-tokens", tokens.as_str()),
            ("x-mock-interval-ms", interval.as_str()),
            ("x-mock-chunking", call.chunking),
            ("x-mock-line-ending", call.line_ending),
        ];
        headers.extend(call.extra_headers.iter().copied());
        let body = call.body();
        client::post(
            self.envoy.listener,
            "/v1/chat/completions",
            &headers,
            body.as_bytes(),
        )
        .unwrap_or_else(|e| panic!("request through envoy failed: {e}\n{}", self.envoy.log()))
    }

    /// The collector's summary whose `id` is the request id Envoy forwarded upstream.
    pub fn summary_for(&self, sent: &SentStream) -> Value {
        let request_id = header(sent, "x-request-id").expect("envoy sets x-request-id");
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(s) = self
                .collector
                .calls()
                .into_iter()
                .find(|s| s["id"] == request_id.as_str())
            {
                return s;
            }
            if std::time::Instant::now() > deadline {
                panic!(
                    "collector has no summary for {request_id}; it has {:?}\nenvoy log:\n{}",
                    self.collector.calls(),
                    self.envoy.log()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

pub fn header(sent: &SentStream, name: &str) -> Option<String> {
    sent.request_headers
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.clone())
}

#[derive(Clone)]
pub struct Call {
    pub model: &'static str,
    pub stream: bool,
    pub include_usage: bool,
    pub tokens: usize,
    pub interval_ms: u64,
    pub chunking: &'static str,
    pub line_ending: &'static str,
    pub extra_headers: Vec<(&'static str, &'static str)>,
}

impl Default for Call {
    fn default() -> Self {
        Call {
            model: "gpt-4o-mini",
            stream: true,
            include_usage: true,
            tokens: 10,
            interval_ms: 5,
            chunking: "event",
            line_ending: "lf",
            extra_headers: Vec::new(),
        }
    }
}

impl Call {
    pub fn body(&self) -> String {
        let mut body = serde_json::json!({
            "model": self.model,
            "stream": self.stream,
            "messages": [{"role": "user", "content": "Count slowly to ten, please"}],
        });
        if self.include_usage {
            body["stream_options"] = serde_json::json!({"include_usage": true});
        }
        body.to_string()
    }
}

fn next_test_id() -> String {
    static COUNTER: AtomicUsize = AtomicUsize::new(0);
    format!(
        "t{}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

/// An address on which nothing listens: a dead collector.
pub fn dead_address() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    drop(listener);
    addr
}
