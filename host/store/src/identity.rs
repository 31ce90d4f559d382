//! Users, memberships, sessions, refresh tokens, MFA state and API tokens.

use crate::{Result, StoreError, Tx, now_ms};

/// A user as seen from one organisation (with the role of their membership there).
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct UserRow {
    pub id: String,
    pub email: String,
    pub name: String,
    pub password_hash: String,
    pub totp_secret: Option<Vec<u8>>,
    pub totp_enabled: bool,
    pub totp_last_step: Option<i64>,
    pub disabled: bool,
    /// False for a person who signed up and has not followed the mailed link yet.
    pub email_verified: bool,
    pub role: String,
    pub created_at: i64,
    pub updated_at: i64,
}

pub struct NewUser<'a> {
    pub id: &'a str,
    pub email: &'a str,
    pub name: &'a str,
    pub password_hash: &'a str,
    pub role: &'a str,
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct SessionRow {
    pub id: String,
    pub user_id: String,
    pub access_expires_at: i64,
    pub refresh_expires_at: i64,
    pub ip: String,
    pub user_agent: String,
    pub created_at: i64,
    pub last_used_at: i64,
    pub revoked_at: Option<i64>,
}

pub struct NewSession<'a> {
    pub id: &'a str,
    pub user_id: &'a str,
    pub access_hash: &'a str,
    pub access_expires_at: i64,
    pub refresh_hash: &'a str,
    pub refresh_expires_at: i64,
    pub ip: &'a str,
    pub user_agent: &'a str,
    /// The organisation and provider of a single sign-on that made the session.
    pub sso: Option<(&'a str, &'a str)>,
}

/// What a refresh token points to.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct RefreshTokenRow {
    pub session_id: String,
    pub used_at: Option<i64>,
    pub refresh_expires_at: i64,
    pub revoked_at: Option<i64>,
    pub user_id: String,
}

/// A pending second login step.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct MfaChallengeRow {
    pub user_id: String,
    pub expires_at: i64,
    pub attempts: i64,
    /// After a single sign-on login: the organisation and provider whose session it opens.
    pub sso_org_id: Option<String>,
    pub sso_provider_id: Option<String>,
    /// The step enrols the person's first authenticator: the fingerprint of the pending seed
    /// it was issued with (a seed set since does not confirm it).
    pub enrolling: bool,
    pub seed_fingerprint: Option<String>,
}

/// A second login step to record: whose, until when, and after which login.
pub struct NewMfaChallenge<'a> {
    pub token_hash: &'a str,
    pub user_id: &'a str,
    pub expires_at: i64,
    /// `(organisation, provider)` when a single sign-on login asked for it.
    pub sso: Option<(&'a str, &'a str)>,
    /// The fingerprint of the pending seed this step enrols, if it does.
    pub enrolling: Option<&'a str>,
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct ApiTokenRow {
    pub id: String,
    pub user_id: String,
    pub name: String,
    pub role: String,
    pub expires_at: i64,
    pub created_at: i64,
    pub last_used_at: Option<i64>,
    pub revoked_at: Option<i64>,
}

pub struct NewApiToken<'a> {
    pub id: &'a str,
    pub user_id: &'a str,
    pub name: &'a str,
    pub token_hash: &'a str,
    pub role: &'a str,
    pub expires_at: i64,
}

/// The principal behind a presented credential, when it is currently valid.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct CredentialOwner {
    /// Session id or API token id.
    pub credential_id: String,
    pub user_id: String,
    pub email: String,
    /// The role of the membership (sessions) or the token's own role (API tokens).
    pub role: String,
    pub expires_at: i64,
}

/// A `SELECT` of [`UserRow`]s in the organisation bound to `$1`, followed by `$where`.
macro_rules! user_query {
    ($where:literal) => {
        concat!(
            "SELECT u.id, u.email, u.name, u.password_hash, u.totp_secret, u.totp_enabled, \
             u.totp_last_step, u.disabled, u.email_verified, m.role, u.created_at, u.updated_at \
             FROM users u JOIN memberships m ON m.user_id = u.id AND m.org_id = $1 ",
            $where
        )
    };
}

