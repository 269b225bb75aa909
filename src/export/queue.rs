//! Export policy: a bounded queue of finished summaries, sent in batches, one
//! POST in flight at a time, retried with exponential backoff while the
//! collector fails. Time (and the jitter seed) is passed in: tests control it.
//!
//! A batch stays at the front of the queue until the collector accepts it,
//! so a collector that is down for a while loses nothing until the queue is
//! full; then the oldest summaries are dropped first, and counted.

use crate::config::{CollectorConfig, ExportFormat};
use std::collections::VecDeque;

/// First retry delay; it doubles per failed attempt up to `MAX_BACKOFF_US`.
pub const BASE_BACKOFF_US: u64 = 250_000;
pub const MAX_BACKOFF_US: u64 = 30_000_000;
/// Longest `retry-after` honoured.
pub const MAX_RETRY_AFTER_US: u64 = 60_000_000;

#[derive(Debug)]
pub struct ExportQueue {
    /// Oldest first, with when each was queued. The first `in_flight`
    /// entries are being sent.
    pending: VecDeque<(u64, String)>,
    in_flight: Option<usize>,
    max_queue: usize,
    batch_size: usize,
    flush_interval_us: u64,
    /// Failed attempts in a row, and when the next may start.
    failures: u32,
    retry_at_us: u64,
    jitter: u64,
    /// Batches are OTLP `ExportLogsServiceRequest`s instead of JSON arrays.
    otlp: bool,
}

/// A POST body: a JSON array of `count` summaries.
#[derive(Debug, PartialEq, Eq)]
pub struct Batch {
    pub body: Vec<u8>,
    pub count: usize,
}

/// How the collector answered a batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CollectorReply {
    /// A 2xx.
    Accepted,
    /// No answer (connect failure, timeout), a 5xx, 429 or 408: try again
    /// later, no sooner than `retry_after_us` when the collector said so.
    Retry { retry_after_us: Option<u64> },
    /// Any other status: the collector will not take this batch; it is dropped.
    Rejected,
}

impl CollectorReply {
    /// From the `:status` of the callout (None when it failed) and its
    /// `retry-after` header.
    pub fn from_status(status: Option<u16>, retry_after: Option<&str>) -> CollectorReply {
        match status {
            Some(200..=299) => CollectorReply::Accepted,
            None | Some(408 | 429 | 500..=599) => CollectorReply::Retry {
                retry_after_us: retry_after.and_then(parse_retry_after),
            },
            Some(_) => CollectorReply::Rejected,
        }
    }
}

/// `retry-after` in seconds. The HTTP-date form is not worth a date parser
/// here: it falls back to the backoff.
fn parse_retry_after(value: &str) -> Option<u64> {
    let seconds: u64 = value.trim().parse().ok()?;
    Some(seconds.saturating_mul(1_000_000).min(MAX_RETRY_AFTER_US))
}

/// What a completed export did, for the counters.
#[derive(Debug, PartialEq, Eq)]
pub enum BatchResult {
    Exported(usize),
    /// Kept for another try in `retry_in_us`.
    WillRetry {
        count: usize,
        retry_in_us: u64,
    },
    /// Dropped: the collector refused them.
    Rejected(usize),
}

impl ExportQueue {
    pub fn new(
        max_queue: usize,
        batch_size: usize,
        flush_interval_ms: u64,
        jitter_seed: u64,
    ) -> Self {
        ExportQueue {
            pending: VecDeque::new(),
            in_flight: None,
            max_queue: max_queue.max(1),
            batch_size: batch_size.max(1),
            flush_interval_us: flush_interval_ms.saturating_mul(1000),
            failures: 0,
            retry_at_us: 0,
            jitter: jitter_seed | 1,
            otlp: false,
        }
    }

    /// Queued entries are OTLP log records; batches get the OTLP envelope.
    pub fn otlp(mut self) -> Self {
        self.otlp = true;
        self
    }

    pub fn for_collector(config: &CollectorConfig, jitter_seed: u64) -> Self {
        let queue = Self::new(
            config.max_queue,
            config.batch_size,
            config.flush_interval_ms,
            jitter_seed,
        );
        match config.format {
            ExportFormat::Json => queue,
            ExportFormat::Otlp => queue.otlp(),
        }
    }

