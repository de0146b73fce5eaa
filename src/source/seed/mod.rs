//! Realistic `studentData` items, generated deterministically: for demos (`ddb-backup seed`),
//! emulator tests and the in-process benchmark source.

use std::collections::HashMap;

use aws_sdk_dynamodb::primitives::Blob;
use aws_sdk_dynamodb::types::AttributeValue;

use crate::model::Item;

const FIRST: [&str; 12] = [
    "An", "Bình", "Chi", "Dũng", "Emma", "Liam", "Mai", "Noah", "Olivia", "Phúc", "Quỳnh", "Sofia",
];
/// `FIRST` in lower case, for email addresses (a test holds them equal to `to_lowercase`).
const FIRST_LOWER: [&str; 12] = [
    "an", "bình", "chi", "dũng", "emma", "liam", "mai", "noah", "olivia", "phúc", "quỳnh", "sofia",
];
const LAST: [&str; 10] = [
    "Nguyễn", "Trần", "Lê", "Smith", "García", "Müller", "O'Brien", "Phạm", "Kowalski", "Tanaka",
];
const CLASSES: [&str; 6] = ["CS101", "CS202", "MATH150", "PHYS110", "ENG201", "BIO120"];
const CITIES: [&str; 6] = [
    "Hà Nội",
    "Hồ Chí Minh",
    "Seattle",
    "Berlin",
    "São Paulo",
    "Tokyo",
];
const TAGS: [&str; 8] = [
    "honors",
    "athlete",
    "scholarship",
    "exchange",
    "part-time",
    "club:chess",
    "club:robotics",
    "dean's list",
];

/// A small, fast, deterministic generator (SplitMix64): the same index always gives the same item.
fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

/// What is random about the `index`-th student, drawn once so that the SDK item and the wire
/// JSON of a student are the same student.
struct Student {
    index: u64,
    r: u64,
    first: &'static str,
    first_lower: &'static str,
    last: &'static str,
    birth: (usize, usize, usize),
    class: &'static str,
    gpa: (usize, usize),
    enrolled: bool,
    tags: Vec<&'static str>,
    scores: (usize, usize),
    street: usize,
    city: &'static str,
    zip: usize,
    course: (&'static str, usize),
    /// 0: empty string, 1: NULL, otherwise a sentence.
    notes: usize,
}

impl Student {
    fn draw(index: u64) -> Student {
        let r = mix(index);
        let pick = |shift: u32, len: usize| ((r >> shift) as usize) % len;
        Student {
            index,
            r,
            first: FIRST[pick(0, FIRST.len())],
            first_lower: FIRST_LOWER[pick(0, FIRST.len())],
            last: LAST[pick(8, LAST.len())],
            birth: (1995 + pick(16, 12), 1 + pick(20, 12), 1 + pick(24, 28)),
            class: CLASSES[pick(28, CLASSES.len())],
            gpa: (1 + pick(32, 3), pick(36, 100)),
            enrolled: r & (1 << 40) != 0,
            tags: (0..1 + pick(41, 3))
                .map(|i| TAGS[(pick(44, TAGS.len()) + i * 3) % TAGS.len()])
                .collect(),
            scores: (50 + pick(48, 50), pick(52, 100)),
            street: 1 + pick(12, 300),
            city: CITIES[pick(56, CITIES.len())],
            zip: 10000 + pick(4, 89999),
            course: (CLASSES[pick(60, CLASSES.len())], 2020 + pick(2, 6)),
            notes: pick(6, 5),
        }
    }

    fn id(&self) -> String {
        format!("S{:08}", self.index)
    }
    fn email(&self) -> String {
        format!("{}.{}@students.example.edu", self.first_lower, self.index)
    }
    fn birth_date(&self) -> String {
        let (y, m, d) = self.birth;
        format!("{y}-{m:02}-{d:02}")
    }
    fn gpa(&self) -> String {
        format!("{}.{:02}", self.gpa.0, self.gpa.1)
    }
    fn scores(&self) -> [String; 3] {
        [
            self.scores.0.to_string(),
            format!("{}.5", self.scores.1),
            "100".to_string(),
        ]
    }
    fn street(&self) -> String {
        format!("{} Lê Lợi", self.street)
    }
    fn photo(&self) -> Vec<u8> {
        self.r.to_le_bytes().repeat(2)
    }
    fn notes(&self) -> Option<String> {
        match self.notes {
            0 => Some(String::new()),
            1 => None,
            _ => Some(format!(
                "Advisor note for {}: \"on track\", meets weekly.",
                self.id()
            )),
        }
    }

    fn item(&self) -> Item {
        let s = |v: String| AttributeValue::S(v);
        let mut item: Item = HashMap::with_capacity(13);
        item.insert("id".into(), s(self.id()));
        item.insert("name".into(), s(format!("{} {}", self.first, self.last)));
        item.insert("email".into(), s(self.email()));
        item.insert("birthDate".into(), s(self.birth_date()));
        item.insert("class".into(), s(self.class.into()));
        item.insert("gpa".into(), AttributeValue::N(self.gpa()));
        item.insert("enrolled".into(), AttributeValue::Bool(self.enrolled));
        item.insert(
            "tags".into(),
            AttributeValue::Ss(self.tags.iter().map(|t| t.to_string()).collect()),
        );
        item.insert("scores".into(), AttributeValue::Ns(self.scores().to_vec()));
        let address = HashMap::from([
            ("street".to_string(), s(self.street())),
            ("city".to_string(), s(self.city.into())),
            ("zip".to_string(), AttributeValue::N(self.zip.to_string())),
        ]);
        item.insert("address".into(), AttributeValue::M(address));
        item.insert(
            "courses".into(),
            AttributeValue::L(vec![
                s(self.course.0.into()),
                AttributeValue::N(self.course.1.to_string()),
            ]),
        );
        item.insert(
            "photoThumb".into(),
            AttributeValue::B(Blob::new(self.photo())),
        );
        let notes = self.notes().map_or(AttributeValue::Null(true), s);
        item.insert("notes".into(), notes);
        item
    }

