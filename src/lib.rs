//! streamtap: an Envoy HTTP filter (proxy-wasm) that reads LLM response streams
//! as they pass, without holding a byte back, and exports one summary per call.
//!
//! Everything but `shell` is the pure core: no host calls, tested natively.

pub mod config;
pub mod export;
pub mod latency;
pub mod openai;
pub mod record;
pub mod sse;
pub mod tap;

#[cfg(target_arch = "wasm32")]
mod shell;
