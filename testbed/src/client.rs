//! A blocking HTTP/1.1 client that timestamps every piece of the response
//! body at the socket read that brought it.
//!
//! Hand-written on `std::net::TcpStream` (no client library buffering in
//! between) so the timestamps say when bytes reached this process; tests
//! compare them with the mock upstream's send times.

use std::fmt::Write as _;
use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use crate::http1::{body_framing, take_response_head, BodyFraming};
use crate::upstream::SentStream;

/// Tests fail after this long without a byte instead of hanging.
const READ_TIMEOUT: Duration = Duration::from_secs(30);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
const READ_BUFFER_BYTES: usize = 64 * 1024;

/// A response as the client received it.
#[derive(Clone, Debug)]
pub struct StreamResult {
    pub status: u16,
    /// Lowercase names, in the order received.
    pub headers: Vec<(String, String)>,
    /// The decoded body (chunk framing removed).
    pub body: Vec<u8>,
    /// One entry per socket read that brought body bytes: when it returned,
    /// and how many decoded body bytes it carried.
    pub frames: Vec<(Instant, usize)>,
    /// When the request was about to be written.
    pub started: Instant,
    /// When the response head had arrived (`started` until it has).
    pub head_at: Instant,
    /// Whether the response ended as its framing says (last chunk, full
    /// content-length, or close for a response delimited by close). Only
    /// [`post_until`] returns an incomplete result; the others fail instead.
    pub complete: bool,
}

impl StreamResult {
    /// The first header with this name (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// When the client had received the first `end_offset` bytes of the
    /// decoded body; `None` if it never did.
    pub fn arrival_of_offset(&self, end_offset: usize) -> Option<Instant> {
        if end_offset == 0 {
            return Some(self.started);
        }
        let mut received = 0;
        for &(at, len) in &self.frames {
            received += len;
            if received >= end_offset {
                return Some(at);
            }
        }
        None
    }
}

/// POSTs `body` on a fresh connection and reads the whole response.
/// Adds `host`, `content-length` and, unless given, `content-type:
/// application/json`. A response cut short is an error.
pub fn post(
    addr: SocketAddr,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> io::Result<StreamResult> {
    post_with(addr, path, headers, body, &mut |_, _| {})
}

/// Like [`post`], calling `on_bytes` with each piece of decoded body as it
/// arrives (for printing a stream live).
pub fn post_with(
    addr: SocketAddr,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
    on_bytes: &mut dyn FnMut(Instant, &[u8]),
) -> io::Result<StreamResult> {
    let result = exchange(
        addr,
        "POST",
        path,
        headers,
        body,
        Limits::default(),
        on_bytes,
    )?;
    if !result.complete {
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            format!(
                "response ended early: connection closed after {} body bytes (status {})",
                result.body.len(),
                result.status
            ),
        ));
    }
    Ok(result)
}

/// Like [`post`], but closes the connection once at least `stop_after_bytes`
/// body bytes have arrived (a client that goes away mid-stream). Also
/// returns what arrived, with `complete: false`, when the server closes or
/// resets the connection early.
pub fn post_until(
    addr: SocketAddr,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
    stop_after_bytes: usize,
) -> io::Result<StreamResult> {
    exchange(
        addr,
        "POST",
        path,
        headers,
        body,
        Limits {
            stop_after_bytes,
            deadline: None,
        },
        &mut |_, _| {},
    )
}

/// Like [`post_with`], but the whole exchange (connect included) must end
/// within `timeout`, else a `TimedOut` error; and, like [`post_until`], a
/// response the server closes or resets early is returned with
/// `complete: false` rather than as an error.
pub fn post_within(
    addr: SocketAddr,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
    timeout: Duration,
    on_bytes: &mut dyn FnMut(Instant, &[u8]),
) -> io::Result<StreamResult> {
    let deadline = Instant::now() + timeout;
    exchange(
        addr,
        "POST",
        path,
        headers,
        body,
        Limits {
            stop_after_bytes: usize::MAX,
            deadline: Some((deadline, timeout)),
        },
        on_bytes,
    )
}

/// GETs `path`; returns the status and the body as text.
pub fn get(addr: SocketAddr, path: &str) -> io::Result<(u16, String)> {
    let result = exchange(
        addr,
        "GET",
        path,
        &[],
        &[],
        Limits::default(),
        &mut |_, _| {},
    )?;
    if !result.complete {
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            format!("GET {path}: response ended early"),
        ));
    }
    Ok((
        result.status,
        String::from_utf8_lossy(&result.body).into_owned(),
    ))
}

/// When [`exchange`] stops early.
#[derive(Clone, Copy)]
struct Limits {
    /// Close once this many body bytes have arrived.
    stop_after_bytes: usize,
    /// The instant the exchange must end by, and the timeout it came from.
    deadline: Option<(Instant, Duration)>,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            stop_after_bytes: usize::MAX,
            deadline: None,
        }
    }
}

