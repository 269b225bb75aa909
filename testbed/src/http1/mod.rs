//! The test bed's one HTTP/1.1 implementation, sans IO: heads are parsed from
//! `&[u8]`, bodies by incremental decoders, so the async mock upstream, the
//! blocking scripted upstream, the client, the load generator and the Envoy
//! harness share every rule and differ only in their thin read loops.

mod chunked;
pub mod request;
pub mod response;

pub use chunked::ChunkedDecoder;
pub use request::{Progress, Request, RequestReader};
pub use response::{body_framing, parse_response, take_response_head, ResponseHead};

use memchr::memmem;

/// The longest head (request or response) accepted; more is an error, not a wait.
pub const MAX_HEAD_BYTES: usize = 64 * 1024;
/// The largest request body the upstreams accept.
pub const MAX_REQUEST_BODY_BYTES: usize = 16 * 1024 * 1024;

/// Header fields: lowercase names, trimmed values, in the order received.
pub type Headers = Vec<(String, String)>;

/// Where the blank line ending a head starts.
pub fn head_end(buf: &[u8]) -> Option<usize> {
    memmem::find(buf, b"\r\n\r\n")
}

/// Splits a head (without its blank line) into its start line and header fields.
fn split_head(head: &[u8]) -> Result<(&str, Headers), String> {
    let text = std::str::from_utf8(head).map_err(|_| "head is not UTF-8".to_string())?;
    let mut lines = text.split("\r\n");
    let start_line = lines.next().unwrap_or("");
    let mut headers = Vec::new();
    for line in lines {
        let (name, value) = line
            .split_once(':')
            .ok_or_else(|| format!("bad header line {line:?}"))?;
        headers.push((name.trim().to_ascii_lowercase(), value.trim().to_string()));
    }
    Ok((start_line, headers))
}

/// The first value of header `name` (lowercase).
pub fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.as_str())
}

fn is_chunked(headers: &[(String, String)]) -> bool {
    header(headers, "transfer-encoding").is_some_and(|v| v.to_ascii_lowercase().contains("chunked"))
}

fn content_length(headers: &[(String, String)]) -> Result<Option<usize>, String> {
    header(headers, "content-length")
        .map(|v| v.parse().map_err(|_| format!("bad content-length {v:?}")))
        .transpose()
}

/// How a message body ends, with the state to find that end.
#[derive(Debug)]
pub enum BodyFraming {
    Chunked(ChunkedDecoder),
    /// This many body bytes are still to come.
    Length(usize),
    /// The body ends when the connection closes.
    UntilClose,
}

impl BodyFraming {
    /// Appends the body bytes in `input` to `out`; returns whether the body has
    /// ended and how many input bytes it used (the rest belong to what follows).
    pub fn feed(&mut self, input: &[u8], out: &mut Vec<u8>) -> Result<(bool, usize), String> {
        match self {
            BodyFraming::Chunked(decoder) => decoder.feed(input, out),
            BodyFraming::Length(left) => {
                let take = input.len().min(*left);
                out.extend_from_slice(input.get(..take).unwrap_or_default());
                *left -= take;
                Ok((*left == 0, take))
            }
            BodyFraming::UntilClose => {
                out.extend_from_slice(input);
                Ok((false, input.len()))
            }
        }
    }
}
