//! Broken connections through a real Envoy with streamtap: an upstream that
//! resets (RST) or closes mid-stream, a client that goes away mid-stream, and
//! upstream 4xx/5xx with JSON error bodies. Every path yields exactly one
//! summary, with the outcome and what had arrived.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod support;

use std::time::Duration;
use support::{chat_request, chat_stream, FaultStack, FAST_EXPORT};
use testbed::scripted::{Chunking, End, Script};

const CHAT: &str = "/v1/chat/completions";
const TOKENS: &[&str] = &["Hello", " there", ",", " friend", "!", " Bye", "."];

/// Byte offset just past the `n`-th event (1-based) of an SSE text.
fn after_events(body: &str, n: usize) -> usize {
    let mut at = 0;
    for _ in 0..n {
        at += body[at..].find("\n\n").unwrap() + 2;
    }
    at
}

#[test]
fn upstream_reset_mid_stream_is_summarized_with_what_arrived() {
    let stack = FaultStack::start(FAST_EXPORT);
    let body = chat_stream(TOKENS);
    // Role event + 3 content events, then a RST in the middle of the 5th event.
    let cut = after_events(&body, 4) + 17;
    let mut served_all = Vec::new();
    for end in [End::ResetAfter(cut), End::CloseAfter(cut)] {
        let script = Script::sse(body.clone())
            .chunking(Chunking::Fixed(40))
            .gap(Duration::from_millis(2))
            .end(end.clone());
        let (_, served, got) = stack.call(CHAT, script, &[], &chat_request(true));
        assert_eq!(got.status, 200, "{end:?}");
        assert!(
            !got.complete,
            "{end:?}: the client must see the stream cut short"
        );
        assert_eq!(served.sent.len(), cut, "{end:?}");
        assert!(
            got.body == served.sent,
            "{end:?}: client got {} bytes, upstream sent {}",
            got.body.len(),
            served.sent.len()
        );
        let s = stack.summary_for(&served);
        assert_eq!(s["outcome"], "upstream_reset", "{end:?}: {s}");
        assert_eq!(
            s["content"], "Hello there,",
            "{end:?}: what had arrived: {s}"
        );
        assert_eq!(s["bytes"], cut, "{end:?}");
        assert_eq!(s["status"], 200);
        assert_eq!(s["stream"], true);
        // The half event at the cut is either dropped or counted as not understood;
        // the four whole events are read.
        assert!(s["events"].as_u64().unwrap() >= 4, "{end:?}: {s}");
        served_all.push(served);
    }
    stack.assert_exactly(2);
    for served in &served_all {
        assert_eq!(stack.summaries_of(served), 1);
    }
    assert_eq!(
        stack.envoy.stat("wasmcustom.streamtap.calls_not_completed"),
        2
    );
    stack.assert_vm_healthy();
}

#[test]
fn client_disconnect_mid_stream_is_summarized_as_cancelled() {
    let stack = FaultStack::start(FAST_EXPORT);
    let body = chat_stream(TOKENS);
    let head = after_events(&body, 3); // role + "Hello" + " there"
    let script = Script::sse(body[..head].to_string()).end(End::Hold);
    // The client reads the three events, then closes its connection.
    let (_, served, got) = stack.call_until(CHAT, script, &[], &chat_request(true), head);
    assert_eq!(got.body.len(), head);
    assert_eq!(got.body, served.sent);
    assert!(served.complete, "the upstream saw Envoy drop the stream");
    let s = stack.summary_for(&served);
    assert_eq!(s["outcome"], "client_cancelled", "{s}");
    assert_eq!(s["content"], "Hello there");
    assert_eq!(s["bytes"], head);
    assert_eq!(s["events"], 3);
    assert_eq!(s["parse_errors"], 0);
    stack.assert_exactly(1);
    stack.assert_vm_healthy();
}

