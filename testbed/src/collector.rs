//! Summary collector: receives the call summaries streamtap exports.
//!
//! | request | answer |
//! |---|---|
//! | `POST /v1/calls` with a JSON array of summaries (or one object) | `{"accepted":n}`, or the status set by [`Collector::set_status`] |
//! | `POST /v1/logs` (OTLP/HTTP JSON) | `{}`; the whole body is kept, see [`Collector::otlp_posts`] |
//! | `GET /calls[?limit=N]` | `{"calls":[...]}`, the latest N (default 100), newest last |
//! | `GET /health/streaming` | see [`streaming_health`] |

use std::collections::VecDeque;
use std::convert::Infallible;
use std::io;
use std::net::{SocketAddr, TcpListener as StdTcpListener};
use std::sync::atomic::{AtomicU16, AtomicUsize, Ordering};
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

/// Summaries kept; the oldest go first.
const MAX_CALLS: usize = 10_000;
/// OTLP request bodies kept.
const MAX_OTLP_POSTS: usize = 1_000;
const DEFAULT_CALLS_LIMIT: usize = 100;
/// The window `/health/streaming` looks at.
const HEALTH_WINDOW: Duration = Duration::from_secs(5 * 60);
/// Average TTFT above which streaming counts as degraded.
const DEGRADED_AVG_TTFT_MS: f64 = 2000.0;
/// Share of calls not `completed` above which streaming counts as degraded.
const DEGRADED_ERROR_SHARE: f64 = 0.10;

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
    posts: AtomicUsize,
    status: AtomicU16,
    otlp: Mutex<VecDeque<Value>>,
}

impl Default for State {
    fn default() -> State {
        State {
            calls: Mutex::default(),
            arrived: Condvar::new(),
            posts: AtomicUsize::new(0),
            status: AtomicU16::new(200),
            otlp: Mutex::default(),
        }
    }
}

impl State {
    fn lock_calls(&self) -> MutexGuard<'_, VecDeque<ReceivedCall>> {
        self.calls
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn store(&self, summaries: Vec<Value>) {
        let at = Instant::now();
        let mut calls = self.lock_calls();
        for summary in summaries {
            calls.push_back(ReceivedCall { at, summary });
        }
        while calls.len() > MAX_CALLS {
            calls.pop_front();
        }
        drop(calls);
        self.arrived.notify_all();
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
            match body.collect().await {
                Ok(collected) => receive_calls(&state, &collected.to_bytes()),
                Err(err) => bad_request(format!("could not read the body: {err}")),
            }
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
        (&Method::GET, "/calls") => match calls_limit(parts.uri.query()) {
            Ok(limit) => {
                let calls = state.lock_calls();
                let latest: Vec<&Value> = calls
                    .iter()
                    .skip(calls.len().saturating_sub(limit))
                    .map(|call| &call.summary)
                    .collect();
                json_response(200, &json!({ "calls": latest }))
            }
            Err(message) => bad_request(message),
        },
        (&Method::GET, "/health/streaming") => {
            let now = Instant::now();
            let calls = state.lock_calls();
            let recent: Vec<&Value> = calls
                .iter()
                .filter(|call| now.duration_since(call.at) <= HEALTH_WINDOW)
                .map(|call| &call.summary)
                .collect();
            json_response(200, &streaming_health(&recent))
        }
        _ => json_response(
            404,
            &json!({ "error": format!("no route for {} {path}", parts.method) }),
        ),
    };
    Ok(response)
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
    let accepted = summaries.len();
    state.store(summaries);
    json_response(200, &json!({ "accepted": accepted }))
}

fn calls_limit(query: Option<&str>) -> Result<usize, String> {
    let Some(query) = query else {
        return Ok(DEFAULT_CALLS_LIMIT);
    };
    for pair in query.split('&') {
        if let Some(value) = pair.strip_prefix("limit=") {
            return value
                .parse()
                .map_err(|_| format!("limit: {value:?} is not a number"));
        }
    }
    Ok(DEFAULT_CALLS_LIMIT)
}

