//! Bytes on the wire, before any API is known: SSE, NDJSON and streamed-JSON-array
//! framing, the JSON pull reader, and decoding a copy of a compressed body.

pub mod decompress;
pub mod json;
pub mod json_array;
pub mod json_stream;
pub mod ndjson;
pub mod sse;
