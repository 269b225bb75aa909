//! Real SDK clients from PyPI (installed into `.venv` by `make venv`)
//! streaming through a real Envoy with streamtap to the mock upstream: the
//! client sees each token when the upstream writes it, and the summary reads
//! the provider's own wire format.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod support;

use serde_json::Value;
use std::process::Command;
use support::{summary_with_id, Stack};
use testbed::envoy::{workspace_root, FilterVariant};

const TOKENS: usize = 12;
const INTERVAL_MS: f64 = 100.0;
/// How early or late a part may arrive against the upstream's write of it,
/// both lined up on the first part: less than one interval, so two tokens let
/// go together fail, while one slow wake-up of the client passes.
const SLACK_MS: f64 = 75.0;

/// Runs `script` with `.venv`'s Python and `args`; its stdout, one JSON
/// value a line.
fn run_python(script: &str, args: &[&str]) -> Vec<Value> {
    let python = workspace_root().join(".venv/bin/python");
    let out = Command::new(&python)
        .arg("-c")
        .arg(script)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{}: {e} (run `make venv`)", python.display()));
    assert!(
        out.status.success(),
        "the client failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l}: {e}")))
        .collect()
}

/// The parts that carried text must each arrive when the upstream wrote its
/// token: lined up on the first, none earlier or later than `SLACK_MS`. A hop
/// that held tokens back and let them go together delivers the later ones a
/// whole interval or more "early". Judged against the mock's own write times
/// (`written_ms`, from its first text event), so a late write upstream is not
/// taken for buffering.
fn check_live(parts: &[Value], written_ms: &[f64]) -> Result<(), String> {
    let times: Vec<f64> = parts
        .iter()
        .filter(|p| !p["text"].as_str().unwrap_or_default().is_empty())
        .map(|p| p["t_ms"].as_f64().unwrap())
        .collect();
    if times.len() != TOKENS || written_ms.len() != TOKENS {
        return Err(format!(
            "{} parts with text and {} text events written, not {TOKENS}",
            times.len(),
            written_ms.len()
        ));
    }
    for (i, (t, w)) in times.iter().zip(written_ms).enumerate() {
        let off = (t - times[0]) - (w - written_ms[0]);
        if off.abs() > SLACK_MS {
            return Err(format!(
                "part {i} arrived {off:+.0} ms off the upstream's write of it (± {SLACK_MS}): \
                 arrived {times:?}, written {written_ms:?}"
            ));
        }
    }
    Ok(())
}

/// The mock's write times of its text events, in ms after the first.
fn text_writes_ms(sent: &testbed::upstream::SentStream) -> Vec<f64> {
    let mut text = sent
        .events
        .iter()
        .filter(|e| e.has_content)
        .map(|e| e.sent_at);
    let Some(first) = text.next() else {
        return Vec::new();
    };
    std::iter::once(0.0)
        .chain(text.map(|at| at.duration_since(first).as_secs_f64() * 1000.0))
        .collect()
}

#[test]
fn the_liveness_check_catches_tokens_held_back() {
    let part = |t: f64| serde_json::json!({"t_ms": t, "text": "tok"});
    let written: Vec<f64> = (0..TOKENS).map(|i| i as f64 * INTERVAL_MS).collect();
    let live: Vec<Value> = written.iter().map(|&w| part(3.0 + w)).collect();
    assert!(check_live(&live, &written).is_ok());
    // One part 60 ms late (a slow wake-up of the client): still live.
    let mut late = live.clone();
    late[TOKENS - 1] = part(3.0 + written[TOKENS - 1] + 60.0);
    assert!(check_live(&late, &written).is_ok());
    // All held to the end, or let go two by two: caught.
    let held: Vec<Value> = (0..TOKENS).map(|i| part(1200.0 + i as f64)).collect();
    assert!(check_live(&held, &written).is_err());
    let pairs: Vec<Value> = (0..TOKENS)
        .map(|i| part(written[i | 1] + i as f64 * 0.1))
        .collect();
    assert!(check_live(&pairs, &written).is_err());
}

