use std::collections::BTreeSet;

use aws_sdk_dynamodb::error::ProvideErrorMetadata;
use tokio::sync::mpsc;

use super::*;
use crate::source::budget::ReadBudget;
use crate::source::{scan_segment, DynamoDbSource, PageItems, PageRequest, TableSource};

/// An SDK client of `twin` that tries once: the throttle comes back as the caller's error.
fn one_try(twin: &Arc<ReadTwin>) -> aws_sdk_dynamodb::Client {
    twin.client(
        crate::aws::retry_config(1),
        &format!("one-try-{}", uuid::Uuid::new_v4()),
    )
}

fn source(twin: &Arc<ReadTwin>) -> DynamoDbSource {
    DynamoDbSource::new(twin.client(
        crate::aws::retry_config(crate::aws::DEFAULT_MAX_ATTEMPTS),
        &format!("twin-{}", uuid::Uuid::new_v4()),
    ))
}

/// `spec` with pages that take no time, so nothing refills while a test reads.
fn instant(mut spec: TwinSpec) -> TwinSpec {
    spec.latency = Duration::ZERO;
    spec.latency_per_mib = Duration::ZERO;
    spec
}

fn request(segment: u32, total: u32) -> PageRequest {
    PageRequest {
        table: "twin".into(),
        segment,
        total_segments: total,
        exclusive_start_key: None,
        consistent_read: false,
        limit: None,
        wire_items: false,
    }
}

/// Every item index the segments of `total` read, through `scan_segment` and the real SDK.
async fn read_all(source: &DynamoDbSource, total: u32, wire: bool) -> Vec<u64> {
    let mut seen = Vec::new();
    for segment in 0..total {
        let (tx, mut rx) = mpsc::channel(1024);
        let mut request = request(segment, total);
        request.wire_items = wire;
        let budget = ReadBudget::unlimited();
        let scan = scan_segment(source, request, tx, None, &budget);
        let (scan, pages) = tokio::join!(scan, async {
            let mut pages = Vec::new();
            while let Some(page) = rx.recv().await {
                pages.push(page);
            }
            pages
        });
        scan.expect("the scan");
        for page in pages {
            let items = match page {
                PageItems::Decoded(items) => items,
                PageItems::Wire(wire) => wire
                    .iter()
                    .map(|map| crate::codec::decode::decode_item_map(map).expect("wire"))
                    .collect(),
            };
            for item in items {
                seen.push(item["sk"].as_n().unwrap().parse::<u64>().unwrap());
            }
        }
    }
    seen
}

#[tokio::test(start_paused = true)]
async fn segments_read_every_item_once_in_pages_billed_in_4_kib_units() {
    let mut spec = TwinSpec::provisioned("twin", 3000, 5000, 4, 1e6);
    spec.hot_items = 300;
    let twin = ReadTwin::new(spec);
    let source = source(&twin);
    let info = source.describe("twin").await.unwrap();
    assert_eq!(info.provisioned_read_capacity, Some(1_000_000));
    assert_eq!(info.item_count, Some(3000));

    for (total, wire) in [(1, false), (7, true), (64, false)] {
        let mut seen = read_all(&source, total, wire).await;
        seen.sort_unstable();
        assert_eq!(seen, (0..3000).collect::<Vec<_>>(), "{total} segments");
    }

    // One page: 1 MB holds 209 items of 5,000 bytes; eventually consistent, half a unit per
    // 4 KiB of them; strongly consistent, a whole one.
    for (consistent, units) in [(false, 128.0), (true, 256.0)] {
        let out = one_try(&twin)
            .scan()
            .table_name("twin")
            .consistent_read(consistent)
            .return_consumed_capacity(aws_sdk_dynamodb::types::ReturnConsumedCapacity::Total)
            .send()
            .await
            .unwrap();
        assert_eq!(out.count, 209);
        assert!(out.last_evaluated_key.is_some());
        let consumed = out.consumed_capacity.unwrap().capacity_units.unwrap();
        assert_eq!(consumed, units, "ceil(209 × 5000 / 4096) = 256 units");
    }
}

#[tokio::test(start_paused = true)]
async fn a_partition_serves_3000_units_a_second_then_refuses_with_dynamodbs_error() {
    // One partition, a table provisioned far above it: the partition is the limit.
    let twin = ReadTwin::new(instant(TwinSpec::provisioned(
        "twin", 100_000, 4096, 1, 1e6,
    )));
    let client = one_try(&twin);
    let start = Instant::now();
    let mut served = 0.0;
    let mut key = None;
    let refusal = loop {
        match client
            .scan()
            .table_name("twin")
            .consistent_read(true)
            .set_exclusive_start_key(key.clone())
            .return_consumed_capacity(aws_sdk_dynamodb::types::ReturnConsumedCapacity::Total)
            .send()
            .await
        {
            Ok(out) => {
                served += out.consumed_capacity.unwrap().capacity_units.unwrap();
                key = out.last_evaluated_key;
            }
            Err(err) => break err,
        }
    };
    assert!(Instant::now() - start < Duration::from_secs(1));
    assert!(
        (3000.0..3000.0 + 256.0).contains(&served),
        "{served} units served before the first refusal"
    );
    let refusal = refusal.into_service_error();
    assert_eq!(
        refusal.code(),
        Some("ProvisionedThroughputExceededException")
    );
    let aws_sdk_dynamodb::operation::scan::ScanError::ProvisionedThroughputExceededException(e) =
        &refusal
    else {
        panic!("{refusal:?}");
    };
    assert_eq!(
        e.throttling_reasons()[0].reason(),
        Some("TableReadKeyRangeThroughputExceeded")
    );
    assert_eq!(twin.stats.throttled_by_partition.load(Ordering::Relaxed), 1);
}