fn exchange(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
    limits: Limits,
    on_bytes: &mut dyn FnMut(Instant, &[u8]),
) -> io::Result<StreamResult> {
    let Limits {
        stop_after_bytes,
        deadline,
    } = limits;
    // Time left before the deadline, at most `cap`; an error once it passed.
    let left = |cap: Duration, what: &str| -> io::Result<Duration> {
        let Some((deadline, timeout)) = deadline else {
            return Ok(cap);
        };
        match deadline.checked_duration_since(Instant::now()) {
            Some(left) if !left.is_zero() => Ok(left.min(cap)),
            _ => Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!("{method} {path}: {what} within the {timeout:?} timeout"),
            )),
        }
    };
    let mut stream = TcpStream::connect_timeout(&addr, left(CONNECT_TIMEOUT, "not connected")?)?;
    stream.set_nodelay(true)?;
    stream.set_read_timeout(Some(left(READ_TIMEOUT, "not connected")?))?;
    stream.set_write_timeout(Some(left(READ_TIMEOUT, "not connected")?))?;

    let has = |name: &str| headers.iter().any(|(n, _)| n.eq_ignore_ascii_case(name));
    let mut head = format!("{method} {path} HTTP/1.1\r\n");
    if !has("host") {
        let _ = write!(head, "host: {addr}\r\n");
    }
    if !body.is_empty() && !has("content-type") {
        head.push_str("content-type: application/json\r\n");
    }
    for (name, value) in headers {
        let _ = write!(head, "{name}: {value}\r\n");
    }
    if method != "GET" || !body.is_empty() {
        let _ = write!(head, "content-length: {}\r\n", body.len());
    }
    head.push_str("\r\n");
    let mut request = head.into_bytes();
    request.extend_from_slice(body);

    let started = Instant::now();
    stream.write_all(&request)?;

    let mut result = StreamResult {
        status: 0,
        headers: Vec::new(),
        body: Vec::new(),
        frames: Vec::new(),
        started,
        head_at: started,
        complete: false,
    };
    let mut buf = vec![0u8; READ_BUFFER_BYTES];
    let mut head_bytes = Vec::new();
    let mut framing: Option<BodyFraming> = None;

    loop {
        if deadline.is_some() {
            let what = format!(
                "no end of the response (status {}, {} body bytes so far)",
                result.status,
                result.body.len()
            );
            stream.set_read_timeout(Some(left(READ_TIMEOUT, &what)?))?;
        }
        let n = match stream.read(&mut buf) {
            Ok(n) => n,
            Err(err)
                if matches!(
                    err.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                let what = format!(
                    "no end of the response (status {}, {} body bytes so far)",
                    result.status,
                    result.body.len()
                );
                left(Duration::MAX, &what)?;
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!(
                        "{method} {path}: nothing received for {READ_TIMEOUT:?} (status {}, {} body bytes so far)",
                        result.status,
                        result.body.len()
                    ),
                ));
            }
            // A reset after the head ends the response early, like a close.
            Err(err) if framing.is_some() && err.kind() == io::ErrorKind::ConnectionReset => 0,
            Err(err) => return Err(err),
        };
        let at = Instant::now();
        let data = buf.get(..n).unwrap_or_default();
        if n == 0 {
            match framing {
                Some(BodyFraming::UntilClose) => result.complete = true,
                Some(_) => {}
                None => {
                    return Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        format!("{method} {path}: connection closed before the response head"),
                    ))
                }
            }
            return Ok(result);
        }

        let mut piece = Vec::new();
        let done = match framing.as_mut() {
            Some(framing) => decode(framing, data, &mut piece)?,
            None => {
                head_bytes.extend_from_slice(data);
                let Some(head) = take_response_head(&mut head_bytes).map_err(invalid)? else {
                    continue;
                };
                let framing = framing.insert(body_framing(&head, method == "HEAD"));
                result.status = head.status;
                result.headers = head.headers;
                result.head_at = at;
                // The body bytes that came in the same read as the head.
                decode(framing, &std::mem::take(&mut head_bytes), &mut piece)?
            }
        };
        if !piece.is_empty() {
            result.body.extend_from_slice(&piece);
            result.frames.push((at, piece.len()));
            on_bytes(at, &piece);
        }
        if done {
            result.complete = true;
            return Ok(result);
        }
        if result.body.len() >= stop_after_bytes {
            let _ = stream.shutdown(Shutdown::Both);
            return Ok(result);
        }
    }
}

/// Appends the body bytes in `input` to `out`; true once the body has ended.
fn decode(framing: &mut BodyFraming, input: &[u8], out: &mut Vec<u8>) -> io::Result<bool> {
    let (done, _) = framing.feed(input, out).map_err(invalid)?;
    Ok(done)
}

fn invalid(message: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, message.into())
}

/// Per-event delays between the upstream's send and the client's receipt.
#[derive(Clone, Debug)]
pub struct LiveReport {
    /// One per event with content, in order.
    pub delays: Vec<Duration>,
    pub max_delay: Duration,
}

