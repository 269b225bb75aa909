//! Incremental decoder of AWS's event stream framing
//! (`application/vnd.amazon.eventstream`, Amazon Bedrock's streams), fed
//! body chunks exactly as they pass.
//!
//! A frame is a prelude (total length, headers length, the prelude's CRC32,
//! all big-endian u32), the headers (name, type, value), the payload and the
//! CRC32 of everything before it. Frames split anywhere across chunks; only
//! the frame being read is held, up to a cap: a longer one is skipped to its
//! end unread and counted. A frame whose message CRC fails is counted and
//! skipped; a prelude whose CRC fails means the lengths cannot be trusted,
//! so the rest of the stream is left unread (counted once). Of the headers,
//! `:message-type`, `:event-type` and `:exception-type` are kept.

/// Prelude, and the CRC at the end of a frame.
const PRELUDE: usize = 12;
const TRAILER: usize = 4;

/// CRC-32 (IEEE 802.3, as zlib's), one 1 KiB table built at compile time.
// Evaluated by the compiler: an index out of bounds would fail the build.
#[allow(clippy::indexing_slicing)]
const CRC_TABLE: [u32; 256] = {
    let mut table = [0u32; 256];
    let mut i = 0;
    while i < 256 {
        let mut c = i as u32;
        let mut k = 0;
        while k < 8 {
            c = if c & 1 != 0 {
                0xEDB8_8320 ^ (c >> 1)
            } else {
                c >> 1
            };
            k += 1;
        }
        table[i] = c;
        i += 1;
    }
    table
};

pub fn crc32(bytes: &[u8]) -> u32 {
    !bytes.iter().fold(!0u32, |c, &b| {
        // A u8 index into 256 entries: never out of bounds.
        CRC_TABLE
            .get(usize::from((c as u8) ^ b))
            .copied()
            .unwrap_or(0)
            ^ (c >> 8)
    })
}

/// One frame as handed on. `bad`: it could not be read (a CRC that fails,
/// headers that do not parse, a frame past the cap); the rest is then empty.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Frame<'a> {
    /// `:event-type` (`contentBlockDelta`, `chunk`...), or for an exception
    /// frame its `:exception-type`.
    pub event_type: &'a [u8],
    /// `:message-type` is `exception` (or `error`).
    pub exception: bool,
    pub payload: &'a [u8],
    pub bad: bool,
}

#[derive(Debug)]
pub struct FrameDecoder {
    /// Bytes of the frame being read (its prelude first).
    held: Vec<u8>,
    /// Bytes still to skip of a frame past the cap.
    skipping: usize,
    /// A prelude failed its CRC: nothing more is read.
    lost: bool,
    max_frame_bytes: usize,
}

impl FrameDecoder {
    pub fn new(max_frame_bytes: usize) -> Self {
        FrameDecoder {
            held: Vec::new(),
            skipping: 0,
            lost: false,
            max_frame_bytes,
        }
    }

