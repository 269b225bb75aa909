//! Plugin configuration: the JSON in the Wasm filter's `configuration`.
//!
//! Every field has a default except `collector.cluster`. Unknown fields, wrong
//! types and out-of-range values are refused with an error naming the field, so
//! Envoy refuses the config instead of running with a guess.

use crate::call::cost::{Price, Pricing};
use crate::call::health::Thresholds;
use crate::wire::json::Json;
use crate::ParseError;
use std::collections::BTreeMap;
use std::fmt;

/// Header names that can carry a credential. They are never copied into a
/// summary, a log line or filter state, whatever the configuration says.
pub const CREDENTIAL_HEADERS: [&str; 7] = [
    "authorization",
    "x-api-key",
    "api-key",
    "cookie",
    "proxy-authorization",
    // Google's Gemini API key, and the session token of AWS-signed (Bedrock) calls.
    "x-goog-api-key",
    "x-amz-security-token",
];

/// Default cap of what one call's compressed response may inflate to
/// (`capture.max_decoded_bytes`). A long LLM answer is a few hundred KB of
/// SSE, so 8 MiB never stops a real one, while a compression bomb (300 MB from
/// 640 KB of gzip) costs the worker 8 MiB of inflating instead of all of it.
pub const DEFAULT_MAX_DECODED_BYTES: usize = 8 << 20;
/// Range of `capture.max_decoded_bytes`: below 64 KiB even a short answer
/// would be cut; above 256 MiB the cap no longer protects the worker.
pub const MAX_DECODED_BYTES_RANGE: (u64, u64) = (64 << 10, 256 << 20);

#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// Where summaries are exported. Without it the filter still writes
    /// filter state and stats.
    pub collector: Option<CollectorConfig>,
    pub capture: CaptureConfig,
    /// Fraction of calls summarized, 0.0 to 1.0. Default 1.0.
    pub sample_rate: f64,
    /// The filter's own log level in Envoy's log. Default `info`.
    pub log_level: LogLevel,
    /// How event streams are judged (`stream_health` in summaries).
    pub stream_health: Thresholds,
    /// Add `x-accel-buffering: no` to event-stream responses that do not
    /// set it, so nginx (and proxies that honour it) in front of Envoy pass
    /// them on live, even with gzip. Default false.
    pub disable_downstream_buffering: bool,
    /// USD per million tokens by model (exact, or a prefix ending in `*`):
    /// summaries then carry `cost_usd`. Default none.
    pub pricing: Pricing,
    /// Distinct models the labelled stats keep apart, per VM; later ones
    /// are counted under `other`. Default 100, 1..=10000.
    pub max_label_values: usize,
    /// Labels of the calls, tokens and cost counters besides provider,
    /// operation and model.
    pub metric_labels: MetricLabels,
    /// The labelled GenAI stats (`streamtap.gen_ai_*`). Default true; off,
    /// a call costs ~11 host calls less (the global counters stay).
    pub labelled_stats: bool,
    /// Which filter state keys a call's end writes.
    pub filter_state: FilterState,
    /// All of streamtap's stats (`wasmcustom.streamtap.*`, labelled ones
    /// included). Default true; off, the log lines are the only trace of an
    /// export failure or a loss.
    pub stats: bool,
}

/// `filter_state`: what a call's end writes for later filters and the access
/// log. Both default true; a key nothing reads is a host call per call saved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FilterState {
    /// `wasm.streamtap.summary`, the summary JSON.
    pub summary: bool,
    /// `wasm.streamtap.content`, the answer text (capped).
    pub content: bool,
}

impl Default for FilterState {
    fn default() -> Self {
        FilterState {
            summary: true,
            content: true,
        }
    }
}

/// `metric_labels`: who called and where the call went, as labels of the
/// call, token and cost counters (each bounded like the model).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct MetricLabels {
    /// A request header whose value labels the caller (`consumer`), e.g. a
    /// tenant id set by an auth layer. Never a credential header.
    pub consumer_header: Option<String>,
    /// Envoy's route name (`route`).
    pub route: bool,
    /// The upstream cluster (`upstream_cluster`).
    pub upstream_cluster: bool,
}

