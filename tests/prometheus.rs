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

// ---------------------------------------------------------------------------------------------
// A real Prometheus scraping Envoy, asked what a platform team asks it.

const DASHBOARD: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/grafana/streamtap.json");

/// The two models of the Prometheus test, their time to first token and
/// their price (USD per million input, output tokens).
const MODELS: [(&str, u64, f64, f64); 2] =
    [("llama3.1:8b", 300, 0.2, 0.6), ("gpt-4.1", 30, 2.0, 8.0)];

/// A streamed chat call of `model`: the first token after `ttft_ms`, two
/// more 120 ms later, then usage (7 in, 3 out) and `[DONE]`.
fn timed_call(
    stack: &support::FaultStack,
    model: &str,
    ttft_ms: u64,
    team: &str,
) -> serde_json::Value {
    let first = "data: {\"choices\":[{\"delta\":{\"content\":\"hi\"}}]}\n\n";
    let rest = concat!(
        "data: {\"choices\":[{\"delta\":{\"content\":\" there\"}}]}\n\n",
        "data: {\"choices\":[{\"delta\":{\"content\":\"!\"}}]}\n\n",
        "data: {\"choices\":[],\"usage\":{\"prompt_tokens\":7,\"completion_tokens\":3}}\n\n",
        "data: [DONE]\n\n"
    );
    let script = testbed::scripted::Script::timed_sse(vec![
        (Duration::from_millis(ttft_ms), first.as_bytes().to_vec()),
        (Duration::from_millis(120), rest.as_bytes().to_vec()),
    ]);
    let request = format!(r#"{{"model":"{model}","stream":true,"messages":[]}}"#);
    let headers = [
        ("x-team", team),
        ("authorization", "Bearer sk-never-a-label"),
    ];
    let (_, served, _) = stack.call("/v1/chat/completions", script, &headers, request.as_bytes());
    stack.summary_for(&served)
}

/// A Grafana variable's value as the regex Grafana puts in `=~"..."`.
fn regex_escaped(value: &str) -> String {
    value
        .chars()
        .flat_map(|c| {
            let special = "\\.+*?()|[]{}^$".contains(c);
            special.then_some('\\').into_iter().chain([c])
        })
        .collect::<String>()
        // The backslash is itself escaped inside the PromQL string.
        .replace('\\', "\\\\")
}

/// Every PromQL of the dashboard: panel targets, and the variables'
/// `label_values(metric, label)` as the query Grafana makes of them.
fn dashboard_queries(dashboard: &serde_json::Value) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for var in dashboard["templating"]["list"].as_array().unwrap() {
        let Some(q) = var["query"]
            .as_str()
            .and_then(|q| q.strip_prefix("label_values("))
        else {
            continue;
        };
        let (metric, label) = q.trim_end_matches(')').rsplit_once(", ").unwrap();
        out.push((
            format!("variable {}", var["name"]),
            format!("count by ({label}) ({metric})"),
        ));
    }
    for panel in dashboard["panels"].as_array().unwrap() {
        for target in panel["targets"].as_array().unwrap() {
            out.push((
                format!("panel {} {}", panel["title"], target["refId"]),
                target["expr"].as_str().unwrap().to_string(),
            ));
        }
    }
    out
}

/// `$provider` and `$model` (All, or one value), the rate interval and the range.
fn substitute(expr: &str, provider: &str, model: &str) -> String {
    expr.replace("$__rate_interval", "1m")
        .replace("$__range", "5m")
        .replace("$provider", provider)
        .replace("$model", model)
}

/// The bucket bounds `(lower, upper]` of the shipped TTFT histogram holding `ms`.
fn ttft_bucket(ms: f64) -> (f64, f64) {
    let bounds = [
        0.0, 1.0, 5.0, 10.0, 20.0, 40.0, 60.0, 80.0, 100.0, 250.0, 500.0, 750.0, 1000.0, 2500.0,
        5000.0, 7500.0, 10000.0,
    ];
    let upper = bounds.iter().position(|&b| ms <= b).unwrap();
    (bounds[upper - 1], bounds[upper])
}

