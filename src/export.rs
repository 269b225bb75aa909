//! Export policy: a bounded queue of finished summaries, batched into one POST
//! body at a time. Time is passed in, so tests control it.
//!
//! One batch is in flight at a time: the collector sees a steady trickle, and
//! a slow or dead collector can never pile up callouts inside Envoy.

use crate::config::CollectorConfig;
use std::collections::VecDeque;

#[derive(Debug)]
pub struct ExportQueue {
    pending: VecDeque<String>,
    max_queue: usize,
    batch_size: usize,
    flush_interval_us: u64,
    /// When the oldest pending summary was queued.
    oldest_us: Option<u64>,
    in_flight: Option<usize>,
}

/// A POST body: a JSON array of `count` summaries.
#[derive(Debug, PartialEq, Eq)]
pub struct Batch {
    pub body: Vec<u8>,
    pub count: usize,
}

/// What a completed export did, for the counters.
#[derive(Debug, PartialEq, Eq)]
pub enum BatchResult {
    Exported(usize),
    /// The summaries of a failed batch are lost (counted as dropped).
    Failed(usize),
}

impl ExportQueue {
    pub fn new(max_queue: usize, batch_size: usize, flush_interval_ms: u64) -> Self {
        ExportQueue {
            pending: VecDeque::new(),
            max_queue: max_queue.max(1),
            batch_size: batch_size.max(1),
            flush_interval_us: flush_interval_ms.saturating_mul(1000),
            oldest_us: None,
            in_flight: None,
        }
    }

    pub fn for_collector(config: &CollectorConfig) -> Self {
        Self::new(
            config.max_queue,
            config.batch_size,
            config.flush_interval_ms,
        )
    }

    /// Queues a summary. Returns how many older summaries were dropped to
    /// make room (0 or 1).
    pub fn push(&mut self, summary: String, now_us: u64) -> usize {
        let mut dropped = 0;
        if self.pending.len() >= self.max_queue {
            self.pending.pop_front();
            dropped = 1;
        }
        if self.pending.is_empty() {
            self.oldest_us = Some(now_us);
        }
        self.pending.push_back(summary);
        dropped
    }

    pub fn len(&self) -> usize {
        self.pending.len()
    }

    pub fn is_empty(&self) -> bool {
        self.pending.is_empty()
    }

    pub fn in_flight(&self) -> bool {
        self.in_flight.is_some()
    }

    /// The next batch to send, when one is due: nothing in flight, and a full
    /// batch waiting or the oldest summary has waited a flush interval (or
    /// `force`, at shutdown).
    pub fn next_batch(&mut self, now_us: u64, force: bool) -> Option<Batch> {
        if self.in_flight.is_some() || self.pending.is_empty() {
            return None;
        }
        let waited = now_us.saturating_sub(self.oldest_us.unwrap_or(now_us));
        let due =
            force || self.pending.len() >= self.batch_size || waited >= self.flush_interval_us;
        if !due {
            return None;
        }
        let count = self.pending.len().min(self.batch_size);
        let size: usize = self.pending.iter().take(count).map(|s| s.len() + 1).sum();
        let mut body = Vec::with_capacity(size + 1);
        body.push(b'[');
        for (i, summary) in self.pending.drain(..count).enumerate() {
            if i > 0 {
                body.push(b',');
            }
            body.extend_from_slice(summary.as_bytes());
        }
        body.push(b']');
        self.oldest_us = if self.pending.is_empty() {
            None
        } else {
            Some(now_us)
        };
        self.in_flight = Some(count);
        Some(Batch { body, count })
    }

    /// The in-flight batch was answered (`ok`: a 2xx) or failed (connect
    /// error, timeout, other status).
    pub fn complete(&mut self, ok: bool) -> BatchResult {
        let count = self.in_flight.take().unwrap_or(0);
        if ok {
            BatchResult::Exported(count)
        } else {
            BatchResult::Failed(count)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batches_by_size_or_interval() {
        let mut q = ExportQueue::new(100, 3, 500);
        q.push("{\"a\":1}".into(), 0);
        assert_eq!(q.next_batch(100_000, false), None, "not due yet");
        let b = q.next_batch(500_000, false).unwrap();
        assert_eq!(b.body, b"[{\"a\":1}]");
        assert_eq!(b.count, 1);
        assert_eq!(q.next_batch(600_000, true), None, "one in flight at a time");
        assert_eq!(q.complete(true), BatchResult::Exported(1));

        for i in 0..4 {
            q.push(format!("{i}"), 1_000_000);
        }
        let b = q.next_batch(1_000_000, false).unwrap();
        assert_eq!(b.body, b"[0,1,2]");
        let parsed: serde_json::Value = serde_json::from_slice(&b.body).unwrap();
        assert_eq!(parsed.as_array().unwrap().len(), 3);
        assert_eq!(q.complete(false), BatchResult::Failed(3));
        assert_eq!(q.len(), 1);
        assert_eq!(q.next_batch(1_000_001, false), None);
        assert_eq!(q.next_batch(1_500_000, false).unwrap().body, b"[3]");
    }

    #[test]
    fn bounded_queue_drops_oldest_and_says_so() {
        let mut q = ExportQueue::new(2, 10, 500);
        assert_eq!(q.push("1".into(), 0), 0);
        assert_eq!(q.push("2".into(), 0), 0);
        assert_eq!(q.push("3".into(), 0), 1);
        assert_eq!(q.next_batch(0, true).unwrap().body, b"[2,3]");
    }

    #[test]
    fn force_flushes_early_and_empty_queue_sends_nothing() {
        let mut q = ExportQueue::new(10, 10, 60_000);
        assert_eq!(q.next_batch(0, true), None);
        q.push("x".into(), 0);
        assert!(q.next_batch(1, true).is_some());
        assert!(q.in_flight());
    }
}
