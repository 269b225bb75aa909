//! Summary collector: receives the call summaries streamtap exports.
//!
//! | request | answer |
//! |---|---|
//! | `POST /v1/calls` with a JSON array of summaries (or one object) | `{"accepted":n,"duplicates":d}`, or the status set by [`Collector::set_status`] (after the delay set by [`Collector::set_delay`]) |
//! | `POST /v1/logs` (OTLP/HTTP JSON) | `{}`; the whole body is kept, see [`Collector::otlp_posts`] |
//! | `GET /calls[?limit=N][&verdict=V][&id=X]` | `{"calls":[...]}`, the latest N (default 100) of those that match, newest last; see [`CallsQuery`] |
//! | `GET /health/streaming` | see [`streaming_health`] |
//! | `GET /stats` | `{"calls":n,"posts":p,"duplicates":d}` |
//! | `GET /[?verdict=V]` | HTML: the streaming health, then the latest calls, newest first ([`crate::viewer`]) |
//! | `GET /calls/{id}` | HTML: one call (the newest with that id, percent-decoded), its timeline and answer; 404 if unknown |

use std::collections::{HashSet, VecDeque};
use std::convert::Infallible;
use std::io;
use std::net::{SocketAddr, TcpListener as StdTcpListener};
use std::sync::atomic::{AtomicU16, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::{json, Value};
use tokio::net::TcpListener;
use tokio::runtime::Runtime;

use crate::viewer;

/// Summaries kept; the oldest go first.
const MAX_CALLS: usize = 10_000;
/// `summary_id`s remembered for de-duplication; the oldest are forgotten first.
const MAX_SEEN_IDS: usize = 100_000;
/// OTLP request bodies kept.
const MAX_OTLP_POSTS: usize = 1_000;
const DEFAULT_CALLS_LIMIT: usize = 100;
/// The window `/health/streaming` looks at.
const HEALTH_WINDOW: Duration = Duration::from_secs(5 * 60);
/// TTFT p95 (of the window's calls that have a `ttft_ms`) above which
/// streaming counts as degraded.
pub const DEGRADED_TTFT_P95_MS: f64 = 2000.0;
/// Share of the window's streamed calls (a `stream_health` whose verdict is
/// not `too_short`) judged anything but `smooth` above which streaming counts
/// as degraded.
pub const DEGRADED_NOT_SMOOTH_SHARE: f64 = 0.10;
/// Share of the window's calls whose `outcome` is not `completed` above which
/// streaming counts as degraded.
pub const DEGRADED_ERROR_SHARE: f64 = 0.10;
/// The `stream_health.verdict` values, in the order reports list them.
pub const VERDICTS: [&str; 5] = ["smooth", "bursty", "buffered", "stalled", "too_short"];

/// A running collector. It stops when dropped.
pub struct Collector {
    pub addr: SocketAddr,
    state: Arc<State>,
    runtime: Option<Runtime>,
}

impl Collector {
    /// Starts on a free port of 127.0.0.1.
    pub fn start() -> io::Result<Collector> {
        Collector::start_on(SocketAddr::from(([127, 0, 0, 1], 0)))
    }

    pub fn start_on(addr: SocketAddr) -> io::Result<Collector> {
        let listener = StdTcpListener::bind(addr)?;
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("collector")
            .enable_all()
            .build()?;
        let listener = {
            let _guard = runtime.enter();
            TcpListener::from_std(listener)?
        };
        let state = Arc::new(State::default());
        runtime.spawn(accept_loop(listener, Arc::clone(&state)));
        Ok(Collector {
            addr,
            state,
            runtime: Some(runtime),
        })
    }

    /// Every summary received (at most the last 10 000), oldest first.
    pub fn calls(&self) -> Vec<Value> {
        self.state
            .lock_calls()
            .iter()
            .map(|call| call.summary.clone())
            .collect()
    }

    /// Returns as soon as at least `n` summaries have been received, or what
    /// there is at `timeout`.
    pub fn wait_for_calls(&self, n: usize, timeout: Duration) -> Vec<Value> {
        let deadline = Instant::now() + timeout;
        let mut calls = self.state.lock_calls();
        while calls.len() < n {
            let Some(left) = deadline.checked_duration_since(Instant::now()) else {
                break;
            };
            calls = self
                .state
                .arrived
                .wait_timeout(calls, left)
                .unwrap_or_else(|poisoned| poisoned.into_inner())
                .0;
        }
        calls.iter().map(|call| call.summary.clone()).collect()
    }

    /// `POST /v1/calls` requests received, whatever they were answered.
    pub fn posts(&self) -> usize {
        self.state.posts.load(Ordering::SeqCst)
    }

    /// Summaries received again (a `summary_id` already stored) and dropped.
    /// Export is at-least-once: a POST that timed out at the filter may have
    /// arrived, and its retry repeats it.
    pub fn duplicates(&self) -> usize {
        self.state.duplicates.load(Ordering::SeqCst)
    }

    /// How long to wait, after storing a batch, before answering it (default
    /// none): a slow collector.
    pub fn set_delay(&self, delay: Duration) {
        let ms = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX);
        self.state.delay_ms.store(ms, Ordering::SeqCst);
    }

    /// The status to answer `POST /v1/calls` with (default 200). With a
    /// status outside 2xx the summaries are not stored.
    pub fn set_status(&self, status: u16) {
        self.state.status.store(status, Ordering::SeqCst);
    }

    /// The bodies of the `POST /v1/logs` (OTLP) requests received, oldest first.
    pub fn otlp_posts(&self) -> Vec<Value> {
        self.state
            .otlp
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .iter()
            .cloned()
            .collect()
    }
}

