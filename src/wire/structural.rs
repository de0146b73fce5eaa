//! The wire splitter's fast path: finds where a compact JSON object ends, 64 bytes at a time.
//!
//! Each 64-byte block is classified with SIMD byte compares (SSE2 on x86-64, NEON on arm64, both
//! part of those targets' baseline; a plain loop elsewhere) into one bit per byte: quotes,
//! backslashes, opening and closing brackets, whitespace. Escaped quotes are removed, a prefix XOR
//! over the quote bits marks what is inside strings, and only the brackets outside strings are
//! visited, one by one, to follow the nesting. Scan items are short strings between many small
//! maps, so this does per bracket what a byte-by-byte scanner does per byte.
//!
//! It answers only when the answer is certain: an object with whitespace, control bytes or a
//! backslash outside strings, brackets that do not match, nesting deeper than 64 or input that ends first
//! gives `None`, and the general scanner takes it (removing the whitespace or reporting the error).
//! The module uses nothing outside `std`, so its tests also build alone for another architecture
//! (`scripts/test-wire-arm64.sh` runs them on arm64 under QEMU).

/// One bit per byte of a 64-byte block (bit `i` is byte `i`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct Masks {
    /// `"`
    pub quote: u64,
    /// `\`
    pub backslash: u64,
    /// `{` or `[`
    pub open: u64,
    /// `}` or `]`
    pub close: u64,
    /// Bytes with bit 5 set: among brackets, the curly ones.
    pub curly: u64,
    /// Space and control bytes (≤ 0x20): never allowed outside strings in compact JSON.
    pub space: u64,
}

/// The end (exclusive) of the compact JSON object or array starting at `b[start]`, or `None` when
/// the general scanner must decide (see the module documentation).
pub(crate) fn object_end(b: &[u8], start: usize) -> Option<usize> {
    if !matches!(b.get(start), Some(b'{' | b'[')) {
        return None;
    }
    let mut offset = start;
    let mut state = State::default();
    while offset < b.len() {
        let masks = match b.get(offset..offset + 64) {
            Some(block) => classify(block.try_into().ok()?),
            None => {
                // The last, partial block, padded with a byte that is no token: if the object
                // has not ended before the padding, the input ends and the answer is `None`.
                let mut last = [b'x'; 64];
                last[..b.len() - offset].copy_from_slice(&b[offset..]);
                classify(&last)
            }
        };
        if let Some(end) = state.block(&masks)? {
            return Some(offset + end);
        }
        offset += 64;
    }
    None
}

/// What carries over from one block to the next.
#[derive(Debug, Default)]
struct State {
    /// All ones when the previous block ended inside a string.
    in_string: u64,
    /// 1 when the previous block ended with a backslash that escapes this block's first byte.
    escape_carry: u64,
    /// Open brackets.
    depth: u32,
    /// One bit per open bracket, innermost lowest: 1 for `{`, 0 for `[`.
    stack: u64,
}

impl State {
    /// Follows one block. `Some(Some(end))`: the object ends at byte `end` of this block;
    /// `Some(None)`: it goes on; `None`: give up.
    fn block(&mut self, m: &Masks) -> Option<Option<usize>> {
        let escaped = self.escaped(m.backslash);
        let quotes = m.quote & !escaped;
        // Set from an opening quote up to (not including) its closing quote.
        let inside = prefix_xor(quotes) ^ self.in_string;
        self.in_string = ((inside as i64) >> 63) as u64;
        let outside = !(inside | quotes);
        let opens = m.open & outside;
        let closes = m.close & outside;
        // Outside strings, whitespace needs removing and a backslash is not JSON.
        let stray = (m.space | m.backslash) & outside;
        let mut brackets = opens | closes;
        while brackets != 0 {
            let at = brackets.trailing_zeros();
            let curly = (m.curly >> at) & 1;
            if (opens >> at) & 1 == 1 {
                if self.depth == 64 {
                    return None;
                }
                self.stack = (self.stack << 1) | curly;
                self.depth += 1;
            } else {
                if self.depth == 0 || self.stack & 1 != curly {
                    return None;
                }
                self.stack >>= 1;
                self.depth -= 1;
                if self.depth == 0 {
                    let before = (1u64 << at) - 1;
                    return (stray & before == 0).then_some(Some(at as usize + 1));
                }
            }
            brackets &= brackets - 1;
        }
        (stray == 0).then_some(None)
    }

