//! Field validation shared by the handlers. Each check names the field it refuses.

use infrapilot_identity::{Role, password_problem};

use crate::error::{ApiError, ApiResult};

/// A normalised (trimmed, lower-case) email address.
pub fn email(field: &str, raw: &str) -> ApiResult<String> {
    let e = raw.trim().to_lowercase();
    if e.is_empty() {
        return Err(ApiError::invalid(
            field,
            format!("{field} must not be empty"),
        ));
    }
    if e.len() > 254 {
        return Err(ApiError::invalid(
            field,
            format!("{field} must be at most 254 characters"),
        ));
    }
    let valid = match e.split_once('@') {
        Some((local, domain)) => {
            !local.is_empty()
                && local.len() <= 64
                && !domain.is_empty()
                && !domain.contains('@')
                && !domain.starts_with('.')
                && !domain.ends_with('.')
                && !domain.contains("..")
                && e.chars()
                    .all(|c| !c.is_whitespace() && !c.is_control() && c != '<' && c != '>')
        }
        None => false,
    };
    if !valid {
        return Err(ApiError::invalid(
            field,
            format!("{field} is not a valid email address"),
        ));
    }
    Ok(e)
}

/// A display name: 1–100 characters, no control characters.
pub fn display_name(field: &str, raw: &str) -> ApiResult<String> {
    let n = raw.trim();
    if n.is_empty() {
        return Err(ApiError::invalid(
            field,
            format!("{field} must not be empty"),
        ));
    }
    if n.chars().count() > 100 {
        return Err(ApiError::invalid(
            field,
            format!("{field} must be at most 100 characters"),
        ));
    }
    if n.chars().any(char::is_control) {
        return Err(ApiError::invalid(
            field,
            format!("{field} must not contain control characters"),
        ));
    }
    Ok(n.to_owned())
}

/// A short label (token names): 1–64 characters, no control characters.
pub fn label(field: &str, raw: &str) -> ApiResult<String> {
    let n = raw.trim();
    if n.is_empty() || n.chars().count() > 64 || n.chars().any(char::is_control) {
        return Err(ApiError::invalid(
            field,
            format!("{field} must be 1–64 characters without control characters"),
        ));
    }
    Ok(n.to_owned())
}

pub fn new_password(field: &str, raw: &str) -> ApiResult<()> {
    match password_problem(raw) {
        Some(problem) => Err(ApiError::invalid(field, format!("{field} {problem}"))),
        None => Ok(()),
    }
}

pub fn role(field: &str, raw: &str) -> ApiResult<Role> {
    Role::parse(raw).ok_or_else(|| {
        ApiError::invalid(
            field,
            format!("{field} must be one of super_admin, admin, operator, viewer"),
        )
    })
}

/// An id in a path: a UUID.
/// A UUID in its hyphenated form (either letter case), as the API documents and writes them;
/// the simple, braced and URN spellings are refused.
pub fn uuid(field: &str, raw: &str) -> ApiResult<String> {
    uuid::Uuid::try_parse(raw)
        .ok()
        .filter(|_| raw.len() == 36)
        .map(|u| u.to_string())
        .ok_or_else(|| {
            ApiError::invalid(
                field,
                format!("{field} must be a UUID (8-4-4-4-12 hexadecimal digits)"),
            )
        })
}

/// An RFC 3339 timestamp, as Unix milliseconds.
pub fn timestamp(field: &str, raw: &str) -> ApiResult<i64> {
    chrono::DateTime::parse_from_rfc3339(raw)
        .map(|t| t.timestamp_millis())
        .map_err(|_| {
            ApiError::invalid(
                field,
                format!("{field} must be an RFC 3339 time such as 2026-01-31T12:00:00Z"),
            )
        })
}

/// Nanoseconds since the epoch as RFC 3339 with nanoseconds (UTC).
pub fn rfc3339_ns(ns: i64) -> String {
    chrono::DateTime::from_timestamp_nanos(ns).to_rfc3339_opts(chrono::SecondsFormat::Nanos, true)
}

/// A request's RFC 3339 time in nanoseconds; one beyond what nanoseconds reach (before 1677,
/// after 2262) is the nearest end. Else a 400 naming `field`.
pub fn time_ns(field: &str, raw: &str) -> Result<i64, crate::error::ApiError> {
    chrono::DateTime::parse_from_rfc3339(raw)
        .ok()
        .map(|t| {
            t.timestamp_nanos_opt().unwrap_or(if t.timestamp() < 0 {
                i64::MIN
            } else {
                i64::MAX
            })
        })
        .ok_or_else(|| {
            crate::error::ApiError::invalid(
                field,
                format!("{field} must be an RFC 3339 time such as 2026-01-31T12:00:00Z"),
            )
        })
}

/// Unix milliseconds as RFC 3339 (UTC).
pub fn rfc3339(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emails() {
        assert_eq!(email("email", " A@Example.COM ").unwrap(), "a@example.com");
        for bad in [
            "", "a", "a@", "@b", "a@@b", "a b@c", "a@b..c", "a@.b", "a\n@b", "<a@b>",
        ] {
            let e = email("email", bad).unwrap_err();
            assert_eq!(e.field.as_deref(), Some("email"), "{bad:?}");
        }
    }

    #[test]
    fn names_and_times() {
        assert!(display_name("name", "Ada").is_ok());
        assert!(display_name("name", " ").is_err());
        assert!(display_name("name", "a\u{7}b").is_err());
        assert!(display_name("name", &"x".repeat(101)).is_err());
        assert_eq!(timestamp("since", "1970-01-01T00:00:01Z").unwrap(), 1000);
        assert!(timestamp("since", "yesterday").is_err());
        assert_eq!(rfc3339(1000), "1970-01-01T00:00:01.000Z");
        assert!(uuid("id", "not-a-uuid").is_err());
    }
}
