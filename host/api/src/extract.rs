//! Request extractors whose failures are [`ApiError`]s naming the field at fault.

use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{StatusCode, header};
use serde::de::DeserializeOwned;

use crate::error::ApiError;

/// Largest JSON body accepted by any endpoint.
pub const MAX_JSON_BODY: usize = 64 * 1024;

/// A JSON body. Malformed JSON, wrong types, missing and unknown fields, invalid UTF-8 and
/// oversized bodies all become 4xx errors that name the field.
pub struct ApiJson<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let is_json = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(|v| {
                let mime = v.split(';').next().unwrap_or("").trim();
                mime.eq_ignore_ascii_case("application/json")
            })
            .unwrap_or(false);
        if !is_json {
            return Err(ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                "expected a JSON body with Content-Type: application/json",
            )
            .with_field("content-type"));
        }
        let bytes = axum::body::Bytes::from_request(req, state)
            .await
            .map_err(|_| body_too_large())?;
        parse_json(&bytes).map(ApiJson)
    }
}

fn body_too_large() -> ApiError {
    ApiError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        "body_too_large",
        format!("the request body exceeds {MAX_JSON_BODY} bytes"),
    )
    .with_field("body")
}

/// An optional JSON body: no body at all gives `T::default()`; anything else is parsed as
/// [`ApiJson`] would.
pub struct ApiJsonOrEmpty<T>(pub T);

impl<T: DeserializeOwned + Default, S: Send + Sync> FromRequest<S> for ApiJsonOrEmpty<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let empty = req
            .headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v == "0")
            || (req.headers().get(header::CONTENT_LENGTH).is_none()
                && req.headers().get(header::TRANSFER_ENCODING).is_none());
        if empty {
            return Ok(ApiJsonOrEmpty(T::default()));
        }
        // A JSON `null` says "no options" as well as no body does.
        let (parts, body) = req.into_parts();
        let bytes = axum::body::to_bytes(body, MAX_JSON_BODY)
            .await
            .map_err(|_| body_too_large())?;
        if bytes.trim_ascii() == b"null" {
            return Ok(ApiJsonOrEmpty(T::default()));
        }
        let req = Request::from_parts(parts, axum::body::Body::from(bytes));
        ApiJson::<T>::from_request(req, state)
            .await
            .map(|ApiJson(v)| ApiJsonOrEmpty(v))
    }
}

/// Deserialises JSON, turning serde's message into an error that names the field.
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    if bytes.is_empty() {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_json",
            "the request body is empty; expected a JSON object",
        )
        .with_field("body"));
    }
    // Every request body is an object; serde would otherwise accept a struct as an array.
    if bytes.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_json",
            "expected a JSON object",
        )
        .with_field("body"));
    }
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let parsed = serde_path_to_error::deserialize(&mut de);
    // JSON has one number type: `175.0` is the integer 175 (JSON Schema agrees). serde does not,
    // so a body it refused for a float where an integer goes is read again with whole floats
    // made integers.
    if let Err(e) = &parsed
        && e.inner()
            .to_string()
            .starts_with("invalid type: floating point")
        && let Ok(mut value) = serde_json::from_slice::<serde_json::Value>(bytes)
    {
        integral_floats_to_integers(&mut value);
        return serde_path_to_error::deserialize(value).map_err(|e| {
            let path = e.path().to_string();
            deserialize_error(&path, &e.into_inner().to_string(), false)
        });
    }
    let value = parsed.map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        deserialize_error(
            &path,
            &inner.to_string(),
            inner.is_syntax() || inner.is_eof(),
        )
    })?;
    de.end().map_err(|e| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_json",
            format!("trailing data after the JSON value: {e}"),
        )
        .with_field("body")
    })?;
    Ok(value)
}

/// Replaces every float with no fractional part (within ±2^53) by the same integer.
pub(crate) fn integral_floats_to_integers(value: &mut serde_json::Value) {
    match value {
        serde_json::Value::Number(n) if n.is_f64() => {
            if let Some(f) = n.as_f64()
                && f.fract() == 0.0
                && f.abs() <= 9_007_199_254_740_992.0
            {
                *value = serde_json::Value::from(f as i64);
            }
        }
        serde_json::Value::Array(items) => items.iter_mut().for_each(integral_floats_to_integers),
        serde_json::Value::Object(map) => map.values_mut().for_each(integral_floats_to_integers),
        _ => {}
    }
}

