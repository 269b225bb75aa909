//! Anthropic Messages (`/v1/messages`): the streamed events (`message_start`,
//! `content_block_start`/`_delta`/`_stop`, `message_delta`, `message_stop`,
//! `ping`, `error`) and the non-streaming `message` body.

use super::shared::{self, UsageKeys};
use super::WireFormat;
use crate::call::record::CallRecord;
use crate::wire::json::Json;
use crate::ParseError;
use std::borrow::Cow;

type Result<T> = std::result::Result<T, ParseError>;

pub struct Messages;

/// Anthropic's models on Vertex AI (`…/publishers/anthropic/models/{m}:streamRawPredict`
/// and `:rawPredict`): Messages on the wire, Vertex's provider name, the
/// model in the path.
pub struct OnVertex;

impl WireFormat for OnVertex {
    const PROVIDER: &'static str = "gcp.vertex_ai";
    const API: &'static str = Messages::API;
    const END_MARKER: &'static str = Messages::END_MARKER;
    const INPUT_INCLUDES_CACHED: bool = Messages::INPUT_INCLUDES_CACHED;

    fn model_from_path(path: &str) -> Option<Cow<'_, str>> {
        super::gemini::model_in_path(path).map(Cow::Borrowed)
    }

    fn apply_stream_event(data: &[u8], record: &mut CallRecord, now_us: u64) -> Result<()> {
        Messages::apply_stream_event(data, record, now_us)
    }

    fn apply_body(body: &[u8], record: &mut CallRecord, now_us: u64) -> Result<()> {
        Messages::apply_body(body, record, now_us)
    }
}

impl WireFormat for Messages {
    const PROVIDER: &'static str = "anthropic";
    const API: &'static str = "messages";
    const END_MARKER: &'static str = "message_stop";
    /// `input_tokens` excludes `cache_read_input_tokens` and `cache_creation_input_tokens`.
    const INPUT_INCLUDES_CACHED: bool = false;

    /// Applies one SSE event's data (the event name is repeated in `type`).
    fn apply_stream_event(data: &[u8], record: &mut CallRecord, now_us: u64) -> Result<()> {
        let event = read_event(data, record)?;
        let key = event.index;
        match event.kind.as_deref().ok_or(ParseError)? {
            "message_start" if !event.has_message => return Err(ParseError),
            "content_block_start" => {
                if let Some(block) = &event.block {
                    apply_block(key, block, record, now_us);
                }
            }
            "content_block_delta" => {
                let delta = event.delta.ok_or(ParseError)?;
                match delta.kind.as_deref() {
                    Some("text_delta") => {
                        record.push_content(delta.text.as_deref().unwrap_or_default(), now_us)
                    }
                    Some("thinking_delta") => {
                        record.push_reasoning(delta.thinking.as_deref().unwrap_or_default(), now_us)
                    }
                    Some("input_json_delta") => record.tool_call_arguments(
                        key,
                        delta.partial_json.as_deref().unwrap_or_default(),
                        now_us,
                    ),
                    // signature_delta and future kinds: nothing to record.
                    _ => {}
                }
            }
            "message_delta" => {
                if let Some(reason) = event.delta.as_ref().and_then(|d| d.stop_reason.as_deref()) {
                    record.add_finish_reason(reason);
                }
            }
            "message_stop" => record.mark_end(),
            "ping" => record.note_keepalive(),
            "error" => record.set_error(event.error.as_deref().unwrap_or("error")),
            // message_start (read above), content_block_stop, later kinds.
            _ => {}
        }
        Ok(())
    }

    /// Applies a whole non-streaming `message` body, or an error body.
    fn apply_body(body: &[u8], record: &mut CallRecord, now_us: u64) -> Result<()> {
        let event = read_event(body, record)?;
        if event.kind.as_deref() == Some("error") {
            record.set_error(event.error.as_deref().unwrap_or("error"));
            return Ok(());
        }
        for (index, block) in event.blocks.iter().enumerate() {
            apply_block(index as u64, block, record, now_us);
        }
        if let Some(reason) = &event.stop_reason {
            record.add_finish_reason(reason);
        }
        record.mark_end();
        Ok(())
    }
}

/// Cumulative in `message_delta`: the latest value wins.
const USAGE: UsageKeys = UsageKeys {
    input: b"input_tokens",
    output: b"output_tokens",
    cache_read: Some(b"cache_read_input_tokens"),
    cache_write: Some(b"cache_creation_input_tokens"),
    input_details: None,
    output_details: None,
};

/// A content block (`content_block_start`, or one entry of a body's `content`).
#[derive(Default)]
struct Block<'a> {
    kind: Option<Cow<'a, str>>,
    text: Option<Cow<'a, str>>,
    thinking: Option<Cow<'a, str>>,
    id: Option<Cow<'a, str>>,
    name: Option<Cow<'a, str>>,
    /// Complete tool input as sent (non-streaming bodies); streamed as `input_json_delta`.
    input: Option<&'a str>,
}

