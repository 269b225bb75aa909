//! Fuzz target: the streamed-JSON-array framing on its own.
//!
//! Input: byte 0 seeds the chunk sizes and the element cap; the rest is the
//! body. Checks: nothing panics; the elements are the same whole and
//! chunked; none handed on is longer than the cap; every element that is
//! not oversized begins with `{` or `[` and ends with `}` or `]`.

#![no_main]

use libfuzzer_sys::fuzz_target;
use streamtap::wire::json_array::{Element, ElementDecoder};

fn elements(pieces: &[&[u8]], max: usize) -> Vec<(Vec<u8>, bool)> {
    let mut d = ElementDecoder::new(max);
    let mut out = Vec::new();
    let mut push = |e: Element<'_>| {
        assert!(e.data.len() <= max);
        if !e.oversized {
            let ends = (e.data.first(), e.data.last());
            // Depth is tracked, not which bracket closes: the JSON reader
            // refuses a `{...]` as it refuses any other malformed element.
            assert!(
                matches!(ends, (Some(b'{' | b'['), Some(b'}' | b']'))),
                "{ends:?}"
            );
        }
        out.push((e.data.to_vec(), e.oversized))
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
    assert_eq!(elements(&[body], max), elements(&pieces, max), "the chunking changed the elements");
});