/// Query-string parameters, with the same error conventions as [`ApiJson`].
pub struct ApiQuery<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for ApiQuery<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let query = parts.uri.query().unwrap_or("");
        let de = serde_urlencoded::Deserializer::new(form_urlencoded::parse(query.as_bytes()));
        serde_path_to_error::deserialize(de)
            .map(ApiQuery)
            .map_err(|e| {
                let path = e.path().to_string();
                deserialize_error(&path, &e.into_inner().to_string(), false)
            })
    }
}

/// Builds the error for a failed deserialisation at `path` with serde's `message`.
fn deserialize_error(path: &str, message: &str, syntax: bool) -> ApiError {
    // `?` marks a segment serde could not name (e.g. a broken key); keep the named prefix.
    let known: Vec<&str> = path.split('.').take_while(|s| *s != "?").collect();
    let path = &known.join(".");
    // serde reports missing and unknown fields at the parent's path, naming the field in backticks.
    let named = |prefix: &str| -> Option<String> {
        let rest = message.strip_prefix(prefix)?;
        let name = rest.split('`').next()?;
        Some(if path == "." || path.is_empty() {
            name.to_owned()
        } else {
            format!("{path}.{name}")
        })
    };
    let clean = message
        .split(" at line ")
        .next()
        .unwrap_or(message)
        .to_owned();
    if let Some(field) = named("missing field `") {
        return ApiError::new(
            StatusCode::BAD_REQUEST,
            "missing_field",
            format!("{field} is required"),
        )
        .with_field(field);
    }
    if let Some(mut field) = named("unknown field `") {
        // serde_path_to_error already puts the unknown key itself on the path.
        if path != "." && !path.is_empty() && path.rsplit('.').next() == field.rsplit('.').next() {
            field = path.to_owned();
        }
        return ApiError::new(StatusCode::BAD_REQUEST, "unknown_field", clean).with_field(field);
    }
    let field = if path == "." || path.is_empty() {
        "body".to_owned()
    } else {
        path.to_owned()
    };
    let code = if syntax {
        "invalid_json"
    } else {
        "invalid_type"
    };
    ApiError::new(StatusCode::BAD_REQUEST, code, clean).with_field(field)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(serde::Deserialize, Debug)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Body {
        email: String,
        count: u32,
        inner: Option<Inner>,
    }

    #[derive(serde::Deserialize, Debug)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Inner {
        flag: bool,
    }

    fn err(body: &[u8]) -> ApiError {
        parse_json::<Body>(body).unwrap_err()
    }

    #[test]
    fn names_the_field() {
        let e = err(br#"{"count": 1}"#);
        assert_eq!(
            (e.code, e.field.as_deref()),
            ("missing_field", Some("email"))
        );
        let e = err(br#"{"email": 5, "count": 1}"#);
        assert_eq!(
            (e.code, e.field.as_deref()),
            ("invalid_type", Some("email"))
        );
        let e = err(br#"{"email": "a", "count": 1, "admin": true}"#);
        assert_eq!(
            (e.code, e.field.as_deref()),
            ("unknown_field", Some("admin"))
        );
        let e = err(br#"{"email": "a", "count": 1, "inner": {"flag": "yes"}}"#);
        assert_eq!(e.field.as_deref(), Some("inner.flag"));
        let e = err(br#"{"email": "a", "count": 1, "inner": {}}"#);
        assert_eq!(e.field.as_deref(), Some("inner.flag"));
        let e = err(b"{\"email\": \"\xff\xfe\", \"count\": 1}");
        assert!(e.status.is_client_error());
        assert_eq!(e.field.as_deref(), Some("email"));
        let e = err(b"{\"email\": ");
        assert_eq!(
            (e.code, e.field.as_deref()),
            ("invalid_json", Some("email"))
        );
        let e = err(b"");
        assert_eq!(e.field.as_deref(), Some("body"));
        let e = err(br#"{"email": "a", "count": 1} x"#);
        assert_eq!(e.field.as_deref(), Some("body"));
        // 2.0 is the integer 2; 2.5 is not.
        assert!(parse_json::<Body>(br#"{"email": "a", "count": 2.0}"#).is_ok());
        let e = err(br#"{"email": "a", "count": 2.5}"#);
        assert_eq!(e.field.as_deref(), Some("count"));
    }
}
