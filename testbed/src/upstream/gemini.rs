//! Google's Gemini API (`…/models/{model}:streamGenerateContent?alt=sse`,
//! `:generateContent`): the same tokens as the OpenAI answers, as SSE events
//! of `GenerateContentResponse` objects (the last with `finishReason` and
//! the counts), or one such object.

use serde_json::{json, Value};

use super::openai::{token_text, Event};

/// The model named in a Gemini path, if `path` is one.
pub(super) fn model_of(path: &str) -> Option<&str> {
    let route = path.split('?').next().unwrap_or_default();
    if !(route.ends_with(":streamGenerateContent") || route.ends_with(":generateContent")) {
        return None;
    }
    let (_, rest) = route.rsplit_once("/models/")?;
    rest.split(':').next()
}

/// Words of every `contents[].parts[].text`, plus 3 per content: the mock's
/// stand-in for a tokenizer, as for OpenAI's messages.
pub(super) fn prompt_tokens(request: &Value) -> u64 {
    let Some(contents) = request["contents"].as_array() else {
        return 0;
    };
    contents
        .iter()
        .map(|c| {
            let parts = c["parts"].as_array().map(Vec::as_slice).unwrap_or_default();
            let words: usize = parts
                .iter()
                .filter_map(|p| p["text"].as_str())
                .map(|t| t.split_whitespace().count())
                .sum();
            3 + words as u64
        })
        .sum()
}

fn response(model: &str, text: &str, done: Option<(u64, usize)>) -> Value {
    let mut candidate =
        json!({"content": {"parts": [{"text": text}], "role": "model"}, "index": 0});
    let mut o = json!({"modelVersion": model, "responseId": "mock-gemini-1"});
    if let Some((prompt, tokens)) = done {
        candidate["finishReason"] = json!("STOP");
        o["usageMetadata"] = json!({
            "promptTokenCount": prompt,
            "candidatesTokenCount": tokens,
            "totalTokenCount": prompt + tokens as u64,
        });
    }
    o["candidates"] = json!([candidate]);
    o
}

/// The events of a streamed answer: a token each, the last one finishing.
pub(super) fn render_events(model: &str, prompt: u64, tokens: usize) -> Vec<Event> {
    (0..tokens)
        .map(|i| {
            let done = (i + 1 == tokens).then_some((prompt, tokens));
            Event {
                bytes: format!("data: {}\r\n\r\n", response(model, &token_text(i), done))
                    .into_bytes(),
                has_content: true,
                stamp_at: None,
            }
        })
        .collect()
}

/// The whole answer of `:generateContent`.
pub(super) fn whole_body(model: &str, prompt: u64, content: &str, tokens: usize) -> Vec<u8> {
    response(model, content, Some((prompt, tokens)))
        .to_string()
        .into_bytes()
}
