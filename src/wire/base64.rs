//! Standard base64 (RFC 4648, `+/`, `=` padding), decoding only: Bedrock's
//! `invoke-with-response-stream` wraps each payload as `{"bytes": base64}`.
//! A few lines, not a crate: this is all the filter needs of one.

fn value(c: u8) -> Option<u32> {
    match c {
        b'A'..=b'Z' => Some(u32::from(c - b'A')),
        b'a'..=b'z' => Some(u32::from(c - b'a') + 26),
        b'0'..=b'9' => Some(u32::from(c - b'0') + 52),
        b'+' => Some(62),
        b'/' => Some(63),
        _ => None,
    }
}

/// The decoded bytes; None for anything that is not base64.
pub fn decode(text: &[u8]) -> Option<Vec<u8>> {
    let text = text
        .strip_suffix(b"==")
        .or_else(|| text.strip_suffix(b"="))
        .unwrap_or(text);
    if text.len() % 4 == 1 {
        return None;
    }
    let mut out = Vec::with_capacity(text.len() * 3 / 4);
    for group in text.chunks(4) {
        let mut bits = 0u32;
        for &c in group {
            bits = (bits << 6) | value(c)?;
        }
        let bytes = bits.to_be_bytes();
        match group.len() {
            4 => out.extend_from_slice(&bytes[1..]),
            3 => out.extend_from_slice(&((bits << 6).to_be_bytes()[1..3])),
            2 => out.push((bits >> 4) as u8),
            _ => return None,
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc4648_vectors_and_refusals() {
        for (plain, coded) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(
                decode(coded.as_bytes()).as_deref(),
                Some(plain.as_bytes()),
                "{coded}"
            );
        }
        for bad in ["Zm9v!", "Z", "Zm9vY", "Zm=v"] {
            assert_eq!(decode(bad.as_bytes()), None, "{bad}");
        }
    }
}
