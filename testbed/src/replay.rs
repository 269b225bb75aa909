//! An upstream that replays the wire-format fixtures of `tests/fixtures/`
//! (OpenAI Chat Completions, Responses, Anthropic Messages; streamed and
//! JSON), byte for byte, in chunks of a chosen size, optionally gzip-encoded,
//! so every provider format runs through the real Envoy.
//!
//! Request headers: `x-fixture: anthropic/text.sse` (required),
//! `x-fixture-chunk: N` (bytes per write, default 64), `x-fixture-gzip: 1`,
//! `x-test-id` (to find what was sent). A fixture named `error-529.json` is
//! answered with status 529. Plain std threads: one per connection.

use std::collections::HashMap;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread;
use std::time::{Duration, Instant};

/// What was sent for one request.
#[derive(Clone, Debug)]
pub struct Replayed {
    pub status: u16,
    pub request_headers: Vec<(String, String)>,
    /// The body bytes written (after gzip, when asked).
    pub body: Vec<u8>,
}

#[derive(Default)]
struct Records {
    by_test_id: Mutex<HashMap<String, Replayed>>,
    changed: Condvar,
}

pub struct ReplayUpstream {
    pub addr: SocketAddr,
    records: Arc<Records>,
    stop: Arc<AtomicBool>,
}

pub fn fixtures_dir() -> PathBuf {
    crate::envoy::workspace_root().join("tests/fixtures")
}

impl ReplayUpstream {
    pub fn start() -> io::Result<ReplayUpstream> {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let addr = listener.local_addr()?;
        let records = Arc::new(Records::default());
        let stop = Arc::new(AtomicBool::new(false));
        let (records2, stop2) = (records.clone(), stop.clone());
        thread::spawn(move || {
            for stream in listener.incoming() {
                if stop2.load(Ordering::Relaxed) {
                    break;
                }
                let Ok(stream) = stream else { continue };
                let records = records2.clone();
                thread::spawn(move || {
                    let _ = serve(stream, &records);
                });
            }
        });
        Ok(ReplayUpstream {
            addr,
            records,
            stop,
        })
    }

    pub fn wait_sent(&self, test_id: &str, timeout: Duration) -> Option<Replayed> {
        let deadline = Instant::now() + timeout;
        let mut map = self.records.by_test_id.lock().ok()?;
        loop {
            if let Some(r) = map.get(test_id) {
                return Some(r.clone());
            }
            let left = deadline.checked_duration_since(Instant::now())?;
            map = self.records.changed.wait_timeout(map, left).ok()?.0;
        }
    }
}

impl Drop for ReplayUpstream {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        // Wake the accept loop so it sees the flag.
        let _ = TcpStream::connect(self.addr);
    }
}

