//! Scan pages kept as DynamoDB's own wire bytes.
//!
//! A Scan response carries its items as DynamoDB JSON (`{"id":{"S":"S1"},"gpa":{"N":"3.75"}}`),
//! which is exactly the attribute map of a line of DynamoDB's Export to S3. For the
//! `dynamodb-json` format the pipeline therefore never builds SDK items at all: the source splits
//! the response body into one byte range per item and the encoder wraps each range in
//! `{"Item":…}`. That skips the SDK's allocation-heavy deserializer and our own re-encoding, and
//! every byte DynamoDB sent (numbers with all 38 digits, base64 binary, sets) is kept verbatim.
//!
//! The splitter is a structural scanner, not a validating parser: it trusts DynamoDB to send JSON
//! (the SDK would reject anything else in the rest of the body too) but checks the structure it
//! relies on (strings closed, brackets balanced, the items objects in an array) and reports where
//! it broke. The `Items` array
//! goes through `structural`, 64 bytes at a time in one pass; an array it leaves (whitespace
//! between tokens, which DynamoDB does not send but JSON allows, or broken input) goes through the
//! byte-by-byte scanner below, which removes the whitespace so every item stays on one line, or
//! reports the error.

mod structural;

use std::ops::Range;

use bytes::Bytes;

/// The items of one Scan page as DynamoDB JSON attribute maps, one byte range each.
#[derive(Debug, Clone, Default)]
pub struct WireItems {
    body: Bytes,
    items: Vec<Range<usize>>,
}

impl WireItems {
    /// Number of items.
    pub fn len(&self) -> usize {
        self.items.len()
    }

    /// Whether the page holds no items.
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// Each item's attribute map as compact DynamoDB JSON (no newline inside).
    pub fn iter(&self) -> impl Iterator<Item = &[u8]> + '_ {
        self.items.iter().map(move |r| &self.body[r.clone()])
    }

    /// Items built from compact attribute maps, e.g. by a test or a synthetic source.
    pub fn from_maps<'a>(maps: impl IntoIterator<Item = &'a [u8]>) -> Result<Self, WireError> {
        let mut body = b"{\"Items\":[".to_vec();
        for (i, map) in maps.into_iter().enumerate() {
            if i > 0 {
                body.push(b',');
            }
            body.extend_from_slice(map);
        }
        body.extend_from_slice(b"]}");
        Ok(split_scan_response(Bytes::from(body))?.items)
    }
}

/// A Scan response body taken apart: the items, and the rest of the body with `"Items":[]` so the
/// SDK can still read the count, the `LastEvaluatedKey` and the consumed capacity.
#[derive(Debug)]
pub struct SplitResponse {
    /// The page's items.
    pub items: WireItems,
    /// The body without its items.
    pub rest: Bytes,
}

/// A response body whose structure is not that of a Scan response.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("Scan response is not the expected JSON at byte {offset}: expected {expected}")]
pub struct WireError {
    /// Where the scanner stopped.
    pub offset: usize,
    /// What it needed there.
    pub expected: &'static str,
}

