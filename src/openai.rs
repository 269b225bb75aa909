//! OpenAI Chat Completions (`/v1/chat/completions`): streamed
//! `chat.completion.chunk` events and the non-streaming `chat.completion`.
//! OpenAI-compatible servers (vLLM, Ollama's /v1, LiteLLM) speak the same.

use crate::record::CallRecord;
use serde::Deserialize;
use std::borrow::Cow;

pub const PROVIDER: &str = "openai";
pub const API: &str = "chat.completions";

/// Not a chunk this adapter understands.
#[derive(Debug, PartialEq, Eq)]
pub struct ParseError;

#[derive(Deserialize)]
struct Chunk<'a> {
    #[serde(borrow, default)]
    id: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    model: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    choices: Vec<StreamChoice<'a>>,
    #[serde(default)]
    usage: Option<Usage>,
    #[serde(borrow, default)]
    error: Option<ApiError<'a>>,
}

#[derive(Deserialize)]
struct StreamChoice<'a> {
    #[serde(borrow, default)]
    delta: Option<Delta<'a>>,
    #[serde(borrow, default)]
    finish_reason: Option<Cow<'a, str>>,
}

#[derive(Deserialize)]
struct Delta<'a> {
    #[serde(borrow, default)]
    content: Option<Cow<'a, str>>,
    /// vLLM, DeepSeek and other compatible servers stream reasoning here.
    #[serde(borrow, default)]
    reasoning_content: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    refusal: Option<Cow<'a, str>>,
    #[serde(default)]
    tool_calls: Option<Vec<serde::de::IgnoredAny>>,
}

#[derive(Deserialize)]
struct Usage {
    #[serde(default)]
    prompt_tokens: Option<u64>,
    #[serde(default)]
    completion_tokens: Option<u64>,
    #[serde(default)]
    prompt_tokens_details: Option<PromptDetails>,
    #[serde(default)]
    completion_tokens_details: Option<CompletionDetails>,
}

#[derive(Deserialize)]
struct PromptDetails {
    #[serde(default)]
    cached_tokens: Option<u64>,
}

#[derive(Deserialize)]
struct CompletionDetails {
    #[serde(default)]
    reasoning_tokens: Option<u64>,
}

#[derive(Deserialize)]
struct ApiError<'a> {
    #[serde(borrow, default)]
    message: Option<Cow<'a, str>>,
}

#[derive(Deserialize)]
struct Completion<'a> {
    #[serde(borrow, default)]
    id: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    model: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    choices: Vec<CompletionChoice<'a>>,
    #[serde(default)]
    usage: Option<Usage>,
    #[serde(borrow, default)]
    error: Option<ApiError<'a>>,
}

#[derive(Deserialize)]
struct CompletionChoice<'a> {
    #[serde(borrow, default)]
    message: Option<Delta<'a>>,
    #[serde(borrow, default)]
    finish_reason: Option<Cow<'a, str>>,
}

/// Applies one SSE event's data to the record.
pub fn apply_stream_event(
    data: &[u8],
    record: &mut CallRecord,
    now_us: u64,
) -> Result<(), ParseError> {
    if data == b"[DONE]" {
        record.saw_end_marker = true;
        return Ok(());
    }
    let chunk: Chunk<'_> = serde_json::from_slice(data).map_err(|_| ParseError)?;
    if let Some(id) = &chunk.id {
        record.set_response_id(id);
    }
    if let Some(model) = &chunk.model {
        record.set_response_model(model);
    }
    for choice in &chunk.choices {
        if let Some(delta) = &choice.delta {
            apply_message(delta, record, now_us);
        }
        if let Some(reason) = &choice.finish_reason {
            record.add_finish_reason(reason);
        }
    }
    if let Some(usage) = &chunk.usage {
        apply_usage(usage, record);
    }
    if let Some(error) = &chunk.error {
        record.set_error(error.message.as_deref().unwrap_or("error"));
    }
    Ok(())
}

/// Applies a whole non-streaming response body (or an error body).
pub fn apply_completion(
    body: &[u8],
    record: &mut CallRecord,
    now_us: u64,
) -> Result<(), ParseError> {
    let completion: Completion<'_> = serde_json::from_slice(body).map_err(|_| ParseError)?;
    if let Some(id) = &completion.id {
        record.set_response_id(id);
    }
    if let Some(model) = &completion.model {
        record.set_response_model(model);
    }
    for choice in &completion.choices {
        if let Some(message) = &choice.message {
            apply_message(message, record, now_us);
        }
        if let Some(reason) = &choice.finish_reason {
            record.add_finish_reason(reason);
        }
    }
    if let Some(usage) = &completion.usage {
        apply_usage(usage, record);
    }
    if let Some(error) = &completion.error {
        record.set_error(error.message.as_deref().unwrap_or("error"));
    }
    Ok(())
}

