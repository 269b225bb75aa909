//! OTLP/HTTP JSON logs: a call summary as an OpenTelemetry log record with
//! the GenAI semantic-convention attribute names where one exists
//! (`gen_ai.request.model`, `gen_ai.usage.input_tokens`, ...; not the
//! deprecated `gen_ai.system` or `gen_ai.usage.prompt_tokens`), and a batch of
//! records as an `ExportLogsServiceRequest` for a collector's `/v1/logs`.
//!
//! Written by hand on purpose: the proto3 JSON mapping (attribute values as
//! `{"stringValue": ...}`, 64-bit integers as strings, hex trace ids) does not
//! match any Rust struct shape, and serde_json only escapes the strings.

use crate::call::health::Phase;
use crate::call::record::{Outcome, Summary};

/// The OpenTelemetry GenAI event a call summary is.
pub const EVENT_NAME: &str = "gen_ai.client.inference.operation.details";

/// `service.name` of the resource.
pub const SERVICE_NAME: &str = "streamtap";

/// The request envelope around comma-joined log records.
pub fn envelope_prefix() -> String {
    format!(
        concat!(
            r#"{{"resourceLogs":[{{"resource":{{"attributes":[{{"key":"service.name","value":{{"stringValue":"{}"}}}}]}},"#,
            r#""scopeLogs":[{{"scope":{{"name":"streamtap","version":"{}"}},"logRecords":["#
        ),
        SERVICE_NAME,
        env!("CARGO_PKG_VERSION")
    )
}

pub const ENVELOPE_SUFFIX: &str = "]}]}]}";

struct Attributes {
    json: String,
}

// Not inlined: ~40 call sites in `log_record` would otherwise each get a copy
// (the .wasm has a 250 KB budget).
impl Attributes {
    #[inline(never)]
    fn start(&mut self, key: &str) {
        if !self.json.ends_with('[') {
            self.json.push(',');
        }
        self.json.push_str("{\"key\":");
        push_str(&mut self.json, key);
        self.json.push_str(",\"value\":");
    }

    #[inline(never)]
    fn string(&mut self, key: &str, value: Option<&str>) {
        if let Some(value) = value {
            self.start(key);
            self.json.push_str("{\"stringValue\":");
            push_str(&mut self.json, value);
            self.json.push_str("}}");
        }
    }

    #[inline(never)]
    fn int(&mut self, key: &str, value: Option<u64>) {
        if let Some(value) = value {
            self.start(key);
            // proto3 JSON: int64 as a string.
            self.json
                .push_str(&format!("{{\"intValue\":\"{value}\"}}}}"));
        }
    }

    #[inline(never)]
    fn double(&mut self, key: &str, value: Option<f64>) {
        if let Some(value) = value.filter(|v| v.is_finite()) {
            self.start(key);
            // serde_json's float writer: core's `{}` for f64 would add ~15 KB to the .wasm.
            let number = serde_json::to_string(&value).unwrap_or_else(|_| "0".to_string());
            self.json.push_str("{\"doubleValue\":");
            self.json.push_str(&number);
            self.json.push_str("}}");
        }
    }

    #[inline(never)]
    fn boolean(&mut self, key: &str, value: bool) {
        self.start(key);
        self.json.push_str(&format!("{{\"boolValue\":{value}}}}}"));
    }

    #[inline(never)]
    fn strings(&mut self, key: &str, values: &[String]) {
        self.start(key);
        self.json.push_str("{\"arrayValue\":{\"values\":[");
        for (i, value) in values.iter().enumerate() {
            if i > 0 {
                self.json.push(',');
            }
            self.json.push_str("{\"stringValue\":");
            push_str(&mut self.json, value);
            self.json.push('}');
        }
        self.json.push_str("]}}}");
    }
}

#[inline(never)]
fn push_str(out: &mut String, text: &str) {
    // Serializing a &str cannot fail.
    out.push_str(&serde_json::to_string(text).unwrap_or_else(|_| "\"\"".to_string()));
}

