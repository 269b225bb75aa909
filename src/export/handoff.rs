//! Summaries a root context still holds when Envoy stops it, handed to the
//! next root context of the same `vm_id`.
//!
//! A config push (same code: a new root in the same VM; a new build: a new
//! VM) retires the old root once its listener has drained. If the collector
//! is down then, the old queue would vanish with it. The shell puts what is
//! unsent into the host's shared queue (process-wide, one per `vm_id`, across
//! builds and workers) and every live root drains that queue on its tick.
//! Entries keep their export format: a JSON summary is not an OTLP record.

use crate::config::ExportFormat;

/// The host shared queue's name.
pub const QUEUE_NAME: &str = "streamtap.handoff";

/// An entry of the shared queue: a format byte, then the queued entry.
pub fn encode(format: ExportFormat, entry: &str) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(entry.len() + 1);
    bytes.push(tag(format));
    bytes.extend_from_slice(entry.as_bytes());
    bytes
}

/// The entry back, when it is of `format`; None when it is of another format
/// (or not an entry at all): the caller counts it as dropped.
pub fn decode(format: ExportFormat, bytes: Vec<u8>) -> Option<String> {
    let (&first, _) = bytes.split_first()?;
    if first != tag(format) {
        return None;
    }
    let mut bytes = bytes;
    bytes.remove(0);
    String::from_utf8(bytes).ok()
}

fn tag(format: ExportFormat) -> u8 {
    match format {
        ExportFormat::Json => b'j',
        ExportFormat::Otlp => b'o',
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_entry_comes_back_only_in_its_own_format() {
        let bytes = encode(ExportFormat::Json, r#"{"summary_id":"a-1"}"#);
        assert_eq!(
            decode(ExportFormat::Json, bytes.clone()).as_deref(),
            Some(r#"{"summary_id":"a-1"}"#)
        );
        assert_eq!(decode(ExportFormat::Otlp, bytes), None);
        assert_eq!(decode(ExportFormat::Json, Vec::new()), None);
        assert_eq!(decode(ExportFormat::Json, vec![b'j', 0xff]), None);
    }
}
