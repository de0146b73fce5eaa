//! The HTTP face of the product, behind API Gateway (REST API, Lambda proxy integration):
//!
//! - `POST /backup` with an optional job JSON body → validated job → SQS → `202 {"job_id", "status": "queued"}`;
//! - `GET /backup/{job_id}` → the job's status document;
//! - `GET /backup/{job_id}/files` → a complete backup's manifest and data files, each with a
//!   download URL valid for 15 minutes (S3 presigned, saved as an attachment);
//! - `GET /backups?table=T&limit=N` → the table's backups, newest first (see [`crate::triggers::catalog`]);
//! - `OPTIONS` on each → the CORS preflight, for the web front end's origins only.
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

use crate::model::job::{JobDefaults, JobError, JobId, JobPolicy, JobRequest, TableName, Trigger};
use crate::model::restore_job::RestoreRequest;
use crate::source::{ScanError, TableSource};
use crate::triggers::catalog::Catalog;
use crate::triggers::queue::JobQueue;
use crate::triggers::status::{JobState, JobStatus, StatusBoard};

/// Largest accepted body. A job is a few hundred bytes; anything near this is a mistake or abuse.
pub const MAX_BODY_BYTES: usize = 16 * 1024;

/// Request headers a browser may send: the key, and what a SigV4 signature adds (`ApiAuth`
/// `AWS_IAM` or `BOTH`). The template's gateway responses list the same.
const ALLOWED_HEADERS: &str =
    "content-type,x-api-key,authorization,x-amz-date,x-amz-security-token,x-amz-content-sha256";

/// Backups `GET /backups` lists when the caller does not say, and the most it lists.
const DEFAULT_LIST_LIMIT: usize = 30;
const MAX_LIST_LIMIT: usize = 100;

/// How long the download links of `GET /backup/{job_id}/files` work.
const DOWNLOAD_LINK_LIFETIME: std::time::Duration = std::time::Duration::from_secs(15 * 60);

/// How long a browser may cache a preflight answer.
const PREFLIGHT_MAX_AGE_SECS: u32 = 600;

/// The API handler and its ports.
pub struct Api {
    queue: Arc<dyn JobQueue>,
    status: Option<StatusBoard>,
    tables: Option<Arc<dyn TableSource>>,
    catalog: Option<Catalog>,
    defaults: JobDefaults,
    policy: JobPolicy,
    cors_origins: Vec<String>,
}

impl Api {
    /// An API enqueueing on `queue`, filling jobs from `defaults`, allowing `cors_origins`.
    pub fn new(queue: Arc<dyn JobQueue>, defaults: JobDefaults, cors_origins: Vec<String>) -> Self {
        Api {
            queue,
            status: None,
            tables: None,
            catalog: None,
            defaults: JobDefaults {
                trigger: Trigger::Api,
                ..defaults
            },
            policy: JobPolicy::default(),
            cors_origins,
        }
    }

    /// Status documents: written as `queued` on enqueue, read by `GET /backup/{job_id}`.
    pub fn with_status(mut self, status: StatusBoard) -> Self {
        self.status = Some(status);
        self
    }

    /// What a caller may ask for; a job beyond it is refused with `403` naming the field, and
    /// nothing is queued. Without this, the default: any table and recipient, no consistent read.
    pub fn with_policy(mut self, policy: JobPolicy) -> Self {
        self.policy = policy;
        self
    }

    /// Checks that a job's table exists before queueing it, so a typo gets a `400` now rather
    /// than a failure email later.
    pub fn with_tables(mut self, tables: Arc<dyn TableSource>) -> Self {
        self.tables = Some(tables);
        self
    }