fn serve(stream: TcpStream, records: &Records) -> io::Result<()> {
    stream.set_nodelay(true)?;
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut writer = stream;
    loop {
        let mut request_line = String::new();
        if reader.read_line(&mut request_line)? == 0 {
            return Ok(());
        }
        let mut headers = Vec::new();
        loop {
            let mut line = String::new();
            reader.read_line(&mut line)?;
            let line = line.trim_end();
            if line.is_empty() {
                break;
            }
            if let Some((k, v)) = line.split_once(':') {
                headers.push((k.trim().to_ascii_lowercase(), v.trim().to_string()));
            }
        }
        let header = |name: &str| {
            headers
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.clone())
        };
        let length: usize = header("content-length")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        let mut body = vec![0; length];
        reader.read_exact(&mut body)?;

        let fixture = header("x-fixture").unwrap_or_default();
        let chunk: usize = header("x-fixture-chunk")
            .and_then(|v| v.parse().ok())
            .unwrap_or(64)
            .max(1);
        let gzip_it = header("x-fixture-gzip").as_deref() == Some("1");
        let path = fixtures_dir().join(&fixture);
        let (status, content_type, mut payload) = match std::fs::read(&path) {
            Ok(bytes) if !fixture.contains("..") => {
                let stem = path
                    .file_stem()
                    .map(|s| s.to_string_lossy().to_string())
                    .unwrap_or_default();
                let status = stem
                    .strip_prefix("error-")
                    .and_then(|s| s.parse().ok())
                    .unwrap_or(200u16);
                let sse = fixture.ends_with(".sse");
                (
                    status,
                    if sse {
                        "text/event-stream"
                    } else {
                        "application/json"
                    },
                    bytes,
                )
            }
            _ => (
                404,
                "text/plain",
                format!("no fixture {fixture:?}\n").into_bytes(),
            ),
        };
        if gzip_it {
            payload = gzip(&payload);
        }
        let mut head = format!("HTTP/1.1 {status} Fixture\r\ncontent-type: {content_type}\r\ntransfer-encoding: chunked\r\n");
        if gzip_it {
            head.push_str("content-encoding: gzip\r\n");
        }
        head.push_str("\r\n");
        writer.write_all(head.as_bytes())?;
        writer.flush()?;
        for piece in payload.chunks(chunk) {
            writer.write_all(format!("{:x}\r\n", piece.len()).as_bytes())?;
            writer.write_all(piece)?;
            writer.write_all(b"\r\n")?;
            writer.flush()?;
            // Separate reads at Envoy: each piece is its own body chunk.
            thread::sleep(Duration::from_millis(1));
        }
        writer.write_all(b"0\r\n\r\n")?;
        writer.flush()?;
        if let Some(test_id) = header("x-test-id") {
            if let Ok(mut map) = records.by_test_id.lock() {
                map.insert(
                    test_id,
                    Replayed {
                        status,
                        request_headers: headers.clone(),
                        body: payload,
                    },
                );
                records.changed.notify_all();
            }
        }
        if header("connection").is_some_and(|v| v.eq_ignore_ascii_case("close")) {
            let _ = writer.shutdown(Shutdown::Both);
            return Ok(());
        }
    }
}

/// A complete gzip member (RFC 1952) with its CRC-32 and size.
pub fn gzip(data: &[u8]) -> Vec<u8> {
    let mut out = vec![0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 255];
    out.extend(miniz_oxide::deflate::compress_to_vec(data, 6));
    out.extend_from_slice(&crc32(data).to_le_bytes());
    out.extend_from_slice(&(data.len() as u32).to_le_bytes());
    out
}

fn crc32(data: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &byte in data {
        crc ^= u32::from(byte);
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc32_of_known_input() {
        assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
    }

    #[test]
    fn replays_a_fixture_in_chunks_and_gzip() {
        let upstream = ReplayUpstream::start().unwrap();
        let fixture = "anthropic/text.sse";
        let original = std::fs::read(fixtures_dir().join(fixture)).unwrap();
        let got = crate::client::post(
            upstream.addr,
            "/v1/messages",
            &[
                ("x-fixture", fixture),
                ("x-fixture-chunk", "50"),
                ("x-test-id", "a"),
            ],
            b"{}",
        )
        .unwrap();
        assert_eq!(got.body, original);
        assert!(
            got.frames.len() > 5,
            "written in pieces: {} reads",
            got.frames.len()
        );
        assert_eq!(
            upstream
                .wait_sent("a", Duration::from_secs(2))
                .unwrap()
                .body,
            original
        );

        let got = crate::client::post(
            upstream.addr,
            "/v1/messages",
            &[("x-fixture", fixture), ("x-fixture-gzip", "1")],
            b"{}",
        )
        .unwrap();
        assert_eq!(got.header("content-encoding"), Some("gzip"));
        let inflated =
            miniz_oxide::inflate::decompress_to_vec(&got.body[10..got.body.len() - 8]).unwrap();
        assert_eq!(inflated, original);

        let got = crate::client::post(
            upstream.addr,
            "/",
            &[("x-fixture", "anthropic/error-529.json")],
            b"{}",
        )
        .unwrap();
        assert_eq!(got.status, 529);
    }
}
