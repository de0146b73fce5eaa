//! The production [`TableSource`]: DynamoDB through the AWS SDK, with the SDK's retries, a
//! throttle counter for the read budget, and Scan pages kept as DynamoDB's wire bytes when the
//! output format can use them ([`super::interceptors`]).

use async_trait::async_trait;
use aws_sdk_dynamodb::types::{ReturnConsumedCapacity, TableDescription};

use super::interceptors::{CaptureWireItems, RecordThrottles, ThrottleSlot, WireSlot};
use super::{Page, PageItems, PageRequest, ScanError, TableSource};
use crate::aws::{error_facts, FailureKind};
use crate::model::table::{AttributeDefinition, IndexInfo, KeyElement, TableInfo};

/// DynamoDB adapter. Throttling (`ProvisionedThroughputExceededException`, `ThrottlingException`,
/// `RequestLimitExceeded`), 5xx and network errors are retried by the SDK with exponential backoff
/// ([`crate::aws::AwsOptions::max_attempts`]); a retried request repeats the same
/// `ExclusiveStartKey`, so a page is never skipped nor read twice. Each page says which of its
/// attempts were throttled, and by which limit, for the read budget.
#[derive(Debug, Clone)]
pub struct DynamoDbSource {
    client: aws_sdk_dynamodb::Client,
    page_limit: Option<i32>,
}

impl DynamoDbSource {
    /// A source reading through `client`.
    pub fn new(client: aws_sdk_dynamodb::Client) -> Self {
        DynamoDbSource {
            client,
            page_limit: None,
        }
    }

    /// At most `items` per Scan page (DynamoDB's own limit is 1 MB). Smaller pages mean finer
    /// checkpoints and smoother read rates, at more requests.
    pub fn with_page_limit(mut self, items: i32) -> Self {
        self.page_limit = Some(items.max(1));
        self
    }

    fn region(&self) -> String {
        self.client
            .config()
            .region()
            .map(|r| r.to_string())
            .unwrap_or_else(|| "<none>".to_string())
    }

    fn fail<E>(
        &self,
        operation: &'static str,
        table: &str,
        err: aws_sdk_dynamodb::error::SdkError<E, aws_sdk_dynamodb::config::http::HttpResponse>,
    ) -> ScanError
    where
        E: aws_sdk_dynamodb::error::ProvideErrorMetadata
            + std::error::Error
            + Send
            + Sync
            + 'static,
    {
        let facts = error_facts(&err);
        if facts.code.as_deref() == Some("ResourceNotFoundException") {
            ScanError::TableNotFound {
                table: table.to_string(),
                region: self.region(),
            }
        } else if facts.is_access_denied() {
            ScanError::AccessDenied {
                operation,
                table: table.to_string(),
                message: facts.message,
            }
        } else {
            ScanError::Request {
                operation,
                table: table.to_string(),
                kind: facts.kind,
                message: facts.message,
                source: Some(err.into()),
            }
        }
    }
}

#[async_trait]
impl TableSource for DynamoDbSource {
    async fn describe(&self, table: &str) -> Result<TableInfo, ScanError> {
        let out = self
            .client
            .describe_table()
            .table_name(table)
            .send()
            .await
            .map_err(|e| self.fail("DescribeTable", table, e))?;
        let description = out.table.ok_or_else(|| {
            ScanError::request(
                "DescribeTable",
                table,
                FailureKind::ServerError,
                "response carried no table description",
            )
        })?;
        Ok(table_info(table, description))
    }

