//! Chunks in, summary out: one call driven through [`CallTap`] the way the
//! shell drives it, for the unit tests, the property tests, the fuzz target
//! and the benches. Also the fixture folders of `tests/fixtures/`, each of
//! which declares the request path its API is served on in `request.path`.
//! Native only: never part of the `.wasm`.

use crate::call::tap::{CallTap, Finished, TapSettings};
use std::path::{Path, PathBuf};

/// Removes from a summary the fields that say how the body was cut into
/// chunks (in tests that feed every chunk at one time): the stream-health
/// chunk shape and the timeline's entries. Nothing
/// else in a summary may depend on the chunking.
pub fn remove_chunk_shape(summary: &mut serde_json::Value) {
    if let Some(health) = summary["stream_health"].as_object_mut() {
        for key in [
            "verdict",
            "largest_burst",
            "burst_share",
            "events_per_chunk_max",
            "events_per_chunk_p50",
        ] {
            health.remove(key);
        }
    }
    if let Some(timeline) = summary["timeline"].as_object_mut() {
        timeline.retain(|key, _| key == "deltas" || key == "unit");
    }
}

/// One call's request and response heads: everything but the response body.
#[derive(Debug, Clone)]
pub struct Exchange {
    pub path: String,
    pub request_id: Option<String>,
    pub traceparent: Option<String>,
    pub request_body: Option<Vec<u8>>,
    pub status: u16,
    pub content_type: String,
    pub content_encoding: Option<String>,
    pub settings: TapSettings,
    pub start_us: u64,
}

/// How the response ended: its end of stream, or only Envoy's log callback
/// with these `response.code_details` (a reset, a cancel).
#[derive(Debug, Clone, Copy)]
pub enum End<'a> {
    EndOfStream,
    Log(&'a str),
}

impl Exchange {
    /// A streamed call on `path` with content capture on and no request body.
    pub fn stream(path: &str) -> Exchange {
        Exchange {
            path: path.to_string(),
            request_id: Some("replay".to_string()),
            traceparent: None,
            request_body: None,
            status: 200,
            content_type: "text/event-stream".to_string(),
            content_encoding: None,
            settings: TapSettings {
                capture_response_content: true,
                capture_request_content: false,
                max_content_bytes: 65_536,
                max_decoded_bytes: crate::config::DEFAULT_MAX_DECODED_BYTES,
                health: crate::call::health::Thresholds::default(),
                timeline_entries: None,
            },
            start_us: 1_764_000_000_000_000,
        }
    }

    /// A tap that has seen the request and the response headers, ready for
    /// body chunks.
    pub fn tap(&self) -> CallTap {
        let mut tap = CallTap::new(self.settings, self.start_us);
        tap.on_request_headers(
            Some("POST".to_string()),
            Some(self.path.clone()),
            self.request_id.clone(),
            self.traceparent.as_deref(),
        );
        if let Some(body) = &self.request_body {
            tap.on_request_body(body);
        }
        tap.on_request_end();
        tap.on_response_headers(
            Some(self.status),
            Some(&self.content_type),
            self.content_encoding.as_deref(),
            self.start_us,
        );
        tap
    }

    /// The whole call: each chunk at its time, then the end at `end_us`.
    /// None only if the tap had already finished, which it never has here.
    pub fn replay<'c>(
        &self,
        chunks: impl IntoIterator<Item = (&'c [u8], u64)>,
        end: End<'_>,
        end_us: u64,
    ) -> Option<Finished> {
        let mut tap = self.tap();
        for (chunk, at_us) in chunks {
            tap.on_response_body(chunk, at_us);
        }
        end.finish(&mut tap, end_us)
    }
}

impl End<'_> {
    /// Ends `tap` the way the shell would; None once it has ended before.
    pub fn finish(self, tap: &mut CallTap, end_us: u64) -> Option<Finished> {
        match self {
            End::EndOfStream => tap.finish_at_end_of_stream(end_us),
            End::Log(details) => tap.finish_at_log(details, end_us),
        }
    }
}

/// A recorded response of `tests/fixtures/<api>/`: `NAME.sse` (an event
/// stream), `NAME.ndjson` (JSON lines), `NAME.eventstream` (AWS frames) or
/// `NAME.json`; `error-NNN.*` was answered with status NNN.
#[derive(Debug, Clone)]
pub struct Fixture {
    pub file: PathBuf,
    pub exchange: Exchange,
    pub body: Vec<u8>,
}

pub fn fixtures_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

/// The request path a fixture folder declares in its `request.path`.
pub fn declared_path(dir: &Path) -> Result<String, String> {
    let file = dir.join("request.path");
    let text = std::fs::read_to_string(&file).map_err(|e| format!("{}: {e}", file.display()))?;
    let path = text.trim();
    if !path.starts_with('/') {
        return Err(format!("{}: not a path: {path:?}", file.display()));
    }
    Ok(path.to_string())
}

/// Every fixture, in a stable order. The response file's siblings
/// The content type a fixture is served with, from its extension: `.sse`
/// an event stream, `.ndjson` newline-delimited JSON, `.eventstream` AWS
/// event-stream frames, `.json` a body.
pub fn fixture_content_type(name: &str) -> Option<&'static str> {
    if name.ends_with(".sse") {
        Some("text/event-stream")
    } else if name.ends_with(".ndjson") {
        Some("application/x-ndjson")
    } else if name.ends_with(".eventstream") {
        Some("application/vnd.amazon.eventstream")
    } else if name.ends_with(".json") {
        Some("application/json")
    } else {
        None
    }
}

/// `request.path` (required) and `request.json` (optional) describe the call.
pub fn fixtures() -> Result<Vec<Fixture>, String> {
    let root = fixtures_dir();
    let mut dirs = sorted_entries(&root)?;
    dirs.retain(|d| d.is_dir());
    let mut out = Vec::new();
    for dir in dirs {
        let path = declared_path(&dir)?;
        let request_body = std::fs::read(dir.join("request.json")).ok();
        for file in sorted_entries(&dir)? {
            let name = file
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            let Some(content_type) = fixture_content_type(&name) else {
                continue;
            };
            if name.starts_with("request.") || name.ends_with(".expected.json") {
                continue;
            }
            let status = name
                .strip_prefix("error-")
                .and_then(|s| s.split('.').next())
                .and_then(|s| s.parse().ok())
                .unwrap_or(200);
            let body = std::fs::read(&file).map_err(|e| format!("{}: {e}", file.display()))?;
            let exchange = Exchange {
                request_id: Some("fixture".to_string()),
                request_body: request_body.clone(),
                status,
                content_type: content_type.to_string(),
                ..Exchange::stream(&path)
            };
            out.push(Fixture {
                file,
                exchange,
                body,
            });
        }
    }
    Ok(out)
}

fn sorted_entries(dir: &Path) -> Result<Vec<PathBuf>, String> {
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| format!("{}: {e}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .collect();
    entries.sort();
    Ok(entries)
}
