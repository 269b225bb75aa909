//! Load generator for `make bench`: N keep-alive connections, each running
//! streaming chat calls back to back against the mock upstream (directly or
//! through Envoy), measuring every SSE event as it arrives.
//!
//! Raw HTTP/1.1 on tokio's `TcpStream`: one request buffer per connection,
//! written again for every call, and an incremental reader that decodes the
//! chunked framing and finds SSE events in place. It shares the machine with
//! Envoy, so it does little per event: find the blank line ending the event,
//! and, when delays are recorded, the send-time stamp the mock upstream put in
//! it (`x-mock-stamp: 1`, see [`testbed::upstream`]).
//!
//! Per event, the delivery delay is the wall clock when the read that
//! completed the event returned minus the stamp (the wall clock just before
//! the mock's write); both processes read the same clock. TTFT is the time from
//! the request's write to the first event with assistant text.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use memchr::memmem;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::task::JoinSet;
use tokio::time::{sleep, timeout, timeout_at};

use testbed::http1::{body_framing, take_response_head, BodyFraming, ResponseHead};
use testbed::upstream::{unix_micros, STAMP_KEY};

/// Path of every call.
pub const CHAT_PATH: &str = "/v1/chat/completions";
/// The request body: a streamed chat completion with the usage chunk.
pub const CHAT_BODY: &str = r#"{"model":"gpt-4o-mini","stream":true,"stream_options":{"include_usage":true},"messages":[{"role":"user","content":"Say hello"}]}"#;
/// SSE events of a call besides the content tokens: the role-only first
/// delta, the finish delta, the usage chunk and `[DONE]`.
pub const NON_TOKEN_EVENTS: usize = 4;
/// A read that brings nothing for this long fails the call.
const READ_TIMEOUT: Duration = Duration::from_secs(30);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
const READ_BUFFER_BYTES: usize = 64 * 1024;
/// Connections opened at once by [`open_streams`].
const OPEN_BATCH: usize = 50;

/// What each call asks the mock upstream for (its `x-mock-*` headers).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CallShape {
    /// Content tokens; the call has `tokens + NON_TOKEN_EVENTS` SSE events.
    pub tokens: usize,
    /// Milliseconds between the mock's writes (0: as fast as it can).
    pub interval_ms: u64,
    /// `x-mock-chunking`: `event`, `batch:K` or `split`.
    pub chunking: String,
    /// `x-mock-idle-after`: hold the stream open, idle, after this many events.
    pub idle_after: Option<usize>,
}

impl CallShape {
    /// A call of `events` SSE events in all, one write per event.
    pub fn with_events(events: usize, interval_ms: u64) -> CallShape {
        CallShape {
            tokens: events.saturating_sub(NON_TOKEN_EVENTS),
            interval_ms,
            chunking: "event".to_string(),
            idle_after: None,
        }
    }

    /// SSE events per call.
    pub fn events(&self) -> usize {
        self.tokens + NON_TOKEN_EVENTS
    }

    /// The request's bytes (stamped: `x-mock-stamp: 1`).
    pub fn request(&self) -> Vec<u8> {
        let idle = self
            .idle_after
            .map_or(String::new(), |n| format!("x-mock-idle-after: {n}\r\n"));
        format!(
            "POST {CHAT_PATH} HTTP/1.1\r\nhost: streamtap-bench\r\ncontent-type: application/json\r\n\
             x-mock-tokens: {}\r\nx-mock-interval-ms: {}\r\nx-mock-chunking: {}\r\nx-mock-stamp: 1\r\n\
             {idle}content-length: {}\r\n\r\n{CHAT_BODY}",
            self.tokens,
            self.interval_ms,
            self.chunking,
            CHAT_BODY.len()
        )
        .into_bytes()
    }
}

/// When the connections stop.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stop {
    /// Each connection runs this many whole calls.
    CallsPerConnection(usize),
    /// Everything stops this long after the start, mid-call if need be: what
    /// arrived until then counts, nothing after.
    After(Duration),
}

