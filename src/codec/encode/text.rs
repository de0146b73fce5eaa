//! JSON string escaping tuned for the hot path: runs of plain bytes are copied in one go.

/// Byte classes: 0 = copy as is, b'u' = \u00XX, anything else = backslash + that byte.
static ESCAPE: [u8; 256] = {
    let mut table = [0u8; 256];
    let mut i = 0;
    while i < 0x20 {
        table[i] = b'u';
        i += 1;
    }
    table[b'\n' as usize] = b'n';
    table[b'\r' as usize] = b'r';
    table[b'\t' as usize] = b't';
    table[0x08] = b'b';
    table[0x0c] = b'f';
    table[b'"' as usize] = b'"';
    table[b'\\' as usize] = b'\\';
    table
};

const HEX: &[u8; 16] = b"0123456789abcdef";

/// Appends `s` as a quoted JSON string.
pub(crate) fn write_json_str(out: &mut Vec<u8>, s: &str) {
    let bytes = s.as_bytes();
    out.reserve(bytes.len() + 2);
    out.push(b'"');
    let mut start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        let class = ESCAPE[b as usize];
        if class == 0 {
            continue;
        }
        out.extend_from_slice(&bytes[start..i]);
        if class == b'u' {
            out.extend_from_slice(&[
                b'\\',
                b'u',
                b'0',
                b'0',
                HEX[(b >> 4) as usize],
                HEX[(b & 0xf) as usize],
            ]);
        } else {
            out.extend_from_slice(&[b'\\', class]);
        }
        start = i + 1;
    }
    out.extend_from_slice(&bytes[start..]);
    out.push(b'"');
}

/// Appends `bytes` as a quoted base64 (standard alphabet, padded) JSON string.
pub(crate) fn write_base64_str(out: &mut Vec<u8>, bytes: &[u8]) {
    use base64::Engine;
    let start = out.len();
    let len = base64::encoded_len(bytes.len(), true).unwrap_or(0);
    out.resize(start + len + 2, 0);
    out[start] = b'"';
    let written = base64::engine::general_purpose::STANDARD
        .encode_slice(bytes, &mut out[start + 1..start + 1 + len])
        .unwrap_or(0);
    debug_assert_eq!(written, len);
    out[start + 1 + len] = b'"';
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escaping_matches_serde_json_for_every_awkward_character() {
        let mut all = String::new();
        for c in 0u32..0x80 {
            all.push(char::from_u32(c).unwrap());
        }
        all.push_str("é😀\u{2028}");
        for s in [
            "",
            "plain",
            "a\"b\\c",
            "\n\r\t\u{8}\u{c}\u{0}\u{1f}",
            all.as_str(),
        ] {
            let mut out = Vec::new();
            write_json_str(&mut out, s);
            let parsed: String = serde_json::from_slice(&out).unwrap();
            assert_eq!(parsed, s);
            assert_eq!(
                String::from_utf8(out).unwrap(),
                serde_json::to_string(s).unwrap()
            );
        }
    }

    #[test]
    fn base64_is_standard_and_padded() {
        let mut out = Vec::new();
        write_base64_str(&mut out, &[0, 255, 10]);
        write_base64_str(&mut out, &[]);
        assert_eq!(out, b"\"AP8K\"\"\"");
    }
}
