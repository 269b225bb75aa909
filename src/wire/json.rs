//! A small pull reader for the JSON of provider events: the adapters walk an
//! event and take only the fields they need, borrowing strings from the event
//! bytes; everything else is skipped (and still checked) without allocating.
//!
//! Why not serde derive for this: measured on the OpenAI chunk adapter, serde
//! spent ~40% of the per-event time parsing and UTF-8-checking keys and
//! ignored strings, and 25 derived visitors were most of the `.wasm`'s size.
//! Here keys are compared as bytes, skipped strings are found with `memchr`,
//! and only kept strings are UTF-8-checked. Nesting is capped at
//! `MAX_DEPTH` so hostile input cannot exhaust the stack.

use crate::ParseError;
use std::borrow::Cow;

type Result<T> = std::result::Result<T, ParseError>;

/// Deepest nesting accepted (serde_json's default limit too).
pub const MAX_DEPTH: u32 = 128;

pub struct Json<'a> {
    bytes: &'a [u8],
    pos: usize,
    depth: u32,
}

impl<'a> Json<'a> {
    pub fn new(bytes: &'a [u8]) -> Self {
        Json {
            bytes,
            pos: 0,
            depth: 0,
        }
    }

    /// Reads one whole document with `read`, then requires the end of input.
    pub fn parse<T>(bytes: &'a [u8], read: impl FnOnce(&mut Json<'a>) -> Result<T>) -> Result<T> {
        let mut json = Json::new(bytes);
        let value = read(&mut json)?;
        json.skip_ws();
        if json.pos == json.bytes.len() {
            Ok(value)
        } else {
            Err(ParseError)
        }
    }

    fn skip_ws(&mut self) {
        while let Some(b' ' | b'\n' | b'\r' | b'\t') = self.bytes.get(self.pos) {
            self.pos += 1;
        }
    }

    fn peek(&mut self) -> Option<u8> {
        self.skip_ws();
        self.bytes.get(self.pos).copied()
    }

    fn expect(&mut self, byte: u8) -> Result<()> {
        if self.peek() == Some(byte) {
            self.pos += 1;
            Ok(())
        } else {
            Err(ParseError)
        }
    }

    fn literal(&mut self, word: &[u8]) -> Result<()> {
        if self.bytes.get(self.pos..self.pos + word.len()) == Some(word) {
            self.pos += word.len();
            Ok(())
        } else {
            Err(ParseError)
        }
    }

    pub fn peek_array(&mut self) -> bool {
        self.peek() == Some(b'[')
    }

    pub fn peek_object(&mut self) -> bool {
        self.peek() == Some(b'{')
    }

    pub fn peek_string(&mut self) -> bool {
        self.peek() == Some(b'"')
    }

    /// Consumes a `null` if one is next.
    pub fn null(&mut self) -> bool {
        if self.peek() == Some(b'n') && self.literal(b"null").is_ok() {
            return true;
        }
        false
    }

    fn enter(&mut self) -> Result<()> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(ParseError);
        }
        Ok(())
    }

    /// Walks an object: `field` gets each key (raw bytes; escaped keys are
    /// decoded) and must consume the value (read it or `skip` it).
    pub fn object(
        &mut self,
        mut field: impl FnMut(&[u8], &mut Json<'a>) -> Result<()>,
    ) -> Result<()> {
        self.object_dyn(&mut field)
    }

    // One copy of the walking code for every caller: generic closures here
    // would be copied into each adapter and double the `.wasm`.
    fn object_dyn(
        &mut self,
        field: &mut dyn FnMut(&[u8], &mut Json<'a>) -> Result<()>,
    ) -> Result<()> {
        self.expect(b'{')?;
        self.enter()?;
        if self.peek() == Some(b'}') {
            self.pos += 1;
            self.depth -= 1;
            return Ok(());
        }
        loop {
            if self.peek() != Some(b'"') {
                return Err(ParseError);
            }
            let key = self.raw_string()?;
            self.expect(b':')?;
            if key.contains(&b'\\') {
                let decoded = unescape(key)?;
                field(decoded.as_bytes(), self)?;
            } else {
                field(key, self)?;
            }
            match self.peek() {
                Some(b',') => self.pos += 1,
                Some(b'}') => {
                    self.pos += 1;
                    self.depth -= 1;
                    return Ok(());
                }
                _ => return Err(ParseError),
            }
        }
    }

    /// An object, or `null` (nothing to walk).
    pub fn opt_object(
        &mut self,
        field: impl FnMut(&[u8], &mut Json<'a>) -> Result<()>,
    ) -> Result<()> {
        if self.null() {
            return Ok(());
        }
        self.object(field)
    }

    /// Walks an array: `item` gets each element's position and must consume it.
    pub fn array(
        &mut self,
        mut item: impl FnMut(usize, &mut Json<'a>) -> Result<()>,
    ) -> Result<()> {
        self.array_dyn(&mut item)
    }

    fn array_dyn(
        &mut self,
        item: &mut dyn FnMut(usize, &mut Json<'a>) -> Result<()>,
    ) -> Result<()> {
        self.expect(b'[')?;
        self.enter()?;
        if self.peek() == Some(b']') {
            self.pos += 1;
            self.depth -= 1;
            return Ok(());
        }
        let mut index = 0;
        loop {
            item(index, self)?;
            index += 1;
            match self.peek() {
                Some(b',') => self.pos += 1,
                Some(b']') => {
                    self.pos += 1;
                    self.depth -= 1;
                    return Ok(());
                }
                _ => return Err(ParseError),
            }
        }
    }

    /// An array, or `null`.
    pub fn opt_array(
        &mut self,
        item: impl FnMut(usize, &mut Json<'a>) -> Result<()>,
    ) -> Result<()> {
        if self.null() {
            return Ok(());
        }
        self.array(item)
    }

    /// The bytes between the quotes of a string, escapes left as they are.
    fn raw_string(&mut self) -> Result<&'a [u8]> {
        self.expect(b'"')?;
        let start = self.pos;
        // Keys and most values are short: a plain scan of the first bytes
        // beats setting up a vectorised search.
        for (offset, &b) in self
            .bytes
            .get(start..)
            .unwrap_or_default()
            .iter()
            .take(24)
            .enumerate()
        {
            match b {
                b'"' => {
                    self.pos = start + offset + 1;
                    return self.bytes.get(start..start + offset).ok_or(ParseError);
                }
                b'\\' => break,
                _ => {}
            }
        }
        loop {
            let rest = self.bytes.get(self.pos..).ok_or(ParseError)?;
            let found = memchr::memchr2(b'"', b'\\', rest).ok_or(ParseError)?;
            self.pos += found;
            if self.bytes.get(self.pos) == Some(&b'"') {
                let raw = self.bytes.get(start..self.pos).ok_or(ParseError)?;
                self.pos += 1;
                return Ok(raw);
            }
            // A backslash: skip it and the escaped byte (a \u's hex digits are
            // plain bytes the search passes over).
            self.pos += 2;
        }
    }

    /// A string value, borrowed unless it has escapes.
    pub fn str(&mut self) -> Result<Cow<'a, str>> {
        let raw = self.raw_string()?;
        if raw.contains(&b'\\') {
            unescape(raw).map(Cow::Owned)
        } else {
            std::str::from_utf8(raw)
                .map(Cow::Borrowed)
                .map_err(|_| ParseError)
        }
    }

    /// A string or `null`.
    pub fn opt_str(&mut self) -> Result<Option<Cow<'a, str>>> {
        if self.null() {
            return Ok(None);
        }
        self.str().map(Some)
    }

    /// Reads a string or `null` into `slot`.
    pub fn set_str(&mut self, slot: &mut Option<Cow<'a, str>>) -> Result<()> {
        *slot = self.opt_str()?;
        Ok(())
    }

    /// Calls `use_it` with a string value; nothing for `null`.
    pub fn with_str(&mut self, use_it: impl FnOnce(&str)) -> Result<()> {
        if let Some(text) = self.opt_str()? {
            use_it(&text);
        }
        Ok(())
    }

    /// Reads an integer into `slot`; `null` leaves what was there (usage
    /// counts repeat and later events may send null).
    pub fn update_u64(&mut self, slot: &mut Option<u64>) -> Result<()> {
        if let Some(n) = self.opt_u64()? {
            *slot = Some(n);
        }
        Ok(())
    }

    /// A non-negative integer or `null` (token counts). Other numbers are an error.
    pub fn opt_u64(&mut self) -> Result<Option<u64>> {
        if self.null() {
            return Ok(None);
        }
        let digits = self.number()?;
        std::str::from_utf8(digits)
            .ok()
            .and_then(|s| s.parse().ok())
            .map(Some)
            .ok_or(ParseError)
    }

    /// A number or `null`, for configuration values such as a sample rate.
    /// Decimal digits scaled by a power of ten: close to, not always exactly,
    /// the nearest f64. (The standard float parser's tables would add ~15 KB
    /// to the `.wasm` for one config field.)
    pub fn opt_f64(&mut self) -> Result<Option<f64>> {
        if self.null() {
            return Ok(None);
        }
        parse_decimal(self.number()?).map(Some)
    }

    /// A boolean or `null`.
    pub fn opt_bool(&mut self) -> Result<Option<bool>> {
        match self.peek() {
            Some(b'n') => self.literal(b"null").map(|_| None),
            Some(b't') => self.literal(b"true").map(|_| Some(true)),
            Some(b'f') => self.literal(b"false").map(|_| Some(false)),
            _ => Err(ParseError),
        }
    }

    fn number(&mut self) -> Result<&'a [u8]> {
        self.skip_ws();
        let start = self.pos;
        while let Some(b'0'..=b'9' | b'-' | b'+' | b'.' | b'e' | b'E') = self.bytes.get(self.pos) {
            self.pos += 1;
        }
        let number = self.bytes.get(start..self.pos).ok_or(ParseError)?;
        // A number has at least one digit; the loose scan above is checked here.
        if number.iter().any(u8::is_ascii_digit) {
            Ok(number)
        } else {
            Err(ParseError)
        }
    }

    /// Skips any value, checking its structure.
    pub fn skip(&mut self) -> Result<()> {
        match self.peek() {
            Some(b'{') => self.object(|_, json| json.skip()),
            Some(b'[') => self.array(|_, json| json.skip()),
            Some(b'"') => self.raw_string().map(|_| ()),
            Some(b't') => self.literal(b"true"),
            Some(b'f') => self.literal(b"false"),
            Some(b'n') => self.literal(b"null"),
            Some(b'-' | b'0'..=b'9') => self.number().map(|_| ()),
            _ => Err(ParseError),
        }
    }

    /// Skips a value and returns its JSON text as it was sent.
    pub fn raw_value(&mut self) -> Result<&'a str> {
        self.skip_ws();
        let start = self.pos;
        self.skip()?;
        let raw = self.bytes.get(start..self.pos).ok_or(ParseError)?;
        std::str::from_utf8(raw).map_err(|_| ParseError)
    }
}

