//! Incremental newline-delimited JSON framing (`application/x-ndjson`, as
//! Ollama streams): one document a line, fed body chunks exactly as they
//! pass.
//!
//! Chunks may split a line or a `\r\n` anywhere; only an unfinished line is
//! carried over, and it is capped: a longer line is counted as oversized and
//! skipped to its end, never held. Blank lines are ignored. The lines are
//! handed on as bytes: the JSON reader checks them.

/// The media types of newline-delimited JSON (lowercase).
pub const MEDIA_TYPES: [&str; 2] = ["application/x-ndjson", "application/ndjson"];

/// One line: its bytes without the line break, or `oversized` (then empty)
/// when it outgrew the cap.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Line<'a> {
    pub data: &'a [u8],
    pub oversized: bool,
}

#[derive(Debug)]
pub struct LineDecoder {
    /// Bytes of a line not yet ended.
    partial: Vec<u8>,
    /// The current line passed the cap: its bytes are dropped to its end.
    oversized: bool,
    max_line_bytes: usize,
}

impl LineDecoder {
    pub fn new(max_line_bytes: usize) -> Self {
        LineDecoder {
            partial: Vec::new(),
            oversized: false,
            max_line_bytes,
        }
    }

    /// Decodes one chunk, calling `on_line` for every line it completes.
    pub fn feed(&mut self, chunk: &[u8], on_line: &mut impl FnMut(Line<'_>)) {
        let mut rest = chunk;
        while let Some(pos) = memchr::memchr(b'\n', rest) {
            let (line, tail) = rest.split_at(pos);
            if self.partial.is_empty() && !self.oversized {
                self.emit(line, on_line);
            } else {
                self.hold(line);
                let whole = std::mem::take(&mut self.partial);
                self.emit(&whole, on_line);
                // Keep the allocation for the next split line.
                self.partial = whole;
                self.partial.clear();
            }
            rest = tail.get(1..).unwrap_or_default();
        }
        self.hold(rest);
    }

    /// The stream ended: a last line without its line break counts.
    pub fn finish(&mut self, on_line: &mut impl FnMut(Line<'_>)) {
        if !self.partial.is_empty() || self.oversized {
            let whole = std::mem::take(&mut self.partial);
            self.emit(&whole, on_line);
        }
    }

    fn hold(&mut self, bytes: &[u8]) {
        if self.oversized {
            return;
        }
        if self.partial.len().saturating_add(bytes.len()) > self.max_line_bytes {
            self.oversized = true;
            self.partial.clear();
        } else {
            self.partial.extend_from_slice(bytes);
        }
    }

    fn emit(&mut self, line: &[u8], on_line: &mut impl FnMut(Line<'_>)) {
        if std::mem::take(&mut self.oversized) || line.len() > self.max_line_bytes {
            return on_line(Line {
                data: &[],
                oversized: true,
            });
        }
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.iter().all(u8::is_ascii_whitespace) {
            return;
        }
        on_line(Line {
            data: line,
            oversized: false,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(decoder: &mut LineDecoder, chunks: &[&[u8]]) -> Vec<(String, bool)> {
        let mut out = Vec::new();
        let mut take =
            |l: Line<'_>| out.push((String::from_utf8_lossy(l.data).into_owned(), l.oversized));
        for chunk in chunks {
            decoder.feed(chunk, &mut take);
        }
        decoder.finish(&mut take);
        out
    }

    const STREAM: &[u8] = b"{\"a\":1}\n{\"b\":\"x\\ny\"}\r\n\n  \n{\"c\":3}";

    #[test]
    fn lines_whole_and_split_at_every_byte() {
        let want = vec![
            ("{\"a\":1}".to_string(), false),
            ("{\"b\":\"x\\ny\"}".to_string(), false),
            ("{\"c\":3}".to_string(), false),
        ];
        assert_eq!(lines(&mut LineDecoder::new(64), &[STREAM]), want);
        for at in 0..=STREAM.len() {
            let (a, b) = STREAM.split_at(at);
            assert_eq!(
                lines(&mut LineDecoder::new(64), &[a, b]),
                want,
                "split at {at}"
            );
        }
        let bytes: Vec<&[u8]> = STREAM.chunks(1).collect();
        assert_eq!(lines(&mut LineDecoder::new(64), &bytes), want);
    }

    #[test]
    fn an_oversized_line_is_counted_and_skipped_never_held() {
        let long = format!("{{\"x\":\"{}\"}}", "y".repeat(100));
        let stream = format!("{{\"a\":1}}\n{long}\n{{\"b\":2}}\n{long}");
        let want = vec![
            ("{\"a\":1}".to_string(), false),
            (String::new(), true),
            ("{\"b\":2}".to_string(), false),
            (String::new(), true),
        ];
        for size in [1, 7, 64, stream.len()] {
            let chunks: Vec<&[u8]> = stream.as_bytes().chunks(size).collect();
            let mut d = LineDecoder::new(32);
            let mut seen = Vec::new();
            for chunk in &chunks {
                d.feed(chunk, &mut |l| {
                    seen.push((String::from_utf8_lossy(l.data).into_owned(), l.oversized))
                });
                assert!(d.partial.len() <= 32);
            }
            d.finish(&mut |l| {
                seen.push((String::from_utf8_lossy(l.data).into_owned(), l.oversized))
            });
            assert_eq!(seen, want, "chunks of {size}");
        }
    }
}
