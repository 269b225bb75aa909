//! Mock OpenAI Chat Completions upstream.
//!
//! A hand-written HTTP/1.1 server on tokio rather than hyper, so that every
//! write goes to the socket at its own time and the instant it completed can be
//! recorded exactly: tests compare those instants with arrival times at the
//! client to prove that nothing in between held bytes back.
//!
//! Any `POST` with an OpenAI chat request body is answered (`GET /health`
//! answers `{"status":"ok"}` for readiness probes). Request headers steer the
//! response:
//!
//! | header | default | effect |
//! |---|---|---|
//! | `x-test-id` | none | key under which [`MockUpstream::wait_sent`] finds what was sent |
//! | `x-mock-tokens: N` | 10 | content tokens; token `i` is `"tok{i} "` |
//! | `x-mock-interval-ms: M` | 20 | delay between successive writes (0: none) |
//! | `x-mock-chunking` | `event` | `event`: one write per event; `batch:K`: K events per write; `split`: each event in 3 writes cut mid-line, ~2 ms apart |
//! | `x-mock-line-ending` | `lf` | `lf`, `crlf` or `cr`, for every line end of the stream |
//! | `x-mock-status: S` | none | answer status S with an OpenAI-style JSON error |
//! | `x-mock-abort-after: N` | none | close the connection after N events, without ending the chunked body (an upstream reset) |
//! | `x-mock-idle-after: N` | none | after the write that completes event N, write nothing more until the client goes away (at most 10 minutes), then go on: a stream held open and idle |
//! | `x-mock-stamp: 1` | off | add `"x_sent_unix_us":T` as the last field of every JSON chunk: the wall clock (Unix µs, 16 digits) just before the write that carries it; a load generator on the same machine subtracts it from the arrival time |
//!
//! The first event goes out right after the headers; `x-mock-interval-ms`
//! separates the writes after it (in `batch` mode, the batches).

use std::collections::{HashMap, VecDeque};
use std::io;
use std::net::{SocketAddr, TcpListener as StdTcpListener};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde::Serialize;
use serde_json::{json, Value};
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::runtime::Runtime;

use crate::http1::request::read_request_async;
use crate::http1::{Request, RequestReader};

/// Records kept for [`MockUpstream::wait_sent`]; older ones are forgotten so a
/// long load run cannot grow memory without bound.
const MAX_RECORDS: usize = 5000;
/// Fixed `created` timestamp: the stream's bytes depend only on the request.
const CREATED_UNIX: u64 = 1_764_000_000;
const DEFAULT_MODEL: &str = "gpt-4o-mini";
const DEFAULT_TOKENS: usize = 10;
const DEFAULT_INTERVAL_MS: u64 = 20;
/// Gap between the pieces of a `split` event: long enough that they arrive
/// as separate TCP reads.
const SPLIT_PIECE_GAP: Duration = Duration::from_millis(2);
const MAX_TOKENS: usize = 1_000_000;
/// The longest `x-mock-idle-after` holds a stream.
const MAX_IDLE: Duration = Duration::from_secs(600);
/// The JSON key of the send-time stamp (`x-mock-stamp: 1`).
pub const STAMP_KEY: &str = "x_sent_unix_us";
/// Digits of a stamp: Unix microseconds have 16 digits from 2001 to 2286, so a
/// stamp never changes an event's length.
pub const STAMP_DIGITS: usize = 16;
/// Rendered in place of the stamp, overwritten just before the write.
const STAMP_PLACEHOLDER: u64 = 1_000_000_000_000_000;

/// A running mock upstream. It stops when dropped.
pub struct MockUpstream {
    pub addr: SocketAddr,
    shared: Arc<Shared>,
    runtime: Option<Runtime>,
}

/// What the mock sent for one request.
#[derive(Clone, Debug)]
pub struct SentStream {
    pub status: u16,
    /// Lowercase names, values as received: what Envoy forwarded.
    pub request_headers: Vec<(String, String)>,
    pub request_body: Vec<u8>,
    /// Every response body byte written, in order (without HTTP chunk framing).
    pub body: Vec<u8>,
    /// One per SSE event written; empty for non-stream responses.
    pub events: Vec<SentEvent>,
    /// When the response headers had been written.
    pub started: Instant,
    /// The assistant text that was sent (token texts concatenated).
    pub content: String,
    pub completion_tokens: u64,
    pub prompt_tokens: u64,
    /// The response `id` (`chatcmpl-mock-<n>`); empty for error responses.
    pub response_id: String,
    /// False when the response was cut short: `x-mock-abort-after`, or a
    /// write failed because the peer went away.
    pub complete: bool,
}

#[derive(Clone, Debug)]
pub struct SentEvent {
    /// Offset in `body` just past this event's final blank line.
    pub end_offset: usize,
    /// When the write holding the event's last byte had completed.
    pub sent_at: Instant,
    /// Whether the event carried assistant text.
    pub has_content: bool,
}

impl MockUpstream {
    /// Starts on a free port of 127.0.0.1.
    pub fn start() -> io::Result<MockUpstream> {
        MockUpstream::start_on(SocketAddr::from(([127, 0, 0, 1], 0)))
    }

    pub fn start_on(addr: SocketAddr) -> io::Result<MockUpstream> {
        let listener = StdTcpListener::bind(addr)?;
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("mock-upstream")
            .enable_all()
            .build()?;
        let listener = {
            let _guard = runtime.enter();
            TcpListener::from_std(listener)?
        };
        let shared = Arc::new(Shared::default());
        runtime.spawn(accept_loop(listener, Arc::clone(&shared)));
        Ok(MockUpstream {
            addr,
            shared,
            runtime: Some(runtime),
        })
    }

    /// What was sent for the request whose `x-test-id` header equals
    /// `test_id`, once its response has ended; `None` at timeout.
    pub fn wait_sent(&self, test_id: &str, timeout: Duration) -> Option<SentStream> {
        let deadline = Instant::now() + timeout;
        let mut records = self.shared.lock_records();
        loop {
            if let Some((_, sent)) = records.by_test_id.get(test_id) {
                return Some(sent.clone());
            }
            let left = deadline.checked_duration_since(Instant::now())?;
            records = self
                .shared
                .recorded
                .wait_timeout(records, left)
                .unwrap_or_else(|poisoned| poisoned.into_inner())
                .0;
        }
    }

    /// Requests read so far (counted once a request has fully arrived).
    pub fn requests(&self) -> usize {
        self.shared.requests.load(Ordering::SeqCst)
    }
}

impl Drop for MockUpstream {
    fn drop(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            // Cancels the accept loop and every connection at its next await.
            runtime.shutdown_timeout(Duration::from_secs(1));
        }
    }
}

