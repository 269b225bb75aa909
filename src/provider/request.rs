//! The request facts the summary needs (model, stream, token limit, tools
//! offered, messages, an estimate of the prompt's tokens), in every API's
//! spellings.

use crate::call::estimate::{TokenEstimator, TOKENS_PER_MESSAGE, TOKENS_PER_REPLY};
use crate::wire::json::Json;
use crate::ParseError;

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
    pub fn read(body: &[u8]) -> Result<RequestFields, ParseError> {
        let mut fields = RequestFields::default();
        Json::parse(body, |j| {
            j.object(|key, j| match key {
                b"model" => {
                    fields.model = j.opt_str()?.map(|m| m.into_owned());
                    Ok(())
                }
                b"stream" => {
                    fields.stream = j.opt_bool()?;
                    Ok(())
                }
                b"max_tokens" | b"max_completion_tokens" | b"max_output_tokens" => {
                    j.update_u64(&mut fields.max_tokens)
                }
                b"tools" => {
                    let mut count = 0;
                    j.opt_array(|_, j| {
                        count += 1;
                        j.skip()
                    })?;
                    fields.tools = Some(count);
                    Ok(())
                }
                b"messages" => {
                    let mut count = 0;
                    j.opt_array(|_, j| {
                        count += 1;
                        feed_prompt(j, &mut fields.prompt)
                    })?;
                    fields.messages = Some(count);
                    Ok(())
                }
                // Responses API: a string, or a list of items.
                b"input" => {
                    let mut count = 1;
                    if j.peek_array() {
                        count = 0;
                        j.array(|_, j| {
                            count += 1;
                            feed_prompt(j, &mut fields.prompt)
                        })?;
                    } else {
                        feed_prompt(j, &mut fields.prompt)?;
                    }
                    fields.messages = fields.messages.or(Some(count));
                    Ok(())
                }
                b"system" | b"instructions" => feed_prompt(j, &mut fields.prompt),
                _ => j.skip(),
            })
        })?;
        Ok(fields)
    }

    /// Input tokens estimated from the prompt's text (used only when the
    /// provider reports no usage).
    pub fn estimated_input_tokens(&self) -> u64 {
        self.prompt.tokens() + self.messages.unwrap_or(0) * TOKENS_PER_MESSAGE + TOKENS_PER_REPLY
    }
}

/// Feeds the text of a message, content part or item to the estimator:
/// strings, and the `content`/`text`/`input` of objects, at any depth.
fn feed_prompt(j: &mut Json<'_>, estimator: &mut TokenEstimator) -> Result<(), ParseError> {
    if j.peek_array() {
        return j.array(|_, j| feed_prompt(j, estimator));
    }
    if j.peek_object() {
        return j.object(|key, j| match key {
            b"content" | b"text" | b"input" => feed_prompt(j, estimator),
            _ => j.skip(),
        });
    }
    if j.peek_string() {
        estimator.feed(&j.str()?);
        return Ok(());
    }
    j.skip()
}
