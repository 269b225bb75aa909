//! The flight recorder (`capture.timeline`): when each delta arrived, how
//! big it was, which body chunk brought it and what kind it was, in at most
//! `capture.timeline_max_entries` entries.
//!
//! One entry per delta until the bound. Then the recorder compacts, in this
//! order, until at most three quarters of the bound are used:
//! 1. neighbours of the same kind from the same chunk merge (they share one
//!    arrival time, so nothing about the shape is lost);
//! 2. pairs of neighbours of the same kind less than `pause_us` apart merge
//!    (a silence of a pause or more, a stall or the wait before a burst, is
//!    never merged across);
//! 3. pairs of neighbours merge whatever lies between them (only a stream
//!    with more pauses than the bound holds gets here).
//!
//! A merged entry keeps its first delta's time, the span to its last, the
//! count of deltas and the sum of their bytes. Each pass is linear in the
//! bound and frees a quarter of it, so the cost per delta stays constant.

use crate::call::health::Phase;
use serde::ser::{SerializeStruct, Serializer};
use serde::Serialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Entry {
    /// µs since the request started.
    at_us: u64,
    span_us: u64,
    deltas: u32,
    bytes: u32,
    chunk: u32,
    kind: u8,
}

/// The compaction passes, in order (module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Pass {
    SameChunk,
    NoPause,
    Any,
}

#[derive(Debug)]
pub struct Timeline {
    entries: Vec<Entry>,
    max_entries: usize,
    pause_us: u64,
    start_us: u64,
    deltas: u64,
    compacted: bool,
}

fn kind_letter(phase: Phase) -> u8 {
    match phase {
        Phase::Reasoning => b'r',
        Phase::ToolArguments => b't',
        // FirstToken is never a delta's kind.
        Phase::Content | Phase::FirstToken => b'c',
    }
}

impl Timeline {
    /// `max_entries` at least 8 (the config's range guarantees it).
    pub fn new(start_us: u64, max_entries: usize, pause_us: u64) -> Self {
        Timeline {
            entries: Vec::new(),
            max_entries: max_entries.max(8),
            pause_us,
            start_us,
            deltas: 0,
            compacted: false,
        }
    }

    /// A delta of `bytes` of text that arrived at `now_us` in body chunk `chunk`.
    pub fn record(&mut self, now_us: u64, chunk: u64, bytes: usize, phase: Phase) {
        if self.entries.len() >= self.max_entries {
            self.compact();
        }
        self.deltas += 1;
        self.entries.push(Entry {
            at_us: now_us.saturating_sub(self.start_us),
            span_us: 0,
            deltas: 1,
            bytes: u32::try_from(bytes).unwrap_or(u32::MAX),
            chunk: u32::try_from(chunk).unwrap_or(u32::MAX),
            kind: kind_letter(phase),
        });
    }

    fn compact(&mut self) {
        self.compacted = true;
        let goal = self.max_entries * 3 / 4;
        for pass in [Pass::SameChunk, Pass::NoPause, Pass::Any] {
            if self.entries.len() <= goal {
                return;
            }
            self.merge(pass);
        }
    }

    fn mergeable(&self, pass: Pass, a: &Entry, b: &Entry) -> bool {
        match pass {
            Pass::SameChunk => a.kind == b.kind && a.chunk == b.chunk,
            Pass::NoPause => {
                a.kind == b.kind && b.at_us.saturating_sub(a.at_us + a.span_us) < self.pause_us
            }
            Pass::Any => true,
        }
    }

    fn merge(&mut self, pass: Pass) {
        // The first pass merges whole runs; the others pairs, so each halves at most.
        let runs = pass == Pass::SameChunk;
        let entries = std::mem::take(&mut self.entries);
        let mut out: Vec<Entry> = Vec::with_capacity(entries.len());
        let mut just_merged = false;
        for entry in entries {
            let merge = out
                .last()
                .is_some_and(|last| (runs || !just_merged) && self.mergeable(pass, last, &entry));
            match out.last_mut() {
                Some(last) if merge => {
                    let end = entry.at_us + entry.span_us;
                    last.span_us = end.saturating_sub(last.at_us);
                    last.deltas = last.deltas.saturating_add(entry.deltas);
                    last.bytes = last.bytes.saturating_add(entry.bytes);
                    // Only the last pass merges across kinds: the first one's stays.
                    just_merged = true;
                }
                _ => {
                    out.push(entry);
                    just_merged = false;
                }
            }
        }
        self.entries = out;
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

/// One column of the entries; delta-encoded (the first value, then the
/// difference to the previous one) or as it is. A plain `fn`, not a generic
/// closure: one copy of the code in the `.wasm` for all five columns.
struct Column<'a> {
    entries: &'a [Entry],
    value: fn(&Entry) -> u64,
    delta_encoded: bool,
}

impl Serialize for Column<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut previous = 0u64;
        s.collect_seq(self.entries.iter().map(|e| {
            let value = (self.value)(e);
            if !self.delta_encoded {
                return value;
            }
            let delta = value.saturating_sub(previous);
            previous = value;
            delta
        }))
    }
}

