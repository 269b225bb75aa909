//! A call Envoy's router retries (issue 14, "Also"): the upstream answers
//! the first try 503 and the retry 200; the filter, in front of the router,
//! sees one response, the one the client got, and summarizes it once.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod support;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use testbed::client;
use testbed::collector::Collector;
use testbed::envoy::{template_path, Envoy, EnvoyOptions};
use testbed::scripted::{Script, ScriptedUpstream};

const STREAM: &str = concat!(
    "data: {\"choices\":[{\"delta\":{\"content\":\"second\"}}]}\n\n",
    "data: {\"choices\":[{\"delta\":{\"content\":\" try\"}}]}\n\n",
    "data: {\"choices\":[],\"usage\":{\"prompt_tokens\":4,\"completion_tokens\":2}}\n\n",
    "data: [DONE]\n\n"
);

#[test]
fn a_retried_call_is_summarized_once_as_the_client_got_it() {
    let tries = Arc::new(AtomicUsize::new(0));
    let counted = Arc::clone(&tries);
    let upstream = ScriptedUpstream::start_with(move |_req| {
        let n = counted.fetch_add(1, Ordering::SeqCst) + 1;
        let script = if n == 1 {
            Script::json(503, r#"{"error":{"message":"overloaded, try again"}}"#)
        } else {
            Script::sse(STREAM)
        };
        Some((format!("try-{n}"), script))
    })
    .unwrap();
    let collector = Collector::start().unwrap();
    let template = std::fs::read_to_string(template_path()).unwrap();
    let route = "                  timeout: 0s\n";
    assert!(template.contains(route), "the template's route changed");
    let retried = template.replacen(
        route,
        &format!(
            "{route}                  retry_policy: {{ retry_on: \"5xx\", num_retries: 1 }}\n"
        ),
        1,
    );
    let opts =
        EnvoyOptions::new(upstream.addr, collector.addr).with_plugin_config(support::FAST_EXPORT);
    let envoy = Envoy::start_with_template(&opts, &retried).unwrap_or_else(|e| panic!("{e}"));

    let body =
        br#"{"model":"gpt-4o-mini","stream":true,"messages":[{"role":"user","content":"hi"}]}"#;
    let got = client::post(envoy.listener, "/v1/chat/completions", &[], body).unwrap();
    assert_eq!(got.status, 200);
    assert_eq!(got.body, STREAM.as_bytes());
    let first = upstream
        .wait_served("try-1", Duration::from_secs(5))
        .unwrap();
    let second = upstream
        .wait_served("try-2", Duration::from_secs(5))
        .unwrap();
    let id = first.header("x-request-id").unwrap().to_string();
    assert_eq!(
        second.header("x-request-id"),
        Some(id.as_str()),
        "one call, two tries"
    );
    assert_eq!(tries.load(Ordering::SeqCst), 2);

    let s = support::summary_with_id(&collector, &envoy, &id);
    assert_eq!(s["status"], 200, "{s}");
    assert_eq!(s["content"], "second try");
    assert_eq!(s["outcome"], "completed");
    assert_eq!(s["error"], serde_json::Value::Null);
    // Exactly one summary, even after the export ticks have passed.
    std::thread::sleep(Duration::from_millis(300));
    let summaries = collector
        .calls()
        .into_iter()
        .filter(|c| c["id"] == id.as_str())
        .count();
    assert_eq!(summaries, 1);
    assert_eq!(collector.duplicates(), 0);
}
