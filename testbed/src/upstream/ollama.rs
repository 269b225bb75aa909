//! Ollama's native API (`/api/chat`, `/api/generate`): the same tokens as
//! the OpenAI answers, as NDJSON lines (one object a line, the last with
//! `"done": true` and the counts) or one object with `"stream": false`.

use serde_json::{json, Value};

use super::openai::{token_text, ChatRequest, Event};

/// Fixed `created_at`: the stream's bytes depend only on the request.
const CREATED_AT: &str = "2026-12-02T10:00:00Z";

/// True for a path of Ollama's native API.
pub(super) fn is_ollama(path: &str) -> bool {
    let route = path.split('?').next().unwrap_or_default();
    route.ends_with("/api/chat") || route.ends_with("/api/generate")
}

/// One object of the answer: a `message` for /api/chat, `response` for /api/generate.
fn object(chat: &ChatRequest, generate: bool, text: &str, done: Option<usize>) -> Value {
    let mut o = json!({"model": chat.model, "created_at": CREATED_AT});
    if generate {
        o["response"] = json!(text);
    } else {
        o["message"] = json!({"role": "assistant", "content": text});
    }
    o["done"] = json!(done.is_some());
    if let Some(tokens) = done {
        o["done_reason"] = json!("stop");
        o["prompt_eval_count"] = json!(chat.prompt_tokens);
        o["eval_count"] = json!(tokens);
    }
    o
}

/// The lines of a streamed answer: a line per token, then the `done` one.
pub(super) fn render_lines(chat: &ChatRequest, path: &str, tokens: usize) -> Vec<Event> {
    let generate = path
        .split('?')
        .next()
        .unwrap_or_default()
        .ends_with("/api/generate");
    let line = |o: Value, has_content| Event {
        bytes: format!("{o}\n").into_bytes(),
        has_content,
        stamp_at: None,
    };
    let mut lines: Vec<Event> = (0..tokens)
        .map(|i| line(object(chat, generate, &token_text(i), None), true))
        .collect();
    lines.push(line(object(chat, generate, "", Some(tokens)), false));
    lines
}

/// The whole answer of a `"stream": false` request.
pub(super) fn whole_body(chat: &ChatRequest, path: &str, content: &str, tokens: usize) -> Vec<u8> {
    let generate = path
        .split('?')
        .next()
        .unwrap_or_default()
        .ends_with("/api/generate");
    object(chat, generate, content, Some(tokens))
        .to_string()
        .into_bytes()
}
