//! Public sign-up (the SaaS edition): a person and their organisation, the email proved by a
//! mailed link before the first sign-in.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use infrapilot_accounts::signup::SignUp;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::auth::ClientInfo;
use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::extract::ApiJson;
use crate::state::AppState;
use crate::validate;

/// What a stranger is told when the confirmation mail did not go out.
const UNMAILED: &str =
    "the confirmation mail could not be sent; try again later or tell the operator of this host";

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SignUpRequest {
    pub email: String,
    /// At least 10 characters.
    pub password: String,
    pub name: String,
    /// The new organisation's name, 1–100 characters.
    pub organisation: String,
}

#[derive(Serialize, ToSchema)]
pub struct SignUpResponse {
    pub user_id: String,
    pub org_id: String,
    /// Whether the verification link was mailed; the account signs in once it is followed.
    pub mailed: bool,
    pub mail_error: Option<String>,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct VerifyEmailRequest {
    /// The token from the mailed link.
    pub token: String,
}

#[utoipa::path(post, path = "/api/v1/signup", tag = "signup", request_body = SignUpRequest,
    responses((status = 201, body = SignUpResponse), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 409, body = ErrorBody), (status = 429, body = ErrorBody)))]
pub async fn sign_up(
    State(state): State<AppState>,
    client: ClientInfo,
    ApiJson(req): ApiJson<SignUpRequest>,
) -> ApiResult<(StatusCode, Json<SignUpResponse>)> {
    if state.settings().edition != infrapilot_licensing::HostEdition::Saas {
        return Err(ApiError::not_found(
            "edition",
            "public sign-up is open only in the SaaS edition; ask an administrator for an invitation",
        ));
    }
    let email = validate::email("email", &req.email)?;
    validate::new_password("password", &req.password)?;
    let name = validate::display_name("name", &req.name)?;
    let organisation =
        infrapilot_accounts::organisations::organisation_name("organisation", &req.organisation)?;
    let signed_up = state
        .accounts()
        .sign_up(
            SignUp {
                email: email.clone(),
                password: req.password,
                name,
                organisation: organisation.clone(),
            },
            &client.client(),
        )
        .await?;
    // The stranger who signed up sees only that the mail failed, not why (the host's mail set-up
    // is the operator's business); the log has the details.
    let (mailed, mail_error) = match crate::routes::orgs::mail_link_base(&state) {
        Err(why) => {
            tracing::warn!("sign-up of {email}: the confirmation was not mailed: {why}");
            (false, Some(UNMAILED.to_owned()))
        }
        Ok(base) => {
            let link = format!("{base}/signup/verify#{}", signed_up.verification_secret);
            let text = format!(
                "Welcome to InfraPilot.\n\nConfirm your email ({email}) to finish setting up \"{organisation}\":\n{link}\n\n\
                 The link works once and expires in 24 hours. If you did not sign up, ignore this mail.\n"
            );
            match crate::routes::orgs::send_mail(
                &state,
                &email,
                &format!("Confirm your email for {organisation} on InfraPilot"),
                text,
            )
            .await
            {
                Ok(()) => (true, None),
                Err(e) => {
                    tracing::warn!("sign-up of {email}: the confirmation was not mailed: {e}");
                    (false, Some(UNMAILED.to_owned()))
                }
            }
        }
    };
    Ok((
        StatusCode::CREATED,
        Json(SignUpResponse {
            user_id: signed_up.user_id,
            org_id: signed_up.org_id.to_string(),
            mailed,
            mail_error,
        }),
    ))
}

#[utoipa::path(post, path = "/api/v1/signup/verify", tag = "signup", request_body = VerifyEmailRequest,
    responses((status = 204), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody)))]
pub async fn verify_email(
    State(state): State<AppState>,
    client: ClientInfo,
    ApiJson(req): ApiJson<VerifyEmailRequest>,
) -> ApiResult<StatusCode> {
    state
        .accounts()
        .verify_email(&req.token, &client.client())
        .await?;
    Ok(StatusCode::NO_CONTENT)
}
