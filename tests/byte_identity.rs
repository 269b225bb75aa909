//! Byte identity at volume: 2 000 generated streams of random sizes, contents
//! and chunkings (fixed seed) through a real Envoy with streamtap, from four
//! concurrent clients. For each stream the client's body hashes the same as the
//! bytes the upstream wrote, and the filter saw every byte (`bytes` in its
//! summary).
//!
//! `STREAMTAP_VOLUME_STREAMS=N` changes the number of streams,
//! `STREAMTAP_VOLUME_SEED=S` the seed.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod support;

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};
use support::{chat_event, chat_request, chat_stream, next_id, FaultStack, FAST_EXPORT};
use testbed::client;
use testbed::scripted::{Chunking, Script};

const STREAMS: usize = 2_000;
const CLIENTS: usize = 4;
const SEED: u64 = 0x5eed_0005_u64;

/// xorshift64*: small, deterministic, good enough to vary test inputs.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

/// FNV-1a, 64 bits.
fn fnv(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

const PATHS: &[&str] = &[
    "/v1/chat/completions",
    "/v1/responses",
    "/v1/messages",
    "/v1/other",
];

struct Generated {
    path: &'static str,
    body: Vec<u8>,
    chunking: Chunking,
}

fn generate(rng: &mut Rng) -> Generated {
    let path = PATHS[rng.below(PATHS.len() as u64) as usize];
    // Sizes: mostly small, some large (up to ~512 KB).
    let target = match rng.below(10) {
        0..=5 => rng.below(2_000),
        6..=8 => rng.below(40_000),
        _ => rng.below(512_000),
    } as usize;
    let body = match rng.below(3) {
        // A well-formed chat stream with random tokens.
        0 => {
            let words = ["a", " b", "é", " 日本", "\\n", " ok", "🙂", " x y"];
            let mut tokens = Vec::new();
            let mut len = 0;
            while len < target {
                let w = words[rng.below(words.len() as u64) as usize];
                len += chat_event(w).len();
                tokens.push(w);
            }
            chat_stream(&tokens).into_bytes()
        }
        // Random bytes with SSE-looking structure sprinkled in.
        1 => {
            let pieces: [&[u8]; 8] = [
                b"data: ",
                b"\n",
                b"\r\n",
                b"\r",
                b"\n\n",
                b"event: x\n",
                b": c\n",
                b"{\"",
            ];
            let mut b = Vec::with_capacity(target);
            while b.len() < target {
                if rng.below(4) == 0 {
                    b.extend_from_slice(pieces[rng.below(8) as usize]);
                } else {
                    let n = rng.below(64) as usize;
                    b.extend((0..n).map(|_| rng.next() as u8));
                }
            }
            b
        }
        // Pure random bytes.
        _ => (0..target).map(|_| rng.next() as u8).collect(),
    };
    let chunking = match rng.below(4) {
        0 => Chunking::Whole,
        1 => Chunking::Fixed(1 + rng.below(8) as usize),
        2 => Chunking::Fixed(1 + rng.below(70_000) as usize),
        _ => Chunking::Sizes(
            (0..1 + rng.below(6))
                .map(|_| 1 + rng.below(5_000) as usize)
                .collect(),
        ),
    };
    // Byte-sized writes of a big body take long: cap them.
    let chunking = match chunking {
        Chunking::Fixed(n) if n < 64 && body.len() > 20_000 => Chunking::Fixed(n * 512),
        c => c,
    };
    Generated {
        path,
        body,
        chunking,
    }
}

#[test]
fn generated_streams_arrive_byte_identical() {
    let streams: usize = std::env::var("STREAMTAP_VOLUME_STREAMS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(STREAMS);
    let seed: u64 = std::env::var("STREAMTAP_VOLUME_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(SEED);
    let stack = FaultStack::start_with(FAST_EXPORT, |o| o.with_concurrency(2));
    let req = chat_request(true);
    let started = Instant::now();
    // request id -> (body length, hash), from the upstream's side.
    let sent_by_rid: Mutex<HashMap<String, (usize, u64)>> = Mutex::default();
    let totals = Mutex::new((0usize, 0usize, Vec::<String>::new())); // streams, bytes, mismatches
    std::thread::scope(|scope| {
        for c in 0..CLIENTS {
            let stack = &stack;
            let req = &req;
            let sent_by_rid = &sent_by_rid;
            let totals = &totals;
            scope.spawn(move || {
                let mut rng = Rng(seed ^ (c as u64 + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15));
                for i in (c..streams).step_by(CLIENTS) {
                    let g = generate(&mut rng);
                    let id = next_id("v");
                    stack
                        .upstream
                        .script(&id, Script::sse(g.body.clone()).chunking(g.chunking.clone()));
                    let got = client::post(
                        stack.envoy.listener,
                        g.path,
                        &[("x-script", id.as_str())],
                        req,
                    )
                    .unwrap_or_else(|e| panic!("stream {i}: {e}"));
                    let served = stack
                        .upstream
                        .wait_served(&id, Duration::from_secs(30))
                        .unwrap();
                    stack.upstream.forget(&id);
                    let (h_client, h_upstream) = (fnv(&got.body), fnv(&served.sent));
                    let mut t = totals.lock().unwrap();
                    t.0 += 1;
                    t.1 += served.sent.len();
                    if h_client != h_upstream || served.sent != g.body || !served.complete {
                        t.2.push(format!(
                            "stream {i} ({} {:?}): client {} bytes #{h_client:016x}, upstream {} bytes #{h_upstream:016x}",
                            g.path, g.chunking, got.body.len(), served.sent.len()
                        ));
                    }
                    let rid = served.header("x-request-id").unwrap().to_string();
                    sent_by_rid
                        .lock()
                        .unwrap()
                        .insert(rid, (served.sent.len(), h_upstream));
                }
            });
        }
    });
    let (count, bytes, mismatches) = totals.into_inner().unwrap();
    let elapsed = started.elapsed();
    eprintln!(
        "byte identity: {count} streams, {bytes} bytes ({:.1} MB) compared by FNV-1a hash in {elapsed:.1?}, {} mismatches",
        bytes as f64 / 1e6,
        mismatches.len()
    );
    assert!(mismatches.is_empty(), "{}", mismatches.join("\n"));
    assert_eq!(count, streams);

    // The filter saw every stream and every byte of it.
    let summaries = stack
        .collector
        .wait_for_calls(streams, Duration::from_secs(20));
    let sent_by_rid = sent_by_rid.into_inner().unwrap();
    let mut seen = 0;
    for s in &summaries {
        let rid = s["id"].as_str().unwrap();
        let (len, _) = sent_by_rid
            .get(rid)
            .unwrap_or_else(|| panic!("unknown id {rid}"));
        assert_eq!(s["bytes"], *len, "{s}");
        seen += 1;
    }
    assert_eq!(seen, streams, "one summary per stream");
    assert_eq!(
        stack.envoy.stat("wasmcustom.streamtap.calls"),
        streams as u64
    );
    stack.assert_vm_healthy();
}