/// Checks that every event with content reached the client within `bound`
/// of the moment the upstream wrote it. The client must have received
/// exactly the bytes the upstream sent.
pub fn check_live(
    sent: &SentStream,
    got: &StreamResult,
    bound: Duration,
) -> Result<LiveReport, String> {
    if got.body != sent.body {
        let first_difference = got
            .body
            .iter()
            .zip(&sent.body)
            .position(|(a, b)| a != b)
            .unwrap_or_else(|| got.body.len().min(sent.body.len()));
        return Err(format!(
            "client received {} body bytes, upstream sent {}; they differ from byte {first_difference}",
            got.body.len(),
            sent.body.len()
        ));
    }
    let mut delays = Vec::new();
    let mut first_late: Option<(usize, Duration)> = None;
    for (index, event) in sent.events.iter().enumerate() {
        if !event.has_content {
            continue;
        }
        let arrived = got.arrival_of_offset(event.end_offset).ok_or_else(|| {
            format!(
                "event {index} (ending at byte {}) never arrived",
                event.end_offset
            )
        })?;
        // The client can see the bytes before the upstream task stamps its
        // write as done; that counts as no delay.
        let delay = arrived.saturating_duration_since(event.sent_at);
        if delay > bound && first_late.is_none() {
            first_late = Some((index, delay));
        }
        delays.push(delay);
    }
    let max_delay = delays.iter().copied().max().unwrap_or_default();
    match first_late {
        None => Ok(LiveReport { delays, max_delay }),
        Some((index, delay)) => {
            let all_ms: Vec<u128> = delays.iter().map(Duration::as_millis).collect();
            Err(format!(
                "event {index} arrived {} ms after it was sent (bound {} ms); delays ms: {all_ms:?}",
                delay.as_millis(),
                bound.as_millis()
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    #[test]
    fn arrival_of_offset_finds_the_read_that_completed_it() {
        let start = Instant::now();
        let at = |ms| start + Duration::from_millis(ms);
        let result = StreamResult {
            status: 200,
            headers: vec![("content-type".into(), "text/plain".into())],
            body: vec![0; 30],
            frames: vec![(at(1), 10), (at(2), 10), (at(3), 10)],
            started: start,
            head_at: start,
            complete: true,
        };
        assert_eq!(result.arrival_of_offset(0), Some(start));
        assert_eq!(result.arrival_of_offset(10), Some(at(1)));
        assert_eq!(result.arrival_of_offset(11), Some(at(2)));
        assert_eq!(result.arrival_of_offset(30), Some(at(3)));
        assert_eq!(result.arrival_of_offset(31), None);
        assert_eq!(result.header("Content-Type"), Some("text/plain"));
    }

    /// Serves one connection with `response` after reading the request head.
    fn one_shot_server(response: &'static [u8]) -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        std::thread::spawn(move || {
            let (mut stream, _) = listener.accept().unwrap();
            let mut head = Vec::new();
            let mut byte = [0u8; 1];
            while !head.ends_with(b"\r\n\r\n") {
                stream.read_exact(&mut byte).unwrap();
                head.push(byte[0]);
            }
            stream.write_all(response).unwrap();
        });
        addr
    }

    #[test]
    fn reads_bodies_delimited_by_close_and_skips_interim_responses() {
        let addr = one_shot_server(
            b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.0 200 OK\r\nX-Thing: a\r\n\r\nuntil close",
        );
        let (status, body) = get(addr, "/").unwrap();
        assert_eq!((status, body.as_str()), (200, "until close"));
    }

    #[test]
    fn a_response_cut_short_is_an_error_for_post_and_partial_for_post_until() {
        let cut = b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\nabc";
        let err = post(one_shot_server(cut), "/", &[], b"{}").unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::UnexpectedEof);
        let partial = post_until(one_shot_server(cut), "/", &[], b"{}", usize::MAX).unwrap();
        assert_eq!(
            (partial.body.as_slice(), partial.complete),
            (b"abc".as_slice(), false)
        );
    }

    #[test]
    fn post_within_ends_at_its_timeout_and_keeps_a_cut_response() {
        // A server that sends part of the body, then holds the connection.
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        std::thread::spawn(move || {
            let (mut stream, _) = listener.accept().unwrap();
            let mut byte = [0u8; 1];
            let mut head = Vec::new();
            while !head.ends_with(b"\r\n\r\n") {
                stream.read_exact(&mut byte).unwrap();
                head.push(byte[0]);
            }
            stream
                .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\nabc")
                .unwrap();
            std::thread::sleep(Duration::from_secs(3));
        });
        let started = Instant::now();
        let err = post_within(
            addr,
            "/",
            &[],
            b"{}",
            Duration::from_millis(300),
            &mut |_, _| {},
        )
        .unwrap_err();
        let took = started.elapsed();
        assert_eq!(err.kind(), io::ErrorKind::TimedOut, "{err}");
        assert!(err.to_string().contains("3 body bytes so far"), "{err}");
        assert!(
            took >= Duration::from_millis(300) && took < Duration::from_secs(2),
            "{took:?}"
        );

        let cut = b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\nabc";
        let partial = post_within(
            one_shot_server(cut),
            "/",
            &[],
            b"{}",
            Duration::from_secs(5),
            &mut |_, _| {},
        )
        .unwrap();
        assert_eq!(
            (partial.body.as_slice(), partial.complete),
            (b"abc".as_slice(), false)
        );
        assert!(partial.head_at >= partial.started);
    }
}
