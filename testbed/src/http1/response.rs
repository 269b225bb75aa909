//! Response heads and bodies, from the client side.

use super::{head_end, header, split_head, BodyFraming, ChunkedDecoder, Headers, MAX_HEAD_BYTES};

/// A response's status line and header fields.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ResponseHead {
    pub status: u16,
    pub headers: Headers,
}

impl ResponseHead {
    /// Parses a head without its final blank line.
    pub fn parse(head: &[u8]) -> Result<ResponseHead, String> {
        let (status_line, headers) = split_head(head)?;
        let mut parts = status_line.split_whitespace();
        let status = parts
            .next()
            .filter(|version| version.starts_with("HTTP/1."))
            .and(parts.next())
            .and_then(|code| code.parse().ok())
            .ok_or_else(|| format!("bad status line {status_line:?}"))?;
        Ok(ResponseHead { status, headers })
    }

    /// The first value of header `name` (lowercase).
    pub fn header(&self, name: &str) -> Option<&str> {
        header(&self.headers, name)
    }
}

/// Takes a complete final response head from the front of `buf`, skipping
/// interim (1xx) responses; the bytes after it stay in `buf`. `Ok(None)`: the
/// head is not complete yet.
pub fn take_response_head(buf: &mut Vec<u8>) -> Result<Option<ResponseHead>, String> {
    loop {
        let Some(end) = head_end(buf) else {
            if buf.len() > MAX_HEAD_BYTES {
                return Err("response head too large".to_string());
            }
            return Ok(None);
        };
        let head = ResponseHead::parse(buf.get(..end).unwrap_or_default())?;
        buf.drain(..end + 4);
        if (100..200).contains(&head.status) && head.status != 101 {
            continue;
        }
        return Ok(Some(head));
    }
}

/// How the body after `head` ends; `to_head_request`: it answers a `HEAD`.
pub fn body_framing(head: &ResponseHead, to_head_request: bool) -> BodyFraming {
    if to_head_request || head.status == 204 || head.status == 304 {
        return BodyFraming::Length(0);
    }
    if super::is_chunked(&head.headers) {
        return BodyFraming::Chunked(ChunkedDecoder::default());
    }
    match super::content_length(&head.headers) {
        Ok(Some(length)) => BodyFraming::Length(length),
        _ => BodyFraming::UntilClose,
    }
}

/// A whole response read to the connection's close: its head and decoded body.
/// A body shorter than its content-length is kept as it came; a chunked one
/// cut short is an error.
pub fn parse_response(raw: &[u8]) -> Result<(ResponseHead, Vec<u8>), String> {
    let mut buf = raw.to_vec();
    let head = take_response_head(&mut buf)?
        .ok_or_else(|| format!("incomplete response ({} bytes)", raw.len()))?;
    let mut framing = body_framing(&head, false);
    let mut body = Vec::new();
    let (done, _) = framing.feed(&buf, &mut body)?;
    if !done && matches!(framing, BodyFraming::Chunked(_)) {
        return Err("truncated chunked body".to_string());
    }
    Ok((head, body))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn http_response_parsing() {
        let raw = b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n";
        let (head, body) = parse_response(raw).unwrap();
        assert_eq!(
            (head.status, body.as_slice()),
            (200, b"hello world".as_slice())
        );
        let raw = b"HTTP/1.1 503 Service Unavailable\r\ncontent-length: 4\r\n\r\nbusy";
        let (head, body) = parse_response(raw).unwrap();
        assert_eq!((head.status, body.as_slice()), (503, b"busy".as_slice()));
    }

    #[test]
    fn interim_heads_are_skipped_and_the_rest_stays() {
        let mut buf =
            b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.0 200 OK\r\nX-Thing: a\r\n\r\nbody".to_vec();
        let head = take_response_head(&mut buf).unwrap().unwrap();
        assert_eq!(head.status, 200);
        assert_eq!(head.header("x-thing"), Some("a"));
        assert_eq!(buf, b"body");
        assert!(matches!(
            body_framing(&head, false),
            BodyFraming::UntilClose
        ));
        assert!(ResponseHead::parse(b"SIP/2.0 200 OK").is_err());
    }
}