/// The levels of Envoy's log, as the config spells them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LogLevel {
    Trace,
    Debug,
    #[default]
    Info,
    Warn,
    Error,
    Critical,
}

impl LogLevel {
    const NAMES: [(&'static str, LogLevel); 6] = [
        ("trace", LogLevel::Trace),
        ("debug", LogLevel::Debug),
        ("info", LogLevel::Info),
        ("warn", LogLevel::Warn),
        ("error", LogLevel::Error),
        ("critical", LogLevel::Critical),
    ];

    fn from_name(name: &str) -> Option<LogLevel> {
        LogLevel::NAMES
            .iter()
            .find(|(n, _)| *n == name)
            .map(|&(_, level)| level)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExportFormat {
    /// A JSON array of summaries per POST.
    Json,
    /// OTLP/HTTP JSON logs (`ExportLogsServiceRequest`), default path `/v1/logs`.
    Otlp,
}

#[derive(Debug, Clone, PartialEq)]
pub struct CollectorConfig {
    /// Envoy cluster name of the collector. Required.
    pub cluster: String,
    /// Default `/v1/calls`.
    pub path: String,
    /// `:authority` of the export requests. Default `streamtap-collector`.
    pub authority: String,
    /// Default `json`.
    pub format: ExportFormat,
    /// Extra request headers for the collector (e.g. its own credential).
    /// Sent with each export, never logged.
    pub headers: BTreeMap<String, String>,
    /// Timeout of one export request. Default 2000, 1..=60000.
    pub timeout_ms: u64,
    /// Summaries per POST. Default 64, 1..=10000.
    pub batch_size: usize,
    /// Longest a summary waits in the queue before a flush. Default 500, 10..=60000.
    pub flush_interval_ms: u64,
    /// Summaries held per worker while the collector is slow or down; beyond
    /// it the oldest are dropped and counted. Default 10000, 1..=1000000.
    pub max_queue: usize,
}

#[derive(Debug, Clone, PartialEq)]
pub struct CaptureConfig {
    /// Assemble the answer text into `content`. Default true.
    pub response_content: bool,
    /// Keep the request body in the summary. Default false: prompts are sensitive.
    pub request_content: bool,
    /// Cap of each captured text. Default 65536, 0..=16777216.
    pub max_content_bytes: usize,
    /// Most bytes a gzip/deflate response is inflated to for reading; past
    /// it the copy is not decoded (the bytes still flow) and the summary says
    /// `decode_capped`. Default `DEFAULT_MAX_DECODED_BYTES`, 65536..=268435456.
    pub max_decoded_bytes: usize,
    /// Request headers copied into the summary's `request_headers` (e.g. a
    /// user or tenant id). Default none; at most 32.
    pub request_headers: Vec<String>,
    /// Header names never recorded (besides the credential headers, which
    /// never are): listed in `request_headers`, they show as `[redacted]`.
    pub redact_headers: Vec<String>,
    /// Record each delta's arrival time, size, chunk and kind in the
    /// summary's `timeline`. Default false.
    pub timeline: bool,
    /// Most timeline entries per call; past it neighbours merge
    /// (`call::timeline`). Default 512, 16..=16384.
    pub timeline_max_entries: usize,
    /// JSON field names whose string values are replaced by `[redacted]` in
    /// captured request content (besides the built-in `api_key`, `password`,
    /// `token`... see `CREDENTIAL_FIELDS`).
    pub redact_fields: Vec<String>,
}

/// Request-body fields whose values are never kept in `request_content`.
pub const CREDENTIAL_FIELDS: [&str; 12] = [
    "api_key",
    "apikey",
    "api-key",
    "x-api-key",
    "authorization",
    "password",
    "secret",
    "client_secret",
    "token",
    "access_token",
    "refresh_token",
    "id_token",
];

impl CaptureConfig {
    /// True when a header's value may be recorded.
    pub fn header_allowed(&self, name: &str) -> bool {
        !listed(name.as_bytes(), &CREDENTIAL_HEADERS)
            && !listed_owned(name.as_bytes(), &self.redact_headers)
    }

    /// True when a request-body field's value must not be kept.
    pub fn field_redacted(&self, name: &[u8]) -> bool {
        is_credential_field(name) || listed_owned(name, &self.redact_fields)
    }
}

/// True for the built-in credential field names (`CREDENTIAL_FIELDS`).
pub fn is_credential_field(name: &[u8]) -> bool {
    listed(name, &CREDENTIAL_FIELDS)
}

// Not inlined: unrolled over the constant lists, these cost kilobytes of .wasm.
#[inline(never)]
fn listed(name: &[u8], list: &[&str]) -> bool {
    list.iter()
        .any(|item| item.as_bytes().eq_ignore_ascii_case(name))
}

#[inline(never)]
pub(crate) fn listed_owned(name: &[u8], list: &[String]) -> bool {
    list.iter()
        .any(|item| item.as_bytes().eq_ignore_ascii_case(name))
}

impl Default for CaptureConfig {
    fn default() -> Self {
        CaptureConfig {
            response_content: true,
            request_content: false,
            max_content_bytes: default_max_content_bytes(),
            max_decoded_bytes: DEFAULT_MAX_DECODED_BYTES,
            request_headers: Vec::new(),
            redact_headers: Vec::new(),
            redact_fields: Vec::new(),
            timeline: false,
            timeline_max_entries: 512,
        }
    }
}

impl Default for Config {
    fn default() -> Self {
        Config {
            collector: None,
            capture: CaptureConfig::default(),
            sample_rate: default_sample_rate(),
            log_level: LogLevel::default(),
            stream_health: Thresholds::default(),
            disable_downstream_buffering: false,
            pricing: Pricing::default(),
            max_label_values: 100,
            metric_labels: MetricLabels::default(),
            labelled_stats: true,
            filter_state: FilterState::default(),
            stats: true,
        }
    }
}

fn default_sample_rate() -> f64 {
    1.0
}
fn default_path() -> String {
    "/v1/calls".to_string()
}
fn default_authority() -> String {
    "streamtap-collector".to_string()
}
fn default_timeout_ms() -> u64 {
    2000
}
fn default_batch_size() -> usize {
    64
}
fn default_flush_interval_ms() -> u64 {
    500
}
fn default_max_queue() -> usize {
    10_000
}
fn default_max_content_bytes() -> usize {
    65_536
}

/// A refused configuration: which field, and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub field: String,
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "invalid streamtap config at `{}`: {}",
            self.field, self.message
        )
    }
}

