//! Single sign-on: an organisation's providers (configured instances of sso-provider plugins with
//! the group → role mapping), the identities they vouched for, keyed by (provider, subject), and
//! logins in flight (single use, bound to a browser, handing the session over once).

use crate::proxies::sql;
use crate::{Result, Tx, now_ms};

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct SsoProviderRow {
    pub id: String,
    pub plugin_id: String,
    pub name: String,
    /// Non-secret settings, JSON object text.
    pub settings: String,
    /// Sealed JSON object of the secret settings.
    pub secrets: Option<Vec<u8>>,
    /// JSON array text of `{"group": …, "role": …}`.
    pub group_roles: String,
    /// The role of a person none of whose groups is mapped; none: such a login is refused.
    pub default_role: Option<String>,
    pub enabled: bool,
    pub created_at: i64,
    pub updated_at: i64,
    /// A SAML provider's service-provider key (sealed) and certificate (PEM).
    pub sp_key: Option<Vec<u8>>,
    pub sp_cert: Option<String>,
    /// Its SAML entity id and ACS URL, fixed when it was made.
    pub sp_entity_id: Option<String>,
    pub sp_acs_url: Option<String>,
    /// What a login needs besides the identity provider's word: `none`, `idp` or `local`.
    pub mfa: String,
    /// JSON array text: further `acr` values that count as a second factor under `idp`.
    pub mfa_acr_values: String,
}

/// A provider as stored; the id is the caller's (the secrets are sealed under it).
pub struct NewSsoProvider<'a> {
    pub id: &'a str,
    pub plugin_id: &'a str,
    pub name: &'a str,
    pub settings: &'a str,
    pub secrets: Option<&'a [u8]>,
    pub group_roles: &'a str,
    pub default_role: Option<&'a str>,
    pub enabled: bool,
    pub mfa: &'a str,
    /// JSON array text.
    pub mfa_acr_values: &'a str,
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct SsoIdentityRow {
    pub provider_id: String,
    pub subject: String,
    pub user_id: String,
    pub issuer: String,
    pub created_at: i64,
    pub last_login_at: i64,
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct SsoLoginRow {
    pub id: String,
    pub provider_id: String,
    pub state_hash: String,
    pub browser_hash: String,
    pub nonce: String,
    /// The redirect URI the login sent the identity provider (the token request repeats it).
    pub callback_url: String,
    /// Sealed PKCE verifier.
    pub code_verifier: Vec<u8>,
    /// Sealed provider context (`begin-login`'s), if any.
    pub context: Option<Vec<u8>>,
    pub created_at: i64,
    pub expires_at: i64,
    pub used_at: Option<i64>,
    /// Who signed in, once the callback succeeded.
    pub user_id: Option<String>,
    pub exchange_hash: Option<String>,
    pub exchange_expires_at: Option<i64>,
    pub exchanged_at: Option<i64>,
    /// The identity provider reported a second factor for it (the provider's `idp` policy,
    /// checked again when the code is exchanged).
    pub second_factor: bool,
}

pub struct NewSsoLogin<'a> {
    pub id: &'a str,
    pub provider_id: &'a str,
    pub state_hash: &'a str,
    pub browser_hash: &'a str,
    pub nonce: &'a str,
    pub code_verifier: &'a [u8],
    pub context: Option<&'a [u8]>,
    pub callback_url: &'a str,
    pub expires_at: i64,
}

const PROVIDER_COLUMNS: &str = "SELECT id, plugin_id, name, settings, secrets, group_roles, default_role, \
     enabled, created_at, updated_at, sp_key, sp_cert, sp_entity_id, sp_acs_url, mfa, mfa_acr_values FROM sso_providers WHERE org_id = $1";

const LOGIN_COLUMNS: &str = "SELECT id, provider_id, state_hash, browser_hash, nonce, callback_url, code_verifier, context, \
     created_at, expires_at, used_at, user_id, exchange_hash, exchange_expires_at, exchanged_at, \
     second_factor FROM sso_logins WHERE org_id = $1";

impl Tx {
    // ----- providers -----

    /// Stores a SAML provider's service-provider key (sealed), certificate, entity id and ACS URL.
    pub async fn set_sso_service_provider(
        &mut self,
        id: &str,
        sealed_key: &[u8],
        cert_pem: &str,
        entity_id: &str,
        acs_url: &str,
    ) -> Result<()> {
        let org = self.org_id.clone();
        on_tx!(self, c => sqlx::query(
            "UPDATE sso_providers SET sp_key = $3, sp_cert = $4, sp_entity_id = $5, sp_acs_url = $6 \
             WHERE org_id = $1 AND id = $2",
        )
        .bind(&org)
        .bind(id)
        .bind(sealed_key)
        .bind(cert_pem)
        .bind(entity_id)
        .bind(acs_url)
        .execute(&mut **c).await.map(|r| r.rows_affected()))?;
        Ok(())
    }