impl Drop for Collector {
    fn drop(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_timeout(Duration::from_secs(1));
        }
    }
}

struct ReceivedCall {
    at: Instant,
    summary: Value,
}

struct State {
    calls: Mutex<VecDeque<ReceivedCall>>,
    arrived: Condvar,
    seen: Mutex<SeenIds>,
    posts: AtomicUsize,
    duplicates: AtomicUsize,
    status: AtomicU16,
    delay_ms: AtomicU64,
    otlp: Mutex<VecDeque<Value>>,
}

impl Default for State {
    fn default() -> State {
        State {
            calls: Mutex::default(),
            arrived: Condvar::new(),
            seen: Mutex::default(),
            posts: AtomicUsize::new(0),
            duplicates: AtomicUsize::new(0),
            status: AtomicU16::new(200),
            delay_ms: AtomicU64::new(0),
            otlp: Mutex::default(),
        }
    }
}

/// The last [`MAX_SEEN_IDS`] `summary_id`s stored.
#[derive(Default)]
struct SeenIds {
    ids: HashSet<String>,
    order: VecDeque<String>,
}

impl SeenIds {
    /// False when `id` was seen already.
    fn insert(&mut self, id: &str) -> bool {
        if self.ids.contains(id) {
            return false;
        }
        self.ids.insert(id.to_string());
        self.order.push_back(id.to_string());
        while self.order.len() > MAX_SEEN_IDS {
            if let Some(old) = self.order.pop_front() {
                self.ids.remove(&old);
            }
        }
        true
    }
}

impl State {
    fn lock_calls(&self) -> MutexGuard<'_, VecDeque<ReceivedCall>> {
        self.calls
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// [`streaming_health`] of the calls received in the last 5 minutes.
    fn recent_health(&self) -> Value {
        let now = Instant::now();
        let calls = self.lock_calls();
        let recent: Vec<&Value> = calls
            .iter()
            .filter(|call| now.duration_since(call.at) <= HEALTH_WINDOW)
            .map(|call| &call.summary)
            .collect();
        streaming_health(&recent)
    }

    /// Stores the summaries not seen before (by `summary_id`; one without
    /// an id is always stored) and returns how many were duplicates.
    fn store(&self, summaries: Vec<Value>) -> usize {
        let at = Instant::now();
        let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        let mut calls = self.lock_calls();
        let mut duplicates = 0;
        for summary in summaries {
            let new = summary["summary_id"]
                .as_str()
                .is_none_or(|id| seen.insert(id));
            if new {
                calls.push_back(ReceivedCall { at, summary });
            } else {
                duplicates += 1;
            }
        }
        drop(seen);
        self.duplicates.fetch_add(duplicates, Ordering::SeqCst);
        while calls.len() > MAX_CALLS {
            calls.pop_front();
        }
        drop(calls);
        self.arrived.notify_all();
        duplicates
    }
}

async fn accept_loop(listener: TcpListener, state: Arc<State>) {
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(_) => {
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let state = Arc::clone(&state);
        tokio::spawn(async move {
            let service = service_fn(move |request| handle(request, Arc::clone(&state)));
            let _ = http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

fn json_response(status: u16, body: &Value) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body.to_string())));
    *response.status_mut() =
        StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    response.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("application/json"),
    );
    response
}

fn bad_request(message: String) -> Response<Full<Bytes>> {
    json_response(400, &json!({ "error": message }))
}

