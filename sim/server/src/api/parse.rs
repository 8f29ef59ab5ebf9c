//! JSON into a request type the way FastAPI and pydantic do it, down to the location (`param`)
//! their errors name.

use serde::de::DeserializeOwned;

use crate::errors::ApiError;

/// Parse a body the way FastAPI and pydantic do, as far as the error's `param` (pydantic's
/// location) goes: `body.<character offset>` when the body is not JSON (Python's decoder position),
/// `body.<field>[.<index>...]` when a field is missing or of the wrong type, `body` when the body is
/// not an object.
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    // serde would also read a struct from an array; pydantic wants an object.
    if bytes.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
        return Err(match serde_json::from_slice::<serde::de::IgnoredAny>(bytes) {
            Err(e) => validation_error(bytes, "", &e),
            Ok(_) => ApiError::InvalidBody {
                message: "1 validation error:\n  {'type': 'model_attributes_type', 'loc': 'body', 'msg': 'Input should be a valid dictionary or object to extract fields from'}".into(),
                param: Some("body".into()),
            },
        });
    }
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let parsed = serde_path_to_error::deserialize::<_, T>(&mut de)
        .map_err(|e| (e.path().to_string(), e.into_inner()))
        .and_then(|v| de.end().map(|()| v).map_err(|e| (String::new(), e)));
    let (path, error) = match parsed {
        Ok(v) => return Ok(v),
        Err(e) => e,
    };
    // pydantic decodes the whole document before validating any field: a syntax error anywhere
    // wins over a type error met earlier.
    let error = match serde_json::from_slice::<serde::de::IgnoredAny>(bytes) {
        Err(syntax) if error.classify() == serde_json::error::Category::Data => syntax,
        _ => error,
    };
    Err(validation_error(bytes, &path, &error))
}

/// A pydantic validation error of one top-level field, found after parsing.
pub(super) fn field_error(kind: &str, field: &str, msg: &str) -> ApiError {
    ApiError::InvalidBody {
        message: format!(
            "1 validation error:\n  {{'type': '{kind}', 'loc': 'body.{field}', 'msg': {msg:?}}}"
        ),
        param: Some(format!("body.{field}")),
    }
}

/// The 400 for a body that [`parse_json`] refused.
fn validation_error(bytes: &[u8], path: &str, e: &serde_json::Error) -> ApiError {
    use serde_json::error::Category;
    let detail = e.to_string();
    let (kind, loc) = match e.classify() {
        Category::Syntax | Category::Eof | Category::Io => (
            "json_invalid",
            format!("body.{}", decode_position(bytes, e)),
        ),
        Category::Data => {
            let mut loc = String::from("body");
            // serde_path_to_error writes `.` for the root and `a.b[0].c` below it.
            for part in path.split(['.', '[', ']']).filter(|p| !p.is_empty()) {
                loc.push('.');
                loc.push_str(part);
            }
            match detail
                .strip_prefix("missing field `")
                .and_then(|rest| rest.split('`').next())
            {
                Some(field) => {
                    loc.push('.');
                    loc.push_str(field);
                    ("missing", loc)
                }
                None => ("invalid_type", loc),
            }
        }
    };
    // The line/column suffix is serde's, not pydantic's.
    let msg = detail
        .rsplit_once(" at line ")
        .map_or(detail.as_str(), |(m, _)| m);
    ApiError::InvalidBody {
        message: format!(
            "1 validation error:\n  {{'type': '{kind}', 'loc': '{loc}', 'msg': {msg:?}}}"
        ),
        param: Some(loc),
    }
}

/// Where Python's JSON decoder would report `e`: a character offset into the body. serde stops on
/// the offending character (column = its 1-based byte column), Python points at it; at the end of
/// the input both point past the last character.
fn decode_position(bytes: &[u8], e: &serde_json::Error) -> usize {
    let byte = if e.classify() == serde_json::error::Category::Eof {
        bytes.len()
    } else {
        let line_start: usize = bytes
            .split_inclusive(|&b| b == b'\n')
            .take(e.line().saturating_sub(1))
            .map(<[u8]>::len)
            .sum();
        (line_start + e.column().saturating_sub(1)).min(bytes.len())
    };
    String::from_utf8_lossy(&bytes[..byte]).chars().count()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{DetokenizeRequest, Endpoint, check_request};

    fn param_of(endpoint: Endpoint, body: &str) -> Option<String> {
        match check_request(endpoint, body.as_bytes(), &["local"]) {
            Err(ApiError::InvalidBody { param, .. } | ApiError::BadRequest { param, .. }) => param,
            other => panic!("{body}: {other:?}"),
        }
    }

    #[test]
    fn validation_errors_name_pydantic_locations() {
        // Each as the real vLLM 0.32 peer answered it.
        for (body, loc) in [
            ("{\"model\":", "body.9"),
            ("hello", "body.0"),
            (
                r#"{"messages":[{"role":"user","content":"hi"}],"max_tokens":2} x"#,
                "body.61",
            ),
            (
                r#"  {"messages":[{"role":"user","content":"hi"}],"max_tokens":2"#,
                "body.61",
            ),
            (
                r#"{"messages" [{"role":"user","content":"hi"}],"max_tokens":2}"#,
                "body.12",
            ),
            // A character offset, not a byte offset.
            (
                r#"{"messages":[{"role":"user","content":"hé"}],"max_tokens":2,}"#,
                "body.60",
            ),
            ("[1,2]", "body"),
            ("\"x\"", "body"),
            (r#"{"model":"local"}"#, "body.messages"),
            (r#"{"messages":"hello","max_tokens":4}"#, "body.messages"),
            (
                r#"{"messages":[{"role":"user","content":"hi"}],"max_tokens":"ten"}"#,
                "body.max_tokens",
            ),
            (
                r#"{"messages":[{"role":"user","content":"hi"}],"max_tokens":2.5}"#,
                "body.max_tokens",
            ),
            (
                r#"{"messages":[{"role":"user","content":"hi"}],"temperature":"x"}"#,
                "body.temperature",
            ),
            (
                r#"{"messages":[{"role":"user","content":"hi"}],"stop":5}"#,
                "body.stop",
            ),
            (
                r#"{"messages":[{"role":"user","content":"hi"}],"stream":2}"#,
                "body.stream",
            ),
            (
                r#"{"messages":[{"role":"user","content":"hi"}],"stream":true,"stream_options":{"include_usage":"x"}}"#,
                "body.stream_options.include_usage",
            ),
            (
                r#"{"messages":[{"role":"user","content":"hi"}],"stream":true,"stream_options":"usage"}"#,
                "body.stream_options",
            ),
            // A syntax error wins over a type error met before it (pydantic decodes first).
            (
                r#"{"max_tokens":"ten","messages" [{"role":"user","content":"hi"}]}"#,
                "body.31",
            ),
        ] {
            assert_eq!(
                param_of(Endpoint::Chat, body).as_deref(),
                Some(loc),
                "{body}"
            );
        }
        let err = parse_json::<DetokenizeRequest>(br#"{"tokens":[-1]}"#).expect_err("negative");
        assert!(
            matches!(err, ApiError::InvalidBody { param: Some(p), .. } if p == "body.tokens.0")
        );
    }
}
