//! `ddb-backup serve`: the whole event-driven system on one machine, against AWS or the
//! emulator. An HTTP server stands where API Gateway stands (the API key on every route but
//! `OPTIONS`, `403 {"message": "Forbidden"}` otherwise, with CORS headers for allowed origins),
//! in front of the same [`Api`] handler the Lambda runs; it also serves the web console. A
//! poller stands where the Lambda event source mapping stands: it long-polls the job queue, hands
//! batches to the same [`Worker`], deletes what the worker is done with and leaves the rest to the
//! queue's visibility timeout and redrive policy.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use aws_lambda_events::apigw::{ApiGatewayProxyRequest, ApiGatewayProxyResponse};
use aws_lambda_events::encodings::Body;
use aws_lambda_events::http::{HeaderMap, HeaderValue, Method};
use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use tokio::net::TcpListener;
use tokio::time::Instant;
use tracing::{info, warn};

use crate::triggers::api::{Api, MAX_BODY_BYTES};
use crate::triggers::worker::{QueueMessage, Worker, MAX_INVOCATION};

/// The web console, built into the binary: no files to install beside it.
const CONSOLE: [(&str, &str, &str); 3] = [
    (
        "/index.html",
        "text/html; charset=utf-8",
        include_str!("../../web/index.html"),
    ),
    (
        "/app.js",
        "text/javascript; charset=utf-8",
        include_str!("../../web/app.js"),
    ),
    (
        "/style.css",
        "text/css; charset=utf-8",
        include_str!("../../web/style.css"),
    ),
];

/// API Gateway in front of the API handler, and the console beside it.
pub struct LocalGateway {
    api: Api,
    api_key: String,
    cors_origins: Vec<String>,
}

impl LocalGateway {
    /// A gateway requiring `api_key` (as `x-api-key`) and answering CORS for `cors_origins`.
    pub fn new(api: Api, api_key: String, cors_origins: Vec<String>) -> Self {
        LocalGateway {
            api,
            api_key,
            cors_origins,
        }
    }

    /// Serves HTTP on `listener` until the process ends.
    pub async fn serve(self: Arc<Self>, listener: TcpListener) -> std::io::Result<()> {
        loop {
            let (stream, _) = listener.accept().await?;
            let gateway = self.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |request| {
                    let gateway = gateway.clone();
                    async move { Ok::<_, Infallible>(gateway.handle(request).await) }
                });
                let connection = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), service);
                if let Err(err) = connection.await {
                    warn!(error = %err, "an HTTP connection failed");
                }
            });
        }
    }

    async fn handle(&self, request: Request<Incoming>) -> Response<Full<Bytes>> {
        let path = request.uri().path().to_string();
        let method = request.method().clone();
        if method == Method::GET {
            let file = if path == "/" { "/index.html" } else { &path };
            if let Some((_, content_type, body)) = CONSOLE.iter().find(|(p, _, _)| *p == file) {
                return response(
                    StatusCode::OK,
                    content_type,
                    Bytes::from_static(body.as_bytes()),
                );
            }
        }
        let origin = request
            .headers()
            .get("origin")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let key_ok = request
            .headers()
            .get("x-api-key")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|key| key == self.api_key);
        if method != Method::OPTIONS && !key_ok {
            // As API Gateway answers a missing or wrong key, CORS headers included (the
            // template's gateway responses), so the page can tell the user.
            let mut forbidden = response(
                StatusCode::FORBIDDEN,
                "application/json",
                Bytes::from_static(br#"{"message":"Forbidden"}"#),
            );
            if let Some(origin) = origin.filter(|o| self.cors_origins.contains(o)) {
                if let Ok(value) = HeaderValue::from_str(&origin) {
                    forbidden
                        .headers_mut()
                        .insert("access-control-allow-origin", value);
                }
            }
            forbidden
                .headers_mut()
                .insert("vary", HeaderValue::from_static("Origin"));
            return forbidden;
        }
        let proxy = match proxy_request(request).await {
            Ok(proxy) => proxy,
            Err(too_large) => return too_large,
        };
        from_proxy_response(self.api.handle(proxy).await)
    }
}

