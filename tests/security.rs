//! No credential reaches a summary, filter state, the access log or Envoy's
//! log: requests through a real Envoy with streamtap carry `authorization`,
//! `x-api-key`, `api-key`, `cookie`, `proxy-authorization` (and the response a
//! `set-cookie`) with recognisable secret values, and an API key in the request
//! body's fields; none of the values shows up anywhere streamtap writes.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod support;

use std::time::Duration;
use support::{chat_stream, FaultStack};
use testbed::envoy::{template_path, EnvoyOptions};
use testbed::scripted::{Script, ScriptedUpstream};

const HEADER_SECRETS: &[(&str, &str)] = &[
    ("authorization", "Bearer sk-SECRETAUTHZ0001"),
    ("x-api-key", "SECRETXAPIKEY0002"),
    ("api-key", "SECRETAPIKEY0003"),
    ("cookie", "session=SECRETCOOKIE0004; other=1"),
    ("proxy-authorization", "Basic SECRETPROXY0005"),
    ("x-custom-token", "SECRETCUSTOM0006"),
];
const RESPONSE_SECRET: &str = "SECRETSETCOOKIE0007";
const BODY_SECRETS: &[&str] = &["sk-SECRETBODYKEY0008", "SECRETBODYUSER0009"];

fn request_body() -> Vec<u8> {
    serde_json::json!({
        "model": "gpt-4o-mini",
        "stream": true,
        "api_key": BODY_SECRETS[0],
        "user": BODY_SECRETS[1],
        "messages": [{"role": "user", "content": "Say hello"}],
    })
    .to_string()
    .into_bytes()
}

/// The template with the content filter state in the access log as well.
fn template() -> String {
    let t = std::fs::read_to_string(template_path()).unwrap();
    let with = t.replace(
        "summary=%FILTER_STATE(wasm.streamtap.summary:PLAIN)%",
        "summary=%FILTER_STATE(wasm.streamtap.summary:PLAIN)% content=%FILTER_STATE(wasm.streamtap.content:PLAIN)%",
    );
    assert_ne!(with, t, "template access log format changed");
    with
}

/// Runs calls with every secret, then returns (summaries, access log, envoy log).
fn run(plugin_config: &str, log_level: &str) -> (String, String, String) {
    let upstream = ScriptedUpstream::start().unwrap();
    let collector = testbed::collector::Collector::start().unwrap();
    let opts = EnvoyOptions::new(upstream.addr, collector.addr)
        .with_plugin_config(plugin_config)
        .with_log_level(log_level);
    let envoy = testbed::envoy::Envoy::start_with_template(&opts, &template())
        .unwrap_or_else(|e| panic!("{e}"));
    let stack = FaultStack {
        upstream,
        collector,
        envoy,
    };
    let body = chat_stream(&["Hello", "!"]);
    let mut served_all = Vec::new();
    for path in ["/v1/chat/completions", "/v1/messages", "/v1/other"] {
        let script =
            Script::sse(body.clone()).header("set-cookie", &format!("s={RESPONSE_SECRET}"));
        let (_, served, got) = stack.call(path, script, HEADER_SECRETS, &request_body());
        assert_eq!(got.status, 200);
        // The upstream did get the credentials: the test is not vacuous.
        assert_eq!(served.header("x-api-key"), Some("SECRETXAPIKEY0002"));
        assert!(got.header("set-cookie").unwrap().contains(RESPONSE_SECRET));
        served_all.push(served);
    }
    // An error answer too.
    let (_, served, _) = stack.call(
        "/v1/chat/completions",
        Script::json(401, r#"{"error":{"message":"Incorrect API key provided"}}"#),
        HEADER_SECRETS,
        &request_body(),
    );
    served_all.push(served);
    let summaries: Vec<String> = served_all
        .iter()
        .map(|s| stack.summary_for(s).to_string())
        .collect();
    for s in &served_all {
        let rid = s.header("x-request-id").unwrap();
        assert!(
            stack
                .envoy
                .wait_for_access_log(&format!("id={rid}"), Duration::from_secs(5)),
            "no access log line for {rid}"
        );
    }
    std::thread::sleep(Duration::from_millis(200));
    (
        summaries.join("\n"),
        stack.envoy.access_log(),
        stack.envoy.log(),
    )
}

fn leaks<'a>(text: &str, secrets: impl IntoIterator<Item = &'a str>) -> Vec<&'a str> {
    secrets.into_iter().filter(|s| text.contains(s)).collect()
}

fn header_secret_values() -> Vec<&'static str> {
    let mut v = vec![
        "sk-SECRETAUTHZ0001",
        "SECRETXAPIKEY0002",
        "SECRETAPIKEY0003",
        "SECRETCOOKIE0004",
        "SECRETPROXY0005",
        "SECRETCUSTOM0006",
    ];
    v.push(RESPONSE_SECRET);
    v
}

