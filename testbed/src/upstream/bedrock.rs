//! Amazon Bedrock's ConverseStream (`/model/{id}/converse-stream`) and
//! Converse (`/model/{id}/converse`): the same tokens as the OpenAI answers,
//! as AWS event-stream frames or one JSON answer. SigV4 signatures are not
//! checked.
//!
//! The frames are written here, not with the filter's encoder: the testbed
//! does not depend on the filter's crate. `tests/sdk_clients.rs` has boto3
//! check them (both CRCs) and the filter read them.

use serde_json::{json, Value};

use super::openai::{token_text, Event};

/// True for a Bedrock Converse path (`/model/{id}/converse-stream`, `/converse`).
pub(super) fn is_converse(path: &str) -> bool {
    let route = path.split('?').next().unwrap_or_default();
    route.contains("/model/")
        && (route.ends_with("/converse-stream") || route.ends_with("/converse"))
}

/// CRC-32 (IEEE, as zlib's), bit by bit: the mock's frames are few.
fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in bytes {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                0xEDB8_8320 ^ (crc >> 1)
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

/// One frame with string headers: prelude (lengths, their CRC), headers,
/// payload, the CRC of all before it.
fn encode_frame(headers: &[(&str, &str)], payload: &[u8]) -> Vec<u8> {
    let mut h = Vec::new();
    for (name, value) in headers {
        h.push(name.len() as u8);
        h.extend_from_slice(name.as_bytes());
        h.push(7);
        h.extend_from_slice(&(value.len() as u16).to_be_bytes());
        h.extend_from_slice(value.as_bytes());
    }
    let total = 12 + h.len() + payload.len() + 4;
    let mut f = Vec::with_capacity(total);
    f.extend_from_slice(&(total as u32).to_be_bytes());
    f.extend_from_slice(&(h.len() as u32).to_be_bytes());
    let prelude_crc = crc32(&f);
    f.extend_from_slice(&prelude_crc.to_be_bytes());
    f.extend_from_slice(&h);
    f.extend_from_slice(payload);
    let crc = crc32(&f);
    f.extend_from_slice(&crc.to_be_bytes());
    f
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc32_is_zlibs_and_frames_carry_their_lengths() {
        assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
        let f = encode_frame(&[(":event-type", "messageStop")], b"{}");
        assert_eq!(
            u32::from_be_bytes(f[..4].try_into().unwrap()) as usize,
            f.len()
        );
        assert_eq!(
            u32::from_be_bytes(f[8..12].try_into().unwrap()),
            crc32(&f[..8])
        );
        let n = f.len();
        assert_eq!(
            u32::from_be_bytes(f[n - 4..].try_into().unwrap()),
            crc32(&f[..n - 4])
        );
    }
}