/// Splits a Scan response body (`{"Count":2,"Items":[{…},{…}],"ScannedCount":2,…}`) into its items
/// and the rest. A body without `Items` gives no items and the body unchanged.
pub fn split_scan_response(body: Bytes) -> Result<SplitResponse, WireError> {
    let mut cur = Cursor {
        b: &body,
        i: 0,
        spaced: false,
    };
    let mut items = Vec::new();
    let mut array: Option<Range<usize>> = None;
    cur.ws();
    cur.expect(b'{', "`{` opening the response")?;
    cur.ws();
    if cur.peek() == Some(b'}') {
        cur.i += 1;
    } else {
        loop {
            cur.ws();
            let key = cur.string()?;
            cur.ws();
            cur.expect(b':', "`:` after a key")?;
            cur.ws();
            if &body[key] == b"Items" && array.is_none() {
                let start = cur.i;
                match structural::array_items(&body, start, &mut items) {
                    Some(end) => cur.i = end,
                    None => {
                        items.clear();
                        cur.items(&mut items)?;
                    }
                }
                array = Some(start..cur.i);
            } else {
                cur.value()?;
            }
            cur.ws();
            match cur.next() {
                Some(b',') => continue,
                Some(b'}') => break,
                _ => return Err(cur.error_at(cur.i.saturating_sub(1), "`,` or `}` after a value")),
            }
        }
    }
    let spaced = cur.spaced;
    let Some(array) = array else {
        return Ok(SplitResponse {
            items: WireItems::default(),
            rest: body,
        });
    };
    let mut rest = Vec::with_capacity(body.len() - array.len() + 2);
    rest.extend_from_slice(&body[..array.start]);
    rest.extend_from_slice(b"[]");
    rest.extend_from_slice(&body[array.end..]);
    let items = if spaced {
        compact(&body, &items)
    } else {
        WireItems { body, items }
    };
    Ok(SplitResponse {
        items,
        rest: Bytes::from(rest),
    })
}

/// Copies the items without whitespace outside strings (only needed when the body had some).
fn compact(body: &[u8], ranges: &[Range<usize>]) -> WireItems {
    let mut out = Vec::with_capacity(ranges.iter().map(|r| r.len()).sum());
    let mut items = Vec::with_capacity(ranges.len());
    for range in ranges {
        let start = out.len();
        let mut in_string = false;
        let mut escaped = false;
        for &b in &body[range.clone()] {
            if in_string {
                if escaped {
                    escaped = false;
                } else if b == b'\\' {
                    escaped = true;
                } else if b == b'"' {
                    in_string = false;
                }
            } else if b == b'"' {
                in_string = true;
            } else if is_ws(b) {
                continue;
            }
            out.push(b);
        }
        items.push(start..out.len());
    }
    WireItems {
        body: Bytes::from(out),
        items,
    }
}

fn is_ws(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | b'\r')
}

struct Cursor<'a> {
    b: &'a [u8],
    i: usize,
    /// Whitespace seen inside a value (outside strings).
    spaced: bool,
}

