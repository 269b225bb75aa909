//! OpenAI Chat Completions (`/v1/chat/completions`): streamed
//! `chat.completion.chunk` events and the non-streaming `chat.completion`.
//! OpenAI-compatible servers (vLLM, Ollama's /v1, LiteLLM) speak the same.

use super::shared::{self, UsageKeys};
use super::WireFormat;
use crate::call::health::Phase;
use crate::call::record::CallRecord;
use crate::wire::json::Json;
use crate::ParseError;
use std::borrow::Cow;

type Result<T> = std::result::Result<T, ParseError>;

pub struct ChatCompletions;

impl WireFormat for ChatCompletions {
    const PROVIDER: &'static str = "openai";
    const API: &'static str = "chat.completions";
    const END_MARKER: &'static str = "data: [DONE]";
    /// `prompt_tokens` includes `prompt_tokens_details.cached_tokens`.
    const INPUT_INCLUDES_CACHED: bool = true;

    fn apply_stream_event(data: &[u8], record: &mut CallRecord, now_us: u64) -> Result<()> {
        if data == b"[DONE]" {
            record.mark_end();
            return Ok(());
        }
        apply_document(data, b"delta", record, now_us)
    }

    /// A whole non-streaming `chat.completion` (or an error body).
    fn apply_body(body: &[u8], record: &mut CallRecord, now_us: u64) -> Result<()> {
        apply_document(body, b"message", record, now_us)
    }
}

const USAGE: UsageKeys = UsageKeys {
    input: b"prompt_tokens",
    output: b"completion_tokens",
    cache_read: None,
    cache_write: None,
    input_details: Some(b"prompt_tokens_details"),
    output_details: Some(b"completion_tokens_details"),
};

/// A streamed delta, or a whole message of a non-streaming body.
#[derive(Default)]
struct Message<'a> {
    content: Option<Cow<'a, str>>,
    /// vLLM, DeepSeek and other compatible servers stream reasoning here.
    reasoning_content: Option<Cow<'a, str>>,
    refusal: Option<Cow<'a, str>>,
    tool_calls: Vec<ToolCallDelta<'a>>,
}

/// A tool call as a delta (or a whole message) carries it.
#[derive(Default)]
struct ToolCallDelta<'a> {
    /// Position of the call in the message; absent in non-streaming bodies.
    index: Option<u64>,
    id: Option<Cow<'a, str>>,
    name: Option<Cow<'a, str>>,
    arguments: Option<Cow<'a, str>>,
}

/// A chunk and a completion differ only in where a choice keeps its text.
fn apply_document(
    bytes: &[u8],
    message_key: &[u8],
    record: &mut CallRecord,
    now_us: u64,
) -> Result<()> {
    Json::parse(bytes, |j| {
        j.object(|key, j| match key {
            b"id" => shared::read_response_id(j, record),
            b"model" => shared::read_response_model(j, record),
            b"choices" => j.opt_array(|_, j| apply_choice(j, message_key, record, now_us)),
            b"usage" => shared::read_usage(j, &USAGE, record),
            b"error" => {
                // `{"error": {"message": ...}}`, as OpenAI and compatible servers send it.
                let mut message = None;
                if shared::read_error(j, &mut message)? {
                    record.set_error(message.as_deref().unwrap_or("error"));
                }
                Ok(())
            }
            _ => j.skip(),
        })
    })
}

fn apply_choice(
    j: &mut Json<'_>,
    message_key: &[u8],
    record: &mut CallRecord,
    now_us: u64,
) -> Result<()> {
    let mut index = 0;
    let mut message = Message::default();
    let mut finish_reason = None;
    j.object(|key, j| match key {
        b"index" => {
            index = j.opt_u64()?.unwrap_or(0);
            Ok(())
        }
        b"finish_reason" => j.set_str(&mut finish_reason),
        k if k == message_key => read_message(j, &mut message),
        _ => j.skip(),
    })?;
    apply_message(index, &message, record, now_us);
    if let Some(reason) = finish_reason {
        record.add_finish_reason(&reason);
    }
    Ok(())
}

