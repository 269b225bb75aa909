//! The filter's stats on Envoy's Prometheus endpoint, under names a dashboard
//! can use.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod support;

use std::time::Duration;
use support::prometheus::series;
use support::{eventually, Call, Stack};

#[test]
fn filter_stats_are_scraped_from_stats_prometheus() {
    let stack = Stack::streamtap();
    for _ in 0..3 {
        stack.chat(&Call::default());
    }
    stack.envoy.wait_for_stat(
        "wasmcustom.streamtap.summaries_exported",
        3,
        Duration::from_secs(5),
    );
    let scrape = || {
        let (status, text) = stack.envoy.admin_get("/stats/prometheus").unwrap();
        assert_eq!(status, 200);
        text
    };
    let value = |text: &str, series: &str| -> Option<f64> {
        text.lines().find_map(|l| {
            l.strip_prefix(series)
                .and_then(|rest| rest.trim().parse().ok())
        })
    };
    let text = scrape();
    // Envoy drops the `wasmcustom.` prefix: these are the names to chart.
    for (series, expected) in [
        ("streamtap_calls{}", 3.0),
        ("streamtap_summaries_exported{}", 3.0),
        ("streamtap_stream_events{}", 42.0),
        ("streamtap_parse_errors{}", 0.0),
        ("streamtap_export_failures{}", 0.0),
        ("streamtap_summaries_dropped{}", 0.0),
        ("streamtap_calls_not_completed{}", 0.0),
        ("streamtap_decode_capped{}", 0.0),
        ("streamtap_host_call_failures{}", 0.0),
    ] {
        assert_eq!(value(&text, series), Some(expected), "{series} in:\n{text}");
    }
    assert!(text.contains("# TYPE streamtap_calls counter"));
    assert!(text.contains("# TYPE streamtap_ttft_ms histogram"));
    // Histograms reach the admin endpoint at Envoy's stats flush (every 5 s).
    eventually(Duration::from_secs(12), || {
        (value(&scrape(), "streamtap_ttft_ms_count{}") == Some(3.0)).then_some(())
    })
    .unwrap_or_else(|| panic!("TTFT histogram never counted 3 calls:\n{}", scrape()));
}