    /// The bytes escaped by a backslash. Backslashes are rare in items, so a block without any
    /// costs one test.
    fn escaped(&mut self, backslashes: u64) -> u64 {
        let mut escaped = self.escape_carry;
        self.escape_carry = 0;
        // An escaped backslash escapes nothing.
        let mut pending = backslashes & !escaped;
        while pending != 0 {
            let at = pending.trailing_zeros();
            if at == 63 {
                self.escape_carry = 1;
                break;
            }
            escaped |= 1 << (at + 1);
            pending &= !(0b11 << at);
        }
        escaped
    }
}

/// Bit `i` of the result is the XOR of bits `0..=i` of `x`.
fn prefix_xor(mut x: u64) -> u64 {
    x ^= x << 1;
    x ^= x << 2;
    x ^= x << 4;
    x ^= x << 8;
    x ^= x << 16;
    x ^= x << 32;
    x
}

/// Classifies a block the portable way: the reference the SIMD versions are tested against.
#[cfg_attr(any(target_arch = "x86_64", target_arch = "aarch64"), allow(dead_code))]
fn classify_scalar(block: &[u8; 64]) -> Masks {
    let mut m = Masks::default();
    for (i, &c) in block.iter().enumerate() {
        let bit = 1u64 << i;
        let folded = c | 0x20;
        m.quote |= if c == b'"' { bit } else { 0 };
        m.backslash |= if c == b'\\' { bit } else { 0 };
        m.open |= if folded == b'{' { bit } else { 0 };
        m.close |= if folded == b'}' { bit } else { 0 };
        m.curly |= if c & 0x20 != 0 { bit } else { 0 };
        m.space |= if c <= b' ' { bit } else { 0 };
    }
    m
}

#[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
fn classify(block: &[u8; 64]) -> Masks {
    classify_scalar(block)
}

#[cfg(target_arch = "x86_64")]
fn classify(block: &[u8; 64]) -> Masks {
    use std::arch::x86_64::{
        __m128i, _mm_cmpeq_epi8, _mm_loadu_si128, _mm_max_epu8, _mm_movemask_epi8, _mm_or_si128,
        _mm_set1_epi8, _mm_slli_epi16,
    };
    let mut m = Masks::default();
    // SAFETY: SSE2 is part of the x86-64 baseline, so these intrinsics are always available;
    // each unaligned load reads 16 bytes at offsets 0, 16, 32 and 48 of a 64-byte array.
    unsafe {
        let bits = |v: __m128i| _mm_movemask_epi8(v) as u16 as u64;
        let same = |c: u8| _mm_set1_epi8(c as i8);
        for k in 0..4 {
            let v = _mm_loadu_si128(block.as_ptr().add(16 * k).cast());
            let folded = _mm_or_si128(v, same(0x20));
            let shift = 16 * k;
            m.quote |= bits(_mm_cmpeq_epi8(v, same(b'"'))) << shift;
            m.backslash |= bits(_mm_cmpeq_epi8(v, same(b'\\'))) << shift;
            m.open |= bits(_mm_cmpeq_epi8(folded, same(b'{'))) << shift;
            m.close |= bits(_mm_cmpeq_epi8(folded, same(b'}'))) << shift;
            // Bit 5 moved to bit 7, where movemask reads it.
            m.curly |= bits(_mm_slli_epi16::<2>(v)) << shift;
            // c ≤ 0x20 exactly when max(c, 0x20) == 0x20 (unsigned).
            m.space |= bits(_mm_cmpeq_epi8(_mm_max_epu8(v, same(b' ')), same(b' '))) << shift;
        }
    }
    m
}

