//! One call as it passes: the request facts, the response bytes routed to the
//! SSE decoder and the provider adapter, and the summary at the end.
//!
//! The shell calls these methods from its callbacks and always lets the bytes
//! go on; nothing here can hold a byte back.

use crate::call::cost::Pricing;
use crate::call::health::{Phase, Thresholds};
use crate::call::identity::trace_id_of;
use crate::call::record::{CallRecord, Outcome};
use crate::config::{is_credential_field, listed_owned};
use crate::provider::request::RequestScan;
use crate::provider::Api;
use crate::wire::decompress::{Encoding, Inflater, Progress};
use crate::wire::eventstream::{Frame, FrameDecoder};
use crate::wire::json;
use crate::wire::json_array::ElementDecoder;
use crate::wire::ndjson::{self, LineDecoder};
use crate::wire::sse::SseDecoder;
use std::rc::Rc;

/// Largest request body copied for `capture.request_content` (the facts are
/// read as the body passes, whatever its size).
pub const MAX_REQUEST_BODY_BYTES: usize = 1 << 20;
/// Largest non-streaming response body copied for parsing.
pub const MAX_JSON_BODY_BYTES: usize = 1 << 20;
/// Largest single SSE event decoded; a bigger one is counted and skipped.
pub const MAX_EVENT_BYTES: usize = 1 << 20;

#[derive(Debug, Clone, Copy)]
pub struct TapSettings {
    pub capture_response_content: bool,
    pub capture_request_content: bool,
    pub max_content_bytes: usize,
    /// Most bytes a compressed response is inflated to (`capture.max_decoded_bytes`).
    pub max_decoded_bytes: usize,
    /// How an event stream's arrival is judged (`stream_health`).
    pub health: Thresholds,
    /// `capture.timeline`: at most this many timeline entries; None: off.
    pub timeline_entries: Option<usize>,
}

#[derive(Debug)]
enum ResponseBody {
    /// Not yet known (no response headers seen).
    Pending,
    EventStream(SseDecoder),
    /// Newline-delimited JSON (Ollama's streams): a line is an event.
    Lines(LineDecoder),
    /// A JSON body read element by element (Gemini's streamed array, or one
    /// object): an element is an event.
    Elements(ElementDecoder),
    /// AWS event-stream frames (Bedrock): a frame is an event.
    Frames(FrameDecoder),
    /// A JSON body copied up to MAX_JSON_BODY_BYTES.
    Json {
        copy: Vec<u8>,
        overflow: bool,
    },
    /// Counted, not read (other content types, encoded bodies).
    Opaque,
}

/// What the shell needs when a call ends.
#[derive(Debug)]
pub struct Finished {
    pub summary_json: String,
    pub outcome: Outcome,
    pub ttft_ms: Option<u64>,
    pub events: u64,
    pub parse_errors: u64,
    /// The compressed body's copy was decoded only up to the cap: for the
    /// shell's `streamtap.decode_capped` counter.
    pub decode_capped: bool,
    /// `stream_health.verdict`, for event streams.
    pub verdict: Option<crate::call::health::Verdict>,
    /// The labels and values of the labelled stats.
    pub labels: CallLabels,
}

/// What the labelled stats of a finished call need besides `Finished`'s
/// own `ttft_ms` (`gen_ai.server.time_to_first_token`) and `verdict`.
#[derive(Debug, Clone, PartialEq)]
pub struct CallLabels {
    pub provider: &'static str,
    /// `gen_ai.operation.name`; None for an unknown format.
    pub operation: Option<&'static str>,
    /// The request's model, else the one that answered.
    pub model: Option<String>,
    pub outcome: &'static str,
    pub usage_source: &'static str,
    pub input_tokens: Option<u64>,
    pub output_tokens: Option<u64>,
    /// Reported only: estimates are never made of these.
    pub cache_read_input_tokens: Option<u64>,
    pub cache_write_input_tokens: Option<u64>,
    pub reasoning_output_tokens: Option<u64>,
    pub cost_micro_usd: Option<u64>,
    /// Whole call, ms (`gen_ai.client.operation.duration`).
    pub duration_ms: Option<u64>,
    /// First body chunk, ms (`gen_ai.client.operation.time_to_first_chunk`).
    pub ttfb_ms: Option<u64>,
    /// (duration − TTFT) / (output tokens − 1), µs
    /// (`gen_ai.server.time_per_output_token`); None below 2 tokens.
    pub time_per_output_token_us: Option<u64>,
}

/// One value per call: the time after the first token over the tokens after it.
pub fn time_per_output_token_us(
    duration_ms: Option<f64>,
    ttft_ms: Option<f64>,
    output_tokens: Option<u64>,
) -> Option<u64> {
    let tokens = output_tokens.filter(|&n| n >= 2)?;
    let after_first_ms = (duration_ms? - ttft_ms?).max(0.0);
    Some((after_first_ms * 1000.0 / (tokens - 1) as f64).round() as u64)
}

#[derive(Debug)]
pub struct CallTap {
    record: CallRecord,
    settings: TapSettings,
    api: Api,
    /// The request facts, read from each chunk as it passes.
    request_scan: RequestScan,
    /// A copy for `capture.request_content` only: redaction needs the whole body.
    request_body: Vec<u8>,
    request_body_overflow: bool,
    response: ResponseBody,
    /// Decodes a copy of a gzip/deflate body; None for identity.
    inflater: Option<Inflater>,
    redact_fields: Option<Rc<[String]>>,
    /// The config's `pricing`, shared by every call.
    pricing: Option<Rc<Pricing>>,
    finished: bool,
    outcome: Option<Outcome>,
    /// The compressed copy could not be decoded: the rest went unread.
    undecodable: bool,
    /// The path asks a `JSON_ELEMENTS` format for a stream (Gemini's
    /// `:streamGenerateContent` without `?alt=sse`).
    json_stream: bool,
}

impl CallTap {
    pub fn new(settings: TapSettings, start_us: u64) -> Self {
        CallTap {
            record: CallRecord::new(
                start_us,
                settings.capture_response_content,
                settings.max_content_bytes,
            ),
            settings,
            api: Api::Unknown,
            request_scan: RequestScan::new(),
            request_body: Vec::new(),
            request_body_overflow: false,
            response: ResponseBody::Pending,
            inflater: None,
            redact_fields: None,
            pricing: None,
            finished: false,
            outcome: None,
            undecodable: false,
            json_stream: false,
        }
    }

    pub fn record(&self) -> &CallRecord {
        &self.record
    }