#[derive(Default)]
struct Shared {
    requests: AtomicUsize,
    next_response_id: AtomicU64,
    records: Mutex<Records>,
    recorded: Condvar,
}

/// Records by test id, bounded to [`MAX_RECORDS`] in insertion order. The
/// sequence number lets eviction skip a key that was recorded again later.
#[derive(Default)]
struct Records {
    by_test_id: HashMap<String, (u64, SentStream)>,
    order: VecDeque<(String, u64)>,
    next_seq: u64,
}

impl Shared {
    fn lock_records(&self) -> MutexGuard<'_, Records> {
        self.records
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn record(&self, test_id: Option<&str>, sent: SentStream) {
        let Some(test_id) = test_id else { return };
        let mut records = self.lock_records();
        let seq = records.next_seq;
        records.next_seq += 1;
        records.by_test_id.insert(test_id.to_string(), (seq, sent));
        records.order.push_back((test_id.to_string(), seq));
        while records.order.len() > MAX_RECORDS {
            let Some((old_id, old_seq)) = records.order.pop_front() else {
                break;
            };
            if records.by_test_id.get(&old_id).map(|(s, _)| *s) == Some(old_seq) {
                records.by_test_id.remove(&old_id);
            }
        }
        drop(records);
        self.recorded.notify_all();
    }
}

async fn accept_loop(listener: TcpListener, shared: Arc<Shared>) {
    loop {
        match listener.accept().await {
            Ok((stream, _)) => {
                tokio::spawn(serve_connection(stream, Arc::clone(&shared)));
            }
            // Out of file descriptors and the like: back off instead of spinning.
            Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
        }
    }
}

async fn serve_connection(mut stream: TcpStream, shared: Arc<Shared>) {
    if stream.set_nodelay(true).is_err() {
        return;
    }
    let mut reader = RequestReader::default();
    loop {
        let request = match read_request_async(&mut stream, &mut reader).await {
            Ok(Some(request)) => request,
            Ok(None) => return,
            Err(err) if err.kind() == io::ErrorKind::InvalidData => {
                let body = error_body(&err.to_string(), "invalid_request_error", Value::Null);
                let _ = write_full(&mut stream, 400, "application/json", &body, true).await;
                return;
            }
            Err(_) => return,
        };
        shared.requests.fetch_add(1, Ordering::SeqCst);
        let close = request.wants_close();
        if respond(&mut stream, &request, &shared, close)
            .await
            .is_err()
            || close
        {
            return;
        }
    }
}

/// Per-request behaviour, from the `x-mock-*` headers.
struct Controls {
    tokens: usize,
    interval: Duration,
    chunking: Chunking,
    line_ending: &'static str,
    status: Option<u16>,
    abort_after_events: Option<usize>,
    idle_after_events: Option<usize>,
    stamp: bool,
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Chunking {
    Event,
    Batch(usize),
    Split,
}

impl Controls {
    fn from_request(request: &Request) -> Result<Controls, String> {
        fn number<T: std::str::FromStr>(
            request: &Request,
            name: &str,
        ) -> Result<Option<T>, String> {
            match request.header(name) {
                None => Ok(None),
                Some(v) => v
                    .parse()
                    .map(Some)
                    .map_err(|_| format!("{name}: {v:?} is not a valid number")),
            }
        }
        let tokens = number::<usize>(request, "x-mock-tokens")?.unwrap_or(DEFAULT_TOKENS);
        if tokens > MAX_TOKENS {
            return Err(format!("x-mock-tokens: at most {MAX_TOKENS}"));
        }
        let interval = Duration::from_millis(
            number::<u64>(request, "x-mock-interval-ms")?.unwrap_or(DEFAULT_INTERVAL_MS),
        );
        let chunking = match request.header("x-mock-chunking") {
            None | Some("event") => Chunking::Event,
            Some("split") => Chunking::Split,
            Some(other) => match other.strip_prefix("batch:").map(str::parse::<usize>) {
                Some(Ok(k)) if k >= 1 => Chunking::Batch(k),
                _ => {
                    return Err(format!(
                        "x-mock-chunking: {other:?} is not event, split or batch:K (K >= 1)"
                    ))
                }
            },
        };
        let line_ending = match request.header("x-mock-line-ending") {
            None | Some("lf") => "\n",
            Some("crlf") => "\r\n",
            Some("cr") => "\r",
            Some(other) => {
                return Err(format!(
                    "x-mock-line-ending: {other:?} is not lf, crlf or cr"
                ))
            }
        };
        let status = number::<u16>(request, "x-mock-status")?;
        if let Some(s) = status {
            // Statuses without a body (1xx, 204, 304) cannot carry the error JSON.
            if !(200..=599).contains(&s) || s == 204 || s == 304 {
                return Err(format!("x-mock-status: {s} cannot carry a JSON body"));
            }
        }
        let abort_after_events = number::<usize>(request, "x-mock-abort-after")?;
        let idle_after_events = number::<usize>(request, "x-mock-idle-after")?;
        let stamp = match request.header("x-mock-stamp") {
            None | Some("0") => false,
            Some("1") => true,
            Some(other) => return Err(format!("x-mock-stamp: {other:?} is not 0 or 1")),
        };
        Ok(Controls {
            tokens,
            interval,
            chunking,
            line_ending,
            status,
            abort_after_events,
            idle_after_events,
            stamp,
        })
    }
}

/// The fields of the chat request the mock acts on.
struct ChatRequest {
    model: String,
    stream: bool,
    include_usage: bool,
    prompt_tokens: u64,
}

impl ChatRequest {
    fn parse(body: &[u8]) -> Result<ChatRequest, String> {
        let value: Value =
            serde_json::from_slice(body).map_err(|e| format!("request body is not JSON: {e}"))?;
        if !value.is_object() {
            return Err("request body is not a JSON object".to_string());
        }
        Ok(ChatRequest {
            model: value["model"].as_str().unwrap_or(DEFAULT_MODEL).to_string(),
            stream: value["stream"].as_bool().unwrap_or(false),
            include_usage: value["stream_options"]["include_usage"]
                .as_bool()
                .unwrap_or(false),
            prompt_tokens: prompt_tokens(&value["messages"]),
        })
    }
}

/// A deterministic stand-in for a tokenizer: words in every message's text,
/// plus 3 per message for the chat framing.
fn prompt_tokens(messages: &Value) -> u64 {
    let Some(messages) = messages.as_array() else {
        return 0;
    };
    let words = |text: &str| text.split_whitespace().count() as u64;
    messages
        .iter()
        .map(|message| {
            let content = &message["content"];
            let text_words = match content {
                Value::String(text) => words(text),
                // Content parts: [{"type":"text","text":"..."}, ...]
                Value::Array(parts) => parts
                    .iter()
                    .filter_map(|part| part["text"].as_str())
                    .map(words)
                    .sum(),
                _ => 0,
            };
            3 + text_words
        })
        .sum()
}

fn token_text(i: usize) -> String {
    format!("tok{i} ")
}

/// `{"error":{"message":..,"type":..,"code":..}}`, in OpenAI's key order.
fn error_body(message: &str, kind: &str, code: Value) -> Vec<u8> {
    #[derive(Serialize)]
    struct ErrorBody<'a> {
        error: ErrorDetail<'a>,
    }
    #[derive(Serialize)]
    struct ErrorDetail<'a> {
        message: &'a str,
        #[serde(rename = "type")]
        kind: &'a str,
        code: Value,
    }
    let body = ErrorBody {
        error: ErrorDetail {
            message,
            kind,
            code,
        },
    };
    serde_json::to_vec(&body).unwrap_or_default()
}

