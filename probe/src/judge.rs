//! The client-side timeline judged by the filter's own core: each socket
//! read's decoded bytes go into a native [`CallTap`] at the time the read
//! returned, and the summary comes out as it would from Envoy.

use std::time::{Instant, SystemTime, UNIX_EPOCH};

use serde_json::Value;
use streamtap::call::tap::{CallTap, TapSettings};
use testbed::client::StreamResult;

/// What streamtap does at Envoy for a call it sees as this one ended, as
/// the client saw it end: cut short reads like an upstream reset.
const CUT_CODE_DETAILS: &str = "upstream_reset_after_response_started{connection_termination}";

/// The request as sent.
pub struct Sent<'a> {
    /// Path and query of the request line (the query is dropped by the tap).
    pub target: &'a str,
    pub request_id: &'a str,
    pub body: &'a [u8],
    /// `result.started` on the Unix clock, in µs.
    pub start_unix_us: u64,
}

/// Microseconds since the Unix epoch, now.
pub fn unix_now_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| since.as_micros() as u64)
}

/// The summary JSON the core makes of this client-side timeline.
pub fn client_summary(sent: &Sent<'_>, result: &StreamResult) -> Result<Value, String> {
    let at_us = |at: Instant| {
        sent.start_unix_us + at.saturating_duration_since(result.started).as_micros() as u64
    };
    let mut tap = CallTap::new(settings(), sent.start_unix_us);
    tap.on_request_headers(
        Some("POST".to_string()),
        Some(sent.target.to_string()),
        Some(sent.request_id.to_string()),
        None,
    );
    tap.on_request_body(sent.body);
    tap.on_request_end();
    response_headers(
        &mut tap,
        result.status,
        result.header("content-type"),
        result.header("content-encoding"),
        at_us(result.head_at),
    );
    let mut offset = 0;
    let mut end_us = at_us(result.head_at);
    for &(at, len) in &result.frames {
        let chunk = result
            .body
            .get(offset..offset + len)
            .ok_or("the client's reads and its body disagree")?;
        offset += len;
        end_us = at_us(at);
        tap.on_response_body(chunk, end_us);
    }
    let finished = if result.complete {
        tap.finish_at_end_of_stream(end_us)
    } else {
        tap.finish_at_log(CUT_CODE_DETAILS, end_us)
    }
    .ok_or("the core made no summary")?;
    serde_json::from_str(&finished.summary_json)
        .map_err(|err| format!("the core's summary is not JSON: {err}"))
}

// The two functions below are the whole of the probe's dependence on the
// core's API beyond CallTap's request, body and end methods.

/// The settings: nothing captured; the filter's default stream-health
/// thresholds (`stream_health` in its config).
fn settings() -> TapSettings {
    TapSettings {
        capture_response_content: false,
        capture_request_content: false,
        max_content_bytes: 0,
        max_decoded_bytes: streamtap::config::DEFAULT_MAX_DECODED_BYTES,
        health: Default::default(),
        timeline_entries: None,
    }
}

fn response_headers(
    tap: &mut CallTap,
    status: u16,
    content_type: Option<&str>,
    content_encoding: Option<&str>,
    now_us: u64,
) {
    tap.on_response_headers(Some(status), content_type, content_encoding, now_us);
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    /// A chat completions stream of `deltas` content deltas and its end.
    pub(crate) fn chat_stream(deltas: usize) -> Vec<Vec<u8>> {
        let mut events: Vec<Vec<u8>> = (0..deltas)
            .map(|i| {
                format!("data: {{\"id\":\"c\",\"object\":\"chat.completion.chunk\",\"model\":\"m\",\"choices\":[{{\"index\":0,\"delta\":{{\"content\":\"w{i} \"}},\"finish_reason\":null}}]}}\n\n").into_bytes()
            })
            .collect();
        events.push(b"data: {\"id\":\"c\",\"object\":\"chat.completion.chunk\",\"model\":\"m\",\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"stop\"}]}\n\ndata: [DONE]\n\n".to_vec());
        events
    }

    fn result(reads: Vec<(u64, Vec<u8>)>, complete: bool) -> StreamResult {
        let started = Instant::now();
        let mut body = Vec::new();
        let mut frames = Vec::new();
        for (ms, bytes) in reads {
            frames.push((started + Duration::from_millis(ms), bytes.len()));
            body.extend(bytes);
        }
        StreamResult {
            status: 200,
            headers: vec![("content-type".into(), "text/event-stream".into())],
            body,
            frames,
            started,
            head_at: started + Duration::from_millis(100),
            complete,
        }
    }

    fn sent() -> Sent<'static> {
        Sent {
            target: "/v1/chat/completions?key=s3cret",
            request_id: "probe-1",
            body: br#"{"model":"m","stream":true,"messages":[{"role":"user","content":"hi"}]}"#,
            start_unix_us: 1_764_000_000_000_000,
        }
    }

    #[test]
    fn reads_go_through_the_core_at_their_times() {
        let events = chat_stream(40);
        let reads = events
            .into_iter()
            .enumerate()
            .map(|(i, e)| (150 + 40 * i as u64, e))
            .collect();
        let summary = client_summary(&sent(), &result(reads, true)).unwrap();
        assert_eq!(summary["id"], "probe-1");
        assert_eq!(summary["path"], "/v1/chat/completions");
        assert_eq!(summary["outcome"], "completed");
        assert_eq!(summary["ttft_ms"], 150.0);
        assert_eq!(summary["model"], "m");
        // A cut connection ends like an upstream reset.
        let cut = client_summary(
            &sent(),
            &result(vec![(150, chat_stream(3).remove(0))], false),
        )
        .unwrap();
        assert_eq!(cut["outcome"], "upstream_reset");
    }
}
