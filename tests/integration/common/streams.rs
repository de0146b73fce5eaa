//! Lambda's DynamoDB event source mapping, played against the emulator's stream: it reads each
//! shard's new records with GetRecords and delivers them, as Lambda does, to the real
//! `backup-changes` binary under the local Lambda runtime. The records go over as the stream sent
//! them (raw JSON, never decoded), with the `eventSourceARN` Lambda adds.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::TcpStream;

use aws_sdk_dynamodb::types::{
    BillingMode, KeyType, ScalarAttributeType, StreamSpecification, StreamViewType,
};
use ddb_backup::aws::AwsContext;

use super::{attr_def, endpoint, key_element, LocalLambda};

/// Creates an on-demand table keyed by `id` (S) whose stream carries new and old images, and
/// returns the stream's ARN.
pub async fn create_table_with_stream(aws: &AwsContext, name: &str) -> String {
    aws.dynamodb()
        .create_table()
        .table_name(name)
        .attribute_definitions(attr_def("id", ScalarAttributeType::S))
        .key_schema(key_element("id", KeyType::Hash))
        .billing_mode(BillingMode::PayPerRequest)
        .stream_specification(
            StreamSpecification::builder()
                .stream_enabled(true)
                .stream_view_type(StreamViewType::NewAndOldImages)
                .build()
                .unwrap(),
        )
        .send()
        .await
        .expect("create table")
        .table_description
        .and_then(|t| t.latest_stream_arn)
        .expect("a stream ARN")
}

/// A DynamoDB Streams call as raw JSON over HTTP, so the records keep their bytes.
fn streams_call(target: &str, body: &serde_json::Value) -> serde_json::Value {
    let endpoint = endpoint();
    let host = endpoint.trim_start_matches("http://").trim_end_matches('/');
    let body = body.to_string();
    let mut stream = TcpStream::connect(host).expect("connect to the emulator");
    write!(
        stream,
        "POST / HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/x-amz-json-1.0\r\n\
         X-Amz-Target: DynamoDBStreams_20120810.{target}\r\n\
         Authorization: AWS4-HMAC-SHA256 Credential=testing/20261207/us-east-1/dynamodb/aws4_request, SignedHeaders=host, Signature=0\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut response = Vec::new();
    stream.read_to_end(&mut response).unwrap();
    let text = String::from_utf8(response).expect("UTF-8 response");
    let (head, body) = text.split_once("\r\n\r\n").expect("an HTTP response");
    assert!(head.starts_with("HTTP/1.1 200"), "{target}: {head}\n{body}");
    serde_json::from_str(body).unwrap_or_else(|e| panic!("{target}: {e}: {body}"))
}

/// Plays the event source mapping of one stream: where each shard was read up to.
pub struct StreamDriver {
    stream_arn: String,
    after: HashMap<String, String>,
    /// The events delivered, in order (to deliver one again).
    pub delivered: Vec<serde_json::Value>,
}

impl StreamDriver {
    /// From each shard's oldest record (`TRIM_HORIZON`), as the stack's mapping starts.
    pub fn new(stream_arn: &str) -> Self {
        StreamDriver {
            stream_arn: stream_arn.to_string(),
            after: HashMap::new(),
            delivered: Vec::new(),
        }
    }

    /// The records written since the last call, as the events Lambda would deliver (at most
    /// `batch` records each), without delivering them.
    pub fn poll(&mut self, batch: usize) -> Vec<serde_json::Value> {
        let description = streams_call(
            "DescribeStream",
            &serde_json::json!({ "StreamArn": self.stream_arn }),
        );
        let mut events = Vec::new();
        for shard in description["StreamDescription"]["Shards"]
            .as_array()
            .unwrap()
        {
            let id = shard["ShardId"].as_str().unwrap().to_string();
            let mut request = serde_json::json!({ "StreamArn": self.stream_arn, "ShardId": id });
            match self.after.get(&id) {
                Some(seq) => {
                    request["ShardIteratorType"] = "AFTER_SEQUENCE_NUMBER".into();
                    request["SequenceNumber"] = seq.clone().into();
                }
                None => request["ShardIteratorType"] = "TRIM_HORIZON".into(),
            }
            let iterator = streams_call("GetShardIterator", &request)["ShardIterator"].clone();
            let records = streams_call(
                "GetRecords",
                &serde_json::json!({ "ShardIterator": iterator }),
            )["Records"]
                .as_array()
                .cloned()
                .unwrap_or_default();
            if let Some(last) = records.last() {
                self.after.insert(
                    id.clone(),
                    last["dynamodb"]["SequenceNumber"]
                        .as_str()
                        .unwrap()
                        .to_string(),
                );
            }
            for chunk in records.chunks(batch) {
                let records: Vec<serde_json::Value> = chunk
                    .iter()
                    .cloned()
                    .map(|mut r| {
                        r["eventSourceARN"] = self.stream_arn.clone().into();
                        r
                    })
                    .collect();
                events.push(serde_json::json!({ "Records": records }));
            }
        }
        events
    }

    /// Delivers everything new to `lambda`, in batches of at most `batch` records; returns how
    /// many records went.
    pub fn deliver(&mut self, lambda: &LocalLambda, batch: usize) -> usize {
        let mut count = 0;
        for event in self.poll(batch) {
            count += event["Records"].as_array().map_or(0, Vec::len);
            let response = lambda.invoke(&event);
            assert_eq!(
                response["batchItemFailures"],
                serde_json::json!([]),
                "{response}\n{}",
                lambda.function_log()
            );
            self.delivered.push(event);
        }
        count
    }
}
