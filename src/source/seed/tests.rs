use super::*;
use crate::codec::wire::split_scan_response;
use crate::source::{PageItems, PageRequest, TableSource};

#[test]
fn students_are_deterministic_and_distinct() {
    assert_eq!(student(7), student(7));
    assert_ne!(student(7), student(8));
    assert_eq!(student(42)["id"].as_s().unwrap(), "S00000042");
}

#[test]
fn the_wire_form_is_the_same_student() {
    // Every notes variant and every table entry appears in 2,000 students; the large
    // indexes have more digits than the ids' zero padding.
    for range in [0..2_000, 123_456_780..123_456_800, u64::MAX - 3..u64::MAX] {
        let body = students_scan_response(range.clone());
        let split = split_scan_response(body.into()).unwrap();
        assert_eq!(split.items.len() as u64, range.end - range.start);
        for (map, index) in split.items.iter().zip(range.clone()) {
            let decoded = crate::codec::decode::decode_item_map(map).unwrap();
            assert_eq!(decoded, student(index), "student {index}");
        }
        let rest: serde_json::Value = serde_json::from_slice(&split.rest).unwrap();
        assert_eq!(rest["Count"], range.end - range.start);
    }
}

#[tokio::test]
async fn a_prerendered_source_serves_every_item_and_full_pages_from_its_bodies() {
    let source = SyntheticSource::prerendered("t", 1_050, 100, 3);
    let mut items = 0;
    for segment in 0..2 {
        let mut request = PageRequest {
            table: "t".into(),
            segment,
            total_segments: 2,
            exclusive_start_key: None,
            consistent_read: false,
            limit: None,
            wire_items: true,
        };
        loop {
            let page = source.scan_page(&request).await.unwrap();
            let PageItems::Wire(wire) = &page.items else {
                panic!("wire pages were asked for");
            };
            assert!(wire.len() == 100 || page.last_evaluated_key.is_none());
            for map in wire.iter() {
                crate::codec::decode::decode_item_map(map).unwrap();
            }
            items += wire.len();
            match page.last_evaluated_key {
                Some(key) => request.exclusive_start_key = Some(key),
                None => break,
            }
        }
    }
    assert_eq!(items, 1_050);
    // Full pages take turns among the three bodies; a short page is rendered for its range.
    let first = source.response_body(0, 100);
    assert_eq!(source.response_body(300, 400), first);
    assert_ne!(source.response_body(100, 200), first);
    assert_eq!(
        source.response_body(1_000, 1_050),
        bytes::Bytes::from(students_scan_response(1_000..1_050))
    );
    // Without pre-rendering, every page is its own students.
    let fresh = SyntheticSource::new("t", 1_050, 100);
    assert_eq!(
        fresh.response_body(300, 400),
        bytes::Bytes::from(students_scan_response(300..400))
    );
}

#[test]
fn lower_case_first_names_match_the_names() {
    for (name, lower) in FIRST.iter().zip(FIRST_LOWER) {
        assert_eq!(name.to_lowercase(), lower);
    }
}

#[test]
fn decimals_are_zero_padded_to_the_width() {
    let text = |n, width| {
        let mut out = Vec::new();
        push_decimal(&mut out, n, width);
        String::from_utf8(out).unwrap()
    };
    assert_eq!(text(42, 8), "00000042");
    assert_eq!(text(0, 1), "0");
    assert_eq!(text(123_456_789, 8), "123456789");
    assert_eq!(text(u64::MAX, 8), u64::MAX.to_string());
    assert_eq!(text(7, 2), "07");
}
