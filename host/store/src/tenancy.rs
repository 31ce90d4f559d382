//! Organisations, memberships and invitations, and the system path: the few lookups that find a
//! row before its organisation is known (ARCHITECTURE.md, "Tenancy").
//!
//! On PostgreSQL a [`Lookup`] runs in a transaction with no organisation set, so row-level
//! security shows it no tenant row except through the narrow policies of migration 0009: the
//! one credential whose hash it presents (`app.credential_hash`), the memberships of the one
//! person it names (`app.current_user_id`). Everything else happens in a tenant transaction.

use crate::{OrgId, Result, Store, StoreError, Tx, TxInner, now_ms};

/// Every table holding an organisation's rows, children before parents: deleting an
/// organisation deletes from each in this order (a test checks that it names every table with
/// `org_id`).
pub const TENANT_TABLES: &[&str] = &[
    "policy_violations",
    "policies",
    "node_samples",
    "log_settings",
    "log_gaps",
    "spool_cursors",
    "sso_logins",
    "sso_identities",
    "sso_providers",
    "alert_deliveries",
    "alert_events",
    "alert_cursors",
    "alert_rules",
    "alert_channels",
    "proxy_status",
    "proxy_revisions",
    "proxy_domains",
    "proxy_hosts",
    "proxy_certificates",
    "agent_commands",
    "docker_events",
    "agents",
    "enrollment_tokens",
    "api_tokens",
    "invitations",
    "plugin_kv",
    "memberships",
    "audit_heads",
    "audit_events",
];

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct OrganizationRow {
    pub id: String,
    pub name: String,
    pub created_at: i64,
}

/// One of a person's memberships, with its organisation's name.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct MembershipRow {
    pub org_id: String,
    pub org_name: String,
    pub role: String,
    pub created_at: i64,
    /// The organisation requires single sign-on of its members below admin.
    pub require_sso: bool,
}

/// The person behind a live session (sessions are personal: the organisation of a request is
/// chosen among their memberships).
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct SessionOwner {
    pub session_id: String,
    pub user_id: String,
    pub email: String,
    pub expires_at: i64,
    /// The organisation whose single sign-on provider made the session, if one did.
    pub sso_org_id: Option<String>,
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct InvitationRow {
    pub id: String,
    pub org_id: String,
    pub email: String,
    pub role: String,
    pub invited_by: String,
    pub created_at: i64,
    pub expires_at: i64,
    pub accepted_at: Option<i64>,
    pub revoked_at: Option<i64>,
}

pub struct NewInvitation<'a> {
    pub id: &'a str,
    pub email: &'a str,
    pub role: &'a str,
    pub token_hash: &'a str,
    pub invited_by: &'a str,
    pub expires_at: i64,
}

const INVITATION_COLUMNS: &str = "SELECT id, org_id, email, role, invited_by, created_at, expires_at, \
     accepted_at, revoked_at FROM invitations";

fn sql(parts: &[&str]) -> sqlx::AssertSqlSafe<String> {
    sqlx::AssertSqlSafe(parts.concat())
}

/// The system path: lookups across organisations, each as narrow as its purpose (see the module
/// documentation). Read only; dropped, its transaction rolls back.
pub struct Lookup {
    tx: Tx,
}

impl Store {
    /// Opens the system path (a read transaction in no organisation).
    pub async fn lookup(&self) -> Result<Lookup> {
        Ok(Lookup {
            tx: self.begin("", false).await?,
        })
    }

    /// Creates an organisation with `creator` as its admin (and an audit chain of its own).
    pub async fn create_organization(&self, name: &str, creator: &str) -> Result<OrgId> {
        let org = OrgId::generate();
        let mut tx = self.write(&org).await?;
        tx.insert_organization(name).await?;
        tx.add_member(creator, "admin").await?;
        tx.commit().await?;
        Ok(org)
    }
}

