//! Property tests of the pure core (proptest): the SSE decoder, every provider
//! adapter through `CallTap`, and the JSON pull reader, over random inputs and
//! random chunkings. Inputs: the wire-format fixtures, fixtures with random
//! bytes flipped, inserted or cut, and arbitrary bytes.
//!
//! Properties: nothing panics; the chunking never changes the result (the
//! decoder's events; the summary minus `chunks`); `bytes` is the body length;
//! any JSON serde_json writes is read by `streamtap::wire::json::Json`.
//!
//! 256 cases per property by default (`PROPTEST_CASES=N` for a longer run;
//! `make fuzz` runs them long when `cargo fuzz` cannot run).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use proptest::prelude::*;
use proptest::test_runner::Config;
use serde_json::Value;
use std::path::Path;
use std::sync::OnceLock;
use streamtap::call::tap::TapSettings;
use streamtap::replay::{End, Exchange};
use streamtap::wire::json::Json;
use streamtap::wire::sse::SseDecoder;

const START_US: u64 = 1_764_000_000_000_000;
const NOW_US: u64 = START_US + 250_000;

const PATHS: &[&str] = &[
    "/v1/chat/completions",
    "/v1/responses",
    "/v1/messages",
    "/v1/other",
    "/api/chat",
    "/api/generate",
    "/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse&key=AIzaSyFAKE-never-in-a-summary",
    "/v1beta/models/gemini-2.5-flash:streamGenerateContent",
    "/v1beta/models/gemini-2.5-flash:generateContent",
    "/v1/projects/demo-project/locations/us-central1/publishers/google/models/gemini-2.0-flash-001:streamGenerateContent?alt=sse",
    "/v1/projects/demo-project/locations/us-east5/publishers/anthropic/models/claude-sonnet-4@20250514:streamRawPredict",
    "/model/anthropic.claude-3-5-sonnet-20240620-v1%3A0/converse-stream",
    "/model/arn%3Aaws%3Abedrock%3Aus-east-1%3A123456789012%3Ainference-profile%2Fus.anthropic.claude-3-5-sonnet-20241022-v2%3A0/invoke-with-response-stream",
];

fn config() -> Config {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(256);
    Config {
        cases,
        // Failures are reported with their minimal input; no files written.
        failure_persistence: None,
        ..Config::default()
    }
}

/// (request path, content type, body) of every fixture.
fn fixtures() -> &'static [(usize, String, Vec<u8>)] {
    static F: OnceLock<Vec<(usize, String, Vec<u8>)>> = OnceLock::new();
    F.get_or_init(|| {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
        let mut out = Vec::new();
        // In the order of `PATHS`.
        for (i, dir) in [
            "openai-chat",
            "openai-responses",
            "anthropic",
            "unknown",
            "ollama-chat",
            "ollama-generate",
            "gemini",
            "gemini-array",
            "gemini-generate",
            "vertex-gemini",
            "vertex-anthropic",
            "bedrock-converse",
            "bedrock-invoke",
        ]
        .iter()
        .enumerate()
        {
            let mut files: Vec<_> = std::fs::read_dir(root.join(dir))
                .unwrap()
                .map(|e| e.unwrap().path())
                .filter(|p| {
                    let n = p.file_name().unwrap().to_string_lossy();
                    !n.ends_with(".expected.json") && n != "request.json"
                })
                .collect();
            files.sort();
            for p in files {
                let name = p.file_name().unwrap().to_string_lossy();
                // `request.path` is no response.
                let Some(ct) = streamtap::replay::fixture_content_type(&name) else {
                    continue;
                };
                out.push((i, ct.to_string(), std::fs::read(&p).unwrap()));
            }
        }
        assert!(out.len() >= 20);
        out
    })
}