#[derive(Default)]
struct Delta<'a> {
    kind: Option<Cow<'a, str>>,
    text: Option<Cow<'a, str>>,
    thinking: Option<Cow<'a, str>>,
    partial_json: Option<Cow<'a, str>>,
    stop_reason: Option<Cow<'a, str>>,
}

/// An event, or a whole body: a `message`, or an `error`. Fields of the
/// other kinds simply stay empty.
#[derive(Default)]
struct MessagesEvent<'a> {
    kind: Option<Cow<'a, str>>,
    index: u64,
    block: Option<Block<'a>>,
    delta: Option<Delta<'a>>,
    stop_reason: Option<Cow<'a, str>>,
    blocks: Vec<Block<'a>>,
    has_message: bool,
    has_usage: bool,
    error: Option<Cow<'a, str>>,
}

fn read_event<'a>(bytes: &'a [u8], record: &mut CallRecord) -> Result<MessagesEvent<'a>> {
    let mut event = MessagesEvent::default();
    Json::parse(bytes, |j| {
        j.object(|key, j| match key {
            b"type" => j.set_str(&mut event.kind),
            b"index" => {
                event.index = j.opt_u64()?.unwrap_or(0);
                Ok(())
            }
            b"content_block" => {
                event.block = Some(read_block(j)?);
                Ok(())
            }
            b"delta" => {
                event.delta = Some(read_delta(j)?);
                Ok(())
            }
            // Cumulative in message_delta: the latest value wins.
            b"usage" => {
                event.has_usage = true;
                shared::read_usage(j, &USAGE, record)
            }
            b"error" => shared::read_error(j, &mut event.error).map(|_| ()),
            b"message" => {
                event.has_message = true;
                read_message(j, &mut event, record)
            }
            // A non-streaming body is a message at the top level.
            b"id" => shared::read_response_id(j, record),
            b"model" => shared::read_response_model(j, record),
            b"content" => read_blocks(j, &mut event.blocks),
            b"stop_reason" => j.set_str(&mut event.stop_reason),
            _ => j.skip(),
        })
    })?;
    Ok(event)
}

fn read_message<'a>(
    j: &mut Json<'a>,
    event: &mut MessagesEvent<'a>,
    record: &mut CallRecord,
) -> Result<()> {
    j.object(|key, j| match key {
        b"id" => shared::read_response_id(j, record),
        b"model" => shared::read_response_model(j, record),
        b"usage" => shared::read_usage(j, &USAGE, record),
        b"content" => read_blocks(j, &mut event.blocks),
        b"stop_reason" => j.set_str(&mut event.stop_reason),
        _ => j.skip(),
    })
}

fn read_blocks<'a>(j: &mut Json<'a>, blocks: &mut Vec<Block<'a>>) -> Result<()> {
    j.opt_array(|_, j| {
        blocks.push(read_block(j)?);
        Ok(())
    })
}

fn read_block<'a>(j: &mut Json<'a>) -> Result<Block<'a>> {
    let mut block = Block::default();
    j.object(|key, j| match key {
        b"type" => j.set_str(&mut block.kind),
        b"text" => j.set_str(&mut block.text),
        b"thinking" => j.set_str(&mut block.thinking),
        b"id" => j.set_str(&mut block.id),
        b"name" => j.set_str(&mut block.name),
        b"input" => {
            block.input = Some(j.raw_value()?);
            Ok(())
        }
        _ => j.skip(),
    })?;
    Ok(block)
}

fn read_delta<'a>(j: &mut Json<'a>) -> Result<Delta<'a>> {
    let mut delta = Delta::default();
    j.object(|key, j| match key {
        b"type" => j.set_str(&mut delta.kind),
        b"text" => j.set_str(&mut delta.text),
        b"thinking" => j.set_str(&mut delta.thinking),
        b"partial_json" => j.set_str(&mut delta.partial_json),
        b"stop_reason" => j.set_str(&mut delta.stop_reason),
        _ => j.skip(),
    })?;
    Ok(delta)
}

