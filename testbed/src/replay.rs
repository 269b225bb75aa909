//! The wire-format fixtures of `tests/fixtures/` (OpenAI Chat Completions,
//! Responses, Anthropic Messages; streamed and JSON) replayed byte for byte,
//! in chunks of a chosen size, optionally gzip-encoded, so every provider
//! format runs through the real Envoy: a [`ScriptedUpstream`] whose script for
//! each request is built from the fixture file the request names.
//!
//! Request headers: `x-fixture: anthropic/text.sse` (required),
//! `x-fixture-chunk: N` (bytes per write, default 64), `x-fixture-gzip: 1`,
//! `x-test-id` (to find what was sent). A fixture named `error-529.json` is
//! answered with status 529.

use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::http1::Request;
use crate::scripted::{Chunking, Script, ScriptedUpstream};

const DEFAULT_CHUNK_BYTES: usize = 64;
/// Pause between writes: separate reads at Envoy, so each piece is its own body chunk.
const WRITE_GAP: Duration = Duration::from_millis(1);

/// What was sent for one request.
#[derive(Clone, Debug)]
pub struct Replayed {
    pub status: u16,
    pub request_headers: Vec<(String, String)>,
    /// The body bytes written (after gzip, when asked).
    pub body: Vec<u8>,
}

/// A running fixture replay upstream on 127.0.0.1; it stops when dropped.
pub struct ReplayUpstream {
    pub addr: SocketAddr,
    scripted: ScriptedUpstream,
}

pub fn fixtures_dir() -> PathBuf {
    crate::envoy::workspace_root().join("tests/fixtures")
}

impl ReplayUpstream {
    pub fn start() -> io::Result<ReplayUpstream> {
        let scripted = ScriptedUpstream::start_with(|req| {
            let test_id = req.header("x-test-id").unwrap_or_default().to_string();
            Some((test_id, fixture_script(req)))
        })?;
        Ok(ReplayUpstream {
            addr: scripted.addr,
            scripted,
        })
    }

    /// What was sent for the request with `x-test-id: test_id`.
    pub fn wait_sent(&self, test_id: &str, timeout: Duration) -> Option<Replayed> {
        let served = self.scripted.wait_served(test_id, timeout)?;
        Some(Replayed {
            status: served.status,
            request_headers: served.request_headers,
            body: served.sent,
        })
    }
}

/// The script replaying the fixture `req` names, as its headers ask.
pub fn fixture_script(req: &Request) -> Script {
    let fixture = req.header("x-fixture").unwrap_or_default();
    let chunk = req
        .header("x-fixture-chunk")
        .and_then(|v| v.parse().ok())
        .unwrap_or(DEFAULT_CHUNK_BYTES)
        .max(1);
    let path = fixtures_dir().join(fixture);
    let script = match std::fs::read(&path) {
        Ok(bytes) if !fixture.contains("..") => Script {
            status: fixture_status(&path),
            // As `streamtap::replay::fixture_content_type`: the testbed does
            // not depend on the filter's crate (a bench build would then
            // build it twice, and its cdylib's unhashed name would collide).
            content_type: if fixture.ends_with(".sse") {
                "text/event-stream"
            } else if fixture.ends_with(".ndjson") {
                "application/x-ndjson"
            } else if fixture.ends_with(".eventstream") {
                "application/vnd.amazon.eventstream"
            } else {
                "application/json"
            }
            .to_string(),
            ..Script::sse(bytes)
        },
        _ => Script {
            status: 404,
            content_type: "text/plain".to_string(),
            ..Script::sse(format!("no fixture {fixture:?}\n"))
        },
    };
    let script = script.chunking(Chunking::Fixed(chunk)).gap(WRITE_GAP);
    if req.header("x-fixture-gzip") == Some("1") {
        Script {
            body: gzip(&script.body),
            ..script.header("content-encoding", "gzip")
        }
    } else {
        script
    }
}

/// `error-529.json` is answered with 529; every other fixture with 200.
fn fixture_status(path: &Path) -> u16 {
    path.file_stem()
        .and_then(|stem| stem.to_str()?.strip_prefix("error-")?.parse().ok())
        .unwrap_or(200)
}

/// A complete gzip member (RFC 1952) with its CRC-32 and size.
pub fn gzip(data: &[u8]) -> Vec<u8> {
    let mut out = vec![0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 255];
    out.extend(miniz_oxide::deflate::compress_to_vec(data, 6));
    out.extend_from_slice(&crc32(data).to_le_bytes());
    out.extend_from_slice(&(data.len() as u32).to_le_bytes());
    out
}

