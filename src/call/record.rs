//! One call's facts and timings, filled in by the provider adapters as the
//! stream passes, and turned into the summary when the call ends.
//!
//! Times are microseconds since the Unix epoch, passed in by the caller.

use crate::call::cost::{cost_micro_usd, Price};
use crate::call::estimate::TokenEstimator;
use crate::call::health::{HealthReport, Phase, StreamHealth, Thresholds};
use crate::call::histogram::LogHistogram;
use crate::call::timeline::Timeline;
use serde::Serialize;

/// The version of the summary's shape, in every summary (`schema_version`).
/// Bump it with each change of a field's name, type or meaning, and say what
/// changed in CHANGELOG.md.
pub const SCHEMA_VERSION: u32 = 3;

/// How many finish reasons (one per choice) a summary keeps.
const MAX_FINISH_REASONS: usize = 16;
/// Longest error message kept.
const MAX_ERROR_MESSAGE_BYTES: usize = 1024;
/// Tool calls kept per call; more are counted in `tool_calls_dropped`.
const MAX_TOOL_CALLS: usize = 64;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Completed,
    HttpError,
    UpstreamReset,
    ClientCancelled,
    /// A provider error inside a stream, or an end that was not read.
    Incomplete,
    /// The stream closed cleanly without its end marker (`[DONE]`,
    /// `message_stop`, `response.completed`...).
    Truncated,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum UsageSource {
    Reported,
    Estimated,
    None,
}

/// One of the usage counts a provider reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UsageCount {
    Input,
    Output,
    CacheRead,
    /// Anthropic's `cache_creation_input_tokens`.
    CacheWrite,
    ReasoningOutput,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    pub input_tokens: Option<u64>,
    pub output_tokens: Option<u64>,
    pub cache_read_input_tokens: Option<u64>,
    pub cache_write_input_tokens: Option<u64>,
    pub reasoning_output_tokens: Option<u64>,
}

/// Text kept up to a byte cap, cut on a character boundary.
#[derive(Debug, Default)]
pub struct CappedText {
    text: String,
    truncated: bool,
}

impl CappedText {
    pub fn push(&mut self, piece: &str, cap: usize) {
        if self.truncated {
            return;
        }
        let room = cap.saturating_sub(self.text.len());
        if piece.len() <= room {
            self.text.push_str(piece);
            return;
        }
        let mut cut = room;
        while !piece.is_char_boundary(cut) {
            cut -= 1; // terminates: 0 is a char boundary
        }
        self.text.push_str(piece.get(..cut).unwrap_or_default());
        self.truncated = true;
    }

    pub fn as_str(&self) -> &str {
        &self.text
    }

    pub fn truncated(&self) -> bool {
        self.truncated
    }
}

/// One tool call assembled from deltas. `key` is the provider's position of
/// the call in the response (choice and index, content block, output item).
#[derive(Debug)]
pub struct ToolCall {
    key: u64,
    pub id: String,
    pub name: String,
    pub arguments: CappedText,
}

#[derive(Debug, Serialize)]
pub struct ToolCallSummary<'a> {
    pub id: &'a str,
    pub name: &'a str,
    pub arguments: &'a str,
}

/// Request-side facts, noted when the request passes.
#[derive(Debug, Default, Clone)]
pub struct RequestInfo {
    /// Unique per summary, given by the shell: what a collector de-duplicates
    /// on (export is at-least-once).
    pub summary_id: Option<String>,
    pub id: Option<String>,
    pub trace_id: Option<String>,
    pub method: Option<String>,
    pub path: Option<String>,
    pub model: Option<String>,
    pub stream_requested: Option<bool>,
    pub messages: Option<u64>,
    pub max_tokens: Option<u64>,
    pub tools_offered: Option<u64>,
    pub estimated_input_tokens: Option<u64>,
    pub content: Option<String>,
    /// `capture.request_headers`, as (name, value or `[redacted]`).
    pub headers: Vec<(String, String)>,
}

