//! The mock-upstream stack: the mock LLM upstream (testbed::upstream), a
//! collector and Envoy with the built `dist/streamtap.wasm`, all on 127.0.0.1
//! with free ports; and [`Call`], the chat request it streams.

use serde_json::Value;
use std::time::Duration;
use testbed::client::{self, StreamResult};
use testbed::collector::Collector;
use testbed::envoy::{Envoy, EnvoyOptions, FilterVariant};
use testbed::upstream::{MockUpstream, SentStream};

use super::{next_id, summary_with_id, FAST_EXPORT};

pub struct Stack {
    pub upstream: MockUpstream,
    pub collector: Collector,
    pub envoy: Envoy,
}

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
        let test_id = next_id("t");
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
        summary_with_id(&self.collector, &self.envoy, &request_id)
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