/// One load run.
#[derive(Clone, Debug)]
pub struct Workload {
    pub target: SocketAddr,
    pub connections: usize,
    pub shape: CallShape,
    pub stop: Stop,
    /// Keep every event's delay and every call's TTFT.
    pub record: bool,
    /// Connection `i` starts `stagger * i / connections` late, so that paced
    /// streams do not all write in the same instant.
    pub stagger: Duration,
}

/// What a run measured.
#[derive(Clone, Debug, Default)]
pub struct LoadReport {
    /// Calls read to their end.
    pub calls: u64,
    /// SSE events received (of finished and unfinished calls).
    pub events: u64,
    /// Socket reads that brought bytes.
    pub reads: u64,
    /// Bytes read (HTTP framing included).
    pub bytes: u64,
    /// Failed calls or connections.
    pub errors: u64,
    pub first_error: Option<String>,
    /// Per call, µs from the request's write to the first content event (when recorded).
    pub ttft_us: Vec<u64>,
    /// Per stamped event, µs from the mock's write to its arrival (when recorded).
    pub delays_us: Vec<u64>,
    /// From the start to the stop (the deadline, or the last connection's end).
    pub elapsed: Duration,
}

impl LoadReport {
    fn merge(&mut self, other: LoadReport) {
        self.calls += other.calls;
        self.events += other.events;
        self.reads += other.reads;
        self.bytes += other.bytes;
        self.errors += other.errors;
        if self.first_error.is_none() {
            self.first_error = other.first_error;
        }
        self.ttft_us.extend(other.ttft_us);
        self.delays_us.extend(other.delays_us);
    }

    fn error(&mut self, message: String) {
        self.errors += 1;
        if self.first_error.is_none() {
            self.first_error = Some(message);
        }
    }

    pub fn events_per_second(&self) -> f64 {
        per_second(self.events, self.elapsed)
    }

    pub fn calls_per_second(&self) -> f64 {
        per_second(self.calls, self.elapsed)
    }
}

fn per_second(n: u64, d: Duration) -> f64 {
    let s = d.as_secs_f64();
    if s > 0.0 {
        n as f64 / s
    } else {
        0.0
    }
}

/// Runs `workload` to its stop and merges what every connection measured.
pub async fn run(workload: &Workload) -> LoadReport {
    let workload = Arc::new(workload.clone());
    let start = Instant::now();
    let deadline = match workload.stop {
        Stop::After(d) => Some(tokio::time::Instant::from_std(start + d)),
        Stop::CallsPerConnection(_) => None,
    };
    let mut tasks = JoinSet::new();
    for index in 0..workload.connections {
        let workload = Arc::clone(&workload);
        tasks.spawn(async move { connection(&workload, index, deadline).await });
    }
    let mut report = LoadReport::default();
    while let Some(joined) = tasks.join_next().await {
        match joined {
            Ok(r) => report.merge(r),
            Err(e) => report.error(format!("connection task failed: {e}")),
        }
    }
    report.elapsed = match workload.stop {
        Stop::After(d) => d,
        Stop::CallsPerConnection(_) => start.elapsed(),
    };
    report
}

async fn connect(target: SocketAddr) -> Result<TcpStream, String> {
    let stream = timeout(CONNECT_TIMEOUT, TcpStream::connect(target))
        .await
        .map_err(|_| format!("connect {target}: timed out"))?
        .map_err(|e| format!("connect {target}: {e}"))?;
    stream
        .set_nodelay(true)
        .map_err(|e| format!("set_nodelay: {e}"))?;
    Ok(stream)
}

