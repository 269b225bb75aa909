//! OpenAI Chat Completions: the request fields the mock acts on, and the
//! JSON of its answers, streamed (SSE events) or whole.

use serde::Serialize;
use serde_json::Value;

use super::stamps::{find_stamp_placeholder, STAMP_PLACEHOLDER};

/// Fixed `created` timestamp: the stream's bytes depend only on the request.
pub(super) const CREATED_UNIX: u64 = 1_764_000_000;
pub(super) const DEFAULT_MODEL: &str = "gpt-4o-mini";

/// The fields of the chat request the mock acts on.
pub(super) struct ChatRequest {
    pub(super) model: String,
    pub(super) stream: bool,
    pub(super) include_usage: bool,
    pub(super) prompt_tokens: u64,
}

impl ChatRequest {
    /// `stream_default`: OpenAI's is false, Ollama's true.
    pub(super) fn parse(body: &[u8], stream_default: bool) -> Result<ChatRequest, String> {
        let value: Value =
            serde_json::from_slice(body).map_err(|e| format!("request body is not JSON: {e}"))?;
        if !value.is_object() {
            return Err("request body is not a JSON object".to_string());
        }
        Ok(ChatRequest {
            model: value["model"].as_str().unwrap_or(DEFAULT_MODEL).to_string(),
            stream: value["stream"].as_bool().unwrap_or(stream_default),
            include_usage: value["stream_options"]["include_usage"]
                .as_bool()
                .unwrap_or(false),
            prompt_tokens: prompt_tokens(&value["messages"]),
        })
    }
}

/// A deterministic stand-in for a tokenizer: words in every message's text,
/// plus 3 per message for the chat framing.
pub(super) fn prompt_tokens(messages: &Value) -> u64 {
    let Some(messages) = messages.as_array() else {
        return 0;
    };
    let words = |text: &str| text.split_whitespace().count() as u64;
    messages
        .iter()
        .map(|message| {
            let content = &message["content"];
            let text_words = match content {
                Value::String(text) => words(text),
                // Content parts: [{"type":"text","text":"..."}, ...]
                Value::Array(parts) => parts
                    .iter()
                    .filter_map(|part| part["text"].as_str())
                    .map(words)
                    .sum(),
                _ => 0,
            };
            3 + text_words
        })
        .sum()
}

pub(super) fn token_text(i: usize) -> String {
    format!("tok{i} ")
}

/// `{"error":{"message":..,"type":..,"code":..}}`, in OpenAI's key order.
pub(super) fn error_body(message: &str, kind: &str, code: Value) -> Vec<u8> {
    #[derive(Serialize)]
    struct ErrorBody<'a> {
        error: ErrorDetail<'a>,
    }
    #[derive(Serialize)]
    struct ErrorDetail<'a> {
        message: &'a str,
        #[serde(rename = "type")]
        kind: &'a str,
        code: Value,
    }
    let body = ErrorBody {
        error: ErrorDetail {
            message,
            kind,
            code,
        },
    };
    serde_json::to_vec(&body).unwrap_or_default()
}

#[derive(Serialize)]
pub(super) struct Usage {
    pub(super) prompt_tokens: u64,
    pub(super) completion_tokens: u64,
    pub(super) total_tokens: u64,
}

impl Usage {
    pub(super) fn new(prompt_tokens: u64, completion_tokens: u64) -> Usage {
        Usage {
            prompt_tokens,
            completion_tokens,
            total_tokens: prompt_tokens + completion_tokens,
        }
    }
}

#[derive(Serialize)]
pub(super) struct Chunk<'a> {
    pub(super) id: &'a str,
    pub(super) object: &'static str,
    pub(super) created: u64,
    pub(super) model: &'a str,
    pub(super) choices: Vec<ChunkChoice<'a>>,
    /// Absent without `include_usage`; with it, `null` on every chunk but the
    /// final usage chunk, as OpenAI does.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) usage: Option<Option<Usage>>,
    /// The send-time stamp's placeholder, with `x-mock-stamp: 1`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) x_sent_unix_us: Option<u64>,
}

