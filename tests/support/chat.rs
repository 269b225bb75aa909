//! OpenAI Chat Completions request and stream bodies, for scripted responses.

/// An OpenAI chat request body.
pub fn chat_request(stream: bool) -> Vec<u8> {
    serde_json::json!({
        "model": "gpt-4o-mini",
        "stream": stream,
        "messages": [{"role": "user", "content": "Say hello"}],
    })
    .to_string()
    .into_bytes()
}

/// One OpenAI `chat.completion.chunk` event with this content delta.
pub fn chat_event(content: &str) -> String {
    let chunk = serde_json::json!({
        "id": "chatcmpl-scripted",
        "object": "chat.completion.chunk",
        "created": 1_764_000_000u64,
        "model": "gpt-4o-mini",
        "choices": [{"index": 0, "delta": {"content": content}, "finish_reason": null}],
    });
    format!("data: {chunk}\n\n")
}

/// A whole OpenAI stream: a role delta, one event per token, a stop, usage, `[DONE]`.
pub fn chat_stream(tokens: &[&str]) -> String {
    let mut s = String::new();
    let role = serde_json::json!({
        "id": "chatcmpl-scripted", "object": "chat.completion.chunk", "created": 1_764_000_000u64,
        "model": "gpt-4o-mini",
        "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": null}],
    });
    s.push_str(&format!("data: {role}\n\n"));
    for t in tokens {
        s.push_str(&chat_event(t));
    }
    let stop = serde_json::json!({
        "id": "chatcmpl-scripted", "object": "chat.completion.chunk", "created": 1_764_000_000u64,
        "model": "gpt-4o-mini",
        "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}],
    });
    s.push_str(&format!("data: {stop}\n\n"));
    let usage = serde_json::json!({
        "id": "chatcmpl-scripted", "object": "chat.completion.chunk", "created": 1_764_000_000u64,
        "model": "gpt-4o-mini", "choices": [],
        "usage": {"prompt_tokens": 9, "completion_tokens": tokens.len(), "total_tokens": 9 + tokens.len()},
    });
    s.push_str(&format!("data: {usage}\n\ndata: [DONE]\n\n"));
    s
}
