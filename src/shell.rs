//! The proxy-wasm shell: the only code that talks to the host. Callbacks move
//! data between Envoy and the pure core and return at once; every response
//! body callback returns `Action::Continue`.
//!
//! Host calls go through `hostcalls` (which return `Result`) rather than the
//! SDK's trait helpers, which panic on an unexpected host status; a panic
//! would kill the VM for every stream on this worker. A host call that fails
//! is logged once per kind (and counted in `streamtap.host_call_failures`),
//! never ignored.
//!
//! What the root and the HTTP contexts of a VM share is read-only
//! (`Settings`) except the export queue, which only `SharedQueue::with`
//! reaches (`export::queue`): a borrow never outlives the closure, and a
//! nested one is refused instead of panicking, so a double borrow cannot
//! kill the VM.

use crate::call::health::Verdict;
use crate::call::identity;
use crate::call::live::{LiveStreams, Pulse};
use crate::call::tap::{CallTap, Finished, TapSettings};
use crate::config::{self, Config, ExportFormat};
use crate::export::handoff;
use crate::export::labels::{
    samples, LabelBounds, Place, SampleKind, SharedValues, LABEL_LIST_KEYS,
};
use crate::export::queue::{BatchResult, CollectorReply, ExportQueue, SharedQueue};
use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, BufferType, ContextType, LogLevel, MapType, MetricType, Status};
use std::cell::Cell;
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

/// One counter per `stream_health.verdict`, in `Verdict::ALL` order.
const VERDICT_STATS: [&str; 5] = [
    "streamtap.verdict.smooth",
    "streamtap.verdict.bursty",
    "streamtap.verdict.buffered",
    "streamtap.verdict.stalled",
    "streamtap.verdict.too_short",
];

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
    /// Calls whose compressed copy hit `capture.max_decoded_bytes`.
    decode_capped: Option<u32>,
    ttft_ms: Option<u32>,
    /// Gauges, moved by increments: every worker's VM adds to the same stat.
    streams_active: Option<u32>,
    streams_stalled: Option<u32>,
    /// `sample_rate` × 10⁶, so a dashboard can scale the sampled counts.
    sample_rate: Option<u32>,
    /// Calls per `stream_health.verdict`, in `Verdict::ALL` order.
    verdicts: [Option<u32>; 5],
    /// Label values counted as `other` (`max_label_values`).
    label_overflow: Option<u32>,
}

impl Metrics {
    fn define() -> Metrics {
        let define = |kind: MetricType, name: &str| match hostcalls::define_metric(kind, name) {
            Ok(id) => Some(id),
            Err(status) => {
                // Nothing to count it in: log it (once).
                host_call_failed(HostCall::DefineMetric, status);
                None
            }
        };
        let counter = |name: &str| define(MetricType::Counter, name);
        HOST_CALL_FAILURES.with(|c| c.set(counter("streamtap.host_call_failures")));
        Metrics {
            calls: counter("streamtap.calls"),
            stream_events: counter("streamtap.stream_events"),
            parse_errors: counter("streamtap.parse_errors"),
            summaries_exported: counter("streamtap.summaries_exported"),
            export_failures: counter("streamtap.export_failures"),
            summaries_dropped: counter("streamtap.summaries_dropped"),
            calls_not_completed: counter("streamtap.calls_not_completed"),
            decode_capped: counter("streamtap.decode_capped"),
            ttft_ms: define(MetricType::Histogram, "streamtap.ttft_ms"),
            streams_active: define(MetricType::Gauge, "streamtap.streams_active"),
            streams_stalled: define(MetricType::Gauge, "streamtap.streams_stalled"),
            sample_rate: define(MetricType::Gauge, "streamtap.sample_rate_per_million"),
            verdicts: VERDICT_STATS.map(counter),
            label_overflow: counter("streamtap.label_overflow"),
        }
    }
}

fn add(metric: Option<u32>, by: u64) {
    if let (Some(id), true) = (metric, by > 0) {
        let by = i64::try_from(by).unwrap_or(i64::MAX);
        if let Err(status) = hostcalls::increment_metric(id, by) {
            host_call_failed(HostCall::IncrementMetric, status);
        }
    }
}

