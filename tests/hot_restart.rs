//! Hot restart (`--restart-epoch`) with the wheel's Envoy (issue 14): a
//! second process takes the listener over while the first drains and exits.
//! Streams in flight on the old process finish there; its summaries are
//! delivered if its flush interval is shorter than `--parent-shutdown-time-s`,
//! and named in its log when it is not.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod support;

use std::collections::BTreeMap;
use std::time::Duration;
use support::lost_in_log;
use testbed::collector::Collector;
use testbed::envoy::{Envoy, EnvoyOptions};
use testbed::upstream::MockUpstream;

/// The parent drains for 1 s and is told to exit after 3 s.
const RESTART_ARGS: [&str; 4] = ["--drain-time-s", "1", "--parent-shutdown-time-s", "3"];

struct Outcome {
    calls: usize,
    delivered: usize,
    /// Of the calls epoch 0 served (those in flight at the restart).
    old_calls: usize,
    old_delivered: usize,
    lost_in_log: usize,
}

/// 10 streams in flight when epoch 1 takes over, 10 more after; epoch 0
/// exits on its own (parent shutdown).
fn restart_with(flush_interval_ms: u64) -> Outcome {
    let config = format!(
        r#"{{"collector":{{"cluster":"streamtap_collector","flush_interval_ms":{flush_interval_ms},"timeout_ms":1000}}}}"#
    );
    let upstream = MockUpstream::start().unwrap();
    let collector = Collector::start().unwrap();
    let opts = EnvoyOptions::new(upstream.addr, collector.addr)
        .with_plugin_config(&config)
        .with_hot_restart()
        .with_extra_args(RESTART_ARGS);
    let mut envoy = Envoy::start(&opts).unwrap_or_else(|e| panic!("{e}"));
    let during: Vec<_> = (0..10)
        .map(|i| {
            support::stream_in_background(&envoy, format!("hot-{flush_interval_ms}-during-{i}"))
        })
        .collect();
    std::thread::sleep(Duration::from_millis(300));
    envoy.hot_restart(&[]).unwrap();
    let after: Vec<_> = (0..10)
        .map(|i| {
            support::stream_in_background(&envoy, format!("hot-{flush_interval_ms}-after-{i}"))
        })
        .collect();
    let mut ids = BTreeMap::new();
    for handle in during.into_iter().chain(after) {
        let (test_id, got) = handle.join().unwrap();
        let sent = upstream
            .wait_sent(&test_id, Duration::from_secs(10))
            .unwrap();
        assert!(got.complete, "{test_id} broke in the restart");
        assert_eq!(got.body, sent.body, "{test_id}: other bytes");
        ids.insert(support::header(&sent, "x-request-id").unwrap(), test_id);
    }
    let still = envoy.wait_parents_exited(Duration::from_secs(15));
    assert_eq!(still, 0, "epoch 0 never exited:\n{}", envoy.log());
    std::thread::sleep(Duration::from_millis(500));
    let delivered: Vec<&String> = collector
        .calls()
        .iter()
        .filter_map(|s| ids.get(s["id"].as_str().unwrap_or_default()))
        .collect();
    assert_eq!(collector.duplicates(), 0);
    let old = |test_id: &&String| test_id.contains("-during-");
    Outcome {
        calls: ids.len(),
        delivered: delivered.len(),
        old_calls: ids.values().filter(|t| old(t)).count(),
        old_delivered: delivered.iter().filter(|t| old(t)).count(),
        lost_in_log: lost_in_log(&envoy.log()),
    }
}

#[test]
fn a_hot_restart_keeps_streams_and_delivers_what_the_old_process_flushed() {
    let out = restart_with(200);
    eprintln!(
        "hot restart, flush 200 ms: {} calls, {} delivered, {} named lost",
        out.calls, out.delivered, out.lost_in_log
    );
    assert_eq!(out.delivered, out.calls);
    assert_eq!(out.lost_in_log, 0);
}

#[test]
fn a_hot_restart_with_summaries_still_queued_names_what_it_loses() {
    let out = restart_with(60_000);
    eprintln!(
        "hot restart, flush 60 s: epoch 0 served {}, {} delivered, {} named lost in its log",
        out.old_calls, out.old_delivered, out.lost_in_log
    );
    assert_eq!(out.old_calls, 10);
    assert!(
        out.old_delivered < out.old_calls,
        "nothing was queued at the exit"
    );
    assert!(
        out.old_delivered + out.lost_in_log >= out.old_calls,
        "lost silently"
    );
}