fn parse_decimal(text: &[u8]) -> Result<f64> {
    let (negative, mut rest) = match text.split_first() {
        Some((b'-', rest)) => (true, rest),
        _ => (false, text),
    };
    let mut mantissa: u64 = 0;
    let mut exponent: i32 = 0;
    let mut digits = 0;
    let mut seen_point = false;
    while let Some((&b, tail)) = rest.split_first() {
        match b {
            b'0'..=b'9' => {
                digits += 1;
                if mantissa < 1 << 53 {
                    mantissa = mantissa * 10 + u64::from(b - b'0');
                    exponent -= i32::from(seen_point);
                } else {
                    exponent += i32::from(!seen_point);
                }
            }
            b'.' if !seen_point => seen_point = true,
            b'e' | b'E' => break,
            _ => return Err(ParseError),
        }
        rest = tail;
    }
    if digits == 0 {
        return Err(ParseError);
    }
    if let Some((_, exp)) = rest.split_first() {
        let exp = std::str::from_utf8(exp)
            .ok()
            .and_then(|e| e.parse::<i32>().ok())
            .ok_or(ParseError)?;
        exponent = exponent.saturating_add(exp);
    }
    let value = mantissa as f64 * 10f64.powi(exponent.clamp(-400, 400));
    Ok(if negative { -value } else { value })
}

