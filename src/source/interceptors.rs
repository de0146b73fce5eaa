//! SDK interceptors of the DynamoDB adapter: one keeps a Scan page's items as DynamoDB sent them
//! (the `dynamodb-json` format writes those bytes out unchanged), one counts throttled attempts.

use aws_smithy_types::body::SdkBody;
use bytes::Bytes;

use crate::codec::wire::{split_scan_response, WireItems};

/// Where [`CaptureWireItems`] leaves a page's items for the caller of `send`.
pub(super) type WireSlot = std::sync::Arc<std::sync::Mutex<Option<WireItems>>>;

/// Keeps a Scan page's items as DynamoDB sent them: on a successful response it wraps the body so
/// that, once the SDK has read it, the items are cut out into the slot and the SDK deserializes
/// only the rest (count, `LastEvaluatedKey`, consumed capacity). Errors, retries, signing and
/// timeouts stay the SDK's. A body the splitter cannot read goes to the SDK unchanged, and the
/// page comes back decoded.
#[derive(Debug)]
pub(super) struct CaptureWireItems(pub(super) WireSlot);

impl aws_sdk_dynamodb::config::Intercept for CaptureWireItems {
    fn name(&self) -> &'static str {
        "ddb-backup wire items"
    }

    fn modify_before_deserialization(
        &self,
        context: &mut aws_sdk_dynamodb::config::interceptors::BeforeDeserializationInterceptorContextMut<'_>,
        _components: &aws_sdk_dynamodb::config::RuntimeComponents,
        _cfg: &mut aws_sdk_dynamodb::config::ConfigBag,
    ) -> Result<(), aws_sdk_dynamodb::error::BoxError> {
        let response = context.response_mut();
        if response.status().is_success() {
            let body = std::mem::replace(response.body_mut(), SdkBody::taken());
            *response.body_mut() = SdkBody::from_body_1_x(SplitWhenRead {
                inner: body,
                buf: Vec::new(),
                slot: self.0.clone(),
                done: false,
            });
        }
        Ok(())
    }
}

/// A response body that collects the bytes, and at the end hands the items to the slot and only
/// the rest on to the SDK.
struct SplitWhenRead {
    inner: SdkBody,
    buf: Vec<u8>,
    slot: WireSlot,
    done: bool,
}

impl http_body::Body for SplitWhenRead {
    type Data = Bytes;
    type Error = aws_sdk_dynamodb::error::BoxError;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Bytes>, Self::Error>>> {
        use std::task::Poll;
        let this = &mut *self;
        if this.done {
            return Poll::Ready(None);
        }
        loop {
            match std::pin::Pin::new(&mut this.inner).poll_frame(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Some(Err(e))) => return Poll::Ready(Some(Err(e))),
                Poll::Ready(Some(Ok(frame))) => {
                    if let Ok(data) = frame.into_data() {
                        if this.buf.is_empty() {
                            let hint = http_body::Body::size_hint(&this.inner);
                            this.buf.reserve(hint.lower() as usize + data.len());
                        }
                        this.buf.extend_from_slice(&data);
                    }
                }
                Poll::Ready(None) => {
                    this.done = true;
                    let body = Bytes::from(std::mem::take(&mut this.buf));
                    let rest = match split_scan_response(body.clone()) {
                        Ok(split) => {
                            *this.slot.lock().unwrap_or_else(|e| e.into_inner()) =
                                Some(split.items);
                            split.rest
                        }
                        Err(e) => {
                            tracing::warn!(error = %e, "Scan response kept whole; the SDK decodes its items");
                            body
                        }
                    };
                    return Poll::Ready(Some(Ok(http_body::Frame::data(rest))));
                }
            }
        }
    }
}

/// Where [`RecordThrottles`] counts one request's throttled attempts.
pub(super) type ThrottleSlot = std::sync::Arc<std::sync::Mutex<crate::source::PageThrottles>>;

/// Counts one Scan request's attempts that DynamoDB throttled, including those the SDK retries
/// on its own, by the limit DynamoDB names in `ThrottlingReasons`: a key range (one
/// partition) or the table. A throttle without a reason counts as the table's.
#[derive(Debug)]
pub(super) struct RecordThrottles(pub(super) ThrottleSlot);

impl aws_sdk_dynamodb::config::Intercept for RecordThrottles {
    fn name(&self) -> &'static str {
        "ddb-backup throttle recorder"
    }

    fn read_after_attempt(
        &self,
        context: &aws_sdk_dynamodb::config::interceptors::FinalizerInterceptorContextRef<'_>,
        _components: &aws_sdk_dynamodb::config::RuntimeComponents,
        _cfg: &mut aws_sdk_dynamodb::config::ConfigBag,
    ) -> Result<(), aws_sdk_dynamodb::error::BoxError> {
        use aws_sdk_dynamodb::operation::scan::ScanError;
        let Some(error) = context
            .output_or_error()
            .and_then(|r| r.err())
            .and_then(|e| e.as_operation_error())
            .and_then(|e| e.downcast_ref::<ScanError>())
        else {
            return Ok(());
        };
        let reasons = match error {
            ScanError::ProvisionedThroughputExceededException(e) => e.throttling_reasons(),
            ScanError::ThrottlingException(e) => e.throttling_reasons(),
            ScanError::RequestLimitExceeded(e) => e.throttling_reasons(),
            _ => return Ok(()),
        };
        let key_range = !reasons.is_empty()
            && reasons.iter().all(|r| {
                r.reason()
                    .is_some_and(|r| r.contains("KeyRangeThroughputExceeded"))
            });
        let mut throttles = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if key_range {
            throttles.partition += 1;
        } else {
            throttles.table += 1;
        }
        Ok(())
    }
}
