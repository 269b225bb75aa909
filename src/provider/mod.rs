//! The LLM APIs streamtap understands. The `wire_formats!` table below is the
//! only place that knows which exist: each row names the API's file, the
//! path suffix that routes a call to it, and the enum variant the tap holds.
//! Adding a wire format is one file implementing [`WireFormat`] plus one row.
//!
//! Dispatch is a `match` on [`Api`] calling each format's functions directly:
//! no `dyn`, no generic code per call site, so the `.wasm` stays small and the
//! per-event path has no indirect call.

pub mod anthropic_messages;
pub mod bedrock;
pub mod gemini;
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
    /// A JSON response body is read element by element as it arrives (a
    /// streamed JSON array, `wire::json_array`), each element as an event.
    const JSON_ELEMENTS: bool = false;
    /// The model the path names, for formats whose body names none.
    fn model_from_path(_path: &str) -> Option<std::borrow::Cow<'_, str>> {
        None
    }
    /// With `JSON_ELEMENTS`: the path asks for a stream (a JSON array).
    fn streams_json(_path: &str) -> bool {
        false
    }
    /// One stream event's data (an SSE event's, an NDJSON line, an array element).
    fn apply_stream_event(
        data: &[u8],
        record: &mut CallRecord,
        now_us: u64,
    ) -> Result<(), ParseError>;
    /// One AWS event-stream frame (Bedrock): its `:event-type` (for an
    /// exception frame, its `:exception-type`) and payload. Formats without
    /// frames read the payload as an event.
    fn apply_frame(
        _event_type: &[u8],
        _exception: bool,
        payload: &[u8],
        record: &mut CallRecord,
        now_us: u64,
    ) -> Result<(), ParseError> {
        Self::apply_stream_event(payload, record, now_us)
    }
    /// A whole JSON response body.
    fn apply_body(body: &[u8], record: &mut CallRecord, now_us: u64) -> Result<(), ParseError>;
}

/// A row's `within` segment, or "" (found in every path).
macro_rules! within_or_anywhere {
    () => {
        ""
    };
    ($within:literal) => {
        $within
    };
}

macro_rules! wire_formats {
    ($($variant:ident => $format:ty, paths $(within $within:literal)? ending [$($suffix:literal),+];)+) => {
        /// The wire format of a call, told by its path; never guessed from content.
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub enum Api {
            $($variant,)+
            /// A path no row matches: counted and timed, its content not read.
            Unknown,
        }

        impl Api {
            /// (a segment the path must hold, its suffixes, the format), in
            /// table order: the first match wins.
            const ROUTES: &'static [(&'static str, &'static [&'static str], Api)] =
                &[$((within_or_anywhere!($($within)?), &[$($suffix),+], Api::$variant)),+];
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

            pub fn json_elements(self) -> bool {
                match self {
                    $(Api::$variant => <$format>::JSON_ELEMENTS,)+
                    Api::Unknown => false,
                }
            }

            pub fn streams_json(self, path: &str) -> bool {
                match self {
                    $(Api::$variant => <$format>::streams_json(path),)+
                    Api::Unknown => false,
                }
            }

            pub fn model_from_path(self, path: &str) -> Option<std::borrow::Cow<'_, str>> {
                match self {
                    $(Api::$variant => <$format>::model_from_path(path),)+
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

            pub fn apply_frame(
                self,
                event_type: &[u8],
                exception: bool,
                payload: &[u8],
                record: &mut CallRecord,
                now_us: u64,
            ) -> Result<(), ParseError> {
                match self {
                    $(Api::$variant => <$format>::apply_frame(event_type, exception, payload, record, now_us),)+
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
    ChatCompletions => openai_chat::ChatCompletions, paths ending ["/chat/completions"];
    Responses => openai_responses::Responses, paths ending ["/responses"];
    AnthropicMessages => anthropic_messages::Messages, paths ending ["/messages"];
    OllamaChat => ollama::Chat, paths ending ["/api/chat"];
    OllamaGenerate => ollama::Generate, paths ending ["/api/generate"];
    VertexAnthropic => anthropic_messages::OnVertex,
        paths within "/publishers/anthropic/" ending [":streamRawPredict", ":rawPredict"];
    VertexGemini => gemini::OnVertex,
        paths within "/publishers/google/" ending [":streamGenerateContent", ":generateContent"];
    Gemini => gemini::Gemini, paths ending [":streamGenerateContent", ":generateContent"];
    BedrockConverse => bedrock::Converse,
        paths within "/model/" ending ["/converse-stream", "/converse"];
    BedrockInvoke => bedrock::Invoke,
        paths within "/model/" ending ["/invoke-with-response-stream", "/invoke"];
}

impl Api {
    /// From the request path, query ignored, a trailing `/` too: OpenAI,
    /// Azure OpenAI (`/openai/deployments/x/chat/completions`), compatible
    /// servers, Anthropic, Ollama's native API, Gemini and Vertex AI (by the
    /// method after the model: `…/models/m:streamGenerateContent`), Bedrock
    /// (`/model/{id}/converse-stream`...).
    pub fn from_path(path: &str) -> Api {
        let route = path
            .split('?')
            .next()
            .unwrap_or_default()
            .trim_end_matches('/');
        Api::ROUTES
            .iter()
            .find(|(within, suffixes, _)| {
                route.contains(within) && suffixes.iter().any(|s| route.ends_with(s))
            })
            .map_or(Api::Unknown, |&(_, _, api)| api)
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
            (
                "/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse",
                Api::Gemini,
            ),
            ("/v1beta/models/gemini-2.5-flash:generateContent", Api::Gemini),
            (
                "/model/anthropic.claude-3-5-sonnet-20240620-v1%3A0/converse-stream",
                Api::BedrockConverse,
            ),
            ("/model/m/converse", Api::BedrockConverse),
            ("/model/m/invoke-with-response-stream", Api::BedrockInvoke),
            ("/model/m/invoke", Api::BedrockInvoke),
            (
                "/v1/projects/p/locations/us-central1/publishers/google/models/gemini-2.0-flash:streamGenerateContent",
                Api::VertexGemini,
            ),
            (
                "/v1/projects/p/locations/us-east5/publishers/anthropic/models/claude-sonnet-4@20250514:rawPredict",
                Api::VertexAnthropic,
            ),
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