async fn handle(
    request: Request<Incoming>,
    state: Arc<State>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let (parts, body) = request.into_parts();
    let path = parts.uri.path();
    let response = match (&parts.method, path) {
        (&Method::POST, "/v1/calls") => {
            state.posts.fetch_add(1, Ordering::SeqCst);
            let response = match body.collect().await {
                Ok(collected) => receive_calls(&state, &collected.to_bytes()),
                Err(err) => bad_request(format!("could not read the body: {err}")),
            };
            let delay = state.delay_ms.load(Ordering::SeqCst);
            if delay > 0 {
                tokio::time::sleep(Duration::from_millis(delay)).await;
            }
            response
        }
        (&Method::POST, "/v1/logs") => match body.collect().await {
            Ok(collected) => match serde_json::from_slice::<Value>(&collected.to_bytes()) {
                Ok(value) => {
                    let mut otlp = state
                        .otlp
                        .lock()
                        .unwrap_or_else(|poisoned| poisoned.into_inner());
                    otlp.push_back(value);
                    while otlp.len() > MAX_OTLP_POSTS {
                        otlp.pop_front();
                    }
                    json_response(200, &json!({}))
                }
                Err(err) => bad_request(format!("body is not JSON: {err}")),
            },
            Err(err) => bad_request(format!("could not read the body: {err}")),
        },
        (&Method::GET, "/calls") => match CallsQuery::parse(parts.uri.query()) {
            Ok(query) => {
                let calls = state.lock_calls();
                let latest = latest_matching(&calls, &query, query.limit);
                json_response(200, &json!({ "calls": latest }))
            }
            Err(message) => bad_request(message),
        },
        (&Method::GET, "/health/streaming") => json_response(200, &state.recent_health()),
        (&Method::GET, "/stats") => json_response(
            200,
            &json!({
                "calls": state.lock_calls().len(),
                "posts": state.posts.load(Ordering::SeqCst),
                "duplicates": state.duplicates.load(Ordering::SeqCst),
            }),
        ),
        (&Method::GET, "/") => list_page(&state, parts.uri.query()),
        (&Method::GET, _) if path.starts_with("/calls/") => {
            let id = percent_decode(path.trim_start_matches("/calls/"));
            let calls = state.lock_calls();
            match calls
                .iter()
                .rev()
                .find(|call| call.summary["id"] == id.as_str())
            {
                Some(call) => html_response(200, viewer::call_page(&call.summary)),
                None => html_response(404, viewer::not_found_page(&id)),
            }
        }
        _ => json_response(
            404,
            &json!({ "error": format!("no route for {} {path}", parts.method) }),
        ),
    };
    Ok(response)
}

/// An HTML page; the policy forbids scripts and anything fetched, should
/// markup ever slip through unescaped.
fn html_response(status: u16, body: String) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() =
        StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let headers = response.headers_mut();
    headers.insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("text/html; charset=utf-8"),
    );
    headers.insert(
        hyper::header::CONTENT_SECURITY_POLICY,
        hyper::header::HeaderValue::from_static(
            "default-src 'none'; style-src 'unsafe-inline'; img-src data:",
        ),
    );
    headers.insert(
        hyper::header::X_CONTENT_TYPE_OPTIONS,
        hyper::header::HeaderValue::from_static("nosniff"),
    );
    response
}

/// `GET /[?verdict=V][&limit=N]`: at most [`viewer::MAX_ROWS`] calls.
fn list_page(state: &State, query: Option<&str>) -> Response<Full<Bytes>> {
    let query = match CallsQuery::parse_with(query, viewer::MAX_ROWS) {
        Ok(query) => query,
        Err(message) => return html_response(400, viewer::error_page(&message)),
    };
    let health = state.recent_health();
    let calls = state.lock_calls();
    let latest = latest_matching(&calls, &query, query.limit.min(viewer::MAX_ROWS));
    let verdict = query.verdict.as_ref().map(|v| v.as_deref());
    html_response(200, viewer::list_page(&latest, &health, verdict))
}

/// The last `limit` summaries that match `query`, oldest first.
fn latest_matching<'a>(
    calls: &'a VecDeque<ReceivedCall>,
    query: &CallsQuery,
    limit: usize,
) -> Vec<&'a Value> {
    let matching: Vec<&Value> = calls
        .iter()
        .map(|call| &call.summary)
        .filter(|summary| query.matches(summary))
        .collect();
    let skip = matching.len().saturating_sub(limit);
    matching.into_iter().skip(skip).collect()
}

fn receive_calls(state: &State, body: &[u8]) -> Response<Full<Bytes>> {
    let summaries = match serde_json::from_slice::<Value>(body) {
        Ok(Value::Array(items)) => items,
        Ok(object @ Value::Object(_)) => vec![object],
        Ok(other) => {
            return bad_request(format!(
                "expected a JSON array of summaries or one summary object, got {other}"
            ))
        }
        Err(err) => return bad_request(format!("body is not JSON: {err}")),
    };
    if let Some(index) = summaries.iter().position(|summary| !summary.is_object()) {
        return bad_request(format!("summary {index} is not a JSON object"));
    }
    let status = state.status.load(Ordering::SeqCst);
    if !(200..300).contains(&status) {
        return json_response(
            status,
            &json!({ "error": format!("collector set to answer {status}") }),
        );
    }
    let received = summaries.len();
    let duplicates = state.store(summaries);
    json_response(
        200,
        &json!({ "accepted": received - duplicates, "duplicates": duplicates }),
    )
}