#[test]
fn a_real_prometheus_charts_tokens_cost_and_ttft_by_model_and_every_dashboard_query_has_data() {
    let pricing: serde_json::Map<String, serde_json::Value> = MODELS
        .iter()
        .map(|(m, _, i, o)| (m.to_string(), serde_json::json!({"input": i, "output": o})))
        .collect();
    let config = serde_json::json!({
        "collector": {"cluster": "streamtap_collector", "flush_interval_ms": 50, "timeout_ms": 1000},
        "pricing": pricing,
        "metric_labels": {"consumer_header": "x-team", "route": true, "upstream_cluster": true},
    });
    let stack = support::FaultStack::start(&config.to_string());
    let prometheus = testbed::prometheus::Prometheus::scraping(stack.envoy.admin)
        .unwrap_or_else(|e| panic!("{e}"));
    // Two waves with a scrape between, so rate() sees the counters grow.
    let mut summaries: Vec<serde_json::Value> = Vec::new();
    for wave in 0..2 {
        for (i, (model, ttft, _, _)) in MODELS.iter().enumerate() {
            let team = if i == 0 { "blue" } else { "green" };
            summaries.push(timed_call(&stack, model, *ttft, team));
        }
        if wave == 0 {
            prometheus
                .query_until(
                    "sum(streamtap_gen_ai_calls)",
                    Duration::from_secs(20),
                    |s| s.first().is_some_and(|(_, v)| *v == 2.0),
                )
                .unwrap();
        }
    }
    // Histograms reach /stats/prometheus at Envoy's stats flush (5 s), then a scrape.
    let all_counted = "sum(streamtap_gen_ai_server_time_to_first_token_ms_count)";
    prometheus
        .query_until(all_counted, Duration::from_secs(20), |s| {
            s.first().is_some_and(|(_, v)| *v == 4.0)
        })
        .unwrap_or_else(|e| panic!("{e}\n{}", prometheus.log()));

    let by_model = |promql: &str| -> std::collections::BTreeMap<String, f64> {
        prometheus
            .query(promql)
            .unwrap()
            .into_iter()
            .map(|(l, v)| (l["gen_ai_request_model"].clone(), v))
            .collect()
    };
    // Tokens per model, exactly what the calls reported.
    let output = by_model(
        r#"sum by (gen_ai_request_model) (streamtap_gen_ai_tokens{gen_ai_token_type="output"})"#,
    );
    assert_eq!(output.get("llama3.1:8b"), Some(&6.0), "{output:?}");
    assert_eq!(output.get("gpt-4.1"), Some(&6.0), "{output:?}");
    // Cost per model to the micro-dollar: each call's summary, rounded per call.
    let cost = by_model("sum by (gen_ai_request_model) (streamtap_gen_ai_cost_micro_usd)");
    for (model, _, input, out) in MODELS {
        let per_call = ((7.0 * input + 3.0 * out) / 1e6 * 1e6_f64).round();
        assert_eq!(
            cost.get(model),
            Some(&(2.0 * per_call)),
            "{model}: {cost:?}"
        );
        let from_summaries: f64 = summaries
            .iter()
            .filter(|s| s["model"] == model)
            .map(|s| (s["cost_usd"].as_f64().unwrap() * 1e6).round())
            .sum();
        assert_eq!(cost[model], from_summaries, "{model}");
    }
    // TTFT p99 by model lands in the bucket of the slowest call's TTFT.
    let p99 = by_model(
        "histogram_quantile(0.99, sum by (le, gen_ai_request_model) (streamtap_gen_ai_server_time_to_first_token_ms_bucket))",
    );
    for (model, _, _, _) in MODELS {
        let slowest = summaries
            .iter()
            .filter(|s| s["model"] == model)
            .map(|s| s["ttft_ms"].as_f64().unwrap())
            .fold(0.0, f64::max);
        let (lower, upper) = ttft_bucket(slowest);
        let q = p99[model];
        assert!(
            lower <= q && q <= upper,
            "{model}: p99 {q} outside ({lower}, {upper}] of TTFT {slowest}"
        );
    }
    assert!(p99["llama3.1:8b"] > p99["gpt-4.1"], "{p99:?}");
    // The consumer, route and cluster labels; never the credential.
    let teams = prometheus
        .query("sum by (consumer, route, upstream_cluster) (streamtap_gen_ai_calls)")
        .unwrap();
    for team in ["blue", "green"] {
        let found = teams.iter().find(|(l, _)| l["consumer"] == team);
        let (labels, calls) = found.unwrap_or_else(|| panic!("no {team}: {teams:?}"));
        assert_eq!(*calls, 2.0);
        assert_eq!(labels["route"], "llm_default");
        assert_eq!(labels["upstream_cluster"], "llm_upstream");
    }
    let (_, text) = stack.envoy.admin_get("/stats/prometheus").unwrap();
    assert!(!text.contains("sk-never-a-label") && !text.contains("Bearer"));

    // Every dashboard query, with All and with one provider and model, has data.
    let dashboard: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(DASHBOARD).unwrap()).unwrap();
    let queries = dashboard_queries(&dashboard);
    assert!(queries.len() >= 15, "{queries:?}");
    for (provider, model) in [
        (".*".to_string(), ".*".to_string()),
        ("openai".to_string(), regex_escaped("llama3.1:8b")),
    ] {
        for (what, expr) in &queries {
            let promql = substitute(expr, &provider, &model);
            assert!(!promql.contains('$'), "{what}: unsubstituted {promql}");
            let series = prometheus
                .query(&promql)
                .unwrap_or_else(|e| panic!("{what}: {e}"));
            assert!(
                series.iter().any(|(_, v)| v.is_finite()),
                "{what} ({provider}, {model}) has no data: {promql} -> {series:?}"
            );
        }
    }
    // The check bites: a query of a series streamtap does not make has none.
    let none = prometheus
        .query(&substitute(
            &queries
                .last()
                .unwrap()
                .1
                .replace("streamtap_", "streamtop_"),
            ".*",
            ".*",
        ))
        .unwrap();
    assert!(none.iter().all(|(_, v)| !v.is_finite()), "{none:?}");
}

