//! Users of the organisation, and the first-run setup that creates the first super_admin.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use infrapilot_accounts::UserChanges;
use infrapilot_identity::Role;
use infrapilot_store::{OrgId, Store, Tx, UserRow};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::containers::actor;
use crate::audit_log::Actor;
use crate::auth::{ClientInfo, Principal};
use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::extract::ApiJson;
use crate::state::AppState;
use crate::validate;

#[derive(Serialize, ToSchema)]
pub struct UserDto {
    pub id: String,
    pub email: String,
    pub name: String,
    pub role: Role,
    pub mfa_enabled: bool,
    pub disabled: bool,
    pub created_at: String,
    pub updated_at: String,
}

impl From<UserRow> for UserDto {
    fn from(u: UserRow) -> UserDto {
        UserDto {
            id: u.id,
            email: u.email,
            name: u.name,
            // The database's CHECK constraint admits only the four roles.
            role: Role::parse(&u.role).unwrap_or(Role::Viewer),
            mfa_enabled: u.totp_enabled,
            disabled: u.disabled,
            created_at: validate::rfc3339(u.created_at),
            updated_at: validate::rfc3339(u.updated_at),
        }
    }
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateUserRequest {
    pub email: String,
    pub password: String,
    pub name: String,
    /// `super_admin`, `admin`, `operator` or `viewer`.
    pub role: String,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SetupRequest {
    /// The one-time setup code: printed in the server log at first start and kept in
    /// `<data_dir>/setup-code` until the install is claimed.
    pub setup_code: String,
    pub email: String,
    pub password: String,
    pub name: String,
}

#[derive(Serialize, ToSchema)]
pub struct SetupStatus {
    /// True until the first user exists.
    pub needed: bool,
    /// Where the setup code is (claiming needs it); absent when setup through the API is closed.
    pub setup_code_hint: Option<String>,
    /// Whether `POST /api/v1/signup` is open (the SaaS edition).
    pub signup_open: bool,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateUserRequest {
    pub name: Option<String>,
    pub role: Option<String>,
    pub disabled: Option<bool>,
    /// Sets a new password and ends the user's sessions.
    pub password: Option<String>,
}

/// Validated input for a new user.
pub struct NewUserInput {
    pub email: String,
    pub password: String,
    pub name: String,
    pub role: Role,
}

impl NewUserInput {
    pub fn validate(
        email: &str,
        password: &str,
        name: &str,
        role: &str,
    ) -> ApiResult<NewUserInput> {
        let email = validate::email("email", email)?;
        validate::new_password("password", password)?;
        let name = validate::display_name("name", name)?;
        let role = validate::role("role", role)?;
        Ok(NewUserInput {
            email,
            password: password.to_owned(),
            name,
            role,
        })
    }
}

impl NewUserInput {
    fn account(self) -> infrapilot_accounts::NewAccount {
        infrapilot_accounts::NewAccount {
            email: self.email,
            password: self.password,
            name: self.name,
            role: self.role,
        }
    }
}

/// The account service's actor for `actor` acting from `ip` in the default organisation (the
/// first-run claim and the command line act on the host's own organisation).
fn store_actor(actor: &Actor, ip: &str) -> infrapilot_store::Actor {
    infrapilot_store::Actor {
        org_id: OrgId::default_org(),
        user_id: actor.id.clone(),
        label: actor.label.clone(),
        ip: ip.to_owned(),
        role: None,
    }
}

/// First-run setup or `infrapilot admin create-user`: creates a user unless `only_if_empty`
/// and users exist. Used by the CLI too.
pub async fn create_user(
    store: &Store,
    actor: &Actor,
    ip: &str,
    input: NewUserInput,
    only_if_empty: bool,
) -> ApiResult<UserDto> {
    let user = infrapilot_accounts::create_user_now(
        store,
        &store_actor(actor, ip),
        input.account(),
        only_if_empty,
    )
    .await?;
    Ok(UserDto::from(user))
}

#[utoipa::path(get, path = "/api/v1/setup", tag = "setup", responses((status = 200, body = SetupStatus)))]
pub async fn setup_status(State(state): State<AppState>) -> ApiResult<Json<SetupStatus>> {
    let mut tx = state.store().read(&OrgId::default_org()).await?;
    let needed = tx.count_users().await? == 0;
    Ok(Json(SetupStatus {
        needed,
        setup_code_hint: (needed && state.settings().setup_code.is_some()).then(|| {
            "the setup code is in the server's log and in the file setup-code in its data directory"
                .to_owned()
        }),
        signup_open: state.settings().edition == infrapilot_licensing::HostEdition::Saas,
    }))
}

#[utoipa::path(post, path = "/api/v1/setup", tag = "setup", request_body = SetupRequest,
    responses((status = 201, body = UserDto), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 409, body = ErrorBody), (status = 421, body = ErrorBody), (status = 429, body = ErrorBody)))]
