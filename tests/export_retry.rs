//! The export path against a collector that is down, failing or hanging,
//! through the real Envoy: the client's streams never notice, and every
//! summary arrives once the collector is back (up to the queue bound).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod support;

use std::net::TcpListener;
use std::time::Duration;
use support::{eventually, Call, Stack};
use testbed::client::check_live;
use testbed::collector::Collector;
use testbed::envoy::{Envoy, EnvoyOptions};
use testbed::upstream::MockUpstream;

const LIVE_BOUND: Duration = Duration::from_millis(25);
const CONFIG: &str =
    r#"{"collector":{"cluster":"streamtap_collector","flush_interval_ms":50,"timeout_ms":300}}"#;

fn calls_through(stack: &Stack, n: usize) -> Vec<String> {
    let mut ids = Vec::new();
    for i in 0..n {
        let call = Call {
            tokens: 8,
            interval_ms: 20,
            ..Call::default()
        };
        let (sent, got) = stack.chat(&call);
        assert_eq!(got.status, 200);
        check_live(&sent, &got, LIVE_BOUND).unwrap_or_else(|e| panic!("call {i}: {e}"));
        ids.push(support::header(&sent, "x-request-id").unwrap());
    }
    ids
}

fn assert_each_summary_once(collector: &Collector, ids: &[String]) {
    let mut found = 0;
    let calls = eventually(Duration::from_secs(20), || {
        let calls = collector.calls();
        found = ids
            .iter()
            .filter(|id| calls.iter().any(|c| c["id"] == id.as_str()))
            .count();
        (found == ids.len()).then_some(calls)
    })
    .unwrap_or_else(|| panic!("only {found} of {} summaries arrived", ids.len()));
    for id in ids {
        let copies = calls.iter().filter(|c| c["id"] == id.as_str()).count();
        assert_eq!(copies, 1, "summary {id} arrived {copies} times");
    }
    // The collector's de-duplication hid nothing: nothing was sent twice.
    assert_eq!(collector.duplicates(), 0, "summaries sent twice");
}

#[test]
fn collector_down_then_started_receives_the_backlog() {
    // Reserve an address, leave it dead while the calls run, then start the
    // collector on it.
    let addr = support::dead_address();
    let upstream = MockUpstream::start().unwrap();
    let envoy = Envoy::start(&EnvoyOptions::new(upstream.addr, addr).with_plugin_config(CONFIG))
        .unwrap_or_else(|e| panic!("{e}"));
    let placeholder = Collector::start().unwrap();
    let stack = Stack {
        upstream,
        collector: placeholder,
        envoy,
    };
    let ids = calls_through(&stack, 5);
    assert!(
        stack.envoy.wait_for_stat(
            "wasmcustom.streamtap.export_failures",
            1,
            Duration::from_secs(5)
        ) >= 1
    );
    let collector = Collector::start_on(addr).unwrap();
    assert_each_summary_once(&collector, &ids);
    assert_eq!(
        stack.envoy.stat("wasmcustom.streamtap.summaries_dropped"),
        0
    );
    assert_eq!(
        stack.envoy.wait_for_stat(
            "wasmcustom.streamtap.summaries_exported",
            5,
            Duration::from_secs(5)
        ),
        5
    );
}

#[test]
fn collector_answering_500_then_200_gets_everything_once() {
    let stack = Stack::start(testbed::envoy::FilterVariant::Streamtap, CONFIG);
    stack.collector.set_status(500);
    let ids = calls_through(&stack, 3);
    assert!(
        stack.envoy.wait_for_stat(
            "wasmcustom.streamtap.export_failures",
            2,
            Duration::from_secs(10)
        ) >= 2
    );
    assert!(stack.collector.calls().is_empty());
    stack.collector.set_status(200);
    assert_each_summary_once(&stack.collector, &ids);
    assert_eq!(
        stack.envoy.stat("wasmcustom.streamtap.summaries_dropped"),
        0
    );
}

/// At-least-once: a collector slower than `timeout_ms` stores a batch the
/// filter then sends again. Each copy carries the same `summary_id`, so the
/// collector keeps one and counts the rest.
#[test]
fn a_batch_that_timed_out_but_arrived_is_sent_again_and_de_duplicated() {
    let stack = Stack::start(testbed::envoy::FilterVariant::Streamtap, CONFIG);
    stack.collector.set_delay(Duration::from_millis(600));
    let ids = calls_through(&stack, 3);
    let repeated = eventually(Duration::from_secs(10), || {
        (stack.collector.duplicates() >= 1).then_some(())
    });
    assert!(
        repeated.is_some(),
        "no batch was sent again after its timeout (posts {})",
        stack.collector.posts()
    );
    stack.collector.set_delay(Duration::ZERO);
    assert_eq!(
        stack.envoy.wait_for_stat(
            "wasmcustom.streamtap.summaries_exported",
            3,
            Duration::from_secs(20)
        ),
        3
    );
    let calls = stack.collector.calls();
    for id in &ids {
        let copies = calls.iter().filter(|c| c["id"] == id.as_str()).count();
        assert_eq!(copies, 1, "{id} kept {copies} times");
    }
    let summary_ids: std::collections::BTreeSet<_> =
        calls.iter().map(|c| c["summary_id"].to_string()).collect();
    assert_eq!(summary_ids.len(), 3, "{summary_ids:?}");
    eprintln!(
        "slow collector: 3 calls, {} posts, {} duplicates dropped",
        stack.collector.posts(),
        stack.collector.duplicates()
    );
}

#[test]
fn collector_refusing_with_400_drops_and_counts() {
    let stack = Stack::start(testbed::envoy::FilterVariant::Streamtap, CONFIG);
    stack.collector.set_status(400);
    calls_through(&stack, 2);
    assert_eq!(
        stack.envoy.wait_for_stat(
            "wasmcustom.streamtap.summaries_dropped",
            2,
            Duration::from_secs(10)
        ),
        2
    );
    stack.collector.set_status(200);
    std::thread::sleep(Duration::from_millis(500));
    assert!(
        stack.collector.calls().is_empty(),
        "a refused batch is not retried"
    );
}

#[test]
fn collector_hanging_past_the_timeout_costs_the_client_nothing() {
    // Accepts connections and never answers.
    let hanging = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = hanging.local_addr().unwrap();
    let _accepting = std::thread::spawn(move || {
        let mut held = Vec::new();
        for conn in hanging.incoming().take(64) {
            held.push(conn);
        }
    });
    let upstream = MockUpstream::start().unwrap();
    let envoy = Envoy::start(&EnvoyOptions::new(upstream.addr, addr).with_plugin_config(CONFIG))
        .unwrap_or_else(|e| panic!("{e}"));
    let stack = Stack {
        upstream,
        collector: Collector::start().unwrap(),
        envoy,
    };
    calls_through(&stack, 3);
    assert!(
        stack.envoy.wait_for_stat(
            "wasmcustom.streamtap.export_failures",
            1,
            Duration::from_secs(5)
        ) >= 1
    );
    // Still serving live streams while exports time out in the background.
    calls_through(&stack, 2);
    assert_eq!(stack.envoy.stat("wasmcustom.streamtap.calls"), 5);
}
