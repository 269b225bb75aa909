//! Google's Gemini API (`/v1beta/models/{model}:generateContent`,
//! `:streamGenerateContent`) and the same formats on Vertex AI
//! (`/v1/projects/{p}/locations/{l}/publishers/google/models/{m}:…`).
//!
//! Every streamed event (an SSE event with `?alt=sse`, else an element of
//! the streamed JSON array, `wire::json_array`) and the whole body is a
//! `GenerateContentResponse`: candidates whose `content.parts` hold `text`
//! (with `"thought": true`: reasoning) or a whole `functionCall` (name,
//! `args` as JSON); `finishReason`; `usageMetadata`, repeated in every chunk
//! (the last wins); `modelVersion`; `responseId`. Errors are
//! `{"error": {"code", "message", "status"}}`. The model comes from the path.

use super::shared;
use super::WireFormat;
use crate::call::health::Phase;
use crate::call::record::{CallRecord, UsageCount};
use crate::wire::json::Json;
use crate::ParseError;
use std::borrow::Cow;

type Result<T> = std::result::Result<T, ParseError>;

/// Gemini's format under one platform's provider name.
macro_rules! generate_content {
    ($(#[$doc:meta])* $name:ident, $provider:literal) => {
        $(#[$doc])*
        pub struct $name;

        impl WireFormat for $name {
            const PROVIDER: &'static str = $provider;
            const API: &'static str = "generate_content";
            const OPERATION: &'static str = "generate_content";
            const END_MARKER: &'static str = "finishReason";
            /// `promptTokenCount` includes `cachedContentTokenCount`.
            const INPUT_INCLUDES_CACHED: bool = true;
            const JSON_ELEMENTS: bool = true;

            fn model_from_path(path: &str) -> Option<Cow<'_, str>> {
                model_in_path(path).map(Cow::Borrowed)
            }

            fn streams_json(path: &str) -> bool {
                streams(path)
            }

            fn apply_stream_event(data: &[u8], record: &mut CallRecord, now_us: u64) -> Result<()> {
                apply_response(data, record, now_us)
            }

            fn apply_body(body: &[u8], record: &mut CallRecord, now_us: u64) -> Result<()> {
                apply_response(body, record, now_us)
            }
        }
    };
}

generate_content!(
    /// The Gemini API (`generativelanguage.googleapis.com`).
    Gemini,
    "gcp.gemini"
);
generate_content!(
    /// Gemini on Vertex AI: the same wire format, Vertex's provider name.
    OnVertex,
    "gcp.vertex_ai"
);

/// `:streamGenerateContent` answers a stream: SSE with `?alt=sse`, else a
/// JSON array written element by element.
fn streams(path: &str) -> bool {
    path.split('?')
        .next()
        .unwrap_or_default()
        .ends_with(":streamGenerateContent")
}

/// `…/models/{model}:{method}`: the model, as Gemini and Vertex AI (also
/// Anthropic's models there) name it in the path.
pub fn model_in_path(path: &str) -> Option<&str> {
    let route = path.split('?').next().unwrap_or_default();
    let (_, rest) = route.rsplit_once("/models/")?;
    let model = rest.split(':').next().unwrap_or_default();
    (!model.is_empty() && !model.contains('/')).then_some(model)
}

#[derive(Default)]
struct Usage {
    prompt: Option<u64>,
    candidates: Option<u64>,
    thoughts: Option<u64>,
    cached: Option<u64>,
}

fn apply_response(bytes: &[u8], record: &mut CallRecord, now_us: u64) -> Result<()> {
    Json::parse(bytes, |j| {
        j.object(|key, j| match key {
            b"candidates" => j.opt_array(|_, j| apply_candidate(j, record, now_us)),
            b"usageMetadata" => {
                let mut usage = Usage::default();
                j.opt_object(|key, j| match key {
                    b"promptTokenCount" => j.update_u64(&mut usage.prompt),
                    b"candidatesTokenCount" => j.update_u64(&mut usage.candidates),
                    b"thoughtsTokenCount" => j.update_u64(&mut usage.thoughts),
                    b"cachedContentTokenCount" => j.update_u64(&mut usage.cached),
                    _ => j.skip(),
                })?;
                apply_usage(&usage, record);
                Ok(())
            }
            b"modelVersion" => shared::read_response_model(j, record),
            b"responseId" => shared::read_response_id(j, record),
            b"error" => {
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

/// Output is what the candidates and the thoughts took; the thoughts are the
/// reasoning part of it.
fn apply_usage(usage: &Usage, record: &mut CallRecord) {
    if let Some(n) = usage.prompt {
        record.set_usage(UsageCount::Input, n);
    }
    if usage.candidates.is_some() || usage.thoughts.is_some() {
        let output = usage.candidates.unwrap_or(0) + usage.thoughts.unwrap_or(0);
        record.set_usage(UsageCount::Output, output);
    }
    if let Some(n) = usage.thoughts {
        record.set_usage(UsageCount::ReasoningOutput, n);
    }
    if let Some(n) = usage.cached {
        record.set_usage(UsageCount::CacheRead, n);
    }
}

fn apply_candidate<'a>(j: &mut Json<'a>, record: &mut CallRecord, now_us: u64) -> Result<()> {
    let mut index = 0;
    let mut finish_reason: Option<Cow<'a, str>> = None;
    // Applied once the candidate is read: its `index` may follow its content.
    let mut parts: Vec<Part<'a>> = Vec::new();
    j.object(|key, j| match key {
        b"index" => {
            index = j.opt_u64()?.unwrap_or(0);
            Ok(())
        }
        b"finishReason" => j.set_str(&mut finish_reason),
        b"content" => j.opt_object(|key, j| match key {
            b"parts" => j.opt_array(|_, j| {
                parts.push(read_part(j)?);
                Ok(())
            }),
            _ => j.skip(),
        }),
        _ => j.skip(),
    })?;
    for part in &parts {
        apply_part(index, part, record, now_us);
    }
    if let Some(reason) = finish_reason {
        record.add_finish_reason(&reason);
        record.mark_end();
    }
    Ok(())
}

#[derive(Default)]
struct Part<'a> {
    text: Option<Cow<'a, str>>,
    thought: bool,
    call_name: Option<Cow<'a, str>>,
    call_id: Option<Cow<'a, str>>,
    call_args: Option<&'a str>,
}

fn read_part<'a>(j: &mut Json<'a>) -> Result<Part<'a>> {
    let mut part = Part::default();
    j.object(|key, j| match key {
        b"text" => j.set_str(&mut part.text),
        b"thought" => {
            part.thought = j.opt_bool()?.unwrap_or(false);
            Ok(())
        }
        b"functionCall" => j.opt_object(|key, j| match key {
            b"name" => j.set_str(&mut part.call_name),
            b"id" => j.set_str(&mut part.call_id),
            b"args" => {
                part.call_args = Some(j.raw_value()?);
                Ok(())
            }
            _ => j.skip(),
        }),
        _ => j.skip(),
    })?;
    Ok(part)
}

/// With several candidates the answer text is candidate 0's; every
/// candidate's activity counts for timing.
fn apply_part(candidate: u64, part: &Part<'_>, record: &mut CallRecord, now_us: u64) {
    if let Some(text) = &part.text {
        if part.thought {
            record.push_reasoning(text, now_us);
        } else if candidate == 0 {
            record.push_content(text, now_us);
        } else if !text.is_empty() {
            record.note_token_activity(now_us, Phase::Content, text.len());
        }
    }
    if part.call_name.is_some() || part.call_args.is_some() {
        // Each functionCall part arrives whole: a call of its own.
        let key = (candidate << 32) | (record.tool_call_count() as u64 & 0xffff_ffff);
        record.tool_call_begin(
            key,
            part.call_id.as_deref(),
            part.call_name.as_deref(),
            now_us,
        );
        if let Some(args) = part.call_args {
            record.tool_call_arguments(key, args, now_us);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::call::record::Outcome;
    use crate::provider::tests::feed;

    #[test]
    fn the_model_comes_from_the_path() {
        for (path, model) in [
            ("/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse&key=k", Some("gemini-2.5-flash")),
            ("/v1/projects/p/locations/us-central1/publishers/google/models/gemini-2.0-flash-001:generateContent", Some("gemini-2.0-flash-001")),
            ("/v1/projects/p/locations/l/publishers/anthropic/models/claude-sonnet-4@20250514:streamRawPredict", Some("claude-sonnet-4@20250514")),
            ("/v1beta/models/:generateContent", None),
            ("/v1/chat/completions", None),
        ] {
            assert_eq!(model_in_path(path), model, "{path}");
        }
    }

    #[test]
    fn text_thoughts_usage_and_the_finish_reason() {
        let r = feed::<Gemini>(&[
            r#"{"candidates":[{"content":{"parts":[{"text":"Let me think.","thought":true}],"role":"model"},"index":0}],"usageMetadata":{"promptTokenCount":9,"totalTokenCount":9},"modelVersion":"gemini-2.5-flash","responseId":"r-1"}"#,
            r#"{"candidates":[{"content":{"parts":[{"text":"Hello"}],"role":"model"},"index":0}],"usageMetadata":{"promptTokenCount":9,"candidatesTokenCount":1,"thoughtsTokenCount":4}}"#,
            r#"{"candidates":[{"content":{"parts":[{"text":" world"}],"role":"model"},"finishReason":"STOP","index":0}],"usageMetadata":{"promptTokenCount":9,"candidatesTokenCount":2,"thoughtsTokenCount":4,"cachedContentTokenCount":3,"totalTokenCount":15},"modelVersion":"gemini-2.5-flash"}"#,
        ]);
        let s = r.summary(Outcome::Completed);
        assert_eq!(s.content, Some("Hello world"));
        assert_eq!((s.input_tokens, s.output_tokens), (Some(9), Some(6)));
        assert_eq!(s.reasoning_output_tokens, Some(4));
        assert_eq!(s.cache_read_input_tokens, Some(3));
        assert_eq!(s.finish_reasons, ["STOP".to_string()]);
        assert_eq!(s.response_model, Some("gemini-2.5-flash"));
        assert!(r.saw_end_marker());
    }

    #[test]
    fn function_calls_arrive_whole() {
        let r = feed::<Gemini>(&[
            r#"{"candidates":[{"content":{"parts":[{"functionCall":{"name":"get_weather","args":{"city":"Paris"}}},{"functionCall":{"id":"c2","name":"get_time","args":{}}}],"role":"model"},"finishReason":"STOP","index":0}]}"#,
        ]);
        let s = r.summary(Outcome::Completed);
        let calls: Vec<_> = s
            .tool_calls
            .iter()
            .map(|c| (c.id, c.name, c.arguments))
            .collect();
        assert_eq!(
            calls,
            [
                ("", "get_weather", r#"{"city":"Paris"}"#),
                ("c2", "get_time", "{}")
            ]
        );
    }

    #[test]
    fn errors_and_wrong_shapes() {
        let mut r = CallRecord::new(0, true, 4096);
        Gemini::apply_body(
            br#"{"error":{"code":429,"message":"Resource has been exhausted","status":"RESOURCE_EXHAUSTED"}}"#,
            &mut r,
            1,
        )
        .unwrap();
        assert_eq!(
            r.error_message.as_deref(),
            Some("Resource has been exhausted")
        );
        for bad in [
            &b"nope"[..],
            b"[]",
            br#"{"candidates":3}"#,
            br#"{"candidates":[{"content":{"parts":[{"thought":"yes"}]}}]}"#,
        ] {
            let mut r = CallRecord::new(0, true, 4096);
            assert!(
                Gemini::apply_stream_event(bad, &mut r, 1).is_err(),
                "{bad:?}"
            );
        }
    }
}
