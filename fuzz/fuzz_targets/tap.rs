//! Fuzz target: every framing (SSE, NDJSON, JSON array, AWS event stream)
//! and every provider adapter through `CallTap`.
//!
//! Input layout: the request path up to the first `\n` (the corpus seeds
//! take it from each fixture folder's `request.path`, so the fuzzer also
//! explores the provider table's path matching); then byte 0 picks the
//! content type (`% 4`: event stream, JSON, NDJSON or AWS event stream), the status (`/ 2 % 4`: 200,
//! 200, 429, 500) and how the call ends (`/ 8 % 4`: end of stream, end of
//! stream, upstream reset, client cancel); byte 1 seeds the chunk sizes; the
//! rest is the response body.
//!
//! Checks: nothing panics; the summary is the same whole and chunked (minus
//! `chunks`); `bytes` is the body length; the decoder's events are the same
//! whole and chunked; finishing twice yields nothing.

#![no_main]

use libfuzzer_sys::fuzz_target;
use streamtap::call::tap::TapSettings;
use streamtap::replay::{End, Exchange};
use streamtap::wire::sse::SseDecoder;

fn chunks(body: &[u8], seed: u8) -> Vec<&[u8]> {
    let mut x = u64::from(seed).wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut out = Vec::new();
    let mut at = 0;
    while at < body.len() {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let max = match seed % 3 {
            0 => 3,
            1 => 64,
            _ => 4096,
        };
        let end = (at + 1 + (x % max) as usize).min(body.len());
        out.push(&body[at..end]);
        at = end;
    }
    out
}

fn summarize(path: &str, sel: u8, pieces: &[&[u8]]) -> serde_json::Value {
    let exchange = Exchange {
        request_id: Some("fuzz".into()),
        request_body: Some(
            br#"{"model":"m","stream":true,"messages":[{"role":"user","content":"hi"}]}"#.to_vec(),
        ),
        status: [200u16, 200, 429, 500][usize::from((sel / 2) % 4)],
        content_type: [
            "text/event-stream",
            "application/json",
            "application/x-ndjson",
            "application/vnd.amazon.eventstream",
        ][usize::from(sel % 4)]
        .into(),
        settings: TapSettings {
            capture_response_content: true,
            capture_request_content: true,
            max_content_bytes: 1024,
            max_decoded_bytes: streamtap::config::DEFAULT_MAX_DECODED_BYTES,
            health: streamtap::call::health::Thresholds::default(),
            timeline_entries: Some(16),
        },
        start_us: 1_000_000,
        ..Exchange::stream(path)
    };
    let mut tap = exchange.tap();
    for (i, p) in pieces.iter().enumerate() {
        tap.on_response_body(p, 1_000_000 + i as u64);
    }
    let end = match (sel / 8) % 4 {
        2 => End::Log("upstream_reset_after_response_started{remote_reset}"),
        3 => End::Log("downstream_remote_disconnect"),
        _ => End::EndOfStream,
    };
    let finished = end
        .finish(&mut tap, 2_000_000)
        .expect("first finish gives a summary");
    assert!(tap.finish_at_log("via_upstream", 2_000_001).is_none());
    let mut v: serde_json::Value =
        serde_json::from_str(&finished.summary_json).expect("summary is JSON");
    let o = v.as_object_mut().expect("summary is an object");
    o.remove("chunks");
    // Timings follow the chunk times given above; compare the facts only.
    for k in [
        "ttft_ms",
        "ttfb_ms",
        "duration_ms",
        "max_gap_ms",
        "gap_p50_ms",
        "gap_p99_ms",
        "ttft_tool_ms",
        "output_tokens_per_s",
    ] {
        o.remove(k);
    }
    // How the chunks fell (bursts, events per chunk), and the longest
    // silence between their times, depend on the chunking by design.
    streamtap::replay::remove_chunk_shape(&mut v);
    if let Some(health) = v["stream_health"].as_object_mut() {
        health.remove("longest_stall_ms");
    }
    v
}

fn events(pieces: &[&[u8]], max: usize) -> Vec<(Vec<u8>, Vec<u8>, bool)> {
    let mut d = SseDecoder::new(max);
    let mut out = Vec::new();
    let mut push = |e: streamtap::wire::sse::SseEvent<'_>| {
        out.push((e.name.to_vec(), e.data.to_vec(), e.oversized))
    };
    for p in pieces {
        d.feed(p, &mut push);
    }
    d.finish(&mut push);
    out
}

fuzz_target!(|data: &[u8]| {
    let Some(newline) = data.iter().position(|&b| b == b'\n') else {
        return;
    };
    let (path, rest) = data.split_at(newline);
    let path = String::from_utf8_lossy(path);
    let (Some(&sel), Some(&seed)) = (rest.get(1), rest.get(2)) else {
        return;
    };
    let body = &rest[3..];
    let pieces = chunks(body, seed);
    let whole = summarize(&path, sel, &[body]);
    assert_eq!(whole["bytes"], body.len());
    let chunked = summarize(&path, sel, &pieces);
    assert_eq!(whole, chunked, "the chunking changed the summary");
    let max = if seed.is_multiple_of(2) {
        1 << 20
    } else {
        1 + usize::from(seed)
    };
    assert_eq!(
        events(&[body], max),
        events(&pieces, max),
        "the chunking changed the events"
    );
});