/// The document with the value of every field named `sensitive` (at any
/// depth, any type) replaced by `"[redacted]"`; None when it is not JSON.
pub fn redact(bytes: &[u8], sensitive: &dyn Fn(&[u8]) -> bool) -> Option<String> {
    fn walk(
        j: &mut Json<'_>,
        sensitive: &dyn Fn(&[u8]) -> bool,
        spans: &mut Vec<(usize, usize)>,
    ) -> Result<()> {
        if j.peek_object() {
            j.object(|key, j| {
                if sensitive(key) {
                    j.skip_ws();
                    let start = j.pos;
                    j.skip()?;
                    spans.push((start, j.pos));
                    Ok(())
                } else {
                    walk(j, sensitive, spans)
                }
            })
        } else if j.peek_array() {
            j.array(|_, j| walk(j, sensitive, spans))
        } else {
            j.skip()
        }
    }
    let mut spans = Vec::new();
    Json::parse(bytes, |j| walk(j, sensitive, &mut spans)).ok()?;
    let mut out = Vec::with_capacity(bytes.len());
    let mut at = 0;
    for (start, end) in spans {
        out.extend_from_slice(bytes.get(at..start)?);
        out.extend_from_slice(b"\"[redacted]\"");
        at = end;
    }
    out.extend_from_slice(bytes.get(at..)?);
    String::from_utf8(out).ok()
}

