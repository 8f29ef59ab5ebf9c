//! Reading a request body under the server's limits, and FastAPI's content-type rule.

use axum::extract::{FromRequest, Request};
use axum::http::header;
use bytes::Bytes;
use serde::de::DeserializeOwned;

use super::{clip, parse_json};
use crate::AppState;
use crate::errors::ApiError;

/// A request body as raw bytes, read under the server's limits: a JSON content type (or none, as
/// FastAPI accepts), at most [`MAX_BODY_BYTES`](crate::MAX_BODY_BYTES) (a larger `Content-Length`
/// is refused before anything is read), and the whole body within the request timeout (a client
/// that stops sending halfway gets a 408). Every failure is an [`ApiError`], so it gets the API's
/// own JSON error rather than axum's plain-text rejections.
#[derive(Debug)]
pub struct ApiBody(pub Bytes);

impl FromRequest<AppState> for ApiBody {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, Self::Rejection> {
        let content_type = req
            .headers()
            .get(header::CONTENT_TYPE)
            .map(|v| v.to_str().unwrap_or("\u{fffd}"));
        check_content_type(content_type)?;
        let declared = req
            .headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok());
        let limit = crate::MAX_BODY_BYTES;
        if declared.is_some_and(|n| n > limit as u64) {
            return Err(ApiError::PayloadTooLarge { limit });
        }
        let timeout = state.config().request_timeout;
        let read = tokio::time::timeout(timeout, Bytes::from_request(req, state)).await;
        let bytes = read
            .map_err(|_| ApiError::RequestTimeout {
                seconds: timeout.as_secs_f64(),
            })?
            .map_err(|e| {
                if e.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
                    ApiError::PayloadTooLarge { limit }
                } else {
                    ApiError::InvalidBody {
                        message: e.body_text(),
                        param: None,
                    }
                }
            })?;
        Ok(ApiBody(bytes))
    }
}

/// A JSON body parsed into `T` ([`ApiBody`]'s checks, then [`parse_json`]).
#[derive(Debug)]
pub struct ApiJson<T>(pub T);

impl<T: DeserializeOwned> FromRequest<AppState> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, Self::Rejection> {
        let ApiBody(bytes) = ApiBody::from_request(req, state).await?;
        parse_json(&bytes).map(ApiJson)
    }
}

/// FastAPI's rule: a body is read as JSON when there is no `Content-Type` or it is
/// `application/json` or `application/*+json` (parameters ignored); any other type is a 400.
pub fn check_content_type(content_type: Option<&str>) -> Result<(), ApiError> {
    let Some(ct) = content_type else {
        return Ok(());
    };
    let mime = ct.split(';').next().unwrap_or_default().trim();
    let json = mime.split_once('/').is_some_and(|(kind, sub)| {
        kind.eq_ignore_ascii_case("application")
            && (sub.eq_ignore_ascii_case("json")
                || sub.len() > 5
                    && sub
                        .get(sub.len() - 5..)
                        .is_some_and(|t| t.eq_ignore_ascii_case("+json")))
    });
    if json {
        return Ok(());
    }
    Err(ApiError::InvalidBody {
        message: format!(
            "1 validation error: {{'type': 'model_attributes_type', 'loc': 'body', 'msg': 'Input should be a valid dictionary or object to extract fields from'}} (Content-Type {:?} is not application/json)",
            clip(ct, 100)
        ),
        param: Some("body".into()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_types_follow_fastapi() {
        for ok in [
            None,
            Some("application/json"),
            Some("Application/JSON; charset=utf-8"),
            Some("application/vnd.api+json"),
        ] {
            assert!(check_content_type(ok).is_ok(), "{ok:?}");
        }
        for bad in [
            "text/plain",
            "application/x-www-form-urlencoded",
            "}}}",
            "",
            "+json",
        ] {
            let err = check_content_type(Some(bad)).expect_err(bad);
            assert_eq!(err.status(), 400);
        }
    }
}
