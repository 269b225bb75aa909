//! The streaming workloads the load generator (crate::loadgen) runs, and
//! their description in `latest.json`.

use std::net::SocketAddr;
use std::time::Duration;

use crate::loadgen::{self, CallShape, LoadReport, Stop, Workload};
use serde_json::{json, Value};

use crate::settings::*;
use crate::variants::Variant;

/// Moderate load (latency): 20 streams, an event every 10 ms each, staggered.
pub fn moderate(target: SocketAddr) -> Workload {
    Workload {
        target,
        connections: MODERATE_CONNECTIONS,
        shape: CallShape::with_events(EVENTS_PER_CALL, MODERATE_INTERVAL_MS),
        stop: Stop::CallsPerConnection(MODERATE_CALLS_PER_CONNECTION),
        record: true,
        stagger: Duration::from_millis(MODERATE_INTERVAL_MS),
    }
}

/// Saturation (throughput, and the warm-up): calls back to back, no pause
/// between events, for `duration`.
pub fn saturation(target: SocketAddr, settings: &Settings, duration: Duration) -> Workload {
    Workload {
        target,
        connections: settings.saturation_connections,
        shape: CallShape {
            chunking: settings.saturation_chunking.clone(),
            ..CallShape::with_events(EVENTS_PER_CALL, 0)
        },
        stop: Stop::After(duration),
        record: false,
        stagger: Duration::ZERO,
    }
}

/// Paced high load (CPU per event): 400 streams, an event every 5 ms each.
pub fn paced(target: SocketAddr) -> Workload {
    Workload {
        target,
        connections: PACED_CONNECTIONS,
        shape: CallShape::with_events(EVENTS_PER_CALL, PACED_INTERVAL_MS),
        stop: Stop::CallsPerConnection(PACED_CALLS_PER_CONNECTION),
        record: true,
        stagger: Duration::from_millis(PACED_INTERVAL_MS),
    }
}

/// Before the idle-stream memory runs: both response lengths, a few calls.
pub fn idle_warmup(target: SocketAddr, events: usize) -> Workload {
    Workload {
        target,
        connections: 8,
        shape: CallShape::with_events(events, 0),
        stop: Stop::CallsPerConnection(3),
        record: false,
        stagger: Duration::ZERO,
    }
}

/// The idle streams: one event per write, paced, so Envoy sees the same
/// chunks in both sets; then the stream idles, open, after `events`.
pub fn idle_stream(events: usize) -> CallShape {
    CallShape {
        tokens: 2 * IDLE_LONG_EVENTS,
        idle_after: Some(events),
        ..CallShape::with_events(0, IDLE_INTERVAL_MS)
    }
}

/// The slow call of the chart's timeline panel.
pub fn timeline() -> CallShape {
    CallShape {
        tokens: TIMELINE_TOKENS,
        ..CallShape::with_events(0, TIMELINE_INTERVAL_MS)
    }
}

/// A run with any failed call is no measurement.
pub fn check_errors(what: &str, report: &LoadReport) -> Result<(), String> {
    if report.errors > 0 {
        return Err(format!(
            "{what}: {} errors, the first: {}",
            report.errors,
            report.first_error.as_deref().unwrap_or("?")
        ));
    }
    Ok(())
}

/// `workload` in `latest.json`.
pub fn describe(settings: &Settings) -> Value {
    json!({
        "events_per_call": EVENTS_PER_CALL,
        "tokens_per_call": EVENTS_PER_CALL - loadgen::NON_TOKEN_EVENTS,
        "request": loadgen::CHAT_BODY,
        "mock_chunking": "event (one write per SSE event)",
        "rounds": settings.rounds,
        "quick": settings.quick,
        "paired_repetitions": settings.paired_repetitions,
        "round_variants": settings.variants.iter().map(|v| v.key()).collect::<Vec<_>>(),
        "cost_variants": settings.cost_variants.iter().map(|v| v.key()).collect::<Vec<_>>(),
        "variant_plugin_configs": settings
            .variants
            .iter()
            .chain(&settings.cost_variants)
            .filter_map(|v| Some((v.key().to_string(), Value::String(v.plugin_config(&settings.streamtap_config).ok()?))))
            .collect::<serde_json::Map<String, Value>>(),
        "envoy_concurrency": 1,
        "moderate": {
            "connections": MODERATE_CONNECTIONS,
            "interval_ms": MODERATE_INTERVAL_MS,
            "calls_per_connection": MODERATE_CALLS_PER_CONNECTION,
            "stagger": "connection i starts i/20 of an interval late",
        },
        "saturation": {
            "connections": settings.saturation_connections,
            "interval_ms": 0,
            "seconds": settings.saturation.as_secs_f64(),
            "warmup_seconds": WARMUP.as_secs_f64(),
        },
        "idle_streams": {
            "streams": IDLE_STREAMS,
            "interval_ms": IDLE_INTERVAL_MS,
            "short_events": IDLE_SHORT_EVENTS,
            "long_events": IDLE_LONG_EVENTS,
            "capped_max_content_bytes": IDLE_CAPPED_CONTENT_BYTES,
        },
        "timeline": {"tokens": TIMELINE_TOKENS, "interval_ms": TIMELINE_INTERVAL_MS},
        "streamtap_plugin_config": settings.streamtap_config,
        "streamtap_no_health_plugin_config": Variant::StreamtapNoHealth
            .plugin_config(&settings.streamtap_config)
            .ok(),
        "streamtap_timeline_plugin_config": Variant::StreamtapTimeline
            .plugin_config(&settings.streamtap_config)
            .ok(),
        "streamtap_no_labels_plugin_config": Variant::StreamtapNoLabels
            .plugin_config(&settings.streamtap_config)
            .ok(),
        "idle_capped_timeline_entries": IDLE_TIMELINE_ENTRIES,
    })
}
