//! The Istio carrier of the labelled stats' settings, in a real Envoy: `envoy/streamtap.yaml`
//! without its `stats_config` plays Istio's bootstrap, and the `custom_bootstrap.json` of
//! `deploy/istio/stats-bootstrap.yaml` goes in with `--config-yaml`, as the sidecar passes a
//! `sidecar.istio.io/bootstrapOverride`. The model label and the shipped buckets must show up on
//! `/stats/prometheus`; without the override they must not. On top of a bootstrap that already
//! has the tags, the merge appends a second copy, which Envoy takes without harm.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod support;

use std::time::Duration;
use support::prometheus::series;
use support::{eventually, FaultStack, FAST_EXPORT};
use testbed::envoy::template_path;
use testbed::scripted::Script;

const STATS_BOOTSTRAP: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/deploy/istio/stats-bootstrap.yaml"
);
const MODEL: &str = "llama3.1:8b";

/// The ConfigMap's `custom_bootstrap.json`, as the sidecar reads it from the mounted file.
fn custom_bootstrap_json() -> String {
    let text = std::fs::read_to_string(STATS_BOOTSTRAP).unwrap();
    let doc: serde_norway::Value = serde_norway::from_str(&text).unwrap();
    doc["data"]["custom_bootstrap.json"]
        .as_str()
        .expect("stats-bootstrap.yaml: data.custom_bootstrap.json")
        .to_string()
}

fn template() -> String {
    std::fs::read_to_string(template_path()).unwrap()
}

/// The template without its top-level `stats_config:` block (up to the next top-level key).
fn without_stats_config(template: &str) -> String {
    let mut out = Vec::new();
    let mut skipping = false;
    for line in template.lines() {
        let top_level = line.starts_with(|c: char| !c.is_whitespace() && c != '#');
        if top_level {
            skipping = line.starts_with("stats_config:");
        }
        if !skipping {
            out.push(line);
        }
    }
    let stripped = out.join("\n") + "\n";
    assert!(
        template.contains("stats_tags:") && !stripped.contains("stats_tags:"),
        "stats_config not removed from envoy/streamtap.yaml"
    );
    assert!(stripped.contains("static_resources:") && stripped.contains("admin:"));
    stripped
}

/// One streamed chat call whose first token comes 300 ms after the response head.
fn streamed_call(stack: &FaultStack) {
    let first = "data: {\"choices\":[{\"delta\":{\"content\":\"hi\"}}]}\n\n";
    let rest = concat!(
        "data: {\"choices\":[],\"usage\":{\"prompt_tokens\":7,\"completion_tokens\":3}}\n\n",
        "data: [DONE]\n\n"
    );
    let script = Script::timed_sse(vec![
        (Duration::from_millis(300), first.as_bytes().to_vec()),
        (Duration::from_millis(100), rest.as_bytes().to_vec()),
    ]);
    let request = format!(r#"{{"model":"{MODEL}","stream":true,"messages":[]}}"#);
    let (_, served, _) = stack.call("/v1/chat/completions", script, &[], request.as_bytes());
    let s = stack.summary_for(&served);
    let ttft = s["ttft_ms"].as_f64().unwrap();
    assert!((300.0..500.0).contains(&ttft), "{s}");
}

fn scrape(stack: &FaultStack) -> String {
    let (status, text) = stack.envoy.admin_get("/stats/prometheus").unwrap();
    assert_eq!(status, 200);
    text
}

/// The `/stats/prometheus` text once histograms have been flushed (every 5 s) with a sample.
fn scrape_after_flush(stack: &FaultStack) -> String {
    eventually(Duration::from_secs(12), || {
        let text = scrape(stack);
        text.lines()
            .any(|l| {
                l.contains("gen_ai_server_time_to_first_token_ms_count")
                    && l.trim_end().ends_with(" 1")
            })
            .then_some(text)
    })
    .unwrap_or_else(|| panic!("no TTFT histogram sample after 12 s:\n{}", scrape(stack)))
}

fn model_series<'a>(
    all: &'a [(std::collections::BTreeMap<String, String>, f64)],
    le: Option<&str>,
) -> Option<&'a (std::collections::BTreeMap<String, String>, f64)> {
    all.iter().find(|(l, _)| {
        l.get("gen_ai_request_model").map(String::as_str) == Some(MODEL)
            && l.get("le").map(String::as_str) == le
    })
}

