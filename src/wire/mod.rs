//! Bytes on the wire, before any API is known: SSE, NDJSON, streamed-JSON-array
//! and AWS event-stream framing, base64, the JSON pull reader, and decoding a copy of a compressed body.

pub mod base64;
pub mod decompress;
pub mod eventstream;
pub mod json;
pub mod json_array;
pub mod json_stream;
pub mod ndjson;
pub mod sse;