pub async fn setup(
    State(state): State<AppState>,
    client: ClientInfo,
    ApiJson(req): ApiJson<SetupRequest>,
) -> ApiResult<(StatusCode, Json<UserDto>)> {
    // Refused before validating, so a finished installation reveals nothing about its rules;
    // claiming needs proof of access to the machine: the code the server printed at start.
    state
        .accounts()
        .check_setup_code(
            state.settings().setup_code.as_deref(),
            &req.setup_code,
            &client.client(),
        )
        .await?;
    let input = NewUserInput::validate(&req.email, &req.password, &req.name, "super_admin")?;
    let actor = Actor {
        id: None,
        label: input.email.clone(),
    };
    let user = create_user(state.store(), &actor, &client.ip, input, true).await?;
    if let Some(file) = &state.settings().setup_code_file {
        let _ = std::fs::remove_file(file);
    }
    Ok((StatusCode::CREATED, Json(user)))
}

#[utoipa::path(get, operation_id = "list_users", path = "/api/v1/users", tag = "users",
    responses((status = 200, body = Vec<UserDto>)), security(("bearer" = [])))]
pub async fn list(
    State(state): State<AppState>,
    principal: Principal,
) -> ApiResult<Json<Vec<UserDto>>> {
    let mut tx = state.store().read(&principal.org_id).await?;
    Ok(Json(
        tx.list_users()
            .await?
            .into_iter()
            .map(UserDto::from)
            .collect(),
    ))
}

#[utoipa::path(post, operation_id = "create_user", path = "/api/v1/users", tag = "users", request_body = CreateUserRequest,
    responses((status = 201, body = UserDto), (status = 400, body = ErrorBody), (status = 409, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn create(
    State(state): State<AppState>,
    principal: Principal,
    client: ClientInfo,
    ApiJson(req): ApiJson<CreateUserRequest>,
) -> ApiResult<(StatusCode, Json<UserDto>)> {
    let input = NewUserInput::validate(&req.email, &req.password, &req.name, &req.role)?;
    let users = crate::license_limits::Limited::Users;
    let max = crate::license_limits::limit(&state, users).await?;
    let members = crate::license_limits::Limited::Members;
    let max_members = crate::license_limits::limit(&state, members).await?;
    let mut tx = state.store().write(&principal.org_id).await?;
    crate::license_limits::check(&mut tx, users, max, "email").await?;
    crate::license_limits::check(&mut tx, members, max_members, "email").await?;
    let user = infrapilot_accounts::create_user(
        &mut tx,
        &actor(&principal, &client),
        input.account(),
        "user.create",
    )
    .await?;
    tx.commit().await?;
    Ok((StatusCode::CREATED, Json(UserDto::from(user))))
}

async fn find(tx: &mut Tx, raw_id: &str) -> ApiResult<UserRow> {
    let id = validate::uuid("id", raw_id)?;
    tx.user_by_id(&id)
        .await?
        .ok_or_else(|| ApiError::not_found("id", "no such user"))
}

#[utoipa::path(get, operation_id = "get_user", path = "/api/v1/users/{id}", tag = "users", params(("id" = uuid::Uuid, Path)),
    responses((status = 200, body = UserDto), (status = 404, body = ErrorBody)), security(("bearer" = [])))]
pub async fn get(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
) -> ApiResult<Json<UserDto>> {
    let mut tx = state.store().read(&principal.org_id).await?;
    Ok(Json(UserDto::from(find(&mut tx, &id).await?)))
}

#[utoipa::path(patch, operation_id = "update_user", path = "/api/v1/users/{id}", tag = "users", params(("id" = uuid::Uuid, Path)),
    request_body = UpdateUserRequest,
    responses((status = 200, body = UserDto), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn update(
    State(state): State<AppState>,
    principal: Principal,
    client: ClientInfo,
    Path(id): Path<String>,
    ApiJson(req): ApiJson<UpdateUserRequest>,
) -> ApiResult<Json<UserDto>> {
    // Validate everything before touching anything.
    let name = req
        .name
        .as_deref()
        .map(|n| validate::display_name("name", n))
        .transpose()?;
    let role = req
        .role
        .as_deref()
        .map(|r| validate::role("role", r))
        .transpose()?;
    if let Some(p) = &req.password {
        validate::new_password("password", p)?;
    }
    let id = validate::uuid("id", &id)?;
    let changes = UserChanges {
        name,
        role,
        disabled: req.disabled,
        password: req.password,
    };
    let updated = state
        .accounts()
        .update_user(&actor(&principal, &client), &id, changes)
        .await?;
    Ok(Json(UserDto::from(updated)))
}

#[utoipa::path(delete, operation_id = "reset_user_mfa", path = "/api/v1/users/{id}/mfa", tag = "users", params(("id" = uuid::Uuid, Path)),
    responses((status = 204), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)),
    security(("bearer" = [])))]
/// Resets a person's second factor (the host operator's; audited as `mfa.reset`): TOTP off,
/// backup codes gone, their sessions ended.
pub async fn reset_mfa(
    State(state): State<AppState>,
    principal: Principal,
    client: ClientInfo,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    let id = validate::uuid("id", &id)?;
    state
        .accounts()
        .reset_user_mfa(&actor(&principal, &client), &id)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(delete, operation_id = "delete_user", path = "/api/v1/users/{id}", tag = "users", params(("id" = uuid::Uuid, Path)),
    responses((status = 204), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn delete(
    State(state): State<AppState>,
    principal: Principal,
    client: ClientInfo,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    let id = validate::uuid("id", &id)?;
    state
        .accounts()
        .delete_user(&actor(&principal, &client), &id)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}