impl std::error::Error for ConfigError {}

impl Config {
    /// Parses and validates. An empty configuration means all defaults.
    pub fn parse(bytes: &[u8]) -> Result<Config, ConfigError> {
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok(Config::default());
        }
        let mut reader = Reader::default();
        let mut config = Config::default();
        let parsed = Json::parse(bytes, |j| {
            j.object(|key, j| match key {
                b"collector" => {
                    if !j.null() {
                        config.collector = Some(reader.collector(j)?);
                    }
                    Ok(())
                }
                b"capture" => reader.capture(j, &mut config.capture),
                b"stream_health" => reader.stream_health(j, &mut config.stream_health),
                b"pricing" => reader.pricing(j, &mut config.pricing),
                b"labelled_stats" => {
                    config.labelled_stats = reader.boolean(j, "labelled_stats")?;
                    Ok(())
                }
                b"stats" => {
                    config.stats = reader.boolean(j, "stats")?;
                    Ok(())
                }
                b"filter_state" => {
                    config.filter_state = reader.filter_state(j)?;
                    Ok(())
                }
                b"metric_labels" => {
                    config.metric_labels = reader.metric_labels(j)?;
                    Ok(())
                }
                b"max_label_values" => {
                    config.max_label_values = saturate(reader.integer(j, "max_label_values")?);
                    Ok(())
                }
                b"disable_downstream_buffering" => {
                    config.disable_downstream_buffering =
                        reader.boolean(j, "disable_downstream_buffering")?;
                    Ok(())
                }
                b"sample_rate" => {
                    config.sample_rate = reader.number(j, "sample_rate")?;
                    Ok(())
                }
                b"log_level" => {
                    let name = reader.string(j, "log_level")?;
                    config.log_level = match LogLevel::from_name(&name) {
                        Some(level) => level,
                        None => {
                            return reader.fail(
                                "log_level",
                                "expected trace, debug, info, warn, error or critical",
                            )
                        }
                    };
                    Ok(())
                }
                other => reader.unknown("", other),
            })
        });
        if parsed.is_err() {
            return Err(reader.error.unwrap_or_else(|| ConfigError {
                field: ".".to_string(),
                message: "not a valid JSON object".to_string(),
            }));
        }
        config.validate()?;
        Ok(config)
    }

    fn validate(&self) -> Result<(), ConfigError> {
        if !(0.0..=1.0).contains(&self.sample_rate) {
            return Err(out_of_range("sample_rate", "must be between 0.0 and 1.0"));
        }
        if self.capture.max_content_bytes > 16 * 1024 * 1024 {
            return Err(out_of_range(
                "capture.max_content_bytes",
                "must be at most 16777216",
            ));
        }
        check_range(
            "capture.timeline_max_entries",
            self.capture.timeline_max_entries as u64,
            16,
            16_384,
        )?;
        let (min, max) = MAX_DECODED_BYTES_RANGE;
        check_range(
            "capture.max_decoded_bytes",
            self.capture.max_decoded_bytes as u64,
            min,
            max,
        )?;
        validate_stream_health(&self.stream_health)?;
        check_range("max_label_values", self.max_label_values as u64, 1, 10_000)?;
        if let Some(name) = &self.metric_labels.consumer_header {
            if listed_owned(name.as_bytes(), &self.capture.redact_headers) {
                return Err(out_of_range(
                    "metric_labels.consumer_header",
                    "is listed in capture.redact_headers: a redacted header cannot be a label",
                ));
            }
        }
        if let Some(c) = &self.collector {
            if c.cluster.is_empty() {
                return Err(out_of_range("collector.cluster", "must not be empty"));
            }
            if !c.path.starts_with('/') {
                return Err(out_of_range("collector.path", "must start with '/'"));
            }
            if c.authority.is_empty() {
                return Err(out_of_range("collector.authority", "must not be empty"));
            }
            for name in c.headers.keys() {
                if name.is_empty() || name.starts_with(':') {
                    return Err(out_of_range(
                        &format!("collector.headers.{name}"),
                        "must be a plain header name",
                    ));
                }
            }
            check_range("collector.timeout_ms", c.timeout_ms, 1, 60_000)?;
            check_range("collector.batch_size", c.batch_size as u64, 1, 10_000)?;
            check_range(
                "collector.flush_interval_ms",
                c.flush_interval_ms,
                10,
                60_000,
            )?;
            check_range("collector.max_queue", c.max_queue as u64, 1, 1_000_000)?;
        }
        Ok(())
    }
}