fn record(histogram: Option<u32>, value: u64) {
    if let Some(id) = histogram {
        if let Err(status) = hostcalls::record_metric(id, value) {
            host_call_failed(HostCall::RecordMetric, status);
        }
    }
}

/// Moves a gauge up or down.
fn shift(gauge: Option<u32>, by: i64) {
    if let Some(id) = gauge {
        if let Err(status) = hostcalls::increment_metric(id, by) {
            host_call_failed(HostCall::IncrementMetric, status);
        }
    }
}

/// Host calls whose failure is reported (each kind logged once per VM). What
/// each failure costs: DefineMetric, a stat missing from /stats;
/// Increment/RecordMetric, a stat undercounted; SetTickPeriod, no tick, so
/// nothing is exported; SetFilterState, no summary in filter state and access
/// logs; AddHeader, no `x-accel-buffering: no` on that response; Done, Envoy
/// may wait for this VM at shutdown; SharedData, labels not bounded across
/// VMs; SharedQueue, a stopping config's unsent summaries dropped (counted).
#[derive(Debug, Clone, Copy)]
enum HostCall {
    DefineMetric,
    IncrementMetric,
    RecordMetric,
    SetTickPeriod,
    SetFilterState,
    AddHeader,
    Done,
    SharedData,
    SharedQueue,
}

/// The label lists of `export::labels` in Envoy's shared data: one store
/// per `vm_id` for the whole process, so every worker's VM and the VMs of
/// later config pushes share one bound.
struct HostShared;

impl SharedValues for HostShared {
    fn load(&mut self, key: &str) -> Option<(Vec<u8>, u32)> {
        match hostcalls::get_shared_data(key) {
            Ok((bytes, version)) => Some((bytes.unwrap_or_default(), version.unwrap_or(0))),
            Err(status) => {
                host_call_failed(HostCall::SharedData, status);
                None
            }
        }
    }

    fn store(&mut self, key: &str, list: &[u8], version: u32) -> bool {
        // Version 0 (never stored) cannot be checked by the host: the key
        // is created at configure time, so that only happens if that failed.
        match hostcalls::set_shared_data(key, Some(list), Some(version).filter(|&v| v > 0)) {
            Ok(()) => true,
            Err(Status::CasMismatch) => false,
            Err(status) => {
                host_call_failed(HostCall::SharedData, status);
                false
            }
        }
    }
}

/// Creates the label lists that do not exist yet (empty), so every later
/// write is checked against the version it read.
fn create_label_lists() {
    for key in LABEL_LIST_KEYS {
        if let Ok((None, None)) = hostcalls::get_shared_data(key) {
            if let Err(status) = hostcalls::set_shared_data(key, Some(b""), None) {
                host_call_failed(HostCall::SharedData, status);
            }
        }
    }
}

/// The labelled stats of this VM: each label set's metric id, defined once,
/// and the label values seen (bounded). Reached only from `publish`, never
/// nested; a refused borrow skips the labelled stats of that call.
struct LabelledStats {
    /// (stat name, id): few label sets per VM; a map type would cost the
    /// `.wasm` 7 KB (BTreeMap) to 13 KB (HashMap).
    ids: Vec<(String, Option<u32>)>,
    bounds: LabelBounds,
}

impl LabelledStats {
    fn metric(&mut self, kind: MetricType, name: String) -> Option<u32> {
        if let Some((_, id)) = self.ids.iter().find(|(n, _)| *n == name) {
            return *id;
        }
        let id = match hostcalls::define_metric(kind, &name) {
            Ok(id) => Some(id),
            Err(status) => {
                host_call_failed(HostCall::DefineMetric, status);
                None
            }
        };
        self.ids.push((name, id));
        id
    }