#[test]
fn upstream_errors_are_http_error_with_the_capped_message() {
    let stack = FaultStack::start(FAST_EXPORT);
    let long = "x".repeat(10_000);
    let cases: Vec<(u16, String, Option<String>)> = vec![
        (
            429,
            r#"{"error":{"message":"Rate limit reached for gpt-4o-mini","type":"requests","code":"rate_limit_exceeded"}}"#.into(),
            Some("Rate limit reached for gpt-4o-mini".into()),
        ),
        (
            400,
            r#"{"error":{"message":"Invalid 'messages': empty","type":"invalid_request_error"}}"#.into(),
            Some("Invalid 'messages': empty".into()),
        ),
        (
            500,
            format!(r#"{{"error":{{"message":"{long}","type":"server_error"}}}}"#),
            None, // checked below: capped
        ),
        (503, "upstream overloaded, not JSON".into(), None),
    ];
    let mut served_all = Vec::new();
    for (status, body, message) in &cases {
        let script = Script::json(*status, body.clone());
        let (_, served, got) = stack.call(CHAT, script, &[], &chat_request(false));
        assert_eq!(got.status, *status);
        assert!(got.complete);
        assert_eq!(got.body, body.as_bytes(), "{status}: body unchanged");
        let s = stack.summary_for(&served);
        assert_eq!(s["outcome"], "http_error", "{status}: {s}");
        assert_eq!(s["status"], *status);
        match message {
            Some(m) => assert_eq!(s["error"], m.as_str(), "{status}"),
            None if *status == 500 => {
                let e = s["error"].as_str().expect("error message");
                assert!(e.starts_with("xxxx"), "{e}");
                assert!(
                    e.len() <= 1024,
                    "error message not capped: {} bytes",
                    e.len()
                );
            }
            None => {}
        }
        served_all.push(served);
    }
    // A streamed request answered with an SSE-typed error status.
    let script = Script::sse("data: {\"error\":{\"message\":\"overloaded\"}}\n\n");
    let script = Script {
        status: 529,
        ..script
    };
    let (_, served, got) = stack.call(CHAT, script, &[], &chat_request(true));
    assert_eq!(got.status, 529);
    let s = stack.summary_for(&served);
    assert_eq!(s["outcome"], "http_error", "{s}");
    assert_eq!(s["error"], "overloaded");
    served_all.push(served);

    stack.assert_exactly(cases.len() + 1);
    for served in &served_all {
        assert_eq!(stack.summaries_of(served), 1);
    }
    stack.assert_vm_healthy();
}

#[test]
fn many_mixed_faults_give_exactly_one_summary_each() {
    // Interleaves every path on the same Envoy connection pool: a reset, a
    // cancel, an error and a normal call, four rounds.
    let stack = FaultStack::start(FAST_EXPORT);
    let body = chat_stream(TOKENS);
    let mut outcomes = Vec::new();
    for _ in 0..4 {
        let (_, s1, _) = stack.call(
            CHAT,
            Script::sse(body.clone()).end(End::ResetAfter(after_events(&body, 2) + 5)),
            &[],
            &chat_request(true),
        );
        let head = after_events(&body, 2);
        let (_, s2, _) = stack.call_until(
            CHAT,
            Script::sse(body[..head].to_string()).end(End::Hold),
            &[],
            &chat_request(true),
            head,
        );
        let (_, s3, _) = stack.call(
            CHAT,
            Script::json(502, r#"{"error":{"message":"bad gateway"}}"#),
            &[],
            &chat_request(false),
        );
        let (_, s4, got) = stack.call(
            CHAT,
            Script::sse(body.clone()).chunking(Chunking::Fixed(7)),
            &[],
            &chat_request(true),
        );
        assert_eq!(got.body, body.as_bytes());
        outcomes.push((s1, "upstream_reset"));
        outcomes.push((s2, "client_cancelled"));
        outcomes.push((s3, "http_error"));
        outcomes.push((s4, "completed"));
    }
    stack.assert_exactly(outcomes.len());
    for (served, outcome) in &outcomes {
        let s = stack.summary_for(served);
        assert_eq!(s["outcome"], *outcome, "{s}");
        assert_eq!(stack.summaries_of(served), 1);
    }
    assert_eq!(
        stack.envoy.stat("wasmcustom.streamtap.calls_not_completed"),
        12
    );
    stack.assert_vm_healthy();
}

#[test]
fn upstream_reset_before_the_response_is_summarized_once() {
    let stack = FaultStack::start(FAST_EXPORT);
    let script = Script {
        status: 0, // RST instead of a response
        ..Script::sse("")
    };
    let (_, served, got) = stack.call(CHAT, script, &[], &chat_request(true));
    assert_eq!(got.status, 503, "Envoy answers for the reset upstream");
    let s = stack.summary_for(&served);
    eprintln!("reset before response: {s}");
    assert_eq!(s["status"], 503);
    // Envoy's own 503 reply ends normally: seen as `http_error` (1.40).
    assert!(
        s["outcome"] == "http_error" || s["outcome"] == "upstream_reset",
        "{s}"
    );
    stack.assert_exactly(1);
    stack.assert_vm_healthy();
}