/// Reads into `buf` until the deadline (`Ok(None)` then) or `READ_TIMEOUT`.
async fn read_some(
    stream: &mut TcpStream,
    buf: &mut [u8],
    deadline: Option<tokio::time::Instant>,
) -> Result<Option<usize>, String> {
    let read = match deadline {
        Some(d) => match timeout_at(d, stream.read(buf)).await {
            Ok(r) => r,
            Err(_) => return Ok(None),
        },
        None => timeout(READ_TIMEOUT, stream.read(buf))
            .await
            .map_err(|_| format!("nothing received for {READ_TIMEOUT:?}"))?,
    };
    match read {
        Ok(0) => Err("connection closed mid-response".to_string()),
        Ok(n) => Ok(Some(n)),
        Err(e) => Err(format!("read: {e}")),
    }
}

async fn connection(
    workload: &Workload,
    index: usize,
    deadline: Option<tokio::time::Instant>,
) -> LoadReport {
    let mut report = LoadReport::default();
    if workload.connections > 0 && !workload.stagger.is_zero() {
        sleep(workload.stagger * index as u32 / workload.connections as u32).await;
    }
    let mut stream = match connect(workload.target).await {
        Ok(s) => s,
        Err(e) => {
            report.error(e);
            return report;
        }
    };
    let request = workload.shape.request();
    let mut buf = vec![0u8; READ_BUFFER_BYTES];
    let mut reader = ResponseReader::new(workload.record, false);
    let mut calls = 0usize;
    loop {
        match workload.stop {
            Stop::CallsPerConnection(n) if calls >= n => break,
            _ => {}
        }
        if deadline.is_some_and(|d| tokio::time::Instant::now() >= d) {
            break;
        }
        reader.start(unix_micros());
        if let Err(e) = stream.write_all(&request).await {
            report.error(format!("write: {e}"));
            break;
        }
        let done = loop {
            let n = match read_some(&mut stream, &mut buf, deadline).await {
                Ok(Some(n)) => n,
                Ok(None) => break Ok(false),
                Err(e) => break Err(e),
            };
            let now = unix_micros();
            report.reads += 1;
            report.bytes += n as u64;
            match reader.feed(buf.get(..n).unwrap_or_default(), now, &mut report) {
                Ok(true) => break Ok(true),
                Ok(false) => {}
                Err(e) => break Err(e),
            }
        };
        match done {
            Ok(true) => {
                calls += 1;
                report.calls += 1;
                let expected = workload.shape.events();
                if reader.call_events != expected {
                    report.error(format!(
                        "a call brought {} SSE events, expected {expected}",
                        reader.call_events
                    ));
                }
            }
            // The deadline passed mid-call.
            Ok(false) => break,
            Err(e) => {
                report.error(e);
                break;
            }
        }
    }
    report
}

/// Runs one call on a fresh connection; returns, for each content event, the
/// µs from the request's write to its arrival.
pub async fn timeline(target: SocketAddr, shape: &CallShape) -> Result<Vec<u64>, String> {
    let mut stream = connect(target).await?;
    let mut reader = ResponseReader::new(false, true);
    let mut report = LoadReport::default();
    let mut buf = vec![0u8; READ_BUFFER_BYTES];
    reader.start(unix_micros());
    stream
        .write_all(&shape.request())
        .await
        .map_err(|e| format!("write: {e}"))?;
    loop {
        let n = read_some(&mut stream, &mut buf, None)
            .await?
            .unwrap_or_default();
        if reader.feed(buf.get(..n).unwrap_or_default(), unix_micros(), &mut report)? {
            return Ok(reader.content_arrivals_us);
        }
    }
}

