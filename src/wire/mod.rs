//! Bytes on the wire, before any API is known: SSE and NDJSON framing, the
//! JSON pull reader, and decoding a copy of a compressed body.

pub mod decompress;
pub mod json;
pub mod json_stream;
pub mod ndjson;
pub mod sse;
