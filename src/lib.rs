//! streamtap: an Envoy HTTP filter (proxy-wasm) that reads LLM response streams
//! as they pass, without holding a byte back, and exports one summary per call.
//!
//! Everything but `shell` is the pure core: no host calls, tested natively.

pub mod anthropic;
pub mod config;
pub mod decompress;
pub mod estimate;
pub mod export;
pub mod json;
pub mod latency;
pub mod openai;
pub mod otlp;
pub mod record;
pub mod responses;
pub mod sse;
pub mod tap;

#[cfg(target_arch = "wasm32")]
mod shell;

#[cfg(test)]
mod fixture_tests;

/// An event or body a provider adapter could not understand. The bytes still
/// flowed; the call's `parse_errors` counts it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ParseError;