/// Opens `count` calls of `shape`, [`OPEN_BATCH`] at a time, and returns their
/// connections once each has received at least `events` SSE events; the calls
/// stay open (with `idle_after`, idle) while the connections are held. For
/// memory per open stream.
pub async fn open_streams(
    target: SocketAddr,
    count: usize,
    shape: &CallShape,
    events: usize,
) -> Result<Vec<TcpStream>, String> {
    let request = Arc::new(shape.request());
    let mut open = Vec::with_capacity(count);
    let mut left = count;
    while left > 0 {
        let batch = left.min(OPEN_BATCH);
        left -= batch;
        let mut tasks = JoinSet::new();
        for _ in 0..batch {
            let request = Arc::clone(&request);
            tasks.spawn(async move {
                let mut stream = connect(target).await?;
                let mut reader = ResponseReader::new(false, false);
                let mut report = LoadReport::default();
                let mut buf = vec![0u8; 16 * 1024];
                reader.start(unix_micros());
                stream
                    .write_all(&request)
                    .await
                    .map_err(|e| format!("write: {e}"))?;
                while reader.call_events < events {
                    let n = read_some(&mut stream, &mut buf, None)
                        .await?
                        .unwrap_or_default();
                    if reader.feed(buf.get(..n).unwrap_or_default(), unix_micros(), &mut report)? {
                        return Err("the call ended: it was meant to stay open".to_string());
                    }
                }
                Ok::<TcpStream, String>(stream)
            });
        }
        while let Some(joined) = tasks.join_next().await {
            open.push(joined.map_err(|e| format!("open task failed: {e}"))??);
        }
    }
    Ok(open)
}

/// Reads one HTTP/1.1 response after another from the bytes of a connection,
/// finding the SSE events in its body.
#[derive(Debug)]
pub struct ResponseReader {
    record: bool,
    keep_timeline: bool,
    head: Vec<u8>,
    framing: Option<BodyFraming>,
    /// Decoded body bytes not yet split into events.
    sse: Vec<u8>,
    /// Where to look for the next event end in `sse`.
    search_from: usize,
    written_us: u64,
    seen_content: bool,
    /// SSE events of the current call so far.
    pub call_events: usize,
    /// With `keep_timeline`: µs from the write to each content event.
    pub content_arrivals_us: Vec<u64>,
}

impl ResponseReader {
    pub fn new(record: bool, keep_timeline: bool) -> ResponseReader {
        ResponseReader {
            record,
            keep_timeline,
            head: Vec::new(),
            framing: None,
            sse: Vec::new(),
            search_from: 0,
            written_us: 0,
            seen_content: false,
            call_events: 0,
            content_arrivals_us: Vec::new(),
        }
    }

    /// A new call, whose request is written at `written_us`.
    pub fn start(&mut self, written_us: u64) {
        self.head.clear();
        self.framing = None;
        self.sse.clear();
        self.search_from = 0;
        self.written_us = written_us;
        self.seen_content = false;
        self.call_events = 0;
        self.content_arrivals_us.clear();
    }

    /// Feeds bytes read at `now_us`; true once the response has ended. Bytes
    /// past the response's end are an error (nothing is pipelined).
    pub fn feed(&mut self, data: &[u8], now_us: u64, out: &mut LoadReport) -> Result<bool, String> {
        if self.framing.is_some() {
            return self.body(data, now_us, out);
        }
        self.head.extend_from_slice(data);
        let Some(head) = take_response_head(&mut self.head)? else {
            return Ok(false);
        };
        self.framing = Some(expected_framing(&head)?);
        // The body bytes that came with the head.
        let rest = std::mem::take(&mut self.head);
        self.body(&rest, now_us, out)
    }

    fn body(&mut self, data: &[u8], now_us: u64, out: &mut LoadReport) -> Result<bool, String> {
        let before = self.sse.len();
        let (done, used) = match self.framing.as_mut() {
            Some(framing) => framing.feed(data, &mut self.sse)?,
            None => return Ok(false),
        };
        if used < data.len() {
            return Err(format!(
                "{} bytes after the end of the response",
                data.len() - used
            ));
        }
        if self.sse.len() > before {
            self.split_events(now_us, out);
        }
        Ok(done)
    }

