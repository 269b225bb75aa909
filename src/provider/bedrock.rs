//! Amazon Bedrock Runtime: `/model/{modelId}/converse-stream` and
//! `/converse` (Bedrock's own Converse format), and
//! `/model/{modelId}/invoke-with-response-stream` and `/invoke` (the model's
//! native format). The streams are AWS event-stream frames
//! (`wire::eventstream`); the model id is in the path, URL-encoded (ARNs and
//! inference-profile ids hold `:` and `/`).
//!
//! ConverseStream frames by `:event-type`: `messageStart`,
//! `contentBlockStart` (a `toolUse` id and name), `contentBlockDelta`
//! (`text`, `toolUse.input` pieces, `reasoningContent.text`),
//! `contentBlockStop`, `messageStop` (`stopReason`; the end marker),
//! `metadata` (`usage`, `metrics.latencyMs`); exception frames are errors.
//! Invoke streams carry `chunk` frames of `{"bytes": base64}`: for Anthropic's
//! models the decoded payload is a Messages stream event, read with that
//! adapter; other families' payloads are timed and counted, not read.

use super::anthropic_messages::Messages;
use super::shared::{self, UsageKeys};
use super::WireFormat;
use crate::call::health::Phase;
use crate::call::record::CallRecord;
use crate::wire::json::Json;
use crate::ParseError;
use std::borrow::Cow;

type Result<T> = std::result::Result<T, ParseError>;

const PROVIDER: &str = "aws.bedrock";

const USAGE: UsageKeys = UsageKeys {
    input: b"inputTokens",
    output: b"outputTokens",
    cache_read: Some(b"cacheReadInputTokens"),
    cache_write: Some(b"cacheWriteInputTokens"),
    input_details: None,
    output_details: None,
};

/// `/model/{id}/…`: the id, URL-decoded.
pub fn model_in_path(path: &str) -> Option<Cow<'_, str>> {
    let route = path.split('?').next().unwrap_or_default();
    let (_, rest) = route.split_once("/model/")?;
    let id = rest.split('/').next().filter(|id| !id.is_empty())?;
    Some(percent_decode(id))
}

fn percent_decode(text: &str) -> Cow<'_, str> {
    if !text.contains('%') {
        return Cow::Borrowed(text);
    }
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok());
        match (
            bytes.get(i),
            hex.and_then(|h| u8::from_str_radix(h, 16).ok()),
        ) {
            (Some(b'%'), Some(byte)) => {
                out.push(byte);
                i += 3;
            }
            (Some(&b), _) => {
                out.push(b);
                i += 1;
            }
            (None, _) => break,
        }
    }
    Cow::Owned(String::from_utf8_lossy(&out).into_owned())
}

pub struct Converse;

impl WireFormat for Converse {
    const PROVIDER: &'static str = PROVIDER;
    const API: &'static str = "converse";
    const END_MARKER: &'static str = "messageStop";
    /// `inputTokens` excludes the cache reads and writes counted beside it.
    const INPUT_INCLUDES_CACHED: bool = false;

    fn model_from_path(path: &str) -> Option<Cow<'_, str>> {
        model_in_path(path)
    }

    /// Without a frame's event type the payload cannot be told apart.
    fn apply_stream_event(_data: &[u8], _record: &mut CallRecord, _now_us: u64) -> Result<()> {
        Err(ParseError)
    }

    fn apply_frame(
        event_type: &[u8],
        exception: bool,
        payload: &[u8],
        record: &mut CallRecord,
        now_us: u64,
    ) -> Result<()> {
        if exception {
            return apply_exception(event_type, payload, record);
        }
        let mut block = Block::default();
        Json::parse(payload, |j| {
            j.object(|key, j| match (event_type, key) {
                (_, b"contentBlockIndex") => {
                    block.index = j.opt_u64()?.unwrap_or(0);
                    Ok(())
                }
                (b"contentBlockStart", b"start") => j.opt_object(|key, j| match key {
                    b"toolUse" => j.opt_object(|key, j| match key {
                        b"toolUseId" => j.set_str(&mut block.tool_id),
                        b"name" => j.set_str(&mut block.tool_name),
                        _ => j.skip(),
                    }),
                    _ => j.skip(),
                }),
                (b"contentBlockDelta", b"delta") => j.opt_object(|key, j| match key {
                    b"text" => j.set_str(&mut block.text),
                    b"toolUse" => j.opt_object(|key, j| match key {
                        b"input" => j.set_str(&mut block.tool_input),
                        _ => j.skip(),
                    }),
                    b"reasoningContent" => j.opt_object(|key, j| match key {
                        b"text" => j.set_str(&mut block.reasoning),
                        _ => j.skip(),
                    }),
                    _ => j.skip(),
                }),
                (b"messageStop", b"stopReason") => {
                    record.mark_end();
                    j.with_str(|reason| record.add_finish_reason(reason))
                }
                (b"metadata", b"usage") => shared::read_usage(j, &USAGE, record),
                _ => j.skip(),
            })
        })?;
        // Applied once read: `contentBlockIndex` may come after the delta.
        block.apply(record, now_us);
        Ok(())
    }

    /// A whole `converse` answer, or an error body (`{"message": ...}`).
    fn apply_body(body: &[u8], record: &mut CallRecord, now_us: u64) -> Result<()> {
        Json::parse(body, |j| {
            j.object(|key, j| match key {
                b"output" => j.opt_object(|key, j| match key {
                    b"message" => j.opt_object(|key, j| match key {
                        b"content" => j.opt_array(|i, j| apply_block(i as u64, j, record, now_us)),
                        _ => j.skip(),
                    }),
                    _ => j.skip(),
                }),
                b"stopReason" => j.with_str(|reason| record.add_finish_reason(reason)),
                b"usage" => shared::read_usage(j, &USAGE, record),
                b"message" => j.with_str(|message| record.set_error(message)),
                _ => j.skip(),
            })
        })
    }
}