impl Serialize for Timeline {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let e = &self.entries;
        let column = |value: fn(&Entry) -> u64, delta_encoded| Column {
            entries: e,
            value,
            delta_encoded,
        };
        let kind: String = e.iter().map(|e| char::from(e.kind)).collect();
        let mut out = s.serialize_struct("Timeline", 9)?;
        out.serialize_field("unit", "us")?;
        out.serialize_field("deltas", &self.deltas)?;
        out.serialize_field("compacted", &self.compacted)?;
        out.serialize_field("t", &column(|e| e.at_us, true))?;
        out.serialize_field("span", &column(|e| e.span_us, false))?;
        out.serialize_field("n", &column(|e| u64::from(e.deltas), false))?;
        out.serialize_field("bytes", &column(|e| u64::from(e.bytes), false))?;
        out.serialize_field("chunk", &column(|e| u64::from(e.chunk), true))?;
        out.serialize_field("kind", &kind)?;
        out.end()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    fn json(t: &Timeline) -> Value {
        serde_json::to_value(t).unwrap()
    }

    /// Undoes the delta encoding.
    fn absolute(v: &Value) -> Vec<u64> {
        let mut sum = 0;
        v.as_array()
            .unwrap()
            .iter()
            .map(|d| {
                sum += d.as_u64().unwrap();
                sum
            })
            .collect()
    }

    #[test]
    fn one_entry_per_delta_below_the_bound() {
        let mut t = Timeline::new(1_000, 64, 250_000);
        t.record(151_000, 0, 4, Phase::Reasoning);
        t.record(191_000, 1, 3, Phase::Content);
        t.record(191_000, 1, 5, Phase::Content);
        t.record(231_000, 2, 9, Phase::ToolArguments);
        let v = json(&t);
        assert_eq!(v["unit"], "us");
        assert_eq!(v["t"], serde_json::json!([150_000, 40_000, 0, 40_000]));
        assert_eq!(absolute(&v["chunk"]), [0, 1, 1, 2]);
        assert_eq!(v["bytes"], serde_json::json!([4, 3, 5, 9]));
        assert_eq!(v["n"], serde_json::json!([1, 1, 1, 1]));
        assert_eq!(v["kind"], "rcct");
        assert_eq!(v["deltas"], 4);
        assert_eq!(v["compacted"], false);
    }

    #[test]
    fn the_bound_holds_and_the_shape_survives() {
        // 100 000 deltas: 40 ms apart, a 3 s stall after 50 000, and a
        // burst of 500 in one chunk at the end.
        let mut t = Timeline::new(0, 256, 250_000);
        let mut at = 0;
        let mut chunk = 0;
        for i in 0..99_500u64 {
            at += if i == 50_000 { 3_000_000 } else { 40_000 };
            chunk += 1;
            t.record(at, chunk, 3, Phase::Content);
            assert!(t.len() <= 256);
        }
        at += 2_000_000;
        chunk += 1;
        for _ in 0..500 {
            t.record(at, chunk, 3, Phase::Content);
        }
        assert!(t.len() <= 256, "{}", t.len());
        let v = json(&t);
        assert_eq!(v["deltas"], 100_000);
        assert_eq!(v["compacted"], true);
        let n: u64 = v["n"]
            .as_array()
            .unwrap()
            .iter()
            .map(|n| n.as_u64().unwrap())
            .sum();
        assert_eq!(n, 100_000);
        let bytes: u64 = v["bytes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|n| n.as_u64().unwrap())
            .sum();
        assert_eq!(bytes, 300_000);
        // The stall and the pause before the burst are silences between entries.
        let starts = absolute(&v["t"]);
        let spans: Vec<u64> = v["span"]
            .as_array()
            .unwrap()
            .iter()
            .map(|n| n.as_u64().unwrap())
            .collect();
        let silences: Vec<u64> = (1..starts.len())
            .map(|i| starts[i] - (starts[i - 1] + spans[i - 1]))
            .collect();
        assert!(silences.iter().any(|&s| s >= 3_000_000), "the stall");
        assert!(
            silences
                .iter()
                .any(|&s| (2_000_000..3_000_000).contains(&s)),
            "the pause"
        );
        // The burst: 500 deltas at one time, with no span.
        let burst: u64 = (0..starts.len())
            .filter(|&i| starts[i] == at)
            .inspect(|&i| assert_eq!(spans[i], 0))
            .map(|i| v["n"][i].as_u64().unwrap())
            .sum();
        assert_eq!(burst, 500);
    }

    #[test]
    fn a_stream_of_pauses_beyond_the_bound_still_fits() {
        let mut t = Timeline::new(0, 16, 250_000);
        for i in 1..=1000u64 {
            t.record(
                i * 1_000_000,
                i,
                1,
                if i % 2 == 0 {
                    Phase::Reasoning
                } else {
                    Phase::Content
                },
            );
        }
        assert!(t.len() <= 16);
        assert_eq!(json(&t)["deltas"], 1000);
    }
}
