//! Timed LLM streams for the streaming-health tests: an SSE body cut into
//! writes, each with the pause before it, for [`Script::timed_sse`].
//!
//! Build one with [`TimelineBuilder::chat`] (OpenAI Chat Completions) or
//! [`TimelineBuilder::anthropic`] (Messages): groups of deltas, one per write
//! ([`TimelineBuilder::deltas`]) or all in one ([`TimelineBuilder::burst`]),
//! silences, keepalives, then [`TimelineBuilder::finish`]. The head events
//! (chat: the role delta; Anthropic: `message_start`, `content_block_start`)
//! lead the first write, the end events (chat: a `finish_reason` chunk, a
//! usage chunk and `data: [DONE]`; Anthropic: `content_block_stop`,
//! `message_delta` with usage, `message_stop`) close the last one, so the
//! writes are exactly the groups. [`patterns`] has the ones the tests use.
//!
//! Pauses: each write waits its group's `gap`, except the stream's first write
//! (no pause) and the first write after a [`TimelineBuilder::silence`] (the
//! silence instead). The scripted upstream keeps them on a schedule from the
//! response head (`Chunking::Timed`) and records when each write left
//! (`Served::writes`).

use std::time::Duration;
use testbed::scripted::{Script, Served};

use super::chat::{
    chat_end_events, chat_event, chat_reasoning_event, chat_request, chat_role_event,
};

/// A stream cut into timed writes, and where its deltas are.
#[derive(Clone, Debug)]
pub struct Timeline {
    /// The pause before each write, and its bytes.
    pub writes: Vec<(Duration, Vec<u8>)>,
    /// Byte offset just past each delta event (content or reasoning), in order.
    pub delta_ends: Vec<usize>,
    /// The request path of the API (`/v1/chat/completions`, `/v1/messages`).
    pub path: &'static str,
    /// A streaming request body for that API.
    pub request: Vec<u8>,
}

impl Timeline {
    /// The scripted response: these writes, `text/event-stream`, chunked.
    pub fn script(&self) -> Script {
        Script::timed_sse(self.writes.clone())
    }

    /// The whole body, as the upstream sends it.
    pub fn body(&self) -> Vec<u8> {
        self.writes.iter().flat_map(|(_, b)| b.clone()).collect()
    }

    pub fn deltas(&self) -> usize {
        self.delta_ends.len()
    }

    /// When each write is due, from the response head.
    pub fn due(&self) -> Vec<Duration> {
        self.writes
            .iter()
            .scan(Duration::ZERO, |at, (pause, _)| {
                *at += *pause;
                Some(*at)
            })
            .collect()
    }

    /// When the last write is due, from the response head.
    pub fn duration(&self) -> Duration {
        self.due().last().copied().unwrap_or_default()
    }