fn validate_stream_health(t: &Thresholds) -> Result<(), ConfigError> {
    check_range("stream_health.min_deltas", t.min_deltas, 2, 100_000)?;
    check_range("stream_health.pause_ms", t.pause_ms, 10, 60_000)?;
    check_range("stream_health.pace_factor", t.pace_factor, 2, 100)?;
    check_range("stream_health.burst_deltas", t.burst_deltas, 2, 100_000)?;
    check_range("stream_health.stall_ms", t.stall_ms, 100, 600_000)?;
    if !(t.buffered_share > 0.0 && t.buffered_share <= 1.0) {
        return Err(out_of_range(
            "stream_health.buffered_share",
            "must be above 0.0 and at most 1.0",
        ));
    }
    if !(t.bursty_share > 0.0 && t.bursty_share <= t.buffered_share) {
        return Err(out_of_range(
            "stream_health.bursty_share",
            "must be above 0.0 and at most stream_health.buffered_share",
        ));
    }
    Ok(())
}

fn out_of_range(field: &str, message: &str) -> ConfigError {
    ConfigError {
        field: field.to_string(),
        message: message.to_string(),
    }
}

fn check_range(field: &str, value: u64, min: u64, max: u64) -> Result<(), ConfigError> {
    if value < min || value > max {
        return Err(out_of_range(
            field,
            &format!("{value} is out of range {min}..={max}"),
        ));
    }
    Ok(())
}