#[derive(Debug)]
pub struct CallRecord {
    pub request: RequestInfo,
    pub start_us: u64,
    pub max_content_bytes: usize,
    pub capture_content: bool,

    pub provider: &'static str,
    pub api: Option<&'static str>,
    pub status: Option<u16>,
    pub stream: bool,
    pub response_model: Option<String>,
    pub response_id: Option<String>,
    pub finish_reasons: Vec<String>,
    usage: Usage,
    pub error_message: Option<String>,
    /// The stream said it was done (`[DONE]`, a terminal event).
    saw_end_marker: bool,

    pub first_byte_us: Option<u64>,
    pub first_token_us: Option<u64>,
    first_tool_us: Option<u64>,
    last_token_us: Option<u64>,
    pub end_us: Option<u64>,

    pub events: u64,
    pub chunks: u64,
    pub bytes: u64,
    pub parse_errors: u64,

    gaps: LogHistogram,
    /// Event streams only: how the deltas arrived, judged as they pass.
    health: Option<StreamHealth>,
    health_report: Option<HealthReport>,
    /// `capture.timeline`: every delta's arrival, bounded.
    timeline: Option<Timeline>,
    /// The model's price (`pricing`) and whether the format's input count
    /// includes its cached part; set when the call ends.
    price: Option<(Price, bool)>,
    content: CappedText,
    reasoning: CappedText,
    tool_calls: Vec<ToolCall>,
    tool_calls_dropped: u64,
    /// Output tokens estimated from the text as it passed, for calls whose
    /// provider reports no usage.
    output_estimate: TokenEstimator,
    /// `content-encoding` the filter could not decode (the bytes still flowed).
    pub undecoded_encoding: Option<String>,
    /// The compressed body inflated past `capture.max_decoded_bytes`: the rest
    /// of the copy was not decoded (the bytes still flowed).
    pub decode_capped: bool,
}

impl CallRecord {
    pub fn new(start_us: u64, capture_content: bool, max_content_bytes: usize) -> Self {
        CallRecord {
            request: RequestInfo::default(),
            start_us,
            max_content_bytes,
            capture_content,
            provider: "unknown",
            api: None,
            status: None,
            stream: false,
            response_model: None,
            response_id: None,
            finish_reasons: Vec::new(),
            usage: Usage::default(),
            error_message: None,
            saw_end_marker: false,
            first_byte_us: None,
            first_token_us: None,
            first_tool_us: None,
            last_token_us: None,
            end_us: None,
            events: 0,
            chunks: 0,
            bytes: 0,
            parse_errors: 0,
            gaps: LogHistogram::default(),
            health: None,
            health_report: None,
            timeline: None,
            price: None,
            content: CappedText::default(),
            reasoning: CappedText::default(),
            tool_calls: Vec::new(),
            tool_calls_dropped: 0,
            output_estimate: TokenEstimator::default(),
            undecoded_encoding: None,
            decode_capped: false,
        }
    }

    pub fn note_chunk(&mut self, len: usize, now_us: u64) {
        if len == 0 {
            return;
        }
        self.chunks += 1;
        self.bytes += len as u64;
        self.first_byte_us.get_or_insert(now_us);
    }

    /// An event-stream response started: judge how its deltas arrive.
    /// `phased`: the format's deltas are told apart (false for an unknown one).
    pub fn start_stream_health(&mut self, limits: Thresholds, phased: bool, now_us: u64) {
        let mut health = StreamHealth::new(limits, phased, self.start_us);
        health.response_started(now_us);
        self.health = Some(health);
    }

    /// The price of the call's model, for `cost_usd`.
    pub fn set_price(&mut self, price: Price, input_includes_cached: bool) {
        self.price = Some((price, input_includes_cached));
    }

    /// `capture.timeline` on an event stream: record each delta's arrival.
    pub fn start_timeline(&mut self, max_entries: usize, pause_us: u64) {
        self.timeline = Some(Timeline::new(self.start_us, max_entries, pause_us));
    }

    pub fn health_mut(&mut self) -> Option<&mut StreamHealth> {
        self.health.as_mut()
    }

