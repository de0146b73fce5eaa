use super::*;
use crate::model::job::{BucketName, Prefix};
use crate::source::MemorySource;
use crate::store::MemoryStore;
use crate::triggers::queue::MemoryQueue;

const FRONT_END: &str = "https://d111111abcdef8.cloudfront.net";

fn api() -> (Api, MemoryQueue) {
    let queue = MemoryQueue::new();
    let defaults = JobDefaults {
        bucket: Some(BucketName::new("student-backup-20250706").unwrap()),
        ..JobDefaults::default()
    };
    let api = Api::new(
        Arc::new(queue.clone()),
        defaults,
        vec![FRONT_END.to_string()],
    )
    .with_status(StatusBoard::new(
        Arc::new(MemoryStore::new()),
        Prefix::new("backup-status/").unwrap(),
    ))
    .with_tables(Arc::new(MemorySource::new("studentData", "id", vec![], 10)));
    (api, queue)
}

fn fixture(name: &str) -> ApiGatewayProxyRequest {
    let text = match name {
        "post" => include_str!("../../../tests/fixtures/apigw-post-backup.json"),
        "get" => include_str!("../../../tests/fixtures/apigw-get-status.json"),
        _ => include_str!("../../../tests/fixtures/apigw-options-preflight.json"),
    };
    serde_json::from_str(text).unwrap()
}

fn post(body: Option<&str>) -> ApiGatewayProxyRequest {
    let mut request = fixture("post");
    request.body = body.map(str::to_string);
    request
}

fn body(response: &ApiGatewayProxyResponse) -> serde_json::Value {
    match &response.body {
        Some(Body::Text(text)) => serde_json::from_str(text).unwrap(),
        other => panic!("no JSON body: {other:?}"),
    }
}

fn header<'a>(response: &'a ApiGatewayProxyResponse, name: &str) -> Option<&'a str> {
    response.headers.get(name).and_then(|v| v.to_str().ok())
}

#[tokio::test]
async fn post_queues_the_validated_job_and_get_reports_it_queued() {
    let (api, queue) = api();
    let response = api.handle(fixture("post")).await;
    assert_eq!(response.status_code, 202, "{:?}", response.body);
    let reply = body(&response);
    assert_eq!(reply["status"], "queued");
    let job_id = reply["job_id"].as_str().unwrap().to_string();
    assert_eq!(
        header(&response, "access-control-allow-origin"),
        Some(FRONT_END)
    );
    let sent = queue.messages();
    assert_eq!(sent.len(), 1);
    let job: JobRequest = serde_json::from_str(&sent[0].body).unwrap();
    assert_eq!(job.table.as_deref(), Some("studentData"));
    assert_eq!(job.trigger, Some(Trigger::Api));
    assert_eq!(job.job_id.as_deref(), Some(job_id.as_str()));
    assert_eq!(job.bucket.as_deref(), Some("student-backup-20250706"));
    assert!(
        job.requested_at.is_some(),
        "the date partition is fixed at enqueue time"
    );

    let mut get = fixture("get");
    get.path = Some(format!("/backup/{job_id}"));
    get.path_parameters.insert("job_id".into(), job_id.clone());
    let response = api.handle(get).await;
    assert_eq!(response.status_code, 200);
    assert_eq!(body(&response)["state"], "queued");
}