/// One log record for a finished call.
pub fn log_record(s: &Summary<'_>, observed_unix_us: u64) -> String {
    let (severity_number, severity_text) = match s.outcome {
        Outcome::Completed => (9, "INFO"),
        _ => (13, "WARN"),
    };
    let mut out = format!(
        r#"{{"timeUnixNano":"{}","observedTimeUnixNano":"{}","severityNumber":{severity_number},"severityText":"{severity_text}","#,
        s.start_unix_ms.saturating_mul(1_000_000),
        observed_unix_us.saturating_mul(1000),
    );
    if let Some(trace_id) = s.trace_id {
        out.push_str(r#""traceId":"#);
        push_str(&mut out, trace_id);
        out.push(',');
    }
    out.push_str(r#""body":{"stringValue":"#);
    push_str(&mut out, s.content.unwrap_or_default());
    out.push_str(r#"},"attributes":["#);
    let mut a = Attributes { json: out };
    a.string("event.name", Some(EVENT_NAME));
    a.string(
        "gen_ai.provider.name",
        (s.provider != "unknown").then_some(s.provider),
    );
    a.string("gen_ai.operation.name", s.api.map(|_| "chat"));
    a.string("gen_ai.request.model", s.model);
    a.boolean("gen_ai.request.stream", s.stream);
    a.int("gen_ai.request.max_tokens", s.request_max_tokens);
    a.string("gen_ai.response.model", s.response_model);
    a.string("gen_ai.response.id", s.response_id);
    if !s.finish_reasons.is_empty() {
        a.strings("gen_ai.response.finish_reasons", s.finish_reasons);
    }
    a.int("gen_ai.usage.input_tokens", s.input_tokens);
    a.int("gen_ai.usage.output_tokens", s.output_tokens);
    a.int(
        "gen_ai.usage.cache_read.input_tokens",
        s.cache_read_input_tokens,
    );
    a.int(
        "gen_ai.usage.cache_creation.input_tokens",
        s.cache_write_input_tokens,
    );
    a.double("streamtap.cost_usd", s.cost_usd);
    if s.cost_estimated {
        a.boolean("streamtap.cost_estimated", true);
    }
    // Seconds, as the semantic conventions measure durations.
    a.double(
        "gen_ai.response.time_to_first_chunk",
        s.ttft_ms.map(|ms| ms / 1000.0),
    );
    a.string("http.request.method", s.method);
    a.string("url.path", s.path);
    a.int("http.response.status_code", s.status.map(u64::from));
    a.int(
        "streamtap.schema_version",
        Some(u64::from(s.schema_version)),
    );
    a.string("streamtap.summary_id", s.summary_id);
    a.string("streamtap.request_id", s.id);
    a.string("streamtap.api", s.api);
    a.string("streamtap.outcome", Some(outcome_name(s.outcome)));
    a.string("streamtap.usage_source", Some(usage_source_name(s)));
    a.double("streamtap.ttfb_ms", s.ttfb_ms);
    a.double("streamtap.ttft_ms", s.ttft_ms);
    a.double("streamtap.ttft_tool_ms", s.ttft_tool_ms);
    a.double("streamtap.output_tokens_per_s", s.output_tokens_per_s);
    a.double("streamtap.duration_ms", s.duration_ms);
    a.double("streamtap.max_gap_ms", s.max_gap_ms);
    a.double("streamtap.gap_p50_ms", s.gap_p50_ms);
    a.double("streamtap.gap_p99_ms", s.gap_p99_ms);
    a.int("streamtap.events", Some(s.events));
    a.int("streamtap.chunks", Some(s.chunks));
    a.int("streamtap.bytes", Some(s.bytes));
    a.int("streamtap.parse_errors", Some(s.parse_errors));
    a.int(
        "streamtap.reasoning_output_tokens",
        s.reasoning_output_tokens,
    );
    a.int("streamtap.tool_calls", Some(s.tool_calls.len() as u64));
    a.boolean("streamtap.content_truncated", s.content_truncated);
    if let Some(h) = &s.stream_health {
        a.string("streamtap.stream_health.verdict", Some(h.verdict.name()));
        a.int(
            "streamtap.stream_health.content_deltas",
            Some(h.content_deltas),
        );
        a.int(
            "streamtap.stream_health.largest_burst",
            Some(h.largest_burst),
        );
        a.double("streamtap.stream_health.burst_share", Some(h.burst_share));
        a.double(
            "streamtap.stream_health.longest_stall_ms",
            Some(h.longest_stall_ms),
        );
        a.string(
            "streamtap.stream_health.stall_phase",
            h.stall_phase.map(Phase::name),
        );
        a.int(
            "streamtap.stream_health.events_per_chunk_max",
            Some(h.events_per_chunk_max),
        );
        a.int(
            "streamtap.stream_health.events_per_chunk_p50",
            Some(h.events_per_chunk_p50),
        );
        a.boolean("streamtap.stream_health.end_marker", h.end_marker);
        a.int("streamtap.stream_health.keepalives", Some(h.keepalives));
    }
    if let Some(timeline) = s.timeline {
        // The summary's `timeline` object, as JSON text in one string attribute.
        let text = serde_json::to_string(timeline).unwrap_or_default();
        a.string("streamtap.timeline", Some(&text));
    }
    a.string("error.message", s.error);
    let mut out = a.json;
    out.push_str("]}");
    out
}

pub fn outcome_name(outcome: Outcome) -> &'static str {
    match outcome {
        Outcome::Completed => "completed",
        Outcome::HttpError => "http_error",
        Outcome::UpstreamReset => "upstream_reset",
        Outcome::ClientCancelled => "client_cancelled",
        Outcome::Incomplete => "incomplete",
        Outcome::Truncated => "truncated",
    }
}

pub fn usage_source_name(s: &Summary<'_>) -> &'static str {
    match s.usage_source {
        crate::call::record::UsageSource::Reported => "reported",
        crate::call::record::UsageSource::Estimated => "estimated",
        crate::call::record::UsageSource::None => "none",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::call::record::{CallRecord, UsageCount};

    #[test]
    fn a_record_in_an_envelope_is_valid_otlp_json() {
        let mut r = CallRecord::new(1_764_000_000_000_000, true, 1024);
        r.request.model = Some("gpt-4o-mini".into());
        r.request.trace_id = Some("0af7651916cd43dd8448eb211c80319c".into());
        r.provider = "openai";
        r.api = Some("chat.completions");
        r.stream = true;
        r.status = Some(200);
        r.push_content("Hi \"there\"", 1_764_000_000_100_000);
        r.add_finish_reason("stop");
        r.set_usage(UsageCount::Input, 12);
        r.set_usage(UsageCount::Output, 3);
        r.end_us = Some(1_764_000_000_200_000);
        let record = log_record(&r.summary(Outcome::Completed), 1_764_000_000_300_000);
        let body = format!("{}{record},{record}{ENVELOPE_SUFFIX}", envelope_prefix());
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        let logs = &v["resourceLogs"][0];
        assert_eq!(
            logs["resource"]["attributes"][0]["value"]["stringValue"],
            "streamtap"
        );
        let rec = &logs["scopeLogs"][0]["logRecords"][1];
        assert_eq!(rec["severityText"], "INFO");
        assert_eq!(rec["timeUnixNano"], "1764000000000000000");
        assert_eq!(rec["traceId"], "0af7651916cd43dd8448eb211c80319c");
        assert_eq!(rec["body"]["stringValue"], "Hi \"there\"");
        let attr = |key: &str| {
            rec["attributes"]
                .as_array()
                .unwrap()
                .iter()
                .find(|a| a["key"] == key)
                .map(|a| a["value"].clone())
        };
        assert_eq!(
            attr("gen_ai.request.model").unwrap()["stringValue"],
            "gpt-4o-mini"
        );
        assert_eq!(attr("gen_ai.usage.input_tokens").unwrap()["intValue"], "12");
        assert_eq!(
            attr("streamtap.schema_version").unwrap()["intValue"],
            crate::call::record::SCHEMA_VERSION.to_string()
        );
        assert_eq!(
            attr("gen_ai.response.finish_reasons").unwrap()["arrayValue"]["values"][0]
                ["stringValue"],
            "stop"
        );
        assert_eq!(
            attr("gen_ai.response.time_to_first_chunk").unwrap()["doubleValue"],
            0.1
        );
        assert_eq!(
            attr("gen_ai.provider.name").unwrap()["stringValue"],
            "openai"
        );
        assert!(attr("gen_ai.system").is_none() && attr("gen_ai.usage.prompt_tokens").is_none());
    }
}