const OLLAMA_CHAT: &str = r#"
import json, sys, time, ollama
client = ollama.Client(host=sys.argv[1], headers={
    "x-test-id": sys.argv[2], "x-mock-tokens": sys.argv[3], "x-mock-interval-ms": "100"})
t0 = time.monotonic()
for part in client.chat(model="llama3.1:8b", stream=True,
                        messages=[{"role": "user", "content": "Say hello, slowly"}]):
    print(json.dumps({"t_ms": (time.monotonic() - t0) * 1000, "text": part.message.content,
                      "done": part.done, "eval_count": part.eval_count}), flush=True)
"#;

/// Streams `script` (its args: Envoy's URL, the test id, the token count)
/// through a real Envoy with streamtap; checks the client got the tokens
/// live; returns what the last part said and the call's summary.
fn stream_through_envoy(script: &str) -> (Value, Value, testbed::upstream::SentStream) {
    let stack = Stack::start(FilterVariant::Streamtap, support::FAST_EXPORT);
    let host = format!("http://{}", stack.envoy.listener);
    let test_id = support::next_id("sdk");
    let parts = run_python(script, &[&host, &test_id, &TOKENS.to_string()]);
    let sent = stack
        .upstream
        .wait_sent(&test_id, std::time::Duration::from_secs(5))
        .unwrap();
    check_live(&parts, &text_writes_ms(&sent)).unwrap_or_else(|e| panic!("{e}\n{parts:?}"));
    let request_id = support::header(&sent, "x-request-id").unwrap();
    let summary = summary_with_id(&stack.collector, &stack.envoy, &request_id);
    let (_, stats) = stack.envoy.admin_get("/stats/prometheus").unwrap();
    assert!(!stats.contains("AIzaSy"), "a key in the stats");
    (parts.last().unwrap().clone(), summary, sent)
}

#[test]
fn ollamas_python_client_streams_live_through_envoy_and_the_summary_reads_ollama() {
    let (last, s, sent) = stream_through_envoy(OLLAMA_CHAT);
    assert_eq!(last["done"], true);
    assert_eq!(last["eval_count"], TOKENS);
    assert_eq!(s["provider"], "ollama", "{s}");
    assert_eq!(s["api"], "ollama.chat");
    assert_eq!(s["model"], "llama3.1:8b");
    assert_eq!(s["content"], sent.content.as_str());
    assert_eq!(s["output_tokens"], TOKENS);
    assert_eq!(s["input_tokens"], sent.prompt_tokens);
    assert_eq!(s["usage_source"], "reported");
    assert_eq!(s["outcome"], "completed");
    assert_eq!(s["stream"], true);
    assert_eq!(s["stream_health"]["end_marker"], true);
    assert_eq!(s["stream_health"]["verdict"], "smooth", "{s}");
    assert_eq!(s["finish_reasons"], serde_json::json!(["stop"]));
}

const GOOGLE_GENAI: &str = r#"
import json, sys, time
from google import genai
from google.genai import types
client = genai.Client(api_key="AIzaSyFAKE-sdk-key-never-in-a-summary", http_options=types.HttpOptions(
    base_url=sys.argv[1], api_version="v1beta",
    headers={"x-test-id": sys.argv[2], "x-mock-tokens": sys.argv[3], "x-mock-interval-ms": "100"}))
t0 = time.monotonic()
for chunk in client.models.generate_content_stream(model="gemini-2.5-flash", contents="Say hello, slowly"):
    candidate = chunk.candidates[0]
    text = "".join(p.text or "" for p in candidate.content.parts)
    usage = chunk.usage_metadata
    print(json.dumps({"t_ms": (time.monotonic() - t0) * 1000, "text": text,
                      "done": candidate.finish_reason is not None,
                      "eval_count": usage.candidates_token_count if usage else None}), flush=True)
"#;