/// What a `contentBlockStart` or `contentBlockDelta` frame says of a block.
#[derive(Default)]
struct Block<'a> {
    index: u64,
    tool_id: Option<Cow<'a, str>>,
    tool_name: Option<Cow<'a, str>>,
    tool_input: Option<Cow<'a, str>>,
    text: Option<Cow<'a, str>>,
    reasoning: Option<Cow<'a, str>>,
}

impl Block<'_> {
    fn apply(&self, record: &mut CallRecord, now_us: u64) {
        if self.tool_id.is_some() || self.tool_name.is_some() {
            let (id, name) = (self.tool_id.as_deref(), self.tool_name.as_deref());
            record.tool_call_begin(self.index, id, name, now_us);
        }
        if let Some(piece) = &self.tool_input {
            record.tool_call_arguments(self.index, piece, now_us);
        }
        if let Some(text) = &self.text {
            record.push_content(text, now_us);
        }
        if let Some(text) = &self.reasoning {
            record.push_reasoning(text, now_us);
        }
    }
}

/// A content block of a whole Converse answer.
fn apply_block(index: u64, j: &mut Json<'_>, record: &mut CallRecord, now_us: u64) -> Result<()> {
    j.object(|key, j| match key {
        b"text" => j.with_str(|text| record.push_content(text, now_us)),
        b"toolUse" => {
            let (mut id, mut name, mut input) = (None, None, None);
            j.opt_object(|key, j| match key {
                b"toolUseId" => j.set_str(&mut id),
                b"name" => j.set_str(&mut name),
                b"input" => {
                    input = Some(j.raw_value()?);
                    Ok(())
                }
                _ => j.skip(),
            })?;
            record.tool_call_begin(index, id.as_deref(), name.as_deref(), now_us);
            if let Some(input) = input {
                record.tool_call_set_arguments(index, input);
            }
            Ok(())
        }
        b"reasoningContent" => j.opt_object(|key, j| match key {
            b"reasoningText" => j.opt_object(|key, j| match key {
                b"text" => j.with_str(|text| record.push_reasoning(text, now_us)),
                _ => j.skip(),
            }),
            _ => j.skip(),
        }),
        _ => j.skip(),
    })
}

/// An exception frame: `{"message": ...}`, else its type.
fn apply_exception(kind: &[u8], payload: &[u8], record: &mut CallRecord) -> Result<()> {
    let mut message: Option<Cow<'_, str>> = None;
    let read = Json::parse(payload, |j| {
        j.object(|key, j| match key {
            b"message" | b"Message" => j.set_str(&mut message),
            _ => j.skip(),
        })
    });
    match message {
        Some(message) => record.set_error(&message),
        None => record.set_error(&String::from_utf8_lossy(kind)),
    }
    read
}

pub struct Invoke;

impl WireFormat for Invoke {
    const PROVIDER: &'static str = PROVIDER;
    const API: &'static str = "invoke";
    const END_MARKER: &'static str = "message_stop";
    const INPUT_INCLUDES_CACHED: bool = false;