impl Lookup {
    /// Sets one of the lookup settings for the statements that follow (PostgreSQL; SQLite has
    /// no row-level security and the queries name the row themselves).
    async fn narrow_to(&mut self, setting: &str, value: &str) -> Result<()> {
        if let TxInner::Postgres(c) = &mut self.tx.inner {
            sqlx::query("SELECT set_config($1, $2, true)")
                .bind(setting)
                .bind(value)
                .execute(&mut **c)
                .await?;
        }
        Ok(())
    }

    /// The person behind a live access token (of a session not revoked or expired, whose person
    /// is not disabled).
    pub async fn session(&mut self, access_hash: &str) -> Result<Option<SessionOwner>> {
        let now = now_ms();
        Ok(on_tx!(self.tx, c => sqlx::query_as::<_, SessionOwner>(
            "SELECT s.id AS session_id, u.id AS user_id, u.email, s.access_expires_at AS expires_at, s.sso_org_id \
             FROM sessions s JOIN users u ON u.id = s.user_id \
             WHERE s.access_hash = $1 AND s.revoked_at IS NULL AND s.access_expires_at > $2 \
             AND s.refresh_expires_at > $2 AND u.disabled = FALSE",
        )
        .bind(access_hash)
        .bind(now)
        .fetch_optional(&mut **c)
        .await)?)
    }

    /// The organisation whose single sign-on made the session (`None` for another sign-in or
    /// an unknown session).
    pub async fn session_sso_org(&mut self, session_id: &str) -> Result<Option<String>> {
        Ok(
            on_tx!(self.tx, c => sqlx::query_scalar::<_, Option<String>>(
            "SELECT sso_org_id FROM sessions WHERE id = $1",
        )
        .bind(session_id)
        .fetch_optional(&mut **c)
        .await)?
            .flatten(),
        )
    }

    /// Whether the session is still live (not revoked, not past its refresh expiry, its person
    /// not disabled): long-lived sockets re-check their caller with this.
    pub async fn session_is_live(&mut self, session_id: &str) -> Result<bool> {
        let now = now_ms();
        let n = on_tx!(self.tx, c => sqlx::query_scalar::<_, i64>(
            "SELECT COUNT(*) FROM sessions s JOIN users u ON u.id = s.user_id \
             WHERE s.id = $1 AND s.revoked_at IS NULL AND s.refresh_expires_at > $2 AND u.disabled = FALSE",
        )
        .bind(session_id)
        .bind(now)
        .fetch_one(&mut **c)
        .await)?;
        Ok(n == 1)
    }

    /// A person's memberships, oldest first.
    pub async fn memberships(&mut self, user_id: &str) -> Result<Vec<MembershipRow>> {
        self.narrow_to("app.current_user_id", user_id).await?;
        let rows = on_tx!(self.tx, c => sqlx::query_as::<_, MembershipRow>(
            "SELECT m.org_id, o.name AS org_name, m.role, m.created_at, o.require_sso FROM memberships m \
             JOIN organizations o ON o.id = m.org_id WHERE m.user_id = $1 ORDER BY m.created_at, m.org_id",
        )
        .bind(user_id)
        .fetch_all(&mut **c)
        .await)?;
        self.narrow_to("app.current_user_id", "").await?;
        Ok(rows)
    }

    async fn org_of_credential(&mut self, table: &str, token_hash: &str) -> Result<Option<OrgId>> {
        self.narrow_to("app.credential_hash", token_hash).await?;
        let q = sql(&["SELECT org_id FROM ", table, " WHERE token_hash = $1"]);
        let org = on_tx!(self.tx, c => sqlx::query_scalar::<_, String>(q)
            .bind(token_hash)
            .fetch_optional(&mut **c)
            .await)?;
        self.narrow_to("app.credential_hash", "").await?;
        Ok(org.and_then(|o| OrgId::parse(&o)))
    }