/// The data of a gzip body (RFC 1952): one or more members, each with its
/// header fields skipped and its CRC-32 and size checked.
pub fn gunzip(mut data: &[u8]) -> Result<Vec<u8>, String> {
    const FHCRC: u8 = 2;
    const FEXTRA: u8 = 4;
    const FNAME: u8 = 8;
    const FCOMMENT: u8 = 16;
    let mut out = Vec::new();
    while !data.is_empty() {
        let (&[id1, id2, method, flags], rest) = split(data, 4)? else {
            return Err("gzip: short header".into());
        };
        if (id1, id2, method) != (0x1f, 0x8b, 8) {
            return Err(format!(
                "gzip: not a deflate gzip member (bytes {id1:#x} {id2:#x} {method})"
            ));
        }
        // mtime (4), xfl (1), os (1)
        let (_, mut rest) = split(rest, 6)?;
        if flags & FEXTRA != 0 {
            let (len, r) = split(rest, 2)?;
            let len = usize::from(u16::from_le_bytes([len[0], len[1]]));
            rest = split(r, len)?.1;
        }
        for flag in [FNAME, FCOMMENT] {
            if flags & flag != 0 {
                let nul = rest
                    .iter()
                    .position(|&b| b == 0)
                    .ok_or("gzip: unterminated header string")?;
                rest = split(rest, nul + 1)?.1;
            }
        }
        if flags & FHCRC != 0 {
            rest = split(rest, 2)?.1;
        }
        let (inflated, used) = inflate_member(rest)?;
        let (trailer, r) = split(split(rest, used)?.1, 8)?;
        let crc = u32::from_le_bytes([trailer[0], trailer[1], trailer[2], trailer[3]]);
        let size = u32::from_le_bytes([trailer[4], trailer[5], trailer[6], trailer[7]]);
        if crc != crc32(&inflated) || size != inflated.len() as u32 {
            return Err("gzip: CRC-32 or size does not match the data".into());
        }
        out.extend_from_slice(&inflated);
        data = r;
    }
    Ok(out)
}

fn split(data: &[u8], at: usize) -> Result<(&[u8], &[u8]), String> {
    if data.len() < at {
        return Err("gzip: truncated".into());
    }
    Ok(data.split_at(at))
}

/// Inflates one raw deflate stream: the data and the input bytes it used.
fn inflate_member(input: &[u8]) -> Result<(Vec<u8>, usize), String> {
    use miniz_oxide::inflate::core::{decompress, inflate_flags, DecompressorOxide};
    use miniz_oxide::inflate::TINFLStatus;
    let mut state = DecompressorOxide::new();
    let mut out = vec![0u8; input.len().saturating_mul(4).max(4096)];
    let (mut in_pos, mut out_pos) = (0, 0);
    loop {
        // All the input is there: no TINFL_FLAG_HAS_MORE_INPUT.
        let flags = inflate_flags::TINFL_FLAG_USING_NON_WRAPPING_OUTPUT_BUF;
        let (status, used, written) = decompress(
            &mut state,
            input.get(in_pos..).unwrap_or_default(),
            &mut out,
            out_pos,
            flags,
        );
        in_pos += used;
        out_pos += written;
        match status {
            TINFLStatus::Done => {
                out.truncate(out_pos);
                return Ok((out, in_pos));
            }
            TINFLStatus::HasMoreOutput => out.resize(out.len() * 2, 0),
            other => return Err(format!("gzip: inflate failed: {other:?}")),
        }
    }
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
    fn gunzip_reads_what_gzip_wrote_and_named_members() {
        let data = b"data: hello\n\n".repeat(300);
        assert_eq!(gunzip(&gzip(&data)).unwrap(), data);
        // Two members, the second with FNAME set (as `gzip file` writes).
        let mut two = gzip(b"ab");
        let mut named = gzip(b"cd");
        named[3] = 8;
        named.splice(10..10, b"f.txt\0".iter().copied());
        two.extend(named);
        assert_eq!(gunzip(&two).unwrap(), b"abcd");
        let mut bad = gzip(&data);
        let n = bad.len();
        bad[n - 5] ^= 1;
        assert!(gunzip(&bad).is_err());
        assert!(gunzip(&gzip(&data)[..20]).is_err());
    }

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