fn apply_block(key: u64, block: &Block<'_>, record: &mut CallRecord, now_us: u64) {
    match block.kind.as_deref() {
        Some("text") => record.push_content(block.text.as_deref().unwrap_or_default(), now_us),
        Some("thinking") => {
            record.push_reasoning(block.thinking.as_deref().unwrap_or_default(), now_us)
        }
        Some("tool_use" | "server_tool_use") => {
            record.tool_call_begin(key, block.id.as_deref(), block.name.as_deref(), now_us);
            // A streamed block starts with `"input": {}`; its arguments come
            // as deltas. A non-streaming block carries them whole.
            if let Some(input) = block.input.filter(|i| *i != "{}") {
                record.tool_call_set_arguments(key, input);
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::call::record::Outcome;

    fn feed(events: &[&str]) -> CallRecord {
        crate::provider::tests::feed::<Messages>(events)
    }

    #[test]
    fn text_stream_with_cumulative_usage() {
        let r = feed(&[
            r#"{"type":"message_start","message":{"id":"msg_1","type":"message","role":"assistant","content":[],"model":"claude-sonnet-4-5","stop_reason":null,"usage":{"input_tokens":25,"output_tokens":1,"cache_read_input_tokens":7}}}"#,
            r#"{"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}"#,
            r#"{"type":"ping"}"#,
            r#"{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"Hello"}}"#,
            r#"{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":" there"}}"#,
            r#"{"type":"content_block_stop","index":0}"#,
            r#"{"type":"message_delta","delta":{"stop_reason":"end_turn","stop_sequence":null},"usage":{"output_tokens":12}}"#,
            r#"{"type":"message_delta","delta":{},"usage":{"output_tokens":15}}"#,
            r#"{"type":"message_stop"}"#,
        ]);
        let s = r.summary(Outcome::Completed);
        assert_eq!(s.content, Some("Hello there"));
        assert_eq!(s.response_model, Some("claude-sonnet-4-5"));
        assert_eq!(s.response_id, Some("msg_1"));
        assert_eq!(
            (s.input_tokens, s.output_tokens),
            (Some(25), Some(15)),
            "cumulative, not summed"
        );
        assert_eq!(s.cache_read_input_tokens, Some(7));
        assert_eq!(s.finish_reasons, ["end_turn".to_string()]);
        assert!(r.saw_end_marker());
        assert_eq!(
            r.first_token_us,
            Some(13),
            "ping and empty block start are not tokens"
        );
    }

    #[test]
    fn thinking_and_tool_use() {
        let r = feed(&[
            r#"{"type":"message_start","message":{"id":"msg_2","model":"claude-opus-4-1","content":[],"usage":{"input_tokens":40,"output_tokens":1}}}"#,
            r#"{"type":"content_block_start","index":0,"content_block":{"type":"thinking","thinking":""}}"#,
            r#"{"type":"content_block_delta","index":0,"delta":{"type":"thinking_delta","thinking":"Need weather."}}"#,
            r#"{"type":"content_block_delta","index":0,"delta":{"type":"signature_delta","signature":"EqQB"}}"#,
            r#"{"type":"content_block_start","index":1,"content_block":{"type":"tool_use","id":"toolu_1","name":"get_weather","input":{}}}"#,
            r#"{"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta","partial_json":""}}"#,
            r#"{"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta","partial_json":"{\"city\": \"Par"}}"#,
            r#"{"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta","partial_json":"is\"}"}}"#,
            r#"{"type":"message_delta","delta":{"stop_reason":"tool_use"},"usage":{"output_tokens":60}}"#,
        ]);
        let s = r.summary(Outcome::Completed);
        assert_eq!(s.reasoning, Some("Need weather."));
        assert_eq!(s.content, Some(""));
        assert_eq!(s.tool_calls.len(), 1);
        assert_eq!(s.tool_calls[0].id, "toolu_1");
        assert_eq!(s.tool_calls[0].name, "get_weather");
        assert_eq!(s.tool_calls[0].arguments, r#"{"city": "Paris"}"#);
        assert_eq!(r.first_token_us, Some(12), "thinking counts for TTFT");
    }

    #[test]
    fn error_event() {
        let r = feed(&[
            r#"{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}"#,
        ]);
        assert_eq!(r.error_message.as_deref(), Some("Overloaded"));
    }

    #[test]
    fn non_streaming_message_and_error_body() {
        let mut r = CallRecord::new(0, true, 4096);
        Messages::apply_body(
            br#"{"id":"msg_3","type":"message","role":"assistant","model":"claude-haiku-4-5","content":[{"type":"text","text":"Sure."},{"type":"tool_use","id":"toolu_9","name":"lookup","input":{"q":"x"}}],"stop_reason":"tool_use","usage":{"input_tokens":11,"output_tokens":22}}"#,
            &mut r,
            5,
        )
        .unwrap();
        let s = r.summary(Outcome::Completed);
        assert_eq!(s.content, Some("Sure."));
        assert_eq!(s.tool_calls[0].arguments, r#"{"q":"x"}"#);
        assert_eq!((s.input_tokens, s.output_tokens), (Some(11), Some(22)));
        let mut r = CallRecord::new(0, true, 4096);
        Messages::apply_body(
            br#"{"type":"error","error":{"type":"invalid_request_error","message":"bad"}}"#,
            &mut r,
            5,
        )
        .unwrap();
        assert_eq!(r.error_message.as_deref(), Some("bad"));
    }

    #[test]
    fn wrong_shapes_are_errors() {
        let mut r = CallRecord::new(0, true, 64);
        assert!(Messages::apply_stream_event(b"{}", &mut r, 1).is_err());
        assert!(Messages::apply_stream_event(br#"{"type":"message_start"}"#, &mut r, 1).is_err());
        assert!(Messages::apply_stream_event(
            br#"{"type":"content_block_delta","index":0}"#,
            &mut r,
            1
        )
        .is_err());
    }
}