fn apply_message(delta: &Delta<'_>, record: &mut CallRecord, now_us: u64) {
    // OpenAI's first delta carries only the role: not a token.
    let reasoning = delta.reasoning_content.as_deref().unwrap_or_default();
    let has_tool_call = delta
        .tool_calls
        .as_ref()
        .is_some_and(|calls| !calls.is_empty());
    if !reasoning.is_empty() || has_tool_call {
        record.note_token_activity(now_us);
    }
    if let Some(content) = &delta.content {
        record.push_content(content, now_us);
    }
    if let Some(refusal) = &delta.refusal {
        record.push_content(refusal, now_us);
    }
}

fn apply_usage(usage: &Usage, record: &mut CallRecord) {
    let u = &mut record.usage;
    u.input_tokens = usage.prompt_tokens.or(u.input_tokens);
    u.output_tokens = usage.completion_tokens.or(u.output_tokens);
    if let Some(cached) = usage
        .prompt_tokens_details
        .as_ref()
        .and_then(|d| d.cached_tokens)
    {
        u.cache_read_input_tokens = Some(cached);
    }
    if let Some(reasoning) = usage
        .completion_tokens_details
        .as_ref()
        .and_then(|d| d.reasoning_tokens)
    {
        u.reasoning_output_tokens = Some(reasoning);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::Outcome;

    fn record() -> CallRecord {
        CallRecord::new(0, true, 1024)
    }

    #[test]
    fn role_only_delta_is_not_a_token() {
        let mut r = record();
        apply_stream_event(
            br#"{"id":"c1","model":"gpt-4o","choices":[{"index":0,"delta":{"role":"assistant","content":""},"finish_reason":null}]}"#,
            &mut r,
            5,
        )
        .unwrap();
        assert_eq!(r.first_token_us, None);
        assert_eq!(r.response_id.as_deref(), Some("c1"));
        apply_stream_event(br#"{"choices":[{"delta":{"content":"Hi"}}]}"#, &mut r, 9).unwrap();
        assert_eq!(r.first_token_us, Some(9));
        assert_eq!(r.content(), "Hi");
    }

    #[test]
    fn usage_chunk_finish_reason_and_done() {
        let mut r = record();
        apply_stream_event(
            br#"{"choices":[{"delta":{},"finish_reason":"stop"}]}"#,
            &mut r,
            1,
        )
        .unwrap();
        apply_stream_event(
            br#"{"choices":[],"usage":{"prompt_tokens":12,"completion_tokens":34,"total_tokens":46,"prompt_tokens_details":{"cached_tokens":8},"completion_tokens_details":{"reasoning_tokens":3}}}"#,
            &mut r,
            2,
        )
        .unwrap();
        apply_stream_event(b"[DONE]", &mut r, 3).unwrap();
        let s = r.summary(Outcome::Completed);
        assert_eq!(s.finish_reasons, ["stop".to_string()]);
        assert_eq!((s.input_tokens, s.output_tokens), (Some(12), Some(34)));
        assert_eq!(s.cache_read_input_tokens, Some(8));
        assert_eq!(s.reasoning_output_tokens, Some(3));
        assert!(r.saw_end_marker);
    }

    #[test]
    fn escaped_text_is_decoded() {
        let mut r = record();
        apply_stream_event(
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
        apply_stream_event(
            br#"{"choices":[{"delta":{"tool_calls":[{"index":0,"function":{"name":"f"}}]}}]}"#,
            &mut r,
            7,
        )
        .unwrap();
        assert_eq!(r.first_token_us, Some(7));
        let mut r = record();
        apply_stream_event(
            br#"{"choices":[{"delta":{"reasoning_content":"hmm"}}]}"#,
            &mut r,
            8,
        )
        .unwrap();
        assert_eq!(r.first_token_us, Some(8));
        assert_eq!(r.content(), "");
    }

    #[test]
    fn not_json_or_wrong_shape_is_an_error() {
        let mut r = record();
        assert_eq!(apply_stream_event(b"not json", &mut r, 1), Err(ParseError));
        assert_eq!(
            apply_stream_event(br#"{"choices":"x"}"#, &mut r, 1),
            Err(ParseError)
        );
        assert_eq!(apply_stream_event(b"\xff\xfe", &mut r, 1), Err(ParseError));
    }

    #[test]
    fn error_event_is_recorded() {
        let mut r = record();
        apply_stream_event(
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
        apply_completion(
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
