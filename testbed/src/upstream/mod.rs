//! Mock LLM upstream: OpenAI Chat Completions, Ollama's native API
//! (`/api/chat`, `/api/generate`: NDJSON lines, `upstream::ollama`) and the
//! Gemini API (`…/models/m:streamGenerateContent?alt=sse`, `:generateContent`:
//! `upstream::gemini`) and Bedrock's ConverseStream and Converse (AWS event-stream
//! frames: `upstream::bedrock`), told apart by the path.
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

mod bedrock;
mod controls;
mod gemini;
mod ollama;
mod openai;
mod stamps;
#[cfg(test)]
mod tests;
mod writes;

use std::collections::{HashMap, VecDeque};
use std::io;
use std::net::{SocketAddr, TcpListener as StdTcpListener};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tokio::net::{TcpListener, TcpStream};
use tokio::runtime::Runtime;

use crate::http1::request::read_request_async;
use crate::http1::{Request, RequestReader};
use controls::Controls;
use openai::{completion_body, error_body, render_events, token_text, ChatRequest};
pub use stamps::{unix_micros, STAMP_DIGITS, STAMP_KEY};
use writes::{write_full, write_stream};

/// Records kept for [`MockUpstream::wait_sent`]; older ones are forgotten so a
/// long load run cannot grow memory without bound.
const MAX_RECORDS: usize = 5000;

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

impl SentStream {
    /// Nothing sent yet in answer to `request`.
    fn answering(request: &Request) -> SentStream {
        SentStream {
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
        }
    }
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

async fn respond(
    stream: &mut TcpStream,
    request: &Request,
    shared: &Shared,
    close: bool,
) -> io::Result<()> {
    let test_id = request.header("x-test-id");
    let mut sent = SentStream::answering(request);
    let (controls, chat) = match prepare(request) {
        Ok(prepared) => prepared,
        Err((status, body)) => {
            (sent.status, sent.body) = (status, body);
            return answer_whole(stream, close, shared, test_id, sent).await;
        }
    };
    sent.prompt_tokens = chat.prompt_tokens;
    if let Some(status) = controls.status {
        sent.status = status;
        sent.body = error_body("mock error", "server_error", json!(status));
        return answer_whole(stream, close, shared, test_id, sent).await;
    }

    let id = format!(
        "chatcmpl-mock-{}",
        shared.next_response_id.fetch_add(1, Ordering::SeqCst) + 1
    );
    sent.status = 200;
    sent.response_id = id.clone();
    sent.completion_tokens = controls.tokens as u64;
    sent.content = (0..controls.tokens).map(token_text).collect();
    let ollama = ollama::is_ollama(&request.path);
    let gemini = gemini::model_of(&request.path).is_some();
    let bedrock = bedrock::is_converse(&request.path);
    if !chat.stream {
        sent.body = if ollama {
            ollama::whole_body(&chat, &request.path, &sent.content, controls.tokens)
        } else if gemini {
            gemini::whole_body(
                &chat.model,
                chat.prompt_tokens,
                &sent.content,
                controls.tokens,
            )
        } else if bedrock {
            bedrock::whole_body(chat.prompt_tokens, &sent.content, controls.tokens)
        } else {
            completion_body(&id, &chat, controls.tokens, &sent.content).map_err(io::Error::other)?
        };
        return answer_whole(stream, close, shared, test_id, sent).await;
    }

    let (events, content_type) = if ollama {
        (
            ollama::render_lines(&chat, &request.path, controls.tokens),
            "application/x-ndjson",
        )
    } else if gemini {
        (
            gemini::render_events(&chat.model, chat.prompt_tokens, controls.tokens),
            "text/event-stream",
        )
    } else if bedrock {
        (
            bedrock::render_frames(chat.prompt_tokens, controls.tokens),
            "application/vnd.amazon.eventstream",
        )
    } else {
        let events = render_events(
            &chat,
            &id,
            controls.tokens,
            controls.line_ending,
            controls.stamp,
        );
        (events, "text/event-stream")
    };
    let result = write_stream(stream, &events, content_type, &controls, close, &mut sent).await;
    shared.record(test_id, sent);
    result
}

/// What the chat logic answers, or the error answer of a request it does not
/// take: a readiness probe, a wrong method, bad controls or a bad body.
fn prepare(request: &Request) -> Result<(Controls, ChatRequest), (u16, Vec<u8>)> {
    if request.method == "GET" && request.path == "/health" {
        return Err((200, br#"{"status":"ok"}"#.to_vec()));
    }
    let invalid = |message: &str| error_body(message, "invalid_request_error", Value::Null);
    if request.method != "POST" {
        return Err((405, invalid("mock upstream answers POST only")));
    }
    Controls::from_request(request)
        .and_then(|controls| {
            let mut chat = ChatRequest::parse(&request.body, ollama::is_ollama(&request.path))?;
            // Gemini names the model and the streaming in the path.
            if let Some(model) = gemini::model_of(&request.path) {
                chat.model = model.to_string();
                chat.stream = request.path.contains(":streamGenerateContent");
                let body: Value = serde_json::from_slice(&request.body).unwrap_or_default();
                chat.prompt_tokens = gemini::prompt_tokens(&body);
            }
            // Bedrock too: whether to stream (the model stays in the path).
            if bedrock::is_converse(&request.path) {
                chat.stream = request.path.contains("/converse-stream");
            }
            Ok((controls, chat))
        })
        .map_err(|message| (400, invalid(&message)))
}

/// Writes `sent.body` as a whole JSON answer with `sent.status`, and records it.
async fn answer_whole(
    stream: &mut TcpStream,
    close: bool,
    shared: &Shared,
    test_id: Option<&str>,
    mut sent: SentStream,
) -> io::Result<()> {
    sent.started = write_full(stream, sent.status, "application/json", &sent.body, close).await?;
    sent.complete = true;
    shared.record(test_id, sent);
    Ok(())
}