    /// The deployment's backups, for `GET /backups`.
    pub fn with_catalog(mut self, catalog: Catalog) -> Self {
        self.catalog = Some(catalog);
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
            "/restore" => Route::Restores,
            "/backups" => Route::List,
            "/backup/{job_id}/files" => Route::Files(
                request
                    .path_parameters
                    .get("job_id")
                    .cloned()
                    .unwrap_or_default(),
            ),
            "/backup/{job_id}" => Route::Job(
                request
                    .path_parameters
                    .get("job_id")
                    .cloned()
                    .unwrap_or_default(),
            ),
            path => match path
                .strip_prefix("/backup/")
                .map(|p| p.split('/').collect::<Vec<_>>())
            {
                Some(parts) if parts.len() == 1 => Route::Job(parts[0].to_string()),
                Some(parts) if parts.len() == 2 && parts[1] == "files" => {
                    Route::Files(parts[0].to_string())
                }
                _ => Route::Unknown,
            },
        };
        let method = request.http_method.clone();
        let mut response = match (&route, &method) {
            (Route::Unknown, _) => reply(
                404,
                json!({"error": format!("no route for {method} {resource}; use POST /backup, POST /restore, GET /backup/{{job_id}} or GET /backups")}),
            ),
            (_, &Method::OPTIONS) => self.preflight(origin.as_deref(), allowed_origin, &route),
            (Route::Backups, &Method::POST) => self.enqueue(&request).await,
            (Route::Restores, &Method::POST) => self.enqueue_restore(&request).await,
            (Route::List, &Method::GET) => self.list(&request).await,
            (Route::Files(id), &Method::GET) => self.files_of(id).await,
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
            ALLOWED_HEADERS,
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
        if let Err(refused) = self.policy.check_api(&job) {
            warn!(job_id = %job.job_id, table = %job.table, field = refused.field,
                  reason = %refused.message, "job refused by the deployment's policy");
            return reply(
                403,
                json!({"error": refused.message, "field": refused.field}),
            );
        }
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

    /// `POST /restore`: a restore job into a new table whose name matches the deployment's
    /// pattern (403 otherwise, and nothing is queued), from a backup in its bucket.
    async fn enqueue_restore(&self, request: &ApiGatewayProxyRequest) -> ApiGatewayProxyResponse {
        let body = match request_body(request) {
            Ok(body) => body,
            Err(response) => return *response,
        };
        let mut value: serde_json::Value = match serde_json::from_str(&body) {
            Ok(serde_json::Value::Object(map)) => serde_json::Value::Object(map),
            _ => {
                return job_error(&JobError::Field {
                    field: ".".into(),
                    message: "a restore must be a JSON object such as {\"backup\": \"s3://bucket/…/\", \"table\": \"restored-studentData\"}".into(),
                })
            }
        };
        for internal in ["worker", "trigger"] {
            if value.get(internal).is_some() {
                return job_error(&JobError::Field {
                    field: internal.into(),
                    message: "set by the service; leave the field out".into(),
                });
            }
        }
        value["kind"] = json!("restore");
        value["trigger"] = json!("api");
        let parsed = RestoreRequest::from_json(&value.to_string())
            .and_then(|r| r.into_job(&self.defaults, JobId::generate().as_ref()));
        let job = match parsed {
            Ok(job) => job,
            Err(err) => return job_error(&err),
        };
        let forbidden = |field: &str, message: String| {
            warn!(job_id = %job.job_id, table = %job.table, field, reason = %message, "restore refused by the deployment's policy");
            reply(403, json!({"error": message, "field": field}))
        };
        if !self.policy.restore_tables.matches(job.table.as_str()) {
            return forbidden(
                "table",
                format!(
                    "restores through the API create only new tables matching `{}`; `{}` does not (the stack's RestoreTablePattern)",
                    self.policy.restore_tables.as_str(),
                    job.table
                ),
            );
        }
        if let Some(bucket) = self.defaults.bucket.as_ref().filter(|b| **b != job.bucket) {
            return forbidden(
                "backup",
                format!("restores read only this deployment's backups, in s3://{bucket}/"),
            );
        }
        if let Err(refused) = self.policy.check_recipients(&job.notify) {
            return forbidden(refused.field, refused.message);
        }
        if let Some(tables) = &self.tables {
            match tables.describe(job.table.as_str()).await {
                Err(ScanError::TableNotFound { .. }) => {}
                Ok(_) => {
                    return reply(
                        409,
                        json!({"error": format!("table `{}` already exists: a restore writes only into a new table; choose another name", job.table), "field": "table"}),
                    )
                }
                Err(err) => warn!(table = %job.table, error = %err, "checking the table failed"),
            }
        }
        if let Some(board) = &self.status {
            if let Ok(Some(existing)) = board.get(&job.job_id).await {
                return reply(
                    409,
                    json!({"error": format!("job id {} is taken (state {:?}); leave job_id out or choose another", job.job_id, existing.state), "field": "job_id"}),
                );
            }
        }
        let body = match serde_json::to_string(&job.to_request(None)) {
            Ok(body) => body,
            Err(err) => {
                return reply(
                    500,
                    json!({"error": format!("encoding the job failed: {err}")}),
                )
            }
        };
        if let Err(err) = self.queue.send(&body, None).await {
            error!(job_id = %job.job_id, error = %err, "enqueueing the restore failed");
            return reply(
                503,
                json!({"error": format!("the restore could not be queued: {err}; try again in a minute")}),
            );
        }
        if let Some(board) = &self.status {
            // The backed-up table, from the backup's place: {prefix}{table}/dt=…/{job}/.
            let parts: Vec<&str> = job.manifest_key.split('/').collect();
            let source = parts.len().checked_sub(4).map_or("", |i| parts[i]);
            let status = JobStatus::for_restore(&job, source, JobState::Queued);
            if let Err(err) = board.put(&status).await {
                warn!(job_id = %job.job_id, error = %err, "writing the queued status failed; the restore is queued");
            }
        }
        info!(job_id = %job.job_id, table = %job.table, backup = %job.backup_uri(), "restore queued");
        let mut response = reply(
            202,
            json!({"job_id": job.job_id.as_str(), "status": "queued", "restore_into": job.table.as_str(), "status_url": format!("/backup/{}", job.job_id)}),
        );
        insert(
            &mut response.headers,
            "location",
            &format!("/backup/{}", job.job_id),
        );
        response
    }

    async fn list(&self, request: &ApiGatewayProxyRequest) -> ApiGatewayProxyResponse {
        let query = &request.query_string_parameters;
        let table = match query.first("table") {
            Some(table) => TableName::new(table),
            None => match &self.defaults.table {
                Some(table) => Ok(table.clone()),
                None => {
                    return reply(
                        400,
                        json!({"error": "name the table: GET /backups?table=<table>", "field": "table"}),
                    )
                }
            },
        };
        let table = match table {
            Ok(table) => table,
            Err(message) => {
                return reply(400, json!({"error": message.to_string(), "field": "table"}))
            }
        };
        if let Err(refused) = self.policy.check_table(&table) {
            return reply(
                403,
                json!({"error": refused.message, "field": refused.field}),
            );
        }
        let limit = match query.first("limit").map(str::parse::<usize>) {
            None => DEFAULT_LIST_LIMIT,
            Some(Ok(n)) if (1..=MAX_LIST_LIMIT).contains(&n) => n,
            Some(_) => {
                return reply(
                    400,
                    json!({"error": format!("limit must be a whole number from 1 to {MAX_LIST_LIMIT}"), "field": "limit"}),
                )
            }
        };
        let Some(catalog) = &self.catalog else {
            return reply(
                501,
                json!({"error": "listing backups is not configured (DDB_BACKUP_BUCKET)"}),
            );
        };
        match catalog.list(&table, limit).await {
            Ok(backups) => reply(200, json!({"table": table.as_str(), "backups": backups})),
            Err(err) => {
                error!(table = %table, error = %err, "listing the backups failed");
                reply(
                    503,
                    json!({"error": format!("the backups could not be listed: {err}")}),
                )
            }
        }
    }

    async fn files_of(&self, id: &str) -> ApiGatewayProxyResponse {
        let job_id = match parse_job_id(id) {
            Ok(id) => id,
            Err(bad) => return *bad,
        };
        let (Some(board), Some(catalog)) = (&self.status, &self.catalog) else {
            return reply(
                501,
                json!({"error": "downloads are not configured (DDB_BACKUP_BUCKET)"}),
            );
        };
        let unavailable = |err: &dyn std::fmt::Display| {
            error!(job_id = %job_id, error = %err, "listing the backup's files failed");
            reply(
                503,
                json!({"error": format!("the backup's files could not be listed: {err}")}),
            )
        };
        let status = match board.get(&job_id).await {
            Ok(Some(status)) => status,
            Ok(None) => {
                return reply(
                    404,
                    json!({"error": format!("no job `{job_id}`: it was never queued through this API, or its status expired")}),
                )
            }
            Err(err) => return unavailable(&err),
        };
        let store = catalog.store();
        let root = store.uri("");
        let key = match (&status.state, &status.manifest) {
            (JobState::Complete, Some(uri)) => match uri.strip_prefix(&root) {
                Some(key) => key.to_string(),
                None => {
                    return reply(
                        404,
                        json!({"error": format!("the backup is in another bucket ({uri}); use `ddb-backup verify {uri}`")}),
                    )
                }
            },
            (state, _) => {
                return reply(
                    409,
                    json!({"error": format!("job `{job_id}` is {}; its files are listed once it is complete", serde_json::to_value(state).unwrap_or_default().as_str().unwrap_or("not complete"))}),
                )
            }
        };
        let manifest = match store
            .get(&key)
            .await
            .map(|b| crate::model::manifest::Manifest::from_json(&b))
        {
            Ok(Ok(manifest)) => manifest,
            Ok(Err(err)) => return unavailable(&err),
            Err(err) => return unavailable(&err),
        };
        let link = |key: String| async move {
            let name = key.rsplit('/').next().unwrap_or("backup").to_string();
            store
                .download_url(&key, &name, DOWNLOAD_LINK_LIFETIME)
                .await
                .map(|url| json!({"key": key, "name": name, "url": url}))
        };
        let mut files = Vec::with_capacity(manifest.files.len());
        let manifest_link = match link(key.clone()).await {
            Ok(link) => link,
            Err(err) => return unavailable(&err),
        };
        for file in &manifest.files {
            match link(file.key.clone()).await {
                Ok(mut entry) => {
                    entry["bytes"] = json!(file.bytes);
                    entry["sha256"] = json!(file.sha256);
                    entry["items"] = json!(file.item_count);
                    files.push(entry);
                }
                Err(err) => return unavailable(&err),
            }
        }
        reply(
            200,
            json!({"job_id": job_id.as_str(), "manifest": manifest_link, "files": files}),
        )
    }

    async fn status_of(&self, id: &str) -> ApiGatewayProxyResponse {
        let job_id = match parse_job_id(id) {
            Ok(id) => id,
            Err(bad) => return *bad,
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
    Restores,
    List,
    Files(String),
    Job(String),
    Unknown,
}

impl Route {
    fn allow(&self) -> &'static str {
        match self {
            Route::Backups | Route::Restores => "POST, OPTIONS",
            Route::List | Route::Files(_) => "GET, OPTIONS",
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

/// The path's job id, or the `400` naming the field.
fn parse_job_id(id: &str) -> Result<JobId, Box<ApiGatewayProxyResponse>> {
    JobId::new(id).map_err(|message| {
        Box::new(reply(
            400,
            json!({"error": message.to_string(), "field": "job_id"}),
        ))
    })
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
mod tests;
