//! Organisations as a service: making, renaming and deleting one, its members and their roles,
//! invitations (a 256-bit token stored hashed, shown once, single use, seven days, bound to the
//! invited email, a role no higher than the inviter's). Every change is audited in the
//! organisation's own chain in the transaction that makes it; a deleted organisation's end is
//! recorded in the host's chain (the default organisation's), its own being gone with it.

use infrapilot_identity::{Role, TokenKind, hash_token, issue_token};
use infrapilot_store::{
    Actor, InvitationRow, NewInvitation, OrgId, OrganizationRow, Store, StoreError, Tx, UserRow,
    now_ms,
};
use serde_json::json;

/// How long an invitation may be accepted.
pub const INVITATION_TTL_MS: i64 = 7 * 24 * 60 * 60 * 1000;
/// The longest organisation name.
const MAX_NAME_CHARS: usize = 100;

/// How many organisations the host's edition allows, and who may make them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OrgCreation {
    /// Community: exactly one organisation, the default.
    Single,
    /// Enterprise: many, made by the host operator.
    ByHostOperator,
    /// SaaS: many, made by anyone signed in.
    ByAnyone,
}

/// Why an organisation workflow refused. Nothing of the refused change was stored.
#[derive(Debug, thiserror::Error)]
pub enum OrgError {
    #[error("{message}")]
    Invalid { field: String, message: String },
    /// Not found, or not visible to the caller (another organisation's ids answer the same).
    #[error("{message}")]
    NotFound { field: String, message: String },
    /// The edition runs one organisation.
    #[error(
        "the community edition runs exactly one organisation; an enterprise or SaaS edition runs many"
    )]
    Edition,
    /// The caller's role or position does not allow it.
    #[error("{0}")]
    Forbidden(String),
    /// The change would leave the organisation without an enabled admin; `field` asked for it.
    #[error("this is the organisation's last enabled admin; make another member admin first")]
    LastAdmin { field: String },
    #[error("{message}")]
    Conflict { field: String, message: String },
    /// The organisation has the most members its licence or plan allows; `field` asked for one
    /// more.
    #[error(
        "the licence allows {max} members in an organisation and {current} exist; remove one, or install a licence with a higher limit"
    )]
    MemberLimit {
        field: String,
        max: u64,
        current: i64,
    },
    /// An invitation that was used, revoked, expired, or is not for this person.
    #[error("{0}")]
    InvitationRefused(String),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("{0}")]
    Internal(String),
}

type Result<T, E = OrgError> = std::result::Result<T, E>;

fn invalid(field: &str, message: impl Into<String>) -> OrgError {
    OrgError::Invalid {
        field: field.to_owned(),
        message: message.into(),
    }
}

/// An invitation just made: the row and its secret, shown this once.
#[derive(Debug)]
pub struct IssuedInvitation {
    pub invitation: InvitationRow,
    pub secret: String,
}

/// The organisation workflows (ARCHITECTURE.md, "Tenancy").
#[derive(Clone)]
pub struct Organisations {
    store: Store,
    creation: OrgCreation,
}

/// A trimmed organisation name of 1–100 printable characters.
pub fn organisation_name(field: &str, name: &str) -> Result<String> {
    let name = name.trim();
    if name.is_empty() || name.chars().count() > MAX_NAME_CHARS {
        return Err(invalid(
            field,
            format!("{field} must be 1–{MAX_NAME_CHARS} characters"),
        ));
    }
    if name.chars().any(char::is_control) {
        return Err(invalid(
            field,
            format!("{field} must not contain control characters"),
        ));
    }
    Ok(name.to_owned())
}

fn member_role(field: &str, role: Role) -> Result<Role> {
    if role == Role::SuperAdmin {
        return Err(invalid(
            field,
            "super_admin is the host operator's role, not an organisation's: use admin, operator or viewer",
        ));
    }
    Ok(role)
}

/// Refuses one more member in `tx`'s organisation when `max` (the licence's `members`) is
/// reached. Serialised per organisation, so parallel additions cannot overshoot.
pub async fn check_member_limit(tx: &mut Tx, max: Option<u64>, field: &str) -> Result<()> {
    let Some(max) = max else {
        return Ok(());
    };
    tx.serialize("limit:members").await?;
    let current = tx.count_members().await?;
    if u64::try_from(current).unwrap_or(0) >= max {
        return Err(OrgError::MemberLimit {
            field: field.to_owned(),
            max,
            current,
        });
    }
    Ok(())
}

