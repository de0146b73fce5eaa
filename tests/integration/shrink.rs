//! A table that shrinks between backups, backed up by the worker on the emulator: the first
//! backup, growth, a 31 % drop and a drop just under the threshold, each checked in the summary
//! email's subject, the metric line and the status document.

use std::sync::Arc;
use std::time::Duration;

use crate::common::*;
use ddb_backup::model::job::JobId;
use ddb_backup::runtime::config::Settings;
use ddb_backup::runtime::service;
use ddb_backup::triggers::metrics::{RecordedMetrics, ITEMS_CHANGE_PERCENT, TABLE_SHRANK};
use ddb_backup::triggers::worker::{Disposition, QueueMessage};

const SENDER: &str = "backup@example.com";

async fn delete_items(aws: &ddb_backup::aws::AwsContext, table: &str, ids: &[String]) {
    for id in ids {
        aws.dynamodb()
            .delete_item()
            .table_name(table)
            .key("id", aws_sdk_dynamodb::types::AttributeValue::S(id.clone()))
            .send()
            .await
            .unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_table_that_lost_a_third_of_its_items_is_flagged_by_email_metric_and_status() {
    let aws = aws().await;
    let table = unique("shrinking");
    create_table(&aws, &table).await;
    let items = every_type_items(120);
    let all_ids = ids(&items);
    put_items(&aws, &table, &items[..100]).await;
    let bucket = unique("shrinking");
    create_bucket(&aws, &bucket).await;
    verify_sender(&aws, SENDER).await;
    let recipient = format!("{}@example.com", unique("dba"));
    let vars = [
        ("DDB_BACKUP_BUCKET", bucket.clone()),
        ("DDB_BACKUP_SENDER", SENDER.to_string()),
        ("DDB_BACKUP_NOTIFY", recipient.clone()),
        ("DDB_BACKUP_DEADLINE_MARGIN_SECS", "1".to_string()),
    ];
    let settings = Settings::from_lookup(|name| {
        vars.iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.clone())
    })
    .unwrap();
    let metrics = Arc::new(RecordedMetrics::default());
    let worker = service::worker(&aws, &settings).with_metrics(metrics.clone());
    let board = service::status_board(&aws, &settings).expect("a status board");

    // (items in the table, expected change, flagged)
    let steps: [(usize, Option<f64>, bool); 4] = [
        (100, None, false),
        (120, Some(20.0), false),
        (82, Some(-31.7), true),
        (68, Some(-17.1), false),
    ];
    let mut present = 100;
    for (n, (items_now, change, flagged)) in steps.into_iter().enumerate() {
        if items_now > present {
            put_items(&aws, &table, &items[present..items_now]).await;
        } else if items_now < present {
            let gone: Vec<String> = all_ids
                .iter()
                .filter(|id| {
                    let index: usize = id.trim_start_matches("item-").parse().unwrap_or(0);
                    index >= items_now && index < present
                })
                .cloned()
                .collect();
            delete_items(&aws, &table, &gone).await;
        }
        present = items_now;
        let job_id = format!("{table}-night-{n}");
        let message = QueueMessage {
            id: format!("m-{n}"),
            body: format!(r#"{{"table": "{table}", "job_id": "{job_id}"}}"#),
            sent_at: Some(chrono::Utc::now()),
            receive_count: 1,
            receipt_handle: None,
            queue: None,
            reason: None,
        };
        let report = worker
            .handle_batch(
                &[message],
                tokio::time::Instant::now() + Duration::from_secs(600),
            )
            .await
            .remove(0);
        assert_eq!(report.disposition, Disposition::Done, "{}", report.detail);

        // The email's subject says it.
        let subjects: Vec<String> = sent_emails()
            .into_iter()
            .filter(|(_, _, to)| to.contains(&recipient))
            .map(|(subject, _, _)| subject)
            .collect();
        assert_eq!(subjects.len(), n + 1, "{subjects:?}");
        let subject = &subjects[n];
        assert!(subject.contains(&format!("{items_now} items")), "{subject}");
        assert_eq!(subject.contains("SHRANK"), flagged, "{subject}");
        if flagged {
            assert!(subject.contains("\u{2212}32 %"), "{subject}");
        }

        // The metric line.
        let emf = metrics.all()[n].to_emf(0);
        assert_eq!(emf[TABLE_SHRANK], u8::from(flagged), "{emf}");
        match change {
            None => assert!(emf.get(ITEMS_CHANGE_PERCENT).is_none(), "{emf}"),
            Some(expected) => {
                let got = emf[ITEMS_CHANGE_PERCENT].as_f64().unwrap();
                assert!((got - expected).abs() < 0.1, "{got} vs {expected}");
            }
        }

        // The status document.
        let status = board
            .get(&JobId::new(&job_id).unwrap())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(status.items, Some(items_now as u64));
        match (&status.change, change) {
            (None, None) => {}
            (Some(c), Some(expected)) => {
                assert!((c.items_percent.unwrap() - expected).abs() < 0.1, "{c:?}");
                assert_eq!(c.shrank, flagged);
                assert_eq!(c.previous_job_id, format!("{table}-night-{}", n - 1));
            }
            other => panic!("step {n}: {other:?}"),
        }
    }
}