    /// Queues a summary. Returns how many summaries were dropped to make
    /// room: the oldest not being sent, or this one if all are in flight.
    pub fn push(&mut self, summary: String, now_us: u64) -> usize {
        let mut dropped = 0;
        if self.pending.len() >= self.max_queue {
            let sending = self.in_flight.unwrap_or(0);
            if sending >= self.pending.len() {
                return 1;
            }
            self.pending.remove(sending);
            dropped = 1;
        }
        self.pending.push_back((now_us, summary));
        dropped
    }

    pub fn len(&self) -> usize {
        self.pending.len()
    }

    /// Removes and returns the summaries not being sent, oldest first (to
    /// hand them over at a stop).
    pub fn take_unsent(&mut self) -> Vec<String> {
        let sending = self.in_flight.unwrap_or(0).min(self.pending.len());
        self.pending
            .drain(sending..)
            .map(|(_, summary)| summary)
            .collect()
    }

    pub fn is_empty(&self) -> bool {
        self.pending.is_empty()
    }

    pub fn in_flight(&self) -> bool {
        self.in_flight.is_some()
    }

    /// The next batch to send, when one is due: nothing in flight, not
    /// backing off, and a full batch waiting or the oldest summary has waited
    /// a flush interval (or `force`, at shutdown).
    pub fn next_batch(&mut self, now_us: u64, force: bool) -> Option<Batch> {
        if self.in_flight.is_some() || self.pending.is_empty() || now_us < self.retry_at_us {
            return None;
        }
        let oldest = self.pending.front().map_or(now_us, |(queued, _)| *queued);
        let waited = now_us.saturating_sub(oldest);
        let due = force
            || self.failures > 0
            || self.pending.len() >= self.batch_size
            || waited >= self.flush_interval_us;
        if !due {
            return None;
        }
        let count = self.pending.len().min(self.batch_size);
        let size: usize = self
            .pending
            .iter()
            .take(count)
            .map(|(_, s)| s.len() + 1)
            .sum();
        let (prefix, suffix) = if self.otlp {
            (
                crate::export::otlp::envelope_prefix(),
                crate::export::otlp::ENVELOPE_SUFFIX,
            )
        } else {
            ("[".to_string(), "]")
        };
        let mut body = Vec::with_capacity(size + prefix.len() + suffix.len());
        body.extend_from_slice(prefix.as_bytes());
        for (i, (_, summary)) in self.pending.iter().take(count).enumerate() {
            if i > 0 {
                body.push(b',');
            }
            body.extend_from_slice(summary.as_bytes());
        }
        body.extend_from_slice(suffix.as_bytes());
        self.in_flight = Some(count);
        Some(Batch { body, count })
    }

    /// The in-flight batch was answered (or failed).
    pub fn complete(&mut self, reply: CollectorReply, now_us: u64) -> BatchResult {
        let count = self.in_flight.take().unwrap_or(0).min(self.pending.len());
        match reply {
            CollectorReply::Accepted => {
                self.pending.drain(..count);
                self.failures = 0;
                self.retry_at_us = 0;
                BatchResult::Exported(count)
            }
            CollectorReply::Rejected => {
                self.pending.drain(..count);
                BatchResult::Rejected(count)
            }
            CollectorReply::Retry { retry_after_us } => {
                self.failures = self.failures.saturating_add(1);
                let backoff = self.backoff_us();
                let delay = retry_after_us.map_or(backoff, |after| after.max(backoff));
                self.retry_at_us = now_us.saturating_add(delay);
                BatchResult::WillRetry {
                    count,
                    retry_in_us: delay,
                }
            }
        }
    }

    /// Exponential backoff with jitter (between half and all of the delay),
    /// so workers and Envoys do not retry in lockstep.
    fn backoff_us(&mut self) -> u64 {
        let exponent = self.failures.saturating_sub(1).min(20);
        let full = BASE_BACKOFF_US
            .saturating_mul(1 << exponent)
            .min(MAX_BACKOFF_US);
        // xorshift64
        self.jitter ^= self.jitter << 13;
        self.jitter ^= self.jitter >> 7;
        self.jitter ^= self.jitter << 17;
        full / 2 + self.jitter % (full / 2 + 1)
    }