/// Whether `role` administers the organisation (`super_admin` does, in the default one).
fn administers(role: &str) -> bool {
    role == Role::Admin.as_str() || role == Role::SuperAdmin.as_str()
}

impl Organisations {
    pub fn new(store: Store, creation: OrgCreation) -> Organisations {
        Organisations { store, creation }
    }

    pub fn creation(&self) -> OrgCreation {
        self.creation
    }

    /// Makes an organisation with `person` (an actor whose `user_id` is set) as its admin.
    pub async fn create(
        &self,
        person: &Actor,
        host_operator: bool,
        name: &str,
    ) -> Result<OrganizationRow> {
        let name = organisation_name("name", name)?;
        match self.creation {
            OrgCreation::Single => return Err(OrgError::Edition),
            OrgCreation::ByHostOperator if !host_operator => {
                return Err(OrgError::Forbidden(
                    "in the enterprise edition the host operator makes organisations".into(),
                ));
            }
            _ => {}
        }
        let user_id = person
            .user_id
            .as_deref()
            .ok_or_else(|| OrgError::Forbidden("only a person makes an organisation".into()))?;
        let org = self.store.create_organization(&name, user_id).await?;
        let mut tx = self.store.write(&org).await?;
        let mut actor = person.clone();
        actor.org_id = org.clone();
        tx.append_audit(actor.event(
            "org.create",
            format!("org:{org}"),
            "success",
            json!({"name": name}),
        ))
        .await?;
        let row = tx
            .organization()
            .await?
            .ok_or_else(|| OrgError::Internal("the new organisation vanished".into()))?;
        tx.commit().await?;
        Ok(row)
    }

    /// The actor's organisation.
    pub async fn get(&self, actor: &Actor) -> Result<OrganizationRow> {
        let mut tx = self.store.read(&actor.org_id).await?;
        tx.organization().await?.ok_or_else(|| OrgError::NotFound {
            field: "id".into(),
            message: "no such organisation".into(),
        })
    }

    pub async fn rename(&self, actor: &Actor, name: &str) -> Result<OrganizationRow> {
        let name = organisation_name("name", name)?;
        let mut tx = self.store.write(&actor.org_id).await?;
        let before = tx.organization().await?.ok_or_else(|| OrgError::NotFound {
            field: "id".into(),
            message: "no such organisation".into(),
        })?;
        tx.rename_organization(&name).await?;
        tx.append_audit(actor.event(
            "org.update",
            format!("org:{}", actor.org_id),
            "success",
            json!({"name": name, "previous_name": before.name}),
        ))
        .await?;
        let row = tx
            .organization()
            .await?
            .ok_or_else(|| OrgError::Internal("the organisation vanished".into()))?;
        tx.commit().await?;
        Ok(row)
    }

    /// Deletes the actor's organisation and everything it holds (its nodes lose their
    /// certificates' standing: the gateway finds no agent). `confirm_name` must be its name as
    /// it is. The default organisation (the host's) cannot be deleted.
    pub async fn delete(&self, actor: &Actor, confirm_name: &str) -> Result<()> {
        if actor.org_id.is_default() {
            return Err(OrgError::Conflict {
                field: "id".into(),
                message:
                    "the default organisation holds the host's own records and cannot be deleted"
                        .into(),
            });
        }
        let mut tx = self.store.write(&actor.org_id).await?;
        let org = tx.organization().await?.ok_or_else(|| OrgError::NotFound {
            field: "id".into(),
            message: "no such organisation".into(),
        })?;
        if confirm_name != org.name {
            return Err(invalid(
                "confirm_name",
                "type the organisation's name exactly to delete it",
            ));
        }
        let agents = tx.list_agents().await?.len();
        tx.delete_organization().await?;
        tx.commit().await?;
        let mut host = actor.clone();
        host.org_id = OrgId::default_org();
        self.store
            .record_audit(
                &host.org_id,
                host.event(
                    "org.delete",
                    format!("org:{}", org.id),
                    "success",
                    json!({"name": org.name, "agents_removed": agents}),
                ),
            )
            .await?;
        Ok(())
    }

    // ----- members -----

    pub async fn members(&self, actor: &Actor) -> Result<Vec<UserRow>> {
        let mut tx = self.store.read(&actor.org_id).await?;
        Ok(tx.list_users().await?)
    }

