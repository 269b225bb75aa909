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
    chat_delta_event(serde_json::json!({"content": content}))
}

/// One `chat.completion.chunk` event with this `reasoning_content` delta (as
/// vLLM, DeepSeek and other compatible servers stream reasoning).
pub fn chat_reasoning_event(reasoning: &str) -> String {
    chat_delta_event(serde_json::json!({"reasoning_content": reasoning}))
}

fn chat_delta_event(delta: serde_json::Value) -> String {
    let chunk = serde_json::json!({
        "id": "chatcmpl-scripted",
        "object": "chat.completion.chunk",
        "created": 1_764_000_000u64,
        "model": "gpt-4o-mini",
        "choices": [{"index": 0, "delta": delta, "finish_reason": null}],
    });
    format!("data: {chunk}\n\n")
}

/// The first event of a stream: the `role` delta with empty content.
pub fn chat_role_event() -> String {
    let role = serde_json::json!({
        "id": "chatcmpl-scripted", "object": "chat.completion.chunk", "created": 1_764_000_000u64,
        "model": "gpt-4o-mini",
        "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": null}],
    });
    format!("data: {role}\n\n")
}

/// The end of a stream: a `finish_reason: stop` chunk, a usage chunk with
/// `completion_tokens`, then `data: [DONE]`.
pub fn chat_end_events(completion_tokens: usize) -> String {
    let stop = serde_json::json!({
        "id": "chatcmpl-scripted", "object": "chat.completion.chunk", "created": 1_764_000_000u64,
        "model": "gpt-4o-mini",
        "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}],
    });
    let usage = serde_json::json!({
        "id": "chatcmpl-scripted", "object": "chat.completion.chunk", "created": 1_764_000_000u64,
        "model": "gpt-4o-mini", "choices": [],
        "usage": {"prompt_tokens": 9, "completion_tokens": completion_tokens, "total_tokens": 9 + completion_tokens},
    });
    format!("data: {stop}\n\ndata: {usage}\n\ndata: [DONE]\n\n")
}

/// A whole OpenAI stream: a role delta, one event per token, a stop, usage, `[DONE]`.
pub fn chat_stream(tokens: &[&str]) -> String {
    let mut s = chat_role_event();
    for t in tokens {
        s.push_str(&chat_event(t));
    }
    s.push_str(&chat_end_events(tokens.len()));
    s
}
