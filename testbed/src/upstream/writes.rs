//! The stream's socket writes: planned from the chunking, timed by the
//! interval, written (with stamps filled in) and recorded as they go.

use std::io;
use std::time::{Duration, Instant};

use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

use super::controls::{Chunking, Controls};
use super::openai::Event;
use super::stamps::{unix_micros, StampPart, STAMP_DIGITS};
use super::{SentEvent, SentStream};

/// Gap between the pieces of a `split` event: long enough that they arrive
/// as separate TCP reads.
pub(super) const SPLIT_PIECE_GAP: Duration = Duration::from_millis(2);
/// The longest `x-mock-idle-after` holds a stream.
pub(super) const MAX_IDLE: Duration = Duration::from_secs(600);

/// One socket write of the stream.
pub(super) struct PlannedWrite {
    pub(super) delay_before: Duration,
    pub(super) bytes: Vec<u8>,
    /// Indices of the events whose last byte is in this write.
    pub(super) completes: Vec<usize>,
    /// The stamp digits in this write, filled in just before it.
    pub(super) stamps: Vec<StampPart>,
}

impl PlannedWrite {
    /// A write of the byte ranges `lo..hi` of the given events, in order.
    pub(super) fn of(
        delay_before: Duration,
        events: &[Event],
        segments: &[(usize, usize, usize)],
    ) -> Self {
        let mut bytes = Vec::new();
        let mut stamps = Vec::new();
        let mut completes = Vec::new();
        for &(index, lo, hi) in segments {
            let Some(event) = events.get(index) else {
                continue;
            };
            if let Some(s) = event.stamp_at {
                let (from, to) = (lo.max(s), hi.min(s + STAMP_DIGITS));
                if from < to {
                    stamps.push(StampPart {
                        at: bytes.len() + from - lo,
                        event: index,
                        digits: (from - s, to - s),
                    });
                }
            }
            bytes.extend_from_slice(event.bytes.get(lo..hi).unwrap_or_default());
            if hi == event.bytes.len() {
                completes.push(index);
            }
        }
        PlannedWrite {
            delay_before,
            bytes,
            completes,
            stamps,
        }
    }
}

/// Two cut points inside an event of `len` bytes, chosen by event index so
/// that across a stream the cuts land inside `data:`, mid-JSON, between the
/// two line ends of the final blank line and (with CRLF) between `\r` and `\n`.
pub(super) fn split_points(index: usize, len: usize) -> (usize, usize) {
    let (first, second) = match index % 4 {
        0 => (3, len - 1),
        1 => (len / 2, len - 3),
        2 => (6, len - 2),
        _ => (1, len / 2),
    };
    (first.clamp(1, len - 2), second.clamp(first + 1, len - 1))
}

pub(super) fn plan_writes(
    events: &[Event],
    chunking: Chunking,
    interval: Duration,
) -> Vec<PlannedWrite> {
    let gap = |is_first: bool| if is_first { Duration::ZERO } else { interval };
    match chunking {
        Chunking::Event => events
            .iter()
            .enumerate()
            .map(|(i, event)| PlannedWrite::of(gap(i == 0), events, &[(i, 0, event.bytes.len())]))
            .collect(),
        Chunking::Batch(per_write) => events
            .chunks(per_write)
            .enumerate()
            .map(|(batch, group)| {
                let segments: Vec<(usize, usize, usize)> = group
                    .iter()
                    .enumerate()
                    .map(|(k, e)| (batch * per_write + k, 0, e.bytes.len()))
                    .collect();
                PlannedWrite::of(gap(batch == 0), events, &segments)
            })
            .collect(),
        Chunking::Split => {
            let mut writes = Vec::with_capacity(events.len() * 3);
            for (i, event) in events.iter().enumerate() {
                let len = event.bytes.len();
                let (first, second) = split_points(i, len);
                let pieces = [(0, first), (first, second), (second, len)];
                for (p, (lo, hi)) in pieces.into_iter().enumerate() {
                    let delay = if p == 0 { gap(i == 0) } else { SPLIT_PIECE_GAP };
                    writes.push(PlannedWrite::of(delay, events, &[(i, lo, hi)]));
                }
            }
            writes
        }
    }
}