/// The character of a one-letter escape (`\n` → newline); None for `u`
/// (four hex digits follow) and for anything JSON does not define. Shared by
/// the pull reader and the push tokenizer (`json_stream`).
pub(crate) fn simple_escape(code: u8) -> Option<char> {
    Some(match code {
        b'"' => '"',
        b'\\' => '\\',
        b'/' => '/',
        b'b' => '\u{8}',
        b'f' => '\u{c}',
        b'n' => '\n',
        b'r' => '\r',
        b't' => '\t',
        _ => return None,
    })
}

/// Decodes a string's escapes (`\n`, `\"`, `\u00e9`, surrogate pairs).
fn unescape(raw: &[u8]) -> Result<String> {
    let mut out = String::with_capacity(raw.len());
    let mut rest = raw;
    while let Some(slash) = memchr::memchr(b'\\', rest) {
        let (plain, tail) = rest.split_at(slash);
        out.push_str(std::str::from_utf8(plain).map_err(|_| ParseError)?);
        let code = *tail.get(1).ok_or(ParseError)?;
        rest = tail.get(2..).ok_or(ParseError)?;
        let ch = match code {
            b'u' => {
                let unit = hex4(rest)?;
                rest = rest.get(4..).ok_or(ParseError)?;
                if (0xD800..0xDC00).contains(&unit) {
                    // A high surrogate must be followed by `\u` and a low one.
                    let low = match rest.get(..2) {
                        Some(b"\\u") => hex4(rest.get(2..).ok_or(ParseError)?)?,
                        _ => return Err(ParseError),
                    };
                    if !(0xDC00..0xE000).contains(&low) {
                        return Err(ParseError);
                    }
                    rest = rest.get(6..).ok_or(ParseError)?;
                    char::from_u32(0x10000 + ((unit - 0xD800) << 10) + (low - 0xDC00))
                        .ok_or(ParseError)?
                } else {
                    char::from_u32(unit).ok_or(ParseError)?
                }
            }
            other => simple_escape(other).ok_or(ParseError)?,
        };
        out.push(ch);
    }
    out.push_str(std::str::from_utf8(rest).map_err(|_| ParseError)?);
    Ok(out)
}

