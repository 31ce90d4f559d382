//! The host CA, enrollment tokens and enrolled agents.

use crate::{Result, StoreError, Tx, now_ms};

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct EnrollmentTokenRow {
    pub id: String,
    pub name: String,
    /// JSON object text.
    pub labels: String,
    pub max_uses: i64,
    pub uses: i64,
    pub expires_at: i64,
    pub created_by: String,
    pub created_at: i64,
    pub revoked_at: Option<i64>,
}

pub struct NewEnrollmentToken<'a> {
    pub id: &'a str,
    pub token_hash: &'a str,
    pub name: &'a str,
    pub labels: &'a str,
    pub max_uses: i64,
    pub expires_at: i64,
    pub created_by: &'a str,
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct AgentRow {
    pub id: String,
    pub name: String,
    pub labels: String,
    pub version: String,
    pub cert_serial: String,
    pub cert_fingerprint: String,
    pub cert_expires_at: i64,
    pub enrolled_at: i64,
    pub last_seen_at: Option<i64>,
    pub revoked_at: Option<i64>,
    /// The agent inside the host process (community mode).
    pub builtin: bool,
    /// The host statistics of its last heartbeat (JSON), if any.
    pub host_stats: Option<String>,
}

pub struct NewAgent<'a> {
    pub id: &'a str,
    pub name: &'a str,
    pub labels: &'a str,
    pub version: &'a str,
    pub enrollment_token_id: &'a str,
    pub cert_serial: &'a str,
    pub cert_fingerprint: &'a str,
    pub cert_expires_at: i64,
    pub builtin: bool,
}

/// A `SELECT` of [`EnrollmentTokenRow`]s in the organisation bound to `$1`, then `$tail`.
macro_rules! token_query {
    ($tail:literal) => {
        concat!(
            "SELECT id, name, labels, max_uses, uses, expires_at, created_by, created_at, revoked_at \
             FROM enrollment_tokens WHERE org_id = $1",
            $tail
        )
    };
}

impl Tx {
    /// The CA certificate and its sealed key, if created.
    pub async fn host_ca(&mut self) -> Result<Option<(String, Vec<u8>)>> {
        Ok(on_tx!(self, c => sqlx::query_as::<_, (String, Vec<u8>)>(
            "SELECT cert_pem, sealed_key FROM host_ca WHERE id = 'default'",
        )
        .fetch_optional(&mut **c)
        .await)?)
    }

    pub async fn insert_host_ca(&mut self, cert_pem: &str, sealed_key: &[u8]) -> Result<()> {
        on_tx!(self, c => sqlx::query(
            "INSERT INTO host_ca (id, cert_pem, sealed_key, created_at) VALUES ('default', $1, $2, $3)",
        )
        .bind(cert_pem)
        .bind(sealed_key)
        .bind(now_ms())
        .execute(&mut **c).await.map(|r| r.rows_affected()))?;
        Ok(())
    }