#[tokio::test(start_paused = true)]
async fn the_table_refuses_past_its_rate_provisioned_or_on_demand() {
    for billing in [Billing::Provisioned, Billing::OnDemand] {
        let mut spec = TwinSpec::provisioned("twin", 100_000, 4096, 4, 1000.0);
        spec.billing = billing;
        let twin = ReadTwin::new(instant(spec));
        let client = one_try(&twin);
        let mut served = 0.0;
        let refusal = loop {
            match client
                .scan()
                .table_name("twin")
                .segment(0)
                .total_segments(4)
                .limit(10)
                .return_consumed_capacity(aws_sdk_dynamodb::types::ReturnConsumedCapacity::Total)
                .send()
                .await
            {
                Ok(out) => served += out.consumed_capacity.unwrap().capacity_units.unwrap(),
                Err(err) => break err.into_service_error(),
            }
        };
        // The scan keeps reading the first page again: only the table's second is spent.
        assert!((1000.0..1005.0).contains(&served), "{served}");
        let (code, reason) = match billing {
            Billing::Provisioned => (
                "ProvisionedThroughputExceededException",
                "TableReadProvisionedThroughputExceeded",
            ),
            Billing::OnDemand => ("ThrottlingException", "TableReadAccountLimitExceeded"),
        };
        assert_eq!(refusal.code(), Some(code));
        let reasons = match &refusal {
            aws_sdk_dynamodb::operation::scan::ScanError::ProvisionedThroughputExceededException(
                e,
            ) => e.throttling_reasons(),
            aws_sdk_dynamodb::operation::scan::ScanError::ThrottlingException(e) => {
                e.throttling_reasons()
            }
            other => panic!("{other:?}"),
        };
        assert_eq!(reasons[0].reason(), Some(reason));
        let info = DynamoDbSource::new(client).describe("twin").await.unwrap();
        match billing {
            Billing::Provisioned => assert_eq!(info.provisioned_read_capacity, Some(1000)),
            Billing::OnDemand => assert_eq!(info.billing_mode.as_deref(), Some("PAY_PER_REQUEST")),
        }
    }
}

#[tokio::test(start_paused = true)]
async fn a_page_the_sdk_retried_says_which_limit_refused_it() {
    // One partition at 3,000 units a second under a table of 1,000,000: every refusal is the
    // partition's. Pages of 1 MB strongly consistent (256 units) drain it in 12 pages.
    let twin = ReadTwin::new(TwinSpec::provisioned("twin", 10_000, 4096, 1, 1e6));
    let source = source(&twin);
    let mut request = request(0, 1);
    request.consistent_read = true;
    let mut throttles = crate::source::PageThrottles::default();
    for _ in 0..20 {
        let page = source.scan_page(&request).await.unwrap();
        throttles.table += page.throttles.table;
        throttles.partition += page.throttles.partition;
        request.exclusive_start_key = page.last_evaluated_key;
    }
    assert_eq!(throttles.table, 0);
    assert!(throttles.partition > 0, "{throttles:?}");
    assert_eq!(
        u64::from(throttles.partition),
        twin.stats.throttled_by_partition.load(Ordering::Relaxed)
    );
}

#[tokio::test]
async fn over_http_the_sdk_reads_it_as_it_reads_dynamodb() {
    let twin = ReadTwin::new(instant(TwinSpec::provisioned("twin", 500, 1000, 2, 1e6)));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let endpoint = format!("http://{}", listener.local_addr().unwrap());
    let server = tokio::spawn(twin.clone().serve(listener));
    let config = aws_sdk_dynamodb::Config::builder()
        .behavior_version(aws_sdk_dynamodb::config::BehaviorVersion::latest())
        .region(aws_sdk_dynamodb::config::Region::new("us-east-1"))
        .credentials_provider(aws_sdk_dynamodb::config::Credentials::new(
            "a", "b", None, None, "test",
        ))
        .endpoint_url(endpoint)
        .build();
    let source = DynamoDbSource::new(aws_sdk_dynamodb::Client::from_conf(config));
    assert!(matches!(
        source.describe("other").await,
        Err(crate::source::ScanError::TableNotFound { .. })
    ));
    let seen: BTreeSet<u64> = read_all(&source, 3, true).await.into_iter().collect();
    assert_eq!(seen.len(), 500);
    server.abort();
}