    /// Adds an existing person (by email) as a member with `role`: the host operator only
    /// (`actor_role` super_admin). Anyone else invites — so an organisation's admin can neither
    /// probe which emails have accounts nor pull a person in without their consent.
    pub async fn add_member(
        &self,
        actor: &Actor,
        actor_role: Role,
        email: &str,
        role: Role,
        max_members: Option<u64>,
    ) -> Result<UserRow> {
        if actor_role != Role::SuperAdmin {
            return Err(OrgError::Forbidden(
                "people join by invitation (POST …/invitations); only the host operator adds an account directly".into(),
            ));
        }
        let role = member_role("role", role)?;
        let mut tx = self.store.write(&actor.org_id).await?;
        let person = tx
            .person_by_email(email)
            .await?
            .ok_or_else(|| OrgError::NotFound {
                field: "email".into(),
                message: "no account has this email; send an invitation instead".into(),
            })?;
        // An address no one proved (an identity provider's word only) is no one's to be added by.
        if !person.email_verified {
            return Err(OrgError::Conflict {
                field: "email".into(),
                message: "this account's email address is not verified; send an invitation instead"
                    .into(),
            });
        }
        check_member_limit(&mut tx, max_members, "email").await?;
        match tx.add_member(&person.id, role.as_str()).await {
            Err(e) if e.is_unique_violation() => {
                return Err(OrgError::Conflict {
                    field: "email".into(),
                    message: "this person is a member already".into(),
                });
            }
            other => other?,
        }
        tx.append_audit(actor.event(
            "org.member_add",
            format!("user:{}", person.id),
            "success",
            json!({"email": person.email, "role": role.as_str()}),
        ))
        .await?;
        let member = tx
            .user_by_id(&person.id)
            .await?
            .ok_or_else(|| OrgError::Internal("the new member vanished".into()))?;
        tx.commit().await?;
        Ok(member)
    }

    async fn member(tx: &mut Tx, user_id: &str) -> Result<UserRow> {
        tx.user_by_id(user_id)
            .await?
            .ok_or_else(|| OrgError::NotFound {
                field: "uid".into(),
                message: "no such member".into(),
            })
    }

    /// Refuses when `member` is the last enabled admin and the change takes that away.
    pub(crate) async fn keep_an_admin(tx: &mut Tx, member: &UserRow, field: &str) -> Result<()> {
        tx.serialize("admins").await?;
        if administers(&member.role) && !member.disabled {
            let admins = tx.count_active_with_role(Role::Admin.as_str()).await?
                + tx.count_active_with_role(Role::SuperAdmin.as_str()).await?;
            if admins <= 1 {
                return Err(OrgError::LastAdmin {
                    field: field.to_owned(),
                });
            }
        }
        Ok(())
    }

    /// Changes a member's role (not above the actor's own, nor of a member above it).
    pub async fn change_role(
        &self,
        actor: &Actor,
        actor_role: Role,
        user_id: &str,
        role: Role,
    ) -> Result<UserRow> {
        let role = member_role("role", role)?;
        if !actor_role.at_least(role) {
            return Err(invalid(
                "role",
                format!("role cannot exceed your own ({actor_role})"),
            ));
        }
        let mut tx = self.store.write(&actor.org_id).await?;
        let member = Self::member(&mut tx, user_id).await?;
        let current = Role::parse(&member.role).unwrap_or(Role::Viewer);
        if current == Role::SuperAdmin {
            return Err(OrgError::Forbidden(
                "the host operator's role is changed on the host (`infrapilot admin`), not here"
                    .into(),
            ));
        }
        if !actor_role.at_least(current) {
            return Err(OrgError::Forbidden(format!(
                "you cannot change the role of a member above your own ({actor_role})"
            )));
        }
        if role < Role::Admin {
            Self::keep_an_admin(&mut tx, &member, "role").await?;
        }
        tx.set_role(&member.id, role.as_str()).await?;
        tx.append_audit(actor.event(
            "org.member_role",
            format!("user:{}", member.id),
            "success",
            json!({"email": member.email, "role": role.as_str(), "previous_role": member.role}),
        ))
        .await?;
        let member = Self::member(&mut tx, user_id).await?;
        tx.commit().await?;
        Ok(member)
    }

