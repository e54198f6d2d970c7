//! The one error type every handler returns ([`ApiError`]) and the JSON
//! body readers whose rejections take its shape.

use axum::extract::rejection::BytesRejection;
use axum::extract::{FromRequest, Request};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::de::DeserializeOwned;

use crate::backend::ConfigureError;
use crate::budget::BudgetError;
use crate::hooks::HookLoadError;
use crate::store::StoreError;

/// Every error a handler returns. Bodies are `{"status": <code>, "error":
/// "<message>"}`; messages say what to fix and never carry secrets or
/// internals (those are logged).
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// 400: the request is malformed.
    #[error("{0}")]
    BadRequest(String),
    /// 401: credentials missing or wrong.
    #[error("{0}")]
    Unauthorized(String),
    /// 403: not allowed from here.
    #[error("{0}")]
    Forbidden(String),
    /// 404: no such backend.
    #[error("{0}")]
    NotFound(String),
    /// 413: body over the size limit.
    #[error("{0}")]
    PayloadTooLarge(String),
    /// 415: wrong content type.
    #[error("{0}")]
    UnsupportedMediaType(String),
    /// 422: well-formed but unusable (a hook that does not compile, a
    /// sample that does not predict).
    #[error("{0}")]
    Unprocessable(String),
    /// 502: an upstream (MLflow) failed.
    #[error("{0}")]
    BadGateway(String),
    /// 503: no model configured at this URL.
    #[error("{0}")]
    NotConfigured(String),
    /// 503: too many concurrent predictions; retry.
    #[error("too many concurrent /predict requests; retry shortly")]
    Busy,
    /// 503: the memory budget stayed full; retry.
    #[error("{0}")]
    OutOfMemoryBudget(String),
    /// 412: `If-Match` named another generation.
    #[error("{0}")]
    PreconditionFailed(String),
    /// 503: the backend store cannot be reached; retry.
    #[error("{0}")]
    StoreUnavailable(String),
    /// 500: our bug or our disk.
    #[error("{0}")]
    Internal(String),
}

impl ApiError {
    pub fn status(&self) -> StatusCode {
        match self {
            Self::BadRequest(_) => StatusCode::BAD_REQUEST,
            Self::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            Self::Forbidden(_) => StatusCode::FORBIDDEN,
            Self::NotFound(_) => StatusCode::NOT_FOUND,
            Self::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            Self::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Self::Unprocessable(_) => StatusCode::UNPROCESSABLE_ENTITY,
            Self::BadGateway(_) => StatusCode::BAD_GATEWAY,
            Self::PreconditionFailed(_) => StatusCode::PRECONDITION_FAILED,
            Self::NotConfigured(_)
            | Self::Busy
            | Self::OutOfMemoryBudget(_)
            | Self::StoreUnavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            Self::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

impl From<BudgetError> for ApiError {
    fn from(e: BudgetError) -> Self {
        if e.is_transient() {
            Self::OutOfMemoryBudget(e.to_string())
        } else {
            Self::PayloadTooLarge(e.to_string())
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Unavailable { .. } => Self::StoreUnavailable(e.to_string()),
            StoreError::Stale { .. } => Self::PreconditionFailed(e.to_string()),
            StoreError::Corrupt { .. } => Self::Internal(e.to_string()),
        }
    }
}

impl From<ConfigureError> for ApiError {
    fn from(e: ConfigureError) -> Self {
        match e {
            ConfigureError::Config(m) => ApiError::BadRequest(m),
            ConfigureError::Hook(e @ HookLoadError::TooLarge { .. }) => {
                ApiError::PayloadTooLarge(e.to_string())
            }
            ConfigureError::Hook(e @ HookLoadError::Internal { .. }) => {
                ApiError::Internal(e.to_string())
            }
            ConfigureError::Hook(e) => ApiError::Unprocessable(e.to_string()),
            ConfigureError::Model(e) if e.is_upstream() => ApiError::BadGateway(e.to_string()),
            ConfigureError::Model(e) => ApiError::Unprocessable(e.to_string()),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        let retry = matches!(
            self,
            Self::Busy | Self::OutOfMemoryBudget(_) | Self::StoreUnavailable(_)
        );
        let body = crate::api::ErrorResponse {
            status: status.as_u16(),
            error: self.to_string(),
        };
        let mut response = (status, axum::Json(body)).into_response();
        if retry {
            // Label Studio and well-behaved clients back off and retry.
            response.headers_mut().insert(
                axum::http::header::RETRY_AFTER,
                axum::http::HeaderValue::from_static("1"),
            );
        }
        response
    }
}

impl ApiError {
    /// Answers with this error after discarding what the client is still
    /// sending (up to `max_bytes`, and for two seconds at most), chunk
    /// by chunk, keeping nothing: closing a connection with unread data
    /// resets it, and the client would see a broken pipe instead of the
    /// answer that says what to do.
    pub async fn answer_after_draining(self, request: Request, max_bytes: usize) -> Response {
        use futures::StreamExt as _;
        let mut chunks = request.into_body().into_data_stream();
        let discard = async {
            let mut seen = 0usize;
            while let Some(Ok(chunk)) = chunks.next().await {
                seen += chunk.len();
                if seen > max_bytes {
                    break;
                }
            }
        };
        let _ = tokio::time::timeout(DRAIN_TIME, discard).await;
        self.into_response()
    }
}

/// How long a refused body is drained at most.
const DRAIN_TIME: std::time::Duration = std::time::Duration::from_secs(2);

/// A JSON body whose rejections use the [`ApiError`] body shape. Parsed on
/// the async worker: for small bodies only (see [`parse_json_off_thread`]).
pub struct JsonBody<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        require_json(req.headers())?;
        let body = bytes::Bytes::from_request(req, state)
            .await
            .map_err(body_rejection)?;
        parse_json(&body).map(Self)
    }
}

/// Parses a JSON request body on the blocking pool, with [`JsonBody`]'s
/// errors: a task list of many megabytes takes long enough to parse that
/// doing it on an async worker would stall every other request on it
/// (`/health` included).
pub async fn parse_json_off_thread<T: DeserializeOwned + Send + 'static>(
    headers: &HeaderMap,
    body: Result<bytes::Bytes, BytesRejection>,
) -> Result<T, ApiError> {
    require_json(headers)?;
    let body = body.map_err(body_rejection)?;
    tokio::task::spawn_blocking(move || parse_json(&body))
        .await
        .map_err(|e| ApiError::Internal(format!("parsing the body: {e}")))?
}

/// `Content-Type: application/json` or any `+json` type.
fn require_json(headers: &HeaderMap) -> Result<(), ApiError> {
    let is_json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|mime| {
            let mime = mime.trim();
            mime.eq_ignore_ascii_case("application/json") || mime.ends_with("+json")
        });
    if is_json {
        Ok(())
    } else {
        Err(ApiError::UnsupportedMediaType(
            "expected a JSON body with Content-Type: application/json".into(),
        ))
    }
}

fn body_rejection(e: BytesRejection) -> ApiError {
    if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
        ApiError::PayloadTooLarge(e.body_text())
    } else {
        ApiError::BadRequest(e.body_text())
    }
}

/// The messages say whether the text is not JSON at all or JSON of the
/// wrong shape (with serde's path to the field).
fn parse_json<T: DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    serde_json::from_slice(body).map_err(|e| match e.classify() {
        serde_json::error::Category::Data => ApiError::BadRequest(format!(
            "Failed to deserialize the JSON body into the target type: {e}"
        )),
        _ => ApiError::BadRequest(format!("malformed JSON: {e}")),
    })
}