    /// The finished call as an OTLP log record (for `format: "otlp"`).
    pub fn otlp_record(&self, now_us: u64) -> Option<String> {
        let outcome = self.outcome?;
        Some(crate::export::otlp::log_record(
            &self.record.summary(outcome),
            now_us,
        ))
    }

    /// True once a summary was made (it is made exactly once).
    pub fn is_finished(&self) -> bool {
        self.finished
    }

    /// The assembled answer text so far (capped).
    pub fn content(&self) -> &str {
        self.record.content()
    }

    pub fn on_request_headers(
        &mut self,
        method: Option<String>,
        path: Option<String>,
        request_id: Option<String>,
        traceparent: Option<&str>,
    ) {
        if let Some(p) = &path {
            self.api = Api::from_path(p);
            self.record.provider = self.api.provider();
            self.record.api = self.api.name();
            // Gemini and Vertex AI name it there (a body's `model` wins).
            self.record.request.model = self.api.model_from_path(p).map(|m| {
                let mut end = m.len().min(crate::provider::request::MAX_MODEL_BYTES);
                while !m.is_char_boundary(end) {
                    end -= 1;
                }
                m[..end].to_string()
            });
            self.json_stream = self.api.streams_json(p);
        }
        let request = &mut self.record.request;
        request.method = method;
        // The query string is never recorded: it can carry a credential
        // (Gemini's `?key=`, signed URLs' `sig`, `X-Amz-Signature`).
        request.path = path.map(|mut p| {
            if let Some(query) = p.find('?') {
                p.truncate(query);
            }
            p
        });
        request.id = request_id;
        request.trace_id = traceparent.and_then(trace_id_of);
    }

    /// The id the summary will carry (see `RequestInfo::summary_id`).
    pub fn set_summary_id(&mut self, id: String) {
        self.record.request.summary_id = Some(id);
    }

    pub fn on_request_body(&mut self, chunk: &[u8]) {
        self.request_scan.feed(chunk);
        if !self.settings.capture_request_content {
            return;
        }
        let room = MAX_REQUEST_BODY_BYTES.saturating_sub(self.request_body.len());
        if chunk.len() > room {
            self.request_body_overflow = true;
        }
        self.request_body
            .extend_from_slice(chunk.get(..chunk.len().min(room)).unwrap_or_default());
    }

    /// The request body is complete: take the facts the scan read, free the copy.
    pub fn on_request_end(&mut self) {
        let scan = std::mem::take(&mut self.request_scan);
        let body = std::mem::take(&mut self.request_body);
        if scan.is_empty() {
            return;
        }
        if let Some(fields) = scan.finish() {
            let request = &mut self.record.request;
            request.stream_requested = fields.stream;
            request.max_tokens = fields.max_tokens;
            request.tools_offered = fields.tools;
            request.messages = fields.messages;
            // An unknown format gets no estimate: nothing is guessed.
            if self.api != Api::Unknown {
                request.estimated_input_tokens = Some(fields.estimated_input_tokens());
            }
            if fields.model.is_some() {
                request.model = fields.model;
            }
        }
        if self.settings.capture_request_content && !self.request_body_overflow {
            // Only a body whose credential fields could be found and blanked
            // is kept; anything else is left out rather than risk a leak.
            let extra = self.redact_fields.clone();
            let redacted = json::redact(&body, &|key| {
                is_credential_field(key)
                    || extra
                        .as_deref()
                        .is_some_and(|extra| listed_owned(key, extra))
            });
            if let Some(text) = redacted {
                let mut capped = crate::call::record::CappedText::default();
                capped.push(&text, self.settings.max_content_bytes);
                self.record.request.content = Some(capped.as_str().to_string());
            }
        }
    }

    /// A request header the config asks to record (`capture.request_headers`),
    /// capped at 256 bytes.
    pub fn capture_request_header(&mut self, name: &str, value: Option<&[u8]>) {
        if let Some(value) = value {
            let text = String::from_utf8_lossy(value);
            let mut capped = crate::call::record::CappedText::default();
            capped.push(&text, 256);
            self.record
                .request
                .headers
                .push((name.to_string(), capped.as_str().to_string()));
        }
    }

    /// A configured header that may not be recorded: its presence, not its value.
    pub fn capture_request_header_redacted(&mut self, name: &str) {
        self.record
            .request
            .headers
            .push((name.to_string(), "[redacted]".to_string()));
    }

    /// Request-body field names to blank in captured request content, on top
    /// of `CREDENTIAL_FIELDS` (the config's `capture.redact_fields`).
    pub fn set_redact_fields(&mut self, fields: Rc<[String]>) {
        self.redact_fields = Some(fields);
    }

    /// The config's `pricing`: the summary then carries `cost_usd`.
    pub fn set_pricing(&mut self, pricing: Rc<Pricing>) {
        self.pricing = Some(pricing);
    }

    pub fn on_response_headers(
        &mut self,
        status: Option<u16>,
        content_type: Option<&str>,
        content_encoding: Option<&str>,
        now_us: u64,
    ) {
        self.record.status = status;
        let media_type = content_type
            .and_then(|ct| ct.split(';').next())
            .map(|mt| mt.trim_ascii().to_ascii_lowercase())
            .unwrap_or_default();
        // `media_type` is lowercase already: plain comparisons.
        let lines = ndjson::MEDIA_TYPES.contains(&media_type.as_str());
        let frames = media_type == "application/vnd.amazon.eventstream";
        let json = media_type == "application/json" || media_type.ends_with("+json");
        let elements = json && self.api.json_elements();
        self.record.stream = lines
            || frames
            || media_type == "text/event-stream"
            // An error answer is one body, not a stream.
            || (elements && self.json_stream && status.is_some_and(|s| s < 400));
        let encoding = Encoding::from_header(content_encoding);
        self.inflater = Inflater::new(&encoding, self.settings.max_decoded_bytes);
        let readable = match encoding {
            Encoding::Other(name) => {
                self.record.undecoded_encoding = Some(name);
                false
            }
            _ => true,
        };
        if let (true, Some(entries)) = (self.record.stream, self.settings.timeline_entries) {
            let pause_us = self.settings.health.pause_ms.saturating_mul(1000);
            self.record.start_timeline(entries, pause_us);
        }
        if self.record.stream && self.settings.health.enabled {
            let phased = self.api != Api::Unknown;
            self.record
                .start_stream_health(self.settings.health, phased, now_us);
        }
        self.response = if !readable {
            ResponseBody::Opaque
        } else if lines {
            ResponseBody::Lines(LineDecoder::new(MAX_EVENT_BYTES))
        } else if frames {
            ResponseBody::Frames(FrameDecoder::new(MAX_EVENT_BYTES))
        } else if elements {
            ResponseBody::Elements(ElementDecoder::new(MAX_EVENT_BYTES))
        } else if self.record.stream {
            ResponseBody::EventStream(SseDecoder::new(MAX_EVENT_BYTES))
        } else if json {
            ResponseBody::Json {
                copy: Vec::new(),
                overflow: false,
            }
        } else {
            ResponseBody::Opaque
        };
    }

