//! Soak: many calls through a real Envoy with streamtap (streams, errors,
//! upstream resets, client disconnects, from two clients), sampling Envoy's RSS
//! as they go. Memory must reach a plateau: over the second half of the run it
//! grows less than 5%.
//!
//! `make test` runs 2 000 calls; `make soak` runs 20 000
//! (`STREAMTAP_SOAK_CALLS=N`).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod support;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use support::{chat_request, chat_stream, FaultStack, FAST_EXPORT};
use testbed::client;
use testbed::scripted::{Chunking, End, Script};

const DEFAULT_CALLS: usize = 2_000;
const SAMPLES: usize = 20;
const CLIENTS: usize = 2;
/// Growth allowed over the second half of the run.
const PLATEAU_GROWTH: f64 = 0.05;

#[test]
fn memory_reaches_a_plateau() {
    let calls: usize = std::env::var("STREAMTAP_SOAK_CALLS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(DEFAULT_CALLS);
    let stack = FaultStack::start(FAST_EXPORT);
    let tokens: Vec<String> = (0..40).map(|i| format!(" tok{i}")).collect();
    let token_refs: Vec<&str> = tokens.iter().map(String::as_str).collect();
    let body = chat_stream(&token_refs);
    let cut = body.len() / 2;
    let head = body[..body.find("\n\n").unwrap() + 2].to_string();
    stack.upstream.script(
        "ok",
        Script::sse(body.clone()).chunking(Chunking::Fixed(300)),
    );
    stack
        .upstream
        .script("reset", Script::sse(body.clone()).end(End::ResetAfter(cut)));
    stack
        .upstream
        .script("hold", Script::sse(head.clone()).end(End::Hold));
    stack.upstream.script(
        "error",
        Script::json(429, r#"{"error":{"message":"slow down"}}"#),
    );
    let req = chat_request(true);

    let done = AtomicUsize::new(0);
    let mut samples: Vec<(usize, u64)> = vec![(0, stack.rss())];
    let started = Instant::now();
    std::thread::scope(|scope| {
        for c in 0..CLIENTS {
            let (stack, req, done, body) = (&stack, &req, &done, &body);
            let head_len = head.len();
            scope.spawn(move || loop {
                let i = done.fetch_add(1, Ordering::SeqCst);
                if i >= calls {
                    break;
                }
                let kind = match (i + c) % 100 {
                    13 => "reset",
                    47 => "hold",
                    71 => "error",
                    _ => "ok",
                };
                let headers = [("x-script", kind)];
                let stop = if kind == "hold" { head_len } else { usize::MAX };
                let got = client::post_until(
                    stack.envoy.listener,
                    "/v1/chat/completions",
                    &headers,
                    req,
                    stop,
                )
                .unwrap_or_else(|e| panic!("call {i} ({kind}): {e}"));
                if kind == "ok" {
                    assert!(got.body == body.as_bytes(), "call {i}: body changed");
                }
            });
        }
        // Sample RSS as the calls go.
        let every = calls / SAMPLES;
        let mut next = every;
        while done.load(Ordering::SeqCst) < calls {
            let n = done.load(Ordering::SeqCst);
            if n >= next {
                samples.push((n, stack.rss()));
                next += every;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    });
    let elapsed = started.elapsed();
    let summarized = stack.envoy.wait_for_stat(
        "wasmcustom.streamtap.calls",
        calls as u64,
        Duration::from_secs(30),
    );
    std::thread::sleep(Duration::from_millis(300));
    samples.push((calls, stack.rss()));
    let mb = |b: u64| b as f64 / (1 << 20) as f64;
    let line: Vec<String> = samples
        .iter()
        .map(|(n, r)| format!("{n}:{:.1}", mb(*r)))
        .collect();
    eprintln!(
        "soak: {calls} calls in {elapsed:.1?} ({:.0}/s), summarized {summarized}, exported {}, dropped {}\nRSS MB by call: {}",
        calls as f64 / elapsed.as_secs_f64(),
        stack.envoy.stat("wasmcustom.streamtap.summaries_exported"),
        stack.envoy.stat("wasmcustom.streamtap.summaries_dropped"),
        line.join(" ")
    );
    assert_eq!(summarized, calls as u64, "one summary per call");
    let mid = samples
        .iter()
        .find(|(n, _)| *n >= calls / 2)
        .map(|(_, r)| *r)
        .unwrap();
    let last_half_max = samples
        .iter()
        .filter(|(n, _)| *n >= calls / 2)
        .map(|(_, r)| *r)
        .max()
        .unwrap();
    let growth = last_half_max as f64 / mid as f64 - 1.0;
    eprintln!(
        "RSS at half-way {:.1} MB, max over the second half {:.1} MB: {:+.1}%",
        mb(mid),
        mb(last_half_max),
        growth * 100.0
    );
    assert!(
        growth < PLATEAU_GROWTH,
        "Envoy RSS grew {:.1}% over the second half (samples: {})",
        growth * 100.0,
        line.join(" ")
    );
    stack.assert_vm_healthy();
}