    fn model_from_path(path: &str) -> Option<Cow<'_, str>> {
        model_in_path(path)
    }

    fn apply_stream_event(_data: &[u8], _record: &mut CallRecord, _now_us: u64) -> Result<()> {
        Err(ParseError)
    }

    fn apply_frame(
        event_type: &[u8],
        exception: bool,
        payload: &[u8],
        record: &mut CallRecord,
        now_us: u64,
    ) -> Result<()> {
        if exception {
            return apply_exception(event_type, payload, record);
        }
        if event_type != b"chunk" {
            return Ok(());
        }
        let mut bytes = None;
        Json::parse(payload, |j| {
            j.object(|key, j| match key {
                b"bytes" => j.with_str(|b64| bytes = crate::wire::base64::decode(b64.as_bytes())),
                _ => j.skip(),
            })
        })?;
        let decoded = bytes.ok_or(ParseError)?;
        if is_anthropic_event(&decoded) {
            return Messages::apply_stream_event(&decoded, record, now_us);
        }
        // Another family's payload: timed as output, not read. Its end cannot
        // be told, so such a stream is never judged truncated.
        record.note_token_activity(now_us, Phase::Content, decoded.len());
        record.mark_end();
        Ok(())
    }

    /// A whole `invoke` answer: Anthropic's `message`, or another family's
    /// (not read).
    fn apply_body(body: &[u8], record: &mut CallRecord, now_us: u64) -> Result<()> {
        if is_anthropic_event(body) {
            return Messages::apply_body(body, record, now_us);
        }
        Json::parse(body, |j| {
            j.object(|key, j| match key {
                b"message" => j.with_str(|message| record.set_error(message)),
                _ => j.skip(),
            })
        })
    }
}

