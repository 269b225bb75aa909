//! Incremental Server-Sent Events decoder (WHATWG HTML, "event stream
//! interpretation"), fed body chunks exactly as they pass.
//!
//! Chunks may split an event, a line or a `\r\n` pair at any byte; lines may
//! end in `\n`, `\r\n` or `\r`. Work per chunk is proportional to the chunk:
//! only an unfinished line is carried over, never the whole response. Bytes
//! are kept as bytes until an event is complete, so a UTF-8 character split
//! across chunks is never mangled. One leading U+FEFF (a UTF-8 byte order
//! mark) is stripped, as the spec says, even when it is split across chunks.

/// True for a `content-type` of `text/event-stream` (any parameters, any case).
pub fn is_event_stream(content_type: Option<&str>) -> bool {
    // ASCII only: `str::trim` would bring Unicode's whitespace table.
    content_type
        .and_then(|ct| ct.split(';').next())
        .is_some_and(|mt| mt.trim_ascii().eq_ignore_ascii_case("text/event-stream"))
}

/// UTF-8 byte order mark.
const BOM: &[u8; 3] = b"\xEF\xBB\xBF";

/// One decoded event. `data` is the `data:` lines joined with `\n`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SseEvent<'a> {
    /// The `event:` field, empty when absent (the spec's "message").
    pub name: &'a [u8],
    pub data: &'a [u8],
    /// True when the event outgrew the size cap: `data` is then empty and
    /// the event should be counted as not understood.
    pub oversized: bool,
}

#[derive(Debug)]
pub struct SseDecoder {
    /// Bytes of a line not yet ended by a line break.
    partial_line: Vec<u8>,
    /// The previous chunk ended in `\r`: a `\n` starting the next chunk
    /// belongs to that line break.
    after_cr: bool,
    data: Vec<u8>,
    name: Vec<u8>,
    has_data: bool,
    /// Bytes of the event being assembled (lines and data), for the cap.
    event_bytes: usize,
    oversized: bool,
    max_event_bytes: usize,
    /// Bytes of a byte order mark matched at the start of the stream, while
    /// it is not yet known whether one is there; None once it is.
    bom_matched: Option<usize>,
    /// Comment lines (`: ...`) since the last `take_comments`: keepalives.
    comments: u64,
}

impl SseDecoder {
    pub fn new(max_event_bytes: usize) -> Self {
        SseDecoder {
            partial_line: Vec::new(),
            after_cr: false,
            data: Vec::new(),
            name: Vec::new(),
            has_data: false,
            event_bytes: 0,
            oversized: false,
            max_event_bytes,
            bom_matched: Some(0),
            comments: 0,
        }
    }

