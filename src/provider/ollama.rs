//! Ollama's native API: `/api/chat` and `/api/generate`, streamed as NDJSON
//! (one object a line, the last with `"done": true`) or, with
//! `"stream": false`, one JSON object. (Ollama's `/v1/chat/completions` is
//! OpenAI's format and read as such.)
//!
//! A chat object carries `message` (`content`, `thinking`, `tool_calls`
//! whose `arguments` are a JSON object); a generate object `response` and
//! `thinking`. The last one adds `done_reason` and the counts
//! `prompt_eval_count` (input) and `eval_count` (output). An error is
//! `{"error": "text"}`, as a body or as a line of a stream.

use super::WireFormat;
use crate::call::record::{CallRecord, UsageCount};
use crate::wire::json::Json;
use crate::ParseError;
use std::borrow::Cow;

type Result<T> = std::result::Result<T, ParseError>;

/// OpenTelemetry has no `gen_ai.provider.name` for Ollama: its own name.
const PROVIDER: &str = "ollama";
const END_MARKER: &str = "\"done\": true";

pub struct Chat;

impl WireFormat for Chat {
    const PROVIDER: &'static str = PROVIDER;
    const API: &'static str = "ollama.chat";
    const END_MARKER: &'static str = END_MARKER;
    /// Ollama reports no cached count.
    const INPUT_INCLUDES_CACHED: bool = false;

    fn apply_stream_event(data: &[u8], record: &mut CallRecord, now_us: u64) -> Result<()> {
        apply_object(data, record, now_us)
    }

    fn apply_body(body: &[u8], record: &mut CallRecord, now_us: u64) -> Result<()> {
        apply_object(body, record, now_us)
    }
}

pub struct Generate;

impl WireFormat for Generate {
    const PROVIDER: &'static str = PROVIDER;
    const API: &'static str = "ollama.generate";
    const OPERATION: &'static str = "text_completion";
    const END_MARKER: &'static str = END_MARKER;
    const INPUT_INCLUDES_CACHED: bool = false;

    fn apply_stream_event(data: &[u8], record: &mut CallRecord, now_us: u64) -> Result<()> {
        apply_object(data, record, now_us)
    }

    fn apply_body(body: &[u8], record: &mut CallRecord, now_us: u64) -> Result<()> {
        apply_object(body, record, now_us)
    }
}

/// A tool call as a chat message carries it: whole, arguments as JSON.
struct ToolCall<'a> {
    name: Option<Cow<'a, str>>,
    arguments: Option<&'a str>,
}

/// One object of either API: the keys they share are read the same.
fn apply_object(bytes: &[u8], record: &mut CallRecord, now_us: u64) -> Result<()> {
    let mut done = false;
    let mut reason = None;
    let mut error = None;
    Json::parse(bytes, |j| {
        j.object(|key, j| match key {
            b"model" => j.with_str(|m| record.set_response_model(m)),
            b"message" => j.opt_object(|key, j| match key {
                b"content" => j.with_str(|text| record.push_content(text, now_us)),
                b"thinking" => j.with_str(|text| record.push_reasoning(text, now_us)),
                b"tool_calls" => j.opt_array(|_, j| {
                    let call = read_tool_call(j)?;
                    let key = record.tool_call_count() as u64;
                    record.tool_call_begin(key, None, call.name.as_deref(), now_us);
                    if let Some(arguments) = call.arguments {
                        record.tool_call_arguments(key, arguments, now_us);
                    }
                    Ok(())
                }),
                _ => j.skip(),
            }),
            b"response" => j.with_str(|text| record.push_content(text, now_us)),
            b"thinking" => j.with_str(|text| record.push_reasoning(text, now_us)),
            b"done" => {
                done = j.opt_bool()?.unwrap_or(false);
                Ok(())
            }
            b"done_reason" => j.set_str(&mut reason),
            b"prompt_eval_count" => count(j, record, UsageCount::Input),
            b"eval_count" => count(j, record, UsageCount::Output),
            b"error" => j.set_str(&mut error),
            _ => j.skip(),
        })
    })?;
    if let Some(message) = error {
        record.set_error(&message);
    }
    if done {
        record.mark_end();
        record.add_finish_reason(reason.as_deref().unwrap_or("stop"));
    }
    Ok(())
}