    fn split_events(&mut self, now_us: u64, out: &mut LoadReport) {
        let mut start = 0;
        while let Some(i) = self
            .sse
            .get(self.search_from..)
            .and_then(|rest| memmem::find(rest, b"\n\n"))
        {
            let end = self.search_from + i;
            let event = self.sse.get(start..end).unwrap_or_default();
            // Inlined `on_event` (borrowing `self.sse` and `self` at once).
            out.events += 1;
            self.call_events += 1;
            if self.record {
                if let Some(stamp) = parse_stamp(event) {
                    out.delays_us.push(now_us.saturating_sub(stamp));
                }
            }
            if (self.record || self.keep_timeline) && is_content_event(event) {
                let since_write = now_us.saturating_sub(self.written_us);
                if !self.seen_content {
                    self.seen_content = true;
                    if self.record {
                        out.ttft_us.push(since_write);
                    }
                }
                if self.keep_timeline {
                    self.content_arrivals_us.push(since_write);
                }
            }
            start = end + 2;
            self.search_from = start;
        }
        if start > 0 {
            self.sse.drain(..start);
        }
        // The next search may find a `\n\n` whose first byte is already here.
        self.search_from = self.sse.len().saturating_sub(1);
    }
}

/// The body framing of a response head. Only 200 answers are expected, and
/// they say where they end (a call never ends at a close).
fn expected_framing(head: &ResponseHead) -> Result<BodyFraming, String> {
    if head.status != 200 {
        return Err(format!("status {}", head.status));
    }
    match body_framing(head, false) {
        BodyFraming::UntilClose => {
            Err("response has neither chunked framing nor a content-length".to_string())
        }
        framing => Ok(framing),
    }
}

/// The send-time stamp in an SSE event: the digits after `"x_sent_unix_us":`.
pub fn parse_stamp(event: &[u8]) -> Option<u64> {
    const KEY: &[u8] = b"\"x_sent_unix_us\":";
    debug_assert_eq!(KEY, format!("\"{STAMP_KEY}\":").as_bytes());
    let at = memmem::rfind(event, KEY)? + KEY.len();
    let digits = event.get(at..)?;
    let len = digits.iter().take_while(|b| b.is_ascii_digit()).count();
    if len == 0 || len > 19 {
        return None;
    }
    std::str::from_utf8(digits.get(..len)?).ok()?.parse().ok()
}

/// Whether an SSE event carries assistant text: a `"content":"` with at
/// least one character (OpenAI's role-only first delta has `"content":""`).
pub fn is_content_event(event: &[u8]) -> bool {
    const KEY: &[u8] = b"\"content\":\"";
    memmem::find(event, KEY)
        .and_then(|at| event.get(at + KEY.len()))
        .is_some_and(|&b| b != b'"')
}

/// The `q` quantile (0..=1) of sorted values, nearest rank: the smallest
/// value with at least `q` of the values at or below it. `None` when empty.
pub fn percentile(sorted: &[u64], q: f64) -> Option<u64> {
    if sorted.is_empty() {
        return None;
    }
    let n = sorted.len();
    let rank = (q.clamp(0.0, 1.0) * n as f64).ceil() as usize;
    sorted.get(rank.clamp(1, n) - 1).copied()
}

/// Median, min and max of some figures (the per-round values of one figure).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Spread {
    pub median: f64,
    pub min: f64,
    pub max: f64,
}