/// A `SELECT` of a person as a [`UserRow`] with an empty role, followed by `$where` (`$1`).
macro_rules! person_query {
    ($where:literal) => {
        concat!(
            "SELECT u.id, u.email, u.name, u.password_hash, u.totp_secret, u.totp_enabled, \
             u.totp_last_step, u.disabled, u.email_verified, '' AS role, u.created_at, u.updated_at \
             FROM users u ",
            $where
        )
    };
}

impl Tx {
    // ----- users -----

    /// Number of users across all organisations (first-run setup is allowed only at zero).
    pub async fn count_users(&mut self) -> Result<i64> {
        Ok(
            on_tx!(self, c => sqlx::query_scalar::<_, i64>("SELECT COUNT(*) FROM users").fetch_one(&mut **c).await)?,
        )
    }

    pub async fn insert_user(&mut self, user: &NewUser<'_>) -> Result<()> {
        let now = now_ms();
        let org = self.org_id.clone();
        let inserted = on_tx!(self, c => sqlx::query(
            "INSERT INTO users (id, email, name, password_hash, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $5) ON CONFLICT (email) DO NOTHING",
        )
        .bind(user.id)
        .bind(user.email)
        .bind(user.name)
        .bind(user.password_hash)
        .bind(now)
        .execute(&mut **c).await.map(|r| r.rows_affected()))?;
        if inserted == 0 {
            return Err(StoreError::Conflict("a user with this email"));
        }
        on_tx!(self, c => sqlx::query(
            "INSERT INTO memberships (org_id, user_id, role, created_at) VALUES ($1, $2, $3, $4)",
        )
        .bind(&org)
        .bind(user.id)
        .bind(user.role)
        .bind(now)
        .execute(&mut **c).await.map(|r| r.rows_affected()))?;
        Ok(())
    }

    /// A person by email, whatever their memberships (`role` empty): sign-in, before any
    /// organisation is chosen.
    pub async fn person_by_email(&mut self, email: &str) -> Result<Option<UserRow>> {
        Ok(
            on_tx!(self, c => sqlx::query_as::<_, UserRow>(person_query!("WHERE u.email = $1"))
            .bind(email)
            .fetch_optional(&mut **c)
            .await)?,
        )
    }

    /// A person by id, whatever their memberships (`role` empty): what a person does to their
    /// own account (second factor, password, sessions).
    pub async fn person_by_id(&mut self, id: &str) -> Result<Option<UserRow>> {
        Ok(
            on_tx!(self, c => sqlx::query_as::<_, UserRow>(person_query!("WHERE u.id = $1"))
            .bind(id)
            .fetch_optional(&mut **c)
            .await)?,
        )
    }

    /// A member of this organisation by email.
    pub async fn user_by_email(&mut self, email: &str) -> Result<Option<UserRow>> {
        let org = self.org_id.clone();
        Ok(
            on_tx!(self, c => sqlx::query_as::<_, UserRow>(user_query!("WHERE u.email = $2"))
            .bind(&org)
            .bind(email)
            .fetch_optional(&mut **c)
            .await)?,
        )
    }

    /// A member of this organisation by id (`None` for a person who is not one).
    pub async fn user_by_id(&mut self, id: &str) -> Result<Option<UserRow>> {
        let org = self.org_id.clone();
        Ok(
            on_tx!(self, c => sqlx::query_as::<_, UserRow>(user_query!("WHERE u.id = $2"))
            .bind(&org)
            .bind(id)
            .fetch_optional(&mut **c)
            .await)?,
        )
    }

    pub async fn list_users(&mut self) -> Result<Vec<UserRow>> {
        let org = self.org_id.clone();
        Ok(
            on_tx!(self, c => sqlx::query_as::<_, UserRow>(user_query!("ORDER BY u.created_at, u.id"))
            .bind(&org)
            .fetch_all(&mut **c)
            .await)?,
        )
    }

    /// Number of enabled users holding `role` in this organisation.
    pub async fn count_active_with_role(&mut self, role: &str) -> Result<i64> {
        let org = self.org_id.clone();
        Ok(on_tx!(self, c => sqlx::query_scalar::<_, i64>(
            "SELECT COUNT(*) FROM users u JOIN memberships m ON m.user_id = u.id AND m.org_id = $1 \
             WHERE m.role = $2 AND u.disabled = FALSE",
        )
        .bind(&org)
        .bind(role)
        .fetch_one(&mut **c)
        .await)?)
    }

