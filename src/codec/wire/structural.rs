//! The wire splitter's fast path: cuts a Scan response's `Items` array into its items, 64 bytes
//! at a time, in one pass.
//!
//! Each 64-byte block is classified with SIMD byte compares (AVX2 on the x86-64 CPUs that have it,
//! NEON on arm64; a plain loop elsewhere) into one bit per byte: quotes, backslashes,
//! opening and closing brackets, whitespace. Escaped quotes are removed, and a prefix XOR over the
//! quote bits marks what is inside strings. The nesting depth is then followed over the brackets
//! outside strings: on x86-64 as a prefix sum over the block's bytes, elsewhere by visiting
//! bracket after bracket. Either way, only the brackets where the depth reaches the array's or
//! the items' own level are looked at one by one, and there is no branch that depends on the
//! data except there.
//!
//! It answers only when the answer is certain: whitespace, control bytes or a backslash outside
//! strings, an element that is not an object, an item or the array closed by the wrong kind of
//! bracket, nesting deeper than 64 (the array included), anything but one comma between items,
//! or input that ends first gives `None`, and the general scanner takes the array (removing the
//! whitespace or reporting the error). Inside an item only the depth is followed: it is a
//! structural scanner, not a validating parser (see the `wire` module), and a `]` closing a `{`
//! deep in an item is DynamoDB's never to send, like a missing colon. The module uses nothing
//! outside `std`, so its tests also build alone for another architecture
//! (`scripts/test-wire-arm64.sh` runs them on arm64 under QEMU).
//!
//! One file of about 800 lines, tests included, on purpose: `scripts/test-wire-arm64.sh` builds
//! this file alone with `rustc --test` for arm64 and runs it under QEMU, so the NEON path is
//! tested on every CI run.

use std::ops::Range;

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
    /// Space and control bytes (≤ 0x20): never allowed outside strings in compact JSON.
    pub space: u64,
}

/// The items of the compact JSON array of objects starting at `b[start]` (a Scan response's
/// `[{…},{…}]`): appends each item's range to `items` and returns the array's end (exclusive), or
/// `None` when the general scanner must decide (see the module documentation), leaving in `items`
/// whatever it had found, for the caller to discard.
pub(crate) fn array_items(b: &[u8], start: usize, items: &mut Vec<Range<usize>>) -> Option<usize> {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2")
        && std::arch::is_x86_feature_detected!("pclmulqdq")
    {
        // SAFETY: the CPU has AVX2 and carry-less multiplication, as just checked.
        return unsafe { array_items_avx2(b, start, items) };
    }
    walk(b, start, items, classify, prefix_xor)
}

/// [`array_items`] on the x86-64 CPUs with AVX2 and carry-less multiplication (all of Lambda's):
/// 32-byte compares classify the block, a carry-less multiply finds the strings, and the nesting
/// depth after every byte comes from a prefix sum over the bytes (+1 at an opening bracket, -1 at
/// a closing one) instead of a walk from bracket to bracket. Only a block where the depth reaches
/// the items' level visits its brackets there: one block in eight of a page of students, where
/// one item ends and the next begins.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,pclmulqdq")]
unsafe fn array_items_avx2(b: &[u8], start: usize, items: &mut Vec<Range<usize>>) -> Option<usize> {
    blocks(b, start, items, |state, block, offset, items| {
        // SAFETY: the CPU has both features (see the caller).
        unsafe { state.block_avx2(b, block, offset, items) }
    })
}

/// [`prefix_xor`] in one instruction: multiplying by all ones without carries XORs each bit
/// into every higher one.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "pclmulqdq")]
#[inline]
unsafe fn prefix_xor_clmul(x: u64) -> u64 {
    use std::arch::x86_64::{_mm_clmulepi64_si128, _mm_cvtsi128_si64, _mm_set_epi64x};
    let product = _mm_clmulepi64_si128::<0>(_mm_set_epi64x(0, x as i64), _mm_set_epi64x(0, -1));
    _mm_cvtsi128_si64(product) as u64
}

/// The block loop with a classifier and a prefix XOR, inlined into each caller so that they inline
/// too.
#[inline(always)]
fn walk(
    b: &[u8],
    start: usize,
    items: &mut Vec<Range<usize>>,
    classify: impl Fn(&[u8; 64]) -> Masks,
    prefix_xor: impl Fn(u64) -> u64,
) -> Option<usize> {
    blocks(b, start, items, |state, block, offset, items| {
        state.block(b, &classify(block), offset, items, &prefix_xor)
    })
}

