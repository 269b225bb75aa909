//! Send-time stamps (`x-mock-stamp: 1`): a fixed-width placeholder in every
//! JSON chunk, overwritten with the wall clock just before the write that
//! carries it, so a load generator can measure each event's delay.

use std::time::{SystemTime, UNIX_EPOCH};

use super::writes::PlannedWrite;

/// The JSON key of the send-time stamp (`x-mock-stamp: 1`).
pub const STAMP_KEY: &str = "x_sent_unix_us";
/// Digits of a stamp: Unix microseconds have 16 digits from 2001 to 2286, so a
/// stamp never changes an event's length.
pub const STAMP_DIGITS: usize = 16;
/// Rendered in place of the stamp, overwritten just before the write.
pub(super) const STAMP_PLACEHOLDER: u64 = 1_000_000_000_000_000;

/// The wall clock in Unix microseconds.
pub fn unix_micros() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// A stamp's digits: exactly [`STAMP_DIGITS`], so the event keeps its length.
pub(super) fn stamp_digits(unix_us: u64) -> [u8; STAMP_DIGITS] {
    let mut digits = [b'0'; STAMP_DIGITS];
    let mut v = unix_us.min(10u64.pow(STAMP_DIGITS as u32) - 1);
    for d in digits.iter_mut().rev() {
        *d = b'0' + (v % 10) as u8;
        v /= 10;
    }
    digits
}

/// Where the placeholder digits are in a rendered event.
pub(super) fn find_stamp_placeholder(bytes: &[u8]) -> Option<usize> {
    let needle = format!("\"{STAMP_KEY}\":{STAMP_PLACEHOLDER}");
    let at = bytes
        .windows(needle.len())
        .rposition(|w| w == needle.as_bytes())?;
    Some(at + needle.len() - STAMP_DIGITS)
}

/// Some (usually all) of one event's stamp digits, inside one write.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(super) struct StampPart {
    /// Offset in the write's bytes.
    pub(super) at: usize,
    /// The event whose stamp this is: every part of it gets the same value.
    pub(super) event: usize,
    /// Which of the stamp's digits: `digits.0..digits.1`.
    pub(super) digits: (usize, usize),
}

impl PlannedWrite {
    /// Writes the stamps of this write; an event's stamp value is taken at the
    /// first write that carries any of its digits.
    pub(super) fn fill_stamps(&mut self, values: &mut [Option<u64>], now_us: u64) {
        for part in &self.stamps {
            let Some(value) = values.get_mut(part.event) else {
                continue;
            };
            let digits = stamp_digits(*value.get_or_insert(now_us));
            let (d0, d1) = part.digits;
            if let (Some(dst), Some(src)) = (
                self.bytes.get_mut(part.at..part.at + (d1 - d0)),
                digits.get(d0..d1),
            ) {
                dst.copy_from_slice(src);
            }
        }
    }
}
