//! Loading generated students into a real table (`ddb-backup seed`), in parallel batches.

use super::*;

/// Why seeding failed.
#[derive(Debug, thiserror::Error)]
#[error("{operation} on table `{table}` failed: {message}")]
pub struct SeedError {
    /// The API call.
    pub operation: &'static str,
    /// Table name.
    pub table: String,
    /// Error with causes.
    pub message: String,
}

/// Loads `count` students (indexes `0..count`) into `table`, creating it (key `id`, on-demand)
/// when it does not exist. Writes 25-item batches, several at once, and resubmits unprocessed
/// items with backoff, so a throttled table still ends up complete.
pub async fn seed_students(
    client: &aws_sdk_dynamodb::Client,
    table: &str,
    count: u64,
    on_progress: impl Fn(u64) + Send + Sync,
) -> Result<(), SeedError> {
    use aws_sdk_dynamodb::client::Waiters;
    use aws_sdk_dynamodb::types::{
        AttributeDefinition as Def, BillingMode, KeySchemaElement, KeyType, PutRequest,
        ScalarAttributeType, WriteRequest,
    };
    use futures::stream::{self, StreamExt, TryStreamExt};

    let fail = |operation: &'static str, message: String| SeedError {
        operation,
        table: table.to_string(),
        message,
    };
    let exists = match client.describe_table().table_name(table).send().await {
        Ok(_) => true,
        Err(e) => {
            let facts = crate::aws::error_facts(&e);
            if facts.code.as_deref() == Some("ResourceNotFoundException") {
                false
            } else {
                return Err(fail("DescribeTable", facts.message));
            }
        }
    };
    if !exists {
        let build = |e: aws_sdk_dynamodb::error::BuildError| fail("CreateTable", e.to_string());
        client
            .create_table()
            .table_name(table)
            .attribute_definitions(
                Def::builder()
                    .attribute_name("id")
                    .attribute_type(ScalarAttributeType::S)
                    .build()
                    .map_err(build)?,
            )
            .key_schema(
                KeySchemaElement::builder()
                    .attribute_name("id")
                    .key_type(KeyType::Hash)
                    .build()
                    .map_err(build)?,
            )
            .billing_mode(BillingMode::PayPerRequest)
            .send()
            .await
            .map_err(|e| fail("CreateTable", crate::aws::error_facts(&e).message))?;
        client
            .wait_until_table_exists()
            .table_name(table)
            .wait(std::time::Duration::from_secs(120))
            .await
            .map_err(|e| fail("DescribeTable", e.to_string()))?;
    }

    let written = std::sync::atomic::AtomicU64::new(0);
    let batches = (0..count)
        .step_by(25)
        .map(|start| start..(start + 25).min(count));
    stream::iter(batches)
        .map(|range| {
            let written = &written;
            let on_progress = &on_progress;
            async move {
                let n = range.end - range.start;
                let mut requests: Vec<WriteRequest> = range
                    .map(|i| {
                        PutRequest::builder()
                            .set_item(Some(student(i)))
                            .build()
                            .map(|put| WriteRequest::builder().put_request(put).build())
                            .map_err(|e| fail("BatchWriteItem", e.to_string()))
                    })
                    .collect::<Result<_, _>>()?;
                let mut attempt = 0u32;
                while !requests.is_empty() {
                    let out = client
                        .batch_write_item()
                        .request_items(table, requests)
                        .send()
                        .await
                        .map_err(|e| fail("BatchWriteItem", crate::aws::error_facts(&e).message))?;
                    requests = out
                        .unprocessed_items
                        .and_then(|mut m| m.remove(table))
                        .unwrap_or_default();
                    if !requests.is_empty() {
                        attempt += 1;
                        if attempt > 12 {
                            return Err(fail(
                                "BatchWriteItem",
                                format!(
                                    "{} items still unprocessed after 12 retries",
                                    requests.len()
                                ),
                            ));
                        }
                        let backoff = 50u64 << attempt.min(8);
                        tokio::time::sleep(std::time::Duration::from_millis(backoff)).await;
                    }
                }
                let total = written.fetch_add(n, std::sync::atomic::Ordering::Relaxed) + n;
                on_progress(total);
                Ok::<(), SeedError>(())
            }
        })
        .buffer_unordered(8)
        .try_collect::<()>()
        .await
}