    pub async fn list_sso_providers(&mut self) -> Result<Vec<SsoProviderRow>> {
        let org = self.org_id.clone();
        let q = sql(&[PROVIDER_COLUMNS, " ORDER BY name"]);
        Ok(on_tx!(self, c => sqlx::query_as::<_, SsoProviderRow>(q)
            .bind(&org)
            .fetch_all(&mut **c)
            .await)?)
    }

    pub async fn sso_provider(&mut self, id: &str) -> Result<Option<SsoProviderRow>> {
        let org = self.org_id.clone();
        let q = sql(&[PROVIDER_COLUMNS, " AND id = $2"]);
        Ok(on_tx!(self, c => sqlx::query_as::<_, SsoProviderRow>(q)
            .bind(&org)
            .bind(id)
            .fetch_optional(&mut **c)
            .await)?)
    }

    pub async fn insert_sso_provider(&mut self, p: &NewSsoProvider<'_>) -> Result<()> {
        let org = self.org_id.clone();
        let now = now_ms();
        on_tx!(self, c => sqlx::query(
            "INSERT INTO sso_providers (id, org_id, plugin_id, name, settings, secrets, group_roles, \
             default_role, enabled, created_at, updated_at, mfa, mfa_acr_values) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $10, $11, $12)",
        )
        .bind(p.id)
        .bind(&org)
        .bind(p.plugin_id)
        .bind(p.name)
        .bind(p.settings)
        .bind(p.secrets)
        .bind(p.group_roles)
        .bind(p.default_role)
        .bind(p.enabled)
        .bind(now)
        .bind(p.mfa)
        .bind(p.mfa_acr_values)
        .execute(&mut **c).await.map(|r| r.rows_affected()))?;
        Ok(())
    }

    /// Replaces everything but the plugin of provider `p.id`; false when there is none.
    pub async fn update_sso_provider(&mut self, p: &NewSsoProvider<'_>) -> Result<bool> {
        let org = self.org_id.clone();
        let n = on_tx!(self, c => sqlx::query(
            "UPDATE sso_providers SET name = $3, settings = $4, secrets = $5, group_roles = $6, \
             default_role = $7, enabled = $8, updated_at = $9, mfa = $10, mfa_acr_values = $11 \
             WHERE org_id = $1 AND id = $2",
        )
        .bind(&org)
        .bind(p.id)
        .bind(p.name)
        .bind(p.settings)
        .bind(p.secrets)
        .bind(p.group_roles)
        .bind(p.default_role)
        .bind(p.enabled)
        .bind(now_ms())
        .bind(p.mfa)
        .bind(p.mfa_acr_values)
        .execute(&mut **c).await.map(|r| r.rows_affected()))?;
        Ok(n == 1)
    }

    /// Deletes a provider with its logins in flight and the identities it vouched for (the
    /// people stay, with their memberships).
    pub async fn delete_sso_provider(&mut self, id: &str) -> Result<bool> {
        let org = self.org_id.clone();
        for table in ["sso_logins", "sso_identities"] {
            let q = sql(&[
                "DELETE FROM ",
                table,
                " WHERE org_id = $1 AND provider_id = $2",
            ]);
            on_tx!(self, c => sqlx::query(q)
                .bind(&org)
                .bind(id)
                .execute(&mut **c).await.map(|r| r.rows_affected()))?;
        }
        let n = on_tx!(self, c => sqlx::query("DELETE FROM sso_providers WHERE org_id = $1 AND id = $2")
            .bind(&org)
            .bind(id)
            .execute(&mut **c).await.map(|r| r.rows_affected()))?;
        Ok(n == 1)
    }

    // ----- identities -----

    pub async fn sso_identity(
        &mut self,
        provider_id: &str,
        subject: &str,
    ) -> Result<Option<SsoIdentityRow>> {
        let org = self.org_id.clone();
        Ok(on_tx!(self, c => sqlx::query_as::<_, SsoIdentityRow>(
            "SELECT provider_id, subject, user_id, issuer, created_at, last_login_at FROM sso_identities \
             WHERE org_id = $1 AND provider_id = $2 AND subject = $3",
        )
        .bind(&org)
        .bind(provider_id)
        .bind(subject)
        .fetch_optional(&mut **c)
        .await)?)
    }

    pub async fn insert_sso_identity(
        &mut self,
        provider_id: &str,
        subject: &str,
        user_id: &str,
        issuer: &str,
    ) -> Result<()> {
        let org = self.org_id.clone();
        let now = now_ms();
        on_tx!(self, c => sqlx::query(
            "INSERT INTO sso_identities (provider_id, subject, org_id, user_id, issuer, created_at, last_login_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $6)",
        )
        .bind(provider_id)
        .bind(subject)
        .bind(&org)
        .bind(user_id)
        .bind(issuer)
        .bind(now)
        .execute(&mut **c).await.map(|r| r.rows_affected()))?;
        Ok(())
    }

