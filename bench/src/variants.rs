//! The set-ups measured side by side: the mock directly, plain Envoy, and Envoy with each filter.

use crate::*;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Variant {
    Direct,
    Plain,
    EmptyWasm,
    Streamtap,
    SseToMetadata,
    Buffering,
}

pub(crate) const VARIANTS: [Variant; 6] = [
    Variant::Direct,
    Variant::Plain,
    Variant::EmptyWasm,
    Variant::Streamtap,
    Variant::SseToMetadata,
    Variant::Buffering,
];

impl Variant {
    pub(crate) fn key(self) -> &'static str {
        match self {
            Variant::Direct => "direct",
            Variant::Plain => "plain_envoy",
            Variant::EmptyWasm => "empty_wasm",
            Variant::Streamtap => "streamtap",
            Variant::SseToMetadata => "sse_to_metadata",
            Variant::Buffering => "buffering_lua",
        }
    }

    pub(crate) fn label(self) -> &'static str {
        match self {
            Variant::Direct => "direct (no proxy)",
            Variant::Plain => "plain Envoy",
            Variant::EmptyWasm => "near-empty wasm",
            Variant::Streamtap => "streamtap",
            Variant::SseToMetadata => "native sse_to_metadata",
            Variant::Buffering => "buffering Lua (control)",
        }
    }

    pub(crate) fn filter(self) -> Option<FilterVariant> {
        match self {
            Variant::Direct => None,
            Variant::Plain => Some(FilterVariant::NoFilter),
            Variant::EmptyWasm => Some(FilterVariant::EmptyWasm),
            Variant::Streamtap => Some(FilterVariant::Streamtap),
            Variant::SseToMetadata => Some(FilterVariant::SseToMetadata),
            Variant::Buffering => Some(FilterVariant::BufferingLua),
        }
    }

    pub(crate) fn color(self) -> RGBColor {
        match self {
            Variant::Direct => RGBColor(120, 120, 120),
            Variant::Plain => RGBColor(31, 119, 180),
            Variant::EmptyWasm => RGBColor(44, 160, 44),
            Variant::Streamtap => RGBColor(214, 39, 40),
            Variant::SseToMetadata => RGBColor(148, 103, 189),
            Variant::Buffering => RGBColor(255, 127, 14),
        }
    }

    pub(crate) fn in_timeline(self) -> bool {
        matches!(
            self,
            Variant::Direct | Variant::Plain | Variant::Streamtap | Variant::Buffering
        )
    }
}
