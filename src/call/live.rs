//! The event streams in flight on one worker, as the root context's tick sees
//! them: which stalled since the last tick, which recovered.
//!
//! Each stream owns a [`Pulse`] of `Cell`s it writes after every body chunk;
//! the root reads them. No borrow is held across a callback, so neither side
//! can find the other's borrow (a `RefCell` borrowed twice would panic and
//! kill the VM). The list itself is only touched when a stream starts and at
//! the tick, and a refused borrow skips the work instead of panicking.

use crate::call::health::{StreamHealth, Thresholds};
use std::cell::{Cell, RefCell};
use std::rc::Rc;

/// One stream's progress, written by the stream, read by the tick.
#[derive(Debug, Default)]
pub struct Pulse {
    /// When the last delta arrived (µs); 0 before the first.
    last_progress_us: Cell<u64>,
    stalled: Cell<bool>,
    ended: Cell<bool>,
    /// `x-request-id`, for the log line of a stall.
    request_id: Option<String>,
}

impl Pulse {
    pub fn progress(&self, last_progress_us: Option<u64>) {
        if let Some(at) = last_progress_us {
            self.last_progress_us.set(at);
        }
    }

    /// The stream ended. Returns whether it was counted as stalled, and
    /// only the first time (None after), so a gauge moves once.
    pub fn end(&self) -> Option<bool> {
        if self.ended.replace(true) {
            return None;
        }
        Some(self.stalled.replace(false))
    }
}

/// What one tick found.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Scan {
    /// Streams that stalled since the last tick: request id, ms silent.
    pub newly_stalled: Vec<(Option<String>, u64)>,
    /// Streams counted as stalled that made progress again.
    pub recovered: u64,
}

#[derive(Debug, Default)]
pub struct LiveStreams {
    pulses: RefCell<Vec<Rc<Pulse>>>,
}

impl LiveStreams {
    /// A stream starts; None only if the list is borrowed (never, in one
    /// thread with no nesting), and then the stream is not watched.
    pub fn register(&self, request_id: Option<String>) -> Option<Rc<Pulse>> {
        let pulse = Rc::new(Pulse {
            request_id,
            ..Pulse::default()
        });
        self.pulses.try_borrow_mut().ok()?.push(Rc::clone(&pulse));
        Some(pulse)
    }

    /// Marks the streams silent for `stall_ms` after their first delta as
    /// stalled, and those that moved again as recovered; forgets ended ones.
    pub fn scan(&self, now_us: u64, limits: &Thresholds) -> Scan {
        let mut scan = Scan::default();
        let Ok(mut pulses) = self.pulses.try_borrow_mut() else {
            return scan;
        };
        pulses.retain(|p| !p.ended.get());
        for pulse in pulses.iter() {
            let last = pulse.last_progress_us.get();
            let stalled = last > 0 && StreamHealth::stalled_at(limits, last, now_us);
            match (pulse.stalled.get(), stalled) {
                (false, true) => {
                    let silent_ms = now_us.saturating_sub(last) / 1000;
                    scan.newly_stalled
                        .push((pulse.request_id.clone(), silent_ms));
                }
                (true, false) => scan.recovered += 1,
                _ => {}
            }
            pulse.stalled.set(stalled);
        }
        scan
    }

    pub fn len(&self) -> usize {
        self.pulses.try_borrow().map_or(0, |p| p.len())
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: u64 = 1_000_000;

    #[test]
    fn a_stream_stalls_once_recovers_and_ends_once() {
        let live = LiveStreams::default();
        let limits = Thresholds::default(); // stall_ms 2000
        let quiet = live.register(Some("slow".into())).unwrap();
        let busy = live.register(None).unwrap();
        let waiting = live.register(None).unwrap(); // no delta yet: slow, not stalled
        quiet.progress(Some(S));
        busy.progress(Some(S));
        busy.progress(None); // no delta in a chunk: unchanged
        assert_eq!(live.scan(2 * S, &limits), Scan::default());

        busy.progress(Some(3 * S));
        let scan = live.scan(3 * S + S / 10, &limits);
        assert_eq!(scan.newly_stalled, vec![(Some("slow".into()), 2100)]);
        // Logged once: still stalled at the next tick, not newly.
        assert_eq!(live.scan(3 * S + S / 5, &limits), Scan::default());

        quiet.progress(Some(4 * S));
        assert_eq!(live.scan(4 * S, &limits).recovered, 1);
        assert!(live.scan(7 * S, &limits).newly_stalled.len() == 2);
        assert_eq!(quiet.end(), Some(true), "it was counted as stalled");
        assert_eq!(quiet.end(), None, "a second end moves nothing");
        assert_eq!(busy.end(), Some(true));
        live.scan(8 * S, &limits);
        assert_eq!(live.len(), 1, "ended streams are forgotten");
        assert_eq!(waiting.end(), Some(false));
        live.scan(8 * S, &limits);
        assert!(live.is_empty());
    }
}
