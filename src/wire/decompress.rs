//! Incremental decoding of a copy of a `gzip` or `deflate` response body, so
//! a compressed stream is still summarized. The original bytes are what the
//! client gets; this only reads. Each chunk is inflated as it passes with a
//! streaming inflater (the 32 KiB window lives in its state), never by
//! re-inflating from byte 0.
//!
//! A few hundred KB of gzip can inflate to hundreds of MB, and every byte
//! decoded is work on Envoy's worker: the inflater gets a budget of decoded
//! bytes for the whole call, checked inside the inflate loop so one chunk
//! cannot overrun it either, and stops decoding once it is spent.

use miniz_oxide::inflate::stream::InflateState;
use miniz_oxide::{DataFormat, MZError, MZFlush, MZStatus};

/// Output buffer per call; decoded pieces are handed on as they come.
const OUT_BUFFER: usize = 16 * 1024;
/// Longest gzip header accepted (it may carry a file name and a comment).
const MAX_GZIP_HEADER: usize = 4096;

#[derive(Debug, PartialEq, Eq)]
pub struct DecodeError;

/// Where decoding stands after a chunk: not an error either way.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Progress {
    /// Everything given so far was decoded (or is held for the next chunk).
    Decoding,
    /// The budget of decoded bytes is spent: nothing more will be decoded,
    /// and further input is ignored at no cost.
    Capped,
}

/// How a response body is encoded, from `content-encoding`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Encoding {
    Identity,
    Gzip,
    Deflate,
    /// Something this filter does not decode (br, zstd, stacked codings).
    Other(String),
}

impl Encoding {
    pub fn from_header(value: Option<&str>) -> Encoding {
        let Some(value) = value.map(str::trim).filter(|v| !v.is_empty()) else {
            return Encoding::Identity;
        };
        match value.to_ascii_lowercase().as_str() {
            "identity" => Encoding::Identity,
            "gzip" | "x-gzip" => Encoding::Gzip,
            "deflate" => Encoding::Deflate,
            other => Encoding::Other(other.chars().take(64).collect()),
        }
    }
}

enum Stage {
    /// Collecting the gzip header (usually 10 bytes).
    GzipHeader(Vec<u8>),
    /// Deciding zlib vs raw deflate from the first two bytes: servers send both
    /// as "deflate".
    DeflateSniff(Vec<u8>),
    Body,
    Done,
    /// The budget was spent with input left.
    Capped,
}

pub struct Inflater {
    state: Box<InflateState>,
    stage: Stage,
    out: Vec<u8>,
    /// Decoded bytes this call may still produce.
    budget: usize,
}

impl std::fmt::Debug for Inflater {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Inflater")
    }
}

impl Inflater {
    /// An inflater for `gzip` or `deflate` that produces at most
    /// `max_decoded` bytes over the whole call; None for other encodings.
    pub fn new(encoding: &Encoding, max_decoded: usize) -> Option<Inflater> {
        let stage = match encoding {
            Encoding::Gzip => Stage::GzipHeader(Vec::new()),
            Encoding::Deflate => Stage::DeflateSniff(Vec::new()),
            Encoding::Identity | Encoding::Other(_) => return None,
        };
        Some(Inflater {
            state: InflateState::new_boxed(DataFormat::Raw),
            stage,
            out: vec![0; OUT_BUFFER],
            budget: max_decoded,
        })
    }

    /// True once the budget stopped decoding.
    pub fn capped(&self) -> bool {
        matches!(self.stage, Stage::Capped)
    }

    /// Inflates one chunk, handing decoded bytes to `sink` as they come,
    /// never more in all than the budget.
    pub fn feed(
        &mut self,
        chunk: &[u8],
        sink: &mut impl FnMut(&[u8]),
    ) -> Result<Progress, DecodeError> {
        let mut input = chunk;
        loop {
            match &mut self.stage {
                Stage::Done => return Ok(Progress::Decoding),
                Stage::Capped => return Ok(Progress::Capped),
                Stage::GzipHeader(header) => {
                    let before = header.len();
                    header.extend_from_slice(input);
                    match gzip_header_len(header)? {
                        None if header.len() > MAX_GZIP_HEADER => return Err(DecodeError),
                        None => return Ok(Progress::Decoding),
                        Some(len) => {
                            let used = len.saturating_sub(before);
                            input = input.get(used..).unwrap_or_default();
                            self.stage = Stage::Body;
                        }
                    }
                }
                Stage::DeflateSniff(head) => {
                    let before = head.len();
                    head.extend_from_slice(input);
                    let (Some(&cmf), Some(&flg)) = (head.first(), head.get(1)) else {
                        return Ok(Progress::Decoding);
                    };
                    let zlib = cmf & 0x0f == 8 && (u16::from(cmf) << 8 | u16::from(flg)) % 31 == 0;
                    let format = if zlib {
                        DataFormat::Zlib
                    } else {
                        DataFormat::Raw
                    };
                    self.state = InflateState::new_boxed(format);
                    // Replay what was held back, then the rest of this chunk.
                    let held = head.get(..before).unwrap_or_default().to_vec();
                    self.stage = Stage::Body;
                    if self.inflate(&held, sink)? == Progress::Capped {
                        return Ok(Progress::Capped);
                    }
                }
                Stage::Body => return self.inflate(input, sink),
            }
        }
    }

