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
//! - `stream_health/chunks_400/{on,off}`: a 400-delta chat stream, one
//!   event per chunk, through `CallTap` with `stream_health` on (the default)
//!   and off (`Thresholds { enabled: false, .. }`); only the body chunks are
//!   timed (the tap is set up, and the summary built, outside the timing).
//!   `stream_health/call_400/{on,off}`: the same whole call, its summary
//!   (with the health report) included. Then an interleaved A/B of the
//!   chunk loop (on and off alternately, many repetitions) prints ns per
//!   chunk for each and the difference, with its spread over the pairs.
//!
//! - `formats/call_50_events/{ollama_chat,gemini_sse,bedrock_converse}`: one
//!   whole call of 50 content events one per chunk in that wire format
//!   (NDJSON lines; Gemini's SSE; Bedrock's event-stream frames), per event:
//!   to set beside `call_tap/call_50_events` (OpenAI chat SSE).
//! - `labelled_stats/samples_per_call`: the label policy of one finished call
//!   (`export::labels::samples`: the names and values of its ~10 labelled
//!   stats, known label values), per call; the host calls are `make bench`'s.
//!
//! Throughput is in events (chunks for `stream_health`): criterion prints
//! events/s as `thrpt`; ns per event is 1e9 / thrpt.

// Bench code, not filter code: the crate's deny lints are for the shell.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use std::hint::black_box;
use std::time::{Duration, Instant};
use streamtap::call::health::Thresholds;
use streamtap::call::tap::{CallTap, Finished, MAX_EVENT_BYTES};
use streamtap::export::labels::{samples, LabelBounds, Place, SharedValues};
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

