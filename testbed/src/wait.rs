//! Waiting for a condition by polling it until a deadline.

use std::thread;
use std::time::{Duration, Instant};

/// How often [`eventually`] checks: often enough that a test waits little past
/// the moment its condition holds, rarely enough not to load the machine.
pub const POLL_EVERY: Duration = Duration::from_millis(20);

/// Calls `check` until it returns `Some`, at least once and for at most
/// `timeout`; `None` when the time ran out.
pub fn eventually<T>(timeout: Duration, mut check: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(found) = check() {
            return Some(found);
        }
        if Instant::now() >= deadline {
            return None;
        }
        thread::sleep(POLL_EVERY);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn eventually_returns_the_first_value_or_gives_up() {
        let mut calls = 0;
        let found = eventually(Duration::from_secs(5), || {
            calls += 1;
            (calls == 3).then_some(calls)
        });
        assert_eq!(found, Some(3));
        let t0 = Instant::now();
        assert_eq!(eventually(Duration::from_millis(50), || None::<()>), None);
        assert!(t0.elapsed() >= Duration::from_millis(50));
        // A zero timeout still checks once.
        assert_eq!(eventually(Duration::ZERO, || Some(1)), Some(1));
    }
}
