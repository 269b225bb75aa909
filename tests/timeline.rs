//! The flight recorder (issue 11, `capture.timeline`) against a real Envoy:
//! each delta's entry is within a few ms of when the upstream wrote it,
//! deltas of one chunk share its time, and the bound holds on a
//! 100 000-delta stream without memory growing with it.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod support;

use serde_json::Value;
use std::time::Duration;
use support::timeline::{patterns, Timeline};
use support::{chat_event, chat_request, chat_stream, DownstreamStack, FaultStack};
use testbed::scripted::{Chunking, Script};

const TIMELINE: &str = r#"{"collector":{"cluster":"streamtap_collector","flush_interval_ms":50,"timeout_ms":1000},"capture":{"timeline":true}}"#;

/// The entries' absolute columns: (start µs, span µs, deltas, bytes, chunk, kind).
fn entries(summary: &Value) -> Vec<(u64, u64, u64, u64, u64, char)> {
    let t = &summary["timeline"];
    assert_eq!(t["unit"], "us", "{summary}");
    let column = |k: &str| -> Vec<u64> {
        t[k].as_array()
            .unwrap_or_else(|| panic!("no timeline.{k}: {t}"))
            .iter()
            .map(|v| v.as_u64().unwrap())
            .collect()
    };
    let undelta = |v: Vec<u64>| -> Vec<u64> {
        v.into_iter()
            .scan(0, |sum, d| {
                *sum += d;
                Some(*sum)
            })
            .collect()
    };
    let (at, span, n, bytes, chunk) = (
        undelta(column("t")),
        column("span"),
        column("n"),
        column("bytes"),
        undelta(column("chunk")),
    );
    let kind: Vec<char> = t["kind"].as_str().unwrap().chars().collect();
    (0..at.len())
        .map(|i| (at[i], span[i], n[i], bytes[i], chunk[i], kind[i]))
        .collect()
}

/// Each delta's entry against its upstream write: the same offsets from the
/// first delta, within `slack`.
fn check_against_writes(name: &str, chain: &DownstreamStack, t: &Timeline) {
    let run = chain.call(t, &[]);
    let s = chain.summary_for(&run);
    let e = entries(&s);
    assert_eq!(e.len(), t.deltas(), "{name}: one entry per delta\n{s}");
    assert!(
        e.iter().all(|x| x.2 == 1 && x.1 == 0 && x.5 == 'c'),
        "{name}: {e:?}"
    );
    let writes = t.delta_writes(&run.served);
    let first_write = run.served.writes[writes[0].unwrap()].0;
    let slack = Duration::from_millis(15);
    for (i, entry) in e.iter().enumerate() {
        let written = run.served.writes[writes[i].unwrap()].0 - first_write;
        let seen = Duration::from_micros(entry.0 - e[0].0);
        let off = seen.abs_diff(written);
        assert!(
            off <= slack,
            "{name}: delta {i} seen {seen:?} after the first, written {written:?} after: {off:?} apart\n{}",
            run.describe()
        );
    }
    // Deltas of one chunk share its time.
    for pair in e.windows(2) {
        if pair[0].4 == pair[1].4 {
            assert_eq!(
                pair[0].0, pair[1].0,
                "{name}: one chunk, two times: {pair:?}"
            );
        }
    }
    // The text sizes: what the upstream wrote as content.
    let text: u64 = e.iter().map(|x| x.3).sum();
    assert_eq!(
        text as usize,
        s["content"].as_str().unwrap().len(),
        "{name}"
    );
}

#[test]
fn each_entry_is_when_the_upstream_wrote_it() {
    let chain = DownstreamStack::direct_with(TIMELINE);
    check_against_writes("smooth", &chain, &patterns::smooth());
    check_against_writes("first_then_wall", &chain, &patterns::first_then_wall());
    check_against_writes("stall_mid_stream", &chain, &patterns::stall_mid_stream());

    // Off by default: no timeline.
    let plain = DownstreamStack::direct();
    let run = plain.call(&patterns::too_short(), &[]);
    assert_eq!(plain.summary_for(&run)["timeline"], Value::Null);
}

#[test]
fn the_bound_holds_on_a_hundred_thousand_deltas() {
    let config = r#"{"collector":{"cluster":"streamtap_collector","flush_interval_ms":50,"timeout_ms":1000},"capture":{"timeline":true,"timeline_max_entries":256,"max_content_bytes":1024}}"#;
    let stack = FaultStack::start(config);
    let request = chat_request(true);
    let call = |n: usize| {
        let mut body = String::with_capacity(n * 80);
        for _ in 0..n {
            body.push_str(&chat_event("x"));
        }
        body.push_str(&chat_stream(&["end"]));
        let script = Script::sse(body.clone()).chunking(Chunking::Fixed(4096));
        let (_, served, got) = stack.call("/v1/chat/completions", script, &[], &request);
        assert!(got.body == body.as_bytes());
        (stack.summary_for(&served), stack.rss())
    };
    let (small, rss_small) = call(1_000);
    let (big, rss_big) = call(100_000);
    for (s, n) in [(&small, 1_001u64), (&big, 100_001)] {
        let t = &s["timeline"];
        let e = entries(s);
        assert!(e.len() <= 256, "{} entries", e.len());
        assert_eq!(t["deltas"], n, "{t}");
        assert_eq!(e.iter().map(|x| x.2).sum::<u64>(), n);
        assert_eq!(t["compacted"], true);
    }
    eprintln!("Envoy RSS after 1 000 deltas {rss_small} B, after 100 000 {rss_big} B");
    assert!(
        rss_big < rss_small + (8 << 20),
        "memory grew with the stream: {rss_small} → {rss_big}"
    );
    stack.assert_vm_healthy();
}