    pub async fn update_user_profile(
        &mut self,
        id: &str,
        name: &str,
        disabled: bool,
    ) -> Result<()> {
        on_tx!(self, c => sqlx::query("UPDATE users SET name = $2, disabled = $3, updated_at = $4 WHERE id = $1")
            .bind(id)
            .bind(name)
            .bind(disabled)
            .bind(now_ms())
            .execute(&mut **c).await.map(|r| r.rows_affected()))?;
        Ok(())
    }

    pub async fn set_role(&mut self, user_id: &str, role: &str) -> Result<()> {
        let org = self.org_id.clone();
        on_tx!(self, c => sqlx::query("UPDATE memberships SET role = $3 WHERE org_id = $1 AND user_id = $2")
            .bind(&org)
            .bind(user_id)
            .bind(role)
            .execute(&mut **c).await.map(|r| r.rows_affected()))?;
        Ok(())
    }

    /// Marks the person's email as (not yet) verified.
    pub async fn set_email_verified(&mut self, user_id: &str, verified: bool) -> Result<()> {
        on_tx!(self, c => sqlx::query("UPDATE users SET email_verified = $2, updated_at = $3 WHERE id = $1")
            .bind(user_id)
            .bind(verified)
            .bind(now_ms())
            .execute(&mut **c).await.map(|r| r.rows_affected()))?;
        Ok(())
    }

    /// Stores an email verification link's token (hashed) for the person.
    pub async fn insert_email_verification(
        &mut self,
        token_hash: &str,
        user_id: &str,
        expires_at: i64,
    ) -> Result<()> {
        on_tx!(self, c => sqlx::query(
            "INSERT INTO email_verifications (token_hash, user_id, expires_at) VALUES ($1, $2, $3)",
        )
        .bind(token_hash)
        .bind(user_id)
        .bind(expires_at)
        .execute(&mut **c).await.map(|r| r.rows_affected()))?;
        Ok(())
    }

    /// The person a verification token (hash) is for, whatever its state.
    pub async fn email_verification_person(&mut self, token_hash: &str) -> Result<Option<String>> {
        Ok(on_tx!(self, c => sqlx::query_scalar::<_, String>(
            "SELECT user_id FROM email_verifications WHERE token_hash = $1",
        )
        .bind(token_hash)
        .fetch_optional(&mut **c)
        .await)?)
    }

    /// Spends an unexpired, unused verification token: the person it verifies, once.
    pub async fn spend_email_verification(&mut self, token_hash: &str) -> Result<Option<String>> {
        let now = now_ms();
        Ok(on_tx!(self, c => sqlx::query_scalar::<_, String>(
            "UPDATE email_verifications SET used_at = $2 \
             WHERE token_hash = $1 AND used_at IS NULL AND expires_at > $2 RETURNING user_id",
        )
        .bind(token_hash)
        .bind(now)
        .fetch_optional(&mut **c)
        .await)?)
    }

    pub async fn set_password_hash(&mut self, user_id: &str, hash: &str) -> Result<()> {
        on_tx!(self, c => sqlx::query("UPDATE users SET password_hash = $2, updated_at = $3 WHERE id = $1")
            .bind(user_id)
            .bind(hash)
            .bind(now_ms())
            .execute(&mut **c).await.map(|r| r.rows_affected()))?;
        Ok(())
    }

    /// Removes the user's membership here, and the person once they belong nowhere (their
    /// memberships elsewhere are counted through the narrow own-memberships path: under
    /// row-level security a plain count would see this organisation's only).
    pub async fn delete_user(&mut self, user_id: &str) -> Result<bool> {
        let org = self.org_id.clone();
        let removed = on_tx!(self, c => sqlx::query("DELETE FROM memberships WHERE org_id = $1 AND user_id = $2")
            .bind(&org)
            .bind(user_id)
            .execute(&mut **c).await.map(|r| r.rows_affected()))?;
        if removed > 0 && !self.has_any_membership(user_id).await? {
            on_tx!(self, c => sqlx::query("DELETE FROM users WHERE id = $1")
                .bind(user_id)
                .execute(&mut **c).await.map(|r| r.rows_affected()))?;
        }
        Ok(removed > 0)
    }

