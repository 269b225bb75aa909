//! The set-ups the same workload runs through, side by side.

use plotters::style::RGBColor;
use serde_json::{Map, Value};
use testbed::envoy::{EnvoyOptions, FilterVariant};

use crate::settings::Settings;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Variant {
    Direct,
    Plain,
    EmptyWasm,
    /// The near-empty filter copying every chunk into the VM (`get_buffer`):
    /// the floor of a filter that reads the body.
    ReadingWasm,
    /// The body-reading floor with 20 more request header reads per call,
    /// and with 20 more counter increments: the price of a host call.
    ReadingWasmHeaderReads,
    ReadingWasmCounterAdds,
    Streamtap,
    /// streamtap with `stream_health.enabled` false: the price of the
    /// streaming-health accounting is streamtap's figure minus this one's.
    StreamtapNoHealth,
    /// streamtap with `capture.timeline` on: the price of the flight recorder
    /// is this one's figure minus streamtap's.
    StreamtapTimeline,
    /// streamtap with `labelled_stats` false: the price of the labelled
    /// GenAI stats (~11 host calls per call) is streamtap's figure minus this one's.
    StreamtapNoLabels,
    /// streamtap without a collector: no queue, no batch, no POST.
    StreamtapNoExport,
    /// streamtap with `capture.response_content` false.
    StreamtapNoContent,
    /// streamtap with both `filter_state` keys off.
    StreamtapNoFilterState,
    /// streamtap with the access log line left without the summary field.
    StreamtapLogWithoutSummary,
    /// streamtap with `stats` false: no stat defined, none moved.
    StreamtapNoStats,
    /// streamtap's default config on another build of the filter
    /// (`BENCH_CANDIDATE_WASM`): a lever's A/B (`make bench-ab`).
    StreamtapCandidate,
    SseToMetadata,
    Buffering,
}

pub const VARIANTS: [Variant; 18] = [
    Variant::Direct,
    Variant::Plain,
    Variant::EmptyWasm,
    Variant::ReadingWasm,
    Variant::ReadingWasmHeaderReads,
    Variant::ReadingWasmCounterAdds,
    Variant::Streamtap,
    Variant::StreamtapNoHealth,
    Variant::StreamtapTimeline,
    Variant::StreamtapNoLabels,
    Variant::StreamtapNoExport,
    Variant::StreamtapNoContent,
    Variant::StreamtapNoFilterState,
    Variant::StreamtapLogWithoutSummary,
    Variant::StreamtapNoStats,
    Variant::StreamtapCandidate,
    Variant::SseToMetadata,
    Variant::Buffering,
];

/// The rounds' set-ups by default (latency, paced CPU, saturation): the
/// limit, the floors, streamtap, its native peer and the control. The
/// feature switches are priced by the cost model instead.
pub const ROUND_VARIANTS: [Variant; 7] = [
    Variant::Direct,
    Variant::Plain,
    Variant::EmptyWasm,
    Variant::ReadingWasm,
    Variant::Streamtap,
    Variant::SseToMetadata,
    Variant::Buffering,
];

/// The cost model's set-ups by default: every one that runs Envoy but the
/// buffering control (whose cost is not per chunk), the counter-add pricing
/// and the candidate build (both for `make bench-ab`).
pub const COST_VARIANTS: [Variant; 14] = [
    Variant::Plain,
    Variant::EmptyWasm,
    Variant::ReadingWasm,
    Variant::ReadingWasmHeaderReads,
    Variant::Streamtap,
    Variant::StreamtapNoHealth,
    Variant::StreamtapTimeline,
    Variant::StreamtapNoLabels,
    Variant::StreamtapNoExport,
    Variant::StreamtapNoContent,
    Variant::StreamtapNoFilterState,
    Variant::StreamtapLogWithoutSummary,
    Variant::StreamtapNoStats,
    Variant::SseToMetadata,
];

/// The host calls per call the two host-call set-ups add.
pub const HOST_CALLS: u32 = 20;