    /// One response body chunk, exactly as it passes. Cost is proportional
    /// to the chunk.
    pub fn on_response_body(&mut self, chunk: &[u8], now_us: u64) {
        self.record.note_chunk(chunk.len(), now_us);
        let events_before = self.record.events;
        self.read_chunk(chunk, now_us);
        let keepalives = match &mut self.response {
            ResponseBody::EventStream(decoder) => decoder.take_comments(),
            _ => 0,
        };
        let events = self.record.events.saturating_sub(events_before);
        if let Some(health) = self.record.health_mut() {
            health.on_keepalives(keepalives);
            health.end_chunk(now_us, events);
        }
    }

    fn read_chunk(&mut self, chunk: &[u8], now_us: u64) {
        let api = self.api;
        let record = &mut self.record;
        let response = &mut self.response;
        match &mut self.inflater {
            None => read_body(response, api, record, chunk, now_us),
            Some(inflater) => {
                let decoded = inflater.feed(chunk, &mut |piece| {
                    read_body(response, api, record, piece, now_us)
                });
                match decoded {
                    Ok(Progress::Decoding) => {}
                    // Past the cap: stop reading, not an error. An event cut
                    // at the cap is dropped unread with the decoder.
                    Ok(Progress::Capped) => {
                        record.decode_capped = true;
                        self.inflater = None;
                        self.response = ResponseBody::Opaque;
                    }
                    // A copy that cannot be decoded: stop reading, count it.
                    Err(_) => {
                        record.parse_errors += 1;
                        self.undecodable = true;
                        self.inflater = None;
                        self.response = ResponseBody::Opaque;
                    }
                }
            }
        }
    }

    /// The response ended normally (end of stream or trailers).
    pub fn finish_at_end_of_stream(&mut self, now_us: u64) -> Option<Finished> {
        self.finish_at_end(None, now_us)
    }

    /// True when an ending call's status is one Envoy may have made up
    /// itself: the shell then reads `response.code_details` for `finish_at_end`.
    pub fn wants_code_details(&self) -> bool {
        self.record.status.is_some_and(|s| s >= 500)
    }

    /// The response ended normally; `code_details` (when the shell read them)
    /// tell Envoy's own 503 for an upstream that reset before answering from
    /// an answer of the upstream's.
    pub fn finish_at_end(&mut self, code_details: Option<&str>, now_us: u64) -> Option<Finished> {
        if self.finished {
            return None;
        }
        self.drain_response(now_us);
        let status = self.record.status.unwrap_or(0);
        let outcome = if code_details.is_some_and(|d| d.starts_with("upstream_reset")) {
            Outcome::UpstreamReset
        } else if status >= 400 {
            Outcome::HttpError
        } else if self.record.error_message.is_some() || self.undecodable {
            // A provider error inside a 200 stream, or a body that could
            // not be read to its end.
            Outcome::Incomplete
        } else if self.record.stream
            && self.api != Api::Unknown
            // A capped copy was not read to its end: its end marker may
            // well have passed unread.
            && !self.record.decode_capped
            && !self.record.saw_end_marker()
        {
            // Closed cleanly, but the stream never said it was done.
            Outcome::Truncated
        } else {
            Outcome::Completed
        };
        Some(self.finish(outcome, now_us))
    }

    /// Envoy's log callback: runs once per request on every path. Finishes a
    /// call that never saw its end (reset, disconnect); no-op otherwise.
    pub fn finish_at_log(&mut self, code_details: &str, now_us: u64) -> Option<Finished> {
        if self.finished {
            return None;
        }
        self.drain_response(now_us);
        let outcome = classify_abort(code_details, self.record.status);
        Some(self.finish(outcome, now_us))
    }

    fn drain_response(&mut self, now_us: u64) {
        let api = self.api;
        let record = &mut self.record;
        match std::mem::replace(&mut self.response, ResponseBody::Opaque) {
            ResponseBody::EventStream(mut decoder) => {
                decoder.finish(&mut |event| {
                    apply_event(api, record, event.data, event.oversized, now_us)
                });
            }
            ResponseBody::Lines(mut decoder) => {
                decoder.finish(&mut |line| {
                    apply_event(api, record, line.data, line.oversized, now_us)
                });
            }
            ResponseBody::Elements(mut decoder) => {
                decoder.finish(&mut |e| apply_event(api, record, e.data, e.oversized, now_us));
            }
            ResponseBody::Frames(mut decoder) => {
                decoder.finish(&mut |frame| apply_frame(api, record, frame, now_us));
            }
            ResponseBody::Json { copy, overflow } => {
                if api != Api::Unknown
                    && !copy.is_empty()
                    && (overflow || api.apply_body(&copy, record, now_us).is_err())
                {
                    record.parse_errors += 1;
                }
            }
            ResponseBody::Pending | ResponseBody::Opaque => {}
        }
    }

    fn finish(&mut self, outcome: Outcome, now_us: u64) -> Finished {
        self.finished = true;
        self.outcome = Some(outcome);
        self.record.end_us = Some(now_us);
        self.record.finish_health(now_us);
        if let Some(pricing) = &self.pricing {
            let models = [
                self.record.request.model.as_deref(),
                self.record.response_model.as_deref(),
            ];
            if let Some(price) = pricing.price_of(&models) {
                let includes_cached = self.api.input_includes_cached();
                self.record.set_price(price, includes_cached);
            }
        }
        let summary = self.record.summary(outcome);
        let ttft_ms = summary.ttft_ms.map(|ms| ms.round() as u64);
        // Serializing plain structs of strings and numbers cannot fail; an
        // empty object keeps the shell going if it ever did.
        let summary_json = serde_json::to_string(&summary).unwrap_or_else(|_| "{}".to_string());
        Finished {
            summary_json,
            outcome,
            ttft_ms,
            events: self.record.events,
            parse_errors: self.record.parse_errors,
            decode_capped: self.record.decode_capped,
            verdict: summary.stream_health.map(|h| h.verdict),
            labels: CallLabels {
                provider: self.api.provider(),
                operation: self.api.operation(),
                model: summary.model.or(summary.response_model).map(str::to_string),
                outcome: crate::export::otlp::outcome_name(outcome),
                usage_source: crate::export::otlp::usage_source_name(&summary),
                input_tokens: summary.input_tokens,
                output_tokens: summary.output_tokens,
                cache_read_input_tokens: summary.cache_read_input_tokens,
                cache_write_input_tokens: summary.cache_write_input_tokens,
                reasoning_output_tokens: summary.reasoning_output_tokens,
                cost_micro_usd: summary.cost_micro_usd,
                duration_ms: summary.duration_ms.map(|ms| ms.round() as u64),
                ttfb_ms: summary.ttfb_ms.map(|ms| ms.round() as u64),
                time_per_output_token_us: time_per_output_token_us(
                    summary.duration_ms,
                    summary.ttft_ms,
                    summary.output_tokens,
                ),
            },
        }
    }
}

