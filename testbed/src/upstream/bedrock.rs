//! Amazon Bedrock's ConverseStream (`/model/{id}/converse-stream`) and
//! Converse (`/model/{id}/converse`): the same tokens as the OpenAI answers,
//! as AWS event-stream frames (written with the filter's own encoder) or one
//! JSON answer. SigV4 signatures are not checked.

use serde_json::{json, Value};

use super::openai::{token_text, Event};
use streamtap::wire::eventstream::encode_frame;

/// The model id of a Bedrock Converse path, if `path` is one.
pub(super) fn model_of(path: &str) -> Option<String> {
    let route = path.split('?').next().unwrap_or_default();
    if !(route.ends_with("/converse-stream") || route.ends_with("/converse")) {
        return None;
    }
    streamtap::provider::bedrock::model_in_path(route).map(|m| m.into_owned())
}

fn frame(kind: &str, payload: Value) -> Vec<u8> {
    encode_frame(
        &[
            (":event-type", kind),
            (":content-type", "application/json"),
            (":message-type", "event"),
        ],
        payload.to_string().as_bytes(),
    )
}

/// The frames of a streamed answer: a delta per token, then the stop and
/// the usage.
pub(super) fn render_frames(prompt: u64, tokens: usize) -> Vec<Event> {
    let event = |bytes, has_content| Event {
        bytes,
        has_content,
        stamp_at: None,
    };
    let mut out = vec![event(
        frame("messageStart", json!({"role": "assistant"})),
        false,
    )];
    for i in 0..tokens {
        let delta = json!({"contentBlockIndex": 0, "delta": {"text": token_text(i)}});
        out.push(event(frame("contentBlockDelta", delta), true));
    }
    out.push(event(
        frame("contentBlockStop", json!({"contentBlockIndex": 0})),
        false,
    ));
    out.push(event(
        frame("messageStop", json!({"stopReason": "end_turn"})),
        false,
    ));
    let usage = json!({"inputTokens": prompt, "outputTokens": tokens, "totalTokens": prompt + tokens as u64});
    out.push(event(
        frame(
            "metadata",
            json!({"usage": usage, "metrics": {"latencyMs": 100}}),
        ),
        false,
    ));
    out
}

/// The whole answer of `/converse`.
pub(super) fn whole_body(prompt: u64, content: &str, tokens: usize) -> Vec<u8> {
    json!({
        "output": {"message": {"role": "assistant", "content": [{"text": content}]}},
        "stopReason": "end_turn",
        "usage": {"inputTokens": prompt, "outputTokens": tokens, "totalTokens": prompt + tokens as u64},
        "metrics": {"latencyMs": 100},
    })
    .to_string()
    .into_bytes()
}