/// The query of `GET /calls`; parameters combine (a call must match all).
///
/// - `limit=N`: the latest N matching calls (default 100);
/// - `verdict=V`: calls whose `stream_health.verdict` is V, one of
///   [`VERDICTS`]; `verdict=none` selects the calls without a
///   `stream_health` (not event streams, or summaries from before schema 2);
///   any other value is a 400 naming the allowed ones;
/// - `id=X`: calls whose `id` (the request's `x-request-id`) is X
///   (percent-decoded), as `streamtap-probe` looks its call up.
///
/// An unknown parameter is a 400 too, so that a typo does not silently
/// return every call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallsQuery {
    pub limit: usize,
    /// `Some(None)`: `verdict=none`.
    pub verdict: Option<Option<String>>,
    pub id: Option<String>,
}

impl CallsQuery {
    pub fn parse(query: Option<&str>) -> Result<CallsQuery, String> {
        CallsQuery::parse_with(query, DEFAULT_CALLS_LIMIT)
    }

    /// As [`CallsQuery::parse`], `limit` defaulting to `default_limit`.
    pub fn parse_with(query: Option<&str>, default_limit: usize) -> Result<CallsQuery, String> {
        let mut parsed = CallsQuery {
            limit: default_limit,
            verdict: None,
            id: None,
        };
        for pair in query.unwrap_or_default().split('&') {
            if pair.is_empty() {
                continue;
            }
            let (key, raw) = pair.split_once('=').unwrap_or((pair, ""));
            let value = percent_decode(raw);
            match key {
                "limit" => {
                    parsed.limit = value
                        .parse()
                        .map_err(|_| format!("limit: {value:?} is not a number"))?;
                }
                "verdict" if value == "none" => parsed.verdict = Some(None),
                "verdict" if VERDICTS.contains(&value.as_str()) => {
                    parsed.verdict = Some(Some(value));
                }
                "verdict" => {
                    return Err(format!(
                        "verdict: {value:?} is not one of {}, none",
                        VERDICTS.join(", ")
                    ))
                }
                "id" => parsed.id = Some(value),
                other => {
                    return Err(format!(
                        "unknown parameter {other:?}: /calls takes limit, verdict and id"
                    ))
                }
            }
        }
        Ok(parsed)
    }

    pub fn matches(&self, summary: &Value) -> bool {
        let verdict_ok = match &self.verdict {
            None => true,
            Some(wanted) => verdict_of(summary) == wanted.as_deref(),
        };
        let id_ok = match &self.id {
            None => true,
            Some(id) => summary["id"].as_str() == Some(id.as_str()),
        };
        verdict_ok && id_ok
    }
}

/// A summary's `stream_health.verdict`; None without a `stream_health`.
fn verdict_of(summary: &Value) -> Option<&str> {
    summary["stream_health"]["verdict"].as_str()
}

