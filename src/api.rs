//! The HTTP face of the product, behind API Gateway (REST API, Lambda proxy integration):
//!
//! - `POST /backup` with an optional job JSON body → validated job → SQS → `202 {"job_id", "status": "queued"}`;
//! - `GET /backup/{job_id}` → the job's status document;
//! - `OPTIONS` on both → the CORS preflight, for the web front end's origins only.
//!
//! API Gateway enforces the API key and the usage plan before a request reaches this code (see
//! `infra/`); the preflight carries no key, so `OPTIONS` is configured without one. Every response,
//! errors included, carries CORS headers when the request's `Origin` is allowed, so the browser
//! can read the error.

use std::sync::Arc;

use aws_lambda_events::apigw::{ApiGatewayProxyRequest, ApiGatewayProxyResponse};
use aws_lambda_events::encodings::Body;
use aws_lambda_events::http::{HeaderMap, HeaderValue, Method};
use base64::Engine;
use serde_json::json;
use tracing::{error, info, warn};

use crate::job::{JobDefaults, JobError, JobId, JobRequest, Trigger};
use crate::queue::JobQueue;
use crate::scan::{ScanError, TableSource};
use crate::status::{JobState, JobStatus, StatusBoard};

/// Largest accepted body. A job is a few hundred bytes; anything near this is a mistake or abuse.
pub const MAX_BODY_BYTES: usize = 16 * 1024;

/// How long a browser may cache a preflight answer.
const PREFLIGHT_MAX_AGE_SECS: u32 = 600;

/// The API handler and its ports.
pub struct Api {
    queue: Arc<dyn JobQueue>,
    status: Option<StatusBoard>,
    tables: Option<Arc<dyn TableSource>>,
    defaults: JobDefaults,
    cors_origins: Vec<String>,
}

impl Api {
    /// An API enqueueing on `queue`, filling jobs from `defaults`, allowing `cors_origins`.
    pub fn new(queue: Arc<dyn JobQueue>, defaults: JobDefaults, cors_origins: Vec<String>) -> Self {
        Api {
            queue,
            status: None,
            tables: None,
            defaults: JobDefaults {
                trigger: Trigger::Api,
                ..defaults
            },
            cors_origins,
        }
    }

    /// Status documents: written as `queued` on enqueue, read by `GET /backup/{job_id}`.
    pub fn with_status(mut self, status: StatusBoard) -> Self {
        self.status = Some(status);
        self
    }

    /// Checks that a job's table exists before queueing it, so a typo gets a `400` now rather
    /// than a failure email later.
    pub fn with_tables(mut self, tables: Arc<dyn TableSource>) -> Self {
        self.tables = Some(tables);
        self
    }

    /// Handles one API Gateway proxy request.
    pub async fn handle(&self, request: ApiGatewayProxyRequest) -> ApiGatewayProxyResponse {
        let origin = request
            .headers
            .get("origin")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let allowed_origin = origin
            .as_deref()
            .filter(|o| self.cors_origins.iter().any(|a| a == o));
        let resource = request
            .resource
            .clone()
            .or_else(|| request.path.clone())
            .unwrap_or_default();
        let route = match resource.trim_end_matches('/') {
            "/backup" => Route::Backups,
            "/backup/{job_id}" => Route::Job(
                request
                    .path_parameters
                    .get("job_id")
                    .cloned()
                    .unwrap_or_default(),
            ),
            path => match path.strip_prefix("/backup/") {
                Some(id) if !id.contains('/') => Route::Job(id.to_string()),
                _ => Route::Unknown,
            },
        };
        let method = request.http_method.clone();
        let mut response = match (&route, &method) {
            (Route::Unknown, _) => reply(
                404,
                json!({"error": format!("no route for {method} {resource}; use POST /backup or GET /backup/{{job_id}}")}),
            ),
            (_, &Method::OPTIONS) => self.preflight(origin.as_deref(), allowed_origin, &route),
            (Route::Backups, &Method::POST) => self.enqueue(&request).await,
            (Route::Job(id), &Method::GET) => self.status_of(id).await,
            (route, _) => {
                let mut r = reply(
                    405,
                    json!({"error": format!("{method} is not allowed here; allowed: {}", route.allow())}),
                );
                insert(&mut r.headers, "allow", route.allow());
                r
            }
        };
        if let Some(origin) = allowed_origin {
            insert(&mut response.headers, "access-control-allow-origin", origin);
        }
        insert(&mut response.headers, "vary", "Origin");
        info!(method = %method, resource = %resource, status = response.status_code,
              origin = origin.as_deref().unwrap_or("-"), "api request");
        response
    }

