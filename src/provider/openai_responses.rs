//! OpenAI Responses API (`/v1/responses`): typed events
//! (`response.output_text.delta`, `response.function_call_arguments.delta`,
//! `response.completed`, `response.failed`, `response.incomplete`, `error`,
//! ...) and the non-streaming `response` object.

use super::shared::{self, UsageKeys};
use super::WireFormat;
use crate::call::record::CallRecord;
use crate::wire::json::Json;
use crate::ParseError;
use std::borrow::Cow;

type Result<T> = std::result::Result<T, ParseError>;

pub struct Responses;

impl WireFormat for Responses {
    const PROVIDER: &'static str = "openai";
    const API: &'static str = "responses";
    const END_MARKER: &'static str = "response.completed, response.failed or response.incomplete";
    /// `input_tokens` includes `input_tokens_details.cached_tokens`.
    const INPUT_INCLUDES_CACHED: bool = true;

    fn apply_stream_event(data: &[u8], record: &mut CallRecord, now_us: u64) -> Result<()> {
        let event = read_event(data, record)?;
        let key = event.output_index;
        let delta = event.delta.as_deref().unwrap_or_default();
        match event.kind.as_deref().ok_or(ParseError)? {
            "response.output_text.delta" | "response.refusal.delta" => {
                record.push_content(delta, now_us)
            }
            "response.reasoning_summary_text.delta" | "response.reasoning_text.delta" => {
                record.push_reasoning(delta, now_us)
            }
            "response.output_item.added" => {
                if let Some(item) = event
                    .item
                    .as_ref()
                    .filter(|i| i.kind.as_deref() == Some("function_call"))
                {
                    let id = item.call_id.as_deref().or(item.id.as_deref());
                    record.tool_call_begin(key, id, item.name.as_deref(), now_us);
                }
            }
            "response.function_call_arguments.delta" => {
                record.tool_call_arguments(key, delta, now_us)
            }
            "response.function_call_arguments.done" => {
                record.tool_call_set_arguments(key, event.arguments.as_deref().unwrap_or_default());
            }
            "response.completed" | "response.failed" | "response.incomplete" => {
                let response = event.response.ok_or(ParseError)?;
                apply_response_end(&response, record);
            }
            "error" => record.set_error(event.message.as_deref().unwrap_or("error")),
            // response.created (read above), part/item lifecycle, later kinds.
            _ => {}
        }
        Ok(())
    }

    /// Applies a whole non-streaming `response` object, or an error body.
    fn apply_body(body: &[u8], record: &mut CallRecord, now_us: u64) -> Result<()> {
        let response = Json::parse(body, |j| read_response(j, record))?;
        for (index, item) in response.output.iter().enumerate() {
            let key = index as u64;
            match item.kind.as_deref() {
                Some("message") => item
                    .texts
                    .iter()
                    .for_each(|t| record.push_content(t, now_us)),
                Some("reasoning") => item
                    .texts
                    .iter()
                    .for_each(|t| record.push_reasoning(t, now_us)),
                Some("function_call") => {
                    let id = item.call_id.as_deref().or(item.id.as_deref());
                    record.tool_call_begin(key, id, item.name.as_deref(), now_us);
                    record.tool_call_set_arguments(
                        key,
                        item.arguments.as_deref().unwrap_or_default(),
                    );
                }
                _ => {}
            }
        }
        apply_response_end(&response, record);
        Ok(())
    }
}

const USAGE: UsageKeys = UsageKeys {
    input: b"input_tokens",
    output: b"output_tokens",
    cache_read: None,
    cache_write: None,
    input_details: Some(b"input_tokens_details"),
    output_details: Some(b"output_tokens_details"),
};

/// One typed event of the stream.
#[derive(Default)]
struct ResponsesEvent<'a> {
    kind: Option<Cow<'a, str>>,
    output_index: u64,
    item: Option<Item<'a>>,
    delta: Option<Cow<'a, str>>,
    arguments: Option<Cow<'a, str>>,
    message: Option<Cow<'a, str>>,
    response: Option<Response<'a>>,
}