/// True for a JSON object with a `type` (Anthropic's events and messages).
fn is_anthropic_event(bytes: &[u8]) -> bool {
    let mut typed = false;
    let parsed = Json::parse(bytes, |j| {
        j.object(|key, j| {
            typed |= key == b"type";
            j.skip()
        })
    });
    parsed.is_ok() && typed
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::call::record::Outcome;

    fn frames(format: &str, frames: &[(&str, bool, &str)]) -> CallRecord {
        let mut r = CallRecord::new(0, true, 4096);
        for (i, (kind, exception, payload)) in frames.iter().enumerate() {
            let read = match format {
                "converse" => Converse::apply_frame(
                    kind.as_bytes(),
                    *exception,
                    payload.as_bytes(),
                    &mut r,
                    10 + i as u64,
                ),
                _ => Invoke::apply_frame(
                    kind.as_bytes(),
                    *exception,
                    payload.as_bytes(),
                    &mut r,
                    10 + i as u64,
                ),
            };
            read.unwrap();
        }
        r
    }

    #[test]
    fn the_model_id_is_url_decoded_from_the_path() {
        for (path, model) in [
            ("/model/anthropic.claude-3-5-sonnet-20240620-v1%3A0/converse-stream", "anthropic.claude-3-5-sonnet-20240620-v1:0"),
            ("/model/arn%3Aaws%3Abedrock%3Aus-east-1%3A123456789012%3Ainference-profile%2Fus.anthropic.claude-3-5-sonnet-20241022-v2%3A0/invoke", "arn:aws:bedrock:us-east-1:123456789012:inference-profile/us.anthropic.claude-3-5-sonnet-20241022-v2:0"),
            ("/model/meta.llama3-70b-instruct-v1:0/invoke-with-response-stream", "meta.llama3-70b-instruct-v1:0"),
        ] {
            assert_eq!(model_in_path(path).as_deref(), Some(model), "{path}");
        }
        assert_eq!(model_in_path("/v1/chat/completions"), None);
    }

    #[test]
    fn converse_stream_text_tool_use_reasoning_and_usage() {
        let r = frames(
            "converse",
            &[
                ("messageStart", false, r#"{"role":"assistant","p":"abcd"}"#),
                (
                    "contentBlockDelta",
                    false,
                    r#"{"contentBlockIndex":0,"delta":{"reasoningContent":{"text":"Hm."}}}"#,
                ),
                (
                    "contentBlockDelta",
                    false,
                    r#"{"contentBlockIndex":1,"delta":{"text":"Hello"}}"#,
                ),
                (
                    "contentBlockStart",
                    false,
                    r#"{"contentBlockIndex":2,"start":{"toolUse":{"toolUseId":"tooluse_1","name":"get_weather"}}}"#,
                ),
                (
                    "contentBlockDelta",
                    false,
                    r#"{"contentBlockIndex":2,"delta":{"toolUse":{"input":"{\"city\":"}}}"#,
                ),
                (
                    "contentBlockDelta",
                    false,
                    // The index after the delta: read all the same.
                    r#"{"delta":{"toolUse":{"input":"\"Paris\"}"}},"contentBlockIndex":2}"#,
                ),
                ("contentBlockStop", false, r#"{"contentBlockIndex":2}"#),
                ("messageStop", false, r#"{"stopReason":"tool_use"}"#),
                (
                    "metadata",
                    false,
                    r#"{"usage":{"inputTokens":30,"outputTokens":12,"totalTokens":42,"cacheReadInputTokens":5},"metrics":{"latencyMs":321}}"#,
                ),
            ],
        );
        let s = r.summary(Outcome::Completed);
        assert_eq!(s.content, Some("Hello"));
        assert_eq!(
            (s.input_tokens, s.output_tokens, s.cache_read_input_tokens),
            (Some(30), Some(12), Some(5))
        );
        assert_eq!(s.finish_reasons, ["tool_use".to_string()]);
        let calls: Vec<_> = s
            .tool_calls
            .iter()
            .map(|c| (c.id, c.name, c.arguments))
            .collect();
        assert_eq!(calls, [("tooluse_1", "get_weather", r#"{"city":"Paris"}"#)]);
        assert!(r.saw_end_marker());
    }

    #[test]
    fn exceptions_are_errors() {
        let r = frames(
            "converse",
            &[
                (
                    "contentBlockDelta",
                    false,
                    r#"{"contentBlockIndex":0,"delta":{"text":"Hi"}}"#,
                ),
                (
                    "throttlingException",
                    true,
                    r#"{"message":"Too many requests, please wait before trying again."}"#,
                ),
            ],
        );
        assert_eq!(
            r.error_message.as_deref(),
            Some("Too many requests, please wait before trying again.")
        );
        assert!(!r.saw_end_marker());
    }

    #[test]
    fn invoke_reads_anthropic_payloads_and_times_other_families() {
        let b64 = |s: &str| {
            // Test-only encoder: the filter only decodes.
            const A: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
            let mut out = String::new();
            for c in s.as_bytes().chunks(3) {
                let n = (u32::from(c[0]) << 16)
                    | (u32::from(*c.get(1).unwrap_or(&0)) << 8)
                    | u32::from(*c.get(2).unwrap_or(&0));
                for k in 0..4 {
                    if k <= c.len() {
                        out.push(A[(n >> (18 - 6 * k) & 63) as usize] as char);
                    } else {
                        out.push('=');
                    }
                }
            }
            format!(r#"{{"bytes":"{out}"}}"#)
        };
        let start = b64(
            r#"{"type":"message_start","message":{"id":"m","model":"claude","usage":{"input_tokens":7,"output_tokens":1}}}"#,
        );
        let delta = b64(
            r#"{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"Hi there"}}"#,
        );
        let stop = b64(
            r#"{"type":"message_stop","amazon-bedrock-invocationMetrics":{"inputTokenCount":7,"outputTokenCount":2}}"#,
        );
        let r = frames(
            "invoke",
            &[
                ("chunk", false, &start),
                ("chunk", false, &delta),
                ("chunk", false, &stop),
            ],
        );
        let s = r.summary(Outcome::Completed);
        assert_eq!(s.content, Some("Hi there"));
        assert_eq!(s.input_tokens, Some(7));
        assert!(r.saw_end_marker());
        let llama = b64(r#"{"generation":"Hello","prompt_token_count":5}"#);
        let r = frames("invoke", &[("chunk", false, &llama)]);
        assert!(r.saw_end_marker());
        assert_eq!(r.summary(Outcome::Completed).content, Some(""));
        let mut r = CallRecord::new(0, true, 4096);
        assert!(
            Invoke::apply_frame(b"chunk", false, br#"{"bytes":"not base64!"}"#, &mut r, 1).is_err()
        );
    }

    #[test]
    fn whole_converse_answers_and_errors() {
        let mut r = CallRecord::new(0, true, 4096);
        Converse::apply_body(br#"{"output":{"message":{"role":"assistant","content":[{"reasoningContent":{"reasoningText":{"text":"think"}}},{"text":"Paris."},{"toolUse":{"toolUseId":"t1","name":"f","input":{"a":1}}}]}},"stopReason":"end_turn","usage":{"inputTokens":3,"outputTokens":4,"totalTokens":7},"metrics":{"latencyMs":50}}"#, &mut r, 1).unwrap();
        let s = r.summary(Outcome::Completed);
        assert_eq!(s.content, Some("Paris."));
        assert_eq!(s.output_tokens, Some(4));
        assert_eq!(s.tool_calls[0].arguments, r#"{"a":1}"#);
        let mut r = CallRecord::new(0, true, 4096);
        Converse::apply_body(
            br#"{"message":"The security token included in the request is invalid."}"#,
            &mut r,
            1,
        )
        .unwrap();
        assert_eq!(
            r.error_message.as_deref(),
            Some("The security token included in the request is invalid.")
        );
    }
}