    fn inflate(
        &mut self,
        mut input: &[u8],
        sink: &mut impl FnMut(&[u8]),
    ) -> Result<Progress, DecodeError> {
        loop {
            // The output window never reaches past the budget, so one chunk
            // of a compression bomb stops where the whole call must.
            let room = self.budget.min(self.out.len());
            let Some(out) = self.out.get_mut(..room).filter(|out| !out.is_empty()) else {
                // Spent, with input (or pending output) left.
                self.stage = Stage::Capped;
                return Ok(Progress::Capped);
            };
            let result =
                miniz_oxide::inflate::stream::inflate(&mut self.state, input, out, MZFlush::None);
            let written = result.bytes_written.min(room);
            if let Some(decoded) = out.get(..written) {
                if !decoded.is_empty() {
                    sink(decoded);
                }
            }
            self.budget = self.budget.saturating_sub(written);
            input = input.get(result.bytes_consumed..).unwrap_or_default();
            match result.status {
                Ok(MZStatus::StreamEnd) => {
                    // Trailers (gzip CRC and size) and further members are ignored.
                    self.stage = Stage::Done;
                    return Ok(Progress::Decoding);
                }
                Ok(_) => {}
                // No progress possible until more input arrives.
                Err(MZError::Buf) => return Ok(Progress::Decoding),
                Err(_) => return Err(DecodeError),
            }
            // Output full: drain again. Otherwise the input is used up.
            if written < room && input.is_empty() {
                return Ok(Progress::Decoding);
            }
            if written == 0 && result.bytes_consumed == 0 {
                return Ok(Progress::Decoding);
            }
        }
    }
}