#[test]
fn no_credential_reaches_summaries_filter_state_or_logs() {
    let (summaries, access, log) = run(support::FAST_EXPORT, "info");
    let all: Vec<&str> = header_secret_values()
        .into_iter()
        .chain(BODY_SECRETS.iter().copied())
        .collect();
    assert!(
        summaries.contains("Hello!"),
        "summaries are there: {summaries}"
    );
    assert!(
        access.contains("content=Hello!"),
        "filter state in the access log: {access}"
    );
    assert_eq!(
        leaks(&summaries, all.clone()),
        Vec::<&str>::new(),
        "summaries:\n{summaries}"
    );
    assert_eq!(
        leaks(&access, all.clone()),
        Vec::<&str>::new(),
        "access log:\n{access}"
    );
    assert_eq!(leaks(&log, all), Vec::<&str>::new(), "envoy log:\n{log}");
}

#[test]
fn the_filter_logs_no_credential_even_at_debug_level() {
    // At debug level Envoy itself prints whole request headers (its own
    // `request headers complete` dump): only the Wasm component's lines are
    // streamtap's.
    let (summaries, access, log) = run(support::FAST_EXPORT, "debug");
    let wasm_lines: String = log
        .lines()
        .filter(|l| l.contains("[wasm]") || l.contains("wasm log"))
        .collect::<Vec<_>>()
        .join("\n");
    let all: Vec<&str> = header_secret_values()
        .into_iter()
        .chain(BODY_SECRETS.iter().copied())
        .collect();
    assert_eq!(
        leaks(&wasm_lines, all.clone()),
        Vec::<&str>::new(),
        "wasm log lines:\n{wasm_lines}"
    );
    assert_eq!(leaks(&summaries, all.clone()), Vec::<&str>::new());
    assert_eq!(leaks(&access, all), Vec::<&str>::new());
    eprintln!(
        "debug level: {} wasm log lines checked; Envoy's own debug log shows header secrets: {:?}",
        wasm_lines.lines().count(),
        leaks(&log, header_secret_values())
    );
}

#[test]
fn with_request_capture_on_headers_stay_out_and_the_body_is_captured_verbatim() {
    let config = r#"{"collector":{"cluster":"streamtap_collector","flush_interval_ms":50},"capture":{"request_content":true}}"#;
    let (summaries, access, log) = run(config, "info");
    let headers = header_secret_values();
    assert_eq!(leaks(&summaries, headers.clone()), Vec::<&str>::new());
    assert_eq!(leaks(&access, headers.clone()), Vec::<&str>::new());
    assert_eq!(leaks(&log, headers), Vec::<&str>::new());
    // Documented: `request_content` is the request body as sent, so a key the
    // client put in the body is in the summary (and in the summary filter state).
    // Capture is off by default and documented as sensitive.
    let body_in_summaries = leaks(&summaries, BODY_SECRETS.iter().copied());
    let body_in_access = leaks(&access, BODY_SECRETS.iter().copied());
    eprintln!(
        "capture.request_content=true: body secrets in summaries {body_in_summaries:?}, in the access log {body_in_access:?}, in envoy log {:?}",
        leaks(&log, BODY_SECRETS.iter().copied())
    );
    assert!(summaries.contains("request_content"), "{summaries}");
}

#[test]
fn response_content_capture_can_be_switched_off() {
    let config = r#"{"collector":{"cluster":"streamtap_collector","flush_interval_ms":50},"capture":{"response_content":false}}"#;
    let (summaries, access, _) = run(config, "info");
    assert!(!summaries.contains("Hello!"), "{summaries}");
    assert!(!access.contains("Hello!"), "{access}");
}