    pub async fn insert_enrollment_token(&mut self, t: &NewEnrollmentToken<'_>) -> Result<()> {
        let org = self.org_id.clone();
        on_tx!(self, c => sqlx::query(
            "INSERT INTO enrollment_tokens (id, org_id, token_hash, name, labels, max_uses, expires_at, created_by, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        )
        .bind(t.id)
        .bind(&org)
        .bind(t.token_hash)
        .bind(t.name)
        .bind(t.labels)
        .bind(t.max_uses)
        .bind(t.expires_at)
        .bind(t.created_by)
        .bind(now_ms())
        .execute(&mut **c).await.map(|r| r.rows_affected()))?;
        Ok(())
    }

    pub async fn list_enrollment_tokens(&mut self) -> Result<Vec<EnrollmentTokenRow>> {
        let org = self.org_id.clone();
        const SQL: &str = token_query!(" ORDER BY created_at DESC");
        Ok(
            on_tx!(self, c => sqlx::query_as::<_, EnrollmentTokenRow>(SQL)
            .bind(&org)
            .fetch_all(&mut **c)
            .await)?,
        )
    }

    pub async fn enrollment_token(&mut self, id: &str) -> Result<Option<EnrollmentTokenRow>> {
        let org = self.org_id.clone();
        const SQL: &str = token_query!(" AND id = $2");
        Ok(
            on_tx!(self, c => sqlx::query_as::<_, EnrollmentTokenRow>(SQL)
            .bind(&org)
            .bind(id)
            .fetch_optional(&mut **c)
            .await)?,
        )
    }

    pub async fn revoke_enrollment_token(&mut self, id: &str) -> Result<bool> {
        let org = self.org_id.clone();
        let n = on_tx!(self, c => sqlx::query(
            "UPDATE enrollment_tokens SET revoked_at = $3 WHERE org_id = $1 AND id = $2 AND revoked_at IS NULL",
        )
        .bind(&org)
        .bind(id)
        .bind(now_ms())
        .execute(&mut **c).await.map(|r| r.rows_affected()))?;
        Ok(n == 1)
    }

    /// Spends one use of the enrollment token with this hash, if it is live. Returns the token,
    /// or why it was refused: `Err(reason)` inside `Ok` for expected refusals.
    pub async fn consume_enrollment_token(
        &mut self,
        token_hash: &str,
    ) -> Result<std::result::Result<EnrollmentTokenRow, &'static str>> {
        let org = self.org_id.clone();
        const SQL: &str = token_query!(" AND token_hash = $2");
        let Some(token) = on_tx!(self, c => sqlx::query_as::<_, EnrollmentTokenRow>(SQL)
            .bind(&org)
            .bind(token_hash)
            .fetch_optional(&mut **c)
            .await)?
        else {
            return Ok(Err("unknown enrollment token"));
        };
        if token.revoked_at.is_some() {
            return Ok(Err("the enrollment token was revoked"));
        }
        if token.expires_at <= now_ms() {
            return Ok(Err("the enrollment token has expired"));
        }
        let spent = on_tx!(self, c => sqlx::query(
            "UPDATE enrollment_tokens SET uses = uses + 1 WHERE id = $1 AND uses < max_uses",
        )
        .bind(&token.id)
        .execute(&mut **c).await.map(|r| r.rows_affected()))?;
        if spent != 1 {
            return Ok(Err("the enrollment token has been used up"));
        }
        Ok(Ok(EnrollmentTokenRow {
            uses: token.uses + 1,
            ..token
        }))
    }

    pub async fn insert_agent(&mut self, a: &NewAgent<'_>) -> Result<()> {
        let org = self.org_id.clone();
        on_tx!(self, c => sqlx::query(
            "INSERT INTO agents (id, org_id, name, labels, version, enrollment_token_id, cert_serial, \
             cert_fingerprint, cert_expires_at, enrolled_at, builtin) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
        )
        .bind(a.id)
        .bind(&org)
        .bind(a.name)
        .bind(a.labels)
        .bind(a.version)
        .bind(a.enrollment_token_id)
        .bind(a.cert_serial)
        .bind(a.cert_fingerprint)
        .bind(a.cert_expires_at)
        .bind(now_ms())
        .bind(a.builtin)
        .execute(&mut **c).await.map(|r| r.rows_affected()))
        .map_err(|e| {
            let e = StoreError::from(e);
            if e.is_unique_violation() {
                StoreError::Conflict("an agent with this name")
            } else {
                e
            }
        })?;
        Ok(())
    }

    pub async fn list_agents(&mut self) -> Result<Vec<AgentRow>> {
        let org = self.org_id.clone();
        Ok(on_tx!(self, c => sqlx::query_as::<_, AgentRow>(
            "SELECT id, name, labels, version, cert_serial, cert_fingerprint, cert_expires_at, enrolled_at, \
             last_seen_at, revoked_at, builtin, host_stats FROM agents WHERE org_id = $1 ORDER BY name",
        )
        .bind(&org)
        .fetch_all(&mut **c)
        .await)?)
    }