#[test]
fn the_model_bound_holds_across_the_workers_vms() {
    let config = r#"{"collector":{"cluster":"streamtap_collector","flush_interval_ms":50,"timeout_ms":1000},"max_label_values":2}"#;
    let stack = support::FaultStack::start_with(config, |o| o.with_concurrency(2));
    let body = concat!(
        "data: {\"choices\":[{\"delta\":{\"content\":\"hi\"}}]}\n\n",
        "data: [DONE]\n\n"
    );
    let models: Vec<String> = (0..8).map(|i| format!("model-{i}")).collect();
    for model in &models {
        let request = format!(r#"{{"model":"{model}","stream":true,"messages":[]}}"#);
        let script = testbed::scripted::Script::sse(body);
        let (_, served, _) = stack.call("/v1/chat/completions", script, &[], request.as_bytes());
        stack.summary_for(&served);
    }
    // Each worker has its own VM: both served calls.
    let stats = stack.envoy.stats().unwrap();
    let per_worker: Vec<u64> = ["worker_0", "worker_1"]
        .iter()
        .map(|w| {
            stats
                .iter()
                .filter(|(k, _)| {
                    k.starts_with("listener.") && k.ends_with(&format!("{w}.downstream_cx_total"))
                })
                .map(|(_, v)| *v)
                .sum()
        })
        .collect();
    assert!(
        per_worker.iter().all(|&n| n > 0),
        "one worker took every call: {per_worker:?}"
    );
    let (_, text) = stack.envoy.admin_get("/stats/prometheus").unwrap();
    let kept: std::collections::BTreeSet<String> = series(&text, "streamtap_gen_ai_calls")
        .into_iter()
        .map(|(l, _)| l["gen_ai_request_model"].clone())
        .filter(|m| m != "other")
        .collect();
    // Two values for the process, not two per VM.
    assert_eq!(kept.len(), 2, "{kept:?}\n{text}");
    assert_eq!(stack.envoy.stat("wasmcustom.streamtap.label_overflow"), 6);
}
