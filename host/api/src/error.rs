//! The one error type of the HTTP API: `{"error": {"code", "message", "field"}}`.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

#[derive(Debug, Clone)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    pub field: Option<String>,
    pub retry_after_secs: Option<u64>,
    /// The policies that refused an action (`policy_violation`).
    pub policies: Option<Vec<PolicyNotice>>,
}

impl From<infrapilot_nodes::Notice> for PolicyNotice {
    fn from(n: infrapilot_nodes::Notice) -> PolicyNotice {
        PolicyNotice {
            policy_id: n.policy_id,
            name: n.name,
            action: n.action,
            reasons: n.reasons,
        }
    }
}

/// A policy an action broke, as a refusal or a warning names it.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct PolicyNotice {
    pub policy_id: String,
    pub name: String,
    /// `block`, `warn` or `audit`.
    pub action: String,
    pub reasons: Vec<String>,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct ErrorDetail {
    /// Stable machine-readable code, e.g. `invalid_value`, `unauthorized`.
    pub code: String,
    pub message: String,
    /// The input field at fault, as a dotted path, when there is one.
    pub field: Option<String>,
    /// With `policy_violation`: the policies that refused the action and why.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub policies: Option<Vec<PolicyNotice>>,
}

pub type ApiResult<T> = Result<T, ApiError>;

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            code,
            message: message.into(),
            field: None,
            retry_after_secs: None,
            policies: None,
        }
    }

    pub fn with_field(mut self, field: impl Into<String>) -> ApiError {
        self.field = Some(field.into());
        self
    }

    /// A field failed validation: 400 naming the field.
    pub fn invalid(field: &str, message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, "invalid_value", message).with_field(field)
    }

    pub fn unauthorized(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", message)
    }

    pub fn forbidden(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::FORBIDDEN, "forbidden", message)
    }

    pub fn not_found(field: &str, message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, "not_found", message).with_field(field)
    }

    pub fn conflict(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::CONFLICT, "conflict", message)
    }

    pub fn too_many_attempts(retry_after_secs: u64) -> ApiError {
        let mut e = ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "too_many_attempts",
            format!("too many failed attempts; try again in {retry_after_secs} s"),
        );
        e.retry_after_secs = Some(retry_after_secs);
        e
    }

    /// An unexpected failure. The cause is logged; the client sees only a generic message.
    pub fn internal(cause: impl std::fmt::Display) -> ApiError {
        tracing::error!(error = %cause, "internal error");
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "internal error; see the server log",
        )
    }
}

impl From<infrapilot_store::StoreError> for ApiError {
    fn from(e: infrapilot_store::StoreError) -> ApiError {
        if e.is_unique_violation() {
            return ApiError::conflict(e.to_string());
        }
        if e.is_unavailable() {
            tracing::error!(error = %e, "database unavailable");
            return ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "database_unavailable",
                "the database is not reachable; try again",
            );
        }
        ApiError::internal(e)
    }
}

/// The log sink failed: the operator's log says why (its message can name the sink's
/// internals), the caller that the log store is unavailable.
impl From<infrapilot_store::LogSinkError> for ApiError {
    fn from(e: infrapilot_store::LogSinkError) -> ApiError {
        tracing::error!(error = %e, "log sink unavailable");
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "log_store_unavailable",
            "the log store is not reachable; try again",
        )
    }
}