fn read_message<'a>(j: &mut Json<'a>, message: &mut Message<'a>) -> Result<()> {
    j.opt_object(|key, j| match key {
        b"content" => j.set_str(&mut message.content),
        b"reasoning_content" => j.set_str(&mut message.reasoning_content),
        b"refusal" => j.set_str(&mut message.refusal),
        b"tool_calls" => j.opt_array(|_, j| {
            let mut call = ToolCallDelta::default();
            j.object(|key, j| match key {
                b"index" => {
                    call.index = j.opt_u64()?;
                    Ok(())
                }
                b"id" => j.set_str(&mut call.id),
                b"function" => j.opt_object(|key, j| match key {
                    b"name" => j.set_str(&mut call.name),
                    b"arguments" => j.set_str(&mut call.arguments),
                    _ => j.skip(),
                }),
                _ => j.skip(),
            })?;
            message.tool_calls.push(call);
            Ok(())
        }),
        _ => j.skip(),
    })
}

/// A delta (or a whole message). With n > 1 choices the answer text is
/// choice 0's; every choice's activity counts for timing.
fn apply_message(choice: u64, message: &Message<'_>, record: &mut CallRecord, now_us: u64) {
    // OpenAI's first delta carries only the role: not a token.
    if let Some(reasoning) = &message.reasoning_content {
        record.push_reasoning(reasoning, now_us);
    }
    for piece in [&message.content, &message.refusal].into_iter().flatten() {
        if choice == 0 {
            record.push_content(piece, now_us);
        } else if !piece.is_empty() {
            record.note_token_activity(now_us, Phase::Content, piece.len());
        }
    }
    for (position, call) in message.tool_calls.iter().enumerate() {
        let index = call.index.unwrap_or(position as u64) & 0xffff_ffff;
        let key = (choice << 32) | index;
        if call.id.is_some() || call.name.is_some() {
            record.tool_call_begin(key, call.id.as_deref(), call.name.as_deref(), now_us);
        }
        if let Some(arguments) = &call.arguments {
            record.tool_call_arguments(key, arguments, now_us);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::call::record::Outcome;

    fn record() -> CallRecord {
        CallRecord::new(0, true, 1024)
    }

    #[test]
    fn role_only_delta_is_not_a_token() {
        let mut r = record();
        ChatCompletions::apply_stream_event(
            br#"{"id":"c1","model":"gpt-4o","choices":[{"index":0,"delta":{"role":"assistant","content":""},"finish_reason":null}]}"#,
            &mut r,
            5,
        )
        .unwrap();
        assert_eq!(r.first_token_us, None);
        assert_eq!(r.response_id.as_deref(), Some("c1"));
        ChatCompletions::apply_stream_event(
            br#"{"choices":[{"delta":{"content":"Hi"}}]}"#,
            &mut r,
            9,
        )
        .unwrap();
        assert_eq!(r.first_token_us, Some(9));
        assert_eq!(r.content(), "Hi");
    }

    #[test]
    fn usage_chunk_finish_reason_and_done() {
        let mut r = record();
        ChatCompletions::apply_stream_event(
            br#"{"choices":[{"delta":{},"finish_reason":"stop"}]}"#,
            &mut r,
            1,
        )
        .unwrap();
        ChatCompletions::apply_stream_event(
            br#"{"choices":[],"usage":{"prompt_tokens":12,"completion_tokens":34,"total_tokens":46,"prompt_tokens_details":{"cached_tokens":8},"completion_tokens_details":{"reasoning_tokens":3}}}"#,
            &mut r,
            2,
        )
        .unwrap();
        ChatCompletions::apply_stream_event(b"[DONE]", &mut r, 3).unwrap();
        let s = r.summary(Outcome::Completed);
        assert_eq!(s.finish_reasons, ["stop".to_string()]);
        assert_eq!((s.input_tokens, s.output_tokens), (Some(12), Some(34)));
        assert_eq!(s.cache_read_input_tokens, Some(8));
        assert_eq!(s.reasoning_output_tokens, Some(3));
        assert!(r.saw_end_marker());
    }

    #[test]
    fn escaped_text_is_decoded() {
        let mut r = record();
        ChatCompletions::apply_stream_event(
            br#"{"choices":[{"delta":{"content":"a\"b\n\u00e9"}}]}"#,
            &mut r,
            1,
        )
        .unwrap();
        assert_eq!(r.content(), "a\"b\né");
    }

    #[test]
    fn tool_call_and_reasoning_count_as_first_token() {
        let mut r = record();
        ChatCompletions::apply_stream_event(
            br#"{"choices":[{"delta":{"tool_calls":[{"index":0,"function":{"name":"f"}}]}}]}"#,
            &mut r,
            7,
        )
        .unwrap();
        assert_eq!(r.first_token_us, Some(7));
        let mut r = record();
        ChatCompletions::apply_stream_event(
            br#"{"choices":[{"delta":{"reasoning_content":"hmm"}}]}"#,
            &mut r,
            8,
        )
        .unwrap();
        assert_eq!(r.first_token_us, Some(8));
        assert_eq!(r.content(), "");
    }

    #[test]
    fn tool_calls_are_assembled_per_index() {
        let mut r = record();
        for data in [
            r#"{"choices":[{"index":0,"delta":{"role":"assistant","content":null,"tool_calls":[{"index":0,"id":"call_a","type":"function","function":{"name":"get_weather","arguments":""}}]}}]}"#,
            r#"{"choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":"{\"city\":"}}]}}]}"#,
            r#"{"choices":[{"index":0,"delta":{"tool_calls":[{"index":1,"id":"call_b","function":{"name":"get_time","arguments":"{}"}}]}}]}"#,
            r#"{"choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":"\"Paris\"}"}}]}}]}"#,
            r#"{"choices":[{"index":0,"delta":{},"finish_reason":"tool_calls"}]}"#,
        ] {
            ChatCompletions::apply_stream_event(data.as_bytes(), &mut r, 1).unwrap();
        }
        let s = r.summary(Outcome::Completed);
        let calls: Vec<_> = s
            .tool_calls
            .iter()
            .map(|c| (c.id, c.name, c.arguments))
            .collect();
        assert_eq!(
            calls,
            [
                ("call_a", "get_weather", r#"{"city":"Paris"}"#),
                ("call_b", "get_time", "{}")
            ]
        );
        assert_eq!(s.finish_reasons, ["tool_calls".to_string()]);
    }

    #[test]
    fn second_choice_does_not_mix_into_the_answer() {
        let mut r = record();
        ChatCompletions::apply_stream_event(br#"{"choices":[{"index":0,"delta":{"content":"A"}},{"index":1,"delta":{"content":"B"}}]}"#, &mut r, 1).unwrap();
        ChatCompletions::apply_stream_event(br#"{"choices":[{"index":1,"delta":{},"finish_reason":"stop"},{"index":0,"delta":{},"finish_reason":"length"}]}"#, &mut r, 2).unwrap();
        assert_eq!(r.content(), "A");
        assert_eq!(r.finish_reasons, ["stop", "length"]);
    }

    #[test]
    fn refusal_is_answer_text() {
        let mut r = record();
        ChatCompletions::apply_stream_event(
            br#"{"choices":[{"index":0,"delta":{"refusal":"I can't"}}]}"#,
            &mut r,
            1,
        )
        .unwrap();
        assert_eq!(r.content(), "I can't");
    }

    #[test]
    fn not_json_or_wrong_shape_is_an_error() {
        let mut r = record();
        assert_eq!(
            ChatCompletions::apply_stream_event(b"not json", &mut r, 1),
            Err(ParseError)
        );
        assert_eq!(
            ChatCompletions::apply_stream_event(br#"{"choices":"x"}"#, &mut r, 1),
            Err(ParseError)
        );
        assert_eq!(
            ChatCompletions::apply_stream_event(b"\xff\xfe", &mut r, 1),
            Err(ParseError)
        );
    }

    #[test]
    fn error_event_is_recorded() {
        let mut r = record();
        ChatCompletions::apply_stream_event(
            br#"{"error":{"message":"overloaded","type":"server_error"}}"#,
            &mut r,
            1,
        )
        .unwrap();
        assert_eq!(r.error_message.as_deref(), Some("overloaded"));
    }

    #[test]
    fn non_streaming_completion() {
        let mut r = record();
        ChatCompletions::apply_body(
            br#"{"id":"chatcmpl-1","object":"chat.completion","model":"gpt-4o-mini-2024","choices":[{"index":0,"message":{"role":"assistant","content":"Hello there"},"finish_reason":"stop"}],"usage":{"prompt_tokens":5,"completion_tokens":2,"total_tokens":7}}"#,
            &mut r,
            100,
        )
        .unwrap();
        let s = r.summary(Outcome::Completed);
        assert_eq!(s.content, Some("Hello there"));
        assert_eq!(s.response_model, Some("gpt-4o-mini-2024"));
        assert_eq!((s.input_tokens, s.output_tokens), (Some(5), Some(2)));
        assert_eq!(s.ttft_ms, Some(0.1));
    }
}