fn read_tool_call<'a>(j: &mut Json<'a>) -> Result<ToolCall<'a>> {
    let mut call = ToolCall {
        name: None,
        arguments: None,
    };
    j.object(|key, j| match key {
        b"function" => j.opt_object(|key, j| match key {
            b"name" => j.set_str(&mut call.name),
            b"arguments" => {
                call.arguments = Some(j.raw_value()?);
                Ok(())
            }
            _ => j.skip(),
        }),
        _ => j.skip(),
    })?;
    Ok(call)
}

fn count(j: &mut Json<'_>, record: &mut CallRecord, which: UsageCount) -> Result<()> {
    if let Some(n) = j.opt_u64()? {
        record.set_usage(which, n);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::call::record::Outcome;
    use crate::provider::tests::feed;

    #[test]
    fn chat_stream_content_thinking_usage_and_done() {
        let r = feed::<Chat>(&[
            r#"{"model":"llama3.1:8b","created_at":"2026-12-02T10:00:00Z","message":{"role":"assistant","content":"","thinking":"Hm."},"done":false}"#,
            r#"{"model":"llama3.1:8b","message":{"role":"assistant","content":"Hello"},"done":false}"#,
            r#"{"model":"llama3.1:8b","message":{"role":"assistant","content":" there\n"},"done":false}"#,
            r#"{"model":"llama3.1:8b","message":{"role":"assistant","content":""},"done":true,"done_reason":"stop","total_duration":123,"prompt_eval_count":26,"eval_count":3}"#,
        ]);
        let s = r.summary(Outcome::Completed);
        assert_eq!(s.content, Some("Hello there\n"));
        assert_eq!(s.response_model, Some("llama3.1:8b"));
        assert_eq!(s.input_tokens, Some(26));
        assert_eq!(s.output_tokens, Some(3));
        assert_eq!(s.finish_reasons, ["stop".to_string()]);
        assert!(r.saw_end_marker());
        assert!(r.error_message.is_none());
    }

    #[test]
    fn tool_calls_arrive_whole_with_json_arguments() {
        let r = feed::<Chat>(&[
            r#"{"message":{"role":"assistant","content":"","tool_calls":[{"function":{"name":"get_weather","arguments":{"city":"Paris","units":"c"}}},{"function":{"name":"get_time","arguments":{}}}]},"done":false}"#,
            r#"{"message":{"role":"assistant","content":"","tool_calls":[{"function":{"name":"get_weather","arguments":{"city":"Oslo"}}}]},"done":true,"done_reason":"stop"}"#,
        ]);
        let s = r.summary(Outcome::Completed);
        let calls: Vec<_> = s.tool_calls.iter().map(|c| (c.name, c.arguments)).collect();
        assert_eq!(
            calls,
            [
                ("get_weather", r#"{"city":"Paris","units":"c"}"#),
                ("get_time", "{}"),
                ("get_weather", r#"{"city":"Oslo"}"#),
            ]
        );
    }

    #[test]
    fn generate_reads_response_and_is_a_text_completion() {
        let r = feed::<Generate>(&[
            r#"{"model":"llama3.1:8b","response":"The","done":false}"#,
            r#"{"model":"llama3.1:8b","response":" sky","done":false}"#,
            r#"{"model":"llama3.1:8b","response":"","done":true,"done_reason":"length","context":[1,2,3],"prompt_eval_count":5,"eval_count":2}"#,
        ]);
        let s = r.summary(Outcome::Completed);
        assert_eq!(s.content, Some("The sky"));
        assert_eq!(s.finish_reasons, ["length".to_string()]);
        assert_eq!(s.output_tokens, Some(2));
        assert_eq!(Generate::OPERATION, "text_completion");
        assert_eq!(Chat::OPERATION, "chat");
    }

    #[test]
    fn errors_and_wrong_shapes() {
        let mut r = CallRecord::new(0, true, 4096);
        Chat::apply_body(br#"{"error":"model 'nope' not found"}"#, &mut r, 1).unwrap();
        assert_eq!(r.error_message.as_deref(), Some("model 'nope' not found"));
        assert!(!r.saw_end_marker());
        for bad in [
            &b"not json"[..],
            b"[]",
            b"{\"message\":3}",
            b"{\"done\":\"yes\"}",
        ] {
            let mut r = CallRecord::new(0, true, 4096);
            assert!(Chat::apply_stream_event(bad, &mut r, 1).is_err(), "{bad:?}");
        }
    }
}