/// Routes body bytes (decoded, when the response is compressed) to the reader
/// of its content type.
fn read_body(
    response: &mut ResponseBody,
    api: Api,
    record: &mut CallRecord,
    bytes: &[u8],
    now_us: u64,
) {
    match response {
        ResponseBody::EventStream(decoder) => {
            decoder.feed(bytes, &mut |event| {
                apply_event(api, record, event.data, event.oversized, now_us)
            });
        }
        ResponseBody::Lines(decoder) => {
            decoder.feed(bytes, &mut |line| {
                apply_event(api, record, line.data, line.oversized, now_us)
            });
        }
        ResponseBody::Elements(decoder) => {
            decoder.feed(bytes, &mut |e| {
                apply_event(api, record, e.data, e.oversized, now_us)
            });
        }
        ResponseBody::Frames(decoder) => {
            decoder.feed(bytes, &mut |frame| apply_frame(api, record, frame, now_us));
        }
        ResponseBody::Json { copy, overflow } => {
            let room = MAX_JSON_BODY_BYTES.saturating_sub(copy.len());
            if bytes.len() > room {
                *overflow = true;
            }
            copy.extend_from_slice(bytes.get(..bytes.len().min(room)).unwrap_or_default());
        }
        ResponseBody::Pending | ResponseBody::Opaque => {}
    }
}

/// One event of a stream (an SSE event's data, an NDJSON line, an element
/// of a JSON array).
fn apply_event(api: Api, record: &mut CallRecord, data: &[u8], oversized: bool, now_us: u64) {
    if counted_unread(api, record, oversized) {
        return;
    }
    if api.apply_stream_event(data, record, now_us).is_err() {
        record.parse_errors += 1;
    }
}

/// One AWS event-stream frame: its event type goes with its payload.
fn apply_frame(api: Api, record: &mut CallRecord, frame: Frame<'_>, now_us: u64) {
    if counted_unread(api, record, frame.bad) {
        return;
    }
    let read = api.apply_frame(
        frame.event_type,
        frame.exception,
        frame.payload,
        record,
        now_us,
    );
    if read.is_err() {
        record.parse_errors += 1;
    }
}

/// Counts an event; true when it is not to be read: not understood (then
/// also a parse error), or of a format not read (then progress).
fn counted_unread(api: Api, record: &mut CallRecord, not_understood: bool) -> bool {
    record.events += 1;
    if not_understood {
        record.parse_errors += 1;
        return true;
    }
    if api == Api::Unknown {
        if let Some(health) = record.health_mut() {
            health.on_delta(Phase::Content);
        }
        return true;
    }
    false
}

