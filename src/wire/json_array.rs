//! Incremental framing of a streamed JSON array (Gemini's
//! `:streamGenerateContent` without `?alt=sse`: `[{...}` … `,{...}` … `]`,
//! each element written as the model produces it), fed body chunks exactly
//! as they pass.
//!
//! Only the structure is tracked (depth, strings, escapes), so the work is
//! proportional to the chunk; an element's bytes are kept until it closes,
//! up to a cap: a longer one is counted as oversized and its bytes dropped,
//! while its structure is still followed to find the next element. A body
//! that is one object instead (`:generateContent`) is one element. The JSON
//! reader checks each element; bytes outside the structure are ignored.

/// One element: its bytes, or `oversized` (then empty).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Element<'a> {
    pub data: &'a [u8],
    pub oversized: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Shape {
    /// Nothing but whitespace yet.
    Start,
    /// Inside `[`, between elements.
    Array,
    /// A whole object, not an array.
    Object,
    /// After the closing `]` (or the object's `}`).
    Done,
}

#[derive(Debug)]
pub struct ElementDecoder {
    shape: Shape,
    /// Bytes of the element being read.
    element: Vec<u8>,
    /// Nesting inside the current element (0: between elements).
    depth: u32,
    in_string: bool,
    escaped: bool,
    oversized: bool,
    max_element_bytes: usize,
}

impl ElementDecoder {
    pub fn new(max_element_bytes: usize) -> Self {
        ElementDecoder {
            shape: Shape::Start,
            element: Vec::new(),
            depth: 0,
            in_string: false,
            escaped: false,
            oversized: false,
            max_element_bytes,
        }
    }

    /// Decodes one chunk, calling `on_element` for every element it completes.
    pub fn feed(&mut self, chunk: &[u8], on_element: &mut impl FnMut(Element<'_>)) {
        let mut start = 0;
        for (i, &byte) in chunk.iter().enumerate() {
            if self.depth == 0 {
                match (self.shape, byte) {
                    (_, b' ' | b'\t' | b'\r' | b'\n') => continue,
                    (Shape::Start, b'[') => {
                        self.shape = Shape::Array;
                        continue;
                    }
                    (Shape::Start, b'{') => self.shape = Shape::Object,
                    (Shape::Array, b',') => continue,
                    (Shape::Array, b']') => {
                        self.shape = Shape::Done;
                        continue;
                    }
                    (Shape::Array, b'{' | b'[') => {}
                    // A scalar element, or bytes outside the structure: not read.
                    _ => continue,
                }
                // An element opens here.
                start = i;
                self.depth = 1;
                continue;
            }
            if self.in_string {
                if self.escaped {
                    self.escaped = false;
                } else if byte == b'\\' {
                    self.escaped = true;
                } else if byte == b'"' {
                    self.in_string = false;
                }
                continue;
            }
            match byte {
                b'"' => self.in_string = true,
                b'{' | b'[' => self.depth = self.depth.saturating_add(1),
                b'}' | b']' => {
                    self.depth -= 1;
                    if self.depth == 0 {
                        self.hold(chunk.get(start..=i).unwrap_or_default());
                        self.emit(on_element);
                        if self.shape == Shape::Object {
                            self.shape = Shape::Done;
                        }
                    }
                }
                _ => {}
            }
        }
        if self.depth > 0 {
            self.hold(chunk.get(start..).unwrap_or_default());
        }
    }

    /// The body ended: an element still open is cut, counted as oversized
    /// (not understood) rather than read.
    pub fn finish(&mut self, on_element: &mut impl FnMut(Element<'_>)) {
        if self.depth > 0 {
            self.depth = 0;
            self.oversized = true;
            self.emit(on_element);
        }
    }

    fn hold(&mut self, bytes: &[u8]) {
        if self.oversized {
            return;
        }
        if self.element.len().saturating_add(bytes.len()) > self.max_element_bytes {
            self.oversized = true;
            self.element.clear();
        } else {
            self.element.extend_from_slice(bytes);
        }
    }

    fn emit(&mut self, on_element: &mut impl FnMut(Element<'_>)) {
        let oversized = std::mem::take(&mut self.oversized);
        let data = std::mem::take(&mut self.element);
        on_element(Element {
            data: if oversized { &[] } else { &data },
            oversized,
        });
        self.element = data;
        self.element.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn elements(max: usize, chunks: &[&[u8]]) -> Vec<(String, bool)> {
        let mut d = ElementDecoder::new(max);
        let mut out = Vec::new();
        let mut take =
            |e: Element<'_>| out.push((String::from_utf8_lossy(e.data).into_owned(), e.oversized));
        for chunk in chunks {
            d.feed(chunk, &mut take);
        }
        d.finish(&mut take);
        out
    }

    const ARRAY: &[u8] = b"[{\"a\":\"x]}\\\"\",\"b\":[1,{\"c\":2}]}\r\n,\n{\"d\":{}}\n]";

    #[test]
    fn elements_whole_and_split_at_every_byte() {
        let want = vec![
            ("{\"a\":\"x]}\\\"\",\"b\":[1,{\"c\":2}]}".to_string(), false),
            ("{\"d\":{}}".to_string(), false),
        ];
        assert_eq!(elements(64, &[ARRAY]), want);
        for at in 0..=ARRAY.len() {
            let (a, b) = ARRAY.split_at(at);
            assert_eq!(elements(64, &[a, b]), want, "split at {at}");
        }
        let bytes: Vec<&[u8]> = ARRAY.chunks(1).collect();
        assert_eq!(elements(64, &bytes), want);
    }

    #[test]
    fn a_whole_object_is_one_element() {
        let body = b" {\"candidates\":[{\"x\":\"}\"}]} \n";
        assert_eq!(
            elements(64, &[body]),
            vec![("{\"candidates\":[{\"x\":\"}\"}]}".to_string(), false)]
        );
    }

    #[test]
    fn an_oversized_element_is_counted_and_the_next_one_still_read() {
        let long = format!("{{\"t\":\"{}\"}}", "]".repeat(100));
        let body = format!("[{long},{{\"ok\":1}}]");
        for size in [1, 5, body.len()] {
            let chunks: Vec<&[u8]> = body.as_bytes().chunks(size).collect();
            assert_eq!(
                elements(32, &chunks),
                vec![(String::new(), true), ("{\"ok\":1}".to_string(), false)],
                "chunks of {size}"
            );
        }
    }

    #[test]
    fn a_cut_element_is_not_understood() {
        assert_eq!(
            elements(64, &[b"[{\"a\":1},{\"b\":"]),
            vec![("{\"a\":1}".to_string(), false), (String::new(), true)]
        );
    }
}