    pub fn health(&self) -> Option<&StreamHealth> {
        self.health.as_ref()
    }

    /// Judges the stream once it ended (before its summary is made).
    pub fn finish_health(&mut self, end_us: u64) {
        let end_marker = self.saw_end_marker;
        if let Some(health) = self.health.as_mut() {
            self.health_report = Some(health.report(end_us, end_marker));
        }
    }

    /// An event that carries no progress (Anthropic `ping`).
    pub fn note_keepalive(&mut self) {
        if let Some(health) = self.health.as_mut() {
            health.on_keepalives(1);
        }
    }

    /// Something the model produced: answer text, reasoning or a tool call.
    /// Counts for time to first token, the gaps between tokens and the
    /// stream's health.
    pub fn note_token_activity(&mut self, now_us: u64, phase: Phase, bytes: usize) {
        if let Some(last) = self.last_token_us {
            self.gaps.record(now_us.saturating_sub(last));
        }
        self.first_token_us.get_or_insert(now_us);
        self.last_token_us = Some(now_us);
        if phase == Phase::ToolArguments {
            self.first_tool_us.get_or_insert(now_us);
        }
        if let Some(health) = self.health.as_mut() {
            health.on_delta(phase);
        }
        if let Some(timeline) = self.timeline.as_mut() {
            // The chunk being read is the latest one counted.
            timeline.record(now_us, self.chunks.saturating_sub(1), bytes, phase);
        }
    }

    pub fn push_content(&mut self, text: &str, now_us: u64) {
        if text.is_empty() {
            return;
        }
        self.note_token_activity(now_us, Phase::Content, text.len());
        self.output_estimate.feed(text);
        if self.capture_content {
            self.content.push(text, self.max_content_bytes);
        }
    }

    /// Reasoning ("thinking") text: a token for TTFT, kept apart from the answer.
    pub fn push_reasoning(&mut self, text: &str, now_us: u64) {
        if text.is_empty() {
            return;
        }
        self.note_token_activity(now_us, Phase::Reasoning, text.len());
        self.output_estimate.feed(text);
        if self.capture_content {
            self.reasoning.push(text, self.max_content_bytes);
        }
    }

    /// A tool call starts or its id/name arrive. Counts as model output.
    pub fn tool_call_begin(&mut self, key: u64, id: Option<&str>, name: Option<&str>, now_us: u64) {
        self.note_token_activity(now_us, Phase::ToolArguments, name.map_or(0, str::len));
        if let Some(name) = name {
            self.output_estimate.feed(name);
        }
        let Some(call) = self.tool_call_mut(key) else {
            return;
        };
        if let Some(id) = id.filter(|id| !id.is_empty()) {
            if call.id.is_empty() {
                call.id = id.chars().take(256).collect();
            }
        }
        if let Some(name) = name.filter(|n| !n.is_empty()) {
            if call.name.is_empty() {
                call.name = name.chars().take(256).collect();
            }
        }
    }

    /// A piece of a tool call's arguments (JSON text, streamed in pieces).
    pub fn tool_call_arguments(&mut self, key: u64, piece: &str, now_us: u64) {
        if piece.is_empty() {
            return;
        }
        self.note_token_activity(now_us, Phase::ToolArguments, piece.len());
        self.output_estimate.feed(piece);
        let cap = self.max_content_bytes;
        if let Some(call) = self.tool_call_mut(key) {
            call.arguments.push(piece, cap);
        }
    }

    /// Tool calls seen so far (kept or dropped): the next one's key, for
    /// formats that send each call whole without an index of its own.
    pub fn tool_call_count(&self) -> usize {
        self.tool_calls.len() + self.tool_calls_dropped as usize
    }

    fn tool_call_mut(&mut self, key: u64) -> Option<&mut ToolCall> {
        // Few calls per response: a linear search beats a map here.
        if let Some(pos) = self.tool_calls.iter().position(|c| c.key == key) {
            return self.tool_calls.get_mut(pos);
        }
        if self.tool_calls.len() >= MAX_TOOL_CALLS {
            self.tool_calls_dropped += 1;
            return None;
        }
        self.tool_calls.push(ToolCall {
            key,
            id: String::new(),
            name: String::new(),
            arguments: CappedText::default(),
        });
        self.tool_calls.last_mut()
    }

