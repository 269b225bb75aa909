//! Micro-benchmarks of the pure core: what streamtap's per-chunk path costs
//! before the host is involved. `cargo bench -p streamtap-bench --bench core`
//! (add `-- --noplot` or a filter such as `-- call_tap`). The calls are set up
//! by `streamtap::replay::Exchange`, the way the shell drives the core.
//!
//! - `sse_decoder/events_per_chunk/K`: the SSE decoder alone, one chunk of K
//!   typical OpenAI content-delta events (events counted, data untouched).
//! - `call_tap/events_per_chunk/K`: the same chunk through `CallTap`, exactly
//!   as the filter's `on_response_body` does: chunk accounting, SSE decoding,
//!   the OpenAI adapter (JSON parse, content capture, gap timings).
//! - `call_tap/call_50_events`: one whole call as `make bench` sends it
//!   (request headers and body, response headers, 50 content deltas one per
//!   chunk, a usage event, `[DONE]`, the summary JSON), per event.
//!
//! Throughput is in events: criterion prints events/s as `thrpt`; ns per
//! event is 1e9 / thrpt.

// Bench code, not filter code: the crate's deny lints are for the shell.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use std::hint::black_box;
use std::time::Duration;
use streamtap::call::tap::{CallTap, MAX_EVENT_BYTES};
use streamtap::replay::{End, Exchange};
use streamtap::wire::sse::SseDecoder;

const MODEL: &str = "gpt-4o-mini-2024-07-18";
const ID: &str = "chatcmpl-BnA9xQz3kYV0cG7mW2rT5uLhJdE8p";
/// A typical answer, one word per delta (OpenAI sends ~1 token per event).
const ANSWER: &str = "The quick brown fox jumps over the lazy dog. Streaming responses \
                      arrive token by token, each in its own event.";

/// One `chat.completion.chunk` content delta as OpenAI sends it (~230 bytes).
fn delta_event(i: usize) -> String {
    let words: Vec<&str> = ANSWER.split(' ').collect();
    let word = words[i % words.len()];
    let space = if i.is_multiple_of(words.len()) {
        ""
    } else {
        " "
    };
    format!(
        "data: {{\"id\":\"{ID}\",\"object\":\"chat.completion.chunk\",\"created\":1764000000,\
         \"model\":\"{MODEL}\",\"service_tier\":\"default\",\"system_fingerprint\":\"fp_560af6e559\",\
         \"choices\":[{{\"index\":0,\"delta\":{{\"content\":\"{space}{word}\"}},\"logprobs\":null,\
         \"finish_reason\":null}}]}}\n\n"
    )
}

fn role_event() -> String {
    format!(
        "data: {{\"id\":\"{ID}\",\"object\":\"chat.completion.chunk\",\"created\":1764000000,\
         \"model\":\"{MODEL}\",\"service_tier\":\"default\",\"system_fingerprint\":\"fp_560af6e559\",\
         \"choices\":[{{\"index\":0,\"delta\":{{\"role\":\"assistant\",\"content\":\"\",\"refusal\":null}},\
         \"logprobs\":null,\"finish_reason\":null}}]}}\n\n"
    )
}

fn finish_event() -> String {
    format!(
        "data: {{\"id\":\"{ID}\",\"object\":\"chat.completion.chunk\",\"created\":1764000000,\
         \"model\":\"{MODEL}\",\"service_tier\":\"default\",\"system_fingerprint\":\"fp_560af6e559\",\
         \"choices\":[{{\"index\":0,\"delta\":{{}},\"logprobs\":null,\"finish_reason\":\"stop\"}}]}}\n\n"
    )
}

fn usage_event(completion_tokens: usize) -> String {
    format!(
        "data: {{\"id\":\"{ID}\",\"object\":\"chat.completion.chunk\",\"created\":1764000000,\
         \"model\":\"{MODEL}\",\"service_tier\":\"default\",\"system_fingerprint\":\"fp_560af6e559\",\
         \"choices\":[],\"usage\":{{\"prompt_tokens\":24,\"completion_tokens\":{completion_tokens},\
         \"total_tokens\":{},\"prompt_tokens_details\":{{\"cached_tokens\":0,\"audio_tokens\":0}},\
         \"completion_tokens_details\":{{\"reasoning_tokens\":0,\"audio_tokens\":0,\
         \"accepted_prediction_tokens\":0,\"rejected_prediction_tokens\":0}}}}}}\n\n",
        24 + completion_tokens
    )
}