#[derive(Serialize)]
struct Usage {
    prompt_tokens: u64,
    completion_tokens: u64,
    total_tokens: u64,
}

impl Usage {
    fn new(prompt_tokens: u64, completion_tokens: u64) -> Usage {
        Usage {
            prompt_tokens,
            completion_tokens,
            total_tokens: prompt_tokens + completion_tokens,
        }
    }
}

#[derive(Serialize)]
struct Chunk<'a> {
    id: &'a str,
    object: &'static str,
    created: u64,
    model: &'a str,
    choices: Vec<ChunkChoice<'a>>,
    /// Absent without `include_usage`; with it, `null` on every chunk but the
    /// final usage chunk, as OpenAI does.
    #[serde(skip_serializing_if = "Option::is_none")]
    usage: Option<Option<Usage>>,
    /// The send-time stamp's placeholder, with `x-mock-stamp: 1`.
    #[serde(skip_serializing_if = "Option::is_none")]
    x_sent_unix_us: Option<u64>,
}

#[derive(Serialize)]
struct ChunkChoice<'a> {
    index: u32,
    delta: Delta<'a>,
    finish_reason: Option<&'static str>,
}

#[derive(Serialize)]
struct Delta<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    role: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    content: Option<&'a str>,
}

#[derive(Serialize)]
struct Completion<'a> {
    id: &'a str,
    object: &'static str,
    created: u64,
    model: &'a str,
    choices: [CompletionChoice<'a>; 1],
    usage: Usage,
}

#[derive(Serialize)]
struct CompletionChoice<'a> {
    index: u32,
    message: Message<'a>,
    finish_reason: &'static str,
}

#[derive(Serialize)]
struct Message<'a> {
    role: &'static str,
    content: &'a str,
}

/// One rendered SSE event.
struct Event {
    bytes: Vec<u8>,
    has_content: bool,
    /// Offset in `bytes` of the stamp's placeholder digits (`x-mock-stamp: 1`).
    stamp_at: Option<usize>,
}

/// The wall clock in Unix microseconds.
pub fn unix_micros() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// A stamp's digits: exactly [`STAMP_DIGITS`], so the event keeps its length.
fn stamp_digits(unix_us: u64) -> [u8; STAMP_DIGITS] {
    let mut digits = [b'0'; STAMP_DIGITS];
    let mut v = unix_us.min(10u64.pow(STAMP_DIGITS as u32) - 1);
    for d in digits.iter_mut().rev() {
        *d = b'0' + (v % 10) as u8;
        v /= 10;
    }
    digits
}

/// Where the placeholder digits are in a rendered event.
fn find_stamp_placeholder(bytes: &[u8]) -> Option<usize> {
    let needle = format!("\"{STAMP_KEY}\":{STAMP_PLACEHOLDER}");
    let at = bytes
        .windows(needle.len())
        .rposition(|w| w == needle.as_bytes())?;
    Some(at + needle.len() - STAMP_DIGITS)
}

/// The events of a streamed answer, rendered with the requested line ending;
/// with `stamp`, every JSON chunk ends in a stamp placeholder.
fn render_events(
    chat: &ChatRequest,
    id: &str,
    tokens: usize,
    line_ending: &str,
    stamp: bool,
) -> Vec<Event> {
    let placeholder = stamp.then_some(STAMP_PLACEHOLDER);
    let chunk_json = |role: Option<&'static str>, content: Option<&str>, finish_reason| {
        let chunk = Chunk {
            id,
            object: "chat.completion.chunk",
            created: CREATED_UNIX,
            model: &chat.model,
            choices: vec![ChunkChoice {
                index: 0,
                delta: Delta { role, content },
                finish_reason,
            }],
            usage: chat.include_usage.then_some(None),
            x_sent_unix_us: placeholder,
        };
        serde_json::to_string(&chunk).unwrap_or_default()
    };
    let event = |data: &str, has_content| {
        let bytes = format!("data: {data}{line_ending}{line_ending}").into_bytes();
        let stamp_at = if stamp {
            find_stamp_placeholder(&bytes)
        } else {
            None
        };
        Event {
            bytes,
            has_content,
            stamp_at,
        }
    };

    let mut events = Vec::with_capacity(tokens + 4);
    events.push(event(&chunk_json(Some("assistant"), Some(""), None), false));
    for i in 0..tokens {
        events.push(event(&chunk_json(None, Some(&token_text(i)), None), true));
    }
    events.push(event(&chunk_json(None, None, Some("stop")), false));
    if chat.include_usage {
        let usage = Chunk {
            id,
            object: "chat.completion.chunk",
            created: CREATED_UNIX,
            model: &chat.model,
            choices: Vec::new(),
            usage: Some(Some(Usage::new(chat.prompt_tokens, tokens as u64))),
            x_sent_unix_us: placeholder,
        };
        events.push(event(
            &serde_json::to_string(&usage).unwrap_or_default(),
            false,
        ));
    }
    events.push(event("[DONE]", false));
    events
}

/// One socket write of the stream.
struct PlannedWrite {
    delay_before: Duration,
    bytes: Vec<u8>,
    /// Indices of the events whose last byte is in this write.
    completes: Vec<usize>,
    /// The stamp digits in this write, filled in just before it.
    stamps: Vec<StampPart>,
}

/// Some (usually all) of one event's stamp digits, inside one write.
#[derive(Clone, Copy, Debug, PartialEq)]
struct StampPart {
    /// Offset in the write's bytes.
    at: usize,
    /// The event whose stamp this is: every part of it gets the same value.
    event: usize,
    /// Which of the stamp's digits: `digits.0..digits.1`.
    digits: (usize, usize),
}