    /// Replaces a tool call's arguments with the complete text (non-streaming
    /// bodies, or a provider's `done` event).
    pub fn tool_call_set_arguments(&mut self, key: u64, arguments: &str) {
        let cap = self.max_content_bytes;
        if let Some(call) = self.tool_call_mut(key) {
            if call.arguments.as_str().is_empty() {
                call.arguments.push(arguments, cap);
            }
        }
    }

    /// A usage count the provider reported; the latest report wins.
    pub fn set_usage(&mut self, which: UsageCount, n: u64) {
        let slot = match which {
            UsageCount::Input => &mut self.usage.input_tokens,
            UsageCount::Output => &mut self.usage.output_tokens,
            UsageCount::CacheRead => &mut self.usage.cache_read_input_tokens,
            UsageCount::CacheWrite => &mut self.usage.cache_write_input_tokens,
            UsageCount::ReasoningOutput => &mut self.usage.reasoning_output_tokens,
        };
        *slot = Some(n);
    }

    pub fn usage(&self) -> &Usage {
        &self.usage
    }

    /// The stream said it was done (`[DONE]`, `message_stop`, a terminal event).
    pub fn mark_end(&mut self) {
        self.saw_end_marker = true;
    }

    pub fn saw_end_marker(&self) -> bool {
        self.saw_end_marker
    }

    pub fn set_response_model(&mut self, model: &str) {
        if self.response_model.is_none() && !model.is_empty() {
            self.response_model = Some(model.to_string());
        }
    }

    pub fn set_response_id(&mut self, id: &str) {
        if self.response_id.is_none() && !id.is_empty() {
            self.response_id = Some(id.to_string());
        }
    }

    pub fn add_finish_reason(&mut self, reason: &str) {
        if self.finish_reasons.len() < MAX_FINISH_REASONS {
            self.finish_reasons.push(reason.to_string());
        }
    }

    pub fn set_error(&mut self, message: &str) {
        let mut capped = CappedText::default();
        capped.push(message, MAX_ERROR_MESSAGE_BYTES);
        self.error_message = Some(capped.text);
    }

    pub fn content(&self) -> &str {
        self.content.as_str()
    }

    /// Output tokens after the first over the time from the first to the
    /// last delta; None below 2 tokens or 50 ms (too little to measure).
    fn output_tokens_per_s(&self, output_tokens: Option<u64>) -> Option<f64> {
        let span_us = self.last_token_us?.saturating_sub(self.first_token_us?);
        let tokens = output_tokens.filter(|&n| n >= 2)?;
        (span_us >= 50_000).then(|| {
            let per_s = (tokens - 1) as f64 * 1e6 / span_us as f64;
            (per_s * 10.0).round() / 10.0
        })
    }

