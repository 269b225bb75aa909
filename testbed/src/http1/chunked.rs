//! Incremental `transfer-encoding: chunked` decoder: a byte-level state
//! machine with no line buffer, fed whatever each read brought.

/// Decodes a chunked body across any cuts of its bytes.
#[derive(Debug, Default)]
pub struct ChunkedDecoder {
    state: ChunkState,
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
enum ChunkState {
    /// Before the first hex digit of a chunk size.
    #[default]
    SizeStart,
    /// Reading the hex digits of a chunk size.
    Size {
        size: usize,
    },
    /// After the size: an extension or the `\r`, up to `\n`.
    SizeRest {
        size: usize,
    },
    Data {
        left: usize,
    },
    /// The CRLF after a chunk's data.
    DataEnd,
    /// After the last chunk: trailer lines up to an empty one.
    Trailer {
        empty: bool,
    },
    Done,
}

impl ChunkedDecoder {
    /// Appends the data in `input` to `out`; returns whether the body has
    /// ended and how many input bytes were used (all of them unless it ended).
    pub fn feed(&mut self, input: &[u8], out: &mut Vec<u8>) -> Result<(bool, usize), String> {
        let mut i = 0;
        while i < input.len() {
            let Some(&b) = input.get(i) else { break };
            match self.state {
                ChunkState::Done => return Ok((true, i)),
                ChunkState::Data { left } => {
                    let take = left.min(input.len() - i);
                    out.extend_from_slice(input.get(i..i + take).unwrap_or_default());
                    i += take;
                    self.state = if take == left {
                        ChunkState::DataEnd
                    } else {
                        ChunkState::Data { left: left - take }
                    };
                    continue;
                }
                ChunkState::SizeStart | ChunkState::Size { .. } => {
                    let size = match self.state {
                        ChunkState::Size { size } => size,
                        _ => 0,
                    };
                    if let Some(d) = (b as char).to_digit(16) {
                        let size = size
                            .checked_mul(16)
                            .and_then(|s| s.checked_add(d as usize))
                            .ok_or("chunk size overflows")?;
                        self.state = ChunkState::Size { size };
                    } else if self.state == ChunkState::SizeStart {
                        return Err(format!("bad chunk size byte {b:#04x}"));
                    } else if b == b'\n' {
                        self.state = Self::after_size(size);
                    } else {
                        self.state = ChunkState::SizeRest { size };
                    }
                }
                ChunkState::SizeRest { size } => {
                    if b == b'\n' {
                        self.state = Self::after_size(size);
                    }
                }
                ChunkState::DataEnd => match b {
                    b'\r' => {}
                    b'\n' => self.state = ChunkState::SizeStart,
                    _ => return Err("chunk data not followed by CRLF".to_string()),
                },
                ChunkState::Trailer { empty } => match b {
                    b'\r' => {}
                    b'\n' if empty => {
                        self.state = ChunkState::Done;
                        return Ok((true, i + 1));
                    }
                    b'\n' => self.state = ChunkState::Trailer { empty: true },
                    _ => self.state = ChunkState::Trailer { empty: false },
                },
            }
            i += 1;
        }
        Ok((self.state == ChunkState::Done, i))
    }

    fn after_size(size: usize) -> ChunkState {
        if size == 0 {
            ChunkState::Trailer { empty: true }
        } else {
            ChunkState::Data { left: size }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunked_decoder_handles_any_split_extensions_and_trailers() {
        let wire = b"5;name=value\r\nhello\r\n7\r\n, world\r\n0\r\nx-trailer: 1\r\n\r\n";
        for cut in 0..wire.len() {
            let mut decoder = ChunkedDecoder::default();
            let mut out = Vec::new();
            assert!(
                !decoder.feed(&wire[..cut], &mut out).unwrap().0,
                "cut {cut}"
            );
            assert!(decoder.feed(&wire[cut..], &mut out).unwrap().0, "cut {cut}");
            assert_eq!(out, b"hello, world", "cut {cut}");
        }
        let mut decoder = ChunkedDecoder::default();
        let mut out = Vec::new();
        let done: Vec<bool> = wire
            .iter()
            .map(|byte| {
                decoder
                    .feed(std::slice::from_ref(byte), &mut out)
                    .unwrap()
                    .0
            })
            .collect();
        assert_eq!(done.iter().filter(|&&d| d).count(), 1);
        assert_eq!(done.last(), Some(&true));
        assert!(ChunkedDecoder::default().feed(b"zz\r\n", &mut out).is_err());
        assert!(ChunkedDecoder::default()
            .feed(b"1\r\nab", &mut out)
            .is_err());
    }

    #[test]
    fn chunked_decoder_at_every_cut() {
        let wire = b"5;ext=1\r\nhello\r\n7\r\n, world\r\n0\r\nx-t: 1\r\n\r\n";
        for cut in 0..=wire.len() {
            let mut d = ChunkedDecoder::default();
            let mut out = Vec::new();
            let (done1, used1) = d.feed(&wire[..cut], &mut out).unwrap();
            assert_eq!(used1, cut, "cut {cut}");
            let (done2, used2) = d.feed(&wire[cut..], &mut out).unwrap();
            assert!(done1 || done2, "cut {cut}");
            assert_eq!(used1 + used2, wire.len(), "cut {cut}");
            assert_eq!(out, b"hello, world", "cut {cut}");
        }
        // Bytes after the end are not used.
        let mut d = ChunkedDecoder::default();
        let mut out = Vec::new();
        assert_eq!(d.feed(b"0\r\n\r\nextra", &mut out).unwrap(), (true, 5));
        assert!(ChunkedDecoder::default().feed(b"zz\r\n", &mut out).is_err());
        assert!(ChunkedDecoder::default()
            .feed(b"1\r\nabc", &mut out)
            .is_err());
    }
}
