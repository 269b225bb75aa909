//! The proxy-wasm shell: the only code that talks to the host. Callbacks move
//! data between Envoy and the pure core and return at once; every response
//! body callback returns `Action::Continue`.
//!
//! Host calls go through `hostcalls` (which return `Result`) rather than the
//! SDK's trait helpers, which panic on an unexpected host status; a panic
//! would kill the VM for every stream on this worker.

use crate::call::tap::{self, CallTap, Finished, TapSettings};
use crate::config::{Config, ExportFormat};
use crate::export::queue::{BatchResult, ExportQueue, Response};
use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, BufferType, ContextType, LogLevel, MapType, MetricType};
use std::cell::RefCell;
use std::rc::Rc;
use std::time::{Duration, UNIX_EPOCH};

proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Info);
    proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> { Box::new(StreamtapRoot::default()) });
}}

/// Filter-state keys; Envoy stores them as `wasm.streamtap.summary` and
/// `wasm.streamtap.content`. One path segment each (the SDK joins segments
/// with NUL).
const SUMMARY_KEY: &str = "streamtap.summary";
const CONTENT_KEY: &str = "streamtap.content";
const MAX_TICK: Duration = Duration::from_millis(200);

/// Envoy stats defined by the filter; they appear as `wasmcustom.streamtap.*`.
#[derive(Debug, Clone, Copy, Default)]
struct Metrics {
    calls: Option<u32>,
    stream_events: Option<u32>,
    parse_errors: Option<u32>,
    summaries_exported: Option<u32>,
    export_failures: Option<u32>,
    summaries_dropped: Option<u32>,
    calls_not_completed: Option<u32>,
    ttft_ms: Option<u32>,
}

impl Metrics {
    fn define() -> Metrics {
        let counter = |name: &str| hostcalls::define_metric(MetricType::Counter, name).ok();
        Metrics {
            calls: counter("streamtap.calls"),
            stream_events: counter("streamtap.stream_events"),
            parse_errors: counter("streamtap.parse_errors"),
            summaries_exported: counter("streamtap.summaries_exported"),
            export_failures: counter("streamtap.export_failures"),
            summaries_dropped: counter("streamtap.summaries_dropped"),
            calls_not_completed: counter("streamtap.calls_not_completed"),
            ttft_ms: hostcalls::define_metric(MetricType::Histogram, "streamtap.ttft_ms").ok(),
        }
    }
}

fn add(metric: Option<u32>, by: u64) {
    if let (Some(id), true) = (metric, by > 0) {
        let _ = hostcalls::increment_metric(id, i64::try_from(by).unwrap_or(i64::MAX));
    }
}

fn now_us() -> u64 {
    hostcalls::get_current_time()
        .ok()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map_or(0, |d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
}

/// Shared by the root context and the worker's HTTP contexts (one thread per VM).
struct Shared {
    config: Config,
    metrics: Metrics,
    queue: Option<ExportQueue>,
    /// `capture.redact_fields`, shared with every call without copying.
    redact_fields: Rc<[String]>,
}

#[derive(Default)]
struct StreamtapRoot {
    shared: Option<Rc<RefCell<Shared>>>,
    in_flight_token: Option<u32>,
    shutting_down: bool,
    /// The last export failed; logged once, until it recovers.
    collector_failing: bool,
}

impl StreamtapRoot {
    /// Sends the next due batch, if any. At most one export is in flight.
    fn flush(&mut self, force: bool) {
        let Some(shared) = self.shared.clone() else {
            return;
        };
        let mut shared = shared.borrow_mut();
        let Some(collector) = shared.config.collector.clone() else {
            return;
        };
        let Some(queue) = shared.queue.as_mut() else {
            return;
        };
        let Some(batch) = queue.next_batch(now_us(), force) else {
            return;
        };
        let mut headers: Vec<(&str, &str)> = vec![
            (":method", "POST"),
            (":path", &collector.path),
            (":authority", &collector.authority),
            ("content-type", "application/json"),
        ];
        headers.extend(
            collector
                .headers
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str())),
        );
        let timeout = Duration::from_millis(collector.timeout_ms);
        match hostcalls::dispatch_http_call(
            &collector.cluster,
            headers,
            Some(&batch.body),
            vec![],
            timeout,
        ) {
            Ok(token) => self.in_flight_token = Some(token),
            Err(status) => {
                // The host refused the call (e.g. no such cluster): the same
                // backoff as a collector that does not answer.
                let result = queue.complete(
                    Response::Retry {
                        retry_after_us: None,
                    },
                    now_us(),
                );
                drop(shared);
                self.note_result(result, &format!("not sent: {status:?}"));
            }
        }
    }

    /// Counts a finished export attempt. Logs only when the collector's state
    /// changes, so a dead collector does not flood Envoy's log.
    fn note_result(&mut self, result: BatchResult, why: &str) {
        let Some(metrics) = self.shared.as_ref().map(|s| s.borrow().metrics) else {
            return;
        };
        match result {
            BatchResult::Exported(n) => {
                add(metrics.summaries_exported, n as u64);
                if self.collector_failing {
                    self.collector_failing = false;
                    log::info!("streamtap: the collector accepts summaries again");
                }
            }
            BatchResult::WillRetry { count, retry_in_us } => {
                add(metrics.export_failures, 1);
                if !self.collector_failing {
                    self.collector_failing = true;
                    log::warn!(
                        "streamtap: export of {count} summaries failed ({why}); retrying with backoff, first in {} ms; summaries are kept up to max_queue",
                        retry_in_us / 1000
                    );
                }
            }
            BatchResult::Rejected(n) => {
                add(metrics.export_failures, 1);
                add(metrics.summaries_dropped, n as u64);
                log::warn!(
                    "streamtap: the collector refused {n} summaries ({why}); they are dropped"
                );
            }
        }
    }
}