    /// Failed attempts in a row (0 when the collector is healthy).
    pub fn failures(&self) -> u32 {
        self.failures
    }
}

/// The export queue as the root context and the HTTP contexts of one VM
/// share it. Reached only through [`SharedQueue::with`]: the borrow ends with
/// the closure, and a nested borrow is refused instead of panicking (a panic
/// would kill the VM for every stream on the worker).
#[derive(Debug, Clone)]
pub struct SharedQueue(std::rc::Rc<std::cell::RefCell<ExportQueue>>);

impl SharedQueue {
    pub fn new(queue: ExportQueue) -> SharedQueue {
        SharedQueue(std::rc::Rc::new(std::cell::RefCell::new(queue)))
    }

    /// Runs `f` on the queue; None if it is borrowed already, which only a
    /// `with` inside another `with` could do.
    pub fn with<R>(&self, f: impl FnOnce(&mut ExportQueue) -> R) -> Option<R> {
        let mut queue = self.0.try_borrow_mut().ok()?;
        Some(f(&mut queue))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_nested_borrow_of_the_shared_queue_is_refused_not_a_panic() {
        let shared = SharedQueue::new(queue(10, 10));
        assert_eq!(shared.with(|q| q.push("{}".into(), 0)), Some(0));
        let other = shared.clone();
        let nested = shared.with(|_| other.with(|q| q.push("{}".into(), 0)));
        assert_eq!(nested, Some(None), "the inner borrow is refused");
        // The borrow ended with the closure: the queue is usable again.
        assert!(shared
            .with(|q| q.next_batch(1_000_000, true))
            .flatten()
            .is_some());
    }

    fn queue(max: usize, batch: usize) -> ExportQueue {
        ExportQueue::new(max, batch, 500, 42)
    }

    #[test]
    fn take_unsent_leaves_the_batch_in_flight() {
        let mut q = queue(100, 2);
        for i in 0..5 {
            q.push(format!("{{\"n\":{i}}}"), 0);
        }
        let batch = q.next_batch(0, true).unwrap();
        assert_eq!(batch.count, 2);
        assert_eq!(q.take_unsent(), ["{\"n\":2}", "{\"n\":3}", "{\"n\":4}"]);
        assert_eq!(q.len(), 2, "the two being sent stay until answered");
        q.complete(CollectorReply::Accepted, 1);
        assert!(q.is_empty());
        assert!(q.take_unsent().is_empty());
    }

    #[test]
    fn batches_by_size_or_interval() {
        let mut q = queue(100, 3);
        q.push("{\"a\":1}".into(), 0);
        assert_eq!(q.next_batch(100_000, false), None, "not due yet");
        let b = q.next_batch(500_000, false).unwrap();
        assert_eq!(b.body, b"[{\"a\":1}]");
        assert_eq!(q.next_batch(600_000, true), None, "one in flight at a time");
        assert_eq!(
            q.complete(CollectorReply::Accepted, 600_000),
            BatchResult::Exported(1)
        );
        assert!(q.is_empty());

        for i in 0..4 {
            q.push(format!("{i}"), 1_000_000);
        }
        let b = q.next_batch(1_000_000, false).unwrap();
        assert_eq!(b.body, b"[0,1,2]");
        let parsed: serde_json::Value = serde_json::from_slice(&b.body).unwrap();
        assert_eq!(parsed.as_array().unwrap().len(), 3);
        assert_eq!(
            q.complete(CollectorReply::Accepted, 1_000_000),
            BatchResult::Exported(3)
        );
        assert_eq!(q.next_batch(1_000_001, false), None);
        assert_eq!(q.next_batch(1_500_000, false).unwrap().body, b"[3]");
    }

    #[test]
    fn failed_batch_is_retried_with_growing_jittered_backoff_then_drains() {
        let mut q = queue(100, 2);
        for i in 0..5 {
            q.push(format!("{i}"), 0);
        }
        let mut now = 0;
        let mut delays = Vec::new();
        for _ in 0..6 {
            let b = q.next_batch(now, false).expect("due");
            assert_eq!(b.body, b"[0,1]", "the same oldest batch again");
            let BatchResult::WillRetry { retry_in_us, count } =
                q.complete(CollectorReply::from_status(None, None), now)
            else {
                panic!("should retry")
            };
            assert_eq!(count, 2);
            assert_eq!(
                q.next_batch(now + retry_in_us - 1, false),
                None,
                "backing off"
            );
            delays.push(retry_in_us);
            now += retry_in_us;
        }
        for (i, d) in delays.iter().enumerate() {
            let full = BASE_BACKOFF_US << i;
            assert!(
                (full / 2..=full).contains(d),
                "attempt {i}: {d} not in jittered range of {full}"
            );
        }
        // The collector is back: the backlog drains, oldest first, nothing lost.
        let mut got = Vec::new();
        while let Some(b) = q.next_batch(now, false) {
            got.extend_from_slice(&b.body);
            assert!(matches!(
                q.complete(CollectorReply::Accepted, now),
                BatchResult::Exported(_)
            ));
        }
        assert_eq!(got, b"[0,1][2,3][4]");
        assert_eq!(q.failures(), 0);
    }

    #[test]
    fn retry_after_is_honoured_and_other_4xx_is_dropped() {
        let mut q = queue(100, 10);
        q.push("x".into(), 0);
        q.next_batch(0, true).unwrap();
        let r = q.complete(CollectorReply::from_status(Some(429), Some("7")), 0);
        assert_eq!(
            r,
            BatchResult::WillRetry {
                count: 1,
                retry_in_us: 7_000_000
            }
        );
        assert!(q.next_batch(6_999_999, false).is_none());
        q.next_batch(7_000_000, false).unwrap();
        assert_eq!(
            q.complete(CollectorReply::from_status(Some(400), None), 7_000_000),
            BatchResult::Rejected(1)
        );
        assert!(q.is_empty());
        assert_eq!(
            CollectorReply::from_status(Some(503), Some("Wed, 21 Oct 2015 07:28:00 GMT")),
            CollectorReply::Retry {
                retry_after_us: None
            }
        );
        assert_eq!(
            CollectorReply::from_status(Some(204), None),
            CollectorReply::Accepted
        );
        assert_eq!(
            CollectorReply::from_status(Some(302), None),
            CollectorReply::Rejected
        );
    }

    #[test]
    fn otlp_batches_are_wrapped_in_the_envelope() {
        let mut q = queue(10, 10).otlp();
        q.push("{\"a\":1}".into(), 0);
        q.push("{\"b\":2}".into(), 0);
        let b = q.next_batch(0, true).unwrap();
        let v: serde_json::Value = serde_json::from_slice(&b.body).unwrap();
        assert_eq!(
            v["resourceLogs"][0]["scopeLogs"][0]["logRecords"][1]["b"],
            2
        );
    }

    #[test]
    fn bounded_queue_drops_oldest_not_in_flight() {
        let mut q = queue(3, 2);
        for i in 1..=3 {
            assert_eq!(q.push(format!("{i}"), 0), 0);
        }
        assert_eq!(q.next_batch(0, true).unwrap().body, b"[1,2]");
        // Full: "3" is the oldest not being sent, so it goes.
        assert_eq!(q.push("4".into(), 0), 1);
        assert_eq!(
            q.complete(CollectorReply::Accepted, 0),
            BatchResult::Exported(2)
        );
        assert_eq!(q.next_batch(0, true).unwrap().body, b"[4]");
    }

    #[test]
    fn when_everything_queued_is_in_flight_the_new_summary_is_dropped() {
        let mut q = queue(2, 2);
        q.push("1".into(), 0);
        q.push("2".into(), 0);
        q.next_batch(0, true).unwrap();
        assert_eq!(q.push("3".into(), 0), 1);
        assert_eq!(q.len(), 2);
    }
}