    /// The organisation of the API token with this hash (whatever its state: the tenant
    /// transaction checks that it is live).
    pub async fn org_of_api_token(&mut self, token_hash: &str) -> Result<Option<OrgId>> {
        self.org_of_credential("api_tokens", token_hash).await
    }

    /// The organisation of the enrollment token with this hash.
    pub async fn org_of_enrollment_token(&mut self, token_hash: &str) -> Result<Option<OrgId>> {
        self.org_of_credential("enrollment_tokens", token_hash)
            .await
    }

    /// The invitation with this hash.
    pub async fn invitation(&mut self, token_hash: &str) -> Result<Option<InvitationRow>> {
        self.narrow_to("app.credential_hash", token_hash).await?;
        let q = sql(&[INVITATION_COLUMNS, " WHERE token_hash = $1"]);
        let row = on_tx!(self.tx, c => sqlx::query_as::<_, InvitationRow>(q)
            .bind(token_hash)
            .fetch_optional(&mut **c)
            .await)?;
        self.narrow_to("app.credential_hash", "").await?;
        Ok(row)
    }

    /// Every organisation (the host operator's list; the workers that visit each in turn).
    pub async fn organizations(&mut self) -> Result<Vec<OrganizationRow>> {
        Ok(on_tx!(self.tx, c => sqlx::query_as::<_, OrganizationRow>(
            "SELECT id, name, created_at FROM organizations ORDER BY created_at, id",
        )
        .fetch_all(&mut **c)
        .await)?)
    }

    pub async fn organization(&mut self, org: &OrgId) -> Result<Option<OrganizationRow>> {
        Ok(on_tx!(self.tx, c => sqlx::query_as::<_, OrganizationRow>(
            "SELECT id, name, created_at FROM organizations WHERE id = $1",
        )
        .bind(org.as_str())
        .fetch_optional(&mut **c)
        .await)?)
    }

    /// Number of organisations (the community edition runs one).
    pub async fn count_organizations(&mut self) -> Result<i64> {
        Ok(
            on_tx!(self.tx, c => sqlx::query_scalar::<_, i64>("SELECT COUNT(*) FROM organizations")
            .fetch_one(&mut **c)
            .await)?,
        )
    }
}

impl Tx {
    /// Makes the transaction's organisation (a new one: its id from [`OrgId::generate`]).
    pub async fn insert_organization(&mut self, name: &str) -> Result<()> {
        let org = self.org_id.clone();
        on_tx!(self, c => sqlx::query("INSERT INTO organizations (id, name, created_at) VALUES ($1, $2, $3)")
            .bind(&org)
            .bind(name)
            .bind(now_ms())
            .execute(&mut **c).await.map(|r| r.rows_affected()))?;
        Ok(())
    }

    /// The transaction's organisation.
    pub async fn organization(&mut self) -> Result<Option<OrganizationRow>> {
        let org = self.org_id.clone();
        Ok(on_tx!(self, c => sqlx::query_as::<_, OrganizationRow>(
            "SELECT id, name, created_at FROM organizations WHERE id = $1",
        )
        .bind(&org)
        .fetch_optional(&mut **c)
        .await)?)
    }

    /// Whether the organisation requires single sign-on of its members below admin.
    pub async fn require_sso(&mut self) -> Result<bool> {
        let org = self.org_id.clone();
        Ok(on_tx!(self, c => sqlx::query_scalar::<_, bool>(
            "SELECT require_sso FROM organizations WHERE id = $1",
        )
        .bind(&org)
        .fetch_optional(&mut **c)
        .await)?
        .unwrap_or(false))
    }

    pub async fn set_require_sso(&mut self, required: bool) -> Result<()> {
        let org = self.org_id.clone();
        on_tx!(self, c => sqlx::query("UPDATE organizations SET require_sso = $2 WHERE id = $1")
            .bind(&org)
            .bind(required)
            .execute(&mut **c).await.map(|r| r.rows_affected()))?;
        Ok(())
    }