impl Context for StreamtapRoot {
    fn on_http_call_response(
        &mut self,
        token: u32,
        _headers: usize,
        _body: usize,
        _trailers: usize,
    ) {
        if self.in_flight_token != Some(token) {
            return;
        }
        self.in_flight_token = None;
        // A failed callout has no headers; get_http_call_response_header would
        // panic inside the SDK then, the map reads do not.
        let header = |name: &str| {
            hostcalls::get_map_value_bytes(MapType::HttpCallResponseHeaders, name)
                .ok()
                .flatten()
                .and_then(|v| String::from_utf8(v).ok())
        };
        let status = header(":status").and_then(|s| s.parse::<u16>().ok());
        let response = Response::from_status(status, header("retry-after").as_deref());
        let result = self.shared.as_ref().and_then(|shared| {
            shared
                .borrow_mut()
                .queue
                .as_mut()
                .map(|q| q.complete(response, now_us()))
        });
        if let Some(result) = result {
            let why = status.map_or_else(
                || "no answer: connect failure or timeout".to_string(),
                |s| format!("status {s}"),
            );
            self.note_result(result, &why);
        }
        // Keep draining a backlog without waiting for the next tick.
        self.flush(self.shutting_down);
        if self.shutting_down && self.in_flight_token.is_none() {
            let _ = hostcalls::done();
        }
    }

    fn on_done(&mut self) -> bool {
        self.shutting_down = true;
        self.flush(true);
        self.in_flight_token.is_none()
    }
}
impl RootContext for StreamtapRoot {
    fn on_configure(&mut self, _size: usize) -> bool {
        let bytes = hostcalls::get_buffer(BufferType::PluginConfiguration, 0, usize::MAX)
            .ok()
            .flatten()
            .unwrap_or_default();
        let config = match Config::parse(&bytes) {
            Ok(config) => config,
            Err(err) => {
                log::error!("{err}");
                return false;
            }
        };
        let metrics = match &self.shared {
            Some(shared) => shared.borrow().metrics,
            None => Metrics::define(),
        };
        let seed = now_us();
        let queue = config
            .collector
            .as_ref()
            .map(|c| ExportQueue::for_collector(c, seed));
        if let Some(collector) = &config.collector {
            let tick = Duration::from_millis(collector.flush_interval_ms).min(MAX_TICK);
            let _ = hostcalls::set_tick_period(tick);
        }
        let redact_fields = Rc::from(config.capture.redact_fields.clone());
        self.shared = Some(Rc::new(RefCell::new(Shared {
            config,
            metrics,
            queue,
            redact_fields,
        })));
        true
    }

    fn on_tick(&mut self) {
        self.flush(false);
    }

    fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        let shared = self.shared.clone()?;
        Some(Box::new(StreamtapHttp { shared, tap: None }))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

struct StreamtapHttp {
    shared: Rc<RefCell<Shared>>,
    /// None when the call is not sampled.
    tap: Option<CallTap>,
}

fn request_header(name: &str) -> Option<Vec<u8>> {
    hostcalls::get_map_value_bytes(MapType::HttpRequestHeaders, name)
        .ok()
        .flatten()
}

fn request_header_present(name: &str) -> bool {
    matches!(
        hostcalls::get_map_value_bytes(MapType::HttpRequestHeaders, name),
        Ok(Some(_))
    )
}

fn response_header(name: &str) -> Option<Vec<u8>> {
    hostcalls::get_map_value_bytes(MapType::HttpResponseHeaders, name)
        .ok()
        .flatten()
}

fn code_details() -> String {
    hostcalls::get_property(vec!["response", "code_details"])
        .ok()
        .flatten()
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_default()
}

/// Ends a call at its end of stream; for a 5xx, Envoy's code details say
/// whether Envoy answered for an upstream that reset (read only then: it is
/// a host call).
fn finish_at_end(call: &mut CallTap, now: u64) -> Option<Finished> {
    let details = call.wants_code_details().then(code_details);
    call.finish_at_end(details.as_deref(), now)
}

fn lossy(bytes: Option<Vec<u8>>) -> Option<String> {
    bytes.map(|b| String::from_utf8_lossy(&b).into_owned())
}

impl StreamtapHttp {
    fn publish(&mut self, finished: Finished) {
        let content = self.tap.as_ref().map(|t| t.content()).unwrap_or_default();
        let _ = hostcalls::set_property(vec![SUMMARY_KEY], Some(finished.summary_json.as_bytes()));
        let _ = hostcalls::set_property(vec![CONTENT_KEY], Some(content.as_bytes()));
        let mut shared = self.shared.borrow_mut();
        let metrics = shared.metrics;
        add(metrics.calls, 1);
        add(metrics.stream_events, finished.events);
        add(metrics.parse_errors, finished.parse_errors);
        if finished.outcome != crate::call::record::Outcome::Completed {
            add(metrics.calls_not_completed, 1);
        }
        if let (Some(id), Some(ttft)) = (metrics.ttft_ms, finished.ttft_ms) {
            let _ = hostcalls::record_metric(id, ttft);
        }
        let otlp = shared
            .config
            .collector
            .as_ref()
            .is_some_and(|c| c.format == ExportFormat::Otlp);
        if let Some(queue) = shared.queue.as_mut() {
            let now = now_us();
            let entry = match self.tap.as_ref().filter(|_| otlp) {
                Some(call) => call.otlp_record(now).unwrap_or_default(),
                None => finished.summary_json,
            };
            let dropped = queue.push(entry, now);
            add(metrics.summaries_dropped, dropped as u64);
        }
    }
}

impl Context for StreamtapHttp {}

impl HttpContext for StreamtapHttp {
    fn on_http_request_headers(&mut self, _headers: usize, _end_of_stream: bool) -> Action {
        let request_id = request_header("x-request-id");
        let shared = self.shared.borrow();
        let capture = &shared.config.capture;
        if !tap::sampled(
            request_id.as_deref().unwrap_or_default(),
            shared.config.sample_rate,
        ) {
            return Action::Continue;
        }
        let settings = TapSettings {
            capture_response_content: capture.response_content,
            capture_request_content: capture.request_content,
            max_content_bytes: capture.max_content_bytes,
        };
        let mut call = CallTap::new(settings, now_us());
        let traceparent = lossy(request_header("traceparent"));
        call.on_request_headers(
            lossy(request_header(":method")),
            lossy(request_header(":path")),
            lossy(request_id),
            traceparent.as_deref(),
        );
        // Only the headers the config names are read; a credential header's
        // value is never read at all.
        for name in &capture.request_headers {
            if capture.header_allowed(name) {
                call.capture_request_header(name, request_header(name).as_deref());
            } else if request_header_present(name) {
                call.capture_request_header_redacted(name);
            }
        }
        if capture.request_content {
            call.set_redact_fields(shared.redact_fields.clone());
        }
        drop(shared);
        self.tap = Some(call);
        Action::Continue
    }

    fn on_http_request_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        if let Some(call) = self.tap.as_mut() {
            if body_size > 0 {
                if let Ok(Some(chunk)) =
                    hostcalls::get_buffer(BufferType::HttpRequestBody, 0, body_size)
                {
                    call.on_request_body(&chunk);
                }
            }
            if end_of_stream {
                call.on_request_end();
            }
        }
        Action::Continue
    }

    fn on_http_request_trailers(&mut self, _trailers: usize) -> Action {
        if let Some(call) = self.tap.as_mut() {
            call.on_request_end();
        }
        Action::Continue
    }

    fn on_http_response_headers(&mut self, _headers: usize, end_of_stream: bool) -> Action {
        if let Some(call) = self.tap.as_mut() {
            // A request without a body never saw its end in the body callback.
            call.on_request_end();
            let status = lossy(response_header(":status")).and_then(|s| s.parse().ok());
            let content_type = lossy(response_header("content-type"));
            let encoding = lossy(response_header("content-encoding"));
            call.on_response_headers(status, content_type.as_deref(), encoding.as_deref());
            if end_of_stream {
                if let Some(finished) = finish_at_end(call, now_us()) {
                    self.publish(finished);
                }
            }
        }
        Action::Continue
    }

    fn on_http_response_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        // With Continue, the buffer is exactly this chunk (never cumulative).
        if let Some(call) = self.tap.as_mut() {
            let now = now_us();
            if body_size > 0 {
                if let Ok(Some(chunk)) =
                    hostcalls::get_buffer(BufferType::HttpResponseBody, 0, body_size)
                {
                    call.on_response_body(&chunk, now);
                }
            }
            if end_of_stream {
                if let Some(finished) = finish_at_end(call, now) {
                    self.publish(finished);
                }
            }
        }
        Action::Continue
    }

    fn on_http_response_trailers(&mut self, _trailers: usize) -> Action {
        // end_of_stream never comes on a body followed by trailers.
        if let Some(call) = self.tap.as_mut() {
            if let Some(finished) = finish_at_end(call, now_us()) {
                self.publish(finished);
            }
        }
        Action::Continue
    }

    fn on_log(&mut self) {
        // Runs once per request on every path, including resets and
        // disconnects that never reach an end of stream.
        // Most calls ended already: no host calls for them here.
        if let Some(call) = self.tap.as_mut().filter(|call| !call.is_finished()) {
            let details = code_details();
            if let Some(finished) = call.finish_at_log(&details, now_us()) {
                self.publish(finished);
            }
        }
    }
}