    /// Decodes one chunk, calling `on_frame` for every frame it completes.
    pub fn feed(&mut self, chunk: &[u8], on_frame: &mut impl FnMut(Frame<'_>)) {
        let mut rest = chunk;
        while !rest.is_empty() && !self.lost {
            if self.skipping > 0 {
                let n = self.skipping.min(rest.len());
                self.skipping -= n;
                rest = rest.get(n..).unwrap_or_default();
                continue;
            }
            // Complete the prelude first: it says how long the frame is.
            if self.held.len() < PRELUDE {
                let n = (PRELUDE - self.held.len()).min(rest.len());
                self.held
                    .extend_from_slice(rest.get(..n).unwrap_or_default());
                rest = rest.get(n..).unwrap_or_default();
                if self.held.len() < PRELUDE {
                    return;
                }
                let Some(total) = self.check_prelude() else {
                    self.lost = true;
                    self.held.clear();
                    return on_frame(Frame {
                        bad: true,
                        ..Frame::default()
                    });
                };
                if total > self.max_frame_bytes {
                    self.held.clear();
                    self.skipping = total - PRELUDE;
                    on_frame(Frame {
                        bad: true,
                        ..Frame::default()
                    });
                    continue;
                }
            }
            let total = self.total().unwrap_or(PRELUDE);
            let n = total.saturating_sub(self.held.len()).min(rest.len());
            self.held
                .extend_from_slice(rest.get(..n).unwrap_or_default());
            rest = rest.get(n..).unwrap_or_default();
            if self.held.len() == total {
                let frame = std::mem::take(&mut self.held);
                on_frame(read_frame(&frame).unwrap_or(Frame {
                    bad: true,
                    ..Frame::default()
                }));
                self.held = frame;
                self.held.clear();
            }
        }
    }

    /// The stream ended: a frame cut short is counted, not read.
    pub fn finish(&mut self, on_frame: &mut impl FnMut(Frame<'_>)) {
        if !self.held.is_empty() || self.skipping > 0 {
            self.held.clear();
            self.skipping = 0;
            on_frame(Frame {
                bad: true,
                ..Frame::default()
            });
        }
    }

    fn total(&self) -> Option<usize> {
        let bytes: [u8; 4] = self.held.get(..4)?.try_into().ok()?;
        usize::try_from(u32::from_be_bytes(bytes)).ok()
    }

    /// The frame's total length, when the prelude's CRC holds and the
    /// lengths are possible.
    fn check_prelude(&self) -> Option<usize> {
        let total = self.total()?;
        let headers =
            usize::try_from(u32::from_be_bytes(self.held.get(4..8)?.try_into().ok()?)).ok()?;
        let crc = u32::from_be_bytes(self.held.get(8..12)?.try_into().ok()?);
        let fits = PRELUDE + headers + TRAILER <= total;
        (crc == crc32(self.held.get(..8)?) && fits).then_some(total)
    }
}

/// A whole frame (its prelude checked): the message CRC, then the headers.
fn read_frame(frame: &[u8]) -> Option<Frame<'_>> {
    let (body, crc) = frame.split_at(frame.len().checked_sub(TRAILER)?);
    if u32::from_be_bytes(crc.try_into().ok()?) != crc32(body) {
        return None;
    }
    let headers_len =
        usize::try_from(u32::from_be_bytes(frame.get(4..8)?.try_into().ok()?)).ok()?;
    let headers = body.get(PRELUDE..PRELUDE + headers_len)?;
    let payload = body.get(PRELUDE + headers_len..)?;
    let mut out = Frame {
        payload,
        ..Frame::default()
    };
    let mut event_type: &[u8] = &[];
    let mut exception_type: &[u8] = &[];
    let mut at = 0;
    while at < headers.len() {
        let name_len = usize::from(*headers.get(at)?);
        let name = headers.get(at + 1..at + 1 + name_len)?;
        at += 1 + name_len;
        let kind = *headers.get(at)?;
        at += 1;
        let value_len = match kind {
            0 | 1 => 0,
            2 => 1,
            3 => 2,
            4 => 4,
            5 | 8 => 8,
            9 => 16,
            // Byte array and string: a u16 length first.
            6 | 7 => {
                let len = u16::from_be_bytes(headers.get(at..at + 2)?.try_into().ok()?);
                at += 2;
                usize::from(len)
            }
            _ => return None,
        };
        let value = headers.get(at..at + value_len)?;
        at += value_len;
        match name {
            b":event-type" => event_type = value,
            b":exception-type" => exception_type = value,
            b":message-type" => out.exception = value != b"event",
            _ => {}
        }
    }
    out.event_type = if out.exception {
        exception_type
    } else {
        event_type
    };
    Some(out)
}

/// One frame's bytes, for tests and fixtures: string headers only.
pub fn encode_frame(headers: &[(&str, &str)], payload: &[u8]) -> Vec<u8> {
    let mut h = Vec::new();
    for (name, value) in headers {
        h.push(name.len() as u8);
        h.extend_from_slice(name.as_bytes());
        h.push(7);
        h.extend_from_slice(&(value.len() as u16).to_be_bytes());
        h.extend_from_slice(value.as_bytes());
    }
    let total = PRELUDE + h.len() + payload.len() + TRAILER;
    let mut f = Vec::with_capacity(total);
    f.extend_from_slice(&(total as u32).to_be_bytes());
    f.extend_from_slice(&(h.len() as u32).to_be_bytes());
    let prelude_crc = crc32(&f);
    f.extend_from_slice(&prelude_crc.to_be_bytes());
    f.extend_from_slice(&h);
    f.extend_from_slice(payload);
    let crc = crc32(&f);
    f.extend_from_slice(&crc.to_be_bytes());
    f
}

#[cfg(test)]
mod tests {
    use super::*;