/// A count for a usize field; too large for this target stays too large
/// (and fails its range check) instead of wrapping.
fn saturate(n: u64) -> usize {
    usize::try_from(n).unwrap_or(usize::MAX)
}

/// Reads typed fields, keeping the first error with the field's path (the
/// JSON reader itself only says that something failed).
#[derive(Default)]
struct Reader {
    error: Option<ConfigError>,
}

impl Reader {
    fn fail<T>(&mut self, field: &str, message: &str) -> Result<T, ParseError> {
        if self.error.is_none() {
            self.error = Some(ConfigError {
                field: field.to_string(),
                message: message.to_string(),
            });
        }
        Err(ParseError)
    }

    fn unknown(&mut self, prefix: &str, key: &[u8]) -> Result<(), ParseError> {
        let name = String::from_utf8_lossy(key);
        self.fail(
            &format!("{prefix}{name}"),
            &format!("unknown field `{name}`"),
        )
    }

    fn string(&mut self, j: &mut Json<'_>, field: &str) -> Result<String, ParseError> {
        match j.peek_string().then(|| j.str()) {
            Some(Ok(s)) => Ok(s.into_owned()),
            _ => self.fail(field, "expected a string"),
        }
    }

    fn boolean(&mut self, j: &mut Json<'_>, field: &str) -> Result<bool, ParseError> {
        match j.opt_bool() {
            Ok(Some(b)) => Ok(b),
            _ => self.fail(field, "expected true or false"),
        }
    }

    fn integer(&mut self, j: &mut Json<'_>, field: &str) -> Result<u64, ParseError> {
        match j.opt_u64() {
            Ok(Some(n)) => Ok(n),
            _ => self.fail(field, "expected a non-negative integer"),
        }
    }

    fn number(&mut self, j: &mut Json<'_>, field: &str) -> Result<f64, ParseError> {
        match j.opt_f64() {
            Ok(Some(n)) => Ok(n),
            _ => self.fail(field, "expected a number"),
        }
    }

    /// A list of up to 32 non-empty names, lowercased (header names are
    /// case-insensitive).
    fn names(&mut self, j: &mut Json<'_>, field: &str) -> Result<Vec<String>, ParseError> {
        if !j.peek_array() {
            return self.fail(field, "expected a list of names");
        }
        let mut names = Vec::new();
        j.array(|i, j| {
            let name = self.string(j, &format!("{field}[{i}]"))?;
            if name.is_empty() || name.starts_with(':') || names.len() >= 32 {
                return self.fail(
                    &format!("{field}[{i}]"),
                    "expected a plain name (at most 32 of them)",
                );
            }
            names.push(name.to_ascii_lowercase());
            Ok(())
        })?;
        Ok(names)
    }