/// Tells why a call ended without an end of stream, from Envoy's
/// `response.code_details` (e.g. `upstream_reset_after_response_started{...}`,
/// `downstream_remote_disconnect`).
pub fn classify_abort(code_details: &str, status: Option<u16>) -> Outcome {
    if code_details.contains("downstream") {
        Outcome::ClientCancelled
    } else if code_details.contains("upstream") && code_details != "via_upstream" {
        Outcome::UpstreamReset
    } else if status.is_some_and(|s| s >= 400) {
        Outcome::HttpError
    } else {
        Outcome::Incomplete
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    fn settings() -> TapSettings {
        TapSettings {
            capture_response_content: true,
            capture_request_content: false,
            max_content_bytes: 1024,
            max_decoded_bytes: crate::config::DEFAULT_MAX_DECODED_BYTES,
            health: crate::call::health::Thresholds::default(),
            timeline_entries: None,
        }
    }

    fn chat_tap() -> CallTap {
        let mut tap = CallTap::new(settings(), 1_000_000);
        tap.on_request_headers(
            Some("POST".into()),
            Some("/v1/chat/completions".into()),
            Some("req-1".into()),
            Some("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"),
        );
        tap.on_request_body(br#"{"model":"gpt-4o-mini","stream":true,"messages":[]}"#);
        tap.on_request_end();
        tap.on_response_headers(
            Some(200),
            Some("text/event-stream; charset=utf-8"),
            None,
            1_100_000,
        );
        tap
    }

    const STREAM: &str = concat!(
        "data: {\"id\":\"c9\",\"model\":\"gpt-4o-mini-2024-07-18\",\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"\"},\"finish_reason\":null}]}\n\n",
        "data: {\"id\":\"c9\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Hel\"},\"finish_reason\":null}]}\n\n",
        "data: {\"id\":\"c9\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"lo\"},\"finish_reason\":null}]}\n\n",
        "data: {\"id\":\"c9\",\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"stop\"}]}\n\n",
        "data: {\"id\":\"c9\",\"choices\":[],\"usage\":{\"prompt_tokens\":9,\"completion_tokens\":2,\"total_tokens\":11}}\n\n",
        "data: [DONE]\n\n"
    );

    fn summary(f: &Finished) -> Value {
        serde_json::from_str(&f.summary_json).unwrap()
    }

    #[test]
    fn streamed_chat_completion_summary() {
        let mut tap = chat_tap();
        tap.on_response_body(STREAM.as_bytes(), 1_200_000);
        let f = tap.finish_at_end_of_stream(1_300_000).unwrap();
        let s = summary(&f);
        assert_eq!(s["id"], "req-1");
        assert_eq!(s["trace_id"], "0af7651916cd43dd8448eb211c80319c");
        assert_eq!(s["provider"], "openai");
        assert_eq!(s["api"], "chat.completions");
        assert_eq!(s["model"], "gpt-4o-mini");
        assert_eq!(s["response_model"], "gpt-4o-mini-2024-07-18");
        assert_eq!(s["response_id"], "c9");
        assert_eq!(s["stream"], true);
        assert_eq!(s["status"], 200);
        assert_eq!(s["outcome"], "completed");
        assert_eq!(s["content"], "Hello");
        assert_eq!(s["input_tokens"], 9);
        assert_eq!(s["output_tokens"], 2);
        assert_eq!(s["usage_source"], "reported");
        assert_eq!(s["finish_reasons"], serde_json::json!(["stop"]));
        assert_eq!(s["events"], 6);
        assert_eq!(s["parse_errors"], 0);
        assert_eq!(s["ttft_ms"], 200.0);
        assert_eq!(s["duration_ms"], 300.0);
        assert_eq!(f.ttft_ms, Some(200));
        assert!(
            tap.finish_at_log("via_upstream", 1_400_000).is_none(),
            "exactly once"
        );
    }

    fn summary_of_chunks(chunks: &[&[u8]]) -> Value {
        let mut tap = chat_tap();
        for c in chunks {
            tap.on_response_body(c, 1_200_000);
        }
        let f = tap.finish_at_end_of_stream(1_300_000).unwrap();
        let mut s = summary(&f);
        s.as_object_mut().unwrap().remove("chunks");
        crate::replay::remove_chunk_shape(&mut s);
        s
    }

    #[test]
    fn any_split_gives_the_same_summary() {
        let whole = summary_of_chunks(&[STREAM.as_bytes()]);
        let bytes = STREAM.as_bytes();
        for cut in 0..=bytes.len() {
            let (a, b) = bytes.split_at(cut);
            assert_eq!(summary_of_chunks(&[a, b]), whole, "cut at {cut}");
        }
        let singles: Vec<&[u8]> = bytes.chunks(1).collect();
        assert_eq!(summary_of_chunks(&singles), whole);
    }

    #[test]
    fn stream_without_end_is_truncated_and_reset_is_classified() {
        let mut tap = chat_tap();
        tap.on_response_body(
            b"data: {\"choices\":[{\"delta\":{\"content\":\"a\"}}]}\n\n",
            1_100_000,
        );
        let f = tap.finish_at_end_of_stream(1_200_000).unwrap();
        assert_eq!(f.outcome, Outcome::Truncated);
        assert_eq!(summary(&f)["stream_health"]["end_marker"], false);

        let mut tap = chat_tap();
        tap.on_response_body(
            b"data: {\"choices\":[{\"delta\":{\"content\":\"a\"}}]}\n\n",
            1_100_000,
        );
        let f = tap
            .finish_at_log(
                "upstream_reset_after_response_started{connection_termination}",
                1_200_000,
            )
            .unwrap();
        assert_eq!(f.outcome, Outcome::UpstreamReset);
        assert_eq!(summary(&f)["content"], "a");

        assert_eq!(
            classify_abort("downstream_remote_disconnect", Some(200)),
            Outcome::ClientCancelled
        );
        assert_eq!(classify_abort("", None), Outcome::Incomplete);
    }

    #[test]
    fn envoys_own_503_for_a_reset_upstream_is_an_upstream_reset() {
        let mut tap = chat_tap();
        tap.on_response_headers(Some(503), Some("text/plain"), None, 0);
        assert!(tap.wants_code_details());
        let f = tap
            .finish_at_end(
                Some("upstream_reset_before_response_started{connection_termination}"),
                1,
            )
            .unwrap();
        assert_eq!(f.outcome, Outcome::UpstreamReset);
        let mut tap = chat_tap();
        tap.on_response_headers(Some(503), Some("application/json"), None, 0);
        let f = tap.finish_at_end(Some("via_upstream"), 1).unwrap();
        assert_eq!(f.outcome, Outcome::HttpError, "the upstream's own 503");
    }

    #[test]
    fn malformed_events_are_counted_not_fatal() {
        let mut tap = chat_tap();
        tap.on_response_body(
            b"data: {oops\n\ndata: {\"choices\":\"wrong\"}\n\n",
            1_100_000,
        );
        tap.on_response_body(STREAM.as_bytes(), 1_200_000);
        let f = tap.finish_at_end_of_stream(1_300_000).unwrap();
        assert_eq!(f.parse_errors, 2);
        assert_eq!(summary(&f)["content"], "Hello");
    }

    #[test]
    fn http_error_with_json_body() {
        let mut tap = chat_tap();
        tap.on_response_headers(Some(429), Some("application/json"), None, 0);
        tap.on_response_body(
            br#"{"error":{"message":"Rate limit reached","type":"requests"}}"#,
            1_100_000,
        );
        let f = tap.finish_at_end_of_stream(1_200_000).unwrap();
        let s = summary(&f);
        assert_eq!(s["outcome"], "http_error");
        assert_eq!(s["error"], "Rate limit reached");
        assert_eq!(s["status"], 429);
    }

    #[test]
    fn unknown_api_is_counted_not_guessed() {
        let mut tap = CallTap::new(settings(), 0);
        tap.on_request_headers(Some("POST".into()), Some("/v9/whatever".into()), None, None);
        tap.on_response_headers(Some(200), Some("text/event-stream"), None, 0);
        tap.on_response_body(STREAM.as_bytes(), 10);
        let s = summary(&tap.finish_at_end_of_stream(20).unwrap());
        assert_eq!(s["provider"], "unknown");
        assert_eq!(s["events"], 6);
        assert_eq!(s["content"], "");
        assert_eq!(s["outcome"], "completed");
    }

    #[test]
    fn request_content_only_when_enabled() {
        let mut tap = chat_tap();
        let s = summary(&tap.finish_at_end_of_stream(1).unwrap());
        assert!(s.get("request_content").is_none());
        let mut tap = CallTap::new(
            TapSettings {
                capture_request_content: true,
                ..settings()
            },
            0,
        );
        tap.on_request_body(br#"{"model":"m"}"#);
        tap.on_request_end();
        let s = summary(&tap.finish_at_end_of_stream(1).unwrap());
        assert_eq!(s["request_content"], r#"{"model":"m"}"#);
        assert_eq!(s["model"], "m");
    }

    #[test]
    fn captured_request_content_has_credentials_blanked() {
        let mut tap = CallTap::new(
            TapSettings {
                capture_request_content: true,
                ..settings()
            },
            0,
        );
        tap.set_redact_fields(Rc::from(vec!["session_id".to_string()]));
        tap.on_request_body(br#"{"model":"m","api_key":"sk-live-123","metadata":{"Password":"hunter2","session_id":"s-9","n":1},"messages":[{"role":"user","content":"hi"}]}"#);
        tap.on_request_end();
        let s = summary(&tap.finish_at_end_of_stream(1).unwrap());
        let content = s["request_content"].as_str().unwrap();
        for secret in ["sk-live-123", "hunter2", "s-9"] {
            assert!(!content.contains(secret), "{secret} leaked: {content}");
        }
        assert!(content.contains(r#""api_key":"[redacted]""#), "{content}");
        assert!(content.contains(r#""content":"hi""#), "{content}");

        let mut tap = CallTap::new(
            TapSettings {
                capture_request_content: true,
                ..settings()
            },
            0,
        );
        tap.on_request_body(b"api_key=sk-live-123&not=json");
        tap.on_request_end();
        let s = summary(&tap.finish_at_end_of_stream(1).unwrap());
        assert!(
            s.get("request_content").is_none(),
            "a body that cannot be checked is not kept"
        );
    }

    /// A chat request with one base64 image of `image` bytes.
    fn image_request(image: usize) -> Vec<u8> {
        format!(
            r#"{{"model":"gpt-4o","max_tokens":300,"messages":[{{"role":"user","content":[{{"type":"text","text":"What is in this image?"}},{{"type":"image_url","image_url":{{"url":"data:image/png;base64,{}=="}}}}]}}]}}"#,
            "iVBORw0KGgo".repeat(image / 11)
        )
        .into_bytes()
    }

    fn request_tap(capture_request_content: bool) -> CallTap {
        let mut tap = CallTap::new(
            TapSettings {
                capture_request_content,
                ..settings()
            },
            0,
        );
        tap.on_request_headers(
            Some("POST".into()),
            Some("/v1/chat/completions".into()),
            None,
            None,
        );
        tap
    }

    #[test]
    fn oversized_request_body_is_read_and_memory_capped() {
        let body = image_request(MAX_REQUEST_BODY_BYTES + 10);
        assert!(body.len() > MAX_REQUEST_BODY_BYTES);
        // The copy for captured content stops at the cap; the facts are read.
        let mut tap = request_tap(true);
        tap.on_request_body(&body);
        assert!(tap.request_body.len() <= MAX_REQUEST_BODY_BYTES);
        tap.on_request_end();
        assert!(tap.request_body.capacity() == 0);
        let s = summary(&tap.finish_at_end_of_stream(1).unwrap());
        assert_eq!(s["model"], "gpt-4o");
        assert!(
            s.get("request_content").is_none(),
            "an overflowed copy is not kept"
        );
        // Without capture there is no copy at all.
        let mut tap = request_tap(false);
        tap.on_request_body(&body);
        assert_eq!(tap.request_body.capacity(), 0);
        tap.on_request_end();
        assert_eq!(
            summary(&tap.finish_at_end_of_stream(1).unwrap())["model"],
            "gpt-4o"
        );
    }

    #[test]
    fn a_3_mb_request_keeps_its_facts_in_constant_memory() {
        let body = image_request(3 << 20);
        let mut tap = request_tap(false);
        let mut heap = 0;
        for chunk in body.chunks(16 * 1024) {
            tap.on_request_body(chunk);
            heap = heap.max(tap.request_scan.heap_bytes() + tap.request_body.capacity());
        }
        assert!(
            heap <= crate::provider::request::MAX_MODEL_BYTES,
            "{heap} heap bytes for a {} byte body",
            body.len()
        );
        tap.on_request_end();
        let s = summary(&tap.finish_at_end_of_stream(1).unwrap());
        assert_eq!(s["model"], "gpt-4o");
        assert_eq!(s["request_max_tokens"], 300);
        assert_eq!(s["request_messages"], 1);
        // The image is not prompt text: the estimate is the text's.
        let mut small = request_tap(false);
        small.on_request_body(&image_request(0));
        small.on_request_end();
        assert_eq!(
            tap.record.request.estimated_input_tokens,
            small.record.request.estimated_input_tokens
        );
        assert!(tap.record.request.estimated_input_tokens.is_some());
    }

    #[test]
    fn the_query_string_is_never_recorded() {
        let mut tap = CallTap::new(settings(), 0);
        tap.on_request_headers(
            Some("POST".into()),
            Some(
                "/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse&key=AIzaSy-secret"
                    .into(),
            ),
            None,
            None,
        );
        tap.on_response_headers(Some(200), Some("text/event-stream"), None, 0);
        let f = tap.finish_at_end_of_stream(1).unwrap();
        assert!(
            !f.summary_json.contains("AIzaSy-secret"),
            "{}",
            f.summary_json
        );
        assert_eq!(
            summary(&f)["path"],
            "/v1beta/models/gemini-2.5-flash:streamGenerateContent"
        );
        let otlp = tap.otlp_record(1).unwrap();
        assert!(!otlp.contains("AIzaSy-secret"), "{otlp}");
    }

    /// The defect's case: a gzip event stream of ~300 MB decoded, fed in
    /// 64 KB chunks as Envoy hands them over. Prints the tap's time; run with
    /// `cargo test --release -p streamtap --lib -- --ignored --nocapture gzip_bomb_time`.
    #[test]
    #[ignore]
    fn gzip_bomb_time() {
        let event = b"data: {\"choices\":[{\"delta\":{\"content\":\"x\"}}]}\n\n";
        let decoded: Vec<u8> = event.iter().copied().cycle().take(300 << 20).collect();
        let encoded = crate::wire::decompress::tests::gzip(&decoded);
        drop(decoded);
        let mut tap = chat_tap();
        tap.on_response_headers(Some(200), Some("text/event-stream"), Some("gzip"), 0);
        let start = std::time::Instant::now();
        for chunk in encoded.chunks(64 * 1024) {
            tap.on_response_body(chunk, 1_200_000);
        }
        let f = tap.finish_at_end_of_stream(1_300_000).unwrap();
        let elapsed = start.elapsed();
        let s = summary(&f);
        println!(
            "{} KB gzip, 300 MB decoded: {:.3} s in the tap; events {}, bytes {}, decode_capped {}",
            encoded.len() / 1024,
            elapsed.as_secs_f64(),
            s["events"],
            s["bytes"],
            s.get("decode_capped").unwrap_or(&Value::Null)
        );
    }

    /// A gzip event stream that decodes past the cap: the events before it
    /// are read, the rest flows unread; capped, not an error.
    #[test]
    fn gzip_stream_past_the_cap_is_marked_and_read_up_to_it() {
        const CAP: usize = 64 * 1024;
        let delta = "data: {\"id\":\"c9\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"x\"},\"finish_reason\":null}]}\n\n";
        let mut body = String::new();
        while body.len() < 4 * CAP {
            body.push_str(delta);
        }
        body.push_str(STREAM);
        let encoded = crate::wire::decompress::tests::gzip(body.as_bytes());
        let mut tap = gzip_chat_tap(CAP);
        for chunk in encoded.chunks(1000) {
            tap.on_response_body(chunk, 1_200_000);
        }
        let f = tap.finish_at_end_of_stream(1_300_000).unwrap();
        let s = summary(&f);
        assert!(f.decode_capped);
        assert_eq!(s["decode_capped"], true);
        assert_eq!(s["bytes"], encoded.len());
        assert_eq!(s["chunks"], encoded.len().div_ceil(1000));
        assert_eq!(s["parse_errors"], 0);
        assert_eq!(f.parse_errors, 0);
        // Every whole event inside the cap, none past it.
        let whole_events = CAP / delta.len();
        assert_eq!(f.events, whole_events as u64, "{s}");
        assert_eq!(s["content"], "x".repeat(whole_events));
        assert_eq!(
            s["outcome"], "completed",
            "not read to its end: not incomplete"
        );
        assert_eq!(
            s["finish_reasons"],
            serde_json::json!([]),
            "past the cap: unread"
        );
    }

    /// A gzip chat stream's tap, ready for body chunks, decoding at most `cap` bytes.
    fn gzip_chat_tap(cap: usize) -> CallTap {
        crate::replay::Exchange {
            request_id: None,
            content_encoding: Some("gzip".into()),
            settings: TapSettings {
                max_decoded_bytes: cap,
                ..settings()
            },
            start_us: 1_000_000,
            ..crate::replay::Exchange::stream("/v1/chat/completions")
        }
        .tap()
    }

    #[test]
    fn gzip_stream_within_the_cap_is_not_marked() {
        let encoded = crate::wire::decompress::tests::gzip(STREAM.as_bytes());
        let mut tap = gzip_chat_tap(STREAM.len());
        tap.on_response_body(&encoded, 1_200_000);
        let f = tap.finish_at_end_of_stream(1_300_000).unwrap();
        assert!(!f.decode_capped);
        assert!(
            !f.summary_json.contains("decode_capped"),
            "{}",
            f.summary_json
        );
        assert_eq!(f.events, 6);
        assert_eq!(summary(&f)["content"], "Hello");
    }

    fn chat_delta(text: &str) -> String {
        format!("data: {{\"choices\":[{{\"index\":0,\"delta\":{{\"content\":\"{text}\"}}}}]}}\n\n")
    }

    const CHAT_END: &str = "data: {\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"stop\"}]}\n\ndata: {\"choices\":[],\"usage\":{\"prompt_tokens\":5,\"completion_tokens\":41}}\n\ndata: [DONE]\n\n";

    /// A chat stream fed chunk by chunk at the given times (µs since the
    /// request), ending 1 ms after the last.
    fn timed_chat(chunks: &[(u64, String)]) -> Value {
        let mut tap = chat_tap();
        let start = 1_000_000;
        for (at, bytes) in chunks {
            tap.on_response_body(bytes.as_bytes(), start + at);
        }
        let end = chunks.last().map_or(0, |c| c.0) + 1000;
        summary(&tap.finish_at_end_of_stream(start + end).unwrap())
    }

    #[test]
    fn stream_health_is_judged_from_the_chunks_as_they_arrive() {
        // 41 deltas 40 ms apart, one per chunk, from 150 ms.
        let mut paced: Vec<(u64, String)> = (0..41)
            .map(|i| (150_000 + i * 40_000, chat_delta("tok ")))
            .collect();
        paced.push((150_000 + 41 * 40_000, CHAT_END.to_string()));
        let s = timed_chat(&paced);
        let h = &s["stream_health"];
        assert_eq!(h["verdict"], "smooth", "{h}");
        assert_eq!(h["content_deltas"], 41);
        assert_eq!(h["largest_burst"], 1);
        assert_eq!(h["end_marker"], true);
        assert_eq!(h["events_per_chunk_max"], 3);
        assert_eq!(h["events_per_chunk_p50"], 1);
        assert_eq!(s["outcome"], "completed");
        // 40 tokens after the first over 1.6 s.
        assert_eq!(s["output_tokens_per_s"], 25.0);

        // The same deltas: the first, then 1.5 s of silence, then the rest at once.
        let rest: String = (1..41).map(|_| chat_delta("tok ")).collect();
        let s = timed_chat(&[(150_000, chat_delta("tok ")), (1_650_000, rest + CHAT_END)]);
        let h = &s["stream_health"];
        assert_eq!(h["verdict"], "buffered", "{h}");
        assert_eq!(h["largest_burst"], 40);
        assert_eq!(h["longest_stall_ms"], 1500.0);
        assert_eq!(h["stall_phase"], "content");
        assert!(s["output_tokens_per_s"].as_f64().unwrap() > 25.0);
    }

    #[test]
    fn keepalives_and_tool_calls_are_seen_in_an_anthropic_stream() {
        let mut tap = crate::replay::Exchange {
            start_us: 0,
            ..crate::replay::Exchange::stream("/v1/messages")
        }
        .tap();
        let events = [
            (100_000, "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"id\":\"m\",\"model\":\"claude\",\"usage\":{\"input_tokens\":3,\"output_tokens\":1}}}\n\n"),
            (150_000, "event: ping\ndata: {\"type\": \"ping\"}\n\n"),
            (200_000, "event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"tool_use\",\"id\":\"t1\",\"name\":\"get_weather\",\"input\":{}}}\n\n"),
            (250_000, ": a comment\n\n"),
            (300_000, "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"input_json_delta\",\"partial_json\":\"{}\"}}\n\n"),
        ];
        for (at, e) in events {
            tap.on_response_body(e.as_bytes(), at);
        }
        let s = summary(&tap.finish_at_end_of_stream(400_000).unwrap());
        assert_eq!(s["ttft_tool_ms"], 200.0);
        assert_eq!(s["ttft_ms"], 200.0);
        assert_eq!(s["outcome"], "truncated", "no message_stop");
        let h = &s["stream_health"];
        assert_eq!(h["keepalives"], 2, "{h}");
        assert_eq!(h["verdict"], "too_short");
        assert_eq!(h["end_marker"], false);
        assert_eq!(h["stall_phase"], "first_token");
    }

    #[test]
    fn a_response_that_is_not_an_event_stream_has_no_stream_health() {
        let mut tap = CallTap::new(settings(), 0);
        tap.on_response_headers(Some(200), Some("application/json"), None, 0);
        tap.on_response_body(br#"{"choices":[]}"#, 10);
        let s = summary(&tap.finish_at_end_of_stream(20).unwrap());
        assert_eq!(s["stream_health"], Value::Null);
        assert_eq!(s["output_tokens_per_s"], Value::Null);
    }

    #[test]
    fn stream_health_can_be_switched_off() {
        let mut tap = crate::replay::Exchange {
            settings: TapSettings {
                health: Thresholds {
                    enabled: false,
                    ..Thresholds::default()
                },
                ..settings()
            },
            ..crate::replay::Exchange::stream("/v1/chat/completions")
        }
        .tap();
        tap.on_response_body(
            b"data: {\"choices\":[{\"delta\":{\"content\":\"a\"}}]}\n\n",
            1,
        );
        let s = summary(&tap.finish_at_end_of_stream(2).unwrap());
        assert_eq!(s["stream_health"], Value::Null);
        assert_eq!(s["outcome"], "truncated", "the end marker is still told");
    }

    #[test]
    fn the_timeline_marks_reasoning_and_tool_arguments_apart() {
        let mut tap = crate::replay::Exchange {
            settings: TapSettings {
                timeline_entries: Some(64),
                ..settings()
            },
            start_us: 0,
            ..crate::replay::Exchange::stream("/v1/chat/completions")
        }
        .tap();
        let chunks: [(u64, &str); 3] = [
            (100_000, "data: {\"choices\":[{\"delta\":{\"reasoning_content\":\"hmm\"}}]}\n\n"),
            (150_000, "data: {\"choices\":[{\"delta\":{\"content\":\"Hi\"}}]}\n\ndata: {\"choices\":[{\"delta\":{\"content\":\" there\"}}]}\n\n"),
            (200_000, "data: {\"choices\":[{\"delta\":{\"tool_calls\":[{\"index\":0,\"function\":{\"arguments\":\"{}\"}}]}}]}\n\ndata: [DONE]\n\n"),
        ];
        for (at, c) in chunks {
            tap.on_response_body(c.as_bytes(), at);
        }
        let s = summary(&tap.finish_at_end_of_stream(250_000).unwrap());
        let t = &s["timeline"];
        assert_eq!(t["kind"], "rcct", "{t}");
        assert_eq!(t["t"], serde_json::json!([100_000, 50_000, 0, 50_000]));
        assert_eq!(t["chunk"], serde_json::json!([0, 1, 0, 1]));
        assert_eq!(t["bytes"], serde_json::json!([3, 2, 6, 2]));
        assert_eq!(t["deltas"], 4);
    }

    fn priced(path: &str, request_model: &str, body: &str) -> Value {
        let mut pricing = Pricing::default();
        let price = |input, output, read, write| crate::call::cost::Price {
            input,
            output,
            cache_read: read,
            cache_write: write,
            reasoning_output: None,
        };
        pricing.insert("gpt-4o*", price(2.5, 10.0, Some(1.25), None));
        pricing.insert("claude-sonnet-4*", price(3.0, 15.0, Some(0.3), Some(3.75)));
        let mut tap = crate::replay::Exchange {
            request_body: Some(
                format!(r#"{{"model":"{request_model}","stream":true,"messages":[{{"role":"user","content":"hi"}}]}}"#)
                    .into_bytes(),
            ),
            ..crate::replay::Exchange::stream(path)
        }
        .tap();
        tap.set_pricing(Rc::new(pricing));
        tap.on_response_body(body.as_bytes(), 1);
        summary(&tap.finish_at_end_of_stream(2).unwrap())
    }

    #[test]
    fn the_cost_of_a_call_follows_each_providers_cache_rules() {
        // OpenAI: 1000 prompt tokens including 800 cached, 200 out:
        // 200 × 2.5 + 800 × 1.25 + 200 × 10 = 3500 µ$.
        let s = priced(
            "/v1/chat/completions",
            "gpt-4o",
            concat!(
                "data: {\"model\":\"gpt-4o-2024-08-06\",\"choices\":[{\"delta\":{\"content\":\"a\"}}]}\n\n",
                "data: {\"choices\":[],\"usage\":{\"prompt_tokens\":1000,\"completion_tokens\":200,\"prompt_tokens_details\":{\"cached_tokens\":800}}}\n\n",
                "data: [DONE]\n\n"
            ),
        );
        assert_eq!(s["cost_usd"], 0.0035, "{s}");
        assert!(s.get("cost_estimated").is_none());
        // Anthropic: input excludes the cache; 100 in, 5000 read, 2000
        // written, 300 out: 300 + 1500 + 7500 + 4500 = 13 800 µ$.
        let s = priced(
            "/v1/messages",
            "claude-sonnet-4-5",
            concat!(
                "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"model\":\"claude-sonnet-4-5-20250929\",\"usage\":{\"input_tokens\":100,\"cache_read_input_tokens\":5000,\"cache_creation_input_tokens\":2000,\"output_tokens\":1}}}\n\n",
                "event: message_delta\ndata: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"end_turn\"},\"usage\":{\"output_tokens\":300}}\n\n",
                "event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n"
            ),
        );
        assert_eq!(s["cache_write_input_tokens"], 2000, "{s}");
        assert_eq!(s["cost_usd"], 0.0138, "{s}");
        // No usage reported: priced on the estimate, and flagged.
        let s = priced(
            "/v1/chat/completions",
            "gpt-4o-mini",
            "data: {\"choices\":[{\"delta\":{\"content\":\"Hello there\"}}]}\n\ndata: [DONE]\n\n",
        );
        assert_eq!(s["usage_source"], "estimated");
        assert!(s["cost_usd"].as_f64().unwrap() > 0.0, "{s}");
        assert_eq!(s["cost_estimated"], true);
        // A model without a price: null.
        let s = priced(
            "/v1/chat/completions",
            "llama3.1:8b",
            "data: {\"choices\":[],\"usage\":{\"prompt_tokens\":5,\"completion_tokens\":5}}\n\ndata: [DONE]\n\n",
        );
        assert_eq!(s["cost_usd"], Value::Null, "{s}");
    }

    #[test]
    fn time_per_output_token_is_one_value_per_call() {
        // 1000 ms in all, first token at 200 ms, 41 tokens: 800 ms / 40.
        assert_eq!(
            time_per_output_token_us(Some(1000.0), Some(200.0), Some(41)),
            Some(20_000)
        );
        assert_eq!(
            time_per_output_token_us(Some(1000.0), Some(200.0), Some(1)),
            None
        );
        assert_eq!(time_per_output_token_us(None, Some(200.0), Some(9)), None);
    }
}