fn hex4(bytes: &[u8]) -> Result<u32> {
    let digits = bytes.get(..4).ok_or(ParseError)?;
    let text = std::str::from_utf8(digits).map_err(|_| ParseError)?;
    u32::from_str_radix(text, 16).map_err(|_| ParseError)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn picks_fields_and_skips_the_rest() {
        let doc = br#" {"id":"c1","n":[1,2.5e3,-3,{"x":[true,false,null]}],"delta":{"content":"a\"b\u00e9\ud83d\ude00"},"u":null} "#;
        let mut id = None;
        let mut content = None;
        Json::parse(doc, |j| {
            j.object(|key, j| match key {
                b"id" => {
                    id = j.opt_str()?.map(|s| s.into_owned());
                    Ok(())
                }
                b"delta" => j.opt_object(|key, j| match key {
                    b"content" => {
                        content = j.opt_str()?.map(|s| s.into_owned());
                        Ok(())
                    }
                    _ => j.skip(),
                }),
                _ => j.skip(),
            })
        })
        .unwrap();
        assert_eq!(id.as_deref(), Some("c1"));
        assert_eq!(content.as_deref(), Some("a\"bé😀"));
    }

    #[test]
    fn malformed_documents_are_errors() {
        for bad in [
            &b""[..],
            b"{",
            b"{\"a\"}",
            b"{\"a\":}",
            b"{\"a\":1,}",
            b"[1,2",
            b"{\"a\":tru}",
            b"{\"a\":\"unterminated}",
            b"{\"a\":1} trailing",
            b"{\"a\":-}",
            b"not json",
        ] {
            assert!(
                Json::parse(bad, |j| j.skip()).is_err(),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn bad_escapes_in_a_kept_string_are_errors() {
        for bad in [
            &br#""\ud83d""#[..],
            br#""\ud83dx""#,
            br#""\x""#,
            br#""\u12""#,
            br#""\""#,
        ] {
            assert!(
                Json::parse(bad, |j| j.str().map(|_| ())).is_err(),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn invalid_utf8_in_a_kept_string_is_an_error() {
        assert!(Json::parse(b"\"\xff\"", |j| j.str().map(|_| ())).is_err());
        // A skipped string is not decoded.
        assert!(Json::parse(b"\"\xff\"", |j| j.skip()).is_ok());
    }

    #[test]
    fn deep_nesting_is_refused_without_exhausting_the_stack() {
        let deep = "[".repeat(100_000) + &"]".repeat(100_000);
        assert!(Json::parse(deep.as_bytes(), |j| j.skip()).is_err());
        let ok = "[".repeat(100) + &"]".repeat(100);
        assert!(Json::parse(ok.as_bytes(), |j| j.skip()).is_ok());
    }

    #[test]
    fn numbers_and_raw_values() {
        let mut n = None;
        let mut raw = "";
        Json::parse(br#"{"n": 42, "input": {"q": [1, "x"]}}"#, |j| {
            j.object(|key, j| match key {
                b"n" => {
                    n = j.opt_u64()?;
                    Ok(())
                }
                b"input" => {
                    raw = j.raw_value()?;
                    Ok(())
                }
                _ => j.skip(),
            })
        })
        .unwrap();
        assert_eq!(n, Some(42));
        assert_eq!(raw, r#"{"q": [1, "x"]}"#);
        assert!(Json::parse(b"1.5", |j| j.opt_u64()).is_err());
        assert!(Json::parse(b"-1", |j| j.opt_u64()).is_err());
    }

    #[test]
    fn decimals() {
        for (text, value) in [
            ("1", 1.0),
            ("0.25", 0.25),
            ("1.0", 1.0),
            ("-2.5e2", -250.0),
            ("5E-1", 0.5),
            ("0", 0.0),
        ] {
            let got = Json::parse(text.as_bytes(), |j| j.opt_f64())
                .unwrap()
                .unwrap();
            assert!((got - value).abs() < 1e-12, "{text}: {got}");
        }
        for bad in ["1.2.3", "e5", "-", "1e", "1ex"] {
            assert!(
                Json::parse(bad.as_bytes(), |j| j.opt_f64()).is_err(),
                "{bad}"
            );
        }
    }

    #[test]
    fn escaped_keys_are_decoded() {
        let mut seen = false;
        Json::parse(br#"{"\u0063ontent":"x"}"#, |j| {
            j.object(|key, j| {
                seen |= key == b"content";
                j.skip()
            })
        })
        .unwrap();
        assert!(seen);
    }
}
