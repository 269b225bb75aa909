//! A push JSON tokenizer: bytes go in as they arrive, in chunks split
//! anywhere, and tokens come out. Nothing grows with the document: nesting is
//! a 128-bit stack, keys are kept whole up to [`MAX_KEY`] bytes, numbers up to
//! [`MAX_NUMBER`], and string values leave as unescaped pieces (borrowed from
//! the chunk where they have no escapes), never whole. The work is
//! proportional to each chunk; long string runs are found with `memchr`.
//!
//! Validity is strict JSON (RFC 8259, as serde_json reads it): UTF-8 checked
//! in every string, no raw control characters, the number grammar, only
//! whitespace after the value. Any error is sticky: no more tokens.

/// Deepest nesting accepted (the pull reader's `MAX_DEPTH`).
pub const MAX_DEPTH: u32 = 128;
/// Longest key delivered as [`Token::Key`]; longer ones are [`Token::KeyTooLong`].
pub const MAX_KEY: usize = 64;
/// Longest number delivered as [`Token::Number`]; longer ones are
/// [`Token::NumberTooLong`] (still checked).
pub const MAX_NUMBER: usize = 32;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Token<'a> {
    ObjectStart,
    ObjectEnd,
    ArrayStart,
    ArrayEnd,
    /// An object key, unescaped.
    Key(&'a [u8]),
    KeyTooLong,
    /// A string value begins; its pieces follow, then `StrEnd`.
    StrStart,
    StrPiece(&'a str),
    StrEnd,
    /// A number's text as sent (valid JSON number syntax).
    Number(&'a [u8]),
    NumberTooLong,
    Bool(bool),
    Null,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Num {
    Minus,
    Zero,
    Int,
    Dot,
    Frac,
    Exp,
    ExpSign,
    ExpDigits,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// A value is required: document start, after `:`, after `,` in an array.
    Value,
    /// After `[`.
    ValueOrEnd,
    /// After `{`.
    KeyOrEnd,
    /// After `,` in an object.
    Key,
    Colon,
    /// After a value inside a container.
    After,
    /// The document's value is complete.
    Done,
    Str,
    Escape,
    /// `n` hex digits of a `\u` read.
    Hex(u8),
    /// After a high surrogate: its `\u` low half must follow.
    LowSlash,
    LowU,
    Number(Num),
    /// `n` bytes of `literal` matched.
    Literal(u8),
    Error,
}

#[derive(Debug, Clone)]
pub struct JsonStream {
    state: State,
    depth: u32,
    /// Bit `d` set: the container at depth `d + 1` is an array.
    arrays: u128,
    in_key: bool,
    /// The key or number being read (never both at once).
    buf: [u8; MAX_KEY],
    buf_len: usize,
    too_long: bool,
    /// A UTF-8 character split across chunks.
    utf8: [u8; 4],
    utf8_len: usize,
    code: u32,
    high: u32,
    literal: &'static [u8],
}

impl Default for JsonStream {
    fn default() -> Self {
        JsonStream {
            state: State::Value,
            depth: 0,
            arrays: 0,
            in_key: false,
            buf: [0; MAX_KEY],
            buf_len: 0,
            too_long: false,
            utf8: [0; 4],
            utf8_len: 0,
            code: 0,
            high: 0,
            literal: b"",
        }
    }
}

fn is_ws(b: u8) -> bool {
    matches!(b, b' ' | b'\n' | b'\r' | b'\t')
}

fn hex(b: u8) -> Option<u32> {
    char::from(b).to_digit(16)
}

impl JsonStream {
    pub fn new() -> Self {
        Self::default()
    }

    /// True once the input is known not to be JSON.
    pub fn failed(&self) -> bool {
        self.state == State::Error
    }

    /// Reads the next chunk, sending its tokens to `sink`.
    pub fn feed(&mut self, chunk: &[u8], sink: &mut impl FnMut(Token<'_>)) {
        let mut rest = chunk;
        while self.state != State::Error {
            if self.state == State::Str && self.utf8_len == 0 {
                if rest.is_empty() {
                    return;
                }
                rest = self.string_run(rest, sink);
                continue;
            }
            let Some((&b, tail)) = rest.split_first() else {
                return;
            };
            if let State::Number(n) = self.state {
                // The byte that ends a number is read again in the next state.
                if self.number_byte(n, b, sink) {
                    rest = tail;
                }
                continue;
            }
            self.byte(b, sink);
            rest = tail;
        }
    }

    /// The input has ended: true if it was one complete JSON value with only
    /// whitespace after it. (A top-level number's token comes out here.)
    pub fn finish(&mut self, sink: &mut impl FnMut(Token<'_>)) -> bool {
        if let State::Number(n) = self.state {
            self.end_number(n, sink);
        }
        self.state == State::Done
    }

    fn fail(&mut self) {
        self.state = State::Error;
    }

    fn end_value(&mut self) {
        self.state = if self.depth == 0 {
            State::Done
        } else {
            State::After
        };
    }

    fn top_is_array(&self) -> bool {
        self.depth
            .checked_sub(1)
            .and_then(|d| self.arrays.checked_shr(d))
            .is_some_and(|bits| bits & 1 == 1)
    }

    fn open(&mut self, array: bool, sink: &mut impl FnMut(Token<'_>)) {
        if self.depth >= MAX_DEPTH {
            return self.fail();
        }
        let bit = 1u128.checked_shl(self.depth).unwrap_or(0);
        if array {
            self.arrays |= bit;
            self.state = State::ValueOrEnd;
            sink(Token::ArrayStart);
        } else {
            self.arrays &= !bit;
            self.state = State::KeyOrEnd;
            sink(Token::ObjectStart);
        }
        self.depth += 1;
    }

    fn close(&mut self, sink: &mut impl FnMut(Token<'_>)) {
        sink(if self.top_is_array() {
            Token::ArrayEnd
        } else {
            Token::ObjectEnd
        });
        self.depth = self.depth.saturating_sub(1);
        self.end_value();
    }

    fn value_start(&mut self, b: u8, sink: &mut impl FnMut(Token<'_>)) {
        match b {
            b'{' => self.open(false, sink),
            b'[' => self.open(true, sink),
            b'"' => {
                self.in_key = false;
                self.state = State::Str;
                sink(Token::StrStart);
            }
            b't' | b'f' | b'n' => {
                self.literal = match b {
                    b't' => b"true",
                    b'f' => b"false",
                    _ => b"null",
                };
                self.state = State::Literal(1);
            }
            b'-' | b'0'..=b'9' => {
                self.buf_len = 0;
                self.too_long = false;
                self.push_buf(&[b], MAX_NUMBER);
                self.state = State::Number(match b {
                    b'-' => Num::Minus,
                    b'0' => Num::Zero,
                    _ => Num::Int,
                });
            }
            _ => self.fail(),
        }
    }

    fn key_start(&mut self) {
        self.in_key = true;
        self.buf_len = 0;
        self.too_long = false;
        self.state = State::Str;
    }

    /// Appends to the key or number, past `cap` only marking it too long.
    fn push_buf(&mut self, bytes: &[u8], cap: usize) {
        if self.too_long {
            return;
        }
        let end = self.buf_len + bytes.len();
        match self.buf.get_mut(self.buf_len..end) {
            Some(slot) if end <= cap => {
                slot.copy_from_slice(bytes);
                self.buf_len = end;
            }
            _ => self.too_long = true,
        }
    }

    fn piece(&mut self, text: &str, sink: &mut impl FnMut(Token<'_>)) {
        if self.in_key {
            self.push_buf(text.as_bytes(), MAX_KEY);
        } else if !text.is_empty() {
            sink(Token::StrPiece(text));
        }
    }

    fn char_piece(&mut self, ch: char, sink: &mut impl FnMut(Token<'_>)) {
        let mut bytes = [0; 4];
        let text: &str = ch.encode_utf8(&mut bytes);
        self.piece(text, sink);
    }

    /// The plain bytes of a string up to its next quote or backslash (or the
    /// chunk's end), then that byte; returns what is left of the chunk.
    fn string_run<'c>(&mut self, rest: &'c [u8], sink: &mut impl FnMut(Token<'_>)) -> &'c [u8] {
        let stop = memchr::memchr2(b'"', b'\\', rest).unwrap_or(rest.len());
        let Some((run, after)) = rest.split_at_checked(stop) else {
            self.fail();
            return &[];
        };
        if run.iter().any(|&b| b < 0x20) {
            self.fail();
            return &[];
        }
        match std::str::from_utf8(run) {
            Ok(text) => self.piece(text, sink),
            Err(e) => {
                let (valid, partial) = run.split_at_checked(e.valid_up_to()).unwrap_or_default();
                let valid = std::str::from_utf8(valid).unwrap_or_default();
                self.piece(valid, sink);
                // Only a character cut by the chunk's end may wait for more.
                match self.utf8.get_mut(..partial.len()) {
                    Some(slot) if e.error_len().is_none() && after.is_empty() => {
                        slot.copy_from_slice(partial);
                        self.utf8_len = partial.len();
                    }
                    _ => {
                        self.fail();
                        return &[];
                    }
                }
            }
        }
        match after.split_first() {
            Some((&b, tail)) => {
                self.byte(b, sink);
                tail
            }
            None => after,
        }
    }

    fn number_byte(&mut self, n: Num, b: u8, sink: &mut impl FnMut(Token<'_>)) -> bool {
        let digit = b.is_ascii_digit();
        let next = match (n, b) {
            (Num::Minus, b'0') => Num::Zero,
            (Num::Minus, _) if digit => Num::Int,
            (Num::Int, _) if digit => Num::Int,
            (Num::Zero | Num::Int, b'.') => Num::Dot,
            (Num::Dot | Num::Frac, _) if digit => Num::Frac,
            (Num::Zero | Num::Int | Num::Frac, b'e' | b'E') => Num::Exp,
            (Num::Exp, b'+' | b'-') => Num::ExpSign,
            (Num::Exp | Num::ExpSign | Num::ExpDigits, _) if digit => Num::ExpDigits,
            _ => {
                self.end_number(n, sink);
                return self.state == State::Error;
            }
        };
        self.push_buf(&[b], MAX_NUMBER);
        self.state = State::Number(next);
        true
    }

    fn end_number(&mut self, n: Num, sink: &mut impl FnMut(Token<'_>)) {
        if !matches!(n, Num::Zero | Num::Int | Num::Frac | Num::ExpDigits) {
            return self.fail();
        }
        match self.buf.get(..self.buf_len) {
            Some(text) if !self.too_long => sink(Token::Number(text)),
            _ => sink(Token::NumberTooLong),
        }
        self.end_value();
    }

    fn string_end(&mut self, sink: &mut impl FnMut(Token<'_>)) {
        if self.in_key {
            match self.buf.get(..self.buf_len) {
                Some(key) if !self.too_long => sink(Token::Key(key)),
                _ => sink(Token::KeyTooLong),
            }
            self.state = State::Colon;
        } else {
            sink(Token::StrEnd);
            self.end_value();
        }
    }

    /// A `\u` code unit is complete.
    fn code_unit(&mut self, sink: &mut impl FnMut(Token<'_>)) {
        let unit = self.code;
        let ch = if self.high != 0 {
            let high = std::mem::take(&mut self.high);
            if !(0xDC00..0xE000).contains(&unit) {
                return self.fail();
            }
            char::from_u32(0x10000 + ((high - 0xD800) << 10) + (unit - 0xDC00))
        } else if (0xD800..0xDC00).contains(&unit) {
            self.high = unit;
            self.state = State::LowSlash;
            return;
        } else {
            // None for a lone low surrogate.
            char::from_u32(unit)
        };
        match ch {
            Some(ch) => {
                self.state = State::Str;
                self.char_piece(ch, sink);
            }
            None => self.fail(),
        }
    }

    fn byte(&mut self, b: u8, sink: &mut impl FnMut(Token<'_>)) {
        match self.state {
            State::Value
            | State::ValueOrEnd
            | State::KeyOrEnd
            | State::Key
            | State::Colon
            | State::After
            | State::Done
                if is_ws(b) => {}
            State::Value => self.value_start(b, sink),
            State::ValueOrEnd if b == b']' => self.close(sink),
            State::ValueOrEnd => self.value_start(b, sink),
            State::KeyOrEnd | State::Key if b == b'"' => self.key_start(),
            State::KeyOrEnd if b == b'}' => self.close(sink),
            State::Colon if b == b':' => self.state = State::Value,
            State::After => match b {
                b',' if self.top_is_array() => self.state = State::Value,
                b',' => self.state = State::Key,
                b']' if self.top_is_array() => self.close(sink),
                b'}' if !self.top_is_array() => self.close(sink),
                _ => self.fail(),
            },
            State::Str if self.utf8_len > 0 => {
                let mut bytes = self.utf8;
                let Some(slot) = bytes.get_mut(self.utf8_len) else {
                    return self.fail();
                };
                *slot = b;
                let len = self.utf8_len + 1;
                match std::str::from_utf8(bytes.get(..len).unwrap_or_default()) {
                    Ok(text) => {
                        self.utf8_len = 0;
                        self.piece(text, sink);
                    }
                    Err(e) if e.error_len().is_none() => {
                        self.utf8 = bytes;
                        self.utf8_len = len;
                    }
                    Err(_) => self.fail(),
                }
            }
            State::Str if b == b'"' => self.string_end(sink),
            State::Str if b == b'\\' => self.state = State::Escape,
            State::Escape => {
                if b == b'u' {
                    self.code = 0;
                    self.state = State::Hex(0);
                    return;
                }
                let Some(ch) = crate::wire::json::simple_escape(b) else {
                    return self.fail();
                };
                self.state = State::Str;
                self.char_piece(ch, sink);
            }
            State::Hex(n) => match hex(b) {
                Some(d) => {
                    self.code = self.code << 4 | d;
                    if n == 3 {
                        self.code_unit(sink);
                    } else {
                        self.state = State::Hex(n + 1);
                    }
                }
                None => self.fail(),
            },
            State::LowSlash if b == b'\\' => self.state = State::LowU,
            State::LowU if b == b'u' => {
                self.code = 0;
                self.state = State::Hex(0);
            }
            State::Literal(n) => {
                let n = usize::from(n);
                if self.literal.get(n) != Some(&b) {
                    return self.fail();
                }
                if n + 1 < self.literal.len() {
                    self.state = State::Literal(n as u8 + 1);
                    return;
                }
                sink(match self.literal.first() {
                    Some(b't') => Token::Bool(true),
                    Some(b'f') => Token::Bool(false),
                    _ => Token::Null,
                });
                self.end_value();
            }
            // Trailing content, a misplaced byte, a raw control character in
            // a string (the runs stop only at quotes and backslashes).
            _ => self.fail(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::Value;

    /// Rebuilds a value from the tokens (to compare with serde_json's).
    #[derive(Default)]
    struct Builder {
        stack: Vec<(Value, Option<String>)>,
        key: Option<String>,
        text: Option<String>,
        done: Option<Value>,
        long: bool,
    }

    impl Builder {
        fn put(&mut self, v: Value) {
            match self.stack.last_mut() {
                Some((Value::Array(items), _)) => items.push(v),
                Some((Value::Object(map), _)) => {
                    map.insert(self.key.take().unwrap(), v);
                }
                _ => self.done = Some(v),
            }
        }

        fn token(&mut self, t: Token<'_>) {
            match t {
                Token::ObjectStart | Token::ArrayStart => {
                    let empty = if t == Token::ObjectStart {
                        Value::Object(Default::default())
                    } else {
                        Value::Array(vec![])
                    };
                    self.stack.push((empty, self.key.take()));
                }
                Token::ObjectEnd | Token::ArrayEnd => {
                    let (v, key) = self.stack.pop().unwrap();
                    self.key = key;
                    self.put(v);
                }
                Token::Key(k) => self.key = Some(String::from_utf8(k.to_vec()).unwrap()),
                // Their text is not delivered: only validity can be compared.
                Token::KeyTooLong => {
                    self.long = true;
                    self.key = Some(String::new());
                }
                Token::NumberTooLong => {
                    self.long = true;
                    self.put(Value::Null);
                }
                Token::StrStart => self.text = Some(String::new()),
                Token::StrPiece(s) => self.text.as_mut().unwrap().push_str(s),
                Token::StrEnd => {
                    let s = self.text.take().unwrap();
                    self.put(Value::String(s));
                }
                // serde_json refuses numbers beyond f64 (`1e999`); JSON's grammar
                // does not, nor does this tokenizer (it parses no floats).
                Token::Number(n) => self.put(serde_json::from_slice(n).unwrap_or(Value::Null)),
                Token::Bool(b) => self.put(Value::Bool(b)),
                Token::Null => self.put(Value::Null),
            }
        }
    }

    /// The value the tokenizer read from `doc` cut at `cuts`, or None if invalid.
    fn read(doc: &[u8], cuts: &[usize]) -> Option<Value> {
        let mut json = JsonStream::new();
        let mut b = Builder::default();
        let mut sink = |t: Token<'_>| b.token(t);
        let mut at = 0;
        for &cut in cuts {
            let cut = cut.clamp(at, doc.len());
            json.feed(&doc[at..cut], &mut sink);
            at = cut;
        }
        json.feed(&doc[at..], &mut sink);
        let ok = json.finish(&mut sink);
        if ok {
            assert!(b.stack.is_empty());
            let v = b.done.take().unwrap();
            // A long key or number: only validity is compared.
            Some(if b.long { Value::Null } else { v })
        } else {
            None
        }
    }

    fn serde(doc: &[u8]) -> Option<Value> {
        serde_json::from_slice(doc).ok()
    }

    fn every_split_agrees(doc: &[u8]) {
        let want = serde(doc);
        assert_eq!(read(doc, &[]), want, "{}", String::from_utf8_lossy(doc));
        for cut in 0..=doc.len() {
            assert_eq!(
                read(doc, &[cut]),
                want,
                "cut {cut}: {:?}",
                String::from_utf8_lossy(doc)
            );
        }
        // One byte at a time.
        let ones: Vec<usize> = (0..=doc.len()).collect();
        assert_eq!(
            read(doc, &ones),
            want,
            "bytewise: {:?}",
            String::from_utf8_lossy(doc)
        );
    }

    const DOCS: &[&[u8]] = &[
        br#" {"id":"c1","n":[1,2.5e3,-3,0,-0.0,1E+2,{"x":[true,false,null]}],"delta":{"content":"a\"b\u00e9\ud83d\ude00\n\/\\\t\b\f\r"},"u":null} "#,
        "{\"k\u{e9}y\":\"caf\u{e9} \u{65e5}\u{672c} \u{1f600}\"}".as_bytes(),
        br#"{"\u0063ontent":"x","":""}"#,
        b"[]",
        b"{}",
        b"\"\"",
        b"0",
        b"-12.5e-3",
        b"true",
        b"  null  ",
        b"[[[[]]],{},[{}]]",
        // Invalid ones.
        b"",
        b"   ",
        b"{",
        b"{\"a\"}",
        b"{\"a\":}",
        b"{\"a\":1,}",
        b"[1,]",
        b"[1 2]",
        b"[1,2",
        b"{\"a\":tru}",
        b"{\"a\":truex}",
        b"nul",
        b"{\"a\":\"unterminated}",
        b"{\"a\":1} trailing",
        b"{} {}",
        b"{\"a\":-}",
        b"01",
        b"1.",
        b"1.e3",
        b"1e",
        b"1e+",
        b"-",
        b"+1",
        b".5",
        b"[1-2]",
        b"not json",
        b"\"\\ud83d\"",
        b"\"\\ud83dx\"",
        b"\"\\ud83d\\u0041\"",
        b"\"\\ude00\"",
        b"\"\\x\"",
        b"\"\\u12\"",
        b"\"\\u12g4\"",
        b"\"\\\"",
        b"\"\xff\"",
        b"\"\xc3\"",
        b"\"\xe6\x97\"",
        b"\"\xed\xa0\x80\"",
        b"\"\xc0\xaf\"",
        b"\"a\x01b\"",
        b"\"tab\there\"",
        b"{\"a\xff\":1}",
        b"{1:2}",
        b"[}",
        b"{]",
        b"]",
        b"\xef\xbb\xbf{}",
    ];

    #[test]
    fn numbers_beyond_f64_are_valid_json_here() {
        // The one validity difference from serde_json, which refuses them.
        assert!(serde(b"[1e999]").is_none());
        assert!(read(b"[1e999]", &[]).is_some());
    }

    #[test]
    fn every_split_of_every_document_agrees_with_serde_json() {
        for doc in DOCS {
            every_split_agrees(doc);
        }
    }

    #[test]
    fn nesting_is_capped_at_max_depth() {
        let ok = "[".repeat(128) + &"]".repeat(128);
        assert!(read(ok.as_bytes(), &[]).is_some());
        let deep = "[".repeat(129) + &"]".repeat(129);
        assert!(read(deep.as_bytes(), &[]).is_none());
        let hostile = "[{\"a\":".repeat(100_000);
        assert!(read(hostile.as_bytes(), &[7, 1000]).is_none());
    }

    #[test]
    fn long_keys_and_numbers_are_flagged_not_buffered() {
        let key = "k".repeat(MAX_KEY);
        let long = "k".repeat(MAX_KEY + 1);
        let doc = format!(r#"{{"{key}":1,"{long}":2,"n":{}}}"#, "1".repeat(40));
        let mut tokens = vec![];
        let mut json = JsonStream::new();
        json.feed(doc.as_bytes(), &mut |t| tokens.push(format!("{t:?}")));
        assert!(json.finish(&mut |_| {}));
        assert!(tokens.contains(&format!("{:?}", Token::Key(key.as_bytes()))));
        assert!(tokens.contains(&"KeyTooLong".to_string()));
        assert!(tokens.contains(&"NumberTooLong".to_string()));
    }

    #[test]
    fn a_long_string_comes_as_borrowed_pieces() {
        let text = "x".repeat(100_000);
        let doc = format!(r#"{{"a":"{text}"}}"#);
        let mut json = JsonStream::new();
        let mut pieces = 0;
        let mut total = 0;
        for chunk in doc.as_bytes().chunks(4096) {
            json.feed(chunk, &mut |t| {
                if let Token::StrPiece(s) = t {
                    pieces += 1;
                    total += s.len();
                }
            });
        }
        assert!(json.finish(&mut |_| {}));
        assert_eq!(total, text.len());
        assert!(pieces >= 24, "one piece per chunk at least: {pieces}");
        // Constant memory: the tokenizer is a fixed-size value.
        assert!(std::mem::size_of::<JsonStream>() < 160);
    }

    #[test]
    fn errors_are_sticky() {
        let mut json = JsonStream::new();
        let mut n = 0;
        json.feed(b"{\"a\":x", &mut |_| n += 1);
        assert!(json.failed());
        json.feed(b"1}", &mut |_| n += 1);
        assert_eq!(n, 2, "ObjectStart and the key only");
        assert!(!json.finish(&mut |_| n += 1));
    }

    fn arb_value() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(Value::from),
            any::<u64>().prop_map(Value::from),
            (-1e6f64..1e6).prop_map(Value::from),
            any::<f64>()
                .prop_filter("finite", |f| f.is_finite())
                .prop_map(Value::from),
            any::<String>().prop_map(Value::String),
            "[a-z\"\\\\/\n\t\u{1}\u{e9}\u{65e5}\u{1f600}]{0,20}".prop_map(Value::String),
        ];
        leaf.prop_recursive(6, 64, 8, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..8).prop_map(Value::Array),
                // Keys within MAX_KEY (16 chars of at most 4 bytes).
                prop::collection::btree_map(".{0,16}", inner, 0..8)
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    fn ascii_escaped(text: &str) -> String {
        // serde_json never writes \u escapes for non-ASCII: force some.
        let mut out = String::new();
        for ch in text.chars() {
            if ch.is_ascii() {
                out.push(ch);
            } else {
                let mut units = [0u16; 2];
                for unit in ch.encode_utf16(&mut units) {
                    out.push_str(&format!("\\u{unit:04x}"));
                }
            }
        }
        out
    }

    proptest! {
        #[test]
        fn generated_values_split_anywhere(
            v in arb_value(),
            pretty in any::<bool>(),
            escape in any::<bool>(),
            cuts in prop::collection::vec(any::<prop::sample::Index>(), 0..12),
        ) {
            let mut text = if pretty {
                serde_json::to_string_pretty(&v).unwrap()
            } else {
                serde_json::to_string(&v).unwrap()
            };
            if escape {
                text = ascii_escaped(&text);
            }
            let doc = text.as_bytes();
            let mut cuts: Vec<usize> = cuts.iter().map(|i| i.index(doc.len() + 1)).collect();
            cuts.sort_unstable();
            // (Against serde_json's reading: its float parsing does not round-trip.)
            let want = serde(doc);
            prop_assert!(want.is_some());
            prop_assert_eq!(read(doc, &cuts), want);
        }

        #[test]
        fn mutated_documents_agree_on_validity(
            v in arb_value(),
            edits in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>(), 0..3u8), 1..4),
            cuts in prop::collection::vec(any::<prop::sample::Index>(), 0..6),
        ) {
            let mut doc = serde_json::to_vec(&v).unwrap();
            for (at, byte, kind) in edits {
                let at = at.index(doc.len() + 1);
                match kind {
                    0 if at < doc.len() => doc[at] = byte,
                    1 => doc.insert(at, byte),
                    _ => doc.truncate(at),
                }
            }
            let mut cuts: Vec<usize> = cuts.iter().map(|i| i.index(doc.len() + 1)).collect();
            cuts.sort_unstable();
            let want = serde_json::from_slice::<Value>(&doc);
            prop_assume!(!matches!(&want, Err(e) if e.to_string().contains("out of range")));
            let got = read(&doc, &cuts);
            prop_assert_eq!(got.is_some(), want.is_ok(), "{:?}", String::from_utf8_lossy(&doc));
            if got != Some(Value::Null) {
                prop_assert_eq!(got, want.ok());
            }
        }
    }
}