/// The request as API Gateway's Lambda proxy integration hands it over.
async fn proxy_request(
    request: Request<Incoming>,
) -> Result<ApiGatewayProxyRequest, Response<Full<Bytes>>> {
    let (parts, body) = request.into_parts();
    let body = Limited::new(body, MAX_BODY_BYTES + 1)
        .collect()
        .await
        .map(|b| b.to_bytes())
        .map_err(|_| {
            response(
                StatusCode::PAYLOAD_TOO_LARGE,
                "application/json",
                Bytes::from(format!(
                    r#"{{"error":"body is larger than {MAX_BODY_BYTES} bytes"}}"#
                )),
            )
        })?;
    let mut proxy = ApiGatewayProxyRequest::default();
    proxy.http_method = parts.method;
    proxy.path = Some(parts.uri.path().to_string());
    let mut headers = HeaderMap::new();
    for (name, value) in &parts.headers {
        headers.insert(name.clone(), value.clone());
    }
    proxy.headers = headers;
    let query: std::collections::HashMap<String, String> = parts
        .uri
        .query()
        .map(|q| form_urlencoded::parse(q.as_bytes()).into_owned().collect())
        .unwrap_or_default();
    proxy.query_string_parameters = query.into();
    proxy.body = (!body.is_empty()).then(|| String::from_utf8_lossy(&body).into_owned());
    Ok(proxy)
}

fn from_proxy_response(proxy: ApiGatewayProxyResponse) -> Response<Full<Bytes>> {
    let body = match proxy.body {
        Some(Body::Text(text)) => Bytes::from(text),
        Some(Body::Binary(bytes)) => Bytes::from(bytes),
        _ => Bytes::new(),
    };
    let mut response = Response::new(Full::new(body));
    *response.status_mut() =
        StatusCode::from_u16(proxy.status_code as u16).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    for (name, value) in &proxy.headers {
        response.headers_mut().insert(name.clone(), value.clone());
    }
    response
}

fn response(status: StatusCode, content_type: &'static str, body: Bytes) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(body));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert("content-type", HeaderValue::from_static(content_type));
    response
        .headers_mut()
        .insert("cache-control", HeaderValue::from_static("no-store"));
    response
}

/// The event source mapping: long-polls `queue_url` and hands each batch to `worker` as one
/// invocation of up to 15 minutes. Messages the worker keeps come back when it set them to (a
/// retry's backoff, a deferral's lease) or after the queue's visibility timeout (and, after
/// `maxReceiveCount`, its redrive policy); the rest are deleted. The same poller serves the
/// dead-letter queue, whose messages the worker records as failed jobs.
pub async fn poll_queue(sqs: aws_sdk_sqs::Client, queue_url: String, worker: Arc<Worker>) {
    let queue = crate::triggers::queue::queue_name(&queue_url).to_string();
    loop {
        let received = sqs
            .receive_message()
            .queue_url(&queue_url)
            .max_number_of_messages(10)
            .wait_time_seconds(10) // shorter than the client's read timeout: a long poll is silent
            .message_system_attribute_names(aws_sdk_sqs::types::MessageSystemAttributeName::All)
            .message_attribute_names("All")
            .send()
            .await;
        let messages = match received {
            Ok(out) => out.messages.unwrap_or_default(),
            Err(err) => {
                warn!(error = %crate::aws::error_facts(&err).message, queue = %queue, "receiving from the queue failed; trying again in 5 s");
                tokio::time::sleep(Duration::from_secs(5)).await;
                continue;
            }
        };
        if messages.is_empty() {
            continue;
        }
        let batch: Vec<QueueMessage> = messages.iter().map(|m| queue_message(m, &queue)).collect();
        info!(messages = batch.len(), queue = %queue, "invoking the worker");
        let reports = worker
            .handle_batch(&batch, Instant::now() + MAX_INVOCATION)
            .await;
        for (message, report) in messages.iter().zip(&reports) {
            if report.keep_on_queue {
                continue;
            }
            let deleted = sqs
                .delete_message()
                .queue_url(&queue_url)
                .receipt_handle(message.receipt_handle().unwrap_or_default())
                .send()
                .await;
            if let Err(err) = deleted {
                warn!(error = %crate::aws::error_facts(&err).message, "deleting a handled message failed; SQS will deliver it again");
            }
        }
    }
}

fn queue_message(message: &aws_sdk_sqs::types::Message, queue: &str) -> QueueMessage {
    use aws_sdk_sqs::types::MessageSystemAttributeName as Name;
    let attribute = |name: Name| {
        message
            .attributes()
            .and_then(|a| a.get(&name))
            .map(String::as_str)
    };
    let mut received = QueueMessage::from_parts(
        message.message_id().unwrap_or_default().to_string(),
        message.body().unwrap_or_default().to_string(),
        attribute(Name::SentTimestamp),
        attribute(Name::ApproximateReceiveCount),
    );
    received.receipt_handle = message.receipt_handle().map(str::to_string);
    received.queue = Some(queue.to_string());
    received.reason = message
        .message_attributes()
        .and_then(|a| a.get(crate::triggers::queue::REASON_ATTRIBUTE))
        .and_then(|v| v.string_value().map(str::to_string));
    received
}