    pub fn summary(&self, outcome: Outcome) -> Summary<'_> {
        let ms_since_start =
            |t: Option<u64>| t.map(|t| micros_to_ms(t.saturating_sub(self.start_us)));
        let reported = self.usage.input_tokens.is_some() || self.usage.output_tokens.is_some();
        let (input_tokens, output_tokens, usage_source) = if reported {
            (
                self.usage.input_tokens,
                self.usage.output_tokens,
                UsageSource::Reported,
            )
        } else if self.request.estimated_input_tokens.is_some() || self.output_estimate.tokens() > 0
        {
            let output = Some(self.output_estimate.tokens());
            (
                self.request.estimated_input_tokens,
                output,
                UsageSource::Estimated,
            )
        } else {
            (None, None, UsageSource::None)
        };
        let cost_micro_usd = self.price.and_then(|(price, includes_cached)| {
            let usage = match usage_source {
                UsageSource::Reported => self.usage,
                _ => Usage {
                    input_tokens,
                    output_tokens,
                    ..Usage::default()
                },
            };
            cost_micro_usd(&price, &usage, includes_cached)
        });
        Summary {
            schema_version: SCHEMA_VERSION,
            summary_id: self.request.summary_id.as_deref(),
            id: self.request.id.as_deref(),
            trace_id: self.request.trace_id.as_deref(),
            start_unix_ms: self.start_us / 1000,
            method: self.request.method.as_deref(),
            path: self.request.path.as_deref(),
            status: self.status,
            provider: self.provider,
            api: self.api,
            stream: self.stream,
            outcome,
            model: self.request.model.as_deref(),
            response_model: self.response_model.as_deref(),
            response_id: self.response_id.as_deref(),
            finish_reasons: &self.finish_reasons,
            input_tokens,
            output_tokens,
            usage_source,
            cache_read_input_tokens: self.usage.cache_read_input_tokens,
            cache_write_input_tokens: self.usage.cache_write_input_tokens,
            reasoning_output_tokens: self.usage.reasoning_output_tokens,
            cost_usd: cost_micro_usd.map(|micro| micro as f64 / 1e6),
            cost_estimated: cost_micro_usd.is_some() && usage_source == UsageSource::Estimated,
            cost_micro_usd,
            ttfb_ms: ms_since_start(self.first_byte_us),
            ttft_ms: ms_since_start(self.first_token_us),
            ttft_tool_ms: ms_since_start(self.first_tool_us),
            output_tokens_per_s: self.output_tokens_per_s(output_tokens),
            duration_ms: ms_since_start(self.end_us),
            events: self.events,
            chunks: self.chunks,
            bytes: self.bytes,
            max_gap_ms: self.gaps.max().map(micros_to_ms),
            gap_p50_ms: self.gaps.quantile(0.5).map(micros_to_ms),
            gap_p99_ms: self.gaps.quantile(0.99).map(micros_to_ms),
            content: self.capture_content.then(|| self.content.as_str()),
            content_truncated: self.content.truncated(),
            reasoning: (self.capture_content && !self.reasoning.as_str().is_empty())
                .then(|| self.reasoning.as_str()),
            tool_calls: self
                .tool_calls
                .iter()
                .map(|c| ToolCallSummary {
                    id: &c.id,
                    name: &c.name,
                    arguments: c.arguments.as_str(),
                })
                .collect(),
            tool_calls_dropped: self.tool_calls_dropped,
            request_messages: self.request.messages,
            request_max_tokens: self.request.max_tokens,
            request_tools: self.request.tools_offered,
            undecoded_encoding: self.undecoded_encoding.as_deref(),
            decode_capped: self.decode_capped,
            error: self.error_message.as_deref(),
            parse_errors: self.parse_errors,
            stream_health: self.health_report,
            timeline: self.timeline.as_ref(),
            request_content: self.request.content.as_deref(),
            request_headers: &self.request.headers,
        }
    }
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

fn is_false(b: &bool) -> bool {
    !*b
}

fn micros_to_ms(us: u64) -> f64 {
    us as f64 / 1000.0
}