impl Cursor<'_> {
    fn peek(&self) -> Option<u8> {
        self.b.get(self.i).copied()
    }

    fn next(&mut self) -> Option<u8> {
        let b = self.peek();
        self.i += 1;
        b
    }

    fn ws(&mut self) {
        while self.peek().is_some_and(is_ws) {
            self.i += 1;
        }
    }

    fn error(&self, expected: &'static str) -> WireError {
        self.error_at(self.i, expected)
    }

    fn error_at(&self, offset: usize, expected: &'static str) -> WireError {
        WireError { offset, expected }
    }

    fn expect(&mut self, byte: u8, expected: &'static str) -> Result<(), WireError> {
        if self.peek() == Some(byte) {
            self.i += 1;
            Ok(())
        } else {
            Err(self.error(expected))
        }
    }

    /// The `Items` array at the cursor, byte by byte: pushes each item's range.
    fn items(&mut self, items: &mut Vec<Range<usize>>) -> Result<(), WireError> {
        self.expect(b'[', "`[` opening Items")?;
        self.ws();
        if self.peek() == Some(b']') {
            self.i += 1;
            return Ok(());
        }
        loop {
            self.ws();
            let item_start = self.i;
            if self.peek() != Some(b'{') {
                return Err(self.error("`{` opening an item"));
            }
            self.value()?;
            items.push(item_start..self.i);
            self.ws();
            match self.next() {
                Some(b',') => continue,
                Some(b']') => return Ok(()),
                _ => return Err(self.error_at(self.i - 1, "`,` or `]` after an item")),
            }
        }
    }

    /// A string at the cursor; returns the range of its contents (escapes left as they are).
    fn string(&mut self) -> Result<Range<usize>, WireError> {
        self.expect(b'"', "`\"` opening a string")?;
        let start = self.i;
        self.skip_string_body()?;
        Ok(start..self.i - 1)
    }

    /// Moves past the closing quote of a string whose opening quote is behind the cursor. Strings
    /// in items are short, so a plain loop beats a vectorized search here.
    fn skip_string_body(&mut self) -> Result<(), WireError> {
        let (b, mut i) = (self.b, self.i);
        while i < b.len() {
            match b[i] {
                b'"' => {
                    self.i = i + 1;
                    return Ok(());
                }
                // A backslash escapes the next byte (`\"`, `\\`, `\u…` are all fine this way).
                b'\\' => i += 2,
                _ => i += 1,
            }
        }
        self.i = b.len();
        Err(self.error("`\"` closing a string"))
    }

    /// Moves past one value: a string, an object or array (brackets matched), or a scalar.
    fn value(&mut self) -> Result<(), WireError> {
        match self.peek() {
            Some(b'"') => {
                self.i += 1;
                self.skip_string_body()
            }
            Some(b'{' | b'[') => self.skip_container(),
            Some(b) if b == b'-' || b.is_ascii_alphanumeric() => {
                while self
                    .peek()
                    .is_some_and(|b| !matches!(b, b',' | b'}' | b']') && !is_ws(b))
                {
                    self.i += 1;
                }
                Ok(())
            }
            _ => Err(self.error("a value")),
        }
    }

    /// Moves past an object or array at the cursor, one table lookup per byte outside strings.
    fn skip_container(&mut self) -> Result<(), WireError> {
        let b = self.b;
        let mut i = self.i;
        let mut open: Vec<u8> = Vec::with_capacity(16);
        while i < b.len() {
            let c = b[i];
            i += 1;
            match CLASS[c as usize] {
                PLAIN => {}
                QUOTE => {
                    self.i = i;
                    self.skip_string_body()?;
                    i = self.i;
                }
                OPEN => open.push(if c == b'{' { b'}' } else { b']' }),
                CLOSE => {
                    if open.pop() != Some(c) {
                        return Err(self.error_at(i - 1, "matching brackets"));
                    }
                    if open.is_empty() {
                        self.i = i;
                        return Ok(());
                    }
                }
                _ => self.spaced = true,
            }
        }
        self.i = b.len();
        Err(self.error("a closing bracket"))
    }
}

const PLAIN: u8 = 0;
const QUOTE: u8 = 1;
const OPEN: u8 = 2;
const CLOSE: u8 = 3;
const SPACE: u8 = 4;

/// What each byte means to [`Cursor::skip_container`].
static CLASS: [u8; 256] = {
    let mut table = [PLAIN; 256];
    table[b'"' as usize] = QUOTE;
    table[b'{' as usize] = OPEN;
    table[b'[' as usize] = OPEN;
    table[b'}' as usize] = CLOSE;
    table[b']' as usize] = CLOSE;
    table[b' ' as usize] = SPACE;
    table[b'\t' as usize] = SPACE;
    table[b'\n' as usize] = SPACE;
    table[b'\r' as usize] = SPACE;
    table
};

#[cfg(test)]
mod tests {
    use super::structural::tests::Rng;
    use super::*;

    fn split(body: &str) -> SplitResponse {
        split_scan_response(Bytes::from(body.to_string())).expect("splits")
    }

    fn texts(items: &WireItems) -> Vec<String> {
        items
            .iter()
            .map(|b| String::from_utf8(b.to_vec()).unwrap())
            .collect()
    }