    fn preflight(
        &self,
        origin: Option<&str>,
        allowed_origin: Option<&str>,
        route: &Route,
    ) -> ApiGatewayProxyResponse {
        if allowed_origin.is_none() {
            warn!(
                origin = origin.unwrap_or("-"),
                "CORS preflight from an origin that is not allowed"
            );
            return reply(
                403,
                json!({"error": "this origin may not call the backup API; add it to DDB_BACKUP_CORS_ORIGINS (the stack's AllowedOrigins parameter)"}),
            );
        }
        let mut response = ApiGatewayProxyResponse::default();
        response.status_code = 204;
        insert(
            &mut response.headers,
            "access-control-allow-methods",
            route.allow(),
        );
        insert(
            &mut response.headers,
            "access-control-allow-headers",
            "content-type,x-api-key",
        );
        insert(
            &mut response.headers,
            "access-control-max-age",
            &PREFLIGHT_MAX_AGE_SECS.to_string(),
        );
        response
    }

    async fn enqueue(&self, request: &ApiGatewayProxyRequest) -> ApiGatewayProxyResponse {
        let body = match request_body(request) {
            Ok(body) => body,
            Err(response) => return *response,
        };
        let job_request = match JobRequest::from_json(&body) {
            Ok(r) => r,
            Err(err) => return job_error(&err),
        };
        if job_request.trigger.is_some_and(|t| t != Trigger::Api) {
            return job_error(&JobError::Field {
                field: "trigger".to_string(),
                message: "requests through the API are always `api`; leave the field out"
                    .to_string(),
            });
        }
        let job = match job_request.into_job(&self.defaults, None) {
            Ok(job) => job,
            Err(err) => return job_error(&err),
        };
        if let Some(tables) = &self.tables {
            match tables.describe(job.table.as_str()).await {
                Ok(_) => {}
                Err(err @ ScanError::TableNotFound { .. }) => {
                    return job_error(&JobError::Field {
                        field: "table".to_string(),
                        message: err.to_string(),
                    })
                }
                // Not fatal here: the worker reports it, with the whole story, if it persists.
                Err(err) => warn!(table = %job.table, error = %err, "checking the table failed"),
            }
        }
        // A caller-chosen job id is an idempotency key: a retried POST does not queue it twice.
        if let Some(board) = &self.status {
            match board.get(&job.job_id).await {
                Ok(Some(existing)) => {
                    return reply(
                        200,
                        json!({"job_id": job.job_id.as_str(), "status": existing.state, "status_url": format!("/backup/{}", job.job_id)}),
                    )
                }
                Ok(None) => {}
                Err(err) => {
                    warn!(job_id = %job.job_id, error = %err, "reading the job status failed")
                }
            }
        }
        let body = match serde_json::to_string(&job.to_request()) {
            Ok(body) => body,
            Err(err) => {
                return reply(
                    500,
                    json!({"error": format!("encoding the job failed: {err}")}),
                )
            }
        };
        if let Err(err) = self.queue.send(&body, None).await {
            error!(job_id = %job.job_id, error = %err, "enqueueing the job failed");
            return reply(
                503,
                json!({"error": format!("the job could not be queued: {err}; try again in a minute"), "job_id": job.job_id.as_str()}),
            );
        }
        if let Some(board) = &self.status {
            if let Err(err) = board.put(&JobStatus::new(&job, JobState::Queued)).await {
                warn!(job_id = %job.job_id, error = %err, "writing the queued status failed; the job is queued");
            }
        }
        info!(job_id = %job.job_id, table = %job.table, "job queued");
        let mut response = reply(
            202,
            json!({"job_id": job.job_id.as_str(), "status": "queued", "status_url": format!("/backup/{}", job.job_id)}),
        );
        insert(
            &mut response.headers,
            "location",
            &format!("/backup/{}", job.job_id),
        );
        response
    }