impl PlannedWrite {
    /// A write of the byte ranges `lo..hi` of the given events, in order.
    fn of(delay_before: Duration, events: &[Event], segments: &[(usize, usize, usize)]) -> Self {
        let mut bytes = Vec::new();
        let mut stamps = Vec::new();
        let mut completes = Vec::new();
        for &(index, lo, hi) in segments {
            let Some(event) = events.get(index) else {
                continue;
            };
            if let Some(s) = event.stamp_at {
                let (from, to) = (lo.max(s), hi.min(s + STAMP_DIGITS));
                if from < to {
                    stamps.push(StampPart {
                        at: bytes.len() + from - lo,
                        event: index,
                        digits: (from - s, to - s),
                    });
                }
            }
            bytes.extend_from_slice(event.bytes.get(lo..hi).unwrap_or_default());
            if hi == event.bytes.len() {
                completes.push(index);
            }
        }
        PlannedWrite {
            delay_before,
            bytes,
            completes,
            stamps,
        }
    }

    /// Writes the stamps of this write; an event's stamp value is taken at the
    /// first write that carries any of its digits.
    fn fill_stamps(&mut self, values: &mut [Option<u64>], now_us: u64) {
        for part in &self.stamps {
            let Some(value) = values.get_mut(part.event) else {
                continue;
            };
            let digits = stamp_digits(*value.get_or_insert(now_us));
            let (d0, d1) = part.digits;
            if let (Some(dst), Some(src)) = (
                self.bytes.get_mut(part.at..part.at + (d1 - d0)),
                digits.get(d0..d1),
            ) {
                dst.copy_from_slice(src);
            }
        }
    }
}

/// Two cut points inside an event of `len` bytes, chosen by event index so
/// that across a stream the cuts land inside `data:`, mid-JSON, between the
/// two line ends of the final blank line and (with CRLF) between `\r` and `\n`.
fn split_points(index: usize, len: usize) -> (usize, usize) {
    let (first, second) = match index % 4 {
        0 => (3, len - 1),
        1 => (len / 2, len - 3),
        2 => (6, len - 2),
        _ => (1, len / 2),
    };
    (first.clamp(1, len - 2), second.clamp(first + 1, len - 1))
}

fn plan_writes(events: &[Event], chunking: Chunking, interval: Duration) -> Vec<PlannedWrite> {
    let gap = |is_first: bool| if is_first { Duration::ZERO } else { interval };
    match chunking {
        Chunking::Event => events
            .iter()
            .enumerate()
            .map(|(i, event)| PlannedWrite::of(gap(i == 0), events, &[(i, 0, event.bytes.len())]))
            .collect(),
        Chunking::Batch(per_write) => events
            .chunks(per_write)
            .enumerate()
            .map(|(batch, group)| {
                let segments: Vec<(usize, usize, usize)> = group
                    .iter()
                    .enumerate()
                    .map(|(k, e)| (batch * per_write + k, 0, e.bytes.len()))
                    .collect();
                PlannedWrite::of(gap(batch == 0), events, &segments)
            })
            .collect(),
        Chunking::Split => {
            let mut writes = Vec::with_capacity(events.len() * 3);
            for (i, event) in events.iter().enumerate() {
                let len = event.bytes.len();
                let (first, second) = split_points(i, len);
                let pieces = [(0, first), (first, second), (second, len)];
                for (p, (lo, hi)) in pieces.into_iter().enumerate() {
                    let delay = if p == 0 { gap(i == 0) } else { SPLIT_PIECE_GAP };
                    writes.push(PlannedWrite::of(delay, events, &[(i, lo, hi)]));
                }
            }
            writes
        }
    }
}

fn reason_phrase(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        _ => "Mock Status",
    }
}

/// Writes a response with a content-length; returns when it had been written.
async fn write_full(
    stream: &mut TcpStream,
    status: u16,
    content_type: &str,
    body: &[u8],
    close: bool,
) -> io::Result<Instant> {
    let connection = if close { "connection: close\r\n" } else { "" };
    let mut response = format!(
        "HTTP/1.1 {status} {}\r\ncontent-type: {content_type}\r\ncontent-length: {}\r\n{connection}\r\n",
        reason_phrase(status),
        body.len()
    )
    .into_bytes();
    response.extend_from_slice(body);
    stream.write_all(&response).await?;
    Ok(Instant::now())
}