    /// Adds the call to its labelled stats; returns the label values it
    /// counted as `other`.
    fn count(&mut self, finished: &Finished, place: &Place<'_>, max_values: usize) -> u64 {
        if self.bounds.max_values() != max_values {
            self.bounds = LabelBounds::new(max_values);
        }
        let before = self.bounds.overflowed();
        for sample in samples(finished, place, &mut self.bounds, &mut HostShared) {
            match sample.kind {
                SampleKind::Counter => {
                    add(self.metric(MetricType::Counter, sample.name), sample.value)
                }
                SampleKind::Histogram => record(
                    self.metric(MetricType::Histogram, sample.name),
                    sample.value,
                ),
            }
        }
        self.bounds.overflowed() - before
    }
}

thread_local! {
    static LABELLED: std::cell::RefCell<Option<LabelledStats>> = const { std::cell::RefCell::new(None) };
}

thread_local! {
    /// `identity::summary_id`'s prefix (random, drawn at the first call) and
    /// count, for this VM.
    static SUMMARY_IDS: Cell<Option<(u64, u64)>> = const { Cell::new(None) };
}

fn next_summary_id() -> String {
    let (prefix, seq) = SUMMARY_IDS
        .with(Cell::get)
        .unwrap_or_else(|| (random_u64(), 0));
    SUMMARY_IDS.with(|ids| ids.set(Some((prefix, seq.wrapping_add(1)))));
    identity::summary_id(prefix, seq)
}

#[link(wasm_import_module = "wasi_snapshot_preview1")]
extern "C" {
    fn random_get(buf: *mut u8, len: usize) -> u16;
}

/// Eight bytes from the host's CSPRNG (WASI `random_get`, which Envoy
/// provides); the clock if it fails. (std's RandomState would do it for
/// +6 KB of SipHash.)
fn random_u64() -> u64 {
    let mut bytes = [0u8; 8];
    // SAFETY: the host writes at most `len` bytes into the buffer given.
    let errno = unsafe { random_get(bytes.as_mut_ptr(), bytes.len()) };
    if errno == 0 {
        u64::from_le_bytes(bytes)
    } else {
        now_us()
    }
}

thread_local! {
    // One VM is one thread: Cells, never a RefCell.
    static HOST_CALL_FAILURES: Cell<Option<u32>> = const { Cell::new(None) };
    static HOST_CALLS_LOGGED: Cell<u16> = const { Cell::new(0) };
}

fn host_call_failed(call: HostCall, status: Status) {
    // One bit per HostCall variant (fewer than 16).
    let bit = 1u16 << (call as u8);
    let first = HOST_CALLS_LOGGED.with(|logged| {
        let seen = logged.get();
        logged.set(seen | bit);
        seen & bit == 0
    });
    if first {
        log::error!(
            "streamtap: host call {call:?} failed ({status:?}); counted in streamtap.host_call_failures"
        );
    }
    // A failing increment is not counted by another increment.
    if !matches!(call, HostCall::IncrementMetric) {
        if let Some(id) = HOST_CALL_FAILURES.with(Cell::get) {
            // If even this fails, the log line above is all there can be.
            let _ = hostcalls::increment_metric(id, 1);
        }
    }
}

fn set_filter_state(key: &str, value: &[u8]) {
    if let Err(status) = hostcalls::set_property(vec![key], Some(value)) {
        host_call_failed(HostCall::SetFilterState, status);
    }
}

fn log_level(level: config::LogLevel) -> LogLevel {
    match level {
        config::LogLevel::Trace => LogLevel::Trace,
        config::LogLevel::Debug => LogLevel::Debug,
        config::LogLevel::Info => LogLevel::Info,
        config::LogLevel::Warn => LogLevel::Warn,
        config::LogLevel::Error => LogLevel::Error,
        config::LogLevel::Critical => LogLevel::Critical,
    }
}