    /// Ends every live session a single sign-on provider of this organisation made; how many.
    pub async fn revoke_sso_sessions(&mut self, provider_id: &str) -> Result<u64> {
        let org = self.org_id.clone();
        Ok(on_tx!(self, c => sqlx::query(
            "UPDATE sessions SET revoked_at = $3 WHERE sso_provider_id = $1 AND sso_org_id = $2 \
             AND revoked_at IS NULL",
        )
        .bind(provider_id)
        .bind(&org)
        .bind(now_ms())
        .execute(&mut **c).await.map(|r| r.rows_affected()))?)
    }

    pub async fn rename_organization(&mut self, name: &str) -> Result<bool> {
        let org = self.org_id.clone();
        let n = on_tx!(self, c => sqlx::query("UPDATE organizations SET name = $2 WHERE id = $1")
            .bind(&org)
            .bind(name)
            .execute(&mut **c).await.map(|r| r.rows_affected()))?;
        Ok(n == 1)
    }

    /// Deletes the organisation and every row it holds ([`TENANT_TABLES`]). People stay: they
    /// may belong elsewhere, or make or join another organisation.
    pub async fn delete_organization(&mut self) -> Result<bool> {
        let org = self.org_id.clone();
        self.delete_log_lines().await?;
        for table in TENANT_TABLES {
            let q = sql(&["DELETE FROM ", table, " WHERE org_id = $1"]);
            on_tx!(self, c => sqlx::query(q).bind(&org).execute(&mut **c).await.map(|r| r.rows_affected()))?;
        }
        let n = on_tx!(self, c => sqlx::query("DELETE FROM organizations WHERE id = $1")
            .bind(&org)
            .execute(&mut **c).await.map(|r| r.rows_affected()))?;
        Ok(n == 1)
    }

    /// Makes an existing person a member here (`Conflict` when they are one already).
    pub async fn add_member(&mut self, user_id: &str, role: &str) -> Result<()> {
        let org = self.org_id.clone();
        let n = on_tx!(self, c => sqlx::query(
            "INSERT INTO memberships (org_id, user_id, role, created_at) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (org_id, user_id) DO NOTHING",
        )
        .bind(&org)
        .bind(user_id)
        .bind(role)
        .bind(now_ms())
        .execute(&mut **c).await.map(|r| r.rows_affected()))?;
        if n == 0 {
            return Err(StoreError::Conflict("a membership of this person"));
        }
        Ok(())
    }

    /// Ends a person's membership here (the person stays: they may belong elsewhere or join
    /// again).
    pub async fn remove_member(&mut self, user_id: &str) -> Result<bool> {
        let org = self.org_id.clone();
        let n = on_tx!(self, c => sqlx::query("DELETE FROM memberships WHERE org_id = $1 AND user_id = $2")
            .bind(&org)
            .bind(user_id)
            .execute(&mut **c).await.map(|r| r.rows_affected()))?;
        Ok(n == 1)
    }

    /// Number of members here.
    pub async fn count_members(&mut self) -> Result<i64> {
        let org = self.org_id.clone();
        Ok(
            on_tx!(self, c => sqlx::query_scalar::<_, i64>("SELECT COUNT(*) FROM memberships WHERE org_id = $1")
            .bind(&org)
            .fetch_one(&mut **c)
            .await)?,
        )
    }

    /// Whether the person belongs to any organisation.
    pub async fn has_any_membership(&mut self, user_id: &str) -> Result<bool> {
        Ok(self.count_memberships(user_id).await? > 0)
    }

    /// How many organisations the person belongs to (read with the person named, so that the
    /// memberships of other organisations count on PostgreSQL too; nothing else of theirs shows).
    pub async fn count_memberships(&mut self, user_id: &str) -> Result<i64> {
        if let TxInner::Postgres(c) = &mut self.inner {
            sqlx::query("SELECT set_config('app.current_user_id', $1, true)")
                .bind(user_id)
                .execute(&mut **c)
                .await?;
        }
        let n = on_tx!(self, c => sqlx::query_scalar::<_, i64>("SELECT COUNT(*) FROM memberships WHERE user_id = $1")
            .bind(user_id)
            .fetch_one(&mut **c)
            .await)?;
        if let TxInner::Postgres(c) = &mut self.inner {
            sqlx::query("SELECT set_config('app.current_user_id', '', true)")
                .execute(&mut **c)
                .await?;
        }
        Ok(n)
    }

