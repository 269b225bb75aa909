//! Every wire-format fixture in `tests/fixtures/<format>/` run through the
//! whole core (`CallTap`): whole, split at every byte offset, in random
//! chunkings and gzip-compressed, always giving the same summary, which must
//! equal the reviewed `<fixture>.expected.json` beside it (e.g.
//! `text.sse.expected.json`).
//! `STREAMTAP_BLESS=1 cargo test fixtures` rewrites the expected files.
//! `STREAMTAP_SUMMARIES_OUT=FILE cargo test fixtures` writes each fixture's raw summary
//! JSON (one line each, as the filter emits it), so two commits can be diffed byte for byte.

use crate::decompress::tests::gzip;
use crate::tap::{CallTap, TapSettings};
use serde_json::Value;
use std::path::{Path, PathBuf};

const START_US: u64 = 1_764_000_000_000_000;
const NOW_US: u64 = START_US + 250_000;

struct Fixture {
    path: PathBuf,
    request_path: &'static str,
    request_body: Option<Vec<u8>>,
    status: u16,
    content_type: &'static str,
    body: Vec<u8>,
}

fn fixtures() -> Vec<Fixture> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let mut out = Vec::new();
    for (dir, request_path) in [
        ("openai-chat", "/v1/chat/completions"),
        ("openai-responses", "/v1/responses"),
        ("anthropic", "/v1/messages"),
        ("unknown", "/v1/other"),
    ] {
        let dir = root.join(dir);
        let request_body = std::fs::read(dir.join("request.json")).ok();
        let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| {
                let name = p.file_name().unwrap().to_string_lossy().to_string();
                !name.ends_with(".expected.json") && name != "request.json"
            })
            .collect();
        files.sort();
        for path in files {
            let name = path.file_stem().unwrap().to_string_lossy().to_string();
            // `error-429.json`: the status the provider answered with.
            let status = name
                .strip_prefix("error-")
                .and_then(|s| s.parse().ok())
                .unwrap_or(200);
            let content_type = if path.extension().unwrap() == "sse" {
                "text/event-stream"
            } else {
                "application/json"
            };
            out.push(Fixture {
                body: std::fs::read(&path).unwrap(),
                path,
                request_path,
                request_body: request_body.clone(),
                status,
                content_type,
            });
        }
    }
    assert!(out.len() >= 20, "fixtures missing: {}", out.len());
    out
}

fn summarize(f: &Fixture, chunks: &[&[u8]], encoding: Option<&str>) -> Value {
    let mut summary: Value = serde_json::from_str(&raw_summary(f, chunks, encoding)).unwrap();
    // Wire-level counts depend on the chunking and the encoding, nothing else may.
    let fields = summary.as_object_mut().unwrap();
    fields.remove("chunks");
    fields.remove("bytes");
    summary
}

fn raw_summary(f: &Fixture, chunks: &[&[u8]], encoding: Option<&str>) -> String {
    let settings = TapSettings {
        capture_response_content: true,
        capture_request_content: false,
        max_content_bytes: 65_536,
    };
    let mut tap = CallTap::new(settings, START_US);
    tap.on_request_headers(
        Some("POST".into()),
        Some(f.request_path.into()),
        Some("fixture".into()),
        None,
    );
    if let Some(body) = &f.request_body {
        tap.on_request_body(body);
    }
    tap.on_request_end();
    tap.on_response_headers(Some(f.status), Some(f.content_type), encoding);
    for chunk in chunks {
        tap.on_response_body(chunk, NOW_US);
    }
    tap.finish_at_end_of_stream(NOW_US).unwrap().summary_json
}

/// xorshift: deterministic random chunkings without a dependency.
fn random_cuts(len: usize, seed: u64) -> Vec<usize> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut cuts = vec![0];
    let mut at = 0;
    while at < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        at = (at + 1 + (x % 97) as usize).min(len);
        cuts.push(at);
    }
    cuts
}

fn chunked<'a>(bytes: &'a [u8], cuts: &[usize]) -> Vec<&'a [u8]> {
    cuts.windows(2).map(|w| &bytes[w[0]..w[1]]).collect()
}

#[test]
fn fixtures_match_their_expected_summaries_in_every_chunking() {
    let bless = std::env::var_os("STREAMTAP_BLESS").is_some();
    let mut raw_out = String::new();
    for f in fixtures() {
        let name = f.path.display().to_string();
        let root = concat!(env!("CARGO_MANIFEST_DIR"), "/");
        let short = name.strip_prefix(root).unwrap_or(&name);
        raw_out += &format!("{short}\t{}\n", raw_summary(&f, &[&f.body], None));
        let whole = summarize(&f, &[&f.body], None);
        assert_eq!(whole["parse_errors"], 0, "{name}: {whole:#}");

        let expected_path = PathBuf::from(format!("{}.expected.json", f.path.display()));
        if bless {
            std::fs::write(
                &expected_path,
                serde_json::to_string_pretty(&whole).unwrap() + "\n",
            )
            .unwrap();
        }
        let expected: Value =
            serde_json::from_slice(&std::fs::read(&expected_path).unwrap_or_else(|_| {
                panic!("{name}: no expected file; run with STREAMTAP_BLESS=1")
            }))
            .unwrap();
        assert_eq!(
            whole, expected,
            "{name}: summary differs from its expected file"
        );

        for cut in 0..=f.body.len() {
            let (a, b) = f.body.split_at(cut);
            assert_eq!(
                summarize(&f, &[a, b], None),
                whole,
                "{name}: split at {cut}"
            );
        }
        for seed in 1..=20 {
            let cuts = random_cuts(f.body.len(), seed);
            assert_eq!(
                summarize(&f, &chunked(&f.body, &cuts), None),
                whole,
                "{name}: seed {seed}"
            );
        }
        let compressed = gzip(&f.body);
        for seed in 1..=5 {
            let cuts = random_cuts(compressed.len(), seed);
            let got = summarize(&f, &chunked(&compressed, &cuts), Some("gzip"));
            assert_eq!(got, whole, "{name}: gzip, seed {seed}");
        }
    }
    if let Some(out) = std::env::var_os("STREAMTAP_SUMMARIES_OUT") {
        std::fs::write(out, raw_out).unwrap();
    }
}

#[test]
fn brotli_is_marked_undecoded_and_never_guessed() {
    let f = fixtures()
        .into_iter()
        .find(|f| f.path.ends_with("openai-chat/text.sse"))
        .unwrap();
    let s = summarize(&f, &[b"\x1b\x00\x00 not really brotli"], Some("br"));
    assert_eq!(s["undecoded_encoding"], "br");
    assert_eq!(s["content"], "");
    assert_eq!(s["parse_errors"], 0);
}

#[test]
fn corrupt_gzip_is_counted_not_fatal() {
    let f = fixtures()
        .into_iter()
        .find(|f| f.path.ends_with("openai-chat/text.sse"))
        .unwrap();
    let s = summarize(&f, &[&f.body], Some("gzip"));
    assert_eq!(s["parse_errors"], 1);
    assert_eq!(s["outcome"], "incomplete");
}