#[derive(Serialize)]
pub(super) struct ChunkChoice<'a> {
    pub(super) index: u32,
    pub(super) delta: Delta<'a>,
    pub(super) finish_reason: Option<&'static str>,
}

#[derive(Serialize)]
pub(super) struct Delta<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) role: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) content: Option<&'a str>,
}

#[derive(Serialize)]
pub(super) struct Completion<'a> {
    pub(super) id: &'a str,
    pub(super) object: &'static str,
    pub(super) created: u64,
    pub(super) model: &'a str,
    pub(super) choices: [CompletionChoice<'a>; 1],
    pub(super) usage: Usage,
}

#[derive(Serialize)]
pub(super) struct CompletionChoice<'a> {
    pub(super) index: u32,
    pub(super) message: Message<'a>,
    pub(super) finish_reason: &'static str,
}

#[derive(Serialize)]
pub(super) struct Message<'a> {
    pub(super) role: &'static str,
    pub(super) content: &'a str,
}

/// One rendered event: an SSE event, or an NDJSON line.
pub(super) struct Event {
    pub(super) bytes: Vec<u8>,
    pub(super) has_content: bool,
    /// Offset in `bytes` of the stamp's placeholder digits (`x-mock-stamp: 1`).
    pub(super) stamp_at: Option<usize>,
}

/// The events of a streamed answer, rendered with the requested line ending;
/// with `stamp`, every JSON chunk ends in a stamp placeholder.
pub(super) fn render_events(
    chat: &ChatRequest,
    id: &str,
    tokens: usize,
    line_ending: &str,
    stamp: bool,
) -> Vec<Event> {
    let placeholder = stamp.then_some(STAMP_PLACEHOLDER);
    let chunk_json = |role: Option<&'static str>, content: Option<&str>, finish_reason| {
        let chunk = Chunk {
            id,
            object: "chat.completion.chunk",
            created: CREATED_UNIX,
            model: &chat.model,
            choices: vec![ChunkChoice {
                index: 0,
                delta: Delta { role, content },
                finish_reason,
            }],
            usage: chat.include_usage.then_some(None),
            x_sent_unix_us: placeholder,
        };
        serde_json::to_string(&chunk).unwrap_or_default()
    };
    let event = |data: &str, has_content| {
        let bytes = format!("data: {data}{line_ending}{line_ending}").into_bytes();
        let stamp_at = if stamp {
            find_stamp_placeholder(&bytes)
        } else {
            None
        };
        Event {
            bytes,
            has_content,
            stamp_at,
        }
    };

    let mut events = Vec::with_capacity(tokens + 4);
    events.push(event(&chunk_json(Some("assistant"), Some(""), None), false));
    for i in 0..tokens {
        events.push(event(&chunk_json(None, Some(&token_text(i)), None), true));
    }
    events.push(event(&chunk_json(None, None, Some("stop")), false));
    if chat.include_usage {
        let usage = Chunk {
            id,
            object: "chat.completion.chunk",
            created: CREATED_UNIX,
            model: &chat.model,
            choices: Vec::new(),
            usage: Some(Some(Usage::new(chat.prompt_tokens, tokens as u64))),
            x_sent_unix_us: placeholder,
        };
        events.push(event(
            &serde_json::to_string(&usage).unwrap_or_default(),
            false,
        ));
    }
    events.push(event("[DONE]", false));
    events
}

/// A whole (non-stream) chat completion answering `chat` with `content`.
pub(super) fn completion_body(
    id: &str,
    chat: &ChatRequest,
    tokens: usize,
    content: &str,
) -> serde_json::Result<Vec<u8>> {
    serde_json::to_vec(&Completion {
        id,
        object: "chat.completion",
        created: CREATED_UNIX,
        model: &chat.model,
        choices: [CompletionChoice {
            index: 0,
            message: Message {
                role: "assistant",
                content,
            },
            finish_reason: "stop",
        }],
        usage: Usage::new(chat.prompt_tokens, tokens as u64),
    })
}