    // ----- MFA -----

    /// Stores an encrypted TOTP seed awaiting confirmation (MFA stays off until confirmed);
    /// false when MFA is on meanwhile (an authenticator in use is never replaced this way).
    pub async fn set_pending_totp(&mut self, user_id: &str, sealed_secret: &[u8]) -> Result<bool> {
        let n = on_tx!(self, c => sqlx::query(
            "UPDATE users SET totp_secret = $2, totp_last_step = NULL, updated_at = $3 \
             WHERE id = $1 AND totp_enabled = FALSE",
        )
        .bind(user_id)
        .bind(sealed_secret)
        .bind(now_ms())
        .execute(&mut **c).await.map(|r| r.rows_affected()))?;
        Ok(n == 1)
    }

    /// Turns MFA on with the pending seed `sealed_secret` (the one the code was checked
    /// against); false when it is on already or another seed is pending now (a race lost).
    pub async fn enable_totp(
        &mut self,
        user_id: &str,
        step: i64,
        sealed_secret: &[u8],
    ) -> Result<bool> {
        let n = on_tx!(self, c => sqlx::query(
            "UPDATE users SET totp_enabled = TRUE, totp_last_step = $2, updated_at = $3 \
             WHERE id = $1 AND totp_enabled = FALSE AND totp_secret = $4",
        )
        .bind(user_id)
        .bind(step)
        .bind(now_ms())
        .bind(sealed_secret)
        .execute(&mut **c).await.map(|r| r.rows_affected()))?;
        Ok(n == 1)
    }

    /// Records the time step of an accepted code, so that the same code is not accepted twice;
    /// false when that step (or a later one) was used already, in a parallel sign-in too, or
    /// the seed `sealed_secret` the code was checked against is no longer the one on.
    pub async fn set_totp_last_step(
        &mut self,
        user_id: &str,
        step: i64,
        sealed_secret: &[u8],
    ) -> Result<bool> {
        let n = on_tx!(self, c => sqlx::query(
            "UPDATE users SET totp_last_step = $2 \
             WHERE id = $1 AND totp_enabled = TRUE AND totp_secret = $3 \
             AND (totp_last_step IS NULL OR totp_last_step < $2)",
        )
        .bind(user_id)
        .bind(step)
        .bind(sealed_secret)
        .execute(&mut **c).await.map(|r| r.rows_affected()))?;
        Ok(n == 1)
    }

    pub async fn disable_totp(&mut self, user_id: &str) -> Result<()> {
        on_tx!(self, c => sqlx::query(
            "UPDATE users SET totp_secret = NULL, totp_enabled = FALSE, totp_last_step = NULL, updated_at = $2 WHERE id = $1",
        )
        .bind(user_id)
        .bind(now_ms())
        .execute(&mut **c).await.map(|r| r.rows_affected()))?;
        on_tx!(self, c => sqlx::query("DELETE FROM mfa_backup_codes WHERE user_id = $1")
            .bind(user_id)
            .execute(&mut **c).await.map(|r| r.rows_affected()))?;
        Ok(())
    }

    pub async fn replace_backup_codes(
        &mut self,
        user_id: &str,
        code_hashes: &[String],
    ) -> Result<()> {
        on_tx!(self, c => sqlx::query("DELETE FROM mfa_backup_codes WHERE user_id = $1")
            .bind(user_id)
            .execute(&mut **c).await.map(|r| r.rows_affected()))?;
        for hash in code_hashes {
            on_tx!(self, c => sqlx::query("INSERT INTO mfa_backup_codes (user_id, code_hash) VALUES ($1, $2)")
                .bind(user_id)
                .bind(hash)
                .execute(&mut **c).await.map(|r| r.rows_affected()))?;
        }
        Ok(())
    }

    /// Marks an unused backup code as used; false when there is no such unused code.
    pub async fn consume_backup_code(&mut self, user_id: &str, code_hash: &str) -> Result<bool> {
        let n = on_tx!(self, c => sqlx::query(
            "UPDATE mfa_backup_codes SET used_at = $3 WHERE user_id = $1 AND code_hash = $2 AND used_at IS NULL",
        )
        .bind(user_id)
        .bind(code_hash)
        .bind(now_ms())
        .execute(&mut **c).await.map(|r| r.rows_affected()))?;
        Ok(n == 1)
    }