    fn collector(&mut self, j: &mut Json<'_>) -> Result<CollectorConfig, ParseError> {
        let mut cluster = None;
        let mut path = None;
        let mut c = CollectorConfig {
            cluster: String::new(),
            path: default_path(),
            authority: default_authority(),
            format: ExportFormat::Json,
            headers: BTreeMap::new(),
            timeout_ms: default_timeout_ms(),
            batch_size: default_batch_size(),
            flush_interval_ms: default_flush_interval_ms(),
            max_queue: default_max_queue(),
        };
        if !j.peek_object() {
            return self.fail("collector", "expected an object");
        }
        j.object(|key, j| match key {
            b"cluster" => {
                cluster = Some(self.string(j, "collector.cluster")?);
                Ok(())
            }
            b"path" => {
                path = Some(self.string(j, "collector.path")?);
                Ok(())
            }
            b"authority" => {
                c.authority = self.string(j, "collector.authority")?;
                Ok(())
            }
            b"format" => {
                c.format = match self.string(j, "collector.format")?.as_str() {
                    "json" => ExportFormat::Json,
                    "otlp" => ExportFormat::Otlp,
                    _ => return self.fail("collector.format", "expected \"json\" or \"otlp\""),
                };
                Ok(())
            }
            b"headers" => {
                if !j.peek_object() {
                    return self.fail("collector.headers", "expected an object of strings");
                }
                j.object(|name, j| {
                    let name = String::from_utf8_lossy(name).to_ascii_lowercase();
                    let value = self.string(j, &format!("collector.headers.{name}"))?;
                    c.headers.insert(name, value);
                    Ok(())
                })
            }
            b"timeout_ms" => {
                c.timeout_ms = self.integer(j, "collector.timeout_ms")?;
                Ok(())
            }
            b"batch_size" => {
                c.batch_size = saturate(self.integer(j, "collector.batch_size")?);
                Ok(())
            }
            b"flush_interval_ms" => {
                c.flush_interval_ms = self.integer(j, "collector.flush_interval_ms")?;
                Ok(())
            }
            b"max_queue" => {
                c.max_queue = saturate(self.integer(j, "collector.max_queue")?);
                Ok(())
            }
            other => self.unknown("collector.", other),
        })?;
        // An OpenTelemetry Collector takes OTLP logs on /v1/logs.
        c.path = path.unwrap_or_else(|| match c.format {
            ExportFormat::Json => default_path(),
            ExportFormat::Otlp => "/v1/logs".to_string(),
        });
        match cluster {
            Some(name) => c.cluster = name,
            None => {
                return self.fail(
                    "collector.cluster",
                    "missing: the Envoy cluster of the collector",
                )
            }
        }
        Ok(c)
    }

    /// `{"model or prefix*": {"input": .., "output": .., "cache_read": ..,
    /// "cache_write": .., "reasoning_output": ..}}`, USD per million tokens;
    /// `input` and `output` required, every price finite and not negative.
    fn pricing(&mut self, j: &mut Json<'_>, pricing: &mut Pricing) -> Result<(), ParseError> {
        if !j.peek_object() {
            return self.fail("pricing", "expected an object of model prices");
        }
        j.object(|model, j| {
            let model = String::from_utf8_lossy(model).into_owned();
            let field = format!("pricing.{model}");
            if model.is_empty() || model == "*" {
                return self.fail(&field, "expected a model name or a prefix ending in *");
            }
            if !j.peek_object() {
                return self.fail(&field, "expected an object of prices");
            }
            let mut prices: [Option<f64>; 5] = [None; 5];
            const NAMES: [&str; 5] = [
                "input",
                "output",
                "cache_read",
                "cache_write",
                "reasoning_output",
            ];
            j.object(|key, j| {
                let Some(slot) = NAMES.iter().position(|n| n.as_bytes() == key) else {
                    return self.unknown(&format!("{field}."), key);
                };
                let name = format!("{field}.{}", NAMES.get(slot).copied().unwrap_or_default());
                let value = self.number(j, &name)?;
                if !(value.is_finite() && value >= 0.0) {
                    return self.fail(
                        &name,
                        "expected a price in USD per million tokens, not negative",
                    );
                }
                if let Some(p) = prices.get_mut(slot) {
                    *p = Some(value);
                }
                Ok(())
            })?;
            let [input, output, cache_read, cache_write, reasoning_output] = prices;
            let (Some(input), Some(output)) = (input, output) else {
                return self.fail(&field, "input and output prices are required");
            };
            pricing.insert(
                &model,
                Price {
                    input,
                    output,
                    cache_read,
                    cache_write,
                    reasoning_output,
                },
            );
            Ok(())
        })
    }