#[test]
fn the_bootstrap_override_carries_the_model_label_and_the_buckets() {
    let json = custom_bootstrap_json();
    let stack =
        FaultStack::start_with_template(FAST_EXPORT, &without_stats_config(&template()), |o| {
            o.with_extra_args(["--config-yaml", json.as_str()])
        });
    streamed_call(&stack);
    let text = scrape_after_flush(&stack);

    let calls = series(&text, "streamtap_gen_ai_calls");
    let call = model_series(&calls, None).unwrap_or_else(|| panic!("no {MODEL} calls:\n{text}"));
    assert_eq!(call.1, 1.0);
    assert_eq!(call.0["gen_ai_provider_name"], "openai");
    assert_eq!(call.0["outcome"], "completed");

    // 750 ms is a shipped TTFT boundary and none of Envoy's defaults; 300–500 ms lies above 250.
    let ttft = series(
        &text,
        "streamtap_gen_ai_server_time_to_first_token_ms_bucket",
    );
    assert_eq!(
        model_series(&ttft, Some("750")).map(|s| s.1),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        model_series(&ttft, Some("250")).map(|s| s.1),
        Some(0.0),
        "{text}"
    );
}

#[test]
fn without_the_override_the_label_and_the_buckets_are_missing() {
    let stack =
        FaultStack::start_with_template(FAST_EXPORT, &without_stats_config(&template()), |o| o);
    streamed_call(&stack);
    let text = scrape_after_flush(&stack);
    assert!(
        !text.contains(&format!("gen_ai_request_model=\"{MODEL}\"")),
        "{text}"
    );
    // The untagged name instead: the value stays inside the metric name.
    let (_, raw) = stack.envoy.admin_get("/stats").unwrap();
    let segment = format!("gen_ai_request_model=.{MODEL};.");
    assert!(
        raw.lines()
            .any(|l| l.contains(&segment) && l.ends_with("gen_ai_calls: 1")),
        "{raw}"
    );
    let ttft: Vec<&str> = text
        .lines()
        .filter(|l| l.contains("gen_ai_server_time_to_first_token_ms_bucket"))
        .collect();
    assert!(ttft.iter().any(|l| l.contains("le=\"250\"")), "{text}");
    assert!(!ttft.iter().any(|l| l.contains("le=\"750\"")), "{text}");
}

#[test]
fn the_merge_appends_and_tags_given_twice_are_harmless() {
    let json = custom_bootstrap_json();
    let fragment: serde_json::Value = serde_json::from_str(&json).unwrap();
    let count = |v: &serde_json::Value, key: &str| v["stats_config"][key].as_array().unwrap().len();
    // envoy/streamtap.yaml keeps its own stats_config, as a bootstrap that already has the tags.
    let stack = FaultStack::start_with(FAST_EXPORT, |o| {
        o.with_extra_args(["--config-yaml", json.as_str()])
    });
    let (status, dump) = stack
        .envoy
        .admin_get("/config_dump?mask=bootstrap")
        .unwrap();
    assert_eq!(status, 200, "{dump}");
    let dump: serde_json::Value = serde_json::from_str(&dump).unwrap();
    let bootstrap = &dump["configs"][0]["bootstrap"];
    // Repeated fields are appended, not replaced: every tag and bucket setting is there twice.
    for key in ["stats_tags", "histogram_bucket_settings"] {
        assert_eq!(count(bootstrap, key), 2 * count(&fragment, key), "{key}");
    }
    // Envoy takes a tag name twice, and a series still carries each label once.
    streamed_call(&stack);
    let text = scrape(&stack);
    let line = text
        .lines()
        .find(|l| l.starts_with("streamtap_gen_ai_calls{") && l.contains(MODEL))
        .unwrap_or_else(|| panic!("no {MODEL} calls:\n{text}"));
    assert_eq!(line.matches("gen_ai_request_model=").count(), 1, "{line}");
    assert_eq!(
        model_series(&series(&text, "streamtap_gen_ai_calls"), None).map(|s| s.1),
        Some(1.0)
    );
}
