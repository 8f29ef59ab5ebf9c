//! One error type for everything the HTTP API can answer with, mapped to a status, a vLLM-style JSON
//! body (`{"error": {"message", "type", "param", "code"}}`) and, for 503, a `Retry-After` header.
//! The mapping lives here and nowhere else, so every route fails the same way.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

/// Why a request was refused. Each variant says which status it maps to.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ApiError {
    /// 400: the body is not JSON, or not the shape the endpoint expects (FastAPI's "validation error").
    #[error("{message}")]
    InvalidBody {
        message: String,
        param: Option<String>,
    },
    /// 400: well-formed, but the values are not acceptable (vLLM's `BadRequestError`).
    #[error("{message}")]
    BadRequest {
        message: String,
        param: Option<String>,
    },
    /// 401: `--api-key` is set and the request's bearer token is missing or wrong.
    #[error("Unauthorized")]
    Unauthorized,
    /// 404: the request names a model this server does not serve.
    #[error("The model `{requested}` does not exist. Valid aliases: {served}.")]
    ModelNotFound { requested: String, served: String },
    /// 404: no route at this path.
    #[error("Not Found: no route {path}.")]
    RouteNotFound { path: String },
    /// 405: the path exists, not with this method.
    #[error("Method Not Allowed.")]
    MethodNotAllowed,
    /// 413: the body is larger than the configured limit.
    #[error("Request body is too large (limit {limit} bytes).")]
    PayloadTooLarge { limit: usize },
    /// 408: the request body did not arrive within the request timeout (a client that stopped
    /// sending halfway).
    #[error("The request body was not received within {seconds} s.")]
    RequestTimeout { seconds: f64 },
    /// 503: the engine's waiting queue is at its `--max-waiting` bound.
    #[error(
        "The server is overloaded: {waiting} requests are waiting (limit {limit}). Retry later."
    )]
    QueueFull { waiting: usize, limit: usize },
    /// 500/503/429: an error injected on purpose for client testing (`--fault-*`, `X-Servesim-Fault`).
    #[error("Injected fault: {status}")]
    Injected { status: u16 },
    /// 500: the engine thread has stopped (only during shutdown).
    #[error("The engine is not running.")]
    EngineGone,
    /// 429: the fleet router's admission (`--admission`) refused the request.
    #[error("The router's admission ({admission}) refused the request. Retry later.")]
    RouterAdmission { admission: String },
    /// 502: the fleet router could not reach the replica it picked.
    #[error("The router could not reach replica {replica}: {message}")]
    ReplicaUnreachable { replica: usize, message: String },
}

/// Seconds a client is told to wait by a 503.
const RETRY_AFTER_S: &str = "1";

impl ApiError {
    /// The HTTP status of this error.
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::InvalidBody { .. } | ApiError::BadRequest { .. } => StatusCode::BAD_REQUEST,
            ApiError::Unauthorized => StatusCode::UNAUTHORIZED,
            ApiError::ModelNotFound { .. } | ApiError::RouteNotFound { .. } => {
                StatusCode::NOT_FOUND
            }
            ApiError::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::PayloadTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::RequestTimeout { .. } => StatusCode::REQUEST_TIMEOUT,
            ApiError::QueueFull { .. } => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Injected { status } => {
                StatusCode::from_u16(*status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
            }
            ApiError::EngineGone => StatusCode::INTERNAL_SERVER_ERROR,
            ApiError::RouterAdmission { .. } => StatusCode::TOO_MANY_REQUESTS,
            ApiError::ReplicaUnreachable { .. } => StatusCode::BAD_GATEWAY,
        }
    }

    /// The `type` field, as vLLM names it (also a stable label for error metrics).
    pub fn kind(&self) -> &'static str {
        match self {
            ApiError::InvalidBody { .. } => "Bad Request",
            ApiError::BadRequest { .. } => "BadRequestError",
            ApiError::Unauthorized => "Unauthorized",
            ApiError::ModelNotFound { .. } => "NotFoundError",
            ApiError::RouteNotFound { .. } => "Not Found",
            ApiError::MethodNotAllowed => "Method Not Allowed",
            ApiError::PayloadTooLarge { .. } => "Request Entity Too Large",
            ApiError::RequestTimeout { .. } => "Request Timeout",
            ApiError::QueueFull { .. } => "ServiceUnavailableError",
            ApiError::Injected { status: 429 } | ApiError::RouterAdmission { .. } => {
                "RateLimitError"
            }
            ApiError::ReplicaUnreachable { .. } => "BadGatewayError",
            ApiError::Injected { status: 503 } => "ServiceUnavailableError",
            ApiError::Injected { .. } | ApiError::EngineGone => "InternalServerError",
        }
    }

    fn param(&self) -> Option<&str> {
        match self {
            ApiError::InvalidBody { param, .. } | ApiError::BadRequest { param, .. } => {
                param.as_deref()
            }
            ApiError::ModelNotFound { .. } => Some("model"),
            _ => None,
        }
    }

    /// A 400 about one parameter.
    pub fn bad_param(param: &str, message: String) -> ApiError {
        ApiError::BadRequest {
            message,
            param: Some(param.to_string()),
        }
    }
}

#[derive(Serialize)]
struct ErrorBody<'a> {
    error: ErrorDetail<'a>,
}

#[derive(Serialize)]
struct ErrorDetail<'a> {
    message: String,
    #[serde(rename = "type")]
    kind: &'a str,
    param: Option<&'a str>,
    code: u16,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        // Unknown routes and methods are answered by FastAPI itself in vLLM, not by its OpenAI
        // error handler: `{"detail": "Not Found"}` (observed on the real peer).
        if let ApiError::RouteNotFound { .. } | ApiError::MethodNotAllowed = self {
            return (status, Json(serde_json::json!({ "detail": self.kind() }))).into_response();
        }
        // vLLM's API-key middleware answers before its error handler: `{"error": "Unauthorized"}`.
        if let ApiError::Unauthorized = self {
            return (status, Json(serde_json::json!({ "error": self.kind() }))).into_response();
        }
        let body = ErrorBody {
            error: ErrorDetail {
                message: self.to_string(),
                kind: self.kind(),
                param: self.param(),
                code: status.as_u16(),
            },
        };
        let mut response = (status, Json(body)).into_response();
        if status == StatusCode::SERVICE_UNAVAILABLE || status == StatusCode::TOO_MANY_REQUESTS {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static(RETRY_AFTER_S));
        }
        response
    }
}

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error(transparent)]
    Profile(#[from] servesim_models::ProfileError),
    #[error("invalid server configuration: {0}")]
    Config(String),
    #[error("cannot start the engine thread: {0}")]
    Thread(std::io::Error),
    #[error("HTTP server failed: {0}")]
    Io(#[from] std::io::Error),
}
