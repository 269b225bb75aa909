//! Fuzz target: the SSE decoder and every provider adapter through `CallTap`.
//!
//! Input layout: byte 0 picks the request path (`% 4`: chat completions,
//! responses, messages, other), the content type (`/ 4 % 2`: event stream or
//! JSON), the status (`/ 8 % 4`: 200, 200, 429, 500) and how the call ends
//! (`/ 32 % 4`: end of stream, end of stream, upstream reset, client cancel);
//! byte 1 seeds the chunk sizes; the rest is the response body.
//!
//! Checks: nothing panics; the summary is the same whole and chunked (minus
//! `chunks`); `bytes` is the body length; the decoder's events are the same
//! whole and chunked; finishing twice yields nothing.

#![no_main]

use libfuzzer_sys::fuzz_target;
use streamtap::sse::SseDecoder;
use streamtap::tap::{CallTap, TapSettings};

const PATHS: [&str; 4] = [
    "/v1/chat/completions",
    "/v1/responses",
    "/v1/messages",
    "/v1/other",
];

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

fn summarize(sel: u8, pieces: &[&[u8]]) -> serde_json::Value {
    let path = PATHS[usize::from(sel % 4)];
    let ct = if (sel / 4).is_multiple_of(2) {
        "text/event-stream"
    } else {
        "application/json"
    };
    let status = [200u16, 200, 429, 500][usize::from((sel / 8) % 4)];
    let settings = TapSettings {
        capture_response_content: true,
        capture_request_content: true,
        max_content_bytes: 1024,
    };
    let mut tap = CallTap::new(settings, 1_000_000);
    tap.on_request_headers(
        Some("POST".into()),
        Some(path.into()),
        Some("fuzz".into()),
        None,
    );
    tap.on_request_body(
        br#"{"model":"m","stream":true,"messages":[{"role":"user","content":"hi"}]}"#,
    );
    tap.on_request_end();
    tap.on_response_headers(Some(status), Some(ct), None);
    for (i, p) in pieces.iter().enumerate() {
        tap.on_response_body(p, 1_000_000 + i as u64);
    }
    let finished = match (sel / 32) % 4 {
        2 => tap.finish_at_log(
            "upstream_reset_after_response_started{remote_reset}",
            2_000_000,
        ),
        3 => tap.finish_at_log("downstream_remote_disconnect", 2_000_000),
        _ => tap.finish_at_end_of_stream(2_000_000),
    }
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
    ] {
        o.remove(k);
    }
    v
}

fn events(pieces: &[&[u8]], max: usize) -> Vec<(Vec<u8>, Vec<u8>, bool)> {
    let mut d = SseDecoder::new(max);
    let mut out = Vec::new();
    let mut push =
        |e: streamtap::sse::Event<'_>| out.push((e.name.to_vec(), e.data.to_vec(), e.oversized));
    for p in pieces {
        d.feed(p, &mut push);
    }
    d.finish(&mut push);
    out
}

fuzz_target!(|data: &[u8]| {
    let (Some(&sel), Some(&seed)) = (data.first(), data.get(1)) else {
        return;
    };
    let body = &data[2..];
    let pieces = chunks(body, seed);
    let whole = summarize(sel, &[body]);
    assert_eq!(whole["bytes"], body.len());
    let chunked = summarize(sel, &pieces);
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