    async fn status_of(&self, id: &str) -> ApiGatewayProxyResponse {
        let job_id = match JobId::new(id) {
            Ok(id) => id,
            Err(message) => return reply(400, json!({"error": message, "field": "job_id"})),
        };
        let Some(board) = &self.status else {
            return reply(
                501,
                json!({"error": "job status is not configured (DDB_BACKUP_BUCKET)"}),
            );
        };
        match board.get(&job_id).await {
            Ok(Some(status)) => reply(200, serde_json::to_value(status).unwrap_or_default()),
            Ok(None) => reply(
                404,
                json!({"error": format!("no job `{job_id}`: it was never queued through this API, or its status expired")}),
            ),
            Err(err) => {
                error!(job_id = %job_id, error = %err, "reading the job status failed");
                reply(
                    503,
                    json!({"error": format!("the job status could not be read: {err}")}),
                )
            }
        }
    }
}

enum Route {
    Backups,
    Job(String),
    Unknown,
}

impl Route {
    fn allow(&self) -> &'static str {
        match self {
            Route::Backups => "POST, OPTIONS",
            Route::Job(_) => "GET, OPTIONS",
            Route::Unknown => "",
        }
    }
}

/// The body as text: `{}` when absent, base64 decoded when API Gateway encoded it, 413 when too big.
fn request_body(request: &ApiGatewayProxyRequest) -> Result<String, Box<ApiGatewayProxyResponse>> {
    let raw = request.body.as_deref().unwrap_or("");
    // Base64 is 4/3 of the bytes; checking the raw length first refuses huge bodies before decoding.
    if raw.len() > MAX_BODY_BYTES * 4 / 3 + 4 {
        return Err(Box::new(too_large()));
    }
    let bytes = if request.is_base64_encoded {
        base64::engine::general_purpose::STANDARD
            .decode(raw)
            .map_err(|e| {
                Box::new(reply(
                    400,
                    json!({"error": format!("body is not valid base64: {e}")}),
                ))
            })?
    } else {
        raw.as_bytes().to_vec()
    };
    if bytes.len() > MAX_BODY_BYTES {
        return Err(Box::new(too_large()));
    }
    let text = String::from_utf8(bytes).map_err(|_| {
        Box::new(reply(
            400,
            json!({"error": "body is not UTF-8 text; send a JSON job"}),
        ))
    })?;
    Ok(if text.trim().is_empty() {
        "{}".to_string()
    } else {
        text
    })
}

fn too_large() -> ApiGatewayProxyResponse {
    reply(
        413,
        json!({"error": format!("body is larger than {MAX_BODY_BYTES} bytes; a job is a small JSON object such as {{\"table\": \"studentData\"}}")}),
    )
}

fn job_error(err: &JobError) -> ApiGatewayProxyResponse {
    let mut body = json!({"error": err.to_string()});
    if let Some(field) = err.field() {
        body["field"] = json!(field);
    }
    reply(400, body)
}

fn reply(status: i64, body: serde_json::Value) -> ApiGatewayProxyResponse {
    let mut response = ApiGatewayProxyResponse::default();
    response.status_code = status;
    insert(&mut response.headers, "content-type", "application/json");
    insert(&mut response.headers, "cache-control", "no-store");
    response.body = Some(Body::Text(body.to_string()));
    response
}

fn insert(headers: &mut HeaderMap, name: &'static str, value: &str) {
    if let Ok(value) = HeaderValue::from_str(value) {
        headers.insert(name, value);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::job::{BucketName, Prefix};
    use crate::queue::MemoryQueue;
    use crate::scan::MemorySource;
    use crate::store::MemoryStore;

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
            "post" => include_str!("../tests/fixtures/apigw-post-backup.json"),
            "get" => include_str!("../tests/fixtures/apigw-get-status.json"),
            _ => include_str!("../tests/fixtures/apigw-options-preflight.json"),
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
    async fn a_post_without_body_uses_the_configured_defaults_and_a_known_job_id_is_not_queued_twice(
    ) {
        let (mut api, queue) = api();
        api.defaults.table = Some(crate::job::TableName::new("studentData").unwrap());
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
}