/// One whole call of `chunks`, one per 20 ms after a 200 ms first byte.
fn replay_whole(call: &Exchange, chunks: &[Vec<u8>]) -> Finished {
    let times = (1..).map(|i| call.start_us + 200_000 + i * 20_000);
    let end_us = call.start_us + 200_000 + chunks.len() as u64 * 20_000;
    let timed = chunks.iter().map(|c| black_box(c.as_slice())).zip(times);
    call.replay(timed, End::EndOfStream, end_us).unwrap()
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
    let run = |chunks: &[Vec<u8>]| replay_whole(&call, chunks);
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

/// Deltas of the `stream_health` case's stream.
const HEALTH_DELTAS: usize = 400;
/// The `stream_health` case's chunks: the role delta, 400 content deltas,
/// the finish delta, the usage event and `[DONE]`, one event per chunk.
fn health_stream() -> Vec<Vec<u8>> {
    let mut chunks: Vec<Vec<u8>> = vec![role_event().into_bytes()];
    chunks.extend((0..HEALTH_DELTAS).map(|i| delta_event(i).into_bytes()));
    chunks.push(finish_event().into_bytes());
    chunks.push(usage_event(HEALTH_DELTAS).into_bytes());
    chunks.push(b"data: [DONE]\n\n".to_vec());
    chunks
}

/// A chat stream with `stream_health` on (the default) or off.
fn health_exchange(on: bool) -> Exchange {
    let mut exchange = exchange("text/event-stream");
    exchange.settings.health = Thresholds {
        enabled: on,
        ..Thresholds::default()
    };
    exchange
}

/// When chunk `i` arrives: 20 ms apart, with some jitter so that the pace
/// and the silences vary as on a real stream (no pause: all under 250 ms).
fn chunk_time(exchange: &Exchange, i: usize) -> u64 {
    exchange.start_us + 200_000 + i as u64 * 20_000 + (i as u64 * 7919) % 9_000
}

/// Every chunk of `chunks` through `tap`, as `on_response_body` does.
fn feed(exchange: &Exchange, tap: &mut CallTap, chunks: &[Vec<u8>]) {
    for (i, c) in chunks.iter().enumerate() {
        tap.on_response_body(black_box(c), chunk_time(exchange, i));
    }
}

fn stream_health(c: &mut Criterion) {
    let chunks = health_stream();
    let n = chunks.len();
    let end = |exchange: &Exchange| chunk_time(exchange, n);
    // Both understand the stream; only the one with stream_health on judges it.
    for on in [true, false] {
        let exchange = health_exchange(on);
        let mut tap = exchange.tap();
        feed(&exchange, &mut tap, &chunks);
        let done = End::EndOfStream.finish(&mut tap, end(&exchange)).unwrap();
        assert_eq!(done.events, n as u64);
        assert_eq!(done.parse_errors, 0);
        let health = done.summary_json.contains("\"stream_health\":null");
        assert_eq!(health, !on, "{}", done.summary_json);
        if on {
            assert!(
                done.summary_json.contains("\"verdict\":\"smooth\""),
                "{}",
                done.summary_json
            );
        }
    }

    let mut group = c.benchmark_group("stream_health");
    group.throughput(Throughput::Elements(n as u64));
    for (on, name) in [(true, "on"), (false, "off")] {
        let exchange = health_exchange(on);
        group.bench_function(format!("chunks_{HEALTH_DELTAS}/{name}"), |b| {
            b.iter_batched_ref(
                || exchange.tap(),
                |tap| feed(&exchange, tap, &chunks),
                // One tap at a time (a batch of live taps is cold in cache);
                // a ~0.3 ms routine dwarfs the per-iteration timer.
                BatchSize::PerIteration,
            );
        });
        group.bench_function(format!("call_{HEALTH_DELTAS}/{name}"), |b| {
            b.iter(|| {
                let mut tap = exchange.tap();
                feed(&exchange, &mut tap, &chunks);
                let done = End::EndOfStream.finish(&mut tap, end(&exchange)).unwrap();
                black_box(done.summary_json.len())
            });
        });
    }
    group.finish();
    health_ab(&chunks);
}

/// The chunk loop with `stream_health` on and off, alternately (the order
/// swapped every pair), so that both see the same machine: ns per chunk of
/// each, and of their difference, over the pairs. Skipped by `cargo test`.
fn health_ab(chunks: &[Vec<u8>]) {
    let args: Vec<String> = std::env::args().skip(1).collect();
    // Not under `cargo test`, nor when a filter names other benchmarks.
    let filters: Vec<&String> = args.iter().filter(|a| !a.starts_with('-')).collect();
    if !args.iter().any(|a| a == "--bench")
        || (!filters.is_empty() && !filters.iter().any(|f| "stream_health".contains(f.as_str())))
    {
        return;
    }
    const PAIRS: usize = 600;
    /// Calls per timed sample: ~4 ms of work, far above the clock's grain.
    const CALLS: usize = 8;
    let exchanges = [health_exchange(true), health_exchange(false)];
    let per_chunk = (CALLS * chunks.len()) as f64;
    let sample = |exchange: &Exchange| {
        let mut taps: Vec<CallTap> = (0..CALLS).map(|_| exchange.tap()).collect();
        let t = Instant::now();
        for tap in &mut taps {
            feed(exchange, tap, chunks);
        }
        let ns = t.elapsed().as_nanos() as f64 / per_chunk;
        black_box(taps);
        ns
    };
    for _ in 0..20 {
        sample(&exchanges[0]);
        sample(&exchanges[1]);
    }
    let (mut on, mut off, mut diff) = (Vec::new(), Vec::new(), Vec::new());
    for pair in 0..PAIRS {
        let (a, b) = if pair % 2 == 0 {
            let a = sample(&exchanges[0]);
            (a, sample(&exchanges[1]))
        } else {
            let b = sample(&exchanges[1]);
            (sample(&exchanges[0]), b)
        };
        on.push(a);
        off.push(b);
        diff.push(a - b);
    }
    let q = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        let at = |p: f64| v[((v.len() - 1) as f64 * p).round() as usize];
        (at(0.5), at(0.1), at(0.9))
    };
    let (on, off) = (q(&mut on), q(&mut off));
    let diff_q = q(&mut diff);
    // The median's 95% confidence interval, from the order statistics of
    // the (sorted) differences: ranks n/2 ± 1.96 √n / 2.
    let half = 1.96 * (PAIRS as f64).sqrt() / 2.0;
    let rank = |r: f64| diff[(r.round() as usize).min(PAIRS - 1)];
    let ci = (
        rank(PAIRS as f64 / 2.0 - half),
        rank(PAIRS as f64 / 2.0 + half),
    );
    let diff = diff_q;
    println!(
        "stream_health A/B, {PAIRS} interleaved pairs of {CALLS} calls × {} chunks (one event each), \
         ns per chunk, median (p10–p90):",
        chunks.len()
    );
    println!("  on   {:7.1} ({:.1}–{:.1})", on.0, on.1, on.2);
    println!("  off  {:7.1} ({:.1}–{:.1})", off.0, off.1, off.2);
    println!(
        "  on − off {:+6.1} ({:+.1}–{:+.1}) per pair, median's 95% CI {:+.1}–{:+.1}; {:+.1}% of off",
        diff.0,
        diff.1,
        diff.2,
        ci.0,
        ci.1,
        diff.0 / off.0 * 100.0
    );
}

