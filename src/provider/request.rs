//! The request facts the summary needs (model, stream, token limit, tools
//! offered, messages, an estimate of the prompt's tokens), in every API's
//! spellings, read as the body passes, in constant memory whatever its size,
//! from the tokens of [`JsonStream`]. String values are never kept (but `model`,
//! capped); prompt text goes straight to the estimator in pieces, and the
//! rest (base64 images, files, tool schemas) is only checked and dropped.

use crate::call::estimate::{TokenEstimator, TOKENS_PER_MESSAGE, TOKENS_PER_REPLY};
use crate::wire::json_stream::{JsonStream, Token};

/// What the summary needs from a request body, in all three APIs' spellings:
/// model, stream, token limit, tools offered, messages (or Responses
/// `input` items) and an estimate of the prompt's tokens.
#[derive(Default)]
pub struct RequestFields {
    pub model: Option<String>,
    pub stream: Option<bool>,
    pub max_tokens: Option<u64>,
    pub tools: Option<u64>,
    pub messages: Option<u64>,
    pub prompt: TokenEstimator,
}

impl RequestFields {
    /// Input tokens estimated from the prompt's text (used only when the
    /// provider reports no usage).
    pub fn estimated_input_tokens(&self) -> u64 {
        self.prompt.tokens() + self.messages.unwrap_or(0) * TOKENS_PER_MESSAGE + TOKENS_PER_REPLY
    }
}

/// Longest `model` kept; a longer one is cut at a character boundary.
pub const MAX_MODEL_BYTES: usize = 256;

/// The top-level key whose value is being read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
enum Field {
    #[default]
    Other,
    Model,
    Stream,
    MaxTokens,
    Tools,
    Messages,
    Input,
    /// `system`, `instructions`, `prompt`, `systemInstruction`: prompt text only.
    Prompt,
}

fn field_of(key: &[u8]) -> Field {
    match key {
        b"model" => Field::Model,
        b"stream" => Field::Stream,
        b"max_tokens" | b"max_completion_tokens" | b"max_output_tokens" => Field::MaxTokens,
        b"tools" => Field::Tools,
        // `contents`: Gemini's turns, each with `parts[].text`.
        b"messages" | b"contents" => Field::Messages,
        // Responses API: a string, or a list of items.
        b"input" => Field::Input,
        // `prompt`: Ollama's /api/generate (and legacy completions).
        b"system" | b"instructions" | b"prompt" | b"systemInstruction" => Field::Prompt,
        _ => Field::Other,
    }
}

/// Reads the facts from the tokens (kept apart from the tokenizer so that
/// the tokenizer's sink can borrow it).
#[derive(Default)]
struct Reader {
    fields: RequestFields,
    /// The body is not a request this reader accepts (a top-level
    /// non-object, a fact of the wrong type): no facts at all.
    failed: bool,
    /// Open containers.
    depth: u32,
    /// Bit `d` set: the container at depth `d + 1` is an array.
    arrays: u128,
    field: Field,
    /// Items of the field's array (`tools`, `messages`, `input`).
    count: u64,
    counting: bool,
    /// Inside a value whose text feeds the estimate.
    feeding: bool,
    /// Depth of the outermost open container whose text is not fed (0: none).
    skip_at: u32,
    /// The current object's last key is `content`, `text` or `input`.
    key_feeds: bool,
    string_fed: bool,
    in_model: bool,
}

impl Reader {
    fn token(&mut self, token: Token<'_>) {
        if self.failed {
            return;
        }
        match token {
            Token::Key(key) if self.depth == 1 => self.field = field_of(key),
            Token::KeyTooLong if self.depth == 1 => self.field = Field::Other,
            Token::Key(key) => self.key_feeds = matches!(key, b"content" | b"text" | b"input"),
            Token::KeyTooLong => self.key_feeds = false,
            Token::StrPiece(text) => {
                if self.string_fed {
                    self.fields.prompt.feed(text);
                }
                if self.in_model {
                    push_capped(&mut self.fields.model, text);
                }
            }
            Token::StrEnd => {
                self.string_fed = false;
                self.in_model = false;
                self.value_end();
            }
            Token::ObjectEnd | Token::ArrayEnd => {
                if self.skip_at == self.depth {
                    self.skip_at = 0;
                }
                self.depth = self.depth.saturating_sub(1);
                self.value_end();
            }
            Token::ObjectStart
            | Token::ArrayStart
            | Token::StrStart
            | Token::Number(_)
            | Token::NumberTooLong
            | Token::Bool(_)
            | Token::Null => self.value_start(token),
        }
    }