    type Seen = Vec<(String, bool, String, bool)>;

    fn frames(max: usize, chunks: &[&[u8]]) -> Seen {
        let mut d = FrameDecoder::new(max);
        let mut out = Vec::new();
        let mut take = |f: Frame<'_>| {
            out.push((
                String::from_utf8_lossy(f.event_type).into_owned(),
                f.exception,
                String::from_utf8_lossy(f.payload).into_owned(),
                f.bad,
            ))
        };
        for chunk in chunks {
            d.feed(chunk, &mut take);
        }
        d.finish(&mut take);
        out
    }

    fn event(kind: &str, payload: &str) -> Vec<u8> {
        encode_frame(
            &[
                (":event-type", kind),
                (":content-type", "application/json"),
                (":message-type", "event"),
            ],
            payload.as_bytes(),
        )
    }

    #[test]
    fn crc32_is_zlibs() {
        assert_eq!(crc32(b""), 0);
        assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
    }

    #[test]
    fn frames_whole_and_split_at_every_byte() {
        let mut stream = event("messageStart", r#"{"role":"assistant"}"#);
        stream.extend(event(
            "contentBlockDelta",
            r#"{"contentBlockIndex":0,"delta":{"text":"Hi"}}"#,
        ));
        stream.extend(encode_frame(
            &[
                (":exception-type", "throttlingException"),
                (":message-type", "exception"),
            ],
            br#"{"message":"Too many requests"}"#,
        ));
        let want: Seen = vec![
            (
                "messageStart".into(),
                false,
                r#"{"role":"assistant"}"#.into(),
                false,
            ),
            (
                "contentBlockDelta".into(),
                false,
                r#"{"contentBlockIndex":0,"delta":{"text":"Hi"}}"#.into(),
                false,
            ),
            (
                "throttlingException".into(),
                true,
                r#"{"message":"Too many requests"}"#.into(),
                false,
            ),
        ];
        assert_eq!(frames(1 << 20, &[&stream]), want);
        for at in 0..=stream.len() {
            let (a, b) = stream.split_at(at);
            assert_eq!(frames(1 << 20, &[a, b]), want, "split at {at}");
        }
        let bytes: Vec<&[u8]> = stream.chunks(1).collect();
        assert_eq!(frames(1 << 20, &bytes), want);
    }

    #[test]
    fn a_bad_message_crc_is_counted_and_the_next_frame_read() {
        let mut bad = event("chunk", r#"{"bytes":"aGk="}"#);
        let last = bad.len() - 1;
        bad[last] ^= 1;
        let mut stream = bad;
        stream.extend(event("messageStop", r#"{"stopReason":"end_turn"}"#));
        let got = frames(1 << 20, &[&stream]);
        assert_eq!(got.len(), 2);
        assert!(got[0].3);
        assert_eq!(got[1].0, "messageStop");
    }

    #[test]
    fn a_bad_prelude_stops_reading_and_a_big_frame_is_skipped() {
        let mut stream = event("a", "{}");
        stream[9] ^= 1;
        stream.extend(event("b", "{}"));
        let got = frames(1 << 20, &[&stream]);
        assert_eq!(got.len(), 1);
        assert!(got[0].3);
        let mut stream = event("big", &format!(r#"{{"t":"{}"}}"#, "x".repeat(200)));
        stream.extend(event("small", "{}"));
        let got = frames(160, &[&stream]);
        assert_eq!(
            (got[0].3, got[1].0.as_str(), got[1].3),
            (true, "small", false)
        );
        // A frame cut by the end of the stream.
        let cut = event("c", "{}");
        assert!(frames(1 << 20, &[&cut[..cut.len() - 3]])[0].3);
    }
}