fn now_us() -> u64 {
    hostcalls::get_current_time()
        .ok()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map_or(0, |d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
}

/// What the root context and the worker's HTTP contexts share, read-only
/// once configured (one thread per VM).
struct Settings {
    config: Config,
    metrics: Metrics,
    /// `capture.redact_fields`, shared with every call without copying.
    redact_fields: Rc<[String]>,
    /// `pricing`, shared likewise; None when the config has none.
    pricing: Option<Rc<crate::call::cost::Pricing>>,
    /// None without a collector.
    queue: Option<SharedQueue>,
    /// The sampled event streams in flight, for the tick's stall watch.
    live: LiveStreams,
}

#[derive(Default)]
struct StreamtapRoot {
    settings: Option<Rc<Settings>>,
    in_flight_token: Option<u32>,
    /// The host shared queue of `export::handoff`, with a collector.
    handoff: Option<u32>,
    shutting_down: bool,
    stop: StopCount,
    /// The last export failed; logged once, until it recovers.
    collector_failing: bool,
}

/// What a stopping root held and has sent since, for its last log line.
#[derive(Default)]
struct StopCount {
    held: usize,
    sent: usize,
}

impl StreamtapRoot {
    /// Sends the next due batch, if any. At most one export is in flight.
    fn flush(&mut self, force: bool) {
        let Some(settings) = self.settings.clone() else {
            return;
        };
        let (Some(collector), Some(queue)) = (&settings.config.collector, &settings.queue) else {
            return;
        };
        let Some(batch) = queue.with(|q| q.next_batch(now_us(), force)).flatten() else {
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
                let retry = CollectorReply::Retry {
                    retry_after_us: None,
                };
                if let Some(result) = queue.with(|q| q.complete(retry, now_us())) {
                    self.note_result(result, &format!("not sent: {status:?}"));
                }
            }
        }
    }

    /// Counts a finished export attempt. Logs only when the collector's state
    /// changes, so a dead collector does not flood Envoy's log.
    fn note_result(&mut self, result: BatchResult, why: &str) {
        let Some(metrics) = self.settings.as_ref().map(|s| s.metrics) else {
            return;
        };
        match result {
            BatchResult::Exported(n) => {
                add(metrics.summaries_exported, n as u64);
                if self.shutting_down {
                    self.stop.sent += n;
                }
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

impl StreamtapRoot {
    /// At a stop, puts what is still unsent into the handoff queue for the
    /// next root of this `vm_id` (`export::handoff`), and says how the stop
    /// went. The log lines are the trace that stays when Envoy is exiting (a
    /// counter dies with it).
    fn finish_stop(&mut self) {
        let Some(settings) = self.settings.clone() else {
            return;
        };
        let (Some(collector), Some(queue)) = (&settings.config.collector, &settings.queue) else {
            return;
        };
        let unsent = queue.with(|q| q.take_unsent()).unwrap_or_default();
        let mut handed = 0;
        if let Some(token) = self.handoff {
            for entry in &unsent {
                let bytes = handoff::encode(collector.format, entry);
                if let Err(status) = hostcalls::enqueue_shared_queue(token, Some(&bytes)) {
                    host_call_failed(HostCall::SharedQueue, status);
                    break;
                }
                handed += 1;
            }
        }
        let lost = unsent.len() - handed;
        add(settings.metrics.summaries_dropped, lost as u64);
        if self.stop.held > 0 {
            log::warn!(
                "streamtap: stopped: {} of the {} summaries sent, {handed} handed to the next \
                 streamtap configuration of this vm_id (lost if Envoy is exiting), {lost} dropped",
                self.stop.sent,
                self.stop.held
            );
        }
    }

    /// Takes over what stopped roots of this `vm_id` left unsent; at most a
    /// queue's worth per tick.
    fn adopt(&mut self) {
        let (Some(token), Some(settings)) = (self.handoff, self.settings.clone()) else {
            return;
        };
        let (Some(collector), Some(queue)) = (&settings.config.collector, &settings.queue) else {
            return;
        };
        let (mut adopted, mut dropped) = (0usize, 0usize);
        for _ in 0..collector.max_queue {
            let bytes = match hostcalls::dequeue_shared_queue(token) {
                Ok(Some(bytes)) => bytes,
                Ok(None) => break,
                Err(status) => {
                    host_call_failed(HostCall::SharedQueue, status);
                    break;
                }
            };
            match handoff::decode(collector.format, bytes) {
                Some(entry) => {
                    adopted += 1;
                    dropped += queue.with(|q| q.push(entry, now_us())).unwrap_or(1);
                }
                // Of the other export format: it cannot be sent here.
                None => dropped += 1,
            }
        }
        if adopted + dropped > 0 {
            add(settings.metrics.summaries_dropped, dropped as u64);
            log::info!(
                "streamtap: took over {adopted} summaries a stopped configuration had not sent \
                 ({dropped} dropped: another export format, or no room)"
            );
        }
    }

    /// Moves the stalled gauge and logs each stream once when it stalls.
    fn watch_stalls(&self) {
        let Some(settings) = &self.settings else {
            return;
        };
        let limits = &settings.config.stream_health;
        let scan = settings.live.scan(now_us(), limits);
        let metrics = settings.metrics;
        for (request_id, silent_ms) in &scan.newly_stalled {
            log::warn!(
                "streamtap: stream {} stalled: no delta for {silent_ms} ms (stream_health.stall_ms {})",
                request_id.as_deref().unwrap_or("without x-request-id"),
                limits.stall_ms
            );
        }
        let newly = i64::try_from(scan.newly_stalled.len()).unwrap_or(i64::MAX);
        let recovered = i64::try_from(scan.recovered).unwrap_or(i64::MAX);
        if newly != recovered {
            shift(metrics.streams_stalled, newly - recovered);
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
        let reply = CollectorReply::from_status(status, header("retry-after").as_deref());
        let result = self
            .settings
            .as_ref()
            .and_then(|s| s.queue.as_ref())
            .and_then(|queue| queue.with(|q| q.complete(reply, now_us())));
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
            self.finish_stop();
            if let Err(status) = hostcalls::done() {
                host_call_failed(HostCall::Done, status);
            }
        }
    }

    /// Sends what it holds, one batch after another (each bounded by the
    /// collector's timeout), then hands the rest over and is done.
    fn on_done(&mut self) -> bool {
        self.shutting_down = true;
        let held = self
            .settings
            .as_ref()
            .and_then(|s| s.queue.as_ref())
            .and_then(|q| q.with(|q| q.len()))
            .unwrap_or(0);
        if held > 0 {
            self.stop.held = held;
            log::warn!(
                "streamtap: stopping with {held} summaries not yet accepted by the collector; \
                 sending them, then handing the rest to the next streamtap configuration of this \
                 vm_id (lost if Envoy is exiting first)"
            );
        }
        self.flush(true);
        if self.in_flight_token.is_some() {
            return false;
        }
        self.finish_stop();
        true
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
        proxy_wasm::set_log_level(log_level(config.log_level));
        create_label_lists();
        let metrics = match &self.settings {
            Some(settings) => settings.metrics,
            // `stats: false`: none defined, every add and record a no-op.
            None if !config.stats => Metrics::default(),
            None => Metrics::define(),
        };
        let seed = now_us();
        let queue = config
            .collector
            .as_ref()
            .map(|c| SharedQueue::new(ExportQueue::for_collector(c, seed)));
        // The tick exports and watches for stalls: it runs with or without a collector.
        let tick = config
            .collector
            .as_ref()
            .map_or(MAX_TICK, |c| Duration::from_millis(c.flush_interval_ms))
            .min(MAX_TICK);
        if let Err(status) = hostcalls::set_tick_period(tick) {
            host_call_failed(HostCall::SetTickPeriod, status);
        }
        if config.collector.is_some() {
            match hostcalls::register_shared_queue(handoff::QUEUE_NAME) {
                Ok(token) => self.handoff = Some(token),
                Err(status) => host_call_failed(HostCall::SharedQueue, status),
            }
        }
        // Every VM of the process sets the same value (one config); a push
        // with another rate replaces it.
        record(
            metrics.sample_rate,
            (config.sample_rate * 1e6).round() as u64,
        );
        let redact_fields = Rc::from(config.capture.redact_fields.clone());
        let pricing = (!config.pricing.is_empty()).then(|| Rc::new(config.pricing.clone()));
        self.settings = Some(Rc::new(Settings {
            config,
            metrics,
            redact_fields,
            pricing,
            queue,
            live: LiveStreams::default(),
        }));
        true
    }

    fn on_tick(&mut self) {
        if !self.shutting_down {
            self.adopt();
        }
        self.flush(false);
        self.watch_stalls();
    }

    fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        let settings = self.settings.clone()?;
        Some(Box::new(StreamtapHttp {
            settings,
            tap: None,
            watched: None,
            consumer: None,
        }))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

struct StreamtapHttp {
    settings: Rc<Settings>,
    /// None when the call is not sampled.
    tap: Option<CallTap>,
    /// A sampled event stream, while the tick watches it.
    watched: Option<Watched>,
    /// The `metric_labels.consumer_header` value of a sampled call.
    consumer: Option<String>,
}

/// A stream on the `streams_active` gauge (and on `streams_stalled` while the
/// tick says so). Ends once: when its call is summarized, or when Envoy
/// drops the context, whichever comes first.
struct Watched {
    pulse: Rc<Pulse>,
    metrics: Metrics,
}

impl Watched {
    fn start(settings: &Settings, request_id: Option<&str>) -> Option<Watched> {
        let pulse = settings.live.register(request_id.map(str::to_string))?;
        shift(settings.metrics.streams_active, 1);
        Some(Watched {
            pulse,
            metrics: settings.metrics,
        })
    }

    fn end(&self) {
        if let Some(was_stalled) = self.pulse.end() {
            shift(self.metrics.streams_active, -1);
            if was_stalled {
                shift(self.metrics.streams_stalled, -1);
            }
        }
    }
}

impl Drop for Watched {
    fn drop(&mut self) {
        self.end();
    }
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
    property_string(&["response", "code_details"])
}

/// An Envoy attribute as text ("" when absent).
fn property_string(path: &[&str]) -> String {
    hostcalls::get_property(path.to_vec())
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
    /// The labelled GenAI stats of a finished call.
    fn count_labelled(&self, finished: &Finished) {
        let max_values = self.settings.config.max_label_values;
        let wanted = &self.settings.config.metric_labels;
        let route = wanted
            .route
            .then(|| property_string(&["xds", "route_name"]));
        let cluster = wanted
            .upstream_cluster
            .then(|| property_string(&["xds", "cluster_name"]));
        let place = Place {
            consumer: self.consumer.as_deref(),
            route: route.as_deref(),
            upstream_cluster: cluster.as_deref(),
        };
        let overflowed = LABELLED.with(|cell| match cell.try_borrow_mut() {
            Ok(mut stats) => stats
                .get_or_insert_with(|| LabelledStats {
                    ids: Vec::new(),
                    bounds: LabelBounds::new(max_values),
                })
                .count(finished, &place, max_values),
            Err(_) => 0,
        });
        add(self.settings.metrics.label_overflow, overflowed);
    }

    /// `now`: the finishing callback's clock reading (one host call fewer).
    fn publish(&mut self, finished: Finished, now: u64) {
        if let Some(watched) = self.watched.take() {
            watched.end();
        }
        let content = self.tap.as_ref().map(|t| t.content()).unwrap_or_default();
        let settings = &self.settings;
        let keys = settings.config.filter_state;
        if keys.summary {
            set_filter_state(SUMMARY_KEY, finished.summary_json.as_bytes());
        }
        if keys.content {
            set_filter_state(CONTENT_KEY, content.as_bytes());
        }
        let metrics = settings.metrics;
        add(metrics.calls, 1);
        add(metrics.stream_events, finished.events);
        add(metrics.parse_errors, finished.parse_errors);
        if finished.outcome != crate::call::record::Outcome::Completed {
            add(metrics.calls_not_completed, 1);
        }
        add(metrics.decode_capped, u64::from(finished.decode_capped));
        if settings.config.labelled_stats && settings.config.stats {
            self.count_labelled(&finished);
        }
        if let Some(verdict) = finished.verdict {
            let index = Verdict::ALL.iter().position(|v| *v == verdict);
            add(
                index.and_then(|i| metrics.verdicts.get(i).copied().flatten()),
                1,
            );
        }
        if let Some(ttft) = finished.ttft_ms {
            record(metrics.ttft_ms, ttft);
        }
        let Some(queue) = &settings.queue else {
            return;
        };
        let otlp = settings
            .config
            .collector
            .as_ref()
            .is_some_and(|c| c.format == ExportFormat::Otlp);
        let entry = match self.tap.as_ref().filter(|_| otlp) {
            Some(call) => call.otlp_record(now).unwrap_or_default(),
            None => finished.summary_json,
        };
        // Never None (nothing else holds the queue now); if it were, the
        // summary is lost and counted as dropped.
        let dropped = queue.with(|q| q.push(entry, now)).unwrap_or(1);
        add(metrics.summaries_dropped, dropped as u64);
    }
}

impl Context for StreamtapHttp {}

impl HttpContext for StreamtapHttp {
    fn on_http_request_headers(&mut self, _headers: usize, _end_of_stream: bool) -> Action {
        let request_id = request_header("x-request-id");
        let plugin = Rc::clone(&self.settings);
        let capture = &plugin.config.capture;
        if !identity::sampled(
            request_id.as_deref().unwrap_or_default(),
            plugin.config.sample_rate,
        ) {
            return Action::Continue;
        }
        let settings = TapSettings {
            capture_response_content: capture.response_content,
            capture_request_content: capture.request_content,
            max_content_bytes: capture.max_content_bytes,
            max_decoded_bytes: capture.max_decoded_bytes,
            health: plugin.config.stream_health,
            timeline_entries: capture.timeline.then_some(capture.timeline_max_entries),
        };
        let mut call = CallTap::new(settings, now_us());
        call.set_summary_id(next_summary_id());
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
            call.set_redact_fields(plugin.redact_fields.clone());
        }
        if let Some(pricing) = &plugin.pricing {
            call.set_pricing(Rc::clone(pricing));
        }
        // Refused at configure time when it names a credential header.
        if let Some(name) = &plugin.config.metric_labels.consumer_header {
            self.consumer = Some(lossy(request_header(name)).unwrap_or_default());
        }
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
        let downstream_fix = self.settings.config.disable_downstream_buffering;
        if self.tap.is_none() && !downstream_fix {
            return Action::Continue;
        }
        let content_type = lossy(response_header("content-type"));
        let event_stream = crate::wire::sse::is_event_stream(content_type.as_deref());
        // Only when asked, only on event streams, never over the upstream's own.
        if downstream_fix && event_stream && response_header("x-accel-buffering").is_none() {
            if let Err(status) =
                hostcalls::add_map_value(MapType::HttpResponseHeaders, "x-accel-buffering", "no")
            {
                host_call_failed(HostCall::AddHeader, status);
            }
        }
        if let Some(call) = self.tap.as_mut() {
            // A request without a body never saw its end in the body callback.
            call.on_request_end();
            let status = lossy(response_header(":status")).and_then(|s| s.parse().ok());
            let encoding = lossy(response_header("content-encoding"));
            let now = now_us();
            call.on_response_headers(status, content_type.as_deref(), encoding.as_deref(), now);
            if event_stream && !end_of_stream && call.record().health().is_some() {
                self.watched = Watched::start(&self.settings, call.record().request.id.as_deref());
            }
            if end_of_stream {
                if let Some(finished) = finish_at_end(call, now) {
                    self.publish(finished, now);
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
                    if let Some(watched) = &self.watched {
                        watched
                            .pulse
                            .progress(call.record().health().and_then(|h| h.last_progress_us()));
                    }
                }
            }
            if end_of_stream {
                if let Some(finished) = finish_at_end(call, now) {
                    self.publish(finished, now);
                }
            }
        }
        Action::Continue
    }

    fn on_http_response_trailers(&mut self, _trailers: usize) -> Action {
        // end_of_stream never comes on a body followed by trailers.
        if let Some(call) = self.tap.as_mut() {
            let now = now_us();
            if let Some(finished) = finish_at_end(call, now) {
                self.publish(finished, now);
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
            let now = now_us();
            if let Some(finished) = call.finish_at_log(&details, now) {
                self.publish(finished, now);
            }
        }
    }
}