#[cfg(target_arch = "aarch64")]
fn classify(block: &[u8; 64]) -> Masks {
    use std::arch::aarch64::{
        uint8x16_t, vandq_u8, vceqq_u8, vcleq_u8, vdupq_n_u8, vgetq_lane_u64, vld1q_u8, vorrq_u8,
        vpaddq_u8, vreinterpretq_u64_u8, vtstq_u8,
    };
    const WEIGHTS: [u8; 16] = [1, 2, 4, 8, 16, 32, 64, 128, 1, 2, 4, 8, 16, 32, 64, 128];
    // SAFETY: NEON is part of the aarch64 baseline, so these intrinsics are always available;
    // the loads read 16 bytes at offsets 0, 16, 32 and 48 of a 64-byte array and of WEIGHTS.
    unsafe {
        let weights = vld1q_u8(WEIGHTS.as_ptr());
        // NEON has no movemask: weigh each lane by its bit and add neighbours until the eight
        // bytes of the low half are the mask's eight bytes.
        let bits = |v: [uint8x16_t; 4]| {
            let a = vpaddq_u8(vandq_u8(v[0], weights), vandq_u8(v[1], weights));
            let b = vpaddq_u8(vandq_u8(v[2], weights), vandq_u8(v[3], weights));
            let ab = vpaddq_u8(a, b);
            vgetq_lane_u64::<0>(vreinterpretq_u64_u8(vpaddq_u8(ab, ab)))
        };
        let v = [0, 16, 32, 48].map(|o| vld1q_u8(block.as_ptr().add(o)));
        let folded = v.map(|x| vorrq_u8(x, vdupq_n_u8(0x20)));
        let eq = |x: [uint8x16_t; 4], c: u8| bits(x.map(|x| vceqq_u8(x, vdupq_n_u8(c))));
        Masks {
            quote: eq(v, b'"'),
            backslash: eq(v, b'\\'),
            open: eq(folded, b'{'),
            close: eq(folded, b'}'),
            curly: bits(v.map(|x| vtstq_u8(x, vdupq_n_u8(0x20)))),
            space: bits(v.map(|x| vcleq_u8(x, vdupq_n_u8(b' ')))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A small deterministic generator, so failures reproduce.
    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut x = self.0;
            x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            x ^ (x >> 31)
        }
        fn below(&mut self, n: usize) -> usize {
            (self.next() % n as u64) as usize
        }
    }

    #[test]
    fn simd_classification_equals_the_scalar_one() {
        const INTERESTING: &[u8] =
            b"\"\\{}[]:, \t\n\r\x00\x1f\x20\x21\x3b\x5b\x5d\x7b\x7d\x7f\x80\xc3\xffaZ09";
        let mut rng = Rng(7);
        for _ in 0..20_000 {
            let mut block = [0u8; 64];
            for byte in &mut block {
                *byte = if rng.below(4) == 0 {
                    rng.next() as u8
                } else {
                    INTERESTING[rng.below(INTERESTING.len())]
                };
            }
            assert_eq!(classify(&block), classify_scalar(&block), "{block:?}");
        }
        let every: Vec<u8> = (0..=255).collect();
        for chunk in every.chunks(64) {
            let block: [u8; 64] = chunk.try_into().unwrap();
            assert_eq!(classify(&block), classify_scalar(&block));
        }
    }

    /// The reference: a byte-by-byte scanner with the same rules.
    fn reference_end(b: &[u8], start: usize) -> Option<usize> {
        let (mut stack, mut in_string, mut escaped) = (Vec::new(), false, false);
        for (i, &c) in b.iter().enumerate().skip(start) {
            if in_string {
                match (escaped, c) {
                    (true, _) => escaped = false,
                    (false, b'\\') => escaped = true,
                    (false, b'"') => in_string = false,
                    _ => {}
                }
                continue;
            }
            match c {
                b'"' => in_string = true,
                b'{' | b'[' => {
                    if stack.len() == 64 {
                        return None;
                    }
                    stack.push(c);
                }
                b'}' | b']' => {
                    let open = stack.pop()?;
                    if (open == b'{') != (c == b'}') {
                        return None;
                    }
                    if stack.is_empty() {
                        return Some(i + 1);
                    }
                }
                c if c <= b' ' || c == b'\\' => return None,
                _ => {}
            }
        }
        None
    }

    /// A random compact JSON value in DynamoDB's shape, with the awkward bytes: escaped quotes and
    /// backslashes (also in runs), unicode, brackets inside strings, long strings across blocks.
    fn value(rng: &mut Rng, depth: u32, out: &mut Vec<u8>) {
        match if depth > 6 { 0 } else { rng.below(4) } {
            0 | 1 => {
                out.push(b'"');
                let pieces: [&[u8]; 10] = [
                    b"abc",
                    b"\\\"",
                    b"\\\\",
                    b"\\\\\\\"",
                    b"{[}]",
                    b"H\xc3\xa0 N\xe1\xbb\x99i",
                    b" ",
                    b"\\u00e9",
                    b"0123456789abcdef0123456789abcdef0123456789",
                    b",:",
                ];
                for _ in 0..rng.below(6) {
                    out.extend_from_slice(pieces[rng.below(pieces.len())]);
                }
                out.push(b'"');
            }
            2 => {
                out.push(b'{');
                for i in 0..rng.below(5) {
                    if i > 0 {
                        out.push(b',');
                    }
                    out.extend_from_slice(b"\"k\":");
                    value(rng, depth + 1, out);
                }
                out.push(b'}');
            }
            _ => {
                out.push(b'[');
                for i in 0..rng.below(5) {
                    if i > 0 {
                        out.push(b',');
                    }
                    value(rng, depth + 1, out);
                }
                out.push(b']');
            }
        }
    }

    #[test]
    fn object_ends_match_the_byte_by_byte_scanner() {
        let mut rng = Rng(11);
        for round in 0..5_000 {
            let mut body = vec![b'x'; rng.below(70)];
            let start = body.len();
            body.push(b'{');
            body.extend_from_slice(b"\"a\":");
            value(&mut rng, 0, &mut body);
            body.push(b'}');
            let end = body.len();
            // What follows: nothing, the next item, or whitespace.
            body.extend_from_slice([&b""[..], b",{\"b\":1}]}", b" ,\n"][rng.below(3)]);
            assert_eq!(reference_end(&body, start), Some(end), "round {round}");
            assert_eq!(
                object_end(&body, start),
                Some(end),
                "round {round}: {body:?}"
            );
            // Any damage is either still found exactly or left to the general scanner.
            let mut damaged = body.clone();
            let at = start + 1 + rng.below(end - start - 1);
            damaged[at] = b" {}[]\"\\x"[rng.below(8)];
            let expected = reference_end(&damaged, start);
            let got = object_end(&damaged, start);
            assert!(
                got.is_none() || got == expected,
                "round {round}: {got:?} vs {expected:?}"
            );
            if expected.is_none() {
                assert_eq!(got, None, "round {round}");
            }
            // Cut short, it never ends.
            assert_eq!(object_end(&body[..end - 1], start), None);
        }
    }

    #[test]
    fn block_boundaries_inside_escapes_and_strings_are_followed() {
        // Shift one object across every alignment so that its backslash runs, quotes and
        // brackets each land on byte 63 of a block and byte 0 of the next.
        let object =
            br#"{"s":{"S":"a\\\"}\\"},"t":{"L":[{"S":"\\\\"},{"S":"]\""}]},"u":{"S":"x"}}"#;
        for pad in 0..130 {
            let mut body = vec![b'x'; pad];
            body.extend_from_slice(object);
            body.extend_from_slice(b"]}");
            assert_eq!(
                object_end(&body, pad),
                Some(pad + object.len()),
                "pad {pad}"
            );
        }
    }

    #[test]
    fn whitespace_mismatches_and_depth_are_left_to_the_general_scanner() {
        assert_eq!(object_end(br#"{"a":{"S":"x y"}}"#, 0), Some(17));
        assert_eq!(object_end(br#"{"a": {"S":"x"}}"#, 0), None);
        assert_eq!(object_end(br#"{"a":{"S":"x"}} "#, 0), Some(15));
        assert_eq!(object_end(br#"{"a":{"L":[{"S":"x"}}]}"#, 0), None);
        assert_eq!(object_end(br#"{"a":{"S":"x"}"#, 0), None);
        assert_eq!(object_end(b"x{}", 0), None);
        assert_eq!(object_end(b"{}", 0), Some(2));
        let deep = |n: usize| [vec![b'['; n], vec![b']'; n]].concat();
        assert_eq!(object_end(&deep(64), 0), Some(128));
        assert_eq!(object_end(&deep(65), 0), None);
    }
}