    /// Which write (index into `served.writes`) carried each delta's last byte.
    pub fn delta_writes(&self, served: &Served) -> Vec<Option<usize>> {
        self.delta_ends
            .iter()
            .map(|&end| served.writes.iter().position(|&(_, off)| off >= end))
            .collect()
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Api {
    Chat,
    Anthropic,
}

/// Builds a [`Timeline`]; see the module docs.
#[derive(Clone, Debug)]
pub struct TimelineBuilder {
    api: Api,
    reasoning: bool,
    writes: Vec<(Duration, Vec<u8>)>,
    delta_ends: Vec<usize>,
    offset: usize,
    silence: Option<Duration>,
    head: String,
    deltas: usize,
}

/// Words that are one token each in the common tokenizers.
const WORDS: &[&str] = &[
    " the", " stream", " keeps", " going", " and", " the", " user", " reads", " it", " live",
];

impl TimelineBuilder {
    /// An OpenAI Chat Completions stream.
    pub fn chat() -> TimelineBuilder {
        Self::new(Api::Chat, chat_role_event())
    }

    /// An Anthropic Messages stream (one text content block).
    pub fn anthropic() -> TimelineBuilder {
        let start = serde_json::json!({
            "type": "message_start",
            "message": {
                "id": "msg_scripted", "type": "message", "role": "assistant", "content": [],
                "model": "claude-sonnet-4-5-20250929", "stop_reason": null, "stop_sequence": null,
                "usage": {"input_tokens": 25, "output_tokens": 1},
            },
        });
        let block = serde_json::json!({
            "type": "content_block_start", "index": 0,
            "content_block": {"type": "text", "text": ""},
        });
        Self::new(
            Api::Anthropic,
            format!("event: message_start\ndata: {start}\n\nevent: content_block_start\ndata: {block}\n\n"),
        )
    }

    fn new(api: Api, head: String) -> TimelineBuilder {
        TimelineBuilder {
            api,
            reasoning: false,
            writes: Vec::new(),
            delta_ends: Vec::new(),
            offset: 0,
            silence: None,
            head,
            deltas: 0,
        }
    }

    /// Chat only: the following deltas are `reasoning_content`.
    pub fn reasoning(mut self) -> Self {
        assert_eq!(self.api, Api::Chat, "reasoning deltas: chat streams only");
        self.reasoning = true;
        self
    }

    /// The following deltas are `content` (the default).
    pub fn content(mut self) -> Self {
        self.reasoning = false;
        self
    }

    /// The next write waits `d` (instead of its gap).
    pub fn silence(mut self, d: Duration) -> Self {
        self.silence = Some(d);
        self
    }

    /// `n` deltas, one per write, `gap` before each.
    pub fn deltas(mut self, n: usize, gap: Duration) -> Self {
        for _ in 0..n {
            let mut bytes = String::new();
            self.push_delta(&mut bytes);
            self.write(gap, bytes);
        }
        self
    }

    /// `n` deltas in one write, right after the previous write (or after the
    /// pending silence).
    pub fn burst(mut self, n: usize) -> Self {
        let mut bytes = String::new();
        for _ in 0..n {
            self.push_delta(&mut bytes);
        }
        self.write(Duration::ZERO, bytes);
        self
    }

    /// `n` keepalives, one per write, `gap` before each: Anthropic `ping`
    /// events; for chat, SSE comment lines (`: keepalive`).
    pub fn keepalives(mut self, n: usize, gap: Duration) -> Self {
        let ping = match self.api {
            Api::Anthropic => "event: ping\ndata: {\"type\":\"ping\"}\n\n",
            Api::Chat => ": keepalive\n\n",
        };
        for _ in 0..n {
            self.write(gap, ping.to_string());
        }
        self
    }

    /// The end events, closing the last write (or in a write of their own,
    /// after the pending silence, if one is pending or nothing was written).
    pub fn finish(mut self) -> Timeline {
        let end = match self.api {
            Api::Chat => chat_end_events(self.deltas),
            Api::Anthropic => {
                let delta = serde_json::json!({
                    "type": "message_delta",
                    "delta": {"stop_reason": "end_turn", "stop_sequence": null},
                    "usage": {"output_tokens": self.deltas},
                });
                format!(
                    "event: content_block_stop\ndata: {{\"type\":\"content_block_stop\",\"index\":0}}\n\n\
                     event: message_delta\ndata: {delta}\n\n\
                     event: message_stop\ndata: {{\"type\":\"message_stop\"}}\n\n"
                )
            }
        };
        match self.writes.last_mut() {
            Some((_, last)) if self.silence.is_none() => last.extend_from_slice(end.as_bytes()),
            _ => self.write(Duration::ZERO, end),
        }
        let (path, request) = match self.api {
            Api::Chat => ("/v1/chat/completions", chat_request(true)),
            Api::Anthropic => ("/v1/messages", anthropic_request()),
        };
        Timeline {
            writes: self.writes,
            delta_ends: self.delta_ends,
            path,
            request,
        }
    }

    /// Appends the next delta event to `bytes` (after the head, if not yet
    /// written) and records where it ends.
    fn push_delta(&mut self, bytes: &mut String) {
        bytes.push_str(&std::mem::take(&mut self.head));
        let word = WORDS[self.deltas % WORDS.len()];
        self.deltas += 1;
        bytes.push_str(&match (self.api, self.reasoning) {
            (Api::Chat, false) => chat_event(word),
            (Api::Chat, true) => chat_reasoning_event(word),
            (Api::Anthropic, _) => {
                let d = serde_json::json!({
                    "type": "content_block_delta", "index": 0,
                    "delta": {"type": "text_delta", "text": word},
                });
                format!("event: content_block_delta\ndata: {d}\n\n")
            }
        });
        self.delta_ends.push(self.offset + bytes.len());
    }

    fn write(&mut self, gap: Duration, mut bytes: String) {
        // A write without deltas (keepalives, the end) can be the first.
        bytes.insert_str(0, &std::mem::take(&mut self.head));
        let pause = match self.silence.take() {
            Some(s) => s,
            None if self.writes.is_empty() => Duration::ZERO,
            None => gap,
        };
        self.offset += bytes.len();
        self.writes.push((pause, bytes.into_bytes()));
    }
}

/// A streaming Anthropic Messages request body.
pub fn anthropic_request() -> Vec<u8> {
    serde_json::json!({
        "model": "claude-sonnet-4-5",
        "max_tokens": 1024,
        "stream": true,
        "messages": [{"role": "user", "content": "Say hello"}],
    })
    .to_string()
    .into_bytes()
}

/// The streams of the streaming-health tests (issue 10).
pub mod patterns {
    use super::{Timeline, TimelineBuilder};
    use std::time::Duration;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    /// (a) Smooth: 40 content deltas 40 ms apart, one per write (1.56 s).
    pub fn smooth() -> Timeline {
        TimelineBuilder::chat().deltas(40, ms(40)).finish()
    }

    /// (b) Fast: 300 deltas 3 ms apart, one per write (TCP and Envoy may
    /// coalesce them into fewer reads).
    pub fn fast() -> Timeline {
        TimelineBuilder::chat().deltas(300, ms(3)).finish()
    }

    /// (c) The first delta, 1.5 s of silence, then the other 40 in one write.
    pub fn first_then_wall() -> Timeline {
        TimelineBuilder::chat()
            .deltas(1, ms(40))
            .silence(ms(1500))
            .burst(40)
            .finish()
    }

    /// (d) Everything (40 deltas) in one write, 2 s after the response head.
    pub fn one_wall() -> Timeline {
        TimelineBuilder::chat().silence(ms(2000)).burst(40).finish()
    }

    /// (e) 20 deltas 40 ms apart, 3 s of silence, 20 more 40 ms apart.
    pub fn stall_mid_stream() -> Timeline {
        TimelineBuilder::chat()
            .deltas(20, ms(40))
            .silence(ms(3000))
            .deltas(20, ms(40))
            .finish()
    }

    /// (f) 5 s before the first delta, then 30 `reasoning_content` deltas
    /// 40 ms apart (a slow first token, not a stall).
    pub fn slow_start_reasoning() -> Timeline {
        TimelineBuilder::chat()
            .reasoning()
            .silence(ms(5000))
            .deltas(30, ms(40))
            .finish()
    }

    /// (g) Too short to judge: 4 deltas in one write.
    pub fn too_short() -> Timeline {
        TimelineBuilder::chat().burst(4).finish()
    }

    /// (h) Anthropic: 10 deltas 40 ms apart, then only `ping` events for 3 s
    /// (6, 500 ms apart), then 10 more deltas 40 ms apart.
    pub fn anthropic_keepalives() -> Timeline {
        TimelineBuilder::anthropic()
            .deltas(10, ms(40))
            .keepalives(6, ms(500))
            .deltas(10, ms(40))
            .finish()
    }
}