#[test]
fn captured_headers_and_fields_are_redacted_by_name() {
    // Every credential header, a custom one listed in `redact_headers`, and an
    // innocent one asked for by `request_headers`; the body's `user` field listed
    // in `redact_fields`.
    let config = r#"{"collector":{"cluster":"streamtap_collector","flush_interval_ms":50},
        "capture":{"request_content":true,
                   "request_headers":["authorization","x-api-key","api-key","cookie","proxy-authorization","x-custom-token","x-tenant"],
                   "redact_headers":["X-Custom-Token"],
                   "redact_fields":["user"]}}"#;
    let upstream = ScriptedUpstream::start().unwrap();
    let collector = testbed::collector::Collector::start().unwrap();
    let opts = EnvoyOptions::new(upstream.addr, collector.addr).with_plugin_config(config);
    let envoy = testbed::envoy::Envoy::start_with_template(&opts, &template())
        .unwrap_or_else(|e| panic!("{e}"));
    let stack = FaultStack {
        upstream,
        collector,
        envoy,
    };
    let mut headers = HEADER_SECRETS.to_vec();
    headers.push(("x-tenant", "tenant-visible-42"));
    let (_, served, _) = stack.call(
        "/v1/chat/completions",
        Script::sse(chat_stream(&["Hi"])),
        &headers,
        &request_body(),
    );
    let s = stack.summary_for(&served);
    let rid = served.header("x-request-id").unwrap();
    assert!(stack
        .envoy
        .wait_for_access_log(&format!("id={rid}"), Duration::from_secs(5)));
    std::thread::sleep(Duration::from_millis(200));
    let text = s.to_string();
    eprintln!("request_headers: {}", s["request_headers"]);
    assert!(
        text.contains("tenant-visible-42"),
        "an asked-for header is kept: {text}"
    );
    let all: Vec<&str> = header_secret_values()
        .into_iter()
        .chain(BODY_SECRETS.iter().copied())
        .collect();
    assert_eq!(leaks(&text, all.clone()), Vec::<&str>::new(), "{text}");
    assert_eq!(
        leaks(&stack.envoy.access_log(), all.clone()),
        Vec::<&str>::new()
    );
    assert_eq!(leaks(&stack.envoy.log(), all), Vec::<&str>::new());
}

/// Gemini takes its key in the query (`?key=`) or in `x-goog-api-key`; AWS-signed calls carry
/// `x-amz-security-token` and signed URLs a signature parameter. None reaches a summary or the
/// filter state (Envoy's own access-log `%REQ(:PATH)%` is Envoy's, not the filter's).
#[test]
fn query_string_keys_and_cloud_credential_headers_stay_out() {
    const QUERY_SECRET: &str = "AIzaSECRETQUERY0010";
    const GOOG_SECRET: &str = "AIzaSECRETGOOG0011";
    const AMZ_SECRET: &str = "SECRETAMZTOKEN0012";
    let upstream = ScriptedUpstream::start().unwrap();
    let collector = testbed::collector::Collector::start().unwrap();
    // The config even asks for the headers: credential headers are never read.
    let config = r#"{"collector":{"cluster":"streamtap_collector","flush_interval_ms":50},"capture":{"request_headers":["x-goog-api-key","x-amz-security-token","x-user-id"]}}"#;
    let opts = EnvoyOptions::new(upstream.addr, collector.addr).with_plugin_config(config);
    let envoy = testbed::envoy::Envoy::start_with_template(&opts, &template())
        .unwrap_or_else(|e| panic!("{e}"));
    let stack = FaultStack {
        upstream,
        collector,
        envoy,
    };
    let path = format!("/v1/chat/completions?key={QUERY_SECRET}&X-Amz-Signature={QUERY_SECRET}");
    let (_, served, got) = stack.call(
        &path,
        Script::sse(chat_stream(&["Hello", "!"])),
        &[
            ("x-goog-api-key", GOOG_SECRET),
            ("x-amz-security-token", AMZ_SECRET),
            ("x-user-id", "u-42"),
        ],
        &request_body(),
    );
    assert_eq!(got.status, 200);
    assert_eq!(served.header("x-goog-api-key"), Some(GOOG_SECRET));
    let summary = stack.summary_for(&served);
    assert_eq!(summary["path"], "/v1/chat/completions");
    assert_eq!(summary["provider"], "openai", "the path still routes");
    let text = summary.to_string();
    assert!(
        text.contains("u-42"),
        "the allowed header is recorded: {text}"
    );
    let secrets = [QUERY_SECRET, GOOG_SECRET, AMZ_SECRET];
    assert_eq!(leaks(&text, secrets), Vec::<&str>::new(), "{text}");
    let rid = served.header("x-request-id").unwrap();
    assert!(stack
        .envoy
        .wait_for_access_log(&format!("id={rid}"), Duration::from_secs(5)));
    let filter_state: String = stack
        .envoy
        .access_log()
        .lines()
        .filter_map(|l| l.split_once(" summary=").map(|(_, fs)| fs.to_string()))
        .collect();
    assert!(filter_state.contains("Hello!"), "{filter_state}");
    assert_eq!(
        leaks(&filter_state, secrets),
        Vec::<&str>::new(),
        "{filter_state}"
    );
    let wasm_lines: String = stack
        .envoy
        .log()
        .lines()
        .filter(|l| l.contains("[wasm]") || l.contains("wasm log"))
        .collect();
    assert_eq!(leaks(&wasm_lines, secrets), Vec::<&str>::new());
}
