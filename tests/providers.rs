//! Every wire-format fixture (OpenAI Chat Completions, Responses API, Anthropic
//! Messages; streamed and JSON; plain and gzip) replayed through a real Envoy
//! with streamtap: the client gets the upstream's bytes unchanged, and the
//! collector's summary says what the fixture's reviewed expected summary says.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod support;

use serde_json::Value;
use std::time::Duration;
use testbed::client;
use testbed::collector::Collector;
use testbed::envoy::{Envoy, EnvoyOptions};
use testbed::replay::ReplayUpstream;

/// Summary fields that depend on the fixture alone (not on timing, ids or the wire).
const STABLE_FIELDS: &[&str] = &[
    "provider",
    "api",
    "stream",
    "outcome",
    "status",
    "model",
    "response_model",
    "response_id",
    "finish_reasons",
    "input_tokens",
    "output_tokens",
    "usage_source",
    "cache_read_input_tokens",
    "reasoning_output_tokens",
    "content",
    "content_truncated",
    "reasoning",
    "tool_calls",
    "error",
    "events",
    "parse_errors",
    "request_messages",
    "request_max_tokens",
    "request_tools",
];

#[test]
fn every_provider_fixture_through_envoy_plain_and_gzip() {
    let upstream = ReplayUpstream::start().unwrap();
    let collector = Collector::start().unwrap();
    let opts =
        EnvoyOptions::new(upstream.addr, collector.addr).with_plugin_config(support::FAST_EXPORT);
    let envoy = Envoy::start(&opts).unwrap_or_else(|e| panic!("{e}"));

    let mut checked = 0;
    for fixture_file in streamtap::replay::fixtures().unwrap() {
        let exchange = &fixture_file.exchange;
        let request_body = exchange
            .request_body
            .clone()
            .unwrap_or_else(|| b"{}".to_vec());
        let rel = fixture_file
            .file
            .strip_prefix(streamtap::replay::fixtures_dir())
            .unwrap();
        let fixture = rel.to_string_lossy().to_string();
        {
            let expected_file = format!("{}.expected.json", fixture_file.file.display());
            let expected: Value =
                serde_json::from_slice(&std::fs::read(expected_file).unwrap()).unwrap();
            for (variant, chunk, gzip) in [("plain", "37", "0"), ("gzip", "23", "1")] {
                let test_id = format!("{fixture}-{variant}");
                let got = client::post(
                    envoy.listener,
                    &exchange.path,
                    &[
                        ("x-fixture", &fixture),
                        ("x-fixture-chunk", chunk),
                        ("x-fixture-gzip", gzip),
                        ("x-test-id", &test_id),
                    ],
                    &request_body,
                )
                .unwrap_or_else(|e| panic!("{test_id}: {e}\n{}", envoy.log()));
                let sent = upstream
                    .wait_sent(&test_id, Duration::from_secs(5))
                    .unwrap();
                assert_eq!(got.status, sent.status, "{test_id}");
                assert!(
                    got.body == sent.body,
                    "{test_id}: the client's bytes differ from the upstream's"
                );

                let request_id = sent
                    .request_headers
                    .iter()
                    .find(|(k, _)| k == "x-request-id")
                    .unwrap()
                    .1
                    .clone();
                let summary = support::summary_with_id(&collector, &envoy, &request_id);
                for field in STABLE_FIELDS {
                    assert_eq!(
                        summary[*field], expected[*field],
                        "{test_id}: field {field}\nsummary: {summary:#}"
                    );
                }
                // The query (Gemini's `?key=`) is never recorded.
                let route = exchange.path.split('?').next().unwrap();
                assert_eq!(summary["path"], route);
                assert!(
                    !summary.to_string().contains("AIzaSy"),
                    "{test_id}: a key in the summary"
                );
                checked += 1;
            }
        }
    }
    assert!(checked >= 40, "only {checked} fixture runs");
    assert_eq!(envoy.stat("wasmcustom.streamtap.parse_errors"), 0);
}