    /// The student as DynamoDB sends it in a Scan response (an attribute map). Written from
    /// constant fragments without formatting or allocation: the benchmark's stand-in for
    /// DynamoDB must cost little next to the pipeline it feeds (a unit test holds it equal to
    /// [`Student::item`]).
    fn write_wire(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(br#"{"id":{"S":"S"#);
        push_decimal(out, self.index, 8);
        out.extend_from_slice(br#""},"name":{"S":""#);
        out.extend_from_slice(self.first.as_bytes());
        out.push(b' ');
        out.extend_from_slice(self.last.as_bytes());
        out.extend_from_slice(br#""},"email":{"S":""#);
        out.extend_from_slice(self.first_lower.as_bytes());
        out.push(b'.');
        push_decimal(out, self.index, 1);
        out.extend_from_slice(br#"@students.example.edu"},"birthDate":{"S":""#);
        let (y, m, d) = self.birth;
        push_decimal(out, y as u64, 4);
        out.push(b'-');
        push_decimal(out, m as u64, 2);
        out.push(b'-');
        push_decimal(out, d as u64, 2);
        out.extend_from_slice(br#""},"class":{"S":""#);
        out.extend_from_slice(self.class.as_bytes());
        out.extend_from_slice(br#""},"gpa":{"N":""#);
        push_decimal(out, self.gpa.0 as u64, 1);
        out.push(b'.');
        push_decimal(out, self.gpa.1 as u64, 2);
        out.extend_from_slice(if self.enrolled {
            br#""},"enrolled":{"BOOL":true},"tags":{"SS":["#.as_slice()
        } else {
            br#""},"enrolled":{"BOOL":false},"tags":{"SS":["#.as_slice()
        });
        for (i, tag) in self.tags.iter().enumerate() {
            out.extend_from_slice(if i == 0 { b"\"" } else { b",\"" });
            out.extend_from_slice(tag.as_bytes());
            out.push(b'"');
        }
        out.extend_from_slice(br#"]},"scores":{"NS":[""#);
        push_decimal(out, self.scores.0 as u64, 1);
        out.extend_from_slice(br#"",""#);
        push_decimal(out, self.scores.1 as u64, 1);
        out.extend_from_slice(br#".5","100"]},"address":{"M":{"street":{"S":""#);
        push_decimal(out, self.street as u64, 1);
        out.extend_from_slice(" Lê Lợi\"},\"city\":{\"S\":\"".as_bytes());
        out.extend_from_slice(self.city.as_bytes());
        out.extend_from_slice(br#""},"zip":{"N":""#);
        push_decimal(out, self.zip as u64, 1);
        out.extend_from_slice(br#""}}},"courses":{"L":[{"S":""#);
        out.extend_from_slice(self.course.0.as_bytes());
        out.extend_from_slice(br#""},{"N":""#);
        push_decimal(out, self.course.1 as u64, 1);
        out.extend_from_slice(br#""}]},"photoThumb":{"B":"#);
        crate::codec::encode::text::write_base64_str(out, &self.photo());
        match self.notes {
            0 => out.extend_from_slice(br#"},"notes":{"S":""}}"#),
            1 => out.extend_from_slice(br#"},"notes":{"NULL":true}}"#),
            _ => {
                out.extend_from_slice(br#"},"notes":{"S":"Advisor note for S"#);
                push_decimal(out, self.index, 8);
                out.extend_from_slice(br#": \"on track\", meets weekly."}}"#);
            }
        }
    }
}

/// Appends `n` in decimal, zero-padded to at least `width` digits (at most 20).
fn push_decimal(out: &mut Vec<u8>, mut n: u64, width: usize) {
    let mut digits = [b'0'; 20];
    let mut start = digits.len();
    loop {
        start -= 1;
        digits[start] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    start = start.min(digits.len() - width.min(digits.len()));
    out.extend_from_slice(&digits[start..]);
}

/// The `index`-th student: id, name, email, birth date, class, GPA (N), enrolled (BOOL), tags (SS),
/// scores (NS), address (M), courses (L), photo thumbnail (B), notes (sometimes empty or NULL).
pub fn student(index: u64) -> Item {
    Student::draw(index).item()
}

/// A Scan response body holding students `indexes`, as DynamoDB would send it.
pub fn students_scan_response(indexes: std::ops::Range<u64>) -> Vec<u8> {
    let count = indexes.end.saturating_sub(indexes.start);
    // Students take 449–563 bytes on the wire: room for all of them without growing the buffer.
    let mut body = Vec::with_capacity(count as usize * 600 + 64);
    body.extend_from_slice(b"{\"Count\":");
    body.extend_from_slice(count.to_string().as_bytes());
    body.extend_from_slice(b",\"Items\":[");
    for index in indexes {
        if body.last() != Some(&b'[') {
            body.push(b',');
        }
        Student::draw(index).write_wire(&mut body);
    }
    body.extend_from_slice(b"],\"ScannedCount\":");
    body.extend_from_slice(count.to_string().as_bytes());
    body.push(b'}');
    body
}

mod load;
mod synthetic;

pub use load::{seed_students, SeedError};
pub use synthetic::SyntheticSource;

#[cfg(test)]
mod tests;