    #[test]
    fn items_are_cut_out_verbatim_and_the_rest_keeps_everything_else() {
        let body = r#"{"ConsumedCapacity":{"CapacityUnits":2.5,"TableName":"t"},"Count":2,"Items":[{"id":{"S":"a]}\"{,"},"n":{"N":"12345678901234567890123456789012345678"}},{"b":{"B":"AP8="},"l":{"L":[{"M":{}},{"NULL":true},{"SS":["x","y"]}]}}],"LastEvaluatedKey":{"id":{"S":"b"}},"ScannedCount":2}"#;
        let split = split(body);
        assert_eq!(
            texts(&split.items),
            [
                r#"{"id":{"S":"a]}\"{,"},"n":{"N":"12345678901234567890123456789012345678"}}"#,
                r#"{"b":{"B":"AP8="},"l":{"L":[{"M":{}},{"NULL":true},{"SS":["x","y"]}]}}"#,
            ]
        );
        assert_eq!(
            std::str::from_utf8(&split.rest).unwrap(),
            r#"{"ConsumedCapacity":{"CapacityUnits":2.5,"TableName":"t"},"Count":2,"Items":[],"LastEvaluatedKey":{"id":{"S":"b"}},"ScannedCount":2}"#
        );
    }

    #[test]
    fn escapes_and_unicode_inside_strings_do_not_confuse_the_scanner() {
        let body =
            r#"{"Items":[{"s":{"S":"\\"},"t":{"S":"\\\"]"},"u":{"S":"Hà Nội 😀 \u00e9\n"}}]}"#;
        let split = split(body);
        assert_eq!(split.items.len(), 1);
        let item: serde_json::Value = serde_json::from_slice(split.items.iter().next().unwrap())
            .expect("the cut-out item is valid JSON");
        assert_eq!(item["t"]["S"], "\\\"]");
        assert_eq!(item["u"]["S"], "Hà Nội 😀 é\n");
    }

    #[test]
    fn whitespace_between_tokens_is_removed_but_not_inside_strings() {
        let body = "{ \"Items\" : [ { \"a\" : { \"S\" : \"x y\\n\" } ,\n \"b\":{\"L\":[ ]} } , {\"c\":{\"BOOL\":true}} ] , \"Count\" : 2 }";
        let split = split(body);
        assert_eq!(
            texts(&split.items),
            [
                r#"{"a":{"S":"x y\n"},"b":{"L":[]}}"#,
                r#"{"c":{"BOOL":true}}"#
            ]
        );
        let rest: serde_json::Value = serde_json::from_slice(&split.rest).unwrap();
        assert_eq!(rest["Count"], 2);
        assert_eq!(rest["Items"], serde_json::json!([]));
    }

    #[test]
    fn pages_without_items_are_fine() {
        for body in [
            r#"{"Count":0,"Items":[],"ScannedCount":5}"#,
            r#"{"Count":0}"#,
            "{}",
        ] {
            let split = split(body);
            assert!(split.items.is_empty(), "{body}");
            let _: serde_json::Value = serde_json::from_slice(&split.rest).unwrap();
        }
    }