/// The account workflows' refusals as the API answers them.
impl From<infrapilot_accounts::AccountError> for ApiError {
    fn from(e: infrapilot_accounts::AccountError) -> ApiError {
        use infrapilot_accounts::AccountError;
        let message = e.to_string();
        match e {
            AccountError::Invalid { field, .. } => ApiError::invalid(&field, message),
            AccountError::Unauthorized { field, .. } => {
                let e = ApiError::unauthorized(message);
                match field {
                    Some(field) => e.with_field(field),
                    None => e,
                }
            }
            AccountError::TooManyAttempts { retry_after_secs } => {
                ApiError::too_many_attempts(retry_after_secs)
            }
            AccountError::Busy => {
                let mut e = ApiError::new(StatusCode::TOO_MANY_REQUESTS, "busy", message);
                e.retry_after_secs = Some(1);
                e
            }
            AccountError::EmailUnverified => {
                ApiError::new(StatusCode::FORBIDDEN, "email_unverified", message)
                    .with_field("email")
            }
            AccountError::Disabled => {
                ApiError::new(StatusCode::FORBIDDEN, "account_disabled", message)
            }
            AccountError::Conflict(_) => ApiError::conflict(message),
            AccountError::NoSuchSession | AccountError::NoSuchUser => {
                ApiError::not_found("id", message)
            }
            AccountError::EmailTaken => ApiError::conflict(message).with_field("email"),
            AccountError::LastSuperAdmin { field } => {
                ApiError::new(StatusCode::CONFLICT, "last_super_admin", message).with_field(field)
            }
            AccountError::LastAdmin { field } => {
                ApiError::new(StatusCode::CONFLICT, "last_admin", message).with_field(field)
            }
            AccountError::SsoRefused(_) => {
                ApiError::new(StatusCode::FORBIDDEN, "sso_refused", message)
            }
            AccountError::SsoRequired(_) => {
                ApiError::new(StatusCode::FORBIDDEN, "sso_required", message)
            }
            AccountError::CannotDeleteSelf => ApiError::conflict(message).with_field("id"),
            AccountError::SetupDone => ApiError::conflict(message),
            AccountError::SetupClosed => ApiError::forbidden(message).with_field("setup_code"),
            AccountError::WrongSetupCode => {
                ApiError::new(StatusCode::FORBIDDEN, "wrong_setup_code", message)
                    .with_field("setup_code")
            }
            AccountError::Store(e) => ApiError::from(e),
            AccountError::Identity(e) => ApiError::from(e),
            AccountError::Internal(m) => ApiError::internal(m),
        }
    }
}

impl From<infrapilot_accounts::OrgError> for ApiError {
    fn from(e: infrapilot_accounts::OrgError) -> ApiError {
        use infrapilot_accounts::OrgError;
        let message = e.to_string();
        match e {
            OrgError::Invalid { field, .. } => ApiError::invalid(&field, message),
            OrgError::NotFound { field, .. } => ApiError::not_found(&field, message),
            OrgError::Edition => {
                ApiError::new(StatusCode::CONFLICT, "edition_limit", message).with_field("edition")
            }
            OrgError::Forbidden(_) => ApiError::forbidden(message),
            OrgError::LastAdmin { field } => ApiError::conflict(message).with_field(field),
            OrgError::Conflict { field, .. } => ApiError::conflict(message).with_field(field),
            OrgError::MemberLimit { field, .. } => {
                ApiError::new(StatusCode::FORBIDDEN, "license_limit", message).with_field(field)
            }
            OrgError::InvitationRefused(_) => {
                ApiError::new(StatusCode::GONE, "invitation_invalid", message).with_field("token")
            }
            OrgError::Store(e) => ApiError::from(e),
            OrgError::Internal(m) => ApiError::internal(m),
        }
    }
}

impl From<infrapilot_identity::IdentityError> for ApiError {
    fn from(e: infrapilot_identity::IdentityError) -> ApiError {
        ApiError::internal(e)
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} {}: {}",
            self.status.as_u16(),
            self.code,
            self.message
        )?;
        if let Some(field) = &self.field {
            write!(f, " (field {field})")?;
        }
        Ok(())
    }
}

impl std::error::Error for ApiError {}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorBody {
            error: ErrorDetail {
                code: self.code.to_owned(),
                message: self.message,
                field: self.field,
                policies: self.policies,
            },
        };
        let mut response = (self.status, axum::Json(body)).into_response();
        if let Some(secs) = self.retry_after_secs
            && let Ok(v) = HeaderValue::from_str(&secs.to_string())
        {
            response.headers_mut().insert(header::RETRY_AFTER, v);
        }
        if self.status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"infrapilot\""),
            );
        }
        response
    }
}