pub(super) fn reason_phrase(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        _ => "Mock Status",
    }
}

/// Writes a response with a content-length; returns when it had been written.
pub(super) async fn write_full(
    stream: &mut TcpStream,
    status: u16,
    content_type: &str,
    body: &[u8],
    close: bool,
) -> io::Result<Instant> {
    let connection = if close { "connection: close\r\n" } else { "" };
    let mut response = format!(
        "HTTP/1.1 {status} {}\r\ncontent-type: {content_type}\r\ncontent-length: {}\r\n{connection}\r\n",
        reason_phrase(status),
        body.len()
    )
    .into_bytes();
    response.extend_from_slice(body);
    stream.write_all(&response).await?;
    Ok(Instant::now())
}

/// Streams `events` as a chunked SSE response, recording into `sent` as it
/// goes so that a failed write still leaves an accurate record.
pub(super) async fn write_stream(
    stream: &mut TcpStream,
    events: &[Event],
    content_type: &str,
    controls: &Controls,
    close: bool,
    sent: &mut SentStream,
) -> io::Result<()> {
    let connection = if close { "connection: close\r\n" } else { "" };
    let head = format!(
        "HTTP/1.1 200 OK\r\ncontent-type: {content_type}\r\ncache-control: no-cache\r\ntransfer-encoding: chunked\r\n{connection}\r\n"
    );
    stream.write_all(head.as_bytes()).await?;
    sent.started = Instant::now();

    let mut writes = plan_writes(events, controls.chunking, controls.interval);
    if let Some(limit) = controls.abort_after_events {
        // Keep the writes up to the one that completes event number `limit`.
        let keep = writes
            .iter()
            .position(|w| w.completes.iter().any(|&e| e + 1 >= limit))
            .map_or(writes.len(), |i| i + 1);
        writes.truncate(if limit == 0 { 0 } else { keep });
    }
    let aborted = writes
        .last()
        .and_then(|w| w.completes.last())
        .is_none_or(|&e| e + 1 < events.len());
    let event_ends: Vec<usize> = events
        .iter()
        .scan(0, |end, event| {
            *end += event.bytes.len();
            Some(*end)
        })
        .collect();

    let write_count = writes.len();
    let mut stamp_values: Vec<Option<u64>> = vec![None; events.len()];
    let mut idle_after = controls.idle_after_events;
    for (n, mut write) in writes.into_iter().enumerate() {
        if !write.delay_before.is_zero() {
            tokio::time::sleep(write.delay_before).await;
        }
        if !write.stamps.is_empty() {
            write.fill_stamps(&mut stamp_values, unix_micros());
        }
        let mut framed = format!("{:x}\r\n", write.bytes.len()).into_bytes();
        framed.extend_from_slice(&write.bytes);
        framed.extend_from_slice(b"\r\n");
        if n + 1 == write_count && !aborted {
            framed.extend_from_slice(b"0\r\n\r\n");
        }
        stream.write_all(&framed).await?;
        let sent_at = Instant::now();
        sent.body.extend_from_slice(&write.bytes);
        let written = write.completes.last().map_or(0, |&e| e + 1);
        for index in write.completes {
            sent.events.push(SentEvent {
                end_offset: event_ends[index],
                sent_at,
                has_content: events[index].has_content,
            });
        }
        if idle_after.is_some_and(|k| written >= k) {
            idle_after = None;
            if idle_until_closed(stream).await {
                return Err(io::Error::other("client went away while the stream idled"));
            }
        }
    }
    sent.complete = !aborted;
    if aborted {
        // Closing without the last chunk is what an upstream reset looks like.
        return Err(io::Error::other("stream aborted by x-mock-abort-after"));
    }
    Ok(())
}

/// Waits up to [`MAX_IDLE`] without writing; true if the peer closed the
/// connection meanwhile. A request arriving (pipelining) ends the wait too.
pub(super) async fn idle_until_closed(stream: &mut TcpStream) -> bool {
    let mut probe = [0u8; 1];
    tokio::select! {
        _ = tokio::time::sleep(MAX_IDLE) => false,
        peeked = stream.peek(&mut probe) => !matches!(peeked, Ok(n) if n > 0),
    }
}