#[test]
fn labelled_stats_read_back_every_model_id_exactly_and_overflow_to_other() {
    let config = r#"{"collector":{"cluster":"streamtap_collector","flush_interval_ms":50,"timeout_ms":1000},"max_label_values":4}"#;
    let stack = support::FaultStack::start(config);
    let models = [
        "gpt-4.1",
        "llama3.1:8b",
        "arn:aws:bedrock:us-east-1:123456789012:inference-profile/us.anthropic.claude-3-5-sonnet-20241022-v2:0",
        "claude-3-5-sonnet-v2@20241022",
        "one-too-many",
    ];
    let body = concat!(
        "data: {\"choices\":[{\"delta\":{\"content\":\"hi\"}}]}\n\n",
        "data: {\"choices\":[],\"usage\":{\"prompt_tokens\":7,\"completion_tokens\":3}}\n\n",
        "data: [DONE]\n\n"
    );
    for model in models {
        let request = format!(r#"{{"model":"{model}","stream":true,"messages":[]}}"#);
        let (_, served, _) = stack.call(
            "/v1/chat/completions",
            testbed::scripted::Script::sse(body),
            &[],
            request.as_bytes(),
        );
        stack.summary_for(&served);
    }
    let (status, text) = stack.envoy.admin_get("/stats/prometheus").unwrap();
    assert_eq!(status, 200);
    let calls = series(&text, "streamtap_gen_ai_calls");
    for model in &models[..4] {
        let found = calls
            .iter()
            .find(|(l, _)| l.get("gen_ai_request_model").map(String::as_str) == Some(model))
            .unwrap_or_else(|| panic!("no series for {model} in:\n{text}"));
        assert_eq!(found.1, 1.0);
        assert_eq!(found.0["gen_ai_provider_name"], "openai");
        assert_eq!(found.0["gen_ai_operation_name"], "chat");
        assert_eq!(found.0["outcome"], "completed");
        assert_eq!(found.0["stream_health_verdict"], "too_short");
    }
    assert_eq!(
        stack
            .envoy
            .stat("wasmcustom.streamtap.sample_rate_per_million"),
        1_000_000
    );
    let other = calls
        .iter()
        .find(|(l, _)| l.get("gen_ai_request_model").map(String::as_str) == Some("other"));
    assert_eq!(other.map(|o| o.1), Some(1.0), "{text}");
    assert!(!text.contains("one-too-many"));
    assert_eq!(stack.envoy.stat("wasmcustom.streamtap.label_overflow"), 1);
    let tokens = series(&text, "streamtap_gen_ai_tokens");
    let output: f64 = tokens
        .iter()
        .filter(|(l, _)| l.get("gen_ai_token_type").map(String::as_str) == Some("output"))
        .map(|(_, v)| v)
        .sum();
    assert_eq!(output, 15.0, "{text}");
    assert!(tokens
        .iter()
        .all(|(l, _)| l.get("usage_source").map(String::as_str) == Some("reported")));
}

#[test]
fn genai_histograms_use_the_shipped_buckets_by_model() {
    let stack = support::FaultStack::start(support::FAST_EXPORT);
    let first = "data: {\"choices\":[{\"delta\":{\"content\":\"hi\"}}]}\n\n";
    let rest = concat!(
        "data: {\"choices\":[{\"delta\":{\"content\":\" there\"}}]}\n\n",
        "data: {\"choices\":[],\"usage\":{\"prompt_tokens\":7,\"completion_tokens\":3}}\n\n",
        "data: [DONE]\n\n"
    );
    // The first token 300 ms after the response head, the rest 100 ms later.
    let script = testbed::scripted::Script::timed_sse(vec![
        (Duration::from_millis(300), first.as_bytes().to_vec()),
        (Duration::from_millis(100), rest.as_bytes().to_vec()),
    ]);
    let request = br#"{"model":"llama3.1:8b","stream":true,"messages":[]}"#;
    let (_, served, _) = stack.call("/v1/chat/completions", script, &[], request);
    let s = stack.summary_for(&served);
    let ttft = s["ttft_ms"].as_f64().unwrap();
    assert!((300.0..500.0).contains(&ttft), "{s}");
    let bucket = |text: &str, metric: &str, le: &str| -> Option<f64> {
        series(text, &format!("streamtap_{metric}_bucket"))
            .into_iter()
            .find(|(l, _)| {
                l.get("gen_ai_request_model").map(String::as_str) == Some("llama3.1:8b")
                    && l.get("le").map(String::as_str) == Some(le)
            })
            .map(|(_, v)| v)
    };
    // Histograms reach the admin endpoint at Envoy's stats flush (every 5 s).
    let text = eventually(Duration::from_secs(12), || {
        let (_, text) = stack.envoy.admin_get("/stats/prometheus").unwrap();
        // Counted once the flush has happened (before, the series show 0).
        let counted = bucket(&text, "gen_ai_client_operation_duration_ms", "+Inf");
        (counted == Some(1.0)).then_some(text)
    })
    .unwrap_or_else(|| panic!("no TTFT histogram by model"));
    // The shipped boundaries (750 is not one of Envoy's defaults): 300–500
    // ms lands above 250 and within 500.
    assert_eq!(
        bucket(&text, "gen_ai_server_time_to_first_token_ms", "750"),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        bucket(&text, "gen_ai_server_time_to_first_token_ms", "250"),
        Some(0.0),
        "{text}"
    );
    assert_eq!(
        bucket(&text, "gen_ai_server_time_to_first_token_ms", "500"),
        Some(1.0)
    );
    // 3 output tokens: (duration − TTFT) / 2 ≈ 50 ms per token, in µs.
    assert_eq!(
        bucket(&text, "gen_ai_server_time_per_output_token_us", "25000"),
        Some(0.0),
        "{text}"
    );
    assert_eq!(
        bucket(&text, "gen_ai_server_time_per_output_token_us", "75000"),
        Some(1.0)
    );
    assert_eq!(
        bucket(&text, "gen_ai_client_operation_duration_ms", "320"),
        Some(0.0)
    );
    assert_eq!(
        bucket(&text, "gen_ai_client_operation_duration_ms", "640"),
        Some(1.0)
    );
    let tokens = series(&text, "streamtap_gen_ai_client_token_usage_bucket");
    let output_in_4 = tokens.iter().find(|(l, _)| {
        l.get("gen_ai_token_type").map(String::as_str) == Some("output")
            && l.get("le").map(String::as_str) == Some("4")
    });
    assert_eq!(output_in_4.map(|t| t.1), Some(1.0), "{text}");
}