/// One body chunk carrying `k` content deltas.
fn chunk_of(k: usize) -> Vec<u8> {
    (0..k).map(delta_event).collect::<String>().into_bytes()
}

const REQUEST_BODY: &[u8] = br#"{"model":"gpt-4o-mini","stream":true,"stream_options":{"include_usage":true},"messages":[{"role":"user","content":"Tell me about foxes."}]}"#;

/// A chat completion as `make bench` sends it, with its request body read.
fn exchange(content_type: &str) -> Exchange {
    Exchange {
        request_body: Some(REQUEST_BODY.to_vec()),
        content_type: content_type.to_string(),
        ..Exchange::stream("/v1/chat/completions")
    }
}

/// A call whose response headers have passed, as the filter holds it when
/// the first body chunk arrives.
fn streaming_tap() -> CallTap {
    let exchange = exchange("text/event-stream; charset=utf-8");
    let mut tap = exchange.tap();
    // The role-only first delta has passed too.
    tap.on_response_body(role_event().as_bytes(), exchange.start_us + 200_000);
    tap
}

fn sse_decoder(c: &mut Criterion) {
    let mut group = c.benchmark_group("sse_decoder");
    for k in [1usize, 10, 100] {
        let chunk = chunk_of(k);
        group.throughput(Throughput::Elements(k as u64));
        group.bench_function(format!("events_per_chunk/{k}"), |b| {
            let mut decoder = SseDecoder::new(MAX_EVENT_BYTES);
            b.iter(|| {
                let mut events = 0usize;
                let mut bytes = 0usize;
                decoder.feed(black_box(&chunk), &mut |event| {
                    events += 1;
                    bytes += event.data.len();
                });
                assert_eq!(events, k);
                black_box(bytes)
            });
        });
    }
    group.finish();
}

fn call_tap(c: &mut Criterion) {
    let mut group = c.benchmark_group("call_tap");
    for k in [1usize, 10, 100] {
        let chunk = chunk_of(k);
        group.throughput(Throughput::Elements(k as u64));
        group.bench_function(format!("events_per_chunk/{k}"), |b| {
            // A fresh call per chunk (setup not timed), so the captured content
            // stays as small as in a real call instead of sitting at its cap.
            let mut now = Exchange::stream("/").start_us + 300_000;
            b.iter_batched_ref(
                streaming_tap,
                |tap| {
                    now += 20_000;
                    tap.on_response_body(black_box(&chunk), now);
                },
                BatchSize::SmallInput,
            );
        });
    }

    // One whole 50-event call, one event per chunk, per event.
    const TOKENS: usize = 50;
    let mut chunks: Vec<Vec<u8>> = vec![role_event().into_bytes()];
    chunks.extend((0..TOKENS).map(|i| delta_event(i).into_bytes()));
    chunks.push(finish_event().into_bytes());
    chunks.push(usage_event(TOKENS).into_bytes());
    chunks.push(b"data: [DONE]\n\n".to_vec());
    let call = exchange("text/event-stream");
    let run = |chunks: &[Vec<u8>]| {
        let times = (1..).map(|i| call.start_us + 200_000 + i * 20_000);
        let end_us = call.start_us + 200_000 + chunks.len() as u64 * 20_000;
        let timed = chunks.iter().map(|c| black_box(c.as_slice())).zip(times);
        call.replay(timed, End::EndOfStream, end_us).unwrap()
    };
    // The workload is understood, not skipped: every event counted, the usage
    // read, nothing refused.
    let check = run(&chunks);
    assert_eq!(check.events, chunks.len() as u64);
    assert_eq!(check.parse_errors, 0);
    assert!(
        check
            .summary_json
            .contains(&format!("\"output_tokens\":{TOKENS}")),
        "{}",
        check.summary_json
    );
    group.throughput(Throughput::Elements(chunks.len() as u64));
    group.bench_function(format!("call_{TOKENS}_events"), |b| {
        b.iter(|| black_box(run(black_box(&chunks)).summary_json.len()));
    });
    group.finish();
}

fn config() -> Criterion {
    Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .sample_size(20)
}

criterion_group! {
    name = benches;
    config = config();
    targets = sse_decoder, call_tap
}
criterion_main!(benches);
