//! Requests, from the server side: a sans-IO reader that takes the bytes of a
//! keep-alive connection and yields one request after another (pipelining
//! included), with a blocking and an async read loop around it.

use std::io::{self, Read, Write};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use super::{
    head_end, header, split_head, BodyFraming, ChunkedDecoder, Headers, MAX_HEAD_BYTES,
    MAX_REQUEST_BODY_BYTES,
};

const READ_CHUNK_BYTES: usize = 16 * 1024;
const CONTINUE: &[u8] = b"HTTP/1.1 100 Continue\r\n\r\n";

/// One request, its body decoded.
#[derive(Clone, Debug)]
pub struct Request {
    pub method: String,
    pub path: String,
    pub headers: Headers,
    pub body: Vec<u8>,
    pub http10: bool,
}

impl Request {
    /// The first value of header `name` (lowercase).
    pub fn header(&self, name: &str) -> Option<&str> {
        header(&self.headers, name)
    }

    /// Whether the connection ends after this request's response.
    pub fn wants_close(&self) -> bool {
        let connection = self.header("connection").unwrap_or("").to_ascii_lowercase();
        if self.http10 {
            !connection.contains("keep-alive")
        } else {
            connection.contains("close")
        }
    }

    fn parse_head(head: &[u8]) -> Result<Request, String> {
        let (request_line, headers) = split_head(head)?;
        let mut parts = request_line.split(' ');
        let (Some(method), Some(path), Some(version), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(format!("bad request line {request_line:?}"));
        };
        let http10 = match version {
            "HTTP/1.1" => false,
            "HTTP/1.0" => true,
            _ => return Err(format!("unsupported version {version:?}")),
        };
        Ok(Request {
            method: method.to_string(),
            path: path.to_string(),
            headers,
            body: Vec::new(),
            http10,
        })
    }
}

/// What the reader needs next.
#[derive(Debug)]
pub enum Progress {
    /// More bytes from the connection.
    NeedMore,
    /// The head asked for `100 Continue`: send it, then poll again.
    SendContinue,
    /// A whole request; bytes after it stay for the next one.
    Request(Request),
}

/// The request in progress: its head is read, its body is coming.
#[derive(Debug)]
struct Partial {
    request: Request,
    framing: BodyFraming,
}

/// Reads requests from the bytes of one connection, in any cuts.
#[derive(Debug, Default)]
pub struct RequestReader {
    unread: Vec<u8>,
    partial: Option<Partial>,
}

impl RequestReader {
    /// Bytes just read from the connection.
    pub fn push(&mut self, data: &[u8]) {
        self.unread.extend_from_slice(data);
    }

    /// Nothing of a next request has arrived: a close here is a clean end.
    pub fn is_between_requests(&self) -> bool {
        self.unread.is_empty() && self.partial.is_none()
    }

    /// Goes as far as the bytes pushed so far allow.
    pub fn poll(&mut self) -> Result<Progress, String> {
        if self.partial.is_none() {
            let Some(end) = head_end(&self.unread) else {
                if self.unread.len() > MAX_HEAD_BYTES {
                    return Err("request head too large".to_string());
                }
                return Ok(Progress::NeedMore);
            };
            let request = Request::parse_head(self.unread.get(..end).unwrap_or_default())?;
            self.unread.drain(..end + 4);
            let framing = request_framing(&request)?;
            let expects_continue = request
                .header("expect")
                .is_some_and(|v| v.eq_ignore_ascii_case("100-continue"));
            self.partial = Some(Partial { request, framing });
            if expects_continue {
                return Ok(Progress::SendContinue);
            }
        }
        let Some(partial) = self.partial.as_mut() else {
            return Ok(Progress::NeedMore);
        };
        let (done, used) = partial
            .framing
            .feed(&self.unread, &mut partial.request.body)?;
        self.unread.drain(..used);
        if partial.request.body.len() > MAX_REQUEST_BODY_BYTES {
            return Err("request body too large".to_string());
        }
        match self.partial.take() {
            Some(partial) if done => Ok(Progress::Request(partial.request)),
            unfinished => {
                self.partial = unfinished;
                Ok(Progress::NeedMore)
            }
        }
    }
}

/// A request body is chunked or has a content-length (none: empty).
fn request_framing(request: &Request) -> Result<BodyFraming, String> {
    if super::is_chunked(&request.headers) {
        return Ok(BodyFraming::Chunked(ChunkedDecoder::default()));
    }
    let length = super::content_length(&request.headers)?.unwrap_or(0);
    if length > MAX_REQUEST_BODY_BYTES {
        return Err("request body too large".to_string());
    }
    Ok(BodyFraming::Length(length))
}

fn malformed(message: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, message)
}