async fn respond(
    stream: &mut TcpStream,
    request: &Request,
    shared: &Shared,
    close: bool,
) -> io::Result<()> {
    let test_id = request.header("x-test-id");
    let mut sent = SentStream {
        status: 0,
        request_headers: request.headers.clone(),
        request_body: request.body.clone(),
        body: Vec::new(),
        events: Vec::new(),
        started: Instant::now(),
        content: String::new(),
        completion_tokens: 0,
        prompt_tokens: 0,
        response_id: String::new(),
        complete: false,
    };

    // Requests answered without the chat logic: a readiness probe, wrong methods.
    let early_answer = if request.method == "GET" && request.path == "/health" {
        Some((200, br#"{"status":"ok"}"#.to_vec()))
    } else if request.method != "POST" {
        Some((
            405,
            error_body(
                "mock upstream answers POST only",
                "invalid_request_error",
                Value::Null,
            ),
        ))
    } else {
        None
    };
    let prepared = match early_answer {
        Some(response) => Err(response),
        None => Controls::from_request(request)
            .and_then(|controls| Ok((controls, ChatRequest::parse(&request.body)?)))
            .map_err(|message| {
                (
                    400,
                    error_body(&message, "invalid_request_error", Value::Null),
                )
            }),
    };
    let (controls, chat) = match prepared {
        Ok(prepared) => prepared,
        Err((status, body)) => {
            sent.started = write_full(stream, status, "application/json", &body, close).await?;
            sent.status = status;
            sent.body = body;
            sent.complete = true;
            shared.record(test_id, sent);
            return Ok(());
        }
    };

    sent.prompt_tokens = chat.prompt_tokens;
    if let Some(status) = controls.status {
        let body = error_body("mock error", "server_error", json!(status));
        sent.started = write_full(stream, status, "application/json", &body, close).await?;
        sent.status = status;
        sent.body = body;
        sent.complete = true;
        shared.record(test_id, sent);
        return Ok(());
    }

    let id = format!(
        "chatcmpl-mock-{}",
        shared.next_response_id.fetch_add(1, Ordering::SeqCst) + 1
    );
    sent.status = 200;
    sent.response_id = id.clone();
    sent.completion_tokens = controls.tokens as u64;
    sent.content = (0..controls.tokens).map(token_text).collect();

    if !chat.stream {
        let completion = Completion {
            id: &id,
            object: "chat.completion",
            created: CREATED_UNIX,
            model: &chat.model,
            choices: [CompletionChoice {
                index: 0,
                message: Message {
                    role: "assistant",
                    content: &sent.content,
                },
                finish_reason: "stop",
            }],
            usage: Usage::new(chat.prompt_tokens, controls.tokens as u64),
        };
        let body = serde_json::to_vec(&completion).map_err(io::Error::other)?;
        sent.started = write_full(stream, 200, "application/json", &body, close).await?;
        sent.body = body;
        sent.complete = true;
        shared.record(test_id, sent);
        return Ok(());
    }

    let events = render_events(
        &chat,
        &id,
        controls.tokens,
        controls.line_ending,
        controls.stamp,
    );
    let result = write_stream(stream, &events, &controls, close, &mut sent).await;
    shared.record(test_id, sent);
    result
}

/// Streams `events` as a chunked SSE response, recording into `sent` as it
/// goes so that a failed write still leaves an accurate record.
async fn write_stream(
    stream: &mut TcpStream,
    events: &[Event],
    controls: &Controls,
    close: bool,
    sent: &mut SentStream,
) -> io::Result<()> {
    let connection = if close { "connection: close\r\n" } else { "" };
    let head = format!(
        "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ncache-control: no-cache\r\ntransfer-encoding: chunked\r\n{connection}\r\n"
    );
    stream.write_all(head.as_bytes()).await?;
    sent.started = Instant::now();

    let mut writes = plan_writes(events, controls.chunking, controls.interval);
    if let Some(limit) = controls.abort_after_events {
        // Keep the writes up to the one that completes event number `limit`.
        let keep = writes
            .iter()
            .position(|w| w.completes.iter().any(|&e| e + 1 >= limit))
            .map_or(writes.len(), |i| i + 1);
        writes.truncate(if limit == 0 { 0 } else { keep });
    }
    let aborted = writes
        .last()
        .and_then(|w| w.completes.last())
        .is_none_or(|&e| e + 1 < events.len());
    let event_ends: Vec<usize> = events
        .iter()
        .scan(0, |end, event| {
            *end += event.bytes.len();
            Some(*end)
        })
        .collect();

    let write_count = writes.len();
    let mut stamp_values: Vec<Option<u64>> = vec![None; events.len()];
    let mut idle_after = controls.idle_after_events;
    for (n, mut write) in writes.into_iter().enumerate() {
        if !write.delay_before.is_zero() {
            tokio::time::sleep(write.delay_before).await;
        }
        if !write.stamps.is_empty() {
            write.fill_stamps(&mut stamp_values, unix_micros());
        }
        let mut framed = format!("{:x}\r\n", write.bytes.len()).into_bytes();
        framed.extend_from_slice(&write.bytes);
        framed.extend_from_slice(b"\r\n");
        if n + 1 == write_count && !aborted {
            framed.extend_from_slice(b"0\r\n\r\n");
        }
        stream.write_all(&framed).await?;
        let sent_at = Instant::now();
        sent.body.extend_from_slice(&write.bytes);
        let written = write.completes.last().map_or(0, |&e| e + 1);
        for index in write.completes {
            sent.events.push(SentEvent {
                end_offset: event_ends[index],
                sent_at,
                has_content: events[index].has_content,
            });
        }
        if idle_after.is_some_and(|k| written >= k) {
            idle_after = None;
            if idle_until_closed(stream).await {
                return Err(io::Error::other("client went away while the stream idled"));
            }
        }
    }
    sent.complete = !aborted;
    if aborted {
        // Closing without the last chunk is what an upstream reset looks like.
        return Err(io::Error::other("stream aborted by x-mock-abort-after"));
    }
    Ok(())
}

/// Waits up to [`MAX_IDLE`] without writing; true if the peer closed the
/// connection meanwhile. A request arriving (pipelining) ends the wait too.
async fn idle_until_closed(stream: &mut TcpStream) -> bool {
    let mut probe = [0u8; 1];
    tokio::select! {
        _ = tokio::time::sleep(MAX_IDLE) => false,
        peeked = stream.peek(&mut probe) => !matches!(peeked, Ok(n) if n > 0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::client::{self, check_live, StreamResult};
    use std::io::{Read, Write};

    const PATH: &str = "/v1/chat/completions";
    const STREAM_CHAT: &str = r#"{"model":"gpt-4o-mini","stream":true,"stream_options":{"include_usage":true},"messages":[{"role":"user","content":"Say hello, slowly"}]}"#;
    const WAIT: Duration = Duration::from_secs(10);

    fn exchange(
        upstream: &MockUpstream,
        test_id: &str,
        controls: &[(&str, &str)],
        body: &str,
    ) -> (StreamResult, SentStream) {
        let mut headers = vec![("x-test-id", test_id)];
        headers.extend_from_slice(controls);
        let got = client::post(upstream.addr, PATH, &headers, body.as_bytes()).unwrap();
        let sent = upstream.wait_sent(test_id, WAIT).unwrap();
        (got, sent)
    }

    /// STREAM_CHAT's answer with 3 tokens, written out by hand with LF line
    /// ends. "Say hello, slowly" is 3 words + 3 for the message: 6 prompt tokens.
    fn expected_stream(id: &str, line_ending: &str) -> String {
        let head = format!(
            r#"{{"id":"{id}","object":"chat.completion.chunk","created":1764000000,"model":"gpt-4o-mini","choices":["#
        );
        let lf = [
            format!(r#"data: {head}{{"index":0,"delta":{{"role":"assistant","content":""}},"finish_reason":null}}],"usage":null}}"#),
            format!(r#"data: {head}{{"index":0,"delta":{{"content":"tok0 "}},"finish_reason":null}}],"usage":null}}"#),
            format!(r#"data: {head}{{"index":0,"delta":{{"content":"tok1 "}},"finish_reason":null}}],"usage":null}}"#),
            format!(r#"data: {head}{{"index":0,"delta":{{"content":"tok2 "}},"finish_reason":null}}],"usage":null}}"#),
            format!(r#"data: {head}{{"index":0,"delta":{{}},"finish_reason":"stop"}}],"usage":null}}"#),
            format!(r#"data: {head}],"usage":{{"prompt_tokens":6,"completion_tokens":3,"total_tokens":9}}}}"#),
            "data: [DONE]".to_string(),
        ]
        .map(|line| line + "\n\n")
        .concat();
        lf.replace('\n', line_ending)
    }

    #[test]
    fn stream_bytes_are_exact_for_every_chunking_and_line_ending() {
        let upstream = MockUpstream::start().unwrap();
        for chunking in ["event", "batch:2", "batch:100", "split"] {
            for (name, line_ending) in [("lf", "\n"), ("crlf", "\r\n"), ("cr", "\r")] {
                let test_id = format!("exact-{chunking}-{name}");
                let controls = [
                    ("x-mock-tokens", "3"),
                    ("x-mock-interval-ms", "0"),
                    ("x-mock-chunking", chunking),
                    ("x-mock-line-ending", name),
                ];
                let (got, sent) = exchange(&upstream, &test_id, &controls, STREAM_CHAT);
                let expected = expected_stream(&sent.response_id, line_ending);
                assert_eq!(
                    String::from_utf8_lossy(&sent.body),
                    expected,
                    "{test_id}: sent"
                );
                assert_eq!(got.body, sent.body, "{test_id}: received");
                assert!(got.complete && sent.complete, "{test_id}");
                assert_eq!(got.status, 200);
                assert_eq!(got.header("content-type"), Some("text/event-stream"));
                assert_eq!(got.header("cache-control"), Some("no-cache"));
                assert_eq!(got.header("transfer-encoding"), Some("chunked"));
                assert_eq!(got.header("content-length"), None);
                assert_eq!(sent.events.len(), 7);
                assert_eq!(sent.content, "tok0 tok1 tok2 ");
                assert_eq!((sent.prompt_tokens, sent.completion_tokens), (6, 3));
            }
        }
    }

    /// The stamps of the JSON chunks in an SSE body, in order, and the number
    /// of JSON chunks.
    fn stamps_in(body: &[u8]) -> (Vec<u64>, usize) {
        let text = std::str::from_utf8(body).unwrap();
        let mut stamps = Vec::new();
        let mut chunks = 0;
        for data in text.split("\n\n").filter_map(|e| e.strip_prefix("data: ")) {
            if data == "[DONE]" {
                continue;
            }
            chunks += 1;
            let chunk: Value = serde_json::from_str(data).unwrap();
            // The stamp is the last field, so the rest of the chunk is unchanged.
            assert!(data.ends_with(&format!(
                ",\"{STAMP_KEY}\":{}}}",
                chunk[STAMP_KEY].as_u64().unwrap()
            )));
            stamps.push(chunk[STAMP_KEY].as_u64().unwrap());
        }
        (stamps, chunks)
    }

    #[test]
    fn stamp_marks_every_json_chunk_with_its_send_time() {
        let upstream = MockUpstream::start().unwrap();
        for chunking in ["event", "batch:2", "split"] {
            let test_id = format!("stamp-{chunking}");
            let controls = [
                ("x-mock-tokens", "6"),
                ("x-mock-interval-ms", "3"),
                ("x-mock-chunking", chunking),
                ("x-mock-stamp", "1"),
            ];
            let before = unix_micros();
            let (got, sent) = exchange(&upstream, &test_id, &controls, STREAM_CHAT);
            let after = unix_micros();
            assert_eq!(got.body, sent.body, "{test_id}");
            let (stamps, chunks) = stamps_in(&got.body);
            // role, 6 tokens, finish, usage
            assert_eq!((stamps.len(), chunks), (9, 9), "{test_id}");
            assert!(
                stamps.windows(2).all(|w| w[0] <= w[1]),
                "{test_id}: {stamps:?}"
            );
            assert!(
                stamps.iter().all(|&t| before <= t && t <= after),
                "{test_id}: {stamps:?} not within {before}..={after}"
            );
            // 3 ms between writes: the last stamp is well after the first.
            assert!(stamps[8] - stamps[0] >= 15_000, "{test_id}: {stamps:?}");
            // Same length as without the stamp's value: 16 digits each.
            let unstamped = exchange(
                &upstream,
                &format!("{test_id}-off"),
                &[("x-mock-tokens", "6"), ("x-mock-interval-ms", "0")],
                STREAM_CHAT,
            )
            .0;
            assert!(!String::from_utf8_lossy(&unstamped.body).contains(STAMP_KEY));
            let key_bytes = format!(",\"{STAMP_KEY}\":").len() + STAMP_DIGITS;
            assert_eq!(got.body.len(), unstamped.body.len() + 9 * key_bytes);
        }
        let (got, _) = exchange(
            &upstream,
            "stamp-bad",
            &[("x-mock-stamp", "yes")],
            STREAM_CHAT,
        );
        assert_eq!(got.status, 400);
    }

    #[test]
    fn idle_after_holds_the_stream_until_the_client_goes_away() {
        let upstream = MockUpstream::start().unwrap();
        let t0 = Instant::now();
        let mut stream = std::net::TcpStream::connect(upstream.addr).unwrap();
        let request = format!(
            "POST {PATH} HTTP/1.1\r\nhost: x\r\nx-test-id: idle-2\r\nx-mock-tokens: 20\r\n\
             x-mock-interval-ms: 0\r\nx-mock-idle-after: 5\r\ncontent-length: {}\r\n\r\n{STREAM_CHAT}",
            STREAM_CHAT.len()
        );
        stream.write_all(request.as_bytes()).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_millis(300)))
            .unwrap();
        let mut received = Vec::new();
        let mut buf = [0u8; 4096];
        while let Ok(n) = stream.read(&mut buf) {
            if n == 0 {
                break;
            }
            received.extend_from_slice(&buf[..n]);
        }
        // Five events, then nothing for 300 ms: the stream is open and idle.
        let text = String::from_utf8_lossy(&received);
        assert_eq!(text.matches("data: ").count(), 5, "{text}");
        drop(stream);
        let sent = upstream.wait_sent("idle-2", WAIT).unwrap();
        assert!(!sent.complete);
        assert_eq!(sent.events.len(), 5);
        assert!(t0.elapsed() < Duration::from_secs(5));
    }

    #[test]
    fn a_stamp_cut_across_writes_gets_one_value() {
        let bytes = b"data: {\"a\":1,\"x_sent_unix_us\":1000000000000000}\n\n".to_vec();
        let stamp_at = find_stamp_placeholder(&bytes).unwrap();
        assert_eq!(
            &bytes[stamp_at..stamp_at + STAMP_DIGITS],
            b"1000000000000000"
        );
        let len = bytes.len();
        let events = [Event {
            bytes,
            has_content: false,
            stamp_at: Some(stamp_at),
        }];
        let cut = stamp_at + 5;
        let mut first = PlannedWrite::of(Duration::ZERO, &events, &[(0, 0, cut)]);
        let mut second = PlannedWrite::of(Duration::ZERO, &events, &[(0, cut, len)]);
        assert_eq!(
            first.stamps,
            vec![StampPart {
                at: stamp_at,
                event: 0,
                digits: (0, 5)
            }]
        );
        assert_eq!(
            second.stamps,
            vec![StampPart {
                at: 0,
                event: 0,
                digits: (5, 16)
            }]
        );
        assert!(first.completes.is_empty() && second.completes == vec![0]);
        let mut values = vec![None];
        first.fill_stamps(&mut values, 1_764_000_000_123_456);
        second.fill_stamps(&mut values, 1_999_999_999_999_999);
        let joined = [first.bytes, second.bytes].concat();
        assert_eq!(
            String::from_utf8(joined).unwrap(),
            "data: {\"a\":1,\"x_sent_unix_us\":1764000000123456}\n\n"
        );
        assert_eq!(stamp_digits(42), *b"0000000000000042");
        assert_eq!(stamp_digits(u64::MAX), *b"9999999999999999");
    }

    #[test]
    fn event_end_offsets_delimit_the_events() {
        let upstream = MockUpstream::start().unwrap();
        for (name, line_ending) in [("lf", "\n"), ("crlf", "\r\n"), ("cr", "\r")] {
            let test_id = format!("offsets-{name}");
            let controls = [
                ("x-mock-tokens", "5"),
                ("x-mock-interval-ms", "0"),
                ("x-mock-chunking", "batch:3"),
                ("x-mock-line-ending", name),
            ];
            let (_, sent) = exchange(&upstream, &test_id, &controls, STREAM_CHAT);
            let blank_line = line_ending.repeat(2);
            let mut start = 0;
            let mut texts = Vec::new();
            for event in &sent.events {
                let text = std::str::from_utf8(&sent.body[start..event.end_offset]).unwrap();
                let data = text
                    .strip_prefix("data: ")
                    .and_then(|t| t.strip_suffix(blank_line.as_str()))
                    .unwrap_or_else(|| panic!("{test_id}: not one event: {text:?}"));
                assert!(
                    !data.contains(line_ending),
                    "{test_id}: two events in {text:?}"
                );
                if data != "[DONE]" {
                    let chunk: Value = serde_json::from_str(data).unwrap();
                    let content = chunk["choices"][0]["delta"]["content"]
                        .as_str()
                        .unwrap_or("");
                    assert_eq!(event.has_content, !content.is_empty());
                    texts.push(content.to_string());
                }
                start = event.end_offset;
            }
            assert_eq!(start, sent.body.len());
            assert_eq!(texts.concat(), sent.content);
        }
    }

    #[test]
    fn split_chunking_arrives_in_several_reads_cut_mid_line() {
        let upstream = MockUpstream::start().unwrap();
        let controls = [
            ("x-mock-tokens", "10"),
            ("x-mock-interval-ms", "0"),
            ("x-mock-chunking", "split"),
            ("x-mock-line-ending", "crlf"),
        ];
        let (got, sent) = exchange(&upstream, "split", &controls, STREAM_CHAT);
        assert_eq!(got.body, sent.body);
        assert!(
            got.frames.len() > sent.events.len(),
            "{} reads for {} events",
            got.frames.len(),
            sent.events.len()
        );
        let read_ends: Vec<usize> = got
            .frames
            .iter()
            .scan(0, |end, (_, len)| {
                *end += len;
                Some(*end)
            })
            .collect();
        assert!(
            read_ends
                .iter()
                .any(|&end| got.body.get(end - 1..=end) == Some(b"\r\n".as_slice())),
            "no read ended between \\r and \\n: {read_ends:?}"
        );
    }

    #[test]
    fn check_live_passes_for_a_direct_stream_and_fails_when_bytes_come_late() {
        let upstream = MockUpstream::start().unwrap();
        let controls = [("x-mock-tokens", "10"), ("x-mock-interval-ms", "20")];
        let (got, sent) = exchange(&upstream, "live", &controls, STREAM_CHAT);
        let report = check_live(&sent, &got, Duration::from_millis(100)).unwrap();
        assert_eq!(report.delays.len(), 10);

        // The same bytes, all stamped as arriving when the last event was sent:
        // what a buffering proxy would produce.
        let last_sent = sent.events.last().unwrap().sent_at;
        let buffered = StreamResult {
            frames: vec![(last_sent, got.body.len())],
            ..got.clone()
        };
        let err = check_live(&sent, &buffered, Duration::from_millis(100)).unwrap_err();
        assert!(err.starts_with("event 1 arrived"), "{err}");
        assert!(err.contains("(bound 100 ms); delays ms: ["), "{err}");

        let truncated = StreamResult {
            body: got.body[..got.body.len() - 1].to_vec(),
            ..got
        };
        let err = check_live(&sent, &truncated, Duration::from_millis(100)).unwrap_err();
        assert!(err.contains("differ"), "{err}");
    }

    #[test]
    fn stream_without_include_usage_has_no_usage_fields() {
        let upstream = MockUpstream::start().unwrap();
        let body = r#"{"model":"m","stream":true,"messages":[]}"#;
        let (got, sent) = exchange(&upstream, "no-usage", &[("x-mock-interval-ms", "0")], body);
        let text = String::from_utf8(got.body).unwrap();
        assert!(!text.contains("usage"), "{text}");
        assert_eq!(sent.events.len(), 10 + 3);
        assert!(text.contains(r#""model":"m""#));
    }

    #[test]
    fn non_stream_answer_is_a_chat_completion_with_usage() {
        let upstream = MockUpstream::start().unwrap();
        let body = r#"{"model":"gpt-4o","messages":[{"role":"system","content":"Be brief"},{"role":"user","content":[{"type":"text","text":"one two three"}]}]}"#;
        let (got, sent) = exchange(&upstream, "plain", &[("x-mock-tokens", "4")], body);
        assert_eq!(got.status, 200);
        assert_eq!(got.header("content-type"), Some("application/json"));
        assert_eq!(
            got.header("content-length"),
            Some(got.body.len().to_string().as_str())
        );
        let completion: Value = serde_json::from_slice(&got.body).unwrap();
        assert_eq!(completion["object"], "chat.completion");
        assert_eq!(completion["id"], sent.response_id.as_str());
        assert_eq!(completion["model"], "gpt-4o");
        assert_eq!(
            completion["choices"][0]["message"]["content"],
            "tok0 tok1 tok2 tok3 "
        );
        assert_eq!(completion["choices"][0]["finish_reason"], "stop");
        // (2 words + 3) + (3 words + 3)
        assert_eq!(
            completion["usage"],
            json!({"prompt_tokens": 11, "completion_tokens": 4, "total_tokens": 15})
        );
        assert!(sent.events.is_empty());
        assert_eq!(sent.body, got.body);
    }

    #[test]
    fn mock_status_answers_an_openai_error() {
        let upstream = MockUpstream::start().unwrap();
        let (got, sent) = exchange(
            &upstream,
            "status",
            &[("x-mock-status", "503")],
            STREAM_CHAT,
        );
        assert_eq!(got.status, 503);
        assert_eq!(
            got.body,
            br#"{"error":{"message":"mock error","type":"server_error","code":503}}"#
        );
        assert_eq!(sent.status, 503);

        let (got, _) = exchange(
            &upstream,
            "bad",
            &[("x-mock-chunking", "lumpy")],
            STREAM_CHAT,
        );
        assert_eq!(got.status, 400);
        let (got, _) = exchange(&upstream, "not-json", &[], "{");
        assert_eq!(got.status, 400);
    }

    #[test]
    fn records_request_headers_and_body_and_ids_are_unique() {
        let upstream = MockUpstream::start().unwrap();
        let controls = [("x-mock-tokens", "1"), ("x-forwarded-for", "10.0.0.1")];
        let (_, first) = exchange(&upstream, "rec-1", &controls, STREAM_CHAT);
        let (_, second) = exchange(&upstream, "rec-2", &controls, STREAM_CHAT);
        assert!(first
            .request_headers
            .contains(&("x-forwarded-for".to_string(), "10.0.0.1".to_string())));
        assert_eq!(first.request_body, STREAM_CHAT.as_bytes());
        assert_ne!(first.response_id, second.response_id);
        assert!(upstream
            .wait_sent("never-sent", Duration::from_millis(20))
            .is_none());
        assert_eq!(upstream.requests(), 2);
    }

    #[test]
    fn serves_pipelined_keep_alive_requests_with_chunked_bodies() {
        let upstream = MockUpstream::start().unwrap();
        let body = r#"{"messages":[]}"#;
        let requests = format!(
            "POST {PATH} HTTP/1.1\r\nhost: x\r\nx-test-id: ka-1\r\ntransfer-encoding: chunked\r\n\r\n4\r\n{}\r\n{:x}\r\n{}\r\n0\r\n\r\n\
             POST {PATH} HTTP/1.1\r\nhost: x\r\nx-test-id: ka-2\r\nconnection: close\r\ncontent-length: {}\r\n\r\n{body}",
            &body[..4],
            body.len() - 4,
            &body[4..],
            body.len()
        );
        let mut stream = std::net::TcpStream::connect(upstream.addr).unwrap();
        stream.write_all(requests.as_bytes()).unwrap();
        let mut answer = String::new();
        stream.read_to_string(&mut answer).unwrap();
        assert_eq!(answer.matches("HTTP/1.1 200 OK").count(), 2, "{answer}");
        assert_eq!(upstream.requests(), 2);
        assert_eq!(
            upstream.wait_sent("ka-1", WAIT).unwrap().request_body,
            body.as_bytes()
        );
    }

    #[test]
    fn serves_many_concurrent_streams() {
        let upstream = MockUpstream::start().unwrap();
        let addr = upstream.addr;
        let clients: Vec<_> = (0..40)
            .map(|i| {
                std::thread::spawn(move || {
                    let id = format!("many-{i}");
                    let headers = [
                        ("x-test-id", id.as_str()),
                        ("x-mock-tokens", "5"),
                        ("x-mock-interval-ms", "10"),
                    ];
                    client::post(addr, PATH, &headers, STREAM_CHAT.as_bytes()).unwrap()
                })
            })
            .collect();
        let mut ids = std::collections::HashSet::new();
        for (i, handle) in clients.into_iter().enumerate() {
            let got = handle.join().unwrap();
            let sent = upstream.wait_sent(&format!("many-{i}"), WAIT).unwrap();
            assert_eq!(got.body, sent.body);
            ids.insert(sent.response_id);
        }
        assert_eq!(ids.len(), 40);
        assert_eq!(upstream.requests(), 40);
    }

    #[test]
    fn abort_after_closes_mid_stream() {
        let upstream = MockUpstream::start().unwrap();
        let headers = [
            ("x-test-id", "abort"),
            ("x-mock-abort-after", "3"),
            ("x-mock-interval-ms", "0"),
        ];
        let got = client::post_until(
            upstream.addr,
            PATH,
            &headers,
            STREAM_CHAT.as_bytes(),
            usize::MAX,
        )
        .unwrap();
        let sent = upstream.wait_sent("abort", WAIT).unwrap();
        assert!(!got.complete && !sent.complete);
        assert_eq!(sent.events.len(), 3);
        assert_eq!(got.body, sent.body);

        let strict = client::post(upstream.addr, PATH, &headers, STREAM_CHAT.as_bytes());
        assert_eq!(strict.unwrap_err().kind(), io::ErrorKind::UnexpectedEof);
    }

    #[test]
    fn client_going_away_ends_the_stream_early() {
        let upstream = MockUpstream::start().unwrap();
        let headers = [
            ("x-test-id", "gone"),
            ("x-mock-tokens", "100"),
            ("x-mock-interval-ms", "5"),
        ];
        let got =
            client::post_until(upstream.addr, PATH, &headers, STREAM_CHAT.as_bytes(), 500).unwrap();
        assert!(got.body.len() >= 500 && !got.complete);
        let sent = upstream.wait_sent("gone", WAIT).unwrap();
        assert!(!sent.complete);
        assert!(sent.events.len() < 100, "{} events", sent.events.len());
    }

    #[test]
    fn records_are_bounded_and_keep_the_latest_per_id() {
        let shared = Shared::default();
        let sent = |status| SentStream {
            status,
            request_headers: Vec::new(),
            request_body: Vec::new(),
            body: Vec::new(),
            events: Vec::new(),
            started: Instant::now(),
            content: String::new(),
            completion_tokens: 0,
            prompt_tokens: 0,
            response_id: String::new(),
            complete: true,
        };
        shared.record(Some("again"), sent(500));
        for i in 0..MAX_RECORDS {
            shared.record(Some(&i.to_string()), sent(200));
        }
        shared.record(Some("again"), sent(201));
        shared.record(None, sent(200));
        let records = shared.lock_records();
        assert_eq!(records.by_test_id.len(), MAX_RECORDS);
        assert!(!records.by_test_id.contains_key("0"));
        assert_eq!(records.by_test_id["again"].1.status, 201);
    }
}