    pub async fn agent(&mut self, id: &str) -> Result<Option<AgentRow>> {
        let org = self.org_id.clone();
        Ok(on_tx!(self, c => sqlx::query_as::<_, AgentRow>(
            "SELECT id, name, labels, version, cert_serial, cert_fingerprint, cert_expires_at, enrolled_at, \
             last_seen_at, revoked_at, builtin, host_stats FROM agents WHERE org_id = $1 AND id = $2",
        )
        .bind(&org)
        .bind(id)
        .fetch_optional(&mut **c)
        .await)?)
    }

    /// The agent holding the certificate with this SHA-256 fingerprint.
    pub async fn agent_by_fingerprint(&mut self, fingerprint: &str) -> Result<Option<AgentRow>> {
        let org = self.org_id.clone();
        Ok(on_tx!(self, c => sqlx::query_as::<_, AgentRow>(
            "SELECT id, name, labels, version, cert_serial, cert_fingerprint, cert_expires_at, enrolled_at, \
             last_seen_at, revoked_at, builtin, host_stats FROM agents WHERE org_id = $1 AND cert_fingerprint = $2",
        )
        .bind(&org)
        .bind(fingerprint)
        .fetch_optional(&mut **c)
        .await)?)
    }

    /// Records that the agent was heard from (hello or heartbeat).
    pub async fn touch_agent(&mut self, id: &str, version: Option<&str>) -> Result<()> {
        let org = self.org_id.clone();
        on_tx!(self, c => sqlx::query(
            "UPDATE agents SET last_seen_at = $3, version = COALESCE($4, version) WHERE org_id = $1 AND id = $2",
        )
        .bind(&org)
        .bind(id)
        .bind(now_ms())
        .bind(version)
        .execute(&mut **c).await.map(|r| r.rows_affected()))?;
        Ok(())
    }

    /// Records a heartbeat: the agent was heard from, with these host statistics (JSON).
    pub async fn record_heartbeat(&mut self, id: &str, host_stats: &str) -> Result<()> {
        let org = self.org_id.clone();
        on_tx!(self, c => sqlx::query(
            "UPDATE agents SET last_seen_at = $3, host_stats = $4 WHERE org_id = $1 AND id = $2",
        )
        .bind(&org)
        .bind(id)
        .bind(now_ms())
        .bind(host_stats)
        .execute(&mut **c).await.map(|r| r.rows_affected()))?;
        Ok(())
    }

    /// Replaces an agent's certificate after rotation; the old one is no longer accepted.
    pub async fn rotate_agent_certificate(
        &mut self,
        id: &str,
        serial: &str,
        fingerprint: &str,
        expires_at: i64,
    ) -> Result<bool> {
        let org = self.org_id.clone();
        let n = on_tx!(self, c => sqlx::query(
            "UPDATE agents SET cert_serial = $3, cert_fingerprint = $4, cert_expires_at = $5 \
             WHERE org_id = $1 AND id = $2 AND revoked_at IS NULL",
        )
        .bind(&org)
        .bind(id)
        .bind(serial)
        .bind(fingerprint)
        .bind(expires_at)
        .execute(&mut **c).await.map(|r| r.rows_affected()))?;
        Ok(n == 1)
    }

    /// Enrolled, unrevoked nodes (the built-in one included): what a licence's `nodes` limits.
    pub async fn count_active_agents(&mut self) -> Result<i64> {
        let org = self.org_id.clone();
        Ok(on_tx!(self, c => sqlx::query_scalar::<_, i64>(
            "SELECT COUNT(*) FROM agents WHERE org_id = $1 AND revoked_at IS NULL",
        )
        .bind(&org)
        .fetch_one(&mut **c)
        .await)?)
    }

    pub async fn revoke_agent(&mut self, id: &str) -> Result<bool> {
        let org = self.org_id.clone();
        let n = on_tx!(self, c => sqlx::query(
            "UPDATE agents SET revoked_at = $3 WHERE org_id = $1 AND id = $2 AND revoked_at IS NULL",
        )
        .bind(&org)
        .bind(id)
        .bind(now_ms())
        .execute(&mut **c).await.map(|r| r.rows_affected()))?;
        Ok(n == 1)
    }
}
