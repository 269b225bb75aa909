//! `demo`: one streaming chat completion through Envoy with streamtap.
//!
//! Starts the mock LLM upstream, the collector and Envoy, streams 12 tokens
//! 150 ms apart while printing each as it arrives, then shows what streamtap
//! made of the call: the summary the collector received, the filter's Envoy
//! stats and the access-log line.

use std::process::ExitCode;
use std::time::{Duration, Instant};

use serde_json::Value;
use testbed::client::{self, check_live};
use testbed::collector::Collector;
use testbed::envoy::{default_wasm_path, Envoy, EnvoyOptions};
use testbed::upstream::MockUpstream;

const TOKENS: &str = "12";
const INTERVAL_MS: &str = "150";
const CHAT_REQUEST: &str = r#"{"model":"gpt-4o-mini","stream":true,"stream_options":{"include_usage":true},"messages":[{"role":"user","content":"Say hello, slowly"}]}"#;
const TEST_ID: &str = "demo";
/// Generous: a token that waits this long somewhere would be plainly visible.
const LIVE_BOUND: Duration = Duration::from_millis(50);
const WAIT: Duration = Duration::from_secs(10);

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("\ndemo failed: {message}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> Result<(), String> {
    let wasm = default_wasm_path();
    if !wasm.is_file() {
        return Err(format!("{} missing: run `make build`", wasm.display()));
    }
    let upstream =
        MockUpstream::start().map_err(|e| format!("cannot start the mock upstream: {e}"))?;
    let collector = Collector::start().map_err(|e| format!("cannot start the collector: {e}"))?;
    let mut envoy = Envoy::start(&EnvoyOptions::new(upstream.addr, collector.addr))?;
    println!("mock LLM upstream  {}", upstream.addr);
    println!("collector          {}", collector.addr);
    println!(
        "Envoy + streamtap  {} (admin {})",
        envoy.listener, envoy.admin
    );

    println!("\nPOST /v1/chat/completions via Envoy, {TOKENS} tokens {INTERVAL_MS} ms apart:\n");
    let headers = [
        ("x-test-id", TEST_ID),
        ("x-mock-tokens", TOKENS),
        ("x-mock-interval-ms", INTERVAL_MS),
    ];
    let mut lines = SseDataLines::default();
    let started = Instant::now();
    let got = client::post_with(
        envoy.listener,
        "/v1/chat/completions",
        &headers,
        CHAT_REQUEST.as_bytes(),
        &mut |at, bytes| {
            for data in lines.feed(bytes) {
                if let Some(shown) = describe_event(&data) {
                    println!(
                        "  {:>6} ms  {shown}",
                        at.duration_since(started).as_millis()
                    );
                }
            }
        },
    )
    .map_err(|e| format!("request through Envoy failed: {e}"))?;
    if got.status != 200 {
        return Err(format!(
            "Envoy answered {}: {}",
            got.status,
            String::from_utf8_lossy(&got.body)
        ));
    }

    let sent = upstream
        .wait_sent(TEST_ID, WAIT)
        .ok_or("the mock upstream has no record of the request")?;
    let live = check_live(&sent, &got, LIVE_BOUND)?;
    println!(
        "\n{} bytes received, byte-for-byte what the upstream sent; each token arrived at most {:.2} ms after it left the upstream",
        got.body.len(),
        live.max_delay.as_secs_f64() * 1000.0
    );

    let summaries = collector.wait_for_calls(1, WAIT);
    let summary = summaries.first().ok_or_else(|| {
        format!(
            "the collector received no summary within {WAIT:?}; Envoy log:\n{}",
            envoy.log()
        )
    })?;
    let pretty = serde_json::to_string_pretty(summary).unwrap_or_else(|_| summary.to_string());
    println!("\nsummary received by the collector:\n{pretty}");

    println!("\nEnvoy stats:");
    for (name, value) in envoy.stats()? {
        if name.starts_with("wasmcustom.streamtap.") {
            println!("  {name}: {value}");
        }
    }

    let request_id = summary["id"].as_str().unwrap_or_default();
    if !envoy.wait_for_access_log(&format!("id={request_id}"), WAIT) {
        return Err(format!(
            "no access-log line for request {request_id} within {WAIT:?}"
        ));
    }
    let access_log = envoy.access_log();
    let line = access_log
        .lines()
        .find(|line| line.contains(&format!("id={request_id}")))
        .unwrap_or_default();
    println!("\naccess log:\n  {line}");

    envoy.stop();
    drop((upstream, collector));
    println!("\nstopped Envoy, the mock upstream and the collector");
    Ok(())
}

/// Splits a byte stream into the payloads of its `data:` lines, whatever
/// the chunk boundaries and line ends.
#[derive(Default)]
struct SseDataLines {
    pending: Vec<u8>,
}

impl SseDataLines {
    fn feed(&mut self, bytes: &[u8]) -> Vec<String> {
        self.pending.extend_from_slice(bytes);
        let mut payloads = Vec::new();
        while let Some(end) = self.pending.iter().position(|&b| b == b'\n' || b == b'\r') {
            let line: Vec<u8> = self.pending.drain(..=end).collect();
            let text = String::from_utf8_lossy(&line);
            if let Some(data) = text.trim_end().strip_prefix("data:") {
                payloads.push(data.trim_start().to_string());
            }
        }
        payloads
    }
}

/// What to print for one event: its content token, or the end marker.
fn describe_event(data: &str) -> Option<String> {
    if data == "[DONE]" {
        return Some("[DONE]".to_string());
    }
    let chunk: Value = serde_json::from_str(data).ok()?;
    if let Some(usage) = chunk.get("usage").filter(|usage| !usage.is_null()) {
        return Some(format!("usage {usage}"));
    }
    let content = chunk["choices"][0]["delta"]["content"].as_str()?;
    (!content.is_empty()).then(|| format!("{content:?}"))
}