    pub async fn remaining_backup_codes(&mut self, user_id: &str) -> Result<i64> {
        Ok(on_tx!(self, c => sqlx::query_scalar::<_, i64>(
            "SELECT COUNT(*) FROM mfa_backup_codes WHERE user_id = $1 AND used_at IS NULL",
        )
        .bind(user_id)
        .fetch_one(&mut **c)
        .await)?)
    }

    pub async fn insert_mfa_challenge(&mut self, challenge: &NewMfaChallenge<'_>) -> Result<()> {
        on_tx!(self, c => sqlx::query(
            "INSERT INTO mfa_challenges (token_hash, user_id, expires_at, sso_org_id, sso_provider_id, \
             enrolling, seed_fingerprint) VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(challenge.token_hash)
        .bind(challenge.user_id)
        .bind(challenge.expires_at)
        .bind(challenge.sso.map(|(org, _)| org))
        .bind(challenge.sso.map(|(_, provider)| provider))
        .bind(challenge.enrolling.is_some())
        .bind(challenge.enrolling)
        .execute(&mut **c).await.map(|r| r.rows_affected()))?;
        Ok(())
    }

    pub async fn mfa_challenge(&mut self, token_hash: &str) -> Result<Option<MfaChallengeRow>> {
        Ok(on_tx!(self, c => sqlx::query_as::<_, MfaChallengeRow>(
            "SELECT user_id, expires_at, attempts, sso_org_id, sso_provider_id, enrolling, seed_fingerprint \
             FROM mfa_challenges WHERE token_hash = $1",
        )
        .bind(token_hash)
        .fetch_optional(&mut **c)
        .await)?)
    }

    pub async fn count_mfa_attempt(&mut self, token_hash: &str) -> Result<()> {
        on_tx!(self, c => sqlx::query("UPDATE mfa_challenges SET attempts = attempts + 1 WHERE token_hash = $1")
            .bind(token_hash)
            .execute(&mut **c).await.map(|r| r.rows_affected()))?;
        Ok(())
    }

    pub async fn delete_mfa_challenge(&mut self, token_hash: &str) -> Result<()> {
        on_tx!(self, c => sqlx::query("DELETE FROM mfa_challenges WHERE token_hash = $1 OR expires_at < $2")
            .bind(token_hash)
            .bind(now_ms())
            .execute(&mut **c).await.map(|r| r.rows_affected()))?;
        Ok(())
    }

    // ----- sessions -----

    pub async fn insert_session(&mut self, s: &NewSession<'_>) -> Result<()> {
        let now = now_ms();
        on_tx!(self, c => sqlx::query(
            "INSERT INTO sessions (id, user_id, access_hash, access_expires_at, refresh_expires_at, \
             ip, user_agent, created_at, last_used_at, sso_org_id, sso_provider_id) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $8, $9, $10)",
        )
        .bind(s.id)
        .bind(s.user_id)
        .bind(s.access_hash)
        .bind(s.access_expires_at)
        .bind(s.refresh_expires_at)
        .bind(s.ip)
        .bind(s.user_agent)
        .bind(now)
        .bind(s.sso.map(|(org, _)| org))
        .bind(s.sso.map(|(_, provider)| provider))
        .execute(&mut **c).await.map(|r| r.rows_affected()))?;
        self.insert_refresh_token(s.id, s.refresh_hash).await
    }

    async fn insert_refresh_token(&mut self, session_id: &str, refresh_hash: &str) -> Result<()> {
        on_tx!(self, c => sqlx::query(
            "INSERT INTO refresh_tokens (token_hash, session_id, created_at) VALUES ($1, $2, $3)",
        )
        .bind(refresh_hash)
        .bind(session_id)
        .bind(now_ms())
        .execute(&mut **c).await.map(|r| r.rows_affected()))?;
        Ok(())
    }

    pub async fn refresh_token(&mut self, refresh_hash: &str) -> Result<Option<RefreshTokenRow>> {
        Ok(on_tx!(self, c => sqlx::query_as::<_, RefreshTokenRow>(
            "SELECT r.session_id, r.used_at, s.refresh_expires_at, s.revoked_at, s.user_id \
             FROM refresh_tokens r JOIN sessions s ON s.id = r.session_id WHERE r.token_hash = $1",
        )
        .bind(refresh_hash)
        .fetch_optional(&mut **c)
        .await)?)
    }

    /// Rotates a session's tokens: the presented refresh token is spent, a new pair replaces it.
    /// Returns false when the refresh token was spent already (by a concurrent refresh).
    pub async fn rotate_session(
        &mut self,
        session_id: &str,
        old_refresh_hash: &str,
        new_refresh_hash: &str,
        new_access_hash: &str,
        access_expires_at: i64,
    ) -> Result<bool> {
        let now = now_ms();
        let spent = on_tx!(self, c => sqlx::query(
            "UPDATE refresh_tokens SET used_at = $2 WHERE token_hash = $1 AND used_at IS NULL",
        )
        .bind(old_refresh_hash)
        .bind(now)
        .execute(&mut **c).await.map(|r| r.rows_affected()))?;
        if spent != 1 {
            return Ok(false);
        }
        on_tx!(self, c => sqlx::query(
            "UPDATE sessions SET access_hash = $2, access_expires_at = $3, last_used_at = $4 WHERE id = $1",
        )
        .bind(session_id)
        .bind(new_access_hash)
        .bind(access_expires_at)
        .bind(now)
        .execute(&mut **c).await.map(|r| r.rows_affected()))?;
        self.insert_refresh_token(session_id, new_refresh_hash)
            .await?;
        Ok(true)
    }

    pub async fn list_sessions(&mut self, user_id: &str) -> Result<Vec<SessionRow>> {
        Ok(on_tx!(self, c => sqlx::query_as::<_, SessionRow>(
            "SELECT id, user_id, access_expires_at, refresh_expires_at, ip, user_agent, created_at, \
             last_used_at, revoked_at FROM sessions WHERE user_id = $1 AND revoked_at IS NULL \
             AND refresh_expires_at > $2 ORDER BY created_at DESC",
        )
        .bind(user_id)
        .bind(now_ms())
        .fetch_all(&mut **c)
        .await)?)
    }

    /// Revokes one session of a user; false when there is no such live session.
    pub async fn revoke_session(
        &mut self,
        user_id: &str,
        session_id: &str,
        reason: &str,
    ) -> Result<bool> {
        let n = on_tx!(self, c => sqlx::query(
            "UPDATE sessions SET revoked_at = $3, revoked_reason = $4 WHERE id = $1 AND user_id = $2 AND revoked_at IS NULL",
        )
        .bind(session_id)
        .bind(user_id)
        .bind(now_ms())
        .bind(reason)
        .execute(&mut **c).await.map(|r| r.rows_affected()))?;
        Ok(n == 1)
    }

    /// Revokes every live session of a user (password change, disable, delete).
    pub async fn revoke_user_sessions(
        &mut self,
        user_id: &str,
        reason: &str,
        except: Option<&str>,
    ) -> Result<u64> {
        Ok(on_tx!(self, c => sqlx::query(
            "UPDATE sessions SET revoked_at = $2, revoked_reason = $3 \
             WHERE user_id = $1 AND revoked_at IS NULL AND id <> $4",
        )
        .bind(user_id)
        .bind(now_ms())
        .bind(reason)
        .bind(except.unwrap_or(""))
        .execute(&mut **c).await.map(|r| r.rows_affected()))?)
    }

    // ----- API tokens -----

    pub async fn insert_api_token(&mut self, t: &NewApiToken<'_>) -> Result<()> {
        let org = self.org_id.clone();
        on_tx!(self, c => sqlx::query(
            "INSERT INTO api_tokens (id, org_id, user_id, name, token_hash, role, expires_at, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(t.id)
        .bind(&org)
        .bind(t.user_id)
        .bind(t.name)
        .bind(t.token_hash)
        .bind(t.role)
        .bind(t.expires_at)
        .bind(now_ms())
        .execute(&mut **c).await.map(|r| r.rows_affected()))?;
        Ok(())
    }

    pub async fn list_api_tokens(&mut self) -> Result<Vec<ApiTokenRow>> {
        let org = self.org_id.clone();
        Ok(on_tx!(self, c => sqlx::query_as::<_, ApiTokenRow>(
            "SELECT id, user_id, name, role, expires_at, created_at, last_used_at, revoked_at \
             FROM api_tokens WHERE org_id = $1 ORDER BY created_at DESC",
        )
        .bind(&org)
        .fetch_all(&mut **c)
        .await)?)
    }

    pub async fn api_token(&mut self, id: &str) -> Result<Option<ApiTokenRow>> {
        let org = self.org_id.clone();
        Ok(on_tx!(self, c => sqlx::query_as::<_, ApiTokenRow>(
            "SELECT id, user_id, name, role, expires_at, created_at, last_used_at, revoked_at \
             FROM api_tokens WHERE org_id = $1 AND id = $2",
        )
        .bind(&org)
        .bind(id)
        .fetch_optional(&mut **c)
        .await)?)
    }

    pub async fn revoke_api_token(&mut self, id: &str) -> Result<bool> {
        let org = self.org_id.clone();
        let n = on_tx!(self, c => sqlx::query(
            "UPDATE api_tokens SET revoked_at = $3 WHERE org_id = $1 AND id = $2 AND revoked_at IS NULL",
        )
        .bind(&org)
        .bind(id)
        .bind(now_ms())
        .execute(&mut **c).await.map(|r| r.rows_affected()))?;
        Ok(n == 1)
    }

    /// The live API token behind a presented secret. The token acts with its own role, capped
    /// by its creator's current role (checked by the caller), and dies with its creator.
    pub async fn api_token_by_hash(
        &mut self,
        token_hash: &str,
    ) -> Result<Option<(CredentialOwner, String)>> {
        let now = now_ms();
        let row = on_tx!(self, c => sqlx::query_as::<_, (String, String, String, String, i64, String)>(
            "SELECT t.id, u.id, u.email, t.role, t.expires_at, m.role FROM api_tokens t \
             JOIN users u ON u.id = t.user_id JOIN memberships m ON m.user_id = t.user_id AND m.org_id = t.org_id \
             WHERE t.token_hash = $1 AND t.revoked_at IS NULL AND t.expires_at > $2 AND u.disabled = FALSE",
        )
        .bind(token_hash)
        .bind(now)
        .fetch_optional(&mut **c)
        .await)?;
        Ok(row.map(
            |(credential_id, user_id, email, role, expires_at, creator_role)| {
                (
                    CredentialOwner {
                        credential_id,
                        user_id,
                        email,
                        role,
                        expires_at,
                    },
                    creator_role,
                )
            },
        ))
    }

    /// The role a live API token acts with and its creator's current role here, or `None` once
    /// it was revoked, expired, its creator disabled or no longer a member. Long-lived sockets
    /// re-check their caller with this.
    pub async fn live_api_token_role(
        &mut self,
        token_id: &str,
    ) -> Result<Option<(String, String)>> {
        let now = now_ms();
        Ok(on_tx!(self, c => sqlx::query_as::<_, (String, String)>(
            "SELECT t.role, m.role FROM api_tokens t \
             JOIN users u ON u.id = t.user_id JOIN memberships m ON m.user_id = t.user_id AND m.org_id = t.org_id \
             WHERE t.id = $1 AND t.revoked_at IS NULL AND t.expires_at > $2 AND u.disabled = FALSE",
        )
        .bind(token_id)
        .bind(now)
        .fetch_optional(&mut **c)
        .await)?)
    }

    /// Revokes every live API token a user created (password change, admin reset, disable).
    pub async fn revoke_user_api_tokens(&mut self, user_id: &str) -> Result<u64> {
        let org = self.org_id.clone();
        Ok(on_tx!(self, c => sqlx::query(
            "UPDATE api_tokens SET revoked_at = $3 WHERE org_id = $1 AND user_id = $2 AND revoked_at IS NULL",
        )
        .bind(&org)
        .bind(user_id)
        .bind(now_ms())
        .execute(&mut **c).await.map(|r| r.rows_affected()))?)
    }

    pub async fn touch_api_token(&mut self, id: &str) -> Result<()> {
        on_tx!(self, c => sqlx::query("UPDATE api_tokens SET last_used_at = $2 WHERE id = $1")
            .bind(id)
            .bind(now_ms())
            .execute(&mut **c).await.map(|r| r.rows_affected()))?;
        Ok(())
    }
}