/// A body: a fixture, a mutated fixture, or arbitrary bytes; with a path and
/// content type (mostly the fixture's own, sometimes another).
fn input() -> impl Strategy<Value = (usize, String, Vec<u8>)> {
    let n = fixtures().len();
    let fixture = (0..n).prop_map(|i| fixtures()[i].clone());
    let mutated = (
        0..n,
        prop::collection::vec((any::<prop::sample::Index>(), any::<u8>(), 0u8..4), 1..8),
    )
        .prop_map(|(i, edits)| {
            let (p, ct, mut body) = fixtures()[i].clone();
            for (at, byte, kind) in edits {
                if body.is_empty() {
                    body.push(byte);
                    continue;
                }
                let at = at.index(body.len());
                match kind {
                    0 => body[at] = byte,
                    1 => body.insert(at, byte),
                    2 => {
                        body.remove(at);
                    }
                    _ => body.truncate(at),
                }
            }
            (p, ct, body)
        });
    let arbitrary = (
        0..PATHS.len(),
        prop_oneof![
            Just("text/event-stream"),
            Just("application/json"),
            Just("application/x-ndjson"),
            Just("application/vnd.amazon.eventstream")
        ],
        prop::collection::vec(any::<u8>(), 0..2048),
    )
        .prop_map(|(p, ct, b)| (p, ct.to_string(), b));
    let sse_alphabet = prop::collection::vec(
        prop_oneof![
            Just(b"data: ".to_vec()),
            Just(b"data:".to_vec()),
            Just(b"event: ".to_vec()),
            Just(b"id: 1".to_vec()),
            Just(b": comment".to_vec()),
            Just(b"\n".to_vec()),
            Just(b"\r".to_vec()),
            Just(b"\r\n".to_vec()),
            Just(b"\n\n".to_vec()),
            Just(b"{\"choices\":[{\"delta\":{\"content\":\"x\"}}]}".to_vec()),
            Just(b"[DONE]".to_vec()),
            Just(b"\xff\xc3".to_vec()),
            prop::collection::vec(any::<u8>(), 0..8),
        ],
        0..200,
    )
    .prop_map(|parts| parts.concat());
    let sse_like =
        (0..PATHS.len(), sse_alphabet).prop_map(|(p, b)| (p, "text/event-stream".to_string(), b));
    prop_oneof![fixture, mutated, arbitrary, sse_like]
}

/// Cut points: sizes of successive chunks (cycled), 1..=max.
fn cuts() -> impl Strategy<Value = Vec<usize>> {
    prop_oneof![
        prop::collection::vec(1usize..4, 1..16),
        prop::collection::vec(1usize..200, 1..16),
        prop::collection::vec(1usize..5000, 1..4),
    ]
}

fn split<'a>(body: &'a [u8], sizes: &[usize]) -> Vec<&'a [u8]> {
    let mut out = Vec::new();
    let mut at = 0;
    let mut i = 0;
    while at < body.len() {
        let end = (at + sizes[i % sizes.len()].max(1)).min(body.len());
        out.push(&body[at..end]);
        at = end;
        i += 1;
    }
    out
}

type Ev = (Vec<u8>, Vec<u8>, bool);

fn decode(chunks: &[&[u8]], max: usize) -> Vec<Ev> {
    let mut d = SseDecoder::new(max);
    let mut events = Vec::new();
    let mut push = |e: streamtap::wire::sse::SseEvent<'_>| {
        events.push((e.name.to_vec(), e.data.to_vec(), e.oversized))
    };
    for c in chunks {
        d.feed(c, &mut push);
    }
    d.finish(&mut push);
    events
}

fn summarize(path: &str, ct: &str, status: u16, chunks: &[&[u8]], end: Option<&str>) -> Value {
    let exchange = Exchange {
        request_id: Some("prop".into()),
        traceparent: Some("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01".into()),
        request_body: Some(
            br#"{"model":"m","stream":true,"messages":[{"role":"user","content":"hi"}]}"#.to_vec(),
        ),
        status,
        content_type: ct.into(),
        settings: TapSettings {
            capture_response_content: true,
            capture_request_content: true,
            max_content_bytes: 4096,
            max_decoded_bytes: streamtap::config::DEFAULT_MAX_DECODED_BYTES,
            health: streamtap::call::health::Thresholds::default(),
            timeline_entries: Some(16),
        },
        start_us: START_US,
        ..Exchange::stream(path)
    };
    let mut tap = exchange.tap();
    for c in chunks {
        tap.on_response_body(c, NOW_US);
    }
    let end = end.map_or(End::EndOfStream, End::Log);
    let finished = end.finish(&mut tap, NOW_US).unwrap();
    // Finishing twice gives nothing: one summary per call.
    assert!(tap.finish_at_log("via_upstream", NOW_US).is_none());
    assert!(tap.finish_at_end_of_stream(NOW_US).is_none());
    let mut v: Value = serde_json::from_str(&finished.summary_json).unwrap();
    assert_eq!(v["parse_errors"], finished.parse_errors);
    assert_eq!(v["events"], finished.events);
    v.as_object_mut().unwrap().remove("chunks");
    // How the body was cut into chunks shows in the chunk shape and the
    // timeline's entries, and nowhere else.
    streamtap::replay::remove_chunk_shape(&mut v);
    v
}