#[test]
fn googles_genai_client_streams_live_through_envoy_and_the_summary_reads_gemini() {
    let (last, s, sent) = stream_through_envoy(GOOGLE_GENAI);
    assert_eq!(last["done"], true);
    assert_eq!(last["eval_count"], TOKENS);
    // The SDK asks for SSE and sends its key in a header: neither the key
    // nor the query string reaches the summary.
    assert!(
        support::header(&sent, "x-goog-api-key").is_some_and(|k| k.starts_with("AIzaSy")),
        "the key should reach the upstream"
    );
    assert!(!s.to_string().contains("AIzaSy"), "{s}");
    assert_eq!(
        s["path"],
        "/v1beta/models/gemini-2.5-flash:streamGenerateContent"
    );
    assert_eq!(s["provider"], "gcp.gemini", "{s}");
    assert_eq!(s["api"], "generate_content");
    assert_eq!(s["model"], "gemini-2.5-flash");
    assert_eq!(s["content"], sent.content.as_str());
    assert_eq!(s["output_tokens"], TOKENS);
    assert_eq!(s["input_tokens"], sent.prompt_tokens);
    assert_eq!(s["usage_source"], "reported");
    assert_eq!(s["outcome"], "completed");
    assert_eq!(s["stream_health"]["end_marker"], true);
    assert_eq!(s["stream_health"]["verdict"], "smooth", "{s}");
    assert_eq!(s["finish_reasons"], serde_json::json!(["STOP"]));
}

const BOTO3_CONVERSE_STREAM: &str = r#"
import json, sys, time, boto3
client = boto3.client("bedrock-runtime", region_name="us-east-1", endpoint_url=sys.argv[1],
                      aws_access_key_id="AKIAFAKEFAKEFAKEFAKE",
                      aws_secret_access_key="fake-secret-never-in-a-summary")
def controls(request, **_):
    request.headers["x-test-id"] = sys.argv[2]
    request.headers["x-mock-tokens"] = sys.argv[3]
    request.headers["x-mock-interval-ms"] = "100"
client.meta.events.register("before-send.bedrock-runtime.*", controls)
t0 = time.monotonic()
answer = client.converse_stream(modelId="anthropic.claude-3-5-sonnet-20240620-v1:0",
                                messages=[{"role": "user", "content": [{"text": "Say hello, slowly"}]}])
for event in answer["stream"]:
    text = event.get("contentBlockDelta", {}).get("delta", {}).get("text", "")
    usage = event.get("metadata", {}).get("usage", {})
    print(json.dumps({"t_ms": (time.monotonic() - t0) * 1000, "text": text,
                      "done": "metadata" in event, "eval_count": usage.get("outputTokens")}), flush=True)
"#;

#[test]
fn boto3_streams_bedrock_live_through_envoy_and_the_summary_reads_its_frames() {
    let (last, s, sent) = stream_through_envoy(BOTO3_CONVERSE_STREAM);
    assert_eq!(last["done"], true);
    assert_eq!(last["eval_count"], TOKENS);
    // boto3 signs with SigV4: the signature reaches the upstream, never the summary.
    assert!(
        support::header(&sent, "authorization").is_some_and(|a| a.starts_with("AWS4-HMAC-SHA256")),
        "the request should be signed"
    );
    assert!(
        !s.to_string().contains("AKIAFAKE") && !s.to_string().contains("AWS4-HMAC"),
        "{s}"
    );
    assert_eq!(
        s["path"],
        "/model/anthropic.claude-3-5-sonnet-20240620-v1%3A0/converse-stream"
    );
    assert_eq!(s["provider"], "aws.bedrock", "{s}");
    assert_eq!(s["api"], "converse");
    assert_eq!(s["model"], "anthropic.claude-3-5-sonnet-20240620-v1:0");
    assert_eq!(s["content"], sent.content.as_str());
    assert_eq!(s["output_tokens"], TOKENS);
    assert_eq!(s["input_tokens"], sent.prompt_tokens);
    assert_eq!(s["usage_source"], "reported");
    assert_eq!(s["outcome"], "completed");
    assert_eq!(s["parse_errors"], 0);
    assert_eq!(s["stream_health"]["end_marker"], true);
    assert_eq!(s["stream_health"]["verdict"], "smooth", "{s}");
    assert_eq!(s["finish_reasons"], serde_json::json!(["end_turn"]));
}