/// Length of a complete gzip header at the start of `bytes` (RFC 1952), None
/// while more bytes are needed.
fn gzip_header_len(bytes: &[u8]) -> Result<Option<usize>, DecodeError> {
    const FHCRC: u8 = 2;
    const FEXTRA: u8 = 4;
    const FNAME: u8 = 8;
    const FCOMMENT: u8 = 16;
    if bytes.len() < 10 {
        if bytes.first().is_some_and(|&b| b != 0x1f) || bytes.get(1).is_some_and(|&b| b != 0x8b) {
            return Err(DecodeError);
        }
        return Ok(None);
    }
    if bytes.get(..3) != Some(&[0x1f, 0x8b, 8][..]) {
        return Err(DecodeError);
    }
    let flags = bytes.get(3).copied().unwrap_or(0);
    let mut pos = 10;
    if flags & FEXTRA != 0 {
        let (Some(&lo), Some(&hi)) = (bytes.get(pos), bytes.get(pos + 1)) else {
            return Ok(None);
        };
        pos += 2 + usize::from(u16::from_le_bytes([lo, hi]));
    }
    for flag in [FNAME, FCOMMENT] {
        if flags & flag != 0 {
            match bytes
                .get(pos..)
                .and_then(|rest| rest.iter().position(|&b| b == 0))
            {
                Some(end) => pos += end + 1,
                None => return Ok(None),
            }
        }
    }
    if flags & FHCRC != 0 {
        pos += 2;
    }
    Ok((bytes.len() >= pos).then_some(pos))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use miniz_oxide::deflate::{compress_to_vec, compress_to_vec_zlib};

    /// A gzip member around raw deflate data (CRC left zero: not checked).
    pub(crate) fn gzip(data: &[u8]) -> Vec<u8> {
        let mut out = vec![0x1f, 0x8b, 8, 8, 0, 0, 0, 0, 0, 3];
        out.extend_from_slice(b"stream.txt\0");
        out.extend(compress_to_vec(data, 6));
        out.extend_from_slice(&[0; 4]);
        out.extend_from_slice(&(data.len() as u32).to_le_bytes());
        out
    }

    fn decode_in_chunks(encoding: Encoding, encoded: &[u8], chunk: usize) -> Vec<u8> {
        let mut inflater = Inflater::new(&encoding, usize::MAX).unwrap();
        let mut out = Vec::new();
        for piece in encoded.chunks(chunk.max(1)) {
            inflater
                .feed(piece, &mut |d| out.extend_from_slice(d))
                .unwrap();
        }
        out
    }

    fn sample() -> Vec<u8> {
        let mut s = Vec::new();
        for i in 0..3000 {
            s.extend_from_slice(
                format!("data: {{\"choices\":[{{\"delta\":{{\"content\":\"tok{i} \"}}}}]}}\n\n")
                    .as_bytes(),
            );
        }
        s
    }

    #[test]
    fn gzip_zlib_and_raw_deflate_in_any_chunking() {
        let data = sample();
        for (encoding, encoded) in [
            (Encoding::Gzip, gzip(&data)),
            (Encoding::Deflate, compress_to_vec_zlib(&data, 6)),
            (Encoding::Deflate, compress_to_vec(&data, 6)),
        ] {
            for chunk in [1, 2, 3, 7, 100, 4096, usize::MAX] {
                assert_eq!(
                    decode_in_chunks(encoding.clone(), &encoded, chunk.min(encoded.len())),
                    data,
                    "{encoding:?} {chunk}"
                );
            }
        }
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        let mut inflater = Inflater::new(&Encoding::Gzip, usize::MAX).unwrap();
        assert_eq!(
            inflater.feed(b"not gzip at all", &mut |_| {}),
            Err(DecodeError)
        );
        let mut inflater = Inflater::new(&Encoding::Deflate, usize::MAX).unwrap();
        let r = inflater.feed(&[0xff; 64], &mut |_| {});
        assert_eq!(r, Err(DecodeError));
    }

    #[test]
    fn encodings_from_header() {
        assert_eq!(Encoding::from_header(None), Encoding::Identity);
        assert_eq!(Encoding::from_header(Some(" GZIP ")), Encoding::Gzip);
        assert_eq!(
            Encoding::from_header(Some("br")),
            Encoding::Other("br".into())
        );
        assert!(Inflater::new(&Encoding::Other("zstd".into()), 1).is_none());
    }

    /// ~64 KB of gzip that inflates to 64 MiB: one `feed` of all of it stops
    /// at the budget instead of producing the 64 MiB.
    #[test]
    fn one_chunk_bomb_stops_at_the_budget() {
        let decoded = vec![0u8; 64 << 20];
        let bomb = gzip(&decoded);
        drop(decoded);
        assert!(bomb.len() < 96 * 1024, "{}", bomb.len());
        const BUDGET: usize = 1 << 20;
        let mut inflater = Inflater::new(&Encoding::Gzip, BUDGET).unwrap();
        let mut produced = 0;
        let first = inflater.feed(&bomb, &mut |d| produced += d.len());
        assert_eq!(first, Ok(Progress::Capped));
        assert!(produced <= BUDGET + OUT_BUFFER, "{produced}");
        assert!(produced >= BUDGET - OUT_BUFFER, "{produced}");
        assert!(inflater.capped());
        let second = inflater.feed(&bomb, &mut |d| produced += d.len());
        assert_eq!(second, Ok(Progress::Capped));
        assert!(produced <= BUDGET + OUT_BUFFER, "nothing after the cap");
    }

    #[test]
    fn the_budget_spans_chunks_and_a_body_within_it_is_whole() {
        let data = sample();
        let encoded = gzip(&data);
        // Within budget: all of it, never capped.
        let mut inflater = Inflater::new(&Encoding::Gzip, data.len() + 1).unwrap();
        let mut out = Vec::new();
        for piece in encoded.chunks(97) {
            let p = inflater.feed(piece, &mut |d| out.extend_from_slice(d));
            assert_eq!(p, Ok(Progress::Decoding));
        }
        assert_eq!(out, data);
        assert!(!inflater.capped());
        // Over budget in small chunks: exactly the budget's prefix, then capped.
        let budget = data.len() / 3;
        for (encoding, encoded) in [
            (Encoding::Gzip, encoded.clone()),
            (Encoding::Deflate, compress_to_vec_zlib(&data, 6)),
            (Encoding::Deflate, compress_to_vec(&data, 6)),
        ] {
            let mut inflater = Inflater::new(&encoding, budget).unwrap();
            let mut out = Vec::new();
            let mut last = Ok(Progress::Decoding);
            for piece in encoded.chunks(5) {
                last = inflater.feed(piece, &mut |d| out.extend_from_slice(d));
            }
            assert_eq!(last, Ok(Progress::Capped), "{encoding:?}");
            assert_eq!(out, data[..budget], "{encoding:?}");
        }
    }
}