impl Variant {
    /// Its key in `latest.json` and `BENCH_VARIANTS`.
    pub fn key(self) -> &'static str {
        match self {
            Variant::Direct => "direct",
            Variant::Plain => "plain_envoy",
            Variant::EmptyWasm => "empty_wasm",
            Variant::ReadingWasm => "reading_wasm",
            Variant::ReadingWasmHeaderReads => "reading_wasm_header_reads",
            Variant::ReadingWasmCounterAdds => "reading_wasm_counter_adds",
            Variant::Streamtap => "streamtap",
            Variant::StreamtapNoHealth => "streamtap_no_health",
            Variant::StreamtapTimeline => "streamtap_timeline",
            Variant::StreamtapNoLabels => "streamtap_no_labels",
            Variant::StreamtapNoExport => "streamtap_no_export",
            Variant::StreamtapNoContent => "streamtap_no_content",
            Variant::StreamtapNoFilterState => "streamtap_no_filter_state",
            Variant::StreamtapLogWithoutSummary => "streamtap_log_without_summary",
            Variant::StreamtapNoStats => "streamtap_no_stats",
            Variant::StreamtapCandidate => "streamtap_candidate",
            Variant::SseToMetadata => "sse_to_metadata",
            Variant::Buffering => "buffering_lua",
        }
    }

    pub fn from_key(key: &str) -> Option<Variant> {
        VARIANTS.iter().copied().find(|v| v.key() == key)
    }

    pub fn label(self) -> &'static str {
        match self {
            Variant::Direct => "direct (no proxy)",
            Variant::Plain => "plain Envoy",
            Variant::EmptyWasm => "near-empty wasm",
            Variant::ReadingWasm => "body-reading wasm",
            Variant::ReadingWasmHeaderReads => "body-reading wasm, +20 header reads",
            Variant::ReadingWasmCounterAdds => "body-reading wasm, +20 counter adds",
            Variant::Streamtap => "streamtap",
            Variant::StreamtapNoHealth => "streamtap, stream_health off",
            Variant::StreamtapTimeline => "streamtap, capture.timeline on",
            Variant::StreamtapNoLabels => "streamtap, labelled_stats off",
            Variant::StreamtapNoExport => "streamtap, no collector",
            Variant::StreamtapNoContent => "streamtap, response_content off",
            Variant::StreamtapNoFilterState => "streamtap, filter_state off",
            Variant::StreamtapLogWithoutSummary => "streamtap, access log w/o summary",
            Variant::StreamtapNoStats => "streamtap, stats off",
            Variant::StreamtapCandidate => "streamtap, candidate build",
            Variant::SseToMetadata => "native sse_to_metadata",
            Variant::Buffering => "buffering Lua (control)",
        }
    }

    /// The filter before Envoy's router; `None`: no Envoy at all.
    pub fn filter(self) -> Option<FilterVariant> {
        match self {
            Variant::Direct => None,
            Variant::Plain => Some(FilterVariant::NoFilter),
            Variant::EmptyWasm => Some(FilterVariant::EmptyWasm),
            Variant::ReadingWasm => Some(FilterVariant::ReadingWasm),
            Variant::ReadingWasmHeaderReads => Some(FilterVariant::HostCallsWasm {
                header_reads: HOST_CALLS,
                counter_adds: 0,
            }),
            Variant::ReadingWasmCounterAdds => Some(FilterVariant::HostCallsWasm {
                header_reads: 0,
                counter_adds: HOST_CALLS,
            }),
            Variant::SseToMetadata => Some(FilterVariant::SseToMetadata),
            Variant::Buffering => Some(FilterVariant::BufferingLua),
            _ => Some(FilterVariant::Streamtap),
        }
    }

    /// Envoy's options for this set-up, from the common ones.
    pub fn envoy_options(self, opts: EnvoyOptions, settings: &Settings) -> EnvoyOptions {
        match (self, &settings.candidate_wasm) {
            (Variant::StreamtapLogWithoutSummary, _) => opts.without_summary_in_access_log(),
            (Variant::StreamtapCandidate, Some(path)) => opts.with_wasm_path(path),
            _ => opts,
        }
    }

    pub fn color(self) -> RGBColor {
        match self {
            Variant::Direct => RGBColor(120, 120, 120),
            Variant::Plain => RGBColor(31, 119, 180),
            Variant::EmptyWasm => RGBColor(44, 160, 44),
            // The floor's green, darker.
            Variant::ReadingWasm => RGBColor(20, 100, 20),
            Variant::ReadingWasmHeaderReads => RGBColor(60, 130, 60),
            Variant::ReadingWasmCounterAdds => RGBColor(90, 150, 90),
            Variant::Streamtap => RGBColor(214, 39, 40),
            // Streamtap's red, lighter.
            Variant::StreamtapNoHealth => RGBColor(255, 152, 150),
            // Streamtap's red, darker.
            Variant::StreamtapTimeline => RGBColor(140, 20, 30),
            // Streamtap's red, greyer.
            Variant::StreamtapNoLabels => RGBColor(190, 110, 110),
            Variant::StreamtapNoExport => RGBColor(230, 90, 60),
            Variant::StreamtapNoContent => RGBColor(200, 60, 120),
            Variant::StreamtapNoFilterState => RGBColor(170, 70, 70),
            Variant::StreamtapLogWithoutSummary => RGBColor(240, 120, 100),
            Variant::StreamtapNoStats => RGBColor(160, 40, 90),
            Variant::StreamtapCandidate => RGBColor(120, 20, 60),
            Variant::SseToMetadata => RGBColor(148, 103, 189),
            Variant::Buffering => RGBColor(255, 127, 14),
        }
    }

    /// streamtap's filter, whatever its config: its summaries and counters
    /// are read.
    pub fn is_streamtap(self) -> bool {
        self.filter() == Some(FilterVariant::Streamtap)
    }

    /// The plugin config of a set-up. streamtap's variants start from
    /// streamtap's (`BENCH_STREAMTAP_CONFIG`, else the default) and change one
    /// thing; others ignore it.
    pub fn plugin_config(self, streamtap: &str) -> Result<String, String> {
        let (path, value): (&[&str], Value) = match self {
            Variant::StreamtapNoHealth => (&["stream_health", "enabled"], Value::Bool(false)),
            Variant::StreamtapTimeline => (&["capture", "timeline"], Value::Bool(true)),
            Variant::StreamtapNoLabels => (&["labelled_stats"], Value::Bool(false)),
            Variant::StreamtapNoExport => (&["collector"], Value::Null),
            Variant::StreamtapNoContent => (&["capture", "response_content"], Value::Bool(false)),
            Variant::StreamtapNoFilterState => (
                &["filter_state"],
                serde_json::json!({"summary": false, "content": false}),
            ),
            Variant::StreamtapNoStats => (&["stats"], Value::Bool(false)),
            _ => return Ok(streamtap.to_string()),
        };
        let mut config: Value = serde_json::from_str(streamtap)
            .map_err(|e| format!("streamtap's plugin config is not JSON: {e}"))?;
        let (last, sections) = path.split_last().ok_or("empty path")?;
        let mut object = config
            .as_object_mut()
            .ok_or("streamtap's plugin config is not a JSON object")?;
        for section in sections {
            object = object
                .entry(*section)
                .or_insert_with(|| Value::Object(Map::new()))
                .as_object_mut()
                .ok_or_else(|| {
                    format!("{section} in streamtap's plugin config is not an object")
                })?;
        }
        object.insert(last.to_string(), value);
        Ok(config.to_string())
    }

    /// In the chart's panel of one slow call.
    pub fn in_timeline(self) -> bool {
        matches!(
            self,
            Variant::Direct | Variant::Plain | Variant::Streamtap | Variant::Buffering
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use testbed::envoy::DEFAULT_PLUGIN_CONFIG;

    #[test]
    fn no_health_is_streamtap_config_with_stream_health_off() {
        let base = DEFAULT_PLUGIN_CONFIG;
        assert_eq!(Variant::Streamtap.plugin_config(base).unwrap(), base);
        let off: Value =
            serde_json::from_str(&Variant::StreamtapNoHealth.plugin_config(base).unwrap()).unwrap();
        let mut want: Value = serde_json::from_str(base).unwrap();
        want["stream_health"] = serde_json::json!({"enabled": false});
        assert_eq!(off, want);
        // Other stream_health settings are kept; `enabled` is overridden.
        let tuned = r#"{"stream_health":{"enabled":true,"pause_ms":100}}"#;
        let off: Value =
            serde_json::from_str(&Variant::StreamtapNoHealth.plugin_config(tuned).unwrap())
                .unwrap();
        assert_eq!(
            off,
            serde_json::json!({"stream_health":{"enabled":false,"pause_ms":100}})
        );
        assert!(Variant::StreamtapNoHealth.plugin_config("[]").is_err());
        let on: Value =
            serde_json::from_str(&Variant::StreamtapTimeline.plugin_config(base).unwrap()).unwrap();
        assert_eq!(on["capture"]["timeline"], true);
        let unlabelled: Value =
            serde_json::from_str(&Variant::StreamtapNoLabels.plugin_config(base).unwrap()).unwrap();
        let mut want: Value = serde_json::from_str(base).unwrap();
        want["labelled_stats"] = Value::Bool(false);
        assert_eq!(unlabelled, want);
        assert_eq!(
            Variant::from_key("streamtap_no_health"),
            Some(Variant::StreamtapNoHealth)
        );
        let edit = |v: Variant| -> Value {
            serde_json::from_str(&v.plugin_config(base).unwrap()).unwrap()
        };
        assert_eq!(edit(Variant::StreamtapNoExport)["collector"], Value::Null);
        assert_eq!(
            edit(Variant::StreamtapNoContent)["capture"]["response_content"],
            false
        );
        assert_eq!(
            edit(Variant::StreamtapNoFilterState)["filter_state"],
            serde_json::json!({"summary": false, "content": false})
        );
        assert_eq!(edit(Variant::StreamtapNoStats)["stats"], false);
        // Every streamtap variant's config is one the filter takes.
        for v in VARIANTS.iter().filter(|v| v.is_streamtap()) {
            let text = v.plugin_config(base).unwrap();
            streamtap::config::Config::parse(text.as_bytes())
                .unwrap_or_else(|e| panic!("{}: {e}", v.key()));
        }
    }

    #[test]
    fn every_variant_has_its_own_key_and_color() {
        for (i, a) in VARIANTS.iter().enumerate() {
            for b in &VARIANTS[i + 1..] {
                assert_ne!(a.key(), b.key());
                assert_ne!(a.color(), b.color());
            }
        }
    }
}
