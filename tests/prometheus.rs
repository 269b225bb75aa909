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