fn config() -> Criterion {
    Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .sample_size(20)
}

/// One Ollama `/api/chat` NDJSON line carrying `text`.
fn ollama_line(text: &str, done: bool) -> String {
    let tail = if done {
        r#","done":true,"done_reason":"stop","total_duration":912000000,"prompt_eval_count":12,"eval_count":50}"#
    } else {
        r#","done":false}"#
    };
    format!(
        r#"{{"model":"llama3.1:8b","created_at":"2026-12-02T10:00:00.123456789Z","message":{{"role":"assistant","content":{}}}{tail}"#,
        serde_json::to_string(text).unwrap()
    ) + "\n"
}

fn formats(c: &mut Criterion) {
    let mut group = c.benchmark_group("formats");
    const TOKENS: usize = 50;
    let words: Vec<&str> = ANSWER.split(' ').collect();
    let mut chunks: Vec<Vec<u8>> = (0..TOKENS)
        .map(|i| ollama_line(&format!("{} ", words[i % words.len()]), false).into_bytes())
        .collect();
    chunks.push(ollama_line("", true).into_bytes());
    let call = Exchange {
        request_body: Some(
            br#"{"model":"llama3.1:8b","messages":[{"role":"user","content":"Tell me about foxes."}]}"#
                .to_vec(),
        ),
        content_type: "application/x-ndjson".to_string(),
        ..Exchange::stream("/api/chat")
    };
    let run = |chunks: &[Vec<u8>]| replay_whole(&call, chunks);
    let check = run(&chunks);
    assert_eq!(check.events, chunks.len() as u64);
    assert_eq!(check.parse_errors, 0);
    assert!(
        check.summary_json.contains("\"output_tokens\":50"),
        "{}",
        check.summary_json
    );
    assert!(check.summary_json.contains("\"provider\":\"ollama\""));
    group.throughput(Throughput::Elements(chunks.len() as u64));
    group.bench_function(format!("call_{TOKENS}_events/ollama_chat"), |b| {
        b.iter(|| black_box(run(black_box(&chunks)).summary_json.len()));
    });

    // Gemini, `?alt=sse`: one GenerateContentResponse per word, the last
    // finishing with the usage.
    let gemini_event = |text: &str, last: bool| {
        let finish = if last {
            r#","finishReason":"STOP""#
        } else {
            ""
        };
        format!(
            r#"data: {{"candidates":[{{"content":{{"parts":[{{"text":{}}}],"role":"model"}}{finish},"index":0}}],"usageMetadata":{{"promptTokenCount":12,"candidatesTokenCount":{TOKENS},"totalTokenCount":62}},"modelVersion":"gemini-2.5-flash","responseId":"mHWwaPaXBY6Vz7IP1ofh4Ac"}}"#,
            serde_json::to_string(text).unwrap()
        ) + "\r\n\r\n"
    };
    let gemini: Vec<Vec<u8>> = (0..TOKENS)
        .map(|i| {
            gemini_event(&format!("{} ", words[i % words.len()]), i + 1 == TOKENS).into_bytes()
        })
        .collect();
    let gemini_call = Exchange {
        request_body: Some(
            br#"{"contents":[{"role":"user","parts":[{"text":"Tell me about foxes."}]}]}"#.to_vec(),
        ),
        ..Exchange::stream("/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse")
    };
    let check = replay_whole(&gemini_call, &gemini);
    assert_eq!(check.parse_errors, 0);
    assert!(
        check.summary_json.contains("\"output_tokens\":50"),
        "{}",
        check.summary_json
    );
    group.throughput(Throughput::Elements(gemini.len() as u64));
    group.bench_function(format!("call_{TOKENS}_events/gemini_sse"), |b| {
        b.iter(|| {
            black_box(
                replay_whole(&gemini_call, black_box(&gemini))
                    .summary_json
                    .len(),
            )
        });
    });

    // Bedrock ConverseStream: AWS event-stream frames, a text delta per word.
    use streamtap::wire::eventstream::encode_frame;
    let frame = |kind: &str, payload: String| {
        let headers = [
            (":event-type", kind),
            (":content-type", "application/json"),
            (":message-type", "event"),
        ];
        encode_frame(&headers, payload.as_bytes())
    };
    let mut bedrock = vec![frame("messageStart", r#"{"role":"assistant"}"#.to_string())];
    bedrock.extend((0..TOKENS).map(|i| {
        let text = serde_json::to_string(&format!("{} ", words[i % words.len()])).unwrap();
        frame(
            "contentBlockDelta",
            format!(r#"{{"contentBlockIndex":0,"delta":{{"text":{text}}},"p":"abcdefghij"}}"#),
        )
    }));
    bedrock.push(frame(
        "messageStop",
        r#"{"stopReason":"end_turn"}"#.to_string(),
    ));
    bedrock.push(frame("metadata", format!(r#"{{"usage":{{"inputTokens":12,"outputTokens":{TOKENS},"totalTokens":62}},"metrics":{{"latencyMs":800}}}}"#)));
    let bedrock_call = Exchange {
        request_body: Some(
            br#"{"messages":[{"role":"user","content":[{"text":"Tell me about foxes."}]}]}"#
                .to_vec(),
        ),
        content_type: "application/vnd.amazon.eventstream".to_string(),
        ..Exchange::stream("/model/anthropic.claude-3-5-sonnet-20240620-v1%3A0/converse-stream")
    };
    let check = replay_whole(&bedrock_call, &bedrock);
    assert_eq!(check.parse_errors, 0);
    assert!(
        check.summary_json.contains("\"output_tokens\":50"),
        "{}",
        check.summary_json
    );
    group.throughput(Throughput::Elements(bedrock.len() as u64));
    group.bench_function(format!("call_{TOKENS}_events/bedrock_converse"), |b| {
        b.iter(|| {
            black_box(
                replay_whole(&bedrock_call, black_box(&bedrock))
                    .summary_json
                    .len(),
            )
        });
    });
    group.finish();
}

/// Shared data as one VM sees it when every value is already known.
struct Known(std::collections::BTreeMap<String, (Vec<u8>, u32)>);

impl SharedValues for Known {
    fn load(&mut self, key: &str) -> Option<(Vec<u8>, u32)> {
        Some(self.0.get(key).cloned().unwrap_or_default())
    }

    fn store(&mut self, key: &str, list: &[u8], version: u32) -> bool {
        self.0.insert(key.to_string(), (list.to_vec(), version + 1));
        true
    }
}

fn labelled_stats(c: &mut Criterion) {
    let mut group = c.benchmark_group("labelled_stats");
    let call = exchange("text/event-stream");
    let mut chunks: Vec<Vec<u8>> = vec![role_event().into_bytes()];
    chunks.extend((0..50).map(|i| delta_event(i).into_bytes()));
    chunks.push(finish_event().into_bytes());
    chunks.push(usage_event(50).into_bytes());
    chunks.push(b"data: [DONE]\n\n".to_vec());
    let times = (1..).map(|i| call.start_us + 200_000 + i * 20_000);
    let timed = chunks.iter().map(|c| c.as_slice()).zip(times);
    let finished = call
        .replay(timed, End::EndOfStream, call.start_us + 2_000_000)
        .unwrap();
    let mut bounds = LabelBounds::new(100);
    let mut shared = Known(Default::default());
    let place = Place::default();
    assert_eq!(
        samples(&finished, &place, &mut bounds, &mut shared).len(),
        9
    );
    group.throughput(Throughput::Elements(1));
    group.bench_function("samples_per_call", |b| {
        b.iter(|| black_box(samples(black_box(&finished), &place, &mut bounds, &mut shared).len()));
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = config();
    targets = sse_decoder, call_tap, stream_health, formats, labelled_stats
}
criterion_main!(benches);