#[derive(Default)]
struct Response<'a> {
    status: Option<Cow<'a, str>>,
    output: Vec<Item<'a>>,
    error: Option<Cow<'a, str>>,
    incomplete_reason: Option<Cow<'a, str>>,
}

#[derive(Default)]
struct Item<'a> {
    kind: Option<Cow<'a, str>>,
    id: Option<Cow<'a, str>>,
    call_id: Option<Cow<'a, str>>,
    name: Option<Cow<'a, str>>,
    arguments: Option<Cow<'a, str>>,
    /// Text of a message's `content` parts or a reasoning item's `summary` parts.
    texts: Vec<Cow<'a, str>>,
}

fn read_event<'a>(bytes: &'a [u8], record: &mut CallRecord) -> Result<ResponsesEvent<'a>> {
    let mut event = ResponsesEvent::default();
    Json::parse(bytes, |j| {
        j.object(|key, j| match key {
            b"type" => j.set_str(&mut event.kind),
            b"output_index" => {
                event.output_index = j.opt_u64()?.unwrap_or(0);
                Ok(())
            }
            b"item" => {
                event.item = Some(read_item(j)?);
                Ok(())
            }
            b"delta" => j.set_str(&mut event.delta),
            b"arguments" => j.set_str(&mut event.arguments),
            b"message" => j.set_str(&mut event.message),
            b"response" => {
                event.response = Some(read_response(j, record)?);
                Ok(())
            }
            _ => j.skip(),
        })
    })?;
    Ok(event)
}

/// A `response` object. Its id, model and usage go straight to the record.
fn read_response<'a>(j: &mut Json<'a>, record: &mut CallRecord) -> Result<Response<'a>> {
    let mut response = Response::default();
    j.object(|key, j| match key {
        b"id" => shared::read_response_id(j, record),
        b"model" => shared::read_response_model(j, record),
        b"status" => j.set_str(&mut response.status),
        b"output" => j.opt_array(|_, j| {
            response.output.push(read_item(j)?);
            Ok(())
        }),
        b"usage" => shared::read_usage(j, &USAGE, record),
        b"error" => shared::read_error(j, &mut response.error).map(|_| ()),
        b"incomplete_details" => j.opt_object(|key, j| match key {
            b"reason" => j.set_str(&mut response.incomplete_reason),
            _ => j.skip(),
        }),
        _ => j.skip(),
    })?;
    Ok(response)
}

fn read_item<'a>(j: &mut Json<'a>) -> Result<Item<'a>> {
    let mut item = Item::default();
    j.object(|key, j| match key {
        b"type" => j.set_str(&mut item.kind),
        b"id" => j.set_str(&mut item.id),
        b"call_id" => j.set_str(&mut item.call_id),
        b"name" => j.set_str(&mut item.name),
        b"arguments" => j.set_str(&mut item.arguments),
        b"content" | b"summary" => j.opt_array(|_, j| {
            j.object(|key, j| match key {
                b"text" | b"refusal" => {
                    if let Some(text) = j.opt_str()? {
                        item.texts.push(text);
                    }
                    Ok(())
                }
                _ => j.skip(),
            })
        }),
        _ => j.skip(),
    })?;
    Ok(item)
}

