//! Fuzz target: the NDJSON line decoder on its own.
//!
//! Input: byte 0 seeds the chunk sizes and the line cap; the rest is the body.
//! Checks: nothing panics; the lines are the same whole and chunked; no line
//! handed on is longer than the cap or holds a line break.

#![no_main]

use libfuzzer_sys::fuzz_target;
use streamtap::wire::ndjson::{Line, LineDecoder};

fn lines(pieces: &[&[u8]], max: usize) -> Vec<(Vec<u8>, bool)> {
    let mut d = LineDecoder::new(max);
    let mut out = Vec::new();
    let mut push = |l: Line<'_>| {
        assert!(l.data.len() <= max && !l.data.contains(&b'\n'));
        out.push((l.data.to_vec(), l.oversized))
    };
    for p in pieces {
        d.feed(p, &mut push);
    }
    d.finish(&mut push);
    out
}

fuzz_target!(|data: &[u8]| {
    let Some((&seed, body)) = data.split_first() else {
        return;
    };
    let max = 1 + usize::from(seed % 64) * 16;
    let size = 1 + usize::from(seed / 64);
    let pieces: Vec<&[u8]> = body.chunks(size).collect();
    assert_eq!(lines(&[body], max), lines(&pieces, max), "the chunking changed the lines");
});
