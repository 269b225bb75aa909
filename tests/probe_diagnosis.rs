//! Where is it buffered (issue 10), with real parts: `streamtap-probe` pointed
//! at nginx in front of streamtap's Envoy, and at an Envoy whose upstream
//! buffers, says on which side the stream was buffered; and
//! `disable_downstream_buffering` makes the same nginx stream live, changing
//! nothing but one response header.
//!
//! Needs `make build venv nginx`.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod support;

use serde_json::Value;
use std::net::SocketAddr;
use std::time::Duration;
use support::timeline::{patterns, Timeline};
use support::{next_id, DownstreamStack, FaultStack, FAST_EXPORT};
use testbed::nginx::NginxOptions;
use testbed::scripted::Script;

/// The probe's `--json` report of one call to `entry`, the upstream playing
/// `timeline` (the probe's own request body is ignored by the script).
fn probe(chain: &DownstreamStack, entry: SocketAddr, timeline: &Timeline) -> Value {
    let id = next_id("probe");
    chain.stack.upstream.script(&id, timeline.script());
    let args: Vec<String> = [
        format!("http://{entry}{}", timeline.path),
        "--header".into(),
        format!("x-script: {id}"),
        "--header".into(),
        "authorization: Bearer sk-probe-secret-123456".into(),
        "--collector".into(),
        format!("http://{}", chain.stack.collector.addr),
        "--json".into(),
        "--timeout-s".into(),
        "30".into(),
    ]
    .into();
    let probe::args::Command::Run(args) = probe::args::parse(&args).unwrap() else {
        panic!("not a run")
    };
    let report = probe::run(&args, Duration::from_secs(10))
        .unwrap_or_else(|e| panic!("probe failed: {e}\n{}", chain.logs()));
    let json = report.to_json();
    let text = report.to_text() + &json.to_string();
    assert!(
        !text.contains("sk-probe-secret"),
        "a credential shown: {text}"
    );
    json
}

fn verdicts(report: &Value) -> (String, String) {
    let side = |s: &str| {
        report[s]["stream_health"]["verdict"]
            .as_str()
            .unwrap_or_else(|| panic!("no {s} verdict: {report:#}"))
            .to_string()
    };
    (side("envoy"), side("client"))
}

#[test]
fn nginx_gzip_buffers_after_envoy_and_the_probe_says_so() {
    let chain = DownstreamStack::behind_nginx(NginxOptions::default().with_gzip_sse(true));
    let report = probe(&chain, chain.entry(), &patterns::smooth());
    assert_eq!(
        verdicts(&report),
        ("smooth".into(), "buffered".into()),
        "{report:#}"
    );
    let diagnosis = report["diagnosis"].as_str().unwrap();
    assert!(
        diagnosis.contains("between Envoy and you"),
        "{diagnosis}\n{report:#}"
    );

    // The control: the probe straight at streamtap's Envoy sees it smooth.
    let report = probe(&chain, chain.stack.envoy.listener, &patterns::smooth());
    assert_eq!(
        verdicts(&report),
        ("smooth".into(), "smooth".into()),
        "{report:#}"
    );
}

#[test]
fn with_disable_downstream_buffering_the_same_nginx_streams_live() {
    let config = r#"{"collector":{"cluster":"streamtap_collector","flush_interval_ms":50,"timeout_ms":1000},"disable_downstream_buffering":true}"#;
    let chain =
        DownstreamStack::behind_nginx_with(NginxOptions::default().with_gzip_sse(true), config);
    let report = probe(&chain, chain.entry(), &patterns::smooth());
    assert_eq!(
        verdicts(&report),
        ("smooth".into(), "smooth".into()),
        "{report:#}"
    );
    assert!(
        report["client"]["reads"].as_u64().unwrap() >= 30,
        "{report:#}"
    );
    // Still gzip-encoded through nginx, and the bytes unchanged once gunzipped.
    let t = patterns::smooth();
    let run = chain.call(&t, &[("accept-encoding", "gzip")]);
    assert_eq!(run.got.header("content-encoding"), Some("gzip"));
    assert!(run.reads() >= 30, "{}", run.describe());
    assert_eq!(run.decoded_body(), run.served.sent);
}

#[test]
fn a_buffering_upstream_is_diagnosed_upstream() {
    let chain = DownstreamStack::buffering_upstream();
    let report = probe(&chain, chain.entry(), &patterns::smooth());
    assert_eq!(
        verdicts(&report),
        ("buffered".into(), "buffered".into()),
        "{report:#}"
    );
    let diagnosis = report["diagnosis"].as_str().unwrap();
    assert!(diagnosis.contains("look upstream"), "{diagnosis}");
}

/// The header is the one change, only when configured, only on event
/// streams, and never over the upstream's own value.
#[test]
fn x_accel_buffering_is_added_only_when_configured_and_never_overrides() {
    let on = r#"{"disable_downstream_buffering":true}"#;
    let t = patterns::too_short();
    let body = t.body();
    for (config, upstream_value, content_type, want) in [
        (FAST_EXPORT, None, "text/event-stream", None),
        (on, None, "text/event-stream", Some("no")),
        (on, Some("yes"), "text/event-stream", Some("yes")),
        (on, None, "application/json", None),
    ] {
        let stack = FaultStack::start(config);
        let mut script = Script {
            content_type: content_type.into(),
            ..Script::sse(body.clone())
        };
        if let Some(v) = upstream_value {
            script = script.header("x-accel-buffering", v);
        }
        let (_, served, got) = stack.call(t.path, script, &[], &t.request);
        assert_eq!(got.body, served.sent, "bytes unchanged");
        assert_eq!(
            got.header("x-accel-buffering"),
            want,
            "{config} / upstream {upstream_value:?} / {content_type}: {:?}",
            got.headers
        );
    }
}
