//! `pricing` against a real Envoy: the summary the collector gets carries the
//! call's cost to the micro-dollar, by each provider's cache rules; the
//! shipped example price table is a config the filter accepts.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod support;

use serde_json::Value;
use support::FaultStack;
use testbed::scripted::Script;

fn example_pricing() -> Value {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/pricing/example.json");
    let table: Value = serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
    table["pricing"].clone()
}

#[test]
fn the_cost_of_each_call_is_in_its_summary() {
    let config = serde_json::json!({
        "collector": {"cluster": "streamtap_collector", "flush_interval_ms": 50, "timeout_ms": 1000},
        "pricing": example_pricing(),
    })
    .to_string();
    let stack = FaultStack::start(&config);
    let openai = concat!(
        "data: {\"model\":\"gpt-4o-mini-2024-07-18\",\"choices\":[{\"delta\":{\"content\":\"hi\"}}]}\n\n",
        "data: {\"choices\":[],\"usage\":{\"prompt_tokens\":10000,\"completion_tokens\":1000,\"prompt_tokens_details\":{\"cached_tokens\":8000}}}\n\n",
        "data: [DONE]\n\n"
    );
    let request =
        br#"{"model":"gpt-4o-mini","stream":true,"messages":[{"role":"user","content":"hi"}]}"#;
    let (_, served, _) = stack.call("/v1/chat/completions", Script::sse(openai), &[], request);
    // 2000 × 0.15 + 8000 × 0.075 + 1000 × 0.60 = 300 + 600 + 600 µ$.
    assert_eq!(stack.summary_for(&served)["cost_usd"], 0.0015);

    let anthropic = concat!(
        "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"model\":\"claude-sonnet-4-5-20250929\",\"usage\":{\"input_tokens\":1000,\"cache_read_input_tokens\":10000,\"cache_creation_input_tokens\":4000,\"output_tokens\":1}}}\n\n",
        "event: message_delta\ndata: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"end_turn\"},\"usage\":{\"output_tokens\":500}}\n\n",
        "event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n"
    );
    let request = br#"{"model":"claude-sonnet-4-5","max_tokens":100,"stream":true,"messages":[{"role":"user","content":"hi"}]}"#;
    let (_, served, _) = stack.call("/v1/messages", Script::sse(anthropic), &[], request);
    let s = stack.summary_for(&served);
    // 1000 × 3 + 10000 × 0.30 + 4000 × 3.75 + 500 × 15 = 3000 + 3000 + 15000 + 7500 µ$.
    assert_eq!(s["cost_usd"], 0.0285, "{s}");
    assert_eq!(s["cache_write_input_tokens"], 4000);
    // The labelled counters: cache tokens by type, cost by model in micro-dollars.
    let (_, text) = stack.envoy.admin_get("/stats/prometheus").unwrap();
    let value = |needle: &[&str]| -> Option<f64> {
        text.lines()
            .find(|l| needle.iter().all(|n| l.contains(n)))
            .and_then(|l| l.rsplit_once(' '))
            .and_then(|(_, v)| v.parse().ok())
    };
    let claude = "gen_ai_request_model=\"claude-sonnet-4-5\"";
    for (kind, n) in [
        ("cache_read_input", 10_000.0),
        ("cache_write_input", 4_000.0),
        ("output", 500.0),
    ] {
        let token_type = format!("gen_ai_token_type=\"{kind}\"");
        assert_eq!(
            value(&["streamtap_gen_ai_tokens{", claude, &token_type]),
            Some(n),
            "{kind} in:\n{text}"
        );
    }
    assert_eq!(
        value(&["streamtap_gen_ai_cost_micro_usd{", claude]),
        Some(28_500.0),
        "{text}"
    );
    assert_eq!(
        value(&[
            "streamtap_gen_ai_cost_micro_usd{",
            "gen_ai_request_model=\"gpt-4o-mini\""
        ]),
        Some(1_500.0)
    );
    stack.assert_vm_healthy();
}