/// The per-call summary of DESIGN.md, serialized as one JSON object.
#[derive(Debug, Serialize)]
pub struct Summary<'a> {
    /// The summary's shape; CHANGELOG.md says what each version changed.
    pub schema_version: u32,
    /// Stable across export retries; unique per call summarized.
    pub summary_id: Option<&'a str>,
    pub id: Option<&'a str>,
    pub trace_id: Option<&'a str>,
    pub start_unix_ms: u64,
    pub method: Option<&'a str>,
    pub path: Option<&'a str>,
    pub status: Option<u16>,
    pub provider: &'a str,
    pub api: Option<&'a str>,
    pub stream: bool,
    pub outcome: Outcome,
    pub model: Option<&'a str>,
    pub response_model: Option<&'a str>,
    pub response_id: Option<&'a str>,
    pub finish_reasons: &'a [String],
    pub input_tokens: Option<u64>,
    pub output_tokens: Option<u64>,
    pub usage_source: UsageSource,
    pub cache_read_input_tokens: Option<u64>,
    /// Anthropic's `cache_creation_input_tokens`, where reported.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cache_write_input_tokens: Option<u64>,
    pub reasoning_output_tokens: Option<u64>,
    /// At the `pricing` of the model; null when it has none.
    pub cost_usd: Option<f64>,
    /// The cost was reckoned from estimated token counts. Absent unless true.
    #[serde(skip_serializing_if = "is_false")]
    pub cost_estimated: bool,
    /// The same cost in micro-dollars (rounded once, per call), for counters.
    #[serde(skip)]
    pub cost_micro_usd: Option<u64>,
    pub ttfb_ms: Option<f64>,
    pub ttft_ms: Option<f64>,
    /// The first tool-call delta.
    pub ttft_tool_ms: Option<f64>,
    pub output_tokens_per_s: Option<f64>,
    pub duration_ms: Option<f64>,
    pub events: u64,
    pub chunks: u64,
    pub bytes: u64,
    pub max_gap_ms: Option<f64>,
    pub gap_p50_ms: Option<f64>,
    pub gap_p99_ms: Option<f64>,
    pub content: Option<&'a str>,
    pub content_truncated: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reasoning: Option<&'a str>,
    pub tool_calls: Vec<ToolCallSummary<'a>>,
    #[serde(skip_serializing_if = "is_zero")]
    pub tool_calls_dropped: u64,
    pub request_messages: Option<u64>,
    pub request_max_tokens: Option<u64>,
    pub request_tools: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub undecoded_encoding: Option<&'a str>,
    /// Absent unless true, so summaries of calls it never touches keep their shape.
    #[serde(skip_serializing_if = "is_false")]
    pub decode_capped: bool,
    pub error: Option<&'a str>,
    pub parse_errors: u64,
    /// Null for a response that is not an event stream.
    pub stream_health: Option<HealthReport>,
    /// `capture.timeline`: null when off or not an event stream.
    pub timeline: Option<&'a Timeline>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request_content: Option<&'a str>,
    #[serde(
        skip_serializing_if = "<[_]>::is_empty",
        serialize_with = "pairs_as_map"
    )]
    pub request_headers: &'a [(String, String)],
}

fn pairs_as_map<S: serde::Serializer>(
    pairs: &&[(String, String)],
    serializer: S,
) -> Result<S::Ok, S::Error> {
    use serde::ser::SerializeMap;
    let mut map = serializer.serialize_map(Some(pairs.len()))?;
    for (name, value) in pairs.iter() {
        map.serialize_entry(name, value)?;
    }
    map.end()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn capped_text_cuts_on_char_boundary() {
        let mut t = CappedText::default();
        t.push("ab", 5);
        t.push("éé", 5); // 4 bytes, room for 3: keeps one é
        assert_eq!(t.as_str(), "abé");
        assert!(t.truncated());
        t.push("more", 100);
        assert_eq!(t.as_str(), "abé");
    }

    #[test]
    fn timings_are_relative_to_start() {
        let mut r = CallRecord::new(1_000_000, true, 100);
        r.note_chunk(10, 1_050_000);
        r.push_content("", 1_060_000); // empty delta: not a token
        r.push_content("a", 1_100_000);
        r.push_content("b", 1_150_000);
        r.push_content("c", 1_250_000);
        r.end_us = Some(1_300_000);
        let s = r.summary(Outcome::Completed);
        assert_eq!(s.ttfb_ms, Some(50.0));
        assert_eq!(s.ttft_ms, Some(100.0));
        assert_eq!(s.duration_ms, Some(300.0));
        assert_eq!(s.max_gap_ms, Some(100.0));
        assert_eq!(s.content, Some("abc"));
        assert_eq!(s.start_unix_ms, 1000);
    }

    #[test]
    fn content_not_captured_when_disabled() {
        let mut r = CallRecord::new(0, false, 100);
        r.push_content("secret", 10);
        let s = r.summary(Outcome::Completed);
        assert_eq!(s.content, None);
        assert_eq!(s.ttft_ms, Some(0.01));
    }
}
