//! Every wire-format fixture in `tests/fixtures/<format>/` run through the
//! whole core (`CallTap`): whole, split at every byte offset, in random
//! chunkings and gzip-compressed, always giving the same summary, which must
//! equal the reviewed `<fixture>.expected.json` beside it (e.g.
//! `text.sse.expected.json`).
//! `STREAMTAP_BLESS=1 cargo test fixtures` rewrites the expected files.
//! `STREAMTAP_SUMMARIES_OUT=FILE cargo test fixtures` writes each fixture's raw summary
//! JSON (one line each, as the filter emits it), so two commits can be diffed byte for byte.

use crate::replay::{self, End, Fixture};
use crate::wire::decompress::tests::gzip;
use serde_json::Value;
use std::path::PathBuf;

const NOW_US: u64 = 1_764_000_000_000_000 + 250_000;

fn fixtures() -> Vec<Fixture> {
    let out = replay::fixtures().unwrap();
    assert!(out.len() >= 20, "fixtures missing: {}", out.len());
    out
}

fn summarize(f: &Fixture, chunks: &[&[u8]], encoding: Option<&str>) -> Value {
    let mut summary: Value = serde_json::from_str(&raw_summary(f, chunks, encoding)).unwrap();
    // Wire-level counts depend on the chunking and the encoding, nothing else may.
    let fields = summary.as_object_mut().unwrap();
    fields.remove("chunks");
    fields.remove("bytes");
    crate::replay::remove_chunk_shape(&mut summary);
    summary
}

fn raw_summary(f: &Fixture, chunks: &[&[u8]], encoding: Option<&str>) -> String {
    let exchange = replay::Exchange {
        content_encoding: encoding.map(str::to_string),
        ..f.exchange.clone()
    };
    let chunks = chunks.iter().map(|c| (*c, NOW_US));
    exchange
        .replay(chunks, End::EndOfStream, NOW_US)
        .unwrap()
        .summary_json
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
        let name = f.file.display().to_string();
        let root = concat!(env!("CARGO_MANIFEST_DIR"), "/");
        let short = name.strip_prefix(root).unwrap_or(&name);
        raw_out += &format!("{short}\t{}\n", raw_summary(&f, &[&f.body], None));
        let whole = summarize(&f, &[&f.body], None);
        assert_eq!(whole["parse_errors"], 0, "{name}: {whole:#}");

        let expected_path = PathBuf::from(format!("{}.expected.json", f.file.display()));
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
        .find(|f| f.file.ends_with("openai-chat/text.sse"))
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
        .find(|f| f.file.ends_with("openai-chat/text.sse"))
        .unwrap();
    let s = summarize(&f, &[&f.body], Some("gzip"));
    assert_eq!(s["parse_errors"], 1);
    assert_eq!(s["outcome"], "incomplete");
}

#[test]
fn every_format_sends_an_end_marker_that_is_read() {
    let all = fixtures();
    for &api in crate::provider::Api::KNOWN {
        let streams: Vec<&Fixture> = all
            .iter()
            .filter(|f| {
                crate::provider::Api::from_path(&f.exchange.path) == api
                    && f.exchange.content_type != "application/json"
            })
            .collect();
        let completed = streams
            .into_iter()
            .filter(|f| summarize(f, &[&f.body], None)["outcome"] == "completed");
        let mut seen = 0;
        for f in completed {
            seen += 1;
            let s = summarize(f, &[&f.body], None);
            assert_eq!(
                s["stream_health"]["end_marker"],
                true,
                "{}: the end marker of {api:?} ({:?}) was not seen",
                f.file.display(),
                api.end_marker()
            );
            // Without its last event the same stream is truncated (or
            // incomplete after an error): never completed.
            let body = String::from_utf8_lossy(&f.body);
            let cut = body.trim_end().rfind("\n\n").map_or(0, |i| i + 2);
            let s = summarize(f, &[&f.body[..cut]], None);
            assert_ne!(s["outcome"], "completed", "{}", f.file.display());
            assert_eq!(s["stream_health"]["end_marker"], false);
        }
        assert!(seen > 0, "{api:?}: no completed stream fixture");
    }
}
