//! The set-ups the same workload runs through, side by side.

use plotters::style::RGBColor;
use testbed::envoy::FilterVariant;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Variant {
    Direct,
    Plain,
    EmptyWasm,
    Streamtap,
    SseToMetadata,
    Buffering,
}

pub const VARIANTS: [Variant; 6] = [
    Variant::Direct,
    Variant::Plain,
    Variant::EmptyWasm,
    Variant::Streamtap,
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
            Variant::Streamtap => Some(FilterVariant::Streamtap),
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
            Variant::SseToMetadata => RGBColor(148, 103, 189),
            Variant::Buffering => RGBColor(255, 127, 14),
        }
    }

    /// In the chart's panel of one slow call.
    pub fn in_timeline(self) -> bool {
        matches!(
            self,
            Variant::Direct | Variant::Plain | Variant::Streamtap | Variant::Buffering
        )
    }
}
