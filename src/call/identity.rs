//! Who a call is: its trace id, and whether it is sampled. Both depend only on
//! the request's headers, so every filter and log line agrees on them.

/// The trace id of a W3C `traceparent` (`00-<32 hex>-<16 hex>-<2 hex>`).
pub fn trace_id_of(traceparent: &str) -> Option<String> {
    let mut parts = traceparent.trim().split('-');
    let _version = parts.next()?;
    let trace_id = parts.next()?;
    (trace_id.len() == 32 && trace_id.bytes().all(|b| b.is_ascii_hexdigit()))
        .then(|| trace_id.to_ascii_lowercase())
}

/// Deterministic sampling by request id, so every filter and log agrees on a
/// call. FNV-1a: tiny and good enough to spread ids.
pub fn sampled(request_id: &[u8], rate: f64) -> bool {
    if rate >= 1.0 {
        return true;
    }
    if rate <= 0.0 {
        return false;
    }
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in request_id {
        hash ^= u64::from(b);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    (hash as f64 / u64::MAX as f64) < rate
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trace_id_and_sampling() {
        assert_eq!(trace_id_of("00-zz-b7ad6b7169203331-01"), None);
        assert!(sampled(b"x", 1.0));
        assert!(!sampled(b"x", 0.0));
        let kept = (0..10_000)
            .filter(|i| sampled(format!("req-{i}").as_bytes(), 0.25))
            .count();
        assert!((2_000..3_000).contains(&kept), "{kept}");
    }
}