fn closed_inside_a_request() -> io::Error {
    io::Error::new(
        io::ErrorKind::UnexpectedEof,
        "connection closed inside a request",
    )
}

/// Takes `read` (the bytes of one read) into `reader`; `Some` when the read
/// was the peer's close: a clean end between requests, else an error.
fn absorb(reader: &mut RequestReader, read: &[u8]) -> Option<io::Result<Option<Request>>> {
    if !read.is_empty() {
        reader.push(read);
        return None;
    }
    Some(match reader.is_between_requests() {
        true => Ok(None),
        false => Err(closed_inside_a_request()),
    })
}

/// The next request on a blocking connection; `Ok(None)` when the peer closed
/// between requests. Malformed input is an `InvalidData` error.
pub fn read_request<S: Read + Write>(
    conn: &mut S,
    reader: &mut RequestReader,
) -> io::Result<Option<Request>> {
    let mut chunk = [0u8; READ_CHUNK_BYTES];
    loop {
        match reader.poll().map_err(malformed)? {
            Progress::Request(request) => return Ok(Some(request)),
            Progress::SendContinue => conn.write_all(CONTINUE)?,
            Progress::NeedMore => {
                let n = conn.read(&mut chunk)?;
                if let Some(end) = absorb(reader, chunk.get(..n).unwrap_or_default()) {
                    return end;
                }
            }
        }
    }
}

/// [`read_request`] on an async connection.
pub async fn read_request_async<S: AsyncRead + AsyncWrite + Unpin>(
    conn: &mut S,
    reader: &mut RequestReader,
) -> io::Result<Option<Request>> {
    let mut chunk = [0u8; READ_CHUNK_BYTES];
    loop {
        match reader.poll().map_err(malformed)? {
            Progress::Request(request) => return Ok(Some(request)),
            Progress::SendContinue => conn.write_all(CONTINUE).await?,
            Progress::NeedMore => {
                let n = conn.read(&mut chunk).await?;
                if let Some(end) = absorb(reader, chunk.get(..n).unwrap_or_default()) {
                    return end;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn requests_at_every_cut(wire: &[u8]) -> Vec<Vec<Request>> {
        (0..=wire.len())
            .map(|cut| {
                let mut reader = RequestReader::default();
                let mut got = Vec::new();
                for part in [&wire[..cut], &wire[cut..]] {
                    reader.push(part);
                    while let Progress::Request(r) = reader.poll().unwrap() {
                        got.push(r);
                    }
                }
                assert!(reader.is_between_requests(), "cut {cut}");
                got
            })
            .collect()
    }

    #[test]
    fn pipelined_requests_with_chunked_and_sized_bodies_at_every_cut() {
        let wire = b"POST /a HTTP/1.1\r\nhost: x\r\ntransfer-encoding: chunked\r\n\r\n4\r\n{\"a\"\r\n2;ext=1\r\n:1\r\n0\r\nx-t: 1\r\n\r\n\
                     GET /b HTTP/1.0\r\nContent-Length: 2\r\nConnection: keep-alive\r\n\r\nhi";
        for (cut, got) in requests_at_every_cut(wire).into_iter().enumerate() {
            assert_eq!(got.len(), 2, "cut {cut}");
            assert_eq!(
                (got[0].method.as_str(), got[0].path.as_str()),
                ("POST", "/a")
            );
            assert_eq!(got[0].body, b"{\"a\":1", "cut {cut}");
            assert!(!got[0].wants_close());
            assert_eq!(got[1].body, b"hi", "cut {cut}");
            assert!(got[1].http10 && !got[1].wants_close());
        }
    }

    #[test]
    fn expect_continue_is_asked_for_once_and_garbage_is_refused() {
        let mut reader = RequestReader::default();
        reader.push(b"POST / HTTP/1.1\r\nexpect: 100-continue\r\ncontent-length: 1\r\n\r\n");
        assert!(matches!(reader.poll(), Ok(Progress::SendContinue)));
        assert!(matches!(reader.poll(), Ok(Progress::NeedMore)));
        reader.push(b"x");
        assert!(matches!(reader.poll(), Ok(Progress::Request(r)) if r.body == b"x"));

        for bad in [
            &b"GET / HTTP/2\r\n\r\n"[..],
            b"GET /\r\n\r\n",
            b"GET / HTTP/1.1\r\nno colon\r\n\r\n",
        ] {
            let mut reader = RequestReader::default();
            reader.push(bad);
            assert!(reader.poll().is_err(), "{}", String::from_utf8_lossy(bad));
        }
        let mut reader = RequestReader::default();
        reader.push(&vec![b'a'; MAX_HEAD_BYTES + 1]);
        assert!(reader.poll().is_err());
    }
}
