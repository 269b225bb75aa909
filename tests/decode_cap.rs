//! A compressed response that inflates far past `capture.max_decoded_bytes` (a compression
//! bomb, or just a huge answer) through a real Envoy: the client gets the upstream's bytes
//! unchanged, the filter stops decoding its copy at the cap, the summary says
//! `decode_capped` and `streamtap.decode_capped` counts it. A response within the cap is
//! read whole and not marked, so the check can tell the two apart.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod support;

use std::time::Duration;
use support::{chat_event, chat_request, FaultStack};
use testbed::scripted::{Chunking, Script};

const CAP: usize = 1 << 20;

/// `n` chat deltas of "x", zlib-compressed (`content-encoding: deflate`).
fn deflated_stream(n: usize) -> (Vec<u8>, usize) {
    let plain = chat_event("x").repeat(n) + "data: [DONE]\n\n";
    let packed = miniz_oxide::deflate::compress_to_vec_zlib(plain.as_bytes(), 6);
    (packed, plain.len())
}

#[test]
fn a_response_inflating_past_the_cap_flows_whole_and_is_marked() {
    let config = format!(
        r#"{{"collector":{{"cluster":"streamtap_collector","flush_interval_ms":50}},"capture":{{"max_decoded_bytes":{CAP}}}}}"#
    );
    let stack = FaultStack::start(&config);
    let call = |events: usize| {
        let (body, plain_len) = deflated_stream(events);
        let script = Script::sse(body.clone())
            .header("content-encoding", "deflate")
            .chunking(Chunking::Fixed(64 * 1024));
        let (_, served, got) = stack.call("/v1/chat/completions", script, &[], &chat_request(true));
        assert_eq!(got.status, 200);
        assert!(
            got.body == body,
            "the client's bytes differ from the upstream's"
        );
        (stack.summary_for(&served), plain_len)
    };

    // Over 10x the cap once inflated.
    let (big, plain_len) = call(300_000);
    assert!(plain_len > 10 * CAP, "{plain_len}");
    assert_eq!(big["decode_capped"], true, "{big:#}");
    assert_eq!(big["parse_errors"], 0);
    let events = big["events"].as_u64().unwrap();
    assert!(
        events > 1000 && events < 300_000,
        "read up to the cap only: {events}"
    );
    stack.envoy.wait_for_stat(
        "wasmcustom.streamtap.decode_capped",
        1,
        Duration::from_secs(5),
    );

    // The same shape within the cap: read whole, not marked.
    let (small, _) = call(1000);
    assert!(small.get("decode_capped").is_none(), "{small:#}");
    assert_eq!(small["events"], 1001);
    assert_eq!(small["outcome"], "completed");
    assert_eq!(stack.envoy.stat("wasmcustom.streamtap.decode_capped"), 1);
    stack.assert_vm_healthy();
}