    fn stream_health(&mut self, j: &mut Json<'_>, t: &mut Thresholds) -> Result<(), ParseError> {
        if !j.peek_object() {
            return self.fail("stream_health", "expected an object");
        }
        j.object(|key, j| {
            let slot = match key {
                b"enabled" => {
                    t.enabled = self.boolean(j, "stream_health.enabled")?;
                    return Ok(());
                }
                b"min_deltas" => &mut t.min_deltas,
                b"pause_ms" => &mut t.pause_ms,
                b"pace_factor" => &mut t.pace_factor,
                b"burst_deltas" => &mut t.burst_deltas,
                b"stall_ms" => &mut t.stall_ms,
                b"buffered_share" => {
                    t.buffered_share = self.number(j, "stream_health.buffered_share")?;
                    return Ok(());
                }
                b"bursty_share" => {
                    t.bursty_share = self.number(j, "stream_health.bursty_share")?;
                    return Ok(());
                }
                other => return self.unknown("stream_health.", other),
            };
            let name = String::from_utf8_lossy(key);
            *slot = self.integer(j, &format!("stream_health.{name}"))?;
            Ok(())
        })
    }

    fn filter_state(&mut self, j: &mut Json<'_>) -> Result<FilterState, ParseError> {
        if !j.peek_object() {
            return self.fail("filter_state", "expected an object");
        }
        let mut state = FilterState::default();
        j.object(|key, j| match key {
            b"summary" => {
                state.summary = self.boolean(j, "filter_state.summary")?;
                Ok(())
            }
            b"content" => {
                state.content = self.boolean(j, "filter_state.content")?;
                Ok(())
            }
            other => self.unknown("filter_state.", other),
        })?;
        Ok(state)
    }

    fn metric_labels(&mut self, j: &mut Json<'_>) -> Result<MetricLabels, ParseError> {
        if !j.peek_object() {
            return self.fail("metric_labels", "expected an object");
        }
        let mut labels = MetricLabels::default();
        j.object(|key, j| match key {
            b"consumer_header" => {
                let field = "metric_labels.consumer_header";
                let name = self.string(j, field)?.to_ascii_lowercase();
                if name.is_empty() || name.starts_with(':') {
                    return self.fail(field, "expected a plain header name");
                }
                // A label is on every scrape: a credential must never be one.
                if listed(name.as_bytes(), &CREDENTIAL_HEADERS) {
                    return self.fail(
                        field,
                        &format!("`{name}` carries a credential and cannot be a label"),
                    );
                }
                labels.consumer_header = Some(name);
                Ok(())
            }
            b"route" => {
                labels.route = self.boolean(j, "metric_labels.route")?;
                Ok(())
            }
            b"upstream_cluster" => {
                labels.upstream_cluster = self.boolean(j, "metric_labels.upstream_cluster")?;
                Ok(())
            }
            other => self.unknown("metric_labels.", other),
        })?;
        Ok(labels)
    }

    fn capture(&mut self, j: &mut Json<'_>, capture: &mut CaptureConfig) -> Result<(), ParseError> {
        if !j.peek_object() {
            return self.fail("capture", "expected an object");
        }
        j.object(|key, j| match key {
            b"response_content" => {
                capture.response_content = self.boolean(j, "capture.response_content")?;
                Ok(())
            }
            b"request_content" => {
                capture.request_content = self.boolean(j, "capture.request_content")?;
                Ok(())
            }
            b"max_content_bytes" => {
                capture.max_content_bytes = saturate(self.integer(j, "capture.max_content_bytes")?);
                Ok(())
            }
            b"max_decoded_bytes" => {
                capture.max_decoded_bytes = saturate(self.integer(j, "capture.max_decoded_bytes")?);
                Ok(())
            }
            b"request_headers" => {
                capture.request_headers = self.names(j, "capture.request_headers")?;
                Ok(())
            }
            b"redact_headers" => {
                capture.redact_headers = self.names(j, "capture.redact_headers")?;
                Ok(())
            }
            b"redact_fields" => {
                capture.redact_fields = self.names(j, "capture.redact_fields")?;
                Ok(())
            }
            b"timeline" => {
                capture.timeline = self.boolean(j, "capture.timeline")?;
                Ok(())
            }
            b"timeline_max_entries" => {
                capture.timeline_max_entries =
                    saturate(self.integer(j, "capture.timeline_max_entries")?);
                Ok(())
            }
            other => self.unknown("capture.", other),
        })
    }
}

#[cfg(test)]
mod tests;