    fn value_start(&mut self, token: Token<'_>) {
        let fed = match self.depth {
            // The request itself: an object, nothing else.
            0 => {
                if token != Token::ObjectStart {
                    self.failed = true;
                }
                self.depth = 1;
                return;
            }
            1 => self.field_start(token),
            depth => {
                if depth == 2 && self.counting {
                    self.count += 1;
                }
                let parent_is_array = (self.arrays >> (depth - 1).min(127)) & 1 == 1;
                self.feeding && self.skip_at == 0 && (parent_is_array || self.key_feeds)
            }
        };
        match token {
            Token::ObjectStart | Token::ArrayStart => {
                let bit = 1u128.checked_shl(self.depth).unwrap_or(0);
                if token == Token::ArrayStart {
                    self.arrays |= bit;
                } else {
                    self.arrays &= !bit;
                }
                self.depth += 1;
                if self.feeding && !fed && self.skip_at == 0 {
                    self.skip_at = self.depth;
                }
            }
            Token::StrStart => self.string_fed = fed,
            _ => self.value_end(),
        }
    }

    /// A top-level field's value begins: check its type as the pull reader
    /// does; true if its text feeds the estimate.
    fn field_start(&mut self, token: Token<'_>) -> bool {
        let fields = &mut self.fields;
        match (self.field, token) {
            (Field::Model, Token::StrStart) => {
                fields.model = Some(String::with_capacity(MAX_MODEL_BYTES));
                self.in_model = true;
            }
            (Field::Model | Field::Stream, Token::Null) => match self.field {
                Field::Model => fields.model = None,
                _ => fields.stream = None,
            },
            (Field::Stream, Token::Bool(b)) => fields.stream = Some(b),
            // `null` leaves what an earlier spelling set (update_u64).
            (Field::MaxTokens, Token::Null) => {}
            (Field::MaxTokens, Token::Number(digits)) => {
                match std::str::from_utf8(digits)
                    .ok()
                    .and_then(|s| s.parse().ok())
                {
                    Some(n) => fields.max_tokens = Some(n),
                    None => self.failed = true,
                }
            }
            (Field::Tools | Field::Messages, Token::ArrayStart) => {
                self.counting = true;
                self.count = 0;
            }
            // `null` is an empty list.
            (Field::Tools | Field::Messages, Token::Null) => self.count = 0,
            (Field::Input, Token::ArrayStart) => {
                self.counting = true;
                self.count = 0;
            }
            (Field::Input, _) => self.count = 1,
            (Field::Prompt | Field::Other, _) => {}
            _ => self.failed = true,
        }
        self.feeding = matches!(self.field, Field::Messages | Field::Input | Field::Prompt);
        self.feeding
    }

    /// A value ended; if it was a top-level field's, record what it counted.
    fn value_end(&mut self) {
        if self.depth != 1 {
            return;
        }
        let count = Some(self.count);
        match self.field {
            Field::Tools => self.fields.tools = count,
            Field::Messages => self.fields.messages = count,
            // `messages` wins over `input`, whichever came first.
            Field::Input => self.fields.messages = self.fields.messages.or(count),
            _ => {}
        }
        self.field = Field::Other;
        self.counting = false;
        self.feeding = false;
        self.count = 0;
    }
}

/// Appends within the capacity `MAX_MODEL_BYTES`, cutting at a character.
fn push_capped(slot: &mut Option<String>, text: &str) {
    let Some(model) = slot else { return };
    let room = MAX_MODEL_BYTES.saturating_sub(model.len());
    let mut end = text.len().min(room);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    model.push_str(text.get(..end).unwrap_or_default());
}

/// The request facts of one body, read chunk by chunk.
#[derive(Default)]
pub struct RequestScan {
    json: JsonStream,
    reader: Reader,
    bytes: u64,
}

impl std::fmt::Debug for RequestScan {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RequestScan")
            .field("bytes", &self.bytes)
            .field("failed", &(self.reader.failed || self.json.failed()))
            .finish_non_exhaustive()
    }
}

impl RequestScan {
    pub fn new() -> Self {
        Self::default()
    }

    /// Reads the next chunk of the body.
    pub fn feed(&mut self, chunk: &[u8]) {
        self.bytes += chunk.len() as u64;
        if self.reader.failed || self.json.failed() {
            return;
        }
        let reader = &mut self.reader;
        self.json.feed(chunk, &mut |token| reader.token(token));
    }

    /// True while no byte was fed.
    pub fn is_empty(&self) -> bool {
        self.bytes == 0
    }

    /// The body has ended: its facts, or None if it was not one whole JSON
    /// object with facts of the right types (as `RequestFields::read`'s Err).
    pub fn finish(mut self) -> Option<RequestFields> {
        let reader = &mut self.reader;
        let complete = self.json.finish(&mut |token| reader.token(token));
        if complete && !self.reader.failed {
            Some(self.reader.fields)
        } else {
            None
        }
    }

    /// Heap bytes held: only the capped `model`, whatever the body's size.
    pub fn heap_bytes(&self) -> usize {
        self.reader
            .fields
            .model
            .as_ref()
            .map_or(0, String::capacity)
    }

    /// The estimate so far (for tests and diagnostics).
    pub fn prompt(&self) -> &TokenEstimator {
        &self.reader.fields.prompt
    }
}

#[cfg(test)]
mod tests;
