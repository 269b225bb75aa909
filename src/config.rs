//! Plugin configuration: the JSON in the Wasm filter's `configuration`.
//!
//! Every field has a default except `collector.cluster`. Unknown fields, wrong
//! types and out-of-range values are refused with an error naming the field, so
//! Envoy refuses the config instead of running with a guess.

use serde::Deserialize;
use std::collections::BTreeMap;
use std::fmt;

/// Header names that can carry a credential. They are never copied into a
/// summary, a log line or filter state, whatever the configuration says.
pub const CREDENTIAL_HEADERS: [&str; 5] = [
    "authorization",
    "x-api-key",
    "api-key",
    "cookie",
    "proxy-authorization",
];

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Where summaries are exported. Without it the filter still writes
    /// filter state and stats.
    #[serde(default)]
    pub collector: Option<CollectorConfig>,
    #[serde(default)]
    pub capture: CaptureConfig,
    /// Fraction of calls summarized, 0.0 to 1.0. Default 1.0.
    #[serde(default = "default_sample_rate")]
    pub sample_rate: f64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ExportFormat {
    /// A JSON array of summaries per POST.
    Json,
    /// OTLP/HTTP JSON logs (not implemented yet: refused at configure time).
    Otlp,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CollectorConfig {
    /// Envoy cluster name of the collector. Required.
    pub cluster: String,
    /// Default `/v1/calls`.
    #[serde(default = "default_path")]
    pub path: String,
    /// `:authority` of the export requests. Default `streamtap-collector`.
    #[serde(default = "default_authority")]
    pub authority: String,
    /// Default `json`.
    #[serde(default = "default_format")]
    pub format: ExportFormat,
    /// Extra request headers for the collector (e.g. its own credential).
    /// Sent with each export, never logged.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// Timeout of one export request. Default 2000, 1..=60000.
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: u64,
    /// Summaries per POST. Default 64, 1..=10000.
    #[serde(default = "default_batch_size")]
    pub batch_size: usize,
    /// Longest a summary waits in the queue before a flush. Default 500, 10..=60000.
    #[serde(default = "default_flush_interval_ms")]
    pub flush_interval_ms: u64,
    /// Summaries held per worker while the collector is slow or down; beyond
    /// it the oldest are dropped and counted. Default 10000, 1..=1000000.
    #[serde(default = "default_max_queue")]
    pub max_queue: usize,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CaptureConfig {
    /// Assemble the answer text into `content`. Default true.
    #[serde(default = "default_true")]
    pub response_content: bool,
    /// Keep the request body in the summary. Default false: prompts are sensitive.
    #[serde(default)]
    pub request_content: bool,
    /// Cap of each captured text. Default 65536, 0..=16777216.
    #[serde(default = "default_max_content_bytes")]
    pub max_content_bytes: usize,
}

impl Default for CaptureConfig {
    fn default() -> Self {
        CaptureConfig {
            response_content: true,
            request_content: false,
            max_content_bytes: default_max_content_bytes(),
        }
    }
}

impl Default for Config {
    fn default() -> Self {
        Config {
            collector: None,
            capture: CaptureConfig::default(),
            sample_rate: default_sample_rate(),
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
fn default_format() -> ExportFormat {
    ExportFormat::Json
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
fn default_true() -> bool {
    true
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
        let de = &mut serde_json::Deserializer::from_slice(bytes);
        let config: Config = serde_path_to_error::deserialize(de).map_err(|err| {
            let path = err.path().to_string();
            let inner = err.into_inner();
            let message = inner.to_string();
            // At the top level the path is "."; serde's message names the field.
            let field = match unknown_field_name(&message) {
                Some(name) if path == "." => name.to_string(),
                _ => path,
            };
            ConfigError { field, message }
        })?;
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
            if c.format == ExportFormat::Otlp {
                return Err(out_of_range(
                    "collector.format",
                    "\"otlp\" is not supported yet; use \"json\"",
                ));
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

fn unknown_field_name(message: &str) -> Option<&str> {
    let rest = message.strip_prefix("unknown field `")?;
    rest.split('`').next()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_config_is_all_defaults() {
        let c = Config::parse(b"").unwrap();
        assert_eq!(c, Config::default());
        assert!(c.collector.is_none());
        assert!(c.capture.response_content);
        assert!(!c.capture.request_content);
        assert_eq!(c.capture.max_content_bytes, 65536);
    }

    #[test]
    fn collector_defaults() {
        let c = Config::parse(br#"{"collector":{"cluster":"c"}}"#).unwrap();
        let col = c.collector.unwrap();
        assert_eq!(col.path, "/v1/calls");
        assert_eq!(col.authority, "streamtap-collector");
        assert_eq!(col.format, ExportFormat::Json);
        assert_eq!(col.timeout_ms, 2000);
        assert_eq!(col.batch_size, 64);
        assert_eq!(col.flush_interval_ms, 500);
        assert_eq!(col.max_queue, 10000);
    }

    #[test]
    fn full_design_example_parses_except_otlp() {
        let json = br#"{
          "collector": {"cluster": "streamtap_collector", "path": "/v1/calls",
            "authority": "streamtap-collector", "format": "json",
            "headers": {"authorization": "Bearer x"}, "timeout_ms": 2000,
            "batch_size": 64, "flush_interval_ms": 500, "max_queue": 10000},
          "capture": {"response_content": true, "request_content": false, "max_content_bytes": 65536},
          "sample_rate": 1.0 }"#;
        let c = Config::parse(json).unwrap();
        assert_eq!(c.collector.unwrap().headers["authorization"], "Bearer x");
    }

    #[test]
    fn unknown_field_is_named_with_its_path() {
        let e = Config::parse(br#"{"collector":{"cluster":"c","bogus_knob":1}}"#).unwrap_err();
        assert_eq!(e.field, "collector.bogus_knob");
        let e = Config::parse(br#"{"sampel_rate":1}"#).unwrap_err();
        assert_eq!(e.field, "sampel_rate");
        assert!(e.to_string().contains("sampel_rate"), "{e}");
    }

    #[test]
    fn wrong_type_is_named() {
        let e = Config::parse(br#"{"collector":{"cluster":"c","timeout_ms":"fast"}}"#).unwrap_err();
        assert_eq!(e.field, "collector.timeout_ms");
        let e = Config::parse(br#"{"capture":{"response_content":"yes"}}"#).unwrap_err();
        assert_eq!(e.field, "capture.response_content");
    }

    #[test]
    fn missing_cluster_is_named() {
        let e = Config::parse(br#"{"collector":{}}"#).unwrap_err();
        assert!(e.message.contains("cluster"), "{e}");
    }

    #[test]
    fn out_of_range_values_are_named() {
        for (json, field) in [
            (r#"{"sample_rate":1.5}"#, "sample_rate"),
            (
                r#"{"collector":{"cluster":"c","batch_size":0}}"#,
                "collector.batch_size",
            ),
            (
                r#"{"collector":{"cluster":"c","timeout_ms":0}}"#,
                "collector.timeout_ms",
            ),
            (
                r#"{"collector":{"cluster":"","path":"/x"}}"#,
                "collector.cluster",
            ),
            (
                r#"{"collector":{"cluster":"c","path":"x"}}"#,
                "collector.path",
            ),
            (
                r#"{"collector":{"cluster":"c","format":"otlp"}}"#,
                "collector.format",
            ),
            (
                r#"{"collector":{"cluster":"c","format":"xml"}}"#,
                "collector.format",
            ),
        ] {
            let e = Config::parse(json.as_bytes()).unwrap_err();
            assert_eq!(e.field, field, "{json}: {e}");
        }
    }

    #[test]
    fn not_json_is_refused() {
        let e = Config::parse(b"{not json").unwrap_err();
        assert!(!e.message.is_empty());
    }
}