    /// Removes a member: an admin removes anyone but the last admin; anyone may leave.
    pub async fn remove_member(
        &self,
        actor: &Actor,
        actor_role: Role,
        user_id: &str,
    ) -> Result<()> {
        let leaving = actor.user_id.as_deref() == Some(user_id);
        let mut tx = self.store.write(&actor.org_id).await?;
        // Members are visible to every member, so an unknown one is 404 before the role check.
        let member = Self::member(&mut tx, user_id).await?;
        if !leaving && !actor_role.at_least(Role::Admin) {
            return Err(OrgError::Forbidden(format!(
                "removing another member needs the admin role; you have {actor_role}"
            )));
        }
        if member.role == Role::SuperAdmin.as_str() {
            return Err(OrgError::Forbidden(
                "the host operator's membership is changed on the host (`infrapilot admin`), not here".into(),
            ));
        }
        Self::keep_an_admin(&mut tx, &member, "uid").await?;
        tx.remove_member(&member.id).await?;
        // Their tokens here end with the membership (and do not come back if they are added
        // again); so do the invitations they sent.
        tx.revoke_user_api_tokens(&member.id).await?;
        tx.revoke_invitations_by(&member.id).await?;
        tx.append_audit(actor.event(
            if leaving {
                "org.member_leave"
            } else {
                "org.member_remove"
            },
            format!("user:{}", member.id),
            "success",
            json!({"email": member.email, "role": member.role}),
        ))
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// An organisation admin's reset of a member's second factor (a lost authenticator, or one
    /// set up by someone else at a sign-in that required it): TOTP off, backup codes gone, their
    /// sessions ended. Only for a person who belongs to this organisation alone (the account is
    /// theirs everywhere: with other memberships, the host operator resets it), never the host
    /// operator, never oneself (the profile does that, with the password).
    pub async fn reset_member_mfa(
        &self,
        actor: &Actor,
        actor_role: Role,
        user_id: &str,
    ) -> Result<()> {
        let mut tx = self.store.write(&actor.org_id).await?;
        let member = Self::member(&mut tx, user_id).await?;
        if !actor_role.at_least(Role::Admin) {
            return Err(OrgError::Forbidden(format!(
                "resetting a member's second factor needs the admin role; you have {actor_role}"
            )));
        }
        if actor.user_id.as_deref() == Some(member.id.as_str()) {
            return Err(invalid(
                "uid",
                "turn off your own second factor on your profile (it asks for your password)",
            ));
        }
        if member.role == Role::SuperAdmin.as_str() {
            return Err(OrgError::Forbidden(
                "the host operator's second factor is reset on the host, not here".into(),
            ));
        }
        let memberships = self.store.lookup().await?.memberships(&member.id).await?;
        if memberships.len() > 1 {
            return Err(OrgError::Forbidden(format!(
                "{} belongs to other organisations too: the host operator resets their second factor",
                member.email
            )));
        }
        match crate::reset_second_factor(&mut tx, actor, &member.id).await? {
            crate::SecondFactorReset::Done => {
                tx.commit().await?;
                Ok(())
            }
            crate::SecondFactorReset::NoneToReset => Err(OrgError::Conflict {
                field: "uid".into(),
                message: format!("{} has no second factor", member.email),
            }),
        }
    }

    // ----- invitations -----

    pub async fn invitations(&self, actor: &Actor) -> Result<Vec<InvitationRow>> {
        let mut tx = self.store.read(&actor.org_id).await?;
        Ok(tx.list_open_invitations().await?)
    }

    /// Invites `email` with `role` (at most the inviter's). The secret is returned once; only
    /// its hash is stored.
    pub async fn invite(
        &self,
        actor: &Actor,
        actor_role: Role,
        email: &str,
        role: Role,
    ) -> Result<IssuedInvitation> {
        let role = member_role("role", role)?;
        if !actor_role.at_least(role) {
            return Err(invalid(
                "role",
                format!("role cannot exceed your own ({actor_role})"),
            ));
        }
        let issued =
            issue_token(TokenKind::Invitation).map_err(|e| OrgError::Internal(e.to_string()))?;
        let id = uuid::Uuid::new_v4().to_string();
        let mut tx = self.store.write(&actor.org_id).await?;
        if let Some(existing) = tx.user_by_email(email).await? {
            return Err(OrgError::Conflict {
                field: "email".into(),
                message: format!("{} is a member already", existing.email),
            });
        }
        tx.insert_invitation(&NewInvitation {
            id: &id,
            email,
            role: role.as_str(),
            token_hash: &issued.hash,
            invited_by: actor.user_id.as_deref().unwrap_or(&actor.label),
            expires_at: now_ms() + INVITATION_TTL_MS,
        })
        .await?;
        tx.append_audit(actor.event(
            "org.invite",
            format!("invitation:{id}"),
            "success",
            json!({"email": email, "role": role.as_str()}),
        ))
        .await?;
        let invitation = tx
            .invitation(&id)
            .await?
            .ok_or_else(|| OrgError::Internal("the new invitation vanished".into()))?;
        tx.commit().await?;
        Ok(IssuedInvitation {
            invitation,
            secret: issued.secret,
        })
    }

    pub async fn revoke_invitation(&self, actor: &Actor, id: &str) -> Result<()> {
        let mut tx = self.store.write(&actor.org_id).await?;
        if !tx.revoke_invitation(id).await? {
            return Err(OrgError::NotFound {
                field: "iid".into(),
                message: "no such open invitation".into(),
            });
        }
        tx.append_audit(actor.event(
            "org.invitation_revoke",
            format!("invitation:{id}"),
            "success",
            json!({}),
        ))
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Accepts an invitation for the signed-in `person` whose email is `email`: once, before it
    /// expires, and only by the person it was sent to. Returns the organisation joined.
    pub async fn accept(
        &self,
        person: &Actor,
        email: &str,
        secret: &str,
        max_members: Option<u64>,
    ) -> Result<OrgId> {
        let refused = || {
            OrgError::InvitationRefused(
            "this invitation is not valid: it was used or revoked, it expired, or the link is wrong".into(),
        )
        };
        if !secret.starts_with(TokenKind::Invitation.prefix()) || secret.len() > 128 {
            return Err(refused());
        }
        let hash = hash_token(secret);
        let invitation = self
            .store
            .lookup()
            .await?
            .invitation(&hash)
            .await?
            .ok_or_else(refused)?;
        if invitation.accepted_at.is_some()
            || invitation.revoked_at.is_some()
            || invitation.expires_at <= now_ms()
        {
            return Err(refused());
        }
        if !invitation.email.eq_ignore_ascii_case(email) {
            return Err(OrgError::InvitationRefused(
                "this invitation was sent to another email address; sign in as that person".into(),
            ));
        }
        let org = OrgId::parse(&invitation.org_id).ok_or_else(|| {
            OrgError::Internal("an invitation's organisation id is not a UUID".into())
        })?;
        let user_id = person
            .user_id
            .as_deref()
            .ok_or_else(|| OrgError::Forbidden("only a person accepts an invitation".into()))?;
        // The invitation names an address: only someone who proved they own it accepts it (an
        // account an identity provider made with that address has proved nothing here).
        let verified = self
            .store
            .read(&OrgId::default_org())
            .await?
            .person_by_id(user_id)
            .await?
            .is_some_and(|p| p.email_verified);
        if !verified {
            return Err(OrgError::InvitationRefused(
                "this account's email address is not verified, so it cannot accept an invitation to it".into(),
            ));
        }
        // The invitation grants no more than its sender may grant now: a sender since demoted,
        // disabled or gone (the host operator excepted) no longer vouches for it.
        let sender_runs_host = self
            .store
            .lookup()
            .await?
            .memberships(&invitation.invited_by)
            .await?
            .iter()
            .any(|m| {
                m.org_id == OrgId::default_org().as_str() && m.role == Role::SuperAdmin.as_str()
            });
        let mut tx = self.store.write(&org).await?;
        // Under the lock role changes take, so a demotion cannot slip in before the commit.
        tx.serialize("admins").await?;
        let sender_disabled = tx
            .person_by_id(&invitation.invited_by)
            .await?
            .is_none_or(|sender| sender.disabled);
        if sender_disabled {
            return Err(OrgError::InvitationRefused(
                "whoever sent this invitation can no longer sign in; ask an admin for a new one"
                    .into(),
            ));
        }
        if !sender_runs_host {
            let sender_role = tx
                .user_by_id(&invitation.invited_by)
                .await?
                .filter(|sender| !sender.disabled)
                .and_then(|sender| Role::parse(&sender.role));
            let invited_role = Role::parse(&invitation.role).unwrap_or(Role::Admin);
            if !sender_role.is_some_and(|r| r.at_least(invited_role)) {
                return Err(OrgError::InvitationRefused(
                    "whoever sent this invitation may no longer grant its role; ask an admin for a new one".into(),
                ));
            }
        }
        check_member_limit(&mut tx, max_members, "token").await?;
        if !tx.spend_invitation(&invitation.id).await? {
            return Err(refused());
        }
        match tx.add_member(user_id, &invitation.role).await {
            Err(e) if e.is_unique_violation() => {
                return Err(OrgError::Conflict {
                    field: "token".into(),
                    message: "you are a member of this organisation already".into(),
                });
            }
            other => other?,
        }
        let mut actor = person.clone();
        actor.org_id = org.clone();
        tx.append_audit(actor.event(
            "org.invitation_accept",
            format!("invitation:{}", invitation.id),
            "success",
            json!({"email": invitation.email, "role": invitation.role}),
        ))
        .await?;
        tx.commit().await?;
        Ok(org)
    }
}
