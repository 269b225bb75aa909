//! `collector.format: "otlp"` through the real Envoy: what the collector
//! receives on `/v1/logs` must parse as an `ExportLogsServiceRequest` with the
//! official OpenTelemetry protobuf definitions (the `opentelemetry-proto`
//! package that `make venv` installs into `.venv`).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod support;

use std::process::Command;
use std::time::Duration;
use support::{eventually, Call, Stack};
use testbed::envoy::{workspace_root, FilterVariant};

/// Parses `body` with the official definitions; returns the number of log
/// records and the attribute keys of the first, or Python's error.
fn parse_with_official_proto(body: &str) -> Result<(usize, Vec<String>), String> {
    let python = workspace_root().join(".venv/bin/python");
    let script = r#"
import sys, json
from google.protobuf import json_format
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
req = json_format.Parse(sys.stdin.read(), ExportLogsServiceRequest())
records = [r for rl in req.resource_logs for sl in rl.scope_logs for r in sl.log_records]
print(json.dumps([len(records), [a.key for a in records[0].attributes]]))
"#;
    let mut child = Command::new(&python)
        .args(["-c", script])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{}: {e} (run `make venv`)", python.display()));
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(body.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr).into_owned());
    }
    let (n, keys): (usize, Vec<String>) = serde_json::from_slice(&out.stdout).unwrap();
    Ok((n, keys))
}

#[test]
fn otlp_logs_are_accepted_by_the_official_protobuf_definitions() {
    let config = r#"{"collector":{"cluster":"streamtap_collector","format":"otlp","flush_interval_ms":50,"batch_size":2}}"#;
    let stack = Stack::start(FilterVariant::Streamtap, config);
    for _ in 0..2 {
        stack.chat(&Call::default());
    }
    // Every POST must parse; together they carry one record per call.
    let mut records = 0;
    let (posts, records, keys) = eventually(Duration::from_secs(10), || {
        let posts = stack.collector.otlp_posts();
        records = 0;
        let mut keys = Vec::new();
        for post in &posts {
            let body = post.to_string();
            let (n, k) = parse_with_official_proto(&body)
                .unwrap_or_else(|e| panic!("rejected: {e}\n{body}"));
            records += n;
            keys = k;
        }
        (records >= 2).then_some((posts, records, keys))
    })
    .unwrap_or_else(|| panic!("only {records} OTLP records arrived\n{}", stack.envoy.log()));
    assert_eq!(records, 2);
    assert!(
        stack.collector.calls().is_empty(),
        "OTLP goes to /v1/logs, not /v1/calls"
    );
    let body = posts[0].to_string();
    for key in [
        "gen_ai.provider.name",
        "gen_ai.operation.name",
        "gen_ai.request.model",
        "gen_ai.response.model",
        "gen_ai.response.id",
        "gen_ai.response.finish_reasons",
        "gen_ai.usage.input_tokens",
        "gen_ai.usage.output_tokens",
        "gen_ai.request.stream",
        "gen_ai.response.time_to_first_chunk",
        "event.name",
        "streamtap.stream_health.verdict",
        "streamtap.stream_health.largest_burst",
        "streamtap.stream_health.end_marker",
        "streamtap.stream_health.longest_stall_ms",
    ] {
        assert!(keys.iter().any(|k| k == key), "{key} missing in {keys:?}");
    }
    assert!(!keys
        .iter()
        .any(|k| k == "gen_ai.system" || k == "gen_ai.usage.prompt_tokens"));
    assert!(
        body.contains(r#"{"key":"event.name","value":{"stringValue":"gen_ai.client.inference.operation.details"}}"#),
        "{body}"
    );
    let resource = &posts[0]["resourceLogs"][0]["resource"]["attributes"][0];
    assert_eq!(resource["key"], "service.name");
    assert_eq!(
        posts[0]["resourceLogs"][0]["scopeLogs"][0]["logRecords"][0]["severityText"],
        "INFO"
    );

    // The check can fail: the same body with a malformed int64 is rejected.
    let broken = body.replacen(r#""intValue":""#, r#""intValue":"x"#, 1);
    assert!(
        parse_with_official_proto(&broken).is_err(),
        "a malformed body must be rejected"
    );
}
