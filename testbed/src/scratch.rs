//! Scratch directories of the processes the test bed launches (Envoy, nginx,
//! Chromium): unique under the temp dir, removed when the process is done
//! unless `STREAMTAP_KEEP_TMP` is set.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

static COUNTER: AtomicU64 = AtomicU64::new(0);

/// True when `STREAMTAP_KEEP_TMP` asks to keep scratch directories.
pub fn keep_requested() -> bool {
    std::env::var_os("STREAMTAP_KEEP_TMP").is_some()
}

/// A fresh `streamtap-<kind>-<pid>-<n>-<nanos>` under the temp dir.
pub fn make_dir(kind: &str) -> Result<PathBuf, String> {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!(
        "streamtap-{kind}-{}-{n}-{nanos}",
        std::process::id()
    ));
    fs::create_dir_all(std::env::temp_dir())
        .and_then(|_| fs::create_dir(&dir))
        .map_err(|e| format!("cannot create temp dir {}: {e}", dir.display()))?;
    Ok(dir)
}

/// Removes `dir`, or says it was kept when `STREAMTAP_KEEP_TMP` is set.
pub fn remove_dir(dir: &Path, what: &str) {
    if keep_requested() {
        eprintln!("STREAMTAP_KEEP_TMP: kept {what} dir {}", dir.display());
    } else {
        let _ = fs::remove_dir_all(dir);
    }
}