#[tokio::test]
async fn a_post_without_body_uses_the_configured_defaults_and_a_known_job_id_is_not_queued_twice() {
    let (mut api, queue) = api();
    api.defaults.table = Some(crate::model::job::TableName::new("studentData").unwrap());
    assert_eq!(api.handle(post(None)).await.status_code, 202);
    let with_id = post(Some(r#"{"job_id":"nightly-2026-11-28"}"#));
    assert_eq!(api.handle(with_id.clone()).await.status_code, 202);
    let again = api.handle(with_id).await;
    assert_eq!(again.status_code, 200, "{:?}", again.body);
    assert_eq!(body(&again)["status"], "queued");
    assert_eq!(queue.messages().len(), 2);
}

#[tokio::test]
async fn bad_bodies_get_400_with_the_field_and_nothing_is_queued() {
    let (api, queue) = api();
    let cases: &[(&str, Option<&str>)] = &[
        (r#"{"table": "studentData""#, None),
        ("[1, 2]", Some(".")),
        (
            r#"{"table": "studentData", "formt": "json"}"#,
            Some("formt"),
        ),
        (r#"{"table": 42}"#, Some("table")),
        (
            r#"{"table": "studentData", "format": "xml"}"#,
            Some("format"),
        ),
        (
            r#"{"table": "studentData", "compression": "brotli"}"#,
            Some("compression"),
        ),
        (
            r#"{"table": "studentData", "segments": -1}"#,
            Some("segments"),
        ),
        (
            r#"{"table": "studentData", "segments": 1000001}"#,
            Some("segments"),
        ),
        (
            r#"{"table": "studentData", "bucket": "Not_A_Bucket"}"#,
            Some("bucket"),
        ),
        (
            r#"{"table": "studentData", "trigger": "schedule"}"#,
            Some("trigger"),
        ),
        (r#"{"table": "no-such-table"}"#, Some("table")),
        (
            r#"{"table": "studentData", "notify": ["not an address"]}"#,
            Some("notify[0]"),
        ),
    ];
    for (input, field) in cases {
        let response = api.handle(post(Some(input))).await;
        assert_eq!(response.status_code, 400, "{input}: {:?}", response.body);
        let reply = body(&response);
        assert!(!reply["error"].as_str().unwrap().is_empty(), "{input}");
        if let Some(field) = field {
            let got = reply["field"].as_str().unwrap_or("");
            assert!(
                got == *field || got.starts_with(field),
                "{input}: field {got}"
            );
        }
        assert_eq!(
            header(&response, "access-control-allow-origin"),
            Some(FRONT_END),
            "{input}"
        );
    }
    assert!(queue.messages().is_empty());
}

#[tokio::test]
async fn oversized_bodies_get_413_and_other_methods_405() {
    let (api, queue) = api();
    let huge = format!(
        r#"{{"table":"studentData","prefix":"{}"}}"#,
        "a".repeat(MAX_BODY_BYTES)
    );
    assert_eq!(api.handle(post(Some(&huge))).await.status_code, 413);
    let mut delete = fixture("post");
    delete.http_method = Method::DELETE;
    let response = api.handle(delete).await;
    assert_eq!(response.status_code, 405);
    assert_eq!(header(&response, "allow"), Some("POST, OPTIONS"));
    let mut elsewhere = fixture("post");
    elsewhere.resource = Some("/admin".into());
    assert_eq!(api.handle(elsewhere).await.status_code, 404);
    assert!(queue.messages().is_empty());
}

#[tokio::test]
async fn preflight_is_answered_for_allowed_origins_only() {
    let (api, _) = api();
    let response = api.handle(fixture("options")).await;
    assert_eq!(response.status_code, 204);
    assert_eq!(
        header(&response, "access-control-allow-origin"),
        Some(FRONT_END)
    );
    assert_eq!(
        header(&response, "access-control-allow-methods"),
        Some("POST, OPTIONS")
    );
    assert!(header(&response, "access-control-allow-headers")
        .unwrap()
        .contains("x-api-key"));

    let mut evil = fixture("options");
    evil.headers
        .insert("origin", HeaderValue::from_static("https://evil.example"));
    let response = api.handle(evil).await;
    assert_eq!(response.status_code, 403);
    assert_eq!(header(&response, "access-control-allow-origin"), None);

    let mut evil_post = fixture("post");
    evil_post
        .headers
        .insert("origin", HeaderValue::from_static("https://evil.example"));
    let response = api.handle(evil_post).await;
    assert_eq!(header(&response, "access-control-allow-origin"), None);
}

#[tokio::test]
async fn unknown_and_invalid_job_ids_are_404_and_400() {
    let (api, _) = api();
    let response = api.handle(fixture("get")).await;
    assert_eq!(response.status_code, 404);
    let mut bad = fixture("get");
    bad.path_parameters.insert("job_id".into(), "../etc".into());
    let response = api.handle(bad).await;
    assert_eq!(response.status_code, 400);
    assert_eq!(body(&response)["field"], "job_id");
}

#[tokio::test]
async fn a_job_beyond_the_deployments_policy_gets_403_naming_the_field_and_nothing_is_queued() {
    let (api, queue) = api();
    let api = api.with_policy(crate::model::job::JobPolicy {
        allowed_tables: Some(vec![
            crate::model::job::TableName::new("studentData").unwrap()
        ]),
        notify_allowed: Some(vec![
            crate::model::job::Recipients::parse("@example.com").unwrap()
        ]),
        api_max_segments: Some(32),
        api_allow_consistent_read: false,
        api_max_read_budget: Some(20_000.0),
        api_max_read_budget_percent: None,
        restore_tables: Default::default(),
    });
    for (json, field) in [
        (r#"{"table": "payroll"}"#, "table"),
        (
            r#"{"table": "studentData", "notify": ["someone@elsewhere.example.net"]}"#,
            "notify",
        ),
        (r#"{"table": "studentData", "segments": 64}"#, "segments"),
        (
            r#"{"table": "studentData", "consistent_read": true}"#,
            "consistent_read",
        ),
        (
            r#"{"table": "studentData", "read_budget": 40000}"#,
            "read_budget",
        ),
    ] {
        let response = api.handle(post(Some(json))).await;
        assert_eq!(response.status_code, 403, "{json}: {:?}", response.body);
        let reply = body(&response);
        assert_eq!(reply["field"], field, "{reply}");
        assert!(reply["error"].as_str().unwrap().len() > 20, "{reply}");
        assert_eq!(
            header(&response, "access-control-allow-origin"),
            Some(FRONT_END),
            "the browser can read the refusal"
        );
    }
    assert!(queue.messages().is_empty());
    let allowed = r#"{"table": "studentData", "notify": ["ops@example.com"], "segments": 32}"#;
    assert_eq!(api.handle(post(Some(allowed))).await.status_code, 202);
}

fn list_request(query: &[(&str, &str)]) -> ApiGatewayProxyRequest {
    let mut request = fixture("get");
    request.resource = Some("/backups".to_string());
    request.path = Some("/backups".to_string());
    request.path_parameters.clear();
    request.query_string_parameters = query
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect::<std::collections::HashMap<_, _>>()
        .into();
    request
}

#[tokio::test]
async fn get_backups_lists_a_tables_backups_and_refuses_bad_queries_naming_the_field() {
    let store = MemoryStore::new();
    crate::test_support::memory_backup(
        &store,
        crate::test_support::numbered_items(7),
        r#","job_id":"listed""#,
    )
    .await;
    let (api, _) = api();
    let api = api
        .with_catalog(Catalog::new(Arc::new(store), Prefix::default(), None))
        .with_policy(JobPolicy {
            allowed_tables: Some(vec![TableName::new("tbl").unwrap()]),
            ..JobPolicy::default()
        });
    let response = api.handle(list_request(&[("table", "tbl")])).await;
    assert_eq!(response.status_code, 200, "{:?}", response.body);
    let listed = body(&response);
    assert_eq!(listed["table"], "tbl");
    assert_eq!(listed["backups"][0]["job_id"], "listed");
    assert_eq!(listed["backups"][0]["state"], "complete");
    assert_eq!(listed["backups"][0]["items"], 7);
    assert_eq!(
        header(&response, "access-control-allow-origin"),
        Some(FRONT_END)
    );

    for (query, status, field) in [
        (vec![("table", "payroll")], 403, "table"),
        (vec![("table", "no spaces allowed")], 400, "table"),
        (vec![("table", "tbl"), ("limit", "0")], 400, "limit"),
        (vec![("table", "tbl"), ("limit", "101")], 400, "limit"),
        (vec![("table", "tbl"), ("limit", "ten")], 400, "limit"),
        (vec![], 400, "table"),
    ] {
        let response = api.handle(list_request(&query)).await;
        assert_eq!(
            response.status_code, status,
            "{query:?}: {:?}",
            response.body
        );
        assert_eq!(body(&response)["field"], field, "{query:?}");
    }
}

fn post_restore(body: &str) -> ApiGatewayProxyRequest {
    let mut request = post(Some(body));
    request.resource = Some("/restore".into());
    request.path = Some("/restore".into());
    request
}

const BACKUP: &str = "s3://student-backup-20250706/backups/studentData/dt=2026-12-07/nightly/";

#[tokio::test]
async fn post_restore_queues_a_restore_job_into_a_new_table_of_the_pattern() {
    let (api, queue) = api();
    let response = api
        .handle(post_restore(&format!(
            r#"{{"backup":"{BACKUP}","table":"restored-studentData","workers":4}}"#
        )))
        .await;
    assert_eq!(response.status_code, 202, "{:?}", response.body);
    let reply = body(&response);
    assert_eq!(reply["restore_into"], "restored-studentData");
    let sent = queue.drain();
    assert_eq!(sent.len(), 1);
    let job: serde_json::Value = serde_json::from_str(&sent[0].body).unwrap();
    assert_eq!(job["kind"], "restore");
    assert_eq!(job["trigger"], "api");
    assert_eq!(job["workers"], 4);
    let status = api
        .handle({
            let mut get = fixture("get");
            get.path_parameters
                .insert("job_id".into(), reply["job_id"].as_str().unwrap().into());
            get
        })
        .await;
    assert_eq!(body(&status)["restore_into"], "restored-studentData");
    assert_eq!(body(&status)["table"], "studentData");
}

#[tokio::test]
async fn post_restore_outside_the_pattern_or_bucket_is_403_and_over_a_table_409_and_nothing_is_queued(
) {
    let (api, queue) = api();
    for (json, status, field) in [
        (
            format!(r#"{{"backup":"{BACKUP}","table":"studentData"}}"#),
            403,
            "table",
        ),
        (
            format!(r#"{{"backup":"{BACKUP}","table":"payroll"}}"#),
            403,
            "table",
        ),
        (
            r#"{"backup":"s3://someone-elses-bucket/x/","table":"restored-x"}"#.to_string(),
            403,
            "backup",
        ),
        (
            format!(r#"{{"backup":"{BACKUP}","table":"restored-x","worker":1}}"#),
            400,
            "worker",
        ),
        (format!(r#"{{"backup":"{BACKUP}"}}"#), 400, "table"),
    ] {
        let response = api.handle(post_restore(&json)).await;
        assert_eq!(response.status_code, status, "{json}: {:?}", response.body);
        assert_eq!(body(&response)["field"], field, "{json}");
    }
    let api = api.with_tables(Arc::new(MemorySource::new(
        "restored-taken",
        "id",
        vec![],
        10,
    )));
    let response = api
        .handle(post_restore(&format!(
            r#"{{"backup":"{BACKUP}","table":"restored-taken"}}"#
        )))
        .await;
    assert_eq!(response.status_code, 409, "{:?}", response.body);
    assert!(queue.drain().is_empty(), "nothing queued");
}