    // ----- invitations -----

    pub async fn insert_invitation(&mut self, i: &NewInvitation<'_>) -> Result<()> {
        let org = self.org_id.clone();
        on_tx!(self, c => sqlx::query(
            "INSERT INTO invitations (id, org_id, email, role, token_hash, invited_by, created_at, expires_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(i.id)
        .bind(&org)
        .bind(i.email)
        .bind(i.role)
        .bind(i.token_hash)
        .bind(i.invited_by)
        .bind(now_ms())
        .bind(i.expires_at)
        .execute(&mut **c).await.map(|r| r.rows_affected()))?;
        Ok(())
    }

    /// Invitations here that are neither accepted nor revoked, newest first.
    pub async fn list_open_invitations(&mut self) -> Result<Vec<InvitationRow>> {
        let org = self.org_id.clone();
        let q = sql(&[
            INVITATION_COLUMNS,
            " WHERE org_id = $1 AND accepted_at IS NULL AND revoked_at IS NULL ORDER BY created_at DESC",
        ]);
        Ok(on_tx!(self, c => sqlx::query_as::<_, InvitationRow>(q)
            .bind(&org)
            .fetch_all(&mut **c)
            .await)?)
    }

    pub async fn invitation(&mut self, id: &str) -> Result<Option<InvitationRow>> {
        let org = self.org_id.clone();
        let q = sql(&[INVITATION_COLUMNS, " WHERE org_id = $1 AND id = $2"]);
        Ok(on_tx!(self, c => sqlx::query_as::<_, InvitationRow>(q)
            .bind(&org)
            .bind(id)
            .fetch_optional(&mut **c)
            .await)?)
    }

    pub async fn revoke_invitation(&mut self, id: &str) -> Result<bool> {
        let org = self.org_id.clone();
        let n = on_tx!(self, c => sqlx::query(
            "UPDATE invitations SET revoked_at = $3 WHERE org_id = $1 AND id = $2 \
             AND accepted_at IS NULL AND revoked_at IS NULL",
        )
        .bind(&org)
        .bind(id)
        .bind(now_ms())
        .execute(&mut **c).await.map(|r| r.rows_affected()))?;
        Ok(n == 1)
    }

    /// Revokes the open invitations a person sent here (they left or were removed).
    pub async fn revoke_invitations_by(&mut self, user_id: &str) -> Result<u64> {
        let org = self.org_id.clone();
        Ok(on_tx!(self, c => sqlx::query(
            "UPDATE invitations SET revoked_at = $3 WHERE org_id = $1 AND invited_by = $2 \
             AND accepted_at IS NULL AND revoked_at IS NULL",
        )
        .bind(&org)
        .bind(user_id)
        .bind(now_ms())
        .execute(&mut **c).await.map(|r| r.rows_affected()))?)
    }

    /// Spends an open, unexpired invitation; false when it was spent, revoked or expired
    /// meanwhile (single use even under concurrent accepts).
    pub async fn spend_invitation(&mut self, id: &str) -> Result<bool> {
        let org = self.org_id.clone();
        let now = now_ms();
        let n = on_tx!(self, c => sqlx::query(
            "UPDATE invitations SET accepted_at = $3 WHERE org_id = $1 AND id = $2 \
             AND accepted_at IS NULL AND revoked_at IS NULL AND expires_at > $3",
        )
        .bind(&org)
        .bind(id)
        .bind(now)
        .execute(&mut **c).await.map(|r| r.rows_affected()))?;
        Ok(n == 1)
    }
}