/// A JSON value of bounded depth, for the reader's differential property.
fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        (-1e300f64..1e300).prop_map(Value::from),
        ".{0,20}".prop_map(Value::String),
    ];
    leaf.prop_recursive(6, 64, 8, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..8).prop_map(Value::Array),
            prop::collection::btree_map(".{0,8}", inner, 0..8)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn decoder_events_do_not_depend_on_the_chunking(
        (_, _, body) in input(),
        sizes in cuts(),
        max in prop_oneof![Just(1usize << 20), 1usize..256],
    ) {
        let whole = decode(&[&body], max);
        let pieces = split(&body, &sizes);
        let chunked = decode(&pieces, max);
        prop_assert_eq!(&chunked, &whole);
        // Byte by byte too.
        let bytes: Vec<&[u8]> = body.chunks(1).collect();
        prop_assert_eq!(&decode(&bytes, max), &whole);
        // An event never carries more than the cap.
        for (name, data, oversized) in &whole {
            prop_assert!(data.len() <= max && name.len() <= max.max(1) || *oversized);
        }
    }

    #[test]
    fn summaries_do_not_depend_on_the_chunking(
        (fixture_path, ct, body) in input(),
        path_choice in prop::option::of(0..PATHS.len()),
        sizes in cuts(),
        status in prop_oneof![4 => Just(200u16), 1 => Just(429u16), 1 => Just(500u16)],
        end in prop_oneof![
            3 => Just(None),
            1 => Just(Some("upstream_reset_after_response_started{remote_reset}")),
            1 => Just(Some("downstream_remote_disconnect")),
        ],
    ) {
        let path = PATHS[path_choice.unwrap_or(fixture_path)];
        let whole = summarize(path, &ct, status, &[&body], end);
        prop_assert_eq!(&whole["bytes"], &Value::from(body.len()));
        let pieces = split(&body, &sizes);
        let chunked = summarize(path, &ct, status, &pieces, end);
        prop_assert_eq!(&chunked, &whole);
        // Content is capped.
        let content = whole["content"].as_str().unwrap_or("");
        prop_assert!(content.len() <= 4096);
        if path == "/v1/other" {
            prop_assert_eq!(&whole["content"], &Value::from(""));
        }
    }

    #[test]
    fn the_json_reader_reads_any_json_serde_writes(v in json_value()) {
        let text = serde_json::to_string(&v).unwrap();
        let raw = Json::parse(text.as_bytes(), |j| j.raw_value()).unwrap();
        prop_assert_eq!(raw, text.as_str());
        let pretty = serde_json::to_string_pretty(&v).unwrap();
        prop_assert!(Json::parse(pretty.as_bytes(), |j| j.skip()).is_ok());
    }

    #[test]
    fn the_json_reader_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        let ours = Json::parse(&bytes, |j| j.skip()).is_ok();
        // What serde_json accepts, the reader accepts (it is laxer, never stricter).
        if serde_json::from_slice::<Value>(&bytes).is_ok() {
            prop_assert!(ours, "refused valid JSON {:?}", String::from_utf8_lossy(&bytes));
        }
    }
}

#[test]
fn deep_nesting_is_refused_without_overflowing_the_stack() {
    for open in [b'[', b'{'] {
        let mut b = vec![open; 200_000];
        if open == b'{' {
            b = b"{\"a\":".repeat(200_000);
        }
        assert!(Json::parse(&b, |j| j.skip()).is_err());
    }
}
