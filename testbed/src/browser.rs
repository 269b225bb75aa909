//! Headless Chromium, for the tests of the collector's pages: the DOM a real
//! browser renders (`--dump-dom`) and a screenshot for people to look at.
//!
//! The binary is `CHROMIUM_BIN` when set, else `chromium` in `PATH`, else
//! `/usr/bin/chromium` (Debian's package: `make chromium`). Each run gets a
//! fresh `--user-data-dir` of its own, removed afterwards, and is killed
//! after [`TIMEOUT`].

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How long one Chromium run may take.
pub const TIMEOUT: Duration = Duration::from_secs(60);

/// The Chromium binary; None when there is none.
pub fn chromium_bin() -> Option<PathBuf> {
    let bin = crate::daemon::find_bin("CHROMIUM_BIN", "chromium", "/usr/bin/chromium");
    // A set CHROMIUM_BIN is taken as it is: a wrong one fails loudly.
    (std::env::var_os("CHROMIUM_BIN").is_some_and(|b| !b.is_empty()) || bin.is_file())
        .then_some(bin)
}

/// The DOM Chromium renders from `url`, serialized (`--dump-dom`).
pub fn dump_dom(url: &str) -> Result<String, String> {
    let (stdout, _) = run(&["--dump-dom".to_string(), url.to_string()])?;
    if stdout.trim().is_empty() {
        return Err(format!("chromium printed no DOM for {url}"));
    }
    Ok(stdout)
}

/// A PNG screenshot of `url` (1280×1000) into `path`.
pub fn screenshot(url: &str, path: &Path) -> Result<(), String> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    }
    let _ = std::fs::remove_file(path);
    let (_, stderr) = run(&[
        format!("--screenshot={}", path.display()),
        "--window-size=1280,1000".to_string(),
        "--hide-scrollbars".to_string(),
        url.to_string(),
    ])?;
    if path.is_file() {
        Ok(())
    } else {
        Err(format!(
            "chromium wrote no screenshot at {}: {}",
            path.display(),
            tail(&stderr)
        ))
    }
}

/// Runs Chromium headless with `args`; its stdout and stderr.
fn run(args: &[String]) -> Result<(String, String), String> {
    let bin = chromium_bin()
        .ok_or("no chromium: set CHROMIUM_BIN or install it (make chromium)".to_string())?;
    let profile = TempDir::new()?;
    let child = Command::new(&bin)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--no-first-run",
            "--no-default-browser-check",
            "--disable-extensions",
            "--disable-background-networking",
            "--disable-sync",
            "--metrics-recording-only",
            "--mute-audio",
        ])
        .arg(format!("--user-data-dir={}", profile.0.display()))
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot run {}: {e}", bin.display()))?;
    wait_output(child, TIMEOUT).map_err(|e| format!("{}: {e}", bin.display()))
}

/// Waits for `child`, reading its output as it comes; kills it at `timeout`.
fn wait_output(mut child: Child, timeout: Duration) -> Result<(String, String), String> {
    let reader = |pipe: Option<Box<dyn Read + Send>>| {
        std::thread::spawn(move || {
            let mut bytes = Vec::new();
            if let Some(mut pipe) = pipe {
                let _ = pipe.read_to_end(&mut bytes);
            }
            String::from_utf8_lossy(&bytes).into_owned()
        })
    };
    let stdout = reader(
        child
            .stdout
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
    );
    let stderr = reader(
        child
            .stderr
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
    );
    let deadline = Instant::now() + timeout;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(20)),
            Ok(None) => {
                let _ = child.kill();
                let _ = child.wait();
                let err = stderr.join().unwrap_or_default();
                return Err(format!("timed out after {timeout:?}: {}", tail(&err)));
            }
            Err(e) => return Err(format!("wait: {e}")),
        }
    };
    let out = stdout.join().unwrap_or_default();
    let err = stderr.join().unwrap_or_default();
    if status.success() {
        Ok((out, err))
    } else {
        Err(format!("exited with {status}: {}", tail(&err)))
    }
}

fn tail(text: &str) -> &str {
    let mut start = text.len().saturating_sub(2000);
    while !text.is_char_boundary(start) {
        start += 1;
    }
    text.get(start..).unwrap_or_default()
}

/// A directory under the temp dir, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> Result<TempDir, String> {
        crate::scratch::make_dir("chromium").map(TempDir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::collector::Collector;
    use serde_json::json;

    /// The collector's pages in a real browser, from hand-written summaries
    /// (tests/call_viewer.rs does it with a real Envoy's). Needs Chromium
    /// (`make test` installs it): never skipped.
    #[test]
    fn chromium_renders_the_pages_escaped() {
        assert!(
            chromium_bin().is_some(),
            "no chromium: `make chromium` installs Debian's package"
        );
        let collector = Collector::start().unwrap();
        let summary = json!({
            "id": "req-<b>1</b>", "model": "<script>alert(1)</script>", "outcome": "completed",
            "content": "<script>document.title='pwned'</script>answer",
            "stream_health": {"verdict": "smooth"},
            "timeline": {"unit": "us", "deltas": 2, "compacted": false, "t": [100000, 50000],
                         "span": [0, 0], "n": [1, 1], "bytes": [3, 3], "chunk": [1, 1], "kind": "cc"},
        });
        let body = json!([summary]).to_string();
        let posted =
            crate::client::post(collector.addr, "/v1/calls", &[], body.as_bytes()).unwrap();
        assert_eq!(posted.status, 200);

        let list = dump_dom(&format!("http://{}/", collector.addr)).unwrap();
        assert!(list.contains("<tr class=\"call\""), "{list}");
        assert!(
            list.contains("&lt;script&gt;alert(1)&lt;/script&gt;"),
            "{list}"
        );
        assert!(!list.contains("<script"), "{list}");
        let call = dump_dom(&format!(
            "http://{}/calls/req-%3Cb%3E1%3C%2Fb%3E",
            collector.addr
        ))
        .unwrap();
        assert_eq!(call.matches("<circle ").count(), 2, "{call}");
        assert!(
            call.contains("<title>streamtap: call req-&lt;b&gt;1&lt;/b&gt;</title>"),
            "{call}"
        );
        assert!(!call.contains("<script"), "{call}");
    }
}