    pub async fn touch_sso_identity(&mut self, provider_id: &str, subject: &str) -> Result<()> {
        let org = self.org_id.clone();
        on_tx!(self, c => sqlx::query(
            "UPDATE sso_identities SET last_login_at = $4 WHERE org_id = $1 AND provider_id = $2 AND subject = $3",
        )
        .bind(&org)
        .bind(provider_id)
        .bind(subject)
        .bind(now_ms())
        .execute(&mut **c).await.map(|r| r.rows_affected()))?;
        Ok(())
    }

    // ----- logins in flight -----

    pub async fn insert_sso_login(&mut self, l: &NewSsoLogin<'_>) -> Result<()> {
        let org = self.org_id.clone();
        let now = now_ms();
        // Finished or abandoned logins of this organisation go as new ones come.
        on_tx!(self, c => sqlx::query("DELETE FROM sso_logins WHERE org_id = $1 AND expires_at < $2")
            .bind(&org)
            .bind(now - 2 * 60 * 1000)
            .execute(&mut **c).await.map(|r| r.rows_affected()))?;
        on_tx!(self, c => sqlx::query(
            "INSERT INTO sso_logins (id, org_id, provider_id, state_hash, browser_hash, nonce, code_verifier, \
             context, created_at, expires_at, callback_url) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
        )
        .bind(l.id)
        .bind(&org)
        .bind(l.provider_id)
        .bind(l.state_hash)
        .bind(l.browser_hash)
        .bind(l.nonce)
        .bind(l.code_verifier)
        .bind(l.context)
        .bind(now)
        .bind(l.expires_at)
        .bind(l.callback_url)
        .execute(&mut **c).await.map(|r| r.rows_affected()))?;
        Ok(())
    }

    pub async fn sso_login(&mut self, id: &str) -> Result<Option<SsoLoginRow>> {
        let org = self.org_id.clone();
        let q = sql(&[LOGIN_COLUMNS, " AND id = $2"]);
        Ok(on_tx!(self, c => sqlx::query_as::<_, SsoLoginRow>(q)
            .bind(&org)
            .bind(id)
            .fetch_optional(&mut **c)
            .await)?)
    }

    /// Marks login `id` used; false when it was used already or has expired (a replayed or
    /// late callback).
    pub async fn spend_sso_login(&mut self, id: &str) -> Result<bool> {
        let org = self.org_id.clone();
        let now = now_ms();
        let n = on_tx!(self, c => sqlx::query(
            "UPDATE sso_logins SET used_at = $3 WHERE org_id = $1 AND id = $2 AND used_at IS NULL AND expires_at > $3",
        )
        .bind(&org)
        .bind(id)
        .bind(now)
        .execute(&mut **c).await.map(|r| r.rows_affected()))?;
        Ok(n == 1)
    }

    /// Records who signed in through login `id` and the hash of the one-time code that hands
    /// their session to the dashboard.
    pub async fn finish_sso_login(
        &mut self,
        id: &str,
        user_id: &str,
        exchange_hash: &str,
        exchange_expires_at: i64,
        second_factor: bool,
    ) -> Result<()> {
        let org = self.org_id.clone();
        on_tx!(self, c => sqlx::query(
            "UPDATE sso_logins SET user_id = $3, exchange_hash = $4, exchange_expires_at = $5, \
             second_factor = $6 WHERE org_id = $1 AND id = $2",
        )
        .bind(&org)
        .bind(id)
        .bind(user_id)
        .bind(exchange_hash)
        .bind(exchange_expires_at)
        .bind(second_factor)
        .execute(&mut **c).await.map(|r| r.rows_affected()))?;
        Ok(())
    }

    /// Spends the one-time code of login `id`: the person it signed in, once, before it expires.
    pub async fn spend_sso_exchange(
        &mut self,
        id: &str,
        exchange_hash: &str,
    ) -> Result<Option<String>> {
        let org = self.org_id.clone();
        let now = now_ms();
        let n = on_tx!(self, c => sqlx::query(
            "UPDATE sso_logins SET exchanged_at = $4 WHERE org_id = $1 AND id = $2 AND exchange_hash = $3 \
             AND exchanged_at IS NULL AND exchange_expires_at > $4 AND user_id IS NOT NULL",
        )
        .bind(&org)
        .bind(id)
        .bind(exchange_hash)
        .bind(now)
        .execute(&mut **c).await.map(|r| r.rows_affected()))?;
        if n != 1 {
            return Ok(None);
        }
        Ok(self.sso_login(id).await?.and_then(|l| l.user_id))
    }
}
