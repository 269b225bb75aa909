//! Fuzz target: the AWS event-stream framing on its own.
//!
//! Input: byte 0 seeds the chunk sizes and the frame cap; the rest is the
//! body. Checks: nothing panics; the frames are the same whole and chunked;
//! no payload is longer than the cap.

#![no_main]

use libfuzzer_sys::fuzz_target;
use streamtap::wire::eventstream::{Frame, FrameDecoder};

type Seen = Vec<(Vec<u8>, bool, Vec<u8>, bool)>;

fn frames(pieces: &[&[u8]], max: usize) -> Seen {
    let mut d = FrameDecoder::new(max);
    let mut out = Vec::new();
    let mut push = |f: Frame<'_>| {
        assert!(f.payload.len() <= max);
        out.push((f.event_type.to_vec(), f.exception, f.payload.to_vec(), f.bad))
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
    let max = 16 + usize::from(seed % 64) * 32;
    let size = 1 + usize::from(seed / 64);
    let pieces: Vec<&[u8]> = body.chunks(size).collect();
    assert_eq!(frames(&[body], max), frames(&pieces, max), "the chunking changed the frames");
});
