//! streamtap: an Envoy HTTP filter (proxy-wasm) that reads LLM response streams
//! as they pass, without holding a byte back, and exports one summary per call.
//!
//! The modules follow the pipeline (ARCHITECTURE.md): bytes are framed and
//! decoded (`wire`), understood per API (`provider`), accounted per call
//! (`call`) and shipped (`export`). Everything but `shell` is the pure core:
//! no host calls, tested natively.

pub mod call;
pub mod config;
pub mod export;
pub mod provider;
pub mod wire;

#[cfg(not(target_arch = "wasm32"))]
pub mod replay;
#[cfg(target_arch = "wasm32")]
mod shell;

/// An event or body a provider adapter could not understand. The bytes still
/// flowed; the call's `parse_errors` counts it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ParseError;
