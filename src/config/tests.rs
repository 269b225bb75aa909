//! The plugin configuration: defaults, every field, and refusals naming the field.

use super::*;

#[test]
fn log_level_is_a_field_with_a_default() {
    assert_eq!(Config::parse(b"{}").unwrap().log_level, LogLevel::Info);
    let c = Config::parse(br#"{"log_level":"debug"}"#).unwrap();
    assert_eq!(c.log_level, LogLevel::Debug);
    for bad in [&br#"{"log_level":"loud"}"#[..], br#"{"log_level":3}"#] {
        let e = Config::parse(bad).unwrap_err();
        assert_eq!(e.field, "log_level", "{e}");
    }
}

#[test]
fn gemini_and_aws_credential_headers_are_never_recorded() {
    let c = Config::parse(
        br#"{"capture":{"request_headers":["x-goog-api-key","x-amz-security-token","x-user"]}}"#,
    )
    .unwrap();
    assert!(!c.capture.header_allowed("X-Goog-Api-Key"));
    assert!(!c.capture.header_allowed("x-amz-security-token"));
    assert!(c.capture.header_allowed("x-user"));
}

#[test]
fn empty_config_is_all_defaults() {
    let c = Config::parse(b"").unwrap();
    assert_eq!(c, Config::default());
    assert!(c.collector.is_none());
    assert!(c.capture.response_content);
    assert!(!c.capture.request_content);
    assert_eq!(c.capture.max_content_bytes, 65536);
}

#[test]
fn collector_defaults() {
    let c = Config::parse(br#"{"collector":{"cluster":"c"}}"#).unwrap();
    let col = c.collector.unwrap();
    assert_eq!(col.path, "/v1/calls");
    assert_eq!(col.authority, "streamtap-collector");
    assert_eq!(col.format, ExportFormat::Json);
    assert_eq!(col.timeout_ms, 2000);
    assert_eq!(col.batch_size, 64);
    assert_eq!(col.flush_interval_ms, 500);
    assert_eq!(col.max_queue, 10000);
}

#[test]
fn full_design_example_parses_except_otlp() {
    let json = br#"{
      "collector": {"cluster": "streamtap_collector", "path": "/v1/calls",
        "authority": "streamtap-collector", "format": "json",
        "headers": {"authorization": "Bearer x"}, "timeout_ms": 2000,
        "batch_size": 64, "flush_interval_ms": 500, "max_queue": 10000},
      "capture": {"response_content": true, "request_content": false, "max_content_bytes": 65536},
      "sample_rate": 1.0 }"#;
    let c = Config::parse(json).unwrap();
    assert_eq!(c.collector.unwrap().headers["authorization"], "Bearer x");
}

#[test]
fn unknown_field_is_named_with_its_path() {
    let e = Config::parse(br#"{"collector":{"cluster":"c","bogus_knob":1}}"#).unwrap_err();
    assert_eq!(e.field, "collector.bogus_knob");
    let e = Config::parse(br#"{"sampel_rate":1}"#).unwrap_err();
    assert_eq!(e.field, "sampel_rate");
    assert!(e.to_string().contains("sampel_rate"), "{e}");
}

#[test]
fn wrong_type_is_named() {
    let e = Config::parse(br#"{"collector":{"cluster":"c","timeout_ms":"fast"}}"#).unwrap_err();
    assert_eq!(e.field, "collector.timeout_ms");
    let e = Config::parse(br#"{"capture":{"response_content":"yes"}}"#).unwrap_err();
    assert_eq!(e.field, "capture.response_content");
}

#[test]
fn missing_cluster_is_named() {
    let e = Config::parse(br#"{"collector":{}}"#).unwrap_err();
    assert!(e.message.contains("cluster"), "{e}");
}

#[test]
fn out_of_range_values_are_named() {
    for (json, field) in [
        (r#"{"sample_rate":1.5}"#, "sample_rate"),
        (
            r#"{"collector":{"cluster":"c","batch_size":0}}"#,
            "collector.batch_size",
        ),
        (
            r#"{"collector":{"cluster":"c","timeout_ms":0}}"#,
            "collector.timeout_ms",
        ),
        (
            r#"{"collector":{"cluster":"","path":"/x"}}"#,
            "collector.cluster",
        ),
        (
            r#"{"collector":{"cluster":"c","path":"x"}}"#,
            "collector.path",
        ),
        (
            r#"{"collector":{"cluster":"c","format":"xml"}}"#,
            "collector.format",
        ),
    ] {
        let e = Config::parse(json.as_bytes()).unwrap_err();
        assert_eq!(e.field, field, "{json}: {e}");
    }
}

#[test]
fn header_capture_and_redaction_lists() {
    let c = Config::parse(
        br#"{"capture":{"request_headers":["X-User-Id","authorization","x-internal"],"redact_headers":["X-Internal"],"redact_fields":["session"]}}"#,
    )
    .unwrap()
    .capture;
    assert_eq!(
        c.request_headers,
        ["x-user-id", "authorization", "x-internal"]
    );
    assert!(c.header_allowed("x-user-id"));
    assert!(
        !c.header_allowed("Authorization"),
        "credentials are never allowed"
    );
    assert!(!c.header_allowed("x-internal"));
    assert!(c.field_redacted(b"API_KEY"));
    assert!(c.field_redacted(b"session"));
    assert!(!c.field_redacted(b"model"));
    let e = Config::parse(br#"{"capture":{"request_headers":["ok",""]}}"#).unwrap_err();
    assert_eq!(e.field, "capture.request_headers[1]");
    let e = Config::parse(br#"{"capture":{"redact_fields":"token"}}"#).unwrap_err();
    assert_eq!(e.field, "capture.redact_fields");
}

#[test]
fn otlp_format_defaults_to_the_logs_path() {
    let c = Config::parse(br#"{"collector":{"cluster":"otel","format":"otlp"}}"#).unwrap();
    let col = c.collector.unwrap();
    assert_eq!(
        (col.format, col.path.as_str()),
        (ExportFormat::Otlp, "/v1/logs")
    );
    let c =
        Config::parse(br#"{"collector":{"cluster":"otel","format":"otlp","path":"/x"}}"#).unwrap();
    assert_eq!(c.collector.unwrap().path, "/x");
}

#[test]
fn max_decoded_bytes_has_a_default_and_a_range() {
    let c = Config::parse(b"{}").unwrap().capture;
    assert_eq!(c.max_decoded_bytes, 8 * 1024 * 1024);
    let c = Config::parse(br#"{"capture":{"max_decoded_bytes":1048576}}"#).unwrap();
    assert_eq!(c.capture.max_decoded_bytes, 1 << 20);
    for edge in [65536u64, 268435456] {
        let json = format!(r#"{{"capture":{{"max_decoded_bytes":{edge}}}}}"#);
        let c = Config::parse(json.as_bytes()).unwrap();
        assert_eq!(c.capture.max_decoded_bytes as u64, edge);
    }
    for bad in [
        r#"{"capture":{"max_decoded_bytes":65535}}"#,
        r#"{"capture":{"max_decoded_bytes":268435457}}"#,
        r#"{"capture":{"max_decoded_bytes":0}}"#,
        r#"{"capture":{"max_decoded_bytes":"8MiB"}}"#,
        r#"{"capture":{"max_decoded_bytes":-1}}"#,
        r#"{"capture":{"max_decoded_bytes":1.5}}"#,
    ] {
        let e = Config::parse(bad.as_bytes()).unwrap_err();
        assert_eq!(e.field, "capture.max_decoded_bytes", "{bad}: {e}");
        assert!(e.to_string().contains("capture.max_decoded_bytes"), "{e}");
    }
}

#[test]
fn not_json_is_refused() {
    let e = Config::parse(b"{not json").unwrap_err();
    assert!(!e.message.is_empty());
}

#[test]
fn stream_health_thresholds_have_defaults_and_ranges() {
    let c = Config::parse(b"{}").unwrap();
    assert_eq!(c.stream_health, crate::call::health::Thresholds::default());
    assert!(!c.disable_downstream_buffering);
    let c = Config::parse(
        br#"{"disable_downstream_buffering":true,"stream_health":{"min_deltas":4,"pause_ms":100,"pace_factor":4,"burst_deltas":3,"stall_ms":500,"buffered_share":0.8,"bursty_share":0.1}}"#,
    )
    .unwrap();
    assert!(c.disable_downstream_buffering);
    let t = c.stream_health;
    assert_eq!(
        (
            t.min_deltas,
            t.pause_ms,
            t.pace_factor,
            t.burst_deltas,
            t.stall_ms
        ),
        (4, 100, 4, 3, 500)
    );
    assert_eq!((t.buffered_share, t.bursty_share), (0.8, 0.1));
    assert!(t.enabled);
    let off = Config::parse(br#"{"stream_health":{"enabled":false}}"#).unwrap();
    assert!(!off.stream_health.enabled);
    for (bad, field) in [
        (
            r#"{"stream_health":{"min_deltas":1}}"#,
            "stream_health.min_deltas",
        ),
        (
            r#"{"stream_health":{"pause_ms":0}}"#,
            "stream_health.pause_ms",
        ),
        (
            r#"{"stream_health":{"pace_factor":1000}}"#,
            "stream_health.pace_factor",
        ),
        (
            r#"{"stream_health":{"burst_deltas":"8"}}"#,
            "stream_health.burst_deltas",
        ),
        (
            r#"{"stream_health":{"stall_ms":10}}"#,
            "stream_health.stall_ms",
        ),
        (
            r#"{"stream_health":{"buffered_share":0}}"#,
            "stream_health.buffered_share",
        ),
        (
            r#"{"stream_health":{"buffered_share":1.5}}"#,
            "stream_health.buffered_share",
        ),
        (
            r#"{"stream_health":{"buffered_share":0.4,"bursty_share":0.5}}"#,
            "stream_health.bursty_share",
        ),
        (r#"{"stream_health":{"stall":1}}"#, "stream_health.stall"),
        (r#"{"stream_health":[]}"#, "stream_health"),
        (
            r#"{"disable_downstream_buffering":"yes"}"#,
            "disable_downstream_buffering",
        ),
    ] {
        let e = Config::parse(bad.as_bytes()).unwrap_err();
        assert_eq!(e.field, field, "{bad}: {e}");
    }
}

#[test]
fn the_timeline_is_off_by_default_and_its_bound_has_a_range() {
    let c = Config::parse(b"{}").unwrap().capture;
    assert!(!c.timeline);
    assert_eq!(c.timeline_max_entries, 512);
    let c = Config::parse(br#"{"capture":{"timeline":true,"timeline_max_entries":16}}"#)
        .unwrap()
        .capture;
    assert!(c.timeline);
    assert_eq!(c.timeline_max_entries, 16);
    for bad in [
        r#"{"capture":{"timeline_max_entries":15}}"#,
        r#"{"capture":{"timeline_max_entries":16385}}"#,
        r#"{"capture":{"timeline_max_entries":"many"}}"#,
    ] {
        let e = Config::parse(bad.as_bytes()).unwrap_err();
        assert_eq!(e.field, "capture.timeline_max_entries", "{bad}: {e}");
    }
    let e = Config::parse(br#"{"capture":{"timeline":1}}"#).unwrap_err();
    assert_eq!(e.field, "capture.timeline");
}

#[test]
fn pricing_is_read_and_bad_prices_are_refused_with_the_field() {
    let c = Config::parse(
        br#"{"pricing":{"gpt-4o-mini":{"input":0.15,"output":0.6,"cache_read":0.075},"claude-sonnet-4*":{"input":3,"output":15,"cache_read":0.3,"cache_write":3.75}}}"#,
    )
    .unwrap();
    let p = c
        .pricing
        .price_of(&[Some("claude-sonnet-4-5-20250929")])
        .unwrap();
    assert_eq!((p.input, p.output, p.cache_write), (3.0, 15.0, Some(3.75)));
    assert_eq!(
        c.pricing
            .price_of(&[Some("gpt-4o-mini")])
            .unwrap()
            .cache_read,
        Some(0.075)
    );
    assert!(Config::parse(b"{}").unwrap().pricing.is_empty());
    for (bad, field) in [
        (
            r#"{"pricing":{"m":{"input":-1,"output":1}}}"#,
            "pricing.m.input",
        ),
        (
            r#"{"pricing":{"m":{"input":1,"output":"2"}}}"#,
            "pricing.m.output",
        ),
        (r#"{"pricing":{"m":{"input":1}}}"#, "pricing.m"),
        (
            r#"{"pricing":{"m":{"input":1,"output":1,"cached":1}}}"#,
            "pricing.m.cached",
        ),
        (r#"{"pricing":{"m":[]}}"#, "pricing.m"),
        (r#"{"pricing":{"*":{"input":1,"output":1}}}"#, "pricing.*"),
        (r#"{"pricing":[]}"#, "pricing"),
    ] {
        let e = Config::parse(bad.as_bytes()).unwrap_err();
        assert_eq!(e.field, field, "{bad}: {e}");
    }
}

#[test]
fn max_label_values_has_a_default_and_a_range() {
    assert_eq!(Config::parse(b"{}").unwrap().max_label_values, 100);
    assert_eq!(
        Config::parse(br#"{"max_label_values":3}"#)
            .unwrap()
            .max_label_values,
        3
    );
    for bad in [r#"{"max_label_values":0}"#, r#"{"max_label_values":10001}"#] {
        assert_eq!(
            Config::parse(bad.as_bytes()).unwrap_err().field,
            "max_label_values"
        );
    }
}

#[test]
fn metric_labels_name_a_plain_header_never_a_credential() {
    let c = Config::parse(
        br#"{"metric_labels":{"consumer_header":"X-Tenant-Id","route":true,"upstream_cluster":true}}"#,
    )
    .unwrap();
    assert_eq!(
        c.metric_labels,
        MetricLabels {
            consumer_header: Some("x-tenant-id".to_string()),
            route: true,
            upstream_cluster: true,
        }
    );
    assert_eq!(
        Config::parse(b"{}").unwrap().metric_labels,
        MetricLabels::default()
    );
    assert!(Config::parse(b"{}").unwrap().labelled_stats);
    assert!(
        !Config::parse(br#"{"labelled_stats":false}"#)
            .unwrap()
            .labelled_stats
    );
    assert_eq!(
        Config::parse(br#"{"labelled_stats":"no"}"#)
            .unwrap_err()
            .field,
        "labelled_stats"
    );
    for credential in CREDENTIAL_HEADERS {
        let bad = format!(r#"{{"metric_labels":{{"consumer_header":"{credential}"}}}}"#);
        let e = Config::parse(bad.as_bytes()).unwrap_err();
        assert_eq!(e.field, "metric_labels.consumer_header", "{bad}");
        assert!(e.message.contains("credential"), "{e}");
    }
    for (bad, field) in [
        (
            r#"{"metric_labels":{"consumer_header":"Authorization"}}"#,
            "metric_labels.consumer_header",
        ),
        (
            r#"{"metric_labels":{"consumer_header":""}}"#,
            "metric_labels.consumer_header",
        ),
        (
            r#"{"metric_labels":{"consumer_header":"x-team"},"capture":{"redact_headers":["x-team"]}}"#,
            "metric_labels.consumer_header",
        ),
        (r#"{"metric_labels":{"route":1}}"#, "metric_labels.route"),
        (r#"{"metric_labels":{"user":true}}"#, "metric_labels.user"),
        (r#"{"metric_labels":[]}"#, "metric_labels"),
    ] {
        assert_eq!(
            Config::parse(bad.as_bytes()).unwrap_err().field,
            field,
            "{bad}"
        );
    }
}

#[test]
fn filter_state_keys_and_stats_can_be_switched_off() {
    let defaults = Config::parse(b"{}").unwrap();
    assert_eq!(defaults.filter_state, FilterState::default());
    assert!(defaults.filter_state.summary && defaults.filter_state.content);
    assert!(defaults.stats);
    let off = Config::parse(br#"{"filter_state":{"content":false},"stats":false}"#).unwrap();
    assert_eq!(
        off.filter_state,
        FilterState {
            summary: true,
            content: false
        }
    );
    assert!(!off.stats);
    for (bad, field) in [
        (&br#"{"filter_state":true}"#[..], "filter_state"),
        (br#"{"filter_state":{"summary":1}}"#, "filter_state.summary"),
        (
            br#"{"filter_state":{"conten":false}}"#,
            "filter_state.conten",
        ),
        (br#"{"stats":"off"}"#, "stats"),
    ] {
        let e = Config::parse(bad).unwrap_err();
        assert_eq!(e.field, field, "{}", String::from_utf8_lossy(bad));
    }
}
