//! The mock upstream over real sockets, and its pure parts.

use super::openai::*;
use super::stamps::*;
use super::writes::*;
use super::*;
use crate::client::{self, check_live, StreamResult};
use std::io::{Read, Write};

const PATH: &str = "/v1/chat/completions";
const STREAM_CHAT: &str = r#"{"model":"gpt-4o-mini","stream":true,"stream_options":{"include_usage":true},"messages":[{"role":"user","content":"Say hello, slowly"}]}"#;
const WAIT: Duration = Duration::from_secs(10);

fn exchange(
    upstream: &MockUpstream,
    test_id: &str,
    controls: &[(&str, &str)],
    body: &str,
) -> (StreamResult, SentStream) {
    let mut headers = vec![("x-test-id", test_id)];
    headers.extend_from_slice(controls);
    let got = client::post(upstream.addr, PATH, &headers, body.as_bytes()).unwrap();
    let sent = upstream.wait_sent(test_id, WAIT).unwrap();
    (got, sent)
}

/// STREAM_CHAT's answer with 3 tokens, written out by hand with LF line
/// ends. "Say hello, slowly" is 3 words + 3 for the message: 6 prompt tokens.
fn expected_stream(id: &str, line_ending: &str) -> String {
    let head = format!(
        r#"{{"id":"{id}","object":"chat.completion.chunk","created":1764000000,"model":"gpt-4o-mini","choices":["#
    );
    let lf = [
        format!(r#"data: {head}{{"index":0,"delta":{{"role":"assistant","content":""}},"finish_reason":null}}],"usage":null}}"#),
        format!(r#"data: {head}{{"index":0,"delta":{{"content":"tok0 "}},"finish_reason":null}}],"usage":null}}"#),
        format!(r#"data: {head}{{"index":0,"delta":{{"content":"tok1 "}},"finish_reason":null}}],"usage":null}}"#),
        format!(r#"data: {head}{{"index":0,"delta":{{"content":"tok2 "}},"finish_reason":null}}],"usage":null}}"#),
        format!(r#"data: {head}{{"index":0,"delta":{{}},"finish_reason":"stop"}}],"usage":null}}"#),
        format!(r#"data: {head}],"usage":{{"prompt_tokens":6,"completion_tokens":3,"total_tokens":9}}}}"#),
        "data: [DONE]".to_string(),
    ]
    .map(|line| line + "\n\n")
    .concat();
    lf.replace('\n', line_ending)
}

#[test]
fn stream_bytes_are_exact_for_every_chunking_and_line_ending() {
    let upstream = MockUpstream::start().unwrap();
    for chunking in ["event", "batch:2", "batch:100", "split"] {
        for (name, line_ending) in [("lf", "\n"), ("crlf", "\r\n"), ("cr", "\r")] {
            let test_id = format!("exact-{chunking}-{name}");
            let controls = [
                ("x-mock-tokens", "3"),
                ("x-mock-interval-ms", "0"),
                ("x-mock-chunking", chunking),
                ("x-mock-line-ending", name),
            ];
            let (got, sent) = exchange(&upstream, &test_id, &controls, STREAM_CHAT);
            let expected = expected_stream(&sent.response_id, line_ending);
            assert_eq!(
                String::from_utf8_lossy(&sent.body),
                expected,
                "{test_id}: sent"
            );
            assert_eq!(got.body, sent.body, "{test_id}: received");
            assert!(got.complete && sent.complete, "{test_id}");
            assert_eq!(got.status, 200);
            assert_eq!(got.header("content-type"), Some("text/event-stream"));
            assert_eq!(got.header("cache-control"), Some("no-cache"));
            assert_eq!(got.header("transfer-encoding"), Some("chunked"));
            assert_eq!(got.header("content-length"), None);
            assert_eq!(sent.events.len(), 7);
            assert_eq!(sent.content, "tok0 tok1 tok2 ");
            assert_eq!((sent.prompt_tokens, sent.completion_tokens), (6, 3));
        }
    }
}

/// The stamps of the JSON chunks in an SSE body, in order, and the number
/// of JSON chunks.
fn stamps_in(body: &[u8]) -> (Vec<u64>, usize) {
    let text = std::str::from_utf8(body).unwrap();
    let mut stamps = Vec::new();
    let mut chunks = 0;
    for data in text.split("\n\n").filter_map(|e| e.strip_prefix("data: ")) {
        if data == "[DONE]" {
            continue;
        }
        chunks += 1;
        let chunk: Value = serde_json::from_str(data).unwrap();
        // The stamp is the last field, so the rest of the chunk is unchanged.
        assert!(data.ends_with(&format!(
            ",\"{STAMP_KEY}\":{}}}",
            chunk[STAMP_KEY].as_u64().unwrap()
        )));
        stamps.push(chunk[STAMP_KEY].as_u64().unwrap());
    }
    (stamps, chunks)
}

#[test]
fn stamp_marks_every_json_chunk_with_its_send_time() {
    let upstream = MockUpstream::start().unwrap();
    for chunking in ["event", "batch:2", "split"] {
        let test_id = format!("stamp-{chunking}");
        let controls = [
            ("x-mock-tokens", "6"),
            ("x-mock-interval-ms", "3"),
            ("x-mock-chunking", chunking),
            ("x-mock-stamp", "1"),
        ];
        let before = unix_micros();
        let (got, sent) = exchange(&upstream, &test_id, &controls, STREAM_CHAT);
        let after = unix_micros();
        assert_eq!(got.body, sent.body, "{test_id}");
        let (stamps, chunks) = stamps_in(&got.body);
        // role, 6 tokens, finish, usage
        assert_eq!((stamps.len(), chunks), (9, 9), "{test_id}");
        assert!(
            stamps.windows(2).all(|w| w[0] <= w[1]),
            "{test_id}: {stamps:?}"
        );
        assert!(
            stamps.iter().all(|&t| before <= t && t <= after),
            "{test_id}: {stamps:?} not within {before}..={after}"
        );
        // 3 ms between writes: the last stamp is well after the first.
        assert!(stamps[8] - stamps[0] >= 15_000, "{test_id}: {stamps:?}");
        // Same length as without the stamp's value: 16 digits each.
        let unstamped = exchange(
            &upstream,
            &format!("{test_id}-off"),
            &[("x-mock-tokens", "6"), ("x-mock-interval-ms", "0")],
            STREAM_CHAT,
        )
        .0;
        assert!(!String::from_utf8_lossy(&unstamped.body).contains(STAMP_KEY));
        let key_bytes = format!(",\"{STAMP_KEY}\":").len() + STAMP_DIGITS;
        assert_eq!(got.body.len(), unstamped.body.len() + 9 * key_bytes);
    }
    let (got, _) = exchange(
        &upstream,
        "stamp-bad",
        &[("x-mock-stamp", "yes")],
        STREAM_CHAT,
    );
    assert_eq!(got.status, 400);
}

#[test]
fn idle_after_holds_the_stream_until_the_client_goes_away() {
    let upstream = MockUpstream::start().unwrap();
    let t0 = Instant::now();
    let mut stream = std::net::TcpStream::connect(upstream.addr).unwrap();
    let request = format!(
        "POST {PATH} HTTP/1.1\r\nhost: x\r\nx-test-id: idle-2\r\nx-mock-tokens: 20\r\n\
         x-mock-interval-ms: 0\r\nx-mock-idle-after: 5\r\ncontent-length: {}\r\n\r\n{STREAM_CHAT}",
        STREAM_CHAT.len()
    );
    stream.write_all(request.as_bytes()).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    let mut received = Vec::new();
    let mut buf = [0u8; 4096];
    while let Ok(n) = stream.read(&mut buf) {
        if n == 0 {
            break;
        }
        received.extend_from_slice(&buf[..n]);
    }
    // Five events, then nothing for 300 ms: the stream is open and idle.
    let text = String::from_utf8_lossy(&received);
    assert_eq!(text.matches("data: ").count(), 5, "{text}");
    drop(stream);
    let sent = upstream.wait_sent("idle-2", WAIT).unwrap();
    assert!(!sent.complete);
    assert_eq!(sent.events.len(), 5);
    assert!(t0.elapsed() < Duration::from_secs(5));
}

#[test]
fn a_stamp_cut_across_writes_gets_one_value() {
    let bytes = b"data: {\"a\":1,\"x_sent_unix_us\":1000000000000000}\n\n".to_vec();
    let stamp_at = find_stamp_placeholder(&bytes).unwrap();
    assert_eq!(
        &bytes[stamp_at..stamp_at + STAMP_DIGITS],
        b"1000000000000000"
    );
    let len = bytes.len();
    let events = [Event {
        bytes,
        has_content: false,
        stamp_at: Some(stamp_at),
    }];
    let cut = stamp_at + 5;
    let mut first = PlannedWrite::of(Duration::ZERO, &events, &[(0, 0, cut)]);
    let mut second = PlannedWrite::of(Duration::ZERO, &events, &[(0, cut, len)]);
    assert_eq!(
        first.stamps,
        vec![StampPart {
            at: stamp_at,
            event: 0,
            digits: (0, 5)
        }]
    );
    assert_eq!(
        second.stamps,
        vec![StampPart {
            at: 0,
            event: 0,
            digits: (5, 16)
        }]
    );
    assert!(first.completes.is_empty() && second.completes == vec![0]);
    let mut values = vec![None];
    first.fill_stamps(&mut values, 1_764_000_000_123_456);
    second.fill_stamps(&mut values, 1_999_999_999_999_999);
    let joined = [first.bytes, second.bytes].concat();
    assert_eq!(
        String::from_utf8(joined).unwrap(),
        "data: {\"a\":1,\"x_sent_unix_us\":1764000000123456}\n\n"
    );
    assert_eq!(stamp_digits(42), *b"0000000000000042");
    assert_eq!(stamp_digits(u64::MAX), *b"9999999999999999");
}

#[test]
fn event_end_offsets_delimit_the_events() {
    let upstream = MockUpstream::start().unwrap();
    for (name, line_ending) in [("lf", "\n"), ("crlf", "\r\n"), ("cr", "\r")] {
        let test_id = format!("offsets-{name}");
        let controls = [
            ("x-mock-tokens", "5"),
            ("x-mock-interval-ms", "0"),
            ("x-mock-chunking", "batch:3"),
            ("x-mock-line-ending", name),
        ];
        let (_, sent) = exchange(&upstream, &test_id, &controls, STREAM_CHAT);
        let blank_line = line_ending.repeat(2);
        let mut start = 0;
        let mut texts = Vec::new();
        for event in &sent.events {
            let text = std::str::from_utf8(&sent.body[start..event.end_offset]).unwrap();
            let data = text
                .strip_prefix("data: ")
                .and_then(|t| t.strip_suffix(blank_line.as_str()))
                .unwrap_or_else(|| panic!("{test_id}: not one event: {text:?}"));
            assert!(
                !data.contains(line_ending),
                "{test_id}: two events in {text:?}"
            );
            if data != "[DONE]" {
                let chunk: Value = serde_json::from_str(data).unwrap();
                let content = chunk["choices"][0]["delta"]["content"]
                    .as_str()
                    .unwrap_or("");
                assert_eq!(event.has_content, !content.is_empty());
                texts.push(content.to_string());
            }
            start = event.end_offset;
        }
        assert_eq!(start, sent.body.len());
        assert_eq!(texts.concat(), sent.content);
    }
}

#[test]
fn split_chunking_arrives_in_several_reads_cut_mid_line() {
    let upstream = MockUpstream::start().unwrap();
    let controls = [
        ("x-mock-tokens", "10"),
        ("x-mock-interval-ms", "0"),
        ("x-mock-chunking", "split"),
        ("x-mock-line-ending", "crlf"),
    ];
    let (got, sent) = exchange(&upstream, "split", &controls, STREAM_CHAT);
    assert_eq!(got.body, sent.body);
    assert!(
        got.frames.len() > sent.events.len(),
        "{} reads for {} events",
        got.frames.len(),
        sent.events.len()
    );
    let read_ends: Vec<usize> = got
        .frames
        .iter()
        .scan(0, |end, (_, len)| {
            *end += len;
            Some(*end)
        })
        .collect();
    assert!(
        read_ends
            .iter()
            .any(|&end| got.body.get(end - 1..=end) == Some(b"\r\n".as_slice())),
        "no read ended between \\r and \\n: {read_ends:?}"
    );
}

#[test]
fn check_live_passes_for_a_direct_stream_and_fails_when_bytes_come_late() {
    let upstream = MockUpstream::start().unwrap();
    let controls = [("x-mock-tokens", "10"), ("x-mock-interval-ms", "20")];
    let (got, sent) = exchange(&upstream, "live", &controls, STREAM_CHAT);
    let report = check_live(&sent, &got, Duration::from_millis(100)).unwrap();
    assert_eq!(report.delays.len(), 10);

    // The same bytes, all stamped as arriving when the last event was sent:
    // what a buffering proxy would produce.
    let last_sent = sent.events.last().unwrap().sent_at;
    let buffered = StreamResult {
        frames: vec![(last_sent, got.body.len())],
        ..got.clone()
    };
    let err = check_live(&sent, &buffered, Duration::from_millis(100)).unwrap_err();
    assert!(err.starts_with("event 1 arrived"), "{err}");
    assert!(err.contains("(bound 100 ms); delays ms: ["), "{err}");

    let truncated = StreamResult {
        body: got.body[..got.body.len() - 1].to_vec(),
        ..got
    };
    let err = check_live(&sent, &truncated, Duration::from_millis(100)).unwrap_err();
    assert!(err.contains("differ"), "{err}");
}

#[test]
fn stream_without_include_usage_has_no_usage_fields() {
    let upstream = MockUpstream::start().unwrap();
    let body = r#"{"model":"m","stream":true,"messages":[]}"#;
    let (got, sent) = exchange(&upstream, "no-usage", &[("x-mock-interval-ms", "0")], body);
    let text = String::from_utf8(got.body).unwrap();
    assert!(!text.contains("usage"), "{text}");
    assert_eq!(sent.events.len(), 10 + 3);
    assert!(text.contains(r#""model":"m""#));
}

#[test]
fn non_stream_answer_is_a_chat_completion_with_usage() {
    let upstream = MockUpstream::start().unwrap();
    let body = r#"{"model":"gpt-4o","messages":[{"role":"system","content":"Be brief"},{"role":"user","content":[{"type":"text","text":"one two three"}]}]}"#;
    let (got, sent) = exchange(&upstream, "plain", &[("x-mock-tokens", "4")], body);
    assert_eq!(got.status, 200);
    assert_eq!(got.header("content-type"), Some("application/json"));
    assert_eq!(
        got.header("content-length"),
        Some(got.body.len().to_string().as_str())
    );
    let completion: Value = serde_json::from_slice(&got.body).unwrap();
    assert_eq!(completion["object"], "chat.completion");
    assert_eq!(completion["id"], sent.response_id.as_str());
    assert_eq!(completion["model"], "gpt-4o");
    assert_eq!(
        completion["choices"][0]["message"]["content"],
        "tok0 tok1 tok2 tok3 "
    );
    assert_eq!(completion["choices"][0]["finish_reason"], "stop");
    // (2 words + 3) + (3 words + 3)
    assert_eq!(
        completion["usage"],
        json!({"prompt_tokens": 11, "completion_tokens": 4, "total_tokens": 15})
    );
    assert!(sent.events.is_empty());
    assert_eq!(sent.body, got.body);
}

#[test]
fn mock_status_answers_an_openai_error() {
    let upstream = MockUpstream::start().unwrap();
    let (got, sent) = exchange(
        &upstream,
        "status",
        &[("x-mock-status", "503")],
        STREAM_CHAT,
    );
    assert_eq!(got.status, 503);
    assert_eq!(
        got.body,
        br#"{"error":{"message":"mock error","type":"server_error","code":503}}"#
    );
    assert_eq!(sent.status, 503);

    let (got, _) = exchange(
        &upstream,
        "bad",
        &[("x-mock-chunking", "lumpy")],
        STREAM_CHAT,
    );
    assert_eq!(got.status, 400);
    let (got, _) = exchange(&upstream, "not-json", &[], "{");
    assert_eq!(got.status, 400);
}

#[test]
fn records_request_headers_and_body_and_ids_are_unique() {
    let upstream = MockUpstream::start().unwrap();
    let controls = [("x-mock-tokens", "1"), ("x-forwarded-for", "10.0.0.1")];
    let (_, first) = exchange(&upstream, "rec-1", &controls, STREAM_CHAT);
    let (_, second) = exchange(&upstream, "rec-2", &controls, STREAM_CHAT);
    assert!(first
        .request_headers
        .contains(&("x-forwarded-for".to_string(), "10.0.0.1".to_string())));
    assert_eq!(first.request_body, STREAM_CHAT.as_bytes());
    assert_ne!(first.response_id, second.response_id);
    assert!(upstream
        .wait_sent("never-sent", Duration::from_millis(20))
        .is_none());
    assert_eq!(upstream.requests(), 2);
}

#[test]
fn serves_pipelined_keep_alive_requests_with_chunked_bodies() {
    let upstream = MockUpstream::start().unwrap();
    let body = r#"{"messages":[]}"#;
    let requests = format!(
        "POST {PATH} HTTP/1.1\r\nhost: x\r\nx-test-id: ka-1\r\ntransfer-encoding: chunked\r\n\r\n4\r\n{}\r\n{:x}\r\n{}\r\n0\r\n\r\n\
         POST {PATH} HTTP/1.1\r\nhost: x\r\nx-test-id: ka-2\r\nconnection: close\r\ncontent-length: {}\r\n\r\n{body}",
        &body[..4],
        body.len() - 4,
        &body[4..],
        body.len()
    );
    let mut stream = std::net::TcpStream::connect(upstream.addr).unwrap();
    stream.write_all(requests.as_bytes()).unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    assert_eq!(answer.matches("HTTP/1.1 200 OK").count(), 2, "{answer}");
    assert_eq!(upstream.requests(), 2);
    assert_eq!(
        upstream.wait_sent("ka-1", WAIT).unwrap().request_body,
        body.as_bytes()
    );
}

#[test]
fn serves_many_concurrent_streams() {
    let upstream = MockUpstream::start().unwrap();
    let addr = upstream.addr;
    let clients: Vec<_> = (0..40)
        .map(|i| {
            std::thread::spawn(move || {
                let id = format!("many-{i}");
                let headers = [
                    ("x-test-id", id.as_str()),
                    ("x-mock-tokens", "5"),
                    ("x-mock-interval-ms", "10"),
                ];
                client::post(addr, PATH, &headers, STREAM_CHAT.as_bytes()).unwrap()
            })
        })
        .collect();
    let mut ids = std::collections::HashSet::new();
    for (i, handle) in clients.into_iter().enumerate() {
        let got = handle.join().unwrap();
        let sent = upstream.wait_sent(&format!("many-{i}"), WAIT).unwrap();
        assert_eq!(got.body, sent.body);
        ids.insert(sent.response_id);
    }
    assert_eq!(ids.len(), 40);
    assert_eq!(upstream.requests(), 40);
}

#[test]
fn abort_after_closes_mid_stream() {
    let upstream = MockUpstream::start().unwrap();
    let headers = [
        ("x-test-id", "abort"),
        ("x-mock-abort-after", "3"),
        ("x-mock-interval-ms", "0"),
    ];
    let got = client::post_until(
        upstream.addr,
        PATH,
        &headers,
        STREAM_CHAT.as_bytes(),
        usize::MAX,
    )
    .unwrap();
    let sent = upstream.wait_sent("abort", WAIT).unwrap();
    assert!(!got.complete && !sent.complete);
    assert_eq!(sent.events.len(), 3);
    assert_eq!(got.body, sent.body);

    let strict = client::post(upstream.addr, PATH, &headers, STREAM_CHAT.as_bytes());
    assert_eq!(strict.unwrap_err().kind(), io::ErrorKind::UnexpectedEof);
}

#[test]
fn client_going_away_ends_the_stream_early() {
    let upstream = MockUpstream::start().unwrap();
    let headers = [
        ("x-test-id", "gone"),
        ("x-mock-tokens", "100"),
        ("x-mock-interval-ms", "5"),
    ];
    let got =
        client::post_until(upstream.addr, PATH, &headers, STREAM_CHAT.as_bytes(), 500).unwrap();
    assert!(got.body.len() >= 500 && !got.complete);
    let sent = upstream.wait_sent("gone", WAIT).unwrap();
    assert!(!sent.complete);
    assert!(sent.events.len() < 100, "{} events", sent.events.len());
}

#[test]
fn records_are_bounded_and_keep_the_latest_per_id() {
    let shared = Shared::default();
    let request = Request {
        method: "POST".to_string(),
        path: PATH.to_string(),
        headers: Vec::new(),
        body: Vec::new(),
        http10: false,
    };
    let sent = |status| SentStream {
        status,
        complete: true,
        ..SentStream::answering(&request)
    };
    shared.record(Some("again"), sent(500));
    for i in 0..MAX_RECORDS {
        shared.record(Some(&i.to_string()), sent(200));
    }
    shared.record(Some("again"), sent(201));
    shared.record(None, sent(200));
    let records = shared.lock_records();
    assert_eq!(records.by_test_id.len(), MAX_RECORDS);
    assert!(!records.by_test_id.contains_key("0"));
    assert_eq!(records.by_test_id["again"].1.status, 201);
}

#[test]
fn ollama_paths_stream_ndjson_lines_and_answer_whole_when_asked() {
    let upstream = MockUpstream::start().unwrap();
    let body =
        r#"{"model":"llama3.1:8b","messages":[{"role":"user","content":"Say hello, slowly"}]}"#;
    let headers = [
        ("x-test-id", "ollama-chat"),
        ("x-mock-tokens", "2"),
        ("x-mock-interval-ms", "0"),
    ];
    let got = client::post(upstream.addr, "/api/chat", &headers, body.as_bytes()).unwrap();
    let sent = upstream.wait_sent("ollama-chat", WAIT).unwrap();
    assert_eq!(got.header("content-type"), Some("application/x-ndjson"));
    assert_eq!(got.body, sent.body);
    let want = concat!(
        r#"{"created_at":"2026-12-02T10:00:00Z","done":false,"message":{"content":"tok0 ","role":"assistant"},"model":"llama3.1:8b"}"#,
        "\n",
        r#"{"created_at":"2026-12-02T10:00:00Z","done":false,"message":{"content":"tok1 ","role":"assistant"},"model":"llama3.1:8b"}"#,
        "\n",
        r#"{"created_at":"2026-12-02T10:00:00Z","done":true,"done_reason":"stop","eval_count":2,"message":{"content":"","role":"assistant"},"model":"llama3.1:8b","prompt_eval_count":6}"#,
        "\n"
    );
    assert_eq!(String::from_utf8_lossy(&sent.body), want);
    assert_eq!(sent.events.len(), 3);
    let whole = r#"{"model":"m","prompt":"hi","stream":false}"#;
    let headers = [("x-test-id", "ollama-generate"), ("x-mock-tokens", "2")];
    let got = client::post(upstream.addr, "/api/generate", &headers, whole.as_bytes()).unwrap();
    assert_eq!(got.header("content-type"), Some("application/json"));
    let v: serde_json::Value = serde_json::from_slice(&got.body).unwrap();
    assert_eq!(
        (v["response"].as_str(), v["done"].as_bool()),
        (Some("tok0 tok1 "), Some(true))
    );
}