    /// Decodes one chunk, calling `on_event` for every event it completes.
    pub fn feed(&mut self, chunk: &[u8], on_event: &mut impl FnMut(SseEvent<'_>)) {
        let Some(mut matched) = self.bom_matched else {
            return self.feed_lines(chunk, on_event);
        };
        for (i, &byte) in chunk.iter().enumerate() {
            if BOM.get(matched) == Some(&byte) {
                matched += 1;
                if matched == BOM.len() {
                    self.bom_matched = None;
                    return self.feed_lines(chunk.get(i + 1..).unwrap_or_default(), on_event);
                }
            } else {
                // No mark: the bytes held back so far were the stream's own.
                self.bom_matched = None;
                self.feed_lines(BOM.get(..matched).unwrap_or_default(), on_event);
                return self.feed_lines(chunk.get(i..).unwrap_or_default(), on_event);
            }
        }
        self.bom_matched = Some(matched);
    }

    fn feed_lines(&mut self, chunk: &[u8], on_event: &mut impl FnMut(SseEvent<'_>)) {
        if chunk.is_empty() {
            return;
        }
        let mut rest = chunk;
        if self.after_cr {
            self.after_cr = false;
            if let Some(tail) = rest.strip_prefix(b"\n") {
                rest = tail;
            }
        }
        while let Some(pos) = memchr::memchr2(b'\n', b'\r', rest) {
            let (line, tail) = rest.split_at(pos);
            let mut after = tail.get(1..).unwrap_or_default();
            if tail.first() == Some(&b'\r') {
                match after.first() {
                    Some(b'\n') => after = after.get(1..).unwrap_or_default(),
                    None => self.after_cr = true,
                    Some(_) => {}
                }
            }
            if self.partial_line.is_empty() {
                self.process_line(line, on_event);
            } else {
                let mut whole = std::mem::take(&mut self.partial_line);
                self.append_partial(&mut whole, line);
                self.process_line(&whole, on_event);
                whole.clear();
                self.partial_line = whole;
            }
            rest = after;
        }
        if !rest.is_empty() {
            let mut partial = std::mem::take(&mut self.partial_line);
            self.append_partial(&mut partial, rest);
            self.partial_line = partial;
        }
    }

    /// The stream ended. The spec drops an event without its final blank
    /// line; LLM servers sometimes omit it, so a pending event is dispatched.
    pub fn finish(&mut self, on_event: &mut impl FnMut(SseEvent<'_>)) {
        if let Some(matched) = self.bom_matched.take() {
            // The stream ended inside what could have been a mark: it was data.
            self.feed_lines(BOM.get(..matched).unwrap_or_default(), on_event);
        }
        if !self.partial_line.is_empty() {
            let line = std::mem::take(&mut self.partial_line);
            self.process_line(&line, on_event);
        }
        self.dispatch(on_event);
        self.after_cr = false;
    }

    /// Comment lines seen since the last call.
    pub fn take_comments(&mut self) -> u64 {
        std::mem::take(&mut self.comments)
    }

    /// True when bytes of an unfinished event are held.
    pub fn has_pending(&self) -> bool {
        !self.partial_line.is_empty()
            || self.has_data
            || self.oversized
            || self.bom_matched.is_some_and(|m| m > 0)
    }

    fn append_partial(&mut self, buf: &mut Vec<u8>, bytes: &[u8]) {
        let held = self.event_bytes.saturating_add(buf.len());
        if self.oversized || held.saturating_add(bytes.len()) > self.max_event_bytes {
            self.oversized = true;
            buf.clear();
            // A line that long is dropped; keep one byte so the line is
            // still seen as non-blank when it ends.
            buf.push(b'x');
            return;
        }
        buf.extend_from_slice(bytes);
    }

    fn process_line(&mut self, line: &[u8], on_event: &mut impl FnMut(SseEvent<'_>)) {
        if line.is_empty() {
            self.dispatch(on_event);
            return;
        }
        if self.oversized {
            return;
        }
        self.event_bytes = self.event_bytes.saturating_add(line.len());
        if self.event_bytes > self.max_event_bytes {
            self.oversized = true;
            self.data.clear();
            return;
        }
        let (field, value) = match memchr::memchr(b':', line) {
            Some(0) => {
                // A comment: servers send them to keep the connection open.
                self.comments += 1;
                return;
            }
            Some(colon) => {
                let (field, value) = line.split_at(colon);
                let value = value.get(1..).unwrap_or_default();
                (field, value.strip_prefix(b" ").unwrap_or(value))
            }
            None => (line, &b""[..]),
        };
        match field {
            b"data" => {
                if self.has_data {
                    self.data.push(b'\n');
                }
                self.data.extend_from_slice(value);
                self.has_data = true;
            }
            b"event" => {
                self.name.clear();
                self.name.extend_from_slice(value);
            }
            _ => {} // id, retry and unknown fields carry nothing we record
        }
    }

    fn dispatch(&mut self, on_event: &mut impl FnMut(SseEvent<'_>)) {
        if self.oversized {
            on_event(SseEvent {
                name: &self.name,
                data: &[],
                oversized: true,
            });
        } else if self.has_data {
            on_event(SseEvent {
                name: &self.name,
                data: &self.data,
                oversized: false,
            });
        }
        self.data.clear();
        self.name.clear();
        self.has_data = false;
        self.oversized = false;
        self.event_bytes = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, PartialEq, Eq)]
    struct Owned {
        name: String,
        data: String,
        oversized: bool,
    }

    fn decode_chunks(chunks: &[&[u8]], cap: usize) -> Vec<Owned> {
        let mut d = SseDecoder::new(cap);
        let mut out = Vec::new();
        let mut push = |e: SseEvent<'_>| {
            out.push(Owned {
                name: String::from_utf8_lossy(e.name).into_owned(),
                data: String::from_utf8_lossy(e.data).into_owned(),
                oversized: e.oversized,
            })
        };
        for c in chunks {
            d.feed(c, &mut push);
        }
        d.finish(&mut push);
        out
    }

    fn decode(bytes: &[u8]) -> Vec<Owned> {
        decode_chunks(&[bytes], 1 << 20)
    }

    #[test]
    fn a_leading_byte_order_mark_is_stripped_at_any_split() {
        let stream = b"\xEF\xBB\xBFdata: first\n\ndata: second\n\n";
        let want = vec![ev("", "first"), ev("", "second")];
        for cut in 0..=stream.len() {
            let (a, b) = stream.split_at(cut);
            assert_eq!(decode_chunks(&[a, b], 1 << 20), want, "cut at {cut}");
        }
        let singles: Vec<&[u8]> = stream.chunks(1).collect();
        assert_eq!(decode_chunks(&singles, 1 << 20), want);
        // Only one, only at the start: a second mark is the field name's.
        let twice = b"\xEF\xBB\xBF\xEF\xBB\xBFdata: x\n\n";
        assert!(decode(twice).is_empty(), "{:?}", decode(twice));
        assert_eq!(
            decode(b"data: a\xEF\xBB\xBF\n\n"),
            vec![ev("", "a\u{FEFF}")]
        );
    }

    #[test]
    fn a_partial_mark_is_the_streams_own_bytes() {
        // `\xEF\xBB` then something else: those bytes are data, not a mark.
        let want = decode_chunks(&[b"\xEF\xBBx: y\ndata: z\n\n"], 1 << 20);
        assert_eq!(want, vec![ev("", "z")]);
        assert_eq!(
            decode_chunks(&[b"\xEF", b"\xBB", b"x: y\ndata: z\n\n"], 1 << 20),
            want
        );
        // A stream that ends inside a would-be mark dispatches nothing, and panics never.
        assert!(decode_chunks(&[b"\xEF\xBB"], 1 << 20).is_empty());
        let mut d = SseDecoder::new(16);
        d.feed(b"\xEF", &mut |_| {});
        assert!(d.has_pending());
    }

    fn ev(name: &str, data: &str) -> Owned {
        Owned {
            name: name.into(),
            data: data.into(),
            oversized: false,
        }
    }

    const STREAM: &[u8] = b": keep-alive comment\n\
        data: {\"a\":1}\n\n\
        event: message_start\r\ndata: {\"b\":\"\xc3\xa9\"}\r\n\r\n\
        id: 7\rdata: line one\rdata: line two\r\r\
        data:no-space\n\
        retry: 100\n\n\
        data: [DONE]\n\n";

    fn expected() -> Vec<Owned> {
        vec![
            ev("", "{\"a\":1}"),
            ev("message_start", "{\"b\":\"é\"}"),
            ev("", "line one\nline two"),
            ev("", "no-space"),
            ev("", "[DONE]"),
        ]
    }

    #[test]
    fn decodes_all_line_endings_fields_and_comments() {
        assert_eq!(decode(STREAM), expected());
    }

    #[test]
    fn comments_are_counted_as_keepalives_at_any_split() {
        for cut in 0..=STREAM.len() {
            let (a, b) = STREAM.split_at(cut);
            let mut d = SseDecoder::new(1 << 20);
            d.feed(a, &mut |_| {});
            let first = d.take_comments();
            d.feed(b, &mut |_| {});
            d.finish(&mut |_| {});
            assert_eq!(first + d.take_comments(), 1, "cut at {cut}");
        }
        let mut d = SseDecoder::new(1 << 20);
        d.feed(b": ping\n\n:\n\ndata: x\n\n", &mut |_| {});
        assert_eq!(d.take_comments(), 2);
    }

    #[test]
    fn every_split_point_gives_the_same_events() {
        for cut in 0..=STREAM.len() {
            let (a, b) = STREAM.split_at(cut);
            assert_eq!(decode_chunks(&[a, b], 1 << 20), expected(), "cut at {cut}");
        }
    }

    #[test]
    fn every_pair_of_split_points_gives_the_same_events() {
        for i in 0..=STREAM.len() {
            for j in i..=STREAM.len() {
                let chunks = [&STREAM[..i], &STREAM[i..j], &STREAM[j..]];
                assert_eq!(decode_chunks(&chunks, 1 << 20), expected(), "cuts {i},{j}");
            }
        }
    }

    #[test]
    fn byte_at_a_time() {
        let chunks: Vec<&[u8]> = STREAM.chunks(1).collect();
        assert_eq!(decode_chunks(&chunks, 1 << 20), expected());
    }

    #[test]
    fn cr_at_chunk_end_then_lf_is_one_line_break() {
        // "\r" | "\n" must not count as two line breaks (that would end the event early).
        let got = decode_chunks(&[b"data: a\r", b"\ndata: b\r", b"\n\r\n"], 1024);
        assert_eq!(got, vec![ev("", "a\nb")]);
    }

    #[test]
    fn missing_final_blank_line_still_dispatches() {
        assert_eq!(decode(b"data: last"), vec![ev("", "last")]);
        assert_eq!(decode(b"data: last\n"), vec![ev("", "last")]);
    }

    #[test]
    fn event_without_data_is_not_dispatched() {
        assert_eq!(decode(b"event: ping\n\n: c\n\n"), vec![]);
    }

    #[test]
    fn empty_data_line_dispatches_empty_data() {
        assert_eq!(decode(b"data\n\n"), vec![ev("", "")]);
    }

    #[test]
    fn oversized_event_is_flagged_and_memory_bounded() {
        let mut big = b"data: ".to_vec();
        big.extend(std::iter::repeat_n(b'x', 10_000));
        big.extend_from_slice(b"\n\ndata: ok\n\n");
        let chunks: Vec<&[u8]> = big.chunks(7).collect();
        let mut d = SseDecoder::new(100);
        let mut got = Vec::new();
        for c in &chunks {
            d.feed(c, &mut |e| got.push((e.oversized, e.data.to_vec())));
            assert!(d.partial_line.capacity() <= 256 && d.data.capacity() <= 256);
        }
        d.finish(&mut |e| got.push((e.oversized, e.data.to_vec())));
        assert_eq!(got, vec![(true, vec![]), (false, b"ok".to_vec())]);
    }

    #[test]
    fn many_data_lines_over_cap_are_flagged() {
        let mut s = Vec::new();
        for _ in 0..100 {
            s.extend_from_slice(b"data: 0123456789\n");
        }
        s.extend_from_slice(b"\n");
        let got = decode_chunks(&[&s], 200);
        assert_eq!(got.len(), 1);
        assert!(got[0].oversized);
    }

    #[test]
    fn invalid_utf8_passes_as_bytes() {
        let mut d = SseDecoder::new(1024);
        let mut got = Vec::new();
        d.feed(b"data: \xff\xfe\x00\n\n", &mut |e| {
            got.push(e.data.to_vec())
        });
        assert_eq!(got, vec![b"\xff\xfe\x00".to_vec()]);
    }
}