    #[test]
    fn broken_structure_is_an_error_with_the_offset() {
        for (body, offset) in [
            (r#"{"Items":[{"a":{"S":"x"}]}"#, 24),
            (r#"{"Items":[{"a":{"S":"x}}]}"#, 26),
            (r#"{"Items":["x"]}"#, 10),
            (r#"{"Items":[{}"#, 12),
            (r#"["Items"]"#, 0),
        ] {
            let err = split_scan_response(Bytes::from(body.to_string())).unwrap_err();
            assert_eq!(err.offset, offset, "{body}: {err}");
        }
    }

    #[test]
    fn from_maps_round_trips() {
        let items = WireItems::from_maps([&br#"{"a":{"N":"1"}}"#[..], br#"{"b":{"S":""}}"#])
            .expect("valid maps");
        assert_eq!(texts(&items), [r#"{"a":{"N":"1"}}"#, r#"{"b":{"S":""}}"#]);
    }

    /// A string with the bytes that could mislead a scanner: quotes, backslashes, brackets,
    /// commas and colons, control characters, multi-byte UTF-8, and runs long enough to cross
    /// 64-byte blocks.
    fn awkward_string(rng: &mut Rng) -> String {
        const PIECES: [&str; 12] = [
            "abc",
            "\"",
            "\\",
            "\\\"",
            "{[}]",
            "Hà Nội",
            " ",
            "\n\t\u{1}",
            ",:",
            "é😀",
            "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
            "/",
        ];
        (0..rng.below(8))
            .map(|_| PIECES[rng.below(PIECES.len())])
            .collect()
    }

    /// A DynamoDB JSON attribute value of any type, nested up to `depth`.
    fn attribute(rng: &mut Rng, depth: u32) -> serde_json::Value {
        use serde_json::json;
        let kinds = if depth >= 5 { 7 } else { 9 };
        match rng.below(kinds) {
            0 => json!({ "S": awkward_string(rng) }),
            1 => {
                let n = [
                    "0",
                    "-1.5",
                    "12345678901234567890123456789012345678",
                    "1E-130",
                ][rng.below(4)];
                json!({ "N": n })
            }
            2 => {
                let b = ["", "AP8=", "3q2+7w=="][rng.below(3)];
                json!({ "B": b })
            }
            3 => json!({ "BOOL": rng.below(2) == 0 }),
            4 => json!({ "NULL": true }),
            5 => {
                json!({ "SS": (0..1 + rng.below(3)).map(|_| awkward_string(rng)).collect::<Vec<_>>() })
            }
            6 => json!({ "NS": ["1", "2.5", "-3"] }),
            7 => {
                json!({ "L": (0..rng.below(4)).map(|_| attribute(rng, depth + 1)).collect::<Vec<_>>() })
            }
            _ => json!({ "M": item(rng, depth + 1) }),
        }
    }

    /// An item (an attribute map) whose names are awkward strings too.
    fn item(rng: &mut Rng, depth: u32) -> serde_json::Value {
        let mut map = serde_json::Map::new();
        for i in 0..rng.below(5) {
            map.insert(format!("{i}{}", awkward_string(rng)), attribute(rng, depth));
        }
        serde_json::Value::Object(map)
    }

    #[test]
    fn generated_scan_bodies_split_into_exactly_the_items_serde_json_reads() {
        let mut rng = Rng(2026);
        for round in 0..3_000 {
            let items: Vec<serde_json::Value> =
                (0..rng.below(6)).map(|_| item(&mut rng, 0)).collect();
            let pretty = rng.below(4) == 0;
            let render = |value: &serde_json::Value| {
                if pretty {
                    serde_json::to_string_pretty(value).unwrap()
                } else {
                    serde_json::to_string(value).unwrap()
                }
            };
            let key = item(&mut rng, 3);
            let mut fields = vec![
                format!("\"Count\":{}", items.len()),
                format!(
                    "\"Items\":{}",
                    render(&serde_json::Value::Array(items.clone()))
                ),
                format!("\"ScannedCount\":{}", items.len()),
                r#""ConsumedCapacity":{"CapacityUnits":0.5,"TableName":"t"}"#.to_string(),
            ];
            if rng.below(2) == 0 {
                fields.push(format!("\"LastEvaluatedKey\":{}", render(&key)));
            }
            // DynamoDB's field order is not promised: `Items` anywhere among them.
            for i in (1..fields.len()).rev() {
                fields.swap(i, rng.below(i + 1));
            }
            let separator = if pretty { ",\n  " } else { "," };
            let body = format!("{{{}}}", fields.join(separator));

            let split = split_scan_response(Bytes::from(body.clone()))
                .unwrap_or_else(|e| panic!("round {round}: {e}\n{body}"));
            let got: Vec<serde_json::Value> = split
                .items
                .iter()
                .map(|bytes| {
                    assert!(
                        !bytes.contains(&b'\n'),
                        "round {round}: an item spans lines"
                    );
                    serde_json::from_slice(bytes).unwrap()
                })
                .collect();
            assert_eq!(got, items, "round {round}\n{body}");
            let mut expected_rest: serde_json::Value = serde_json::from_str(&body).unwrap();
            expected_rest["Items"] = serde_json::json!([]);
            let rest: serde_json::Value = serde_json::from_slice(&split.rest).unwrap();
            assert_eq!(rest, expected_rest, "round {round}\n{body}");
        }
    }
}