/// The loop both ways share: hands `step` each 64-byte block of `b` from the array's `[` on,
/// until it answers (`Some(end)` or `None`, see [`State::block`]).
#[inline(always)]
fn blocks(
    b: &[u8],
    start: usize,
    items: &mut Vec<Range<usize>>,
    mut step: impl FnMut(&mut State, &[u8; 64], usize, &mut Vec<Range<usize>>) -> Option<Option<usize>>,
) -> Option<usize> {
    if b.get(start) != Some(&b'[') {
        return None;
    }
    let mut state = State {
        gap: start + 1,
        ..State::default()
    };
    let mut offset = start;
    let mut padded = [b'x'; 64];
    while offset < b.len() {
        let block: &[u8; 64] = match b.get(offset..offset + 64) {
            Some(block) => block.try_into().ok()?,
            None => {
                // The last, partial block, padded with a byte that is no token: if the array
                // has not ended before the padding, the input ends and the answer is `None`.
                padded[..b.len() - offset].copy_from_slice(&b[offset..]);
                &padded
            }
        };
        if let Some(end) = step(&mut state, block, offset, items)? {
            return Some(end);
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
    /// Open brackets, the array's own included.
    depth: u32,
    /// Where the array's `[` or the last item ended: the next item opens here (the first) or one
    /// byte later, after a comma; the array closes here.
    gap: usize,
    /// Whether an item has ended yet.
    after_item: bool,
    /// Where the open item began.
    item_start: usize,
}

impl State {
    /// Follows one block at `offset` of `b`. `Some(Some(end))`: the array ends at byte `end`;
    /// `Some(None)`: it goes on; `None`: give up.
    #[inline(always)]
    fn block(
        &mut self,
        b: &[u8],
        m: &Masks,
        offset: usize,
        items: &mut Vec<Range<usize>>,
        prefix_xor: &impl Fn(u64) -> u64,
    ) -> Option<Option<usize>> {
        let outside = self.outside_strings(m.quote, m.backslash, prefix_xor);
        let opens = m.open & outside;
        // Outside strings, whitespace needs removing and a backslash is not JSON.
        let stray = (m.space | m.backslash) & outside;
        let mut brackets = (m.open | m.close) & outside;
        while brackets != 0 {
            brackets = self.nest(brackets, opens);
            if brackets == 0 {
                break;
            }
            // The lowest bracket left was followed and is a rare case: the items' own level, or
            // nesting too deep.
            let at = brackets.trailing_zeros();
            let open = (opens >> at) & 1 == 1;
            if let Some(end) = self.level_event(b, offset, at, open, stray, items)? {
                return Some(Some(end));
            }
            brackets &= brackets - 1;
        }
        (stray == 0).then_some(None)
    }

    /// The bytes of a block outside strings (quotes excluded), from its quote and backslash bits.
    #[inline(always)]
    fn outside_strings(
        &mut self,
        quote: u64,
        backslash: u64,
        prefix_xor: &impl Fn(u64) -> u64,
    ) -> u64 {
        let escaped = self.escaped(backslash);
        let quotes = quote & !escaped;
        // Set from an opening quote up to (not including) its closing quote.
        let inside = prefix_xor(quotes) ^ self.in_string;
        self.in_string = ((inside as i64) >> 63) as u64;
        !(inside | quotes)
    }

    /// A bracket at byte `at` of the block at `offset` that left `self.depth` open brackets at
    /// the array's or the items' level (or too deep): an item starts or ends, or the array ends
    /// (`Some(Some(end))`). Only here do bracket kinds matter to the cut: the array is `[…]`
    /// and each item `{…}`.
    #[inline(always)]
    fn level_event(
        &mut self,
        b: &[u8],
        offset: usize,
        at: u32,
        open: bool,
        stray: u64,
        items: &mut Vec<Range<usize>>,
    ) -> Option<Option<usize>> {
        let here = offset + at as usize;
        let byte = b.get(here).copied();
        match (open, self.depth) {
            (_, 65..) => return None,
            (true, 2) => {
                let placed = if self.after_item {
                    here == self.gap + 1 && b.get(self.gap) == Some(&b',')
                } else {
                    here == self.gap
                };
                if byte != Some(b'{') || !placed {
                    return None;
                }
                self.item_start = here;
            }
            (false, 1) => {
                if byte != Some(b'}') {
                    return None;
                }
                items.push(self.item_start..here + 1);
                self.gap = here + 1;
                self.after_item = true;
            }
            (false, 0) => {
                let before = (1u64 << at) - 1;
                let clean = byte == Some(b']') && stray & before == 0 && here == self.gap;
                return clean.then_some(Some(here + 1));
            }
            // The array's own `[`.
            _ => {}
        }
        Some(None)
    }

    /// [`State::block`] with the depth from a prefix sum (see [`array_items_avx2`]).
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2,pclmulqdq")]
    #[inline]
    unsafe fn block_avx2(
        &mut self,
        b: &[u8],
        block: &[u8; 64],
        offset: usize,
        items: &mut Vec<Range<usize>>,
    ) -> Option<Option<usize>> {
        use std::arch::x86_64::{
            __m256i, _mm256_add_epi8, _mm256_and_si256, _mm256_cmpeq_epi8, _mm256_cmpgt_epi8,
            _mm256_extract_epi8, _mm256_loadu_si256, _mm256_max_epu8, _mm256_movemask_epi8,
            _mm256_or_si256, _mm256_permute2x128_si256, _mm256_set1_epi32, _mm256_set1_epi64x,
            _mm256_set1_epi8, _mm256_setr_epi8, _mm256_shuffle_epi8, _mm256_slli_si256,
            _mm256_storeu_si256, _mm256_sub_epi8,
        };
        let same = |c: u8| _mm256_set1_epi8(c as i8);
        let bits = |lo: __m256i, hi: __m256i| {
            _mm256_movemask_epi8(lo) as u32 as u64 | (_mm256_movemask_epi8(hi) as u32 as u64) << 32
        };
        // SAFETY: reads 32 bytes at offsets 0 and 32 of a 64-byte array.
        let v = unsafe {
            [
                _mm256_loadu_si256(block.as_ptr().cast()),
                _mm256_loadu_si256(block.as_ptr().add(32).cast()),
            ]
        };
        let quote = v.map(|x| _mm256_cmpeq_epi8(x, same(b'"')));
        let backslash = v.map(|x| _mm256_cmpeq_epi8(x, same(b'\\')));
        // c ≤ 0x20 exactly when max(c, 0x20) == 0x20 (unsigned).
        let space = v.map(|x| _mm256_cmpeq_epi8(_mm256_max_epu8(x, same(b' ')), same(b' ')));
        let folded = v.map(|x| _mm256_or_si256(x, same(0x20)));
        let open = folded.map(|x| _mm256_cmpeq_epi8(x, same(b'{')));
        let close = folded.map(|x| _mm256_cmpeq_epi8(x, same(b'}')));
        let backslash = bits(backslash[0], backslash[1]);
        let outside = self.outside_strings(bits(quote[0], quote[1]), backslash, &|x| {
            // SAFETY: the CPU has carry-less multiplication (see the caller).
            unsafe { prefix_xor_clmul(x) }
        });
        let stray = (bits(space[0], space[1]) | backslash) & outside;

        // The outside bits back to one byte each: 0xFF outside strings.
        let spread = _mm256_setr_epi8(
            0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 2, 2, 2, 2, 2, 2, 3, 3, 3, 3, 3,
            3, 3, 3,
        );
        let weight = _mm256_set1_epi64x(0x8040_2010_0804_0201u64 as i64);
        let outside_v = [outside as u32, (outside >> 32) as u32].map(|half| {
            let picked = _mm256_shuffle_epi8(_mm256_set1_epi32(half as i32), spread);
            _mm256_cmpeq_epi8(_mm256_and_si256(picked, weight), weight)
        });
        // -1 (0xFF) at the brackets outside strings.
        let opens = [0, 1].map(|k| _mm256_and_si256(open[k], outside_v[k]));
        let closes = [0, 1].map(|k| _mm256_and_si256(close[k], outside_v[k]));
        // Depth after each byte, relative to the block's start: a prefix sum of the steps,
        // within each 16-byte lane, then carried across lanes and halves.
        let prefix_sum = |steps: __m256i| {
            let mut x = steps;
            x = _mm256_add_epi8(x, _mm256_slli_si256::<1>(x));
            x = _mm256_add_epi8(x, _mm256_slli_si256::<2>(x));
            x = _mm256_add_epi8(x, _mm256_slli_si256::<4>(x));
            x = _mm256_add_epi8(x, _mm256_slli_si256::<8>(x));
            let lane_totals = _mm256_shuffle_epi8(x, same(15));
            // The low lane's total, added to the high lane only.
            _mm256_add_epi8(
                x,
                _mm256_permute2x128_si256::<0x08>(lane_totals, lane_totals),
            )
        };
        let low = prefix_sum(_mm256_sub_epi8(closes[0], opens[0]));
        let low_total = _mm256_shuffle_epi8(low, same(15));
        let high = _mm256_add_epi8(
            prefix_sum(_mm256_sub_epi8(closes[1], opens[1])),
            _mm256_permute2x128_si256::<0x11>(low_total, low_total),
        );
        let depth = [low, high];
        // The rare brackets, as in `nest`: an opening one from depth ≤ 1 or a closing one to depth
        // ≤ 1 (the depth before an opening bracket is the depth after it, minus one), and any
        // byte deeper than 64.
        let d0 = self.depth as i8;
        let rare = [0, 1].map(|k| {
            let level = _mm256_add_epi8(depth[k], opens[k]);
            let at_level = _mm256_and_si256(
                _mm256_or_si256(opens[k], closes[k]),
                _mm256_cmpgt_epi8(_mm256_set1_epi8(2 - d0), level),
            );
            _mm256_or_si256(
                at_level,
                _mm256_cmpgt_epi8(depth[k], _mm256_set1_epi8(64 - d0)),
            )
        });
        let mut rare = bits(rare[0], rare[1]);
        let block_total = _mm256_extract_epi8::<31>(high) as i8;
        if rare != 0 {
            let mut relative = [0i8; 64];
            // SAFETY: writes 32 bytes at offsets 0 and 32 of a 64-byte array.
            unsafe {
                _mm256_storeu_si256(relative.as_mut_ptr().cast(), low);
                _mm256_storeu_si256(relative.as_mut_ptr().add(32).cast(), high);
            }
            let opens = bits(opens[0], opens[1]);
            let base = self.depth;
            while rare != 0 {
                let at = rare.trailing_zeros();
                self.depth = base.wrapping_add_signed(relative[at as usize] as i32);
                let open = (opens >> at) & 1 == 1;
                if let Some(end) = self.level_event(b, offset, at, open, stray, items)? {
                    return Some(Some(end));
                }
                rare &= rare - 1;
            }
            self.depth = base;
        }
        self.depth = self.depth.wrapping_add_signed(block_total as i32);
        (stray == 0).then_some(None)
    }

    /// Follows `brackets` (a block's, outside strings) through the nesting until one is a rare
    /// case: returns the brackets from that one on (it already followed), or 0 when none was.
    /// Kept small so that its loop runs in registers.
    #[inline(always)]
    fn nest(&mut self, mut brackets: u64, opens: u64) -> u64 {
        let mut depth = self.depth;
        let mut rare = 0;
        while brackets != 0 {
            let at = brackets.trailing_zeros();
            let open = ((opens >> at) & 1) as u32;
            depth = (depth + 2 * open).wrapping_sub(1);
            // One unsigned compare: depth below 2 after a closing bracket or below 3 after an
            // opening one (the items' own level), or above 64 (only reachable by opening).
            if depth.wrapping_sub(2 + open) >= 62 {
                rare = brackets;
                break;
            }
            brackets &= brackets - 1;
        }
        self.depth = depth;
        rare
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
#[cfg_attr(target_arch = "aarch64", allow(dead_code))]
fn classify_scalar(block: &[u8; 64]) -> Masks {
    let mut m = Masks::default();
    for (i, &c) in block.iter().enumerate() {
        let bit = 1u64 << i;
        let folded = c | 0x20;
        m.quote |= if c == b'"' { bit } else { 0 };
        m.backslash |= if c == b'\\' { bit } else { 0 };
        m.open |= if folded == b'{' { bit } else { 0 };
        m.close |= if folded == b'}' { bit } else { 0 };
        m.space |= if c <= b' ' { bit } else { 0 };
    }
    m
}

/// The classifier of the baseline walk: x86-64 CPUs without AVX2 are rare enough (none on
/// Lambda) not to need a SIMD version of their own.
#[cfg(not(target_arch = "aarch64"))]
fn classify(block: &[u8; 64]) -> Masks {
    classify_scalar(block)
}

#[cfg(target_arch = "aarch64")]
fn classify(block: &[u8; 64]) -> Masks {
    use std::arch::aarch64::{
        uint8x16_t, vandq_u8, vceqq_u8, vcleq_u8, vdupq_n_u8, vgetq_lane_u64, vld1q_u8, vorrq_u8,
        vpaddq_u8, vreinterpretq_u64_u8,
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
            space: bits(v.map(|x| vcleq_u8(x, vdupq_n_u8(b' ')))),
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A small deterministic generator, so failures reproduce (the wire module's tests use it
    /// too).
    pub(crate) struct Rng(pub(crate) u64);
    impl Rng {
        pub(crate) fn next(&mut self) -> u64 {
            self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut x = self.0;
            x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            x ^ (x >> 31)
        }
        pub(crate) fn below(&mut self, n: usize) -> usize {
            (self.next() % n as u64) as usize
        }
    }

    /// Both block loops: the one `array_items` picks, and the baseline one.
    fn both_walks(b: &[u8], start: usize) -> Option<(Vec<Range<usize>>, usize)> {
        let mut picked = Vec::new();
        let end = array_items(b, start, &mut picked);
        let mut baseline = Vec::new();
        let baseline_end = walk(b, start, &mut baseline, classify, prefix_xor);
        assert_eq!(end, baseline_end, "{b:?}");
        end.map(|end| {
            assert_eq!(picked, baseline);
            (picked, end)
        })
    }

    /// The NEON classifier against the portable one (x86-64 classifies inside its block loop,
    /// which `every_byte_is_classified_as_the_reference_does` checks against the baseline walk).
    #[cfg(target_arch = "aarch64")]
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
    fn reference_items(b: &[u8], start: usize) -> Option<(Vec<Range<usize>>, usize)> {
        if b.get(start) != Some(&b'[') {
            return None;
        }
        let (mut depth, mut in_string, mut escaped) = (0usize, false, false);
        let (mut items, mut item_start, mut gap) = (Vec::new(), 0, start + 1);
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
                    if depth == 64 {
                        return None;
                    }
                    depth += 1;
                    if depth == 2 {
                        let placed = if items.is_empty() {
                            i == gap
                        } else {
                            i == gap + 1 && b[gap] == b','
                        };
                        if c != b'{' || !placed {
                            return None;
                        }
                        item_start = i;
                    }
                }
                b'}' | b']' => {
                    depth = depth.checked_sub(1)?;
                    // Kinds matter where the cut relies on them: items are objects in an array.
                    match depth {
                        1 if c == b'}' => {
                            items.push(item_start..i + 1);
                            gap = i + 1;
                        }
                        0 if c == b']' => return (i == gap).then_some((items, i + 1)),
                        0 | 1 => return None,
                        _ => {}
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
    fn array_items_match_the_byte_by_byte_scanner() {
        let mut rng = Rng(11);
        for round in 0..5_000 {
            let mut body = vec![b'x'; rng.below(70)];
            let start = body.len();
            body.push(b'[');
            let mut ranges = Vec::new();
            for i in 0..rng.below(4) {
                if i > 0 {
                    body.push(b',');
                }
                let item_start = body.len();
                body.extend_from_slice(b"{\"a\":");
                value(&mut rng, 0, &mut body);
                body.push(b'}');
                ranges.push(item_start..body.len());
            }
            body.push(b']');
            let end = body.len();
            // What follows: nothing, the rest of a response, or whitespace.
            body.extend_from_slice([&b""[..], b",\"Count\":1}", b" ,\n"][rng.below(3)]);
            let expected = Some((ranges, end));
            assert_eq!(reference_items(&body, start), expected, "round {round}");
            assert_eq!(
                both_walks(&body, start),
                expected,
                "round {round}: {body:?}"
            );
            // Any damage is either still cut exactly or left to the general scanner.
            let mut damaged = body.clone();
            let at = start + 1 + rng.below(end - start - 1);
            damaged[at] = b" {}[]\"\\x,"[rng.below(9)];
            let expected = reference_items(&damaged, start);
            let got = both_walks(&damaged, start);
            assert!(
                got.is_none() || got == expected,
                "round {round}: {got:?} vs {expected:?}"
            );
            if expected.is_none() {
                assert_eq!(got, None, "round {round}");
            }
            // Cut short, it never ends.
            assert_eq!(both_walks(&body[..end - 1], start), None);
        }
    }

    #[test]
    fn every_byte_is_classified_as_the_reference_does() {
        // Each byte value inside a string, between tokens, and after the array, in both halves of
        // a block (so both 32-byte compares of the x86-64 loop see it).
        for c in 0..=255u8 {
            for pad in [0, 40] {
                let lead = vec![b'x'; pad];
                let bodies = [
                    [&lead[..], b"[{\"k\":\"", &[c], b"\"}]"].concat(),
                    [&lead[..], b"[{\"k\":1", &[c], b"}]"].concat(),
                    [&lead[..], b"[{}", &[c], b"{}]"].concat(),
                    [&lead[..], b"[{}]", &[c]].concat(),
                ];
                for body in bodies {
                    assert_eq!(
                        both_walks(&body, pad),
                        reference_items(&body, pad),
                        "byte {c:#04x} in {body:?}"
                    );
                }
            }
        }
    }

    #[test]
    fn block_boundaries_inside_escapes_and_strings_are_followed() {
        // Shift two items across every alignment so that their backslash runs, quotes, brackets
        // and the comma between them each land on byte 63 of a block and byte 0 of the next.
        let object =
            br#"{"s":{"S":"a\\\"}\\"},"t":{"L":[{"S":"\\\\"},{"S":"]\""}]},"u":{"S":"x"}}"#;
        for pad in 0..130 {
            let mut body = vec![b'x'; pad];
            body.push(b'[');
            body.extend_from_slice(object);
            body.push(b',');
            body.extend_from_slice(object);
            body.extend_from_slice(b"]}");
            let first = pad + 1..pad + 1 + object.len();
            let second = first.end + 1..first.end + 1 + object.len();
            let end = second.end + 1;
            assert_eq!(
                both_walks(&body, pad),
                Some((vec![first, second], end)),
                "pad {pad}"
            );
        }
    }

    #[test]
    fn whitespace_wrong_levels_elements_and_depth_are_left_to_the_general_scanner() {
        let cut = |b: &[u8]| both_walks(b, 0);
        let one = |item: Range<usize>| vec![item];
        assert_eq!(cut(br#"[{"a":{"S":"x y"}}]"#), Some((one(1..18), 19)));
        assert_eq!(cut(br#"[{"a":{"S":"x"}}] "#), Some((one(1..16), 17)));
        assert_eq!(cut(b"[]"), Some((vec![], 2)));
        assert_eq!(cut(b"[{},{}]"), Some((vec![1..3, 4..6], 7)));
        assert_eq!(cut(br#"[{"a": {"S":"x"}}]"#), None);
        assert_eq!(cut(b"[{}, {}]"), None);
        assert_eq!(cut(b"[ {}]"), None);
        // Inside an item only the depth is followed: a `]` closing a `{` there is DynamoDB's
        // never to send, and the item is cut at its own `}` all the same.
        assert_eq!(cut(br#"[{"a":{"L":[{"S":"x"}}]}]"#), Some((one(1..24), 25)));
        // Where the cut relies on them, kinds are checked: the item's and the array's own.
        assert_eq!(cut(br#"[{"a":{"S":"x"}]]"#), None);
        assert_eq!(cut(b"[{}}"), None);
        assert_eq!(cut(br#"[{"a":{"S":"x"}]"#), None);
        assert_eq!(cut(b"[{},]"), None);
        assert_eq!(cut(b"[{},,{}]"), None);
        assert_eq!(cut(b"[{}{}]"), None);
        assert_eq!(cut(b"[{}x]"), None);
        assert_eq!(cut(b"[{}x{}]"), None);
        assert_eq!(cut(b"[[]]"), None);
        assert_eq!(cut(br#"["{}"]"#), None);
        assert_eq!(cut(b"[1,{}]"), None);
        assert_eq!(cut(b"x[]"), None);
        assert_eq!(cut(b"{}"), None);
        // 64 levels in all: the array and 63 inside its item.
        let deep = |n: usize| {
            [
                b"[{\"a\":".to_vec(),
                vec![b'['; n],
                vec![b']'; n],
                b"}]".to_vec(),
            ]
            .concat()
        };
        assert_eq!(cut(&deep(62)).map(|(_, end)| end), Some(deep(62).len()));
        assert_eq!(cut(&deep(63)), None);
    }
}