/// The terminal response: status as the finish reason (the incomplete
/// reason when there is one) and the error.
fn apply_response_end(response: &Response<'_>, record: &mut CallRecord) {
    record.mark_end();
    if let Some(reason) = response
        .incomplete_reason
        .as_deref()
        .or(response.status.as_deref())
    {
        record.add_finish_reason(reason);
    }
    if let Some(message) = &response.error {
        record.set_error(message);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::call::record::Outcome;

    fn feed(events: &[&str]) -> CallRecord {
        crate::provider::tests::feed::<Responses>(events)
    }

    #[test]
    fn text_and_function_call_stream() {
        let r = feed(&[
            r#"{"type":"response.created","sequence_number":0,"response":{"id":"resp_1","object":"response","status":"in_progress","model":"gpt-4.1-2025-04-14","output":[],"usage":null}}"#,
            r#"{"type":"response.output_item.added","output_index":0,"item":{"id":"msg_1","type":"message","status":"in_progress","role":"assistant","content":[]}}"#,
            r#"{"type":"response.output_text.delta","item_id":"msg_1","output_index":0,"content_index":0,"delta":"Checking"}"#,
            r#"{"type":"response.output_item.added","output_index":1,"item":{"type":"function_call","id":"fc_1","call_id":"call_1","name":"get_weather","arguments":""}}"#,
            r#"{"type":"response.function_call_arguments.delta","item_id":"fc_1","output_index":1,"delta":"{\"city\":"}"#,
            r#"{"type":"response.function_call_arguments.delta","item_id":"fc_1","output_index":1,"delta":"\"Oslo\"}"}"#,
            r#"{"type":"response.function_call_arguments.done","item_id":"fc_1","output_index":1,"arguments":"{\"city\":\"Oslo\"}"}"#,
            r#"{"type":"response.completed","response":{"id":"resp_1","status":"completed","model":"gpt-4.1-2025-04-14","output":[],"usage":{"input_tokens":36,"input_tokens_details":{"cached_tokens":4},"output_tokens":21,"output_tokens_details":{"reasoning_tokens":0},"total_tokens":57}}}"#,
        ]);
        let s = r.summary(Outcome::Completed);
        assert_eq!(s.content, Some("Checking"));
        assert_eq!(s.response_id, Some("resp_1"));
        assert_eq!(s.response_model, Some("gpt-4.1-2025-04-14"));
        assert_eq!(s.tool_calls.len(), 1);
        assert_eq!(
            (s.tool_calls[0].id, s.tool_calls[0].name),
            ("call_1", "get_weather")
        );
        assert_eq!(s.tool_calls[0].arguments, r#"{"city":"Oslo"}"#);
        assert_eq!((s.input_tokens, s.output_tokens), (Some(36), Some(21)));
        assert_eq!(s.cache_read_input_tokens, Some(4));
        assert_eq!(s.finish_reasons, ["completed".to_string()]);
        assert!(r.saw_end_marker());
    }

    #[test]
    fn failed_and_incomplete() {
        let r = feed(&[
            r#"{"type":"response.failed","response":{"id":"resp_2","status":"failed","error":{"code":"server_error","message":"The model failed"},"output":[]}}"#,
        ]);
        assert_eq!(r.error_message.as_deref(), Some("The model failed"));
        assert_eq!(r.finish_reasons, ["failed"]);
        let r = feed(&[
            r#"{"type":"response.incomplete","response":{"id":"resp_3","status":"incomplete","incomplete_details":{"reason":"max_output_tokens"},"output":[],"usage":{"input_tokens":5,"output_tokens":16}}}"#,
        ]);
        assert_eq!(r.finish_reasons, ["max_output_tokens"]);
        let r = feed(&[
            r#"{"type":"error","code":"rate_limit_exceeded","message":"Slow down","param":null}"#,
        ]);
        assert_eq!(r.error_message.as_deref(), Some("Slow down"));
    }

    #[test]
    fn non_streaming_response() {
        let mut r = CallRecord::new(0, true, 4096);
        Responses::apply_body(
            br#"{"id":"resp_4","object":"response","status":"completed","model":"o4-mini","output":[{"type":"reasoning","id":"rs_1","summary":[{"type":"summary_text","text":"Thinking."}]},{"type":"message","id":"msg_4","role":"assistant","content":[{"type":"output_text","text":"Done.","annotations":[]}]},{"type":"function_call","id":"fc_4","call_id":"call_4","name":"f","arguments":"{}"}],"usage":{"input_tokens":9,"output_tokens":30,"output_tokens_details":{"reasoning_tokens":20}}}"#,
            &mut r,
            3,
        )
        .unwrap();
        let s = r.summary(Outcome::Completed);
        assert_eq!(s.content, Some("Done."));
        assert_eq!(s.reasoning, Some("Thinking."));
        assert_eq!(s.tool_calls[0].arguments, "{}");
        assert_eq!(s.reasoning_output_tokens, Some(20));
        assert_eq!(s.finish_reasons, ["completed".to_string()]);
    }
}
