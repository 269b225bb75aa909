//! The set-ups the same workload runs through, side by side.

use plotters::style::RGBColor;
use serde_json::{Map, Value};
use testbed::envoy::FilterVariant;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Variant {
    Direct,
    Plain,
    EmptyWasm,
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
    SseToMetadata,
    Buffering,
}

pub const VARIANTS: [Variant; 9] = [
    Variant::Direct,
    Variant::Plain,
    Variant::EmptyWasm,
    Variant::Streamtap,
    Variant::StreamtapNoHealth,
    Variant::StreamtapTimeline,
    Variant::StreamtapNoLabels,
    Variant::SseToMetadata,
    Variant::Buffering,
];

impl Variant {
    /// Its key in `latest.json` and `BENCH_VARIANTS`.
    pub fn key(self) -> &'static str {
        match self {
            Variant::Direct => "direct",
            Variant::Plain => "plain_envoy",
            Variant::EmptyWasm => "empty_wasm",
            Variant::Streamtap => "streamtap",
            Variant::StreamtapNoHealth => "streamtap_no_health",
            Variant::StreamtapTimeline => "streamtap_timeline",
            Variant::StreamtapNoLabels => "streamtap_no_labels",
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
            Variant::Streamtap => "streamtap",
            Variant::StreamtapNoHealth => "streamtap, stream_health off",
            Variant::StreamtapTimeline => "streamtap, capture.timeline on",
            Variant::StreamtapNoLabels => "streamtap, labelled_stats off",
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
            Variant::Streamtap
            | Variant::StreamtapNoHealth
            | Variant::StreamtapTimeline
            | Variant::StreamtapNoLabels => Some(FilterVariant::Streamtap),
            Variant::SseToMetadata => Some(FilterVariant::SseToMetadata),
            Variant::Buffering => Some(FilterVariant::BufferingLua),
        }
    }

    pub fn color(self) -> RGBColor {
        match self {
            Variant::Direct => RGBColor(120, 120, 120),
            Variant::Plain => RGBColor(31, 119, 180),
            Variant::EmptyWasm => RGBColor(44, 160, 44),
            Variant::Streamtap => RGBColor(214, 39, 40),
            // Streamtap's red, lighter.
            Variant::StreamtapNoHealth => RGBColor(255, 152, 150),
            // Streamtap's red, darker.
            Variant::StreamtapTimeline => RGBColor(140, 20, 30),
            // Streamtap's red, greyer.
            Variant::StreamtapNoLabels => RGBColor(190, 110, 110),
            Variant::SseToMetadata => RGBColor(148, 103, 189),
            Variant::Buffering => RGBColor(255, 127, 14),
        }
    }

    /// streamtap's filter, whatever its config: its summaries and counters
    /// are read.
    pub fn is_streamtap(self) -> bool {
        matches!(
            self,
            Variant::Streamtap
                | Variant::StreamtapNoHealth
                | Variant::StreamtapTimeline
                | Variant::StreamtapNoLabels
        )
    }

    /// The plugin config of a streamtap variant, from streamtap's
    /// (`BENCH_STREAMTAP_CONFIG`, else the default): the same, plus
    /// `"stream_health":{"enabled":false}` for [`Variant::StreamtapNoHealth`],
    /// `"capture":{"timeline":true}` for [`Variant::StreamtapTimeline`],
    /// `"labelled_stats":false` for [`Variant::StreamtapNoLabels`].
    /// Other variants ignore it.
    pub fn plugin_config(self, streamtap: &str) -> Result<String, String> {
        let (section, field, value) = match self {
            Variant::StreamtapNoHealth => (Some("stream_health"), "enabled", false),
            Variant::StreamtapTimeline => (Some("capture"), "timeline", true),
            Variant::StreamtapNoLabels => (None, "labelled_stats", false),
            _ => return Ok(streamtap.to_string()),
        };
        let mut config: Value = serde_json::from_str(streamtap)
            .map_err(|e| format!("streamtap's plugin config is not JSON: {e}"))?;
        let Some(object) = config.as_object_mut() else {
            return Err("streamtap's plugin config is not a JSON object".to_string());
        };
        let Some(section) = section else {
            object.insert(field.to_string(), Value::Bool(value));
            return Ok(config.to_string());
        };
        let part = object
            .entry(section)
            .or_insert_with(|| Value::Object(Map::new()));
        let Some(part) = part.as_object_mut() else {
            return Err(format!(
                "{section} in streamtap's plugin config is not an object"
            ));
        };
        part.insert(field.to_string(), Value::Bool(value));
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