/// Streaming health over `recent` summaries (those of the last 5 minutes):
///
/// - `idle`: no calls;
/// - `degraded`: the average `ttft_ms` of the calls that have one is above
///   2000 ms, or more than 10% of the calls have an `outcome` other than
///   `completed` (a missing outcome counts as not completed);
/// - `healthy` otherwise.
///
/// `streamed_calls_last_5m` counts calls with `"stream": true`; `avg_ttft_ms`
/// is `null` when no call has a `ttft_ms`.
pub fn streaming_health(recent: &[&Value]) -> Value {
    let calls = recent.len();
    let streamed = recent
        .iter()
        .filter(|call| call["stream"].as_bool() == Some(true))
        .count();
    let errors = recent
        .iter()
        .filter(|call| call["outcome"].as_str() != Some("completed"))
        .count();
    let ttfts: Vec<f64> = recent
        .iter()
        .filter_map(|call| call["ttft_ms"].as_f64())
        .collect();
    let avg_ttft_ms = (!ttfts.is_empty()).then(|| ttfts.iter().sum::<f64>() / ttfts.len() as f64);
    let status = if calls == 0 {
        "idle"
    } else if avg_ttft_ms.is_some_and(|avg| avg > DEGRADED_AVG_TTFT_MS)
        || errors as f64 > DEGRADED_ERROR_SHARE * calls as f64
    {
        "degraded"
    } else {
        "healthy"
    };
    json!({
        "status": status,
        "calls_last_5m": calls,
        "streamed_calls_last_5m": streamed,
        "avg_ttft_ms": avg_ttft_ms,
        "error_calls_last_5m": errors,
    })
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
    fn stores_summaries_and_serves_them_newest_last() {
        let collector = Collector::start().unwrap();
        let batch = json!([
            summary(1, "completed", 100.0),
            summary(2, "completed", 120.0)
        ]);
        assert_eq!(
            post_calls(&collector, &batch.to_string()),
            (200, json!({"accepted": 2}))
        );
        let single = summary(3, "completed", 80.0);
        assert_eq!(
            post_calls(&collector, &single.to_string()),
            (200, json!({"accepted": 1}))
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

    #[test]
    fn health_endpoint_reports_recent_calls() {
        let collector = Collector::start().unwrap();
        assert_eq!(
            get_json(&collector, "/health/streaming").1["status"],
            "idle"
        );
        let body = json!([
            summary(1, "completed", 100.0),
            summary(2, "completed", 300.0)
        ])
        .to_string();
        post_calls(&collector, &body);
        let (status, health) = get_json(&collector, "/health/streaming");
        assert_eq!(status, 200);
        assert_eq!(
            health,
            json!({"status": "healthy", "calls_last_5m": 2, "streamed_calls_last_5m": 2, "avg_ttft_ms": 200.0, "error_calls_last_5m": 0})
        );
    }

    #[test]
    fn health_thresholds() {
        let status = |calls: &[Value]| {
            let refs: Vec<&Value> = calls.iter().collect();
            streaming_health(&refs)["status"].clone()
        };
        let healthy: Vec<Value> = (0..10).map(|i| summary(i, "completed", 2000.0)).collect();
        assert_eq!(status(&healthy), "healthy");
        assert_eq!(status(&[summary(1, "completed", 2000.5)]), "degraded");

        // One failure in ten is within bounds; two is not.
        let mut calls = healthy.clone();
        calls[0] = summary(0, "upstream_reset", 10.0);
        assert_eq!(status(&calls), "healthy");
        calls[1] = json!({"id": "no-outcome"});
        assert_eq!(status(&calls), "degraded");

        let no_ttft = [json!({"outcome": "completed", "stream": false})];
        let refs: Vec<&Value> = no_ttft.iter().collect();
        let health = streaming_health(&refs);
        assert_eq!(health["avg_ttft_ms"], Value::Null);
        assert_eq!(health["streamed_calls_last_5m"], 0);
        assert_eq!(status(&[]), "idle");
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
