//! A fixed log-linear histogram, so a stream's memory does not grow with its
//! length: the gaps between content deltas (µs) and the events per body chunk.
//!
//! Below 16 each value has its own bucket; above, every power of two is split
//! in 8 buckets, so a percentile is off by at most 1/16 of its value. Values
//! are capped at 2^32 (for gaps in µs: 71 minutes).

const SUB_BITS: u32 = 3;
const SUB_BUCKETS: usize = 1 << SUB_BITS;
const EXACT: usize = 2 * SUB_BUCKETS; // values below this have their own bucket
const MAX_EXPONENT: u32 = 31;
const BUCKETS: usize = EXACT + (MAX_EXPONENT as usize - SUB_BITS as usize) * SUB_BUCKETS;

#[derive(Debug, Default)]
pub struct LogHistogram {
    /// Allocated at the first value: calls without content cost nothing.
    counts: Option<Box<[u32; BUCKETS]>>,
    total: u64,
    max: u64,
}

fn bucket_of(value: u64) -> usize {
    let v = value.min(u64::from(u32::MAX));
    if v < EXACT as u64 {
        return v as usize;
    }
    let exponent = 63 - v.leading_zeros(); // >= SUB_BITS + 1
    let mantissa = (v >> (exponent - SUB_BITS)) as usize & (SUB_BUCKETS - 1);
    EXACT + (exponent - SUB_BITS - 1) as usize * SUB_BUCKETS + mantissa
}

/// The middle of a bucket's range of values.
fn bucket_value(index: usize) -> u64 {
    if index < EXACT {
        return index as u64;
    }
    let offset = index - EXACT;
    let exponent = (offset / SUB_BUCKETS) as u32 + SUB_BITS + 1;
    let mantissa = (offset % SUB_BUCKETS) as u64;
    let width = 1u64 << (exponent - SUB_BITS);
    let low = (1u64 << exponent) + mantissa * width;
    low + width / 2
}

impl LogHistogram {
    pub fn record(&mut self, value: u64) {
        let counts = self.counts.get_or_insert_with(|| Box::new([0; BUCKETS]));
        if let Some(slot) = counts.get_mut(bucket_of(value)) {
            *slot = slot.saturating_add(1);
        }
        self.total += 1;
        self.max = self.max.max(value);
    }

    pub fn count(&self) -> u64 {
        self.total
    }

    pub fn max(&self) -> Option<u64> {
        (self.total > 0).then_some(self.max)
    }

    /// The value at quantile `q` (0.0..=1.0), never above the largest gap.
    pub fn quantile(&self, q: f64) -> Option<u64> {
        let counts = self.counts.as_ref()?;
        if self.total == 0 {
            return None;
        }
        let rank = ((q.clamp(0.0, 1.0) * self.total as f64).ceil() as u64).max(1);
        let mut seen = 0u64;
        for (index, &c) in counts.iter().enumerate() {
            seen += u64::from(c);
            if seen >= rank {
                return Some(bucket_value(index).min(self.max));
            }
        }
        Some(self.max)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_monotonic_and_tight() {
        let mut last = 0;
        for v in (0..100_000u64).chain([1 << 31, u64::from(u32::MAX), u64::MAX]) {
            let b = bucket_of(v);
            assert!(b < BUCKETS, "{v} -> {b}");
            assert!(b >= last || v > u64::from(u32::MAX));
            last = b;
            if (16..u64::from(u32::MAX)).contains(&v) {
                let mid = bucket_value(b) as f64;
                assert!(
                    (mid - v as f64).abs() / v as f64 <= 1.0 / 16.0 + 1e-9,
                    "{v} ~ {mid}"
                );
            } else if v < 16 {
                assert_eq!(bucket_value(b), v);
            }
        }
    }

    #[test]
    fn quantiles_of_known_gaps() {
        let mut h = LogHistogram::default();
        assert_eq!(h.quantile(0.5), None);
        for _ in 0..98 {
            h.record(50_000);
        }
        h.record(400_000);
        h.record(1_000_000);
        let p50 = h.quantile(0.5).unwrap();
        assert!((p50 as f64 - 50_000.0).abs() <= 50_000.0 / 16.0, "{p50}");
        let p99 = h.quantile(0.99).unwrap();
        assert!((p99 as f64 - 400_000.0).abs() <= 400_000.0 / 16.0, "{p99}");
        assert_eq!(h.quantile(1.0), Some(1_000_000));
        assert_eq!(h.max(), Some(1_000_000));
        assert_eq!(h.count(), 100);
    }

    #[test]
    fn quantile_never_exceeds_max() {
        let mut h = LogHistogram::default();
        h.record(17);
        assert_eq!(h.quantile(0.5), Some(17));
    }
}
