//! Incremental decoding of a copy of a `gzip` or `deflate` response body, so
//! a compressed stream is still summarized. The original bytes are what the
//! client gets; this only reads. Each chunk is inflated as it passes with a
//! streaming inflater (the 32 KiB window lives in its state), never by
//! re-inflating from byte 0.

use miniz_oxide::inflate::stream::InflateState;
use miniz_oxide::{DataFormat, MZError, MZFlush, MZStatus};

/// Output buffer per call; decoded pieces are handed on as they come.
const OUT_BUFFER: usize = 16 * 1024;
/// Longest gzip header accepted (it may carry a file name and a comment).
const MAX_GZIP_HEADER: usize = 4096;

#[derive(Debug, PartialEq, Eq)]
pub struct DecodeError;

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
}

pub struct Inflater {
    state: Box<InflateState>,
    stage: Stage,
    out: Vec<u8>,
}

impl std::fmt::Debug for Inflater {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Inflater")
    }
}

impl Inflater {
    /// An inflater for `gzip` or `deflate`; None for other encodings.
    pub fn new(encoding: &Encoding) -> Option<Inflater> {
        let stage = match encoding {
            Encoding::Gzip => Stage::GzipHeader(Vec::new()),
            Encoding::Deflate => Stage::DeflateSniff(Vec::new()),
            Encoding::Identity | Encoding::Other(_) => return None,
        };
        Some(Inflater {
            state: InflateState::new_boxed(DataFormat::Raw),
            stage,
            out: vec![0; OUT_BUFFER],
        })
    }

    /// Inflates one chunk, handing decoded bytes to `sink` as they come.
    pub fn feed(&mut self, chunk: &[u8], sink: &mut impl FnMut(&[u8])) -> Result<(), DecodeError> {
        let mut input = chunk;
        loop {
            match &mut self.stage {
                Stage::Done => return Ok(()),
                Stage::GzipHeader(header) => {
                    let before = header.len();
                    header.extend_from_slice(input);
                    match gzip_header_len(header)? {
                        None if header.len() > MAX_GZIP_HEADER => return Err(DecodeError),
                        None => return Ok(()),
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
                        return Ok(());
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
                    self.inflate(&held, sink)?;
                }
                Stage::Body => return self.inflate(input, sink),
            }
        }
    }

    fn inflate(
        &mut self,
        mut input: &[u8],
        sink: &mut impl FnMut(&[u8]),
    ) -> Result<(), DecodeError> {
        loop {
            let result = miniz_oxide::inflate::stream::inflate(
                &mut self.state,
                input,
                &mut self.out,
                MZFlush::None,
            );
            if let Some(decoded) = self.out.get(..result.bytes_written) {
                if !decoded.is_empty() {
                    sink(decoded);
                }
            }
            input = input.get(result.bytes_consumed..).unwrap_or_default();
            match result.status {
                Ok(MZStatus::StreamEnd) => {
                    // Trailers (gzip CRC and size) and further members are ignored.
                    self.stage = Stage::Done;
                    return Ok(());
                }
                Ok(_) => {}
                // No progress possible until more input arrives.
                Err(MZError::Buf) => return Ok(()),
                Err(_) => return Err(DecodeError),
            }
            // Output full: drain again. Otherwise the input is used up.
            if result.bytes_written < self.out.len() && input.is_empty() {
                return Ok(());
            }
            if result.bytes_written == 0 && result.bytes_consumed == 0 {
                return Ok(());
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
        let mut inflater = Inflater::new(&encoding).unwrap();
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
        let mut inflater = Inflater::new(&Encoding::Gzip).unwrap();
        assert_eq!(
            inflater.feed(b"not gzip at all", &mut |_| {}),
            Err(DecodeError)
        );
        let mut inflater = Inflater::new(&Encoding::Deflate).unwrap();
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
        assert!(Inflater::new(&Encoding::Other("zstd".into())).is_none());
    }
}