/// `%XX` escapes and `+` (a space) decoded; a malformed escape is kept as is.
fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&byte) = bytes.get(i) {
        let escaped = (byte == b'%')
            .then(|| bytes.get(i + 1..i + 3))
            .flatten()
            .and_then(|hex| std::str::from_utf8(hex).ok())
            .and_then(|hex| u8::from_str_radix(hex, 16).ok());
        match (byte, escaped) {
            (_, Some(decoded)) => {
                out.push(decoded);
                i += 3;
            }
            (b'+', None) => {
                out.push(b' ');
                i += 1;
            }
            (other, None) => {
                out.push(other);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Streaming health over `recent` summaries (those of the last 5 minutes).
///
/// - `idle`: no calls;
/// - `degraded` when any of these trips, each named by a plain sentence in
///   `reasons`:
///   - the TTFT p95 of the calls that have a `ttft_ms` is above
///     [`DEGRADED_TTFT_P95_MS`];
///   - more than [`DEGRADED_NOT_SMOOTH_SHARE`] of the streamed calls have a
///     verdict other than `smooth`;
///   - more than [`DEGRADED_ERROR_SHARE`] of the calls have an `outcome`
///     other than `completed` (a missing outcome counts as not completed);
/// - `healthy` otherwise (`reasons` is then empty).
///
/// Streamed calls (`streamed_calls_last_5m`) are those with a
/// `stream_health` whose verdict is not `too_short`: a stream too short to
/// judge neither helps nor hurts. `verdicts` counts every verdict seen
/// (`too_short` included), all five keys always present.
/// `ttft_p50_ms`/`ttft_p95_ms` are nearest-rank percentiles, `null` when
/// no call has a `ttft_ms` (p50 is reported, not judged);
/// `not_smooth_share` is `null` without streamed calls.
pub fn streaming_health(recent: &[&Value]) -> Value {
    let calls = recent.len();

    let mut not_completed: Vec<&str> = Vec::new();
    for call in recent {
        match call["outcome"].as_str() {
            Some("completed") => {}
            Some(outcome) => not_completed.push(outcome),
            None => not_completed.push("no outcome"),
        }
    }
    let errors = not_completed.len();

    let mut ttfts: Vec<f64> = recent
        .iter()
        .filter_map(|call| call["ttft_ms"].as_f64())
        .collect();
    ttfts.sort_by(f64::total_cmp);
    let ttft_p50_ms = nearest_rank(&ttfts, 0.50);
    let ttft_p95_ms = nearest_rank(&ttfts, 0.95);

    let mut verdicts = serde_json::Map::new();
    for verdict in VERDICTS {
        verdicts.insert(verdict.to_string(), json!(0));
    }
    let mut not_smooth: Vec<&str> = Vec::new();
    let mut streamed = 0usize;
    for verdict in recent.iter().filter_map(|call| verdict_of(call)) {
        let count = verdicts.entry(verdict.to_string()).or_insert(json!(0));
        *count = json!(count.as_u64().unwrap_or(0) + 1);
        if verdict != "too_short" {
            streamed += 1;
            if verdict != "smooth" {
                not_smooth.push(verdict);
            }
        }
    }
    let not_smooth_share = (streamed > 0).then(|| not_smooth.len() as f64 / streamed as f64);

    let mut reasons: Vec<String> = Vec::new();
    if let Some(p95) = ttft_p95_ms.filter(|p95| *p95 > DEGRADED_TTFT_P95_MS) {
        reasons.push(format!(
            "ttft p95 {} ms > {} ms",
            fmt_ms(p95),
            fmt_ms(DEGRADED_TTFT_P95_MS)
        ));
    }
    if not_smooth_share.is_some_and(|share| share > DEGRADED_NOT_SMOOTH_SHARE) {
        reasons.push(format!(
            "{} of {streamed} streams not smooth ({})",
            not_smooth.len(),
            tally(&not_smooth)
        ));
    }
    if calls > 0 && errors as f64 > DEGRADED_ERROR_SHARE * calls as f64 {
        reasons.push(format!(
            "{errors} of {calls} calls not completed ({})",
            tally(&not_completed)
        ));
    }
    let status = if calls == 0 {
        "idle"
    } else if reasons.is_empty() {
        "healthy"
    } else {
        "degraded"
    };
    json!({
        "status": status,
        "reasons": reasons,
        "calls_last_5m": calls,
        "streamed_calls_last_5m": streamed,
        "ttft_p50_ms": ttft_p50_ms,
        "ttft_p95_ms": ttft_p95_ms,
        "verdicts": verdicts,
        "not_smooth_share": not_smooth_share,
        "error_calls_last_5m": errors,
    })
}

/// The nearest-rank percentile `p` (0..1) of `sorted`; None when empty.
fn nearest_rank(sorted: &[f64], p: f64) -> Option<f64> {
    let rank = (p * sorted.len() as f64).ceil() as usize;
    sorted.get(rank.clamp(1, sorted.len().max(1)) - 1).copied()
}

/// `buffered 2, stalled 1`: each name with its count, most frequent first
/// (ties in [`VERDICTS`] order, then by name).
fn tally(names: &[&str]) -> String {
    let mut counts: Vec<(&str, usize)> = Vec::new();
    for name in names {
        match counts.iter_mut().find(|(n, _)| n == name) {
            Some((_, count)) => *count += 1,
            None => counts.push((name, 1)),
        }
    }
    let order = |name: &str| {
        VERDICTS
            .iter()
            .position(|v| *v == name)
            .unwrap_or(usize::MAX)
    };
    counts.sort_by(|a, b| {
        b.1.cmp(&a.1)
            .then(order(a.0).cmp(&order(b.0)))
            .then(a.0.cmp(b.0))
    });
    counts
        .iter()
        .map(|(name, count)| format!("{name} {count}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Milliseconds with at most one decimal: `3100`, `2000.5`.
fn fmt_ms(ms: f64) -> String {
    let text = format!("{ms:.1}");
    text.strip_suffix(".0").map(str::to_string).unwrap_or(text)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::client;

    fn post_calls(collector: &Collector, body: &str) -> (u16, Value) {
        let got = client::post(collector.addr, "/v1/calls", &[], body.as_bytes()).unwrap();
        (got.status, serde_json::from_slice(&got.body).unwrap())
    }

    fn get_json(collector: &Collector, path: &str) -> (u16, Value) {
        let (status, body) = client::get(collector.addr, path).unwrap();
        (status, serde_json::from_str(&body).unwrap())
    }

    fn summary(id: u32, outcome: &str, ttft_ms: f64) -> Value {
        json!({"id": format!("req-{id}"), "model": "gpt-4o-mini", "stream": true, "outcome": outcome, "ttft_ms": ttft_ms})
    }

    #[test]
    fn a_summary_id_seen_before_is_dropped_and_counted() {
        let collector = Collector::start().unwrap();
        let with_id = |id: &str, n: u32| json!({"summary_id": id, "id": format!("req-{n}")});
        let first = json!([with_id("a-1", 1), with_id("a-2", 2)]);
        assert_eq!(
            post_calls(&collector, &first.to_string()),
            (200, json!({"accepted": 2, "duplicates": 0}))
        );
        // A retry of a batch that had arrived, plus one new summary, and two
        // without an id (older builds): those are always kept.
        let retry = json!([with_id("a-2", 2), with_id("a-3", 3), {"id": "x"}, {"id": "x"}]);
        assert_eq!(
            post_calls(&collector, &retry.to_string()),
            (200, json!({"accepted": 3, "duplicates": 1}))
        );
        assert_eq!(collector.duplicates(), 1);
        assert_eq!(collector.calls().len(), 5);
        assert_eq!(
            get_json(&collector, "/stats").1,
            json!({"calls": 5, "posts": 2, "duplicates": 1})
        );
    }

    #[test]
    fn stores_summaries_and_serves_them_newest_last() {
        let collector = Collector::start().unwrap();
        let batch = json!([
            summary(1, "completed", 100.0),
            summary(2, "completed", 120.0)
        ]);
        assert_eq!(
            post_calls(&collector, &batch.to_string()),
            (200, json!({"accepted": 2, "duplicates": 0}))
        );
        let single = summary(3, "completed", 80.0);
        assert_eq!(
            post_calls(&collector, &single.to_string()),
            (200, json!({"accepted": 1, "duplicates": 0}))
        );

        let calls = collector.wait_for_calls(3, Duration::from_secs(5));
        let ids: Vec<&str> = calls.iter().map(|c| c["id"].as_str().unwrap()).collect();
        assert_eq!(ids, ["req-1", "req-2", "req-3"]);
        assert_eq!(collector.posts(), 2);

        let (status, latest) = get_json(&collector, "/calls?limit=2");
        assert_eq!(status, 200);
        assert_eq!(
            latest["calls"],
            json!([summary(2, "completed", 120.0), single])
        );
        assert_eq!(
            get_json(&collector, "/calls").1["calls"]
                .as_array()
                .unwrap()
                .len(),
            3
        );

        // Not enough calls: returns what there is once the timeout passes.
        assert_eq!(
            collector.wait_for_calls(4, Duration::from_millis(20)).len(),
            3
        );
    }

    #[test]
    fn refuses_malformed_bodies_and_unknown_paths() {
        let collector = Collector::start().unwrap();
        for bad in ["not json", "42", "[1, 2]"] {
            let (status, body) = post_calls(&collector, bad);
            assert_eq!(status, 400, "{bad}");
            assert!(body["error"].is_string(), "{bad}: {body}");
        }
        assert_eq!(get_json(&collector, "/nowhere").0, 404);
        assert_eq!(get_json(&collector, "/calls?limit=x").0, 400);
        assert!(collector.calls().is_empty());
        assert_eq!(collector.posts(), 3);
    }

    #[test]
    fn a_configured_failure_status_stores_nothing() {
        let collector = Collector::start().unwrap();
        collector.set_status(503);
        let body = json!([summary(1, "completed", 10.0)]).to_string();
        assert_eq!(post_calls(&collector, &body).0, 503);
        assert!(collector.calls().is_empty());
        collector.set_status(200);
        assert_eq!(post_calls(&collector, &body).0, 200);
        assert_eq!(collector.calls().len(), 1);
        assert_eq!(collector.posts(), 2);
    }

    /// A streamed summary judged `verdict`.
    fn streamed(id: u32, verdict: &str, ttft_ms: f64) -> Value {
        let mut call = summary(id, "completed", ttft_ms);
        call["stream_health"] =
            json!({"verdict": verdict, "content_deltas": 40, "largest_burst": 1});
        call
    }

    #[test]
    fn calls_filter_by_verdict_and_id_with_limit() {
        let collector = Collector::start().unwrap();
        let batch = json!([
            streamed(1, "smooth", 100.0),
            streamed(2, "buffered", 100.0),
            streamed(3, "smooth", 100.0),
            summary(4, "completed", 100.0),
            streamed(5, "smooth", 100.0),
        ]);
        post_calls(&collector, &batch.to_string());
        let ids = |path: &str| -> Vec<String> {
            let (status, body) = get_json(&collector, path);
            assert_eq!(status, 200, "{path}: {body}");
            body["calls"]
                .as_array()
                .unwrap()
                .iter()
                .map(|c| c["id"].as_str().unwrap().to_string())
                .collect()
        };
        assert_eq!(ids("/calls?verdict=smooth"), ["req-1", "req-3", "req-5"]);
        assert_eq!(ids("/calls?verdict=smooth&limit=2"), ["req-3", "req-5"]);
        assert_eq!(ids("/calls?limit=1&verdict=buffered"), ["req-2"]);
        assert_eq!(ids("/calls?verdict=stalled"), Vec::<String>::new());
        assert_eq!(ids("/calls?verdict=none"), ["req-4"]);
        assert_eq!(ids("/calls?id=req-3"), ["req-3"]);
        assert_eq!(ids("/calls?id=req%2D3&verdict=smooth"), ["req-3"]);
        assert_eq!(
            ids("/calls?id=req-3&verdict=buffered"),
            Vec::<String>::new()
        );
        assert_eq!(ids("/calls?id=nobody"), Vec::<String>::new());

        let (status, body) = get_json(&collector, "/calls?verdict=wobbly");
        assert_eq!(status, 400);
        let message = body["error"].as_str().unwrap();
        for allowed in VERDICTS.iter().chain(&["none"]) {
            assert!(message.contains(allowed), "{message}");
        }
        assert_eq!(get_json(&collector, "/calls?verdcit=smooth").0, 400);
    }

    #[test]
    fn percent_decoding() {
        assert_eq!(percent_decode("a%20b+c%2f"), "a b c/");
        assert_eq!(percent_decode("100%"), "100%");
        assert_eq!(percent_decode("%zz"), "%zz");
    }

    #[test]
    fn health_endpoint_reports_recent_calls() {
        let collector = Collector::start().unwrap();
        assert_eq!(
            get_json(&collector, "/health/streaming").1["status"],
            "idle"
        );
        let body = json!([
            streamed(1, "smooth", 100.0),
            streamed(2, "smooth", 300.0),
            streamed(3, "too_short", 200.0)
        ])
        .to_string();
        post_calls(&collector, &body);
        let (status, health) = get_json(&collector, "/health/streaming");
        assert_eq!(status, 200);
        assert_eq!(
            health,
            json!({
                "status": "healthy",
                "reasons": [],
                "calls_last_5m": 3,
                "streamed_calls_last_5m": 2,
                "ttft_p50_ms": 200.0,
                "ttft_p95_ms": 300.0,
                "verdicts": {"smooth": 2, "bursty": 0, "buffered": 0, "stalled": 0, "too_short": 1},
                "not_smooth_share": 0.0,
                "error_calls_last_5m": 0
            })
        );
    }

    fn health(calls: &[Value]) -> Value {
        let refs: Vec<&Value> = calls.iter().collect();
        streaming_health(&refs)
    }

    #[test]
    fn ttft_p95_threshold() {
        // 20 calls: p95 is the 19th smallest. 19 fast, one slow outlier: healthy.
        let mut calls: Vec<Value> = (0..20).map(|i| streamed(i, "smooth", 100.0)).collect();
        calls[0] = streamed(0, "smooth", 9000.0);
        let got = health(&calls);
        assert_eq!(
            (got["status"].as_str(), got["ttft_p95_ms"].as_f64()),
            (Some("healthy"), Some(100.0))
        );
        // Two slow ones: the p95 is slow.
        calls[1] = streamed(1, "smooth", 3100.0);
        let got = health(&calls);
        assert_eq!(got["status"], "degraded");
        assert_eq!(got["ttft_p95_ms"], 3100.0);
        assert_eq!(got["ttft_p50_ms"], 100.0);
        assert_eq!(got["reasons"], json!(["ttft p95 3100 ms > 2000 ms"]));

        // Exactly at the threshold is within bounds, just above is not.
        assert_eq!(
            health(&[streamed(1, "smooth", 2000.0)])["status"],
            "healthy"
        );
        let got = health(&[streamed(1, "smooth", 2000.5)]);
        assert_eq!(got["reasons"], json!(["ttft p95 2000.5 ms > 2000 ms"]));

        let no_ttft =
            health(&[json!({"outcome": "completed", "stream": false, "stream_health": null})]);
        assert_eq!(no_ttft["status"], "healthy");
        assert_eq!(no_ttft["ttft_p50_ms"], Value::Null);
        assert_eq!(no_ttft["ttft_p95_ms"], Value::Null);
        assert_eq!(no_ttft["not_smooth_share"], Value::Null);
        assert_eq!(no_ttft["streamed_calls_last_5m"], 0);
        assert_eq!(health(&[])["status"], "idle");
        assert_eq!(health(&[])["reasons"], json!([]));
    }

    #[test]
    fn not_smooth_share_threshold() {
        // One stream in ten not smooth is within bounds.
        let mut calls: Vec<Value> = (0..10).map(|i| streamed(i, "smooth", 100.0)).collect();
        calls[0] = streamed(0, "bursty", 100.0);
        let got = health(&calls);
        assert_eq!(got["status"], "healthy", "{got}");
        assert_eq!(got["not_smooth_share"], 0.1);
        // Three is not; too_short ones do not count either way.
        calls[1] = streamed(1, "buffered", 100.0);
        calls[2] = streamed(2, "buffered", 100.0);
        calls[0] = streamed(0, "stalled", 100.0);
        calls.push(streamed(10, "too_short", 100.0));
        calls.push(streamed(11, "too_short", 100.0));
        let got = health(&calls);
        assert_eq!(got["status"], "degraded");
        assert_eq!(got["streamed_calls_last_5m"], 10);
        assert_eq!(got["calls_last_5m"], 12);
        assert_eq!(
            got["reasons"],
            json!(["3 of 10 streams not smooth (buffered 2, stalled 1)"])
        );
        assert_eq!(
            got["verdicts"],
            json!({"smooth": 7, "bursty": 0, "buffered": 2, "stalled": 1, "too_short": 2})
        );
        assert_eq!(got["not_smooth_share"], 0.3);

        // Only too_short streams: nothing to judge.
        let got = health(&[streamed(1, "too_short", 100.0)]);
        assert_eq!(
            (got["status"].as_str(), &got["not_smooth_share"]),
            (Some("healthy"), &Value::Null)
        );
    }

    #[test]
    fn error_share_threshold() {
        let healthy: Vec<Value> = (0..10).map(|i| summary(i, "completed", 100.0)).collect();
        assert_eq!(health(&healthy)["status"], "healthy");
        // One failure in ten is within bounds; two is not.
        let mut calls = healthy.clone();
        calls[0] = summary(0, "upstream_reset", 10.0);
        assert_eq!(health(&calls)["status"], "healthy");
        assert_eq!(health(&calls)["error_calls_last_5m"], 1);
        calls[1] = json!({"id": "no-outcome"});
        let got = health(&calls);
        assert_eq!(got["status"], "degraded");
        assert_eq!(got["error_calls_last_5m"], 2);
        assert_eq!(
            got["reasons"],
            json!(["2 of 10 calls not completed (no outcome 1, upstream_reset 1)"])
        );

        // Every threshold that trips is named.
        let mut calls: Vec<Value> = (0..4).map(|i| streamed(i, "buffered", 2500.0)).collect();
        calls[0]["outcome"] = json!("client_cancelled");
        assert_eq!(
            health(&calls)["reasons"],
            json!([
                "ttft p95 2500 ms > 2000 ms",
                "4 of 4 streams not smooth (buffered 4)",
                "1 of 4 calls not completed (client_cancelled 1)"
            ])
        );
    }

    #[test]
    fn serves_the_pages() {
        let collector = Collector::start().unwrap();
        let mut first = streamed(1, "smooth", 100.0);
        first["content"] = json!("old answer");
        let mut evil = streamed(2, "buffered", 100.0);
        evil["id"] = json!("a b/<script>");
        evil["content"] = json!("<script>alert(1)</script>");
        let mut newer = streamed(1, "smooth", 100.0);
        newer["content"] = json!("new answer");
        let body = json!([first, evil, newer]).to_string();
        post_calls(&collector, &body);
        let get = |path: &str| client::get(collector.addr, path).unwrap();

        let (status, html) = get("/");
        assert_eq!(status, 200);
        assert!(html.starts_with("<!DOCTYPE html>"), "{html}");
        assert!(html.contains("<section id=\"health\">"));
        assert_eq!(html.matches("<tr class=\"call\"").count(), 3);
        assert!(!html.contains("<script>"));
        let (status, html) = get("/?verdict=buffered");
        assert_eq!(status, 200);
        assert_eq!(html.matches("<tr class=\"call\"").count(), 1);
        assert!(html.contains("/calls/a%20b%2F%3Cscript%3E"), "{html}");
        assert_eq!(get("/?verdict=wobbly").0, 400);

        // Percent-decoded; the newest of the summaries sharing an id.
        let (status, html) = get("/calls/req-1");
        assert_eq!(status, 200);
        assert!(html.contains("new answer") && !html.contains("old answer"));
        let (status, html) = get("/calls/a%20b%2F%3Cscript%3E");
        assert_eq!(status, 200, "{html}");
        assert!(html.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
        assert!(!html.contains("<script>"));
        let (status, html) = get("/calls/nobody%3Cb%3E");
        assert_eq!(status, 404);
        assert!(html.contains("No call nobody&lt;b&gt;"), "{html}");

        let got = client::post(collector.addr, "/", &[], b"").unwrap();
        assert_eq!(got.status, 404);
        // The JSON API is unchanged.
        assert_eq!(
            get_json(&collector, "/calls").1["calls"]
                .as_array()
                .unwrap()
                .len(),
            3
        );
    }

    #[test]
    fn pages_send_a_no_script_policy() {
        let collector = Collector::start().unwrap();
        let mut socket = std::net::TcpStream::connect(collector.addr).unwrap();
        std::io::Write::write_all(
            &mut socket,
            b"GET / HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n",
        )
        .unwrap();
        let mut response = String::new();
        std::io::Read::read_to_string(&mut socket, &mut response).unwrap();
        let head = response.split("\r\n\r\n").next().unwrap().to_lowercase();
        assert!(head.starts_with("http/1.1 200"), "{head}");
        assert!(
            head.contains("content-type: text/html; charset=utf-8"),
            "{head}"
        );
        assert!(
            head.contains("content-security-policy: default-src 'none';"),
            "{head}"
        );
    }

    #[test]
    fn keeps_otlp_posts() {
        let collector = Collector::start().unwrap();
        let logs = json!({"resourceLogs": []});
        let got =
            client::post(collector.addr, "/v1/logs", &[], logs.to_string().as_bytes()).unwrap();
        assert_eq!(got.status, 200);
        assert_eq!(collector.otlp_posts(), [logs]);
    }
}
