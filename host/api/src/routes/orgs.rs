//! Organisations, their members and invitations. Routes under `/api/v1/orgs/{id}` act in that
//! organisation: the access middleware resolved `{id}` against the caller's memberships (another
//! organisation's id answers 404 there), so the [`Principal`] here is already in it.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use infrapilot_identity::Role;
use infrapilot_store::{InvitationRow, OrgId, OrganizationRow, UserRow};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::auth::{ClientInfo, Person, Principal};
use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::extract::ApiJson;
use crate::state::AppState;
use crate::validate;

#[derive(Serialize, ToSchema)]
pub struct OrganizationDto {
    pub id: String,
    pub name: String,
    pub created_at: String,
    /// The caller's role in it (`super_admin` for the host operator).
    pub role: Role,
}

impl OrganizationDto {
    fn new(row: OrganizationRow, role: Role) -> OrganizationDto {
        OrganizationDto {
            id: row.id,
            name: row.name,
            created_at: validate::rfc3339(row.created_at),
            role,
        }
    }
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct OrganizationRequest {
    /// 1–100 characters.
    pub name: String,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DeleteOrganizationRequest {
    /// The organisation's name, typed to confirm.
    pub confirm_name: String,
}

#[derive(Serialize, ToSchema)]
pub struct MemberDto {
    pub user_id: String,
    pub email: String,
    pub name: String,
    pub role: Role,
    pub disabled: bool,
    /// Whether the person has a second factor (TOTP) on.
    pub mfa_enabled: bool,
}

impl From<UserRow> for MemberDto {
    fn from(u: UserRow) -> MemberDto {
        MemberDto {
            role: Role::parse(&u.role).unwrap_or(Role::Viewer),
            user_id: u.id,
            email: u.email,
            name: u.name,
            disabled: u.disabled,
            mfa_enabled: u.totp_enabled,
        }
    }
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AddMemberRequest {
    /// The email of an existing account (invite anyone else).
    pub email: String,
    /// admin, operator or viewer; at most your own.
    pub role: String,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MemberRoleRequest {
    /// admin, operator or viewer; at most your own.
    pub role: String,
}

#[derive(Serialize, ToSchema)]
pub struct InvitationDto {
    pub id: String,
    pub email: String,
    pub role: Role,
    pub invited_by: String,
    pub created_at: String,
    pub expires_at: String,
}

impl From<InvitationRow> for InvitationDto {
    fn from(i: InvitationRow) -> InvitationDto {
        InvitationDto {
            role: Role::parse(&i.role).unwrap_or(Role::Viewer),
            id: i.id,
            email: i.email,
            invited_by: i.invited_by,
            created_at: validate::rfc3339(i.created_at),
            expires_at: validate::rfc3339(i.expires_at),
        }
    }
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct InviteRequest {
    pub email: String,
    /// admin, operator or viewer; at most your own.
    pub role: String,
}

#[derive(Serialize, ToSchema)]
pub struct CreatedInvitation {
    #[serde(flatten)]
    pub invitation: InvitationDto,
    /// The invitation's secret, shown this once (single use, seven days, for this email only).
    pub token: String,
    /// The dashboard page that accepts it (the token travels in the fragment, which browsers
    /// do not send to servers).
    pub accept_url: String,
    /// Whether the invitation was mailed through the host's SMTP settings.
    pub mailed: bool,
    /// Why it was not mailed (no SMTP settings, or the server's refusal); the link still works.
    pub mail_error: Option<String>,
}

/// The `{id}` of the path, which the access middleware already resolved to the principal's
/// organisation: checked again here so a handler can never act elsewhere.
fn same_org(principal: &Principal, id: &str) -> ApiResult<()> {
    match OrgId::parse(id) {
        Some(org) if org == principal.org_id => Ok(()),
        _ => Err(ApiError::not_found(
            "id",
            "no such organisation among yours",
        )),
    }
}

fn role_field(field: &str, raw: &str) -> ApiResult<Role> {
    validate::role(field, raw)
}

#[utoipa::path(get, operation_id = "list_organizations", path = "/api/v1/orgs", tag = "organisations",
    responses((status = 200, body = Vec<OrganizationDto>)), security(("bearer" = [])))]
pub async fn list(
    State(state): State<AppState>,
    caller: crate::auth::Authenticated,
) -> ApiResult<Json<Vec<OrganizationDto>>> {
    let person = &caller.person;
    let mut lookup = state.store().lookup().await?;
    if let crate::auth::Credential::ApiToken(_) = person.credential {
        // A token knows its own organisation only, not its creator's others.
        let Some((org, role)) = &caller.org else {
            return Ok(Json(Vec::new()));
        };
        let row = lookup.organization(org).await?;
        return Ok(Json(
            row.into_iter()
                .map(|o| OrganizationDto::new(o, *role))
                .collect(),
        ));
    }
    if person.host_operator {
        let all = lookup.organizations().await?;
        return Ok(Json(
            all.into_iter()
                .map(|o| OrganizationDto::new(o, Role::SuperAdmin))
                .collect(),
        ));
    }
    let memberships = lookup.memberships(&person.user_id).await?;
    Ok(Json(
        memberships
            .into_iter()
            .map(|m| OrganizationDto {
                role: Role::parse(&m.role).unwrap_or(Role::Viewer),
                id: m.org_id,
                name: m.org_name,
                created_at: validate::rfc3339(m.created_at),
            })
            .collect(),
    ))
}

#[utoipa::path(post, operation_id = "create_organization", path = "/api/v1/orgs", tag = "organisations",
    request_body = OrganizationRequest,
    responses((status = 201, body = OrganizationDto), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody), (status = 409, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn create(
    State(state): State<AppState>,
    person: Person,
    client: ClientInfo,
    ApiJson(req): ApiJson<OrganizationRequest>,
) -> ApiResult<(StatusCode, Json<OrganizationDto>)> {
    let actor = person.actor(&client, OrgId::default_org());
    let row = state
        .organisations()
        .create(&actor, person.host_operator, &req.name)
        .await?;
    let role = if person.host_operator {
        Role::SuperAdmin
    } else {
        Role::Admin
    };
    Ok((StatusCode::CREATED, Json(OrganizationDto::new(row, role))))
}

#[utoipa::path(get, operation_id = "get_organization", path = "/api/v1/orgs/{id}", tag = "organisations",
    params(("id" = String, Path)),
    responses((status = 200, body = OrganizationDto), (status = 404, body = ErrorBody)), security(("bearer" = [])))]
pub async fn get(
    State(state): State<AppState>,
    principal: Principal,
    client: ClientInfo,
    Path(id): Path<String>,
) -> ApiResult<Json<OrganizationDto>> {
    same_org(&principal, &id)?;
    let row = state.organisations().get(&principal.actor(&client)).await?;
    Ok(Json(OrganizationDto::new(row, principal.role)))
}

#[utoipa::path(put, operation_id = "update_organization", path = "/api/v1/orgs/{id}", tag = "organisations",
    params(("id" = String, Path)), request_body = OrganizationRequest,
    responses((status = 200, body = OrganizationDto), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn update(
    State(state): State<AppState>,
    principal: Principal,
    client: ClientInfo,
    Path(id): Path<String>,
    ApiJson(req): ApiJson<OrganizationRequest>,
) -> ApiResult<Json<OrganizationDto>> {
    same_org(&principal, &id)?;
    let row = state
        .organisations()
        .rename(&principal.actor(&client), &req.name)
        .await?;
    Ok(Json(OrganizationDto::new(row, principal.role)))
}

#[utoipa::path(delete, operation_id = "delete_organization", path = "/api/v1/orgs/{id}", tag = "organisations",
    params(("id" = String, Path)), request_body = DeleteOrganizationRequest,
    responses((status = 204), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn delete(
    State(state): State<AppState>,
    principal: Principal,
    client: ClientInfo,
    Path(id): Path<String>,
    ApiJson(req): ApiJson<DeleteOrganizationRequest>,
) -> ApiResult<StatusCode> {
    same_org(&principal, &id)?;
    let agents = {
        let mut tx = state.store().read(&principal.org_id).await?;
        tx.list_agents().await?
    };
    state
        .organisations()
        .delete(&principal.actor(&client), &req.confirm_name)
        .await?;
    // Its nodes' sessions end now (the gateway finds no agent when they come back).
    for agent in agents {
        state
            .nodes()
            .end_session(&agent.id, "this agent's organisation was deleted");
    }
    // Its lines in the log sink go too (in the background: the deletion is done; a sink that
    // is away leaves them, and the operator's log says so).
    if let Some(sink) = state.log_lines().sink {
        let org = principal.org_id.clone();
        tokio::spawn(async move {
            if let Err(e) = sink.drop_before(&org, i64::MAX).await {
                tracing::warn!(error = %e, org = %org.as_str(), "the deleted organisation's lines stay in the log sink");
            }
        });
    }
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(get, operation_id = "list_organization_members", path = "/api/v1/orgs/{id}/members", tag = "organisations",
    params(("id" = String, Path)),
    responses((status = 200, body = Vec<MemberDto>), (status = 404, body = ErrorBody)), security(("bearer" = [])))]
pub async fn list_members(
    State(state): State<AppState>,
    principal: Principal,
    client: ClientInfo,
    Path(id): Path<String>,
) -> ApiResult<Json<Vec<MemberDto>>> {
    same_org(&principal, &id)?;
    let members = state
        .organisations()
        .members(&principal.actor(&client))
        .await?;
    Ok(Json(members.into_iter().map(MemberDto::from).collect()))
}

#[utoipa::path(post, operation_id = "add_organization_member", path = "/api/v1/orgs/{id}/members", tag = "organisations",
    params(("id" = String, Path)), request_body = AddMemberRequest,
    responses((status = 201, body = MemberDto), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn add_member(
    State(state): State<AppState>,
    principal: Principal,
    client: ClientInfo,
    Path(id): Path<String>,
    ApiJson(req): ApiJson<AddMemberRequest>,
) -> ApiResult<(StatusCode, Json<MemberDto>)> {
    same_org(&principal, &id)?;
    let email = validate::email("email", &req.email)?;
    let role = role_field("role", &req.role)?;
    let max = crate::license_limits::limit(&state, crate::license_limits::Limited::Members).await?;
    let member = state
        .organisations()
        .add_member(&principal.actor(&client), principal.role, &email, role, max)
        .await?;
    Ok((StatusCode::CREATED, Json(MemberDto::from(member))))
}

#[utoipa::path(put, operation_id = "update_organization_member", path = "/api/v1/orgs/{id}/members/{uid}", tag = "organisations",
    params(("id" = String, Path), ("uid" = String, Path)), request_body = MemberRoleRequest,
    responses((status = 200, body = MemberDto), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn update_member(
    State(state): State<AppState>,
    principal: Principal,
    client: ClientInfo,
    Path((id, uid)): Path<(String, String)>,
    ApiJson(req): ApiJson<MemberRoleRequest>,
) -> ApiResult<Json<MemberDto>> {
    same_org(&principal, &id)?;
    let role = role_field("role", &req.role)?;
    let member = state
        .organisations()
        .change_role(&principal.actor(&client), principal.role, &uid, role)
        .await?;
    Ok(Json(MemberDto::from(member)))
}

#[utoipa::path(delete, operation_id = "reset_organization_member_mfa", path = "/api/v1/orgs/{id}/members/{uid}/mfa", tag = "organisations",
    params(("id" = String, Path), ("uid" = String, Path)),
    responses((status = 204), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)),
    security(("bearer" = [])))]
/// Resets a member's second factor (audited as `mfa.reset`): for a person who belongs to this
/// organisation only; their sessions end.
pub async fn reset_member_mfa(
    State(state): State<AppState>,
    principal: Principal,
    client: ClientInfo,
    Path((id, uid)): Path<(String, String)>,
) -> ApiResult<StatusCode> {
    same_org(&principal, &id)?;
    state
        .organisations()
        .reset_member_mfa(&principal.actor(&client), principal.role, &uid)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(delete, operation_id = "remove_organization_member", path = "/api/v1/orgs/{id}/members/{uid}", tag = "organisations",
    params(("id" = String, Path), ("uid" = String, Path)),
    responses((status = 204), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn remove_member(
    State(state): State<AppState>,
    principal: Principal,
    client: ClientInfo,
    Path((id, uid)): Path<(String, String)>,
) -> ApiResult<StatusCode> {
    same_org(&principal, &id)?;
    state
        .organisations()
        .remove_member(&principal.actor(&client), principal.role, &uid)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(get, operation_id = "list_organization_invitations", path = "/api/v1/orgs/{id}/invitations", tag = "organisations",
    params(("id" = String, Path)),
    responses((status = 200, body = Vec<InvitationDto>), (status = 404, body = ErrorBody)), security(("bearer" = [])))]
pub async fn list_invitations(
    State(state): State<AppState>,
    principal: Principal,
    client: ClientInfo,
    Path(id): Path<String>,
) -> ApiResult<Json<Vec<InvitationDto>>> {
    same_org(&principal, &id)?;
    let rows = state
        .organisations()
        .invitations(&principal.actor(&client))
        .await?;
    Ok(Json(rows.into_iter().map(InvitationDto::from).collect()))
}

#[utoipa::path(post, operation_id = "create_organization_invitation", path = "/api/v1/orgs/{id}/invitations", tag = "organisations",
    params(("id" = String, Path)), request_body = InviteRequest,
    responses((status = 201, body = CreatedInvitation), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn invite(
    State(state): State<AppState>,
    principal: Principal,
    client: ClientInfo,
    headers: axum::http::HeaderMap,
    Path(id): Path<String>,
    ApiJson(req): ApiJson<InviteRequest>,
) -> ApiResult<(StatusCode, Json<CreatedInvitation>)> {
    same_org(&principal, &id)?;
    let email = validate::email("email", &req.email)?;
    let role = role_field("role", &req.role)?;
    let issued = state
        .organisations()
        .invite(&principal.actor(&client), principal.role, &email, role)
        .await?;
    let accept_url = format!(
        "{}/invitations/accept#{}",
        crate::routes::install::public_base(&state, &headers),
        issued.secret
    );
    let org_name = state
        .organisations()
        .get(&principal.actor(&client))
        .await
        .map(|o| o.name)
        .unwrap_or_default();
    // Mailed only with the configured public URL: a link built from the request's Host header
    // would let anyone who can send an invitation mail a link to a host of their choosing.
    let (mailed, mail_error) = match mail_link_base(&state) {
        Err(why) => (false, Some(why)),
        Ok(_) => match send_invitation(&state, &principal, &email, &org_name, &accept_url).await {
            Ok(()) => (true, None),
            Err(e) => (false, Some(e)),
        },
    };
    Ok((
        StatusCode::CREATED,
        Json(CreatedInvitation {
            invitation: InvitationDto::from(issued.invitation),
            token: issued.secret,
            accept_url,
            mailed,
            mail_error,
        }),
    ))
}

/// Mails an invitation through the host's SMTP settings.
async fn send_invitation(
    state: &AppState,
    principal: &Principal,
    email: &str,
    org_name: &str,
    accept_url: &str,
) -> Result<(), String> {
    let text = format!(
        "{inviter} invites you to the organisation \"{org_name}\" on InfraPilot.\n\n\
         Accept (sign in or create your account as {email} first):\n{accept_url}\n\n\
         The link works once and expires in 7 days. If you did not expect it, ignore this mail.\n",
        inviter = principal.email,
    );
    send_mail(
        state,
        email,
        &format!("Invitation to {org_name} on InfraPilot"),
        text,
    )
    .await
}

/// Sends a plain-text mail through the host's SMTP settings (the plugin host's mailer, lettre).
/// The base of links this host mails: its configured public URL, never a request's Host header.
pub(crate) fn mail_link_base(state: &AppState) -> Result<String, String> {
    state
        .settings()
        .public_url
        .as_deref()
        .map(|url| url.trim_end_matches('/').to_owned())
        .ok_or_else(|| {
            "not mailed: mailed links need this host's public URL (INFRAPILOT_PUBLIC_URL); send the link yourself".to_owned()
        })
}

pub(crate) async fn send_mail(
    state: &AppState,
    to: &str,
    subject: &str,
    text: String,
) -> Result<(), String> {
    let mailer = state
        .extensions()
        .ok()
        .and_then(|e| e.plugins.mailer())
        .ok_or_else(|| "this host has no SMTP settings (INFRAPILOT_SMTP_HOST)".to_owned())?;
    mailer
        .send(infrapilot_plugin_runtime::contract::mail::Message {
            to: vec![to.to_owned()],
            subject: subject.to_owned(),
            text_body: text,
            html_body: None,
        })
        .await
        .map_err(|e| {
            use infrapilot_plugin_runtime::contract::mail::MailError;
            match e {
                MailError::Denied(m) | MailError::InvalidMessage(m) | MailError::Transport(m) => {
                    format!("the mail could not be sent: {m}")
                }
                MailError::NotConfigured => "this host has no SMTP settings".to_owned(),
            }
        })
}

#[utoipa::path(delete, operation_id = "revoke_organization_invitation", path = "/api/v1/orgs/{id}/invitations/{iid}", tag = "organisations",
    params(("id" = String, Path), ("iid" = String, Path)),
    responses((status = 204), (status = 404, body = ErrorBody)), security(("bearer" = [])))]
pub async fn revoke_invitation(
    State(state): State<AppState>,
    principal: Principal,
    client: ClientInfo,
    Path((id, iid)): Path<(String, String)>,
) -> ApiResult<StatusCode> {
    same_org(&principal, &id)?;
    state
        .organisations()
        .revoke_invitation(&principal.actor(&client), &iid)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(post, operation_id = "accept_invitation", path = "/api/v1/invitations/{token}/accept", tag = "organisations",
    params(("token" = String, Path)),
    responses((status = 200, body = OrganizationDto), (status = 403, body = ErrorBody), (status = 409, body = ErrorBody), (status = 410, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn accept_invitation(
    State(state): State<AppState>,
    person: Person,
    client: ClientInfo,
    Path(token): Path<String>,
) -> ApiResult<Json<OrganizationDto>> {
    let actor = person.actor(&client, OrgId::default_org());
    let max = crate::license_limits::limit(&state, crate::license_limits::Limited::Members).await?;
    let org = state
        .organisations()
        .accept(&actor, &person.email, &token, max)
        .await?;
    let mut tx = state.store().read(&org).await?;
    let row = tx
        .organization()
        .await?
        .ok_or_else(|| ApiError::internal("the joined organisation vanished"))?;
    let role = tx
        .user_by_id(&person.user_id)
        .await?
        .and_then(|u| Role::parse(&u.role))
        .unwrap_or(Role::Viewer);
    Ok(Json(OrganizationDto::new(row, role)))
}
