//! Who a call is: its trace id, and whether it is sampled (both depend only
//! on the request's headers, so every filter and log line agrees on them),
//! and the id its summary carries.

/// A summary's id: the VM's random `prefix` (drawn once per VM, so VMs of
/// other workers, builds and processes do not collide) and the VM's count of
/// summaries. A collector de-duplicates on it: a retried batch repeats it.
pub fn summary_id(prefix: u64, seq: u64) -> String {
    format!("{prefix:016x}-{seq:x}")
}

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
    fn summary_ids_differ_by_prefix_and_count() {
        assert_eq!(summary_id(0xab, 0x1f), "00000000000000ab-1f");
        assert_ne!(summary_id(1, 2), summary_id(2, 1));
        assert_ne!(summary_id(1, 2), summary_id(1, 3));
    }

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