    async fn scan_page(&self, request: &PageRequest) -> Result<Page, ScanError> {
        let scan = self
            .client
            .scan()
            .table_name(&request.table)
            .segment(request.segment as i32)
            .total_segments(request.total_segments as i32)
            .set_exclusive_start_key(request.exclusive_start_key.clone())
            .set_limit(match (request.limit, self.page_limit) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            })
            .consistent_read(request.consistent_read)
            .return_consumed_capacity(ReturnConsumedCapacity::Total);
        let wire = WireSlot::default();
        let throttles = ThrottleSlot::default();
        let scan = scan
            .customize()
            .interceptor(RecordThrottles(throttles.clone()));
        let out = if request.wire_items {
            scan.interceptor(CaptureWireItems(wire.clone()))
                .send()
                .await
        } else {
            scan.send().await
        }
        .map_err(|e| self.fail("Scan", &request.table, e))?;
        let throttles = *throttles.lock().unwrap_or_else(|e| e.into_inner());
        let wire = wire.lock().unwrap_or_else(|e| e.into_inner()).take();
        let items = match wire {
            Some(wire) => {
                let count = out.count as usize;
                if wire.len() != count {
                    return Err(ScanError::request(
                        "Scan",
                        &request.table,
                        FailureKind::ServerError,
                        format!(
                            "the response body held {} items but its Count says {count}",
                            wire.len()
                        ),
                    ));
                }
                PageItems::Wire(wire)
            }
            None => PageItems::Decoded(out.items.unwrap_or_default()),
        };
        Ok(Page {
            items,
            last_evaluated_key: out.last_evaluated_key.filter(|k| !k.is_empty()),
            consumed_capacity: out
                .consumed_capacity
                .and_then(|c| c.capacity_units)
                .unwrap_or(0.0),
            throttles,
        })
    }
}

fn table_info(table: &str, d: TableDescription) -> TableInfo {
    let keys = |schema: &[aws_sdk_dynamodb::types::KeySchemaElement]| -> Vec<KeyElement> {
        schema
            .iter()
            .map(|k| KeyElement {
                attribute_name: k.attribute_name().to_string(),
                key_type: k.key_type().as_str().to_string(),
            })
            .collect()
    };
    let projection = |p: Option<&aws_sdk_dynamodb::types::Projection>| {
        (
            p.and_then(|p| p.projection_type())
                .map(|t| t.as_str().to_string()),
            p.map(|p| p.non_key_attributes().to_vec())
                .unwrap_or_default(),
        )
    };
    TableInfo {
        table_name: d.table_name().unwrap_or(table).to_string(),
        table_arn: d.table_arn().map(str::to_string),
        key_schema: keys(d.key_schema()),
        attribute_definitions: d
            .attribute_definitions()
            .iter()
            .map(|a| AttributeDefinition {
                attribute_name: a.attribute_name().to_string(),
                attribute_type: a.attribute_type().as_str().to_string(),
            })
            .collect(),
        billing_mode: d
            .billing_mode_summary()
            .and_then(|b| b.billing_mode())
            .map(|b| b.as_str().to_string())
            .or_else(|| {
                Some("PROVISIONED".to_string()).filter(|_| d.provisioned_throughput().is_some())
            }),
        provisioned_read_capacity: d
            .provisioned_throughput()
            .and_then(|p| p.read_capacity_units()),
        provisioned_write_capacity: d
            .provisioned_throughput()
            .and_then(|p| p.write_capacity_units()),
        global_secondary_indexes: d
            .global_secondary_indexes()
            .iter()
            .map(|g| {
                let (projection_type, non_key_attributes) = projection(g.projection());
                IndexInfo {
                    index_name: g.index_name().unwrap_or_default().to_string(),
                    key_schema: keys(g.key_schema()),
                    projection_type,
                    non_key_attributes,
                }
            })
            .collect(),
        local_secondary_indexes: d
            .local_secondary_indexes()
            .iter()
            .map(|l| {
                let (projection_type, non_key_attributes) = projection(l.projection());
                IndexInfo {
                    index_name: l.index_name().unwrap_or_default().to_string(),
                    key_schema: keys(l.key_schema()),
                    projection_type,
                    non_key_attributes,
                }
            })
            .collect(),
        item_count: d.item_count(),
        size_bytes: d.table_size_bytes(),
        stream: d
            .latest_stream_arn()
            .zip(d.stream_specification())
            .filter(|(_, spec)| spec.stream_enabled())
            .map(|(arn, spec)| crate::model::table::TableStream {
                arn: arn.to_string(),
                view_type: spec
                    .stream_view_type()
                    .map(|v| v.as_str().to_string())
                    .unwrap_or_default(),
            }),
    }
}