/// The median (mean of the middle two for an even count), min and max;
/// `None` when empty. NaNs are ignored.
pub fn spread(values: &[f64]) -> Option<Spread> {
    let mut v: Vec<f64> = values.iter().copied().filter(|x| !x.is_nan()).collect();
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let n = v.len();
    let median = if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    };
    Some(Spread {
        median,
        min: v[0],
        max: v[n - 1],
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use testbed::upstream::MockUpstream;

    #[test]
    fn percentile_is_nearest_rank() {
        let v: Vec<u64> = (1..=100).collect();
        assert_eq!(percentile(&v, 0.5), Some(50));
        assert_eq!(percentile(&v, 0.99), Some(99));
        assert_eq!(percentile(&v, 1.0), Some(100));
        assert_eq!(percentile(&v, 0.0), Some(1));
        assert_eq!(percentile(&[7], 0.99), Some(7));
        assert_eq!(percentile(&[1, 2, 3], 0.5), Some(2));
        assert_eq!(percentile(&[1, 2, 3, 4], 0.5), Some(2));
        assert_eq!(percentile(&[], 0.5), None);
    }

    #[test]
    fn spread_has_median_min_max() {
        assert_eq!(
            spread(&[3.0, 1.0, 2.0]),
            Some(Spread {
                median: 2.0,
                min: 1.0,
                max: 3.0
            })
        );
        assert_eq!(spread(&[4.0, 1.0, 2.0, 10.0]).map(|s| s.median), Some(3.0));
        assert_eq!(spread(&[f64::NAN, 5.0]).map(|s| s.median), Some(5.0));
        assert_eq!(spread(&[]), None);
    }

    #[test]
    fn stamp_parsing() {
        let ev = br#"data: {"id":"x","choices":[],"usage":null,"x_sent_unix_us":1764000000123456}"#;
        assert_eq!(parse_stamp(ev), Some(1_764_000_000_123_456));
        assert_eq!(parse_stamp(b"data: [DONE]"), None);
        assert_eq!(parse_stamp(br#"data: {"x_sent_unix_us":}"#), None);
        assert_eq!(
            parse_stamp(br#"data: {"x_sent_unix_us":99999999999999999999}"#),
            None
        );
    }

    #[test]
    fn content_events() {
        assert!(is_content_event(
            br#"data: {"choices":[{"delta":{"content":"tok0 "}}]}"#
        ));
        assert!(!is_content_event(
            br#"data: {"choices":[{"delta":{"role":"assistant","content":""}}]}"#
        ));
        assert!(!is_content_event(b"data: [DONE]"));
    }

    fn chunked(parts: &[&str]) -> Vec<u8> {
        let mut wire =
            b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n"
                .to_vec();
        for p in parts {
            wire.extend_from_slice(format!("{:x}\r\n{p}\r\n", p.len()).as_bytes());
        }
        wire.extend_from_slice(b"0\r\n\r\n");
        wire
    }

    #[test]
    fn reader_finds_events_delays_and_ttft_across_any_cut() {
        let body = [
            "data: {\"delta\":{\"role\":\"assistant\",\"content\":\"\"},\"x_sent_unix_us\":1000000000000100}\n\n",
            "data: {\"delta\":{\"content\":\"tok0 \"},\"x_sent_unix_us\":1000000000000200}\n\ndata: {\"delta\":{\"content\":\"tok1 \"},\"x_s",
            "ent_unix_us\":1000000000000300}\n\n",
            "data: [DONE]\n\n",
        ];
        let wire = chunked(&body);
        for cut in 0..wire.len() {
            let mut reader = ResponseReader::new(true, true);
            let mut report = LoadReport::default();
            reader.start(1_000_000_000_000_000);
            let done1 = reader
                .feed(&wire[..cut], 1_000_000_000_000_400, &mut report)
                .unwrap();
            assert!(!done1, "cut {cut}");
            let done2 = reader
                .feed(&wire[cut..], 1_000_000_000_000_500, &mut report)
                .unwrap();
            assert!(done2, "cut {cut}");
            assert_eq!(report.events, 4, "cut {cut}");
            assert_eq!(reader.call_events, 4);
            assert_eq!(report.delays_us.len(), 3);
            assert_eq!(report.ttft_us.len(), 1);
            assert_eq!(reader.content_arrivals_us.len(), 2);
            // Delays are 400-100, 400-200... or 500-... depending on the cut.
            assert!(report.delays_us.iter().all(|&d| (100..=400).contains(&d)));
        }
        // Reuse for the next call on the same connection.
        let mut reader = ResponseReader::new(true, false);
        let mut report = LoadReport::default();
        for _ in 0..3 {
            reader.start(1_000_000_000_000_000);
            assert!(reader
                .feed(&wire, 1_000_000_000_000_450, &mut report)
                .unwrap());
        }
        assert_eq!(report.events, 12);
        assert_eq!(report.ttft_us, vec![450, 450, 450]);
        assert_eq!(report.delays_us.iter().filter(|&&d| d == 250).count(), 3);
    }

    #[test]
    fn reader_takes_content_length_and_refuses_errors() {
        let body = "data: {\"content\":\"a\"}\n\ndata: [DONE]\n\n";
        let wire = format!(
            "HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n{body}",
            body.len()
        );
        let mut reader = ResponseReader::new(true, false);
        let mut report = LoadReport::default();
        reader.start(0);
        assert!(reader.feed(wire.as_bytes(), 10, &mut report).unwrap());
        assert_eq!(report.events, 2);
        let mut reader = ResponseReader::new(true, false);
        reader.start(0);
        let err = reader
            .feed(
                b"HTTP/1.1 503 Service Unavailable\r\ncontent-length: 0\r\n\r\n",
                1,
                &mut report,
            )
            .unwrap_err();
        assert!(err.contains("503"), "{err}");
    }

    #[test]
    fn request_asks_for_a_stamped_stream() {
        let shape = CallShape::with_events(50, 10);
        assert_eq!(shape.tokens, 46);
        assert_eq!(shape.events(), 50);
        let text = String::from_utf8(shape.request()).unwrap();
        assert!(text.starts_with("POST /v1/chat/completions HTTP/1.1\r\n"));
        for h in [
            "x-mock-tokens: 46\r\n",
            "x-mock-interval-ms: 10\r\n",
            "x-mock-chunking: event\r\n",
            "x-mock-stamp: 1\r\n",
        ] {
            assert!(text.contains(h), "{h}");
        }
        assert!(text.ends_with(&format!(
            "content-length: {}\r\n\r\n{CHAT_BODY}",
            CHAT_BODY.len()
        )));
    }

    #[test]
    fn runs_against_the_mock_upstream() {
        let upstream = MockUpstream::start().unwrap();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let workload = Workload {
            target: upstream.addr,
            connections: 4,
            shape: CallShape::with_events(12, 2),
            stop: Stop::CallsPerConnection(3),
            record: true,
            stagger: Duration::from_millis(2),
        };
        let report = rt.block_on(run(&workload));
        assert_eq!(report.errors, 0, "{:?}", report.first_error);
        assert_eq!(report.calls, 12);
        assert_eq!(report.events, 12 * 12);
        // Every event but [DONE] is stamped; one TTFT per call.
        assert_eq!(report.delays_us.len(), 12 * 11);
        assert_eq!(report.ttft_us.len(), 12);
        assert!(report.delays_us.iter().all(|&d| d < 1_000_000));
        // The first content event is the second write, one 2 ms interval in.
        assert!(report
            .ttft_us
            .iter()
            .all(|&t| (2_000..1_000_000).contains(&t)));

        let saturating = Workload {
            connections: 8,
            shape: CallShape::with_events(20, 0),
            stop: Stop::After(Duration::from_millis(300)),
            record: false,
            ..workload
        };
        let report = rt.block_on(run(&saturating));
        assert_eq!(report.errors, 0, "{:?}", report.first_error);
        assert!(report.calls > 8, "{report:?}");
        assert!(report.events >= report.calls * 20);
        assert!(report.delays_us.is_empty() && report.ttft_us.is_empty());
        assert_eq!(report.elapsed, Duration::from_millis(300));

        let slow = CallShape::with_events(8, 5);
        let arrivals = rt.block_on(timeline(upstream.addr, &slow)).unwrap();
        assert_eq!(arrivals.len(), 4);
        assert!(
            arrivals.windows(2).all(|w| w[1] >= w[0] + 4_000),
            "{arrivals:?}"
        );

        let idle = CallShape {
            tokens: 100,
            interval_ms: 1,
            chunking: "event".to_string(),
            idle_after: Some(10),
        };
        let streams = rt
            .block_on(open_streams(upstream.addr, 60, &idle, 10))
            .unwrap();
        assert_eq!(streams.len(), 60);
    }
}
