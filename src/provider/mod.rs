//! The LLM APIs streamtap understands. The `wire_formats!` table below is the
//! only place that knows which exist: each row names the API's file, the
//! path suffix that routes a call to it, and the enum variant the tap holds.
//! Adding a wire format is one file implementing [`WireFormat`] plus one row.
//!
//! Dispatch is a `match` on [`Api`] calling each format's functions directly:
//! no `dyn`, no generic code per call site, so the `.wasm` stays small and the
//! per-event path has no indirect call.

pub mod anthropic_messages;
pub mod ollama;
pub mod openai_chat;
pub mod openai_responses;
pub mod request;
pub mod shared;

use crate::call::record::CallRecord;
use crate::ParseError;

/// What one wire format knows: its names, and how to read a stream event's
/// data or a whole (non-streaming or error) body into the record. Readers
/// change the record only through `CallRecord`'s methods.
pub trait WireFormat {
    /// `provider` in the summary (`gen_ai.provider.name`).
    const PROVIDER: &'static str;
    /// `api` in the summary.
    const API: &'static str;
    /// `gen_ai.operation.name`.
    const OPERATION: &'static str = "chat";
    /// The event that says the stream is done (`stream_health.end_marker`);
    /// a stream that closes without it is `truncated`. Its reader calls
    /// `CallRecord::mark_end` when it sees it.
    const END_MARKER: &'static str;
    /// Whether the usage's input count includes the cached part (OpenAI)
    /// or counts it beside (Anthropic): pricing normalizes it (`call::cost`).
    const INPUT_INCLUDES_CACHED: bool;
    /// One SSE event's `data`.
    fn apply_stream_event(
        data: &[u8],
        record: &mut CallRecord,
        now_us: u64,
    ) -> Result<(), ParseError>;
    /// A whole JSON response body.
    fn apply_body(body: &[u8], record: &mut CallRecord, now_us: u64) -> Result<(), ParseError>;
}

macro_rules! wire_formats {
    ($($variant:ident => $format:ty, path suffix $suffix:literal;)+) => {
        /// The wire format of a call, told by its path; never guessed from content.
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub enum Api {
            $($variant,)+
            /// A path no row matches: counted and timed, its content not read.
            Unknown,
        }

        impl Api {
            const ROUTES: &'static [(&'static str, Api)] = &[$(($suffix, Api::$variant)),+];
            /// Every known format (not `Unknown`).
            pub const KNOWN: &'static [Api] = &[$(Api::$variant),+];

            pub fn provider(self) -> &'static str {
                match self {
                    $(Api::$variant => <$format>::PROVIDER,)+
                    Api::Unknown => "unknown",
                }
            }

            pub fn input_includes_cached(self) -> bool {
                match self {
                    $(Api::$variant => <$format>::INPUT_INCLUDES_CACHED,)+
                    Api::Unknown => false,
                }
            }

            /// The end marker of the format, None for an unknown one.
            pub fn end_marker(self) -> Option<&'static str> {
                match self {
                    $(Api::$variant => Some(<$format>::END_MARKER),)+
                    Api::Unknown => None,
                }
            }

            /// `gen_ai.operation.name`, None for an unknown format.
            pub fn operation(self) -> Option<&'static str> {
                match self {
                    $(Api::$variant => Some(<$format>::OPERATION),)+
                    Api::Unknown => None,
                }
            }

            pub fn name(self) -> Option<&'static str> {
                match self {
                    $(Api::$variant => Some(<$format>::API),)+
                    Api::Unknown => None,
                }
            }

            pub fn apply_stream_event(
                self,
                data: &[u8],
                record: &mut CallRecord,
                now_us: u64,
            ) -> Result<(), ParseError> {
                match self {
                    $(Api::$variant => <$format>::apply_stream_event(data, record, now_us),)+
                    Api::Unknown => Ok(()),
                }
            }

            pub fn apply_body(
                self,
                body: &[u8],
                record: &mut CallRecord,
                now_us: u64,
            ) -> Result<(), ParseError> {
                match self {
                    $(Api::$variant => <$format>::apply_body(body, record, now_us),)+
                    Api::Unknown => Ok(()),
                }
            }
        }
    };
}

wire_formats! {
    ChatCompletions => openai_chat::ChatCompletions, path suffix "/chat/completions";
    Responses => openai_responses::Responses, path suffix "/responses";
    AnthropicMessages => anthropic_messages::Messages, path suffix "/messages";
    OllamaChat => ollama::Chat, path suffix "/api/chat";
    OllamaGenerate => ollama::Generate, path suffix "/api/generate";
}

impl Api {
    /// From the request path, query ignored, a trailing `/` too: OpenAI,
    /// Azure OpenAI (`/openai/deployments/x/chat/completions`), compatible
    /// servers, Anthropic, Ollama's native API.
    pub fn from_path(path: &str) -> Api {
        let route = path
            .split('?')
            .next()
            .unwrap_or_default()
            .trim_end_matches('/');
        Api::ROUTES
            .iter()
            .find(|(suffix, _)| route.ends_with(suffix))
            .map_or(Api::Unknown, |&(_, api)| api)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A record after `events` (SSE data) of one wire format, 1 µs apart from t = 10.
    pub(crate) fn feed<F: WireFormat>(events: &[&str]) -> CallRecord {
        let mut r = CallRecord::new(0, true, 4096);
        for (i, e) in events.iter().enumerate() {
            F::apply_stream_event(e.as_bytes(), &mut r, 10 + i as u64).unwrap();
        }
        r
    }

    #[test]
    fn paths_route_to_their_format() {
        for (path, api) in [
            ("/v1/chat/completions", Api::ChatCompletions),
            (
                "/openai/deployments/gpt4/chat/completions?api-version=2024-10-21",
                Api::ChatCompletions,
            ),
            ("/v1/responses/", Api::Responses),
            ("/v1/messages", Api::AnthropicMessages),
            ("/api/chat", Api::OllamaChat),
            ("/ollama/api/generate/", Api::OllamaGenerate),
            ("/v1/embeddings", Api::Unknown),
            ("", Api::Unknown),
        ] {
            assert_eq!(Api::from_path(path), api, "{path}");
        }
        assert_eq!(Api::Responses.provider(), "openai");
        assert_eq!(Api::AnthropicMessages.name(), Some("messages"));
        assert_eq!(Api::Unknown.name(), None);
    }
}
