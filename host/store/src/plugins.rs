//! Installed plugins (host-wide), the installed licence, and plugin-scoped key/value data.
//!
//! Plugins are not per organisation: the operator installs them for the whole host, and each
//! organisation configures its own instances (alert channels …). The component bytes live in the
//! database so that every replica loads the same plugin.

use crate::{Result, Tx, now_ms};

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct PluginRow {
    pub id: String,
    pub version: String,
    pub world: String,
    pub edition: String,
    pub manifest: Vec<u8>,
    pub component_sha256: String,
    pub signed_by: Option<String>,
    pub first_party: bool,
    pub enabled: bool,
    /// JSON text of the operator's grant.
    pub grants: String,
    pub installed_at: i64,
    pub updated_at: i64,
}

pub struct NewPlugin<'a> {
    pub id: &'a str,
    pub version: &'a str,
    pub world: &'a str,
    pub edition: &'a str,
    pub manifest: &'a [u8],
    pub component: &'a [u8],
    pub component_sha256: &'a str,
    pub signed_by: Option<&'a str>,
    pub first_party: bool,
}

const PLUGIN_COLUMNS: &str = "SELECT id, version, world, edition, manifest, component_sha256, signed_by, \
     first_party, enabled, grants, installed_at, updated_at FROM plugins";

/// Keys one plugin may keep per organisation.
pub const MAX_PLUGIN_KV_KEYS: i64 = 1000;

impl Tx {
    pub async fn list_plugins(&mut self) -> Result<Vec<PluginRow>> {
        let sql = format!("{PLUGIN_COLUMNS} ORDER BY id");
        Ok(
            on_tx!(self, c => sqlx::query_as::<_, PluginRow>(sqlx::AssertSqlSafe(sql))
            .fetch_all(&mut **c)
            .await)?,
        )
    }

    pub async fn plugin(&mut self, id: &str) -> Result<Option<PluginRow>> {
        let sql = format!("{PLUGIN_COLUMNS} WHERE id = $1");
        Ok(
            on_tx!(self, c => sqlx::query_as::<_, PluginRow>(sqlx::AssertSqlSafe(sql))
            .bind(id)
            .fetch_optional(&mut **c)
            .await)?,
        )
    }

    /// The component bytes of a plugin.
    pub async fn plugin_component(&mut self, id: &str) -> Result<Option<Vec<u8>>> {
        Ok(on_tx!(self, c => sqlx::query_scalar::<_, Vec<u8>>(
            "SELECT component FROM plugins WHERE id = $1")
            .bind(id)
            .fetch_optional(&mut **c)
            .await)?)
    }

    /// Installs a plugin, or replaces the bundle of an installed one. An upgrade from the same
    /// signer keeps its enabled state and grant; from another signer (or unsigned) it is disabled
    /// until the operator enables it again. Returns whether it was already installed.
    pub async fn upsert_plugin(&mut self, p: &NewPlugin<'_>) -> Result<bool> {
        let existing = self.plugin(p.id).await?;
        let existed = existing.is_some();
        if let Some(old) = existing
            && (old.signed_by.as_deref() != p.signed_by || p.signed_by.is_none())
        {
            self.set_plugin_enabled(p.id, false, None).await?;
        }
        let now = now_ms();
        on_tx!(self, c => sqlx::query(
            "INSERT INTO plugins (id, version, world, edition, manifest, component, component_sha256, signed_by, \
             first_party, installed_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $10) \
             ON CONFLICT (id) DO UPDATE SET version = excluded.version, world = excluded.world, \
             edition = excluded.edition, manifest = excluded.manifest, component = excluded.component, \
             component_sha256 = excluded.component_sha256, signed_by = excluded.signed_by, \
             first_party = excluded.first_party, updated_at = excluded.updated_at",
        )
        .bind(p.id)
        .bind(p.version)
        .bind(p.world)
        .bind(p.edition)
        .bind(p.manifest)
        .bind(p.component)
        .bind(p.component_sha256)
        .bind(p.signed_by)
        .bind(p.first_party)
        .bind(now)
        .execute(&mut **c).await.map(|r| r.rows_affected()))?;
        Ok(existed)
    }

    /// Sets the enabled flag and, when given, the grant. Returns false for an unknown plugin.
    pub async fn set_plugin_enabled(
        &mut self,
        id: &str,
        enabled: bool,
        grants: Option<&str>,
    ) -> Result<bool> {
        let n = on_tx!(self, c => sqlx::query(
            "UPDATE plugins SET enabled = $2, grants = COALESCE($3, grants), updated_at = $4 WHERE id = $1",
        )
        .bind(id)
        .bind(enabled)
        .bind(grants)
        .bind(now_ms())
        .execute(&mut **c).await.map(|r| r.rows_affected()))?;
        Ok(n == 1)
    }

    /// Removes a plugin's key/value data in the transaction's organisation.
    pub async fn delete_plugin_data(&mut self, id: &str) -> Result<u64> {
        Ok(
            on_tx!(self, c => sqlx::query("DELETE FROM plugin_kv WHERE plugin_id = $1")
            .bind(id)
            .execute(&mut **c).await.map(|r| r.rows_affected()))?,
        )
    }

    /// How many alert channels of the transaction's organisation use a plugin (on PostgreSQL
    /// row-level security shows it no other's: count each organisation in its own).
    pub async fn plugin_usage(&mut self, id: &str) -> Result<i64> {
        Ok(on_tx!(self, c => sqlx::query_scalar::<_, i64>(
            "SELECT COUNT(*) FROM alert_channels WHERE plugin_id = $1")
            .bind(id)
            .fetch_one(&mut **c)
            .await)?)
    }

    pub async fn delete_plugin(&mut self, id: &str) -> Result<bool> {
        on_tx!(self, c => sqlx::query("DELETE FROM plugin_kv WHERE plugin_id = $1")
            .bind(id)
            .execute(&mut **c).await.map(|r| r.rows_affected()))?;
        let n = on_tx!(self, c => sqlx::query("DELETE FROM plugins WHERE id = $1")
            .bind(id)
            .execute(&mut **c).await.map(|r| r.rows_affected()))?;
        Ok(n == 1)
    }

    /// The installed licence file, if any.
    pub async fn license_text(&mut self) -> Result<Option<String>> {
        Ok(on_tx!(self, c => sqlx::query_scalar::<_, String>(
            "SELECT body FROM licenses WHERE id = 1")
            .fetch_optional(&mut **c)
            .await)?)
    }

    pub async fn set_license_text(&mut self, body: &str) -> Result<()> {
        on_tx!(self, c => sqlx::query(
            "INSERT INTO licenses (id, body, installed_at) VALUES (1, $1, $2) \
             ON CONFLICT (id) DO UPDATE SET body = excluded.body, installed_at = excluded.installed_at",
        )
        .bind(body)
        .bind(now_ms())
        .execute(&mut **c).await.map(|r| r.rows_affected()))?;
        Ok(())
    }

    pub async fn plugin_kv_get(&mut self, plugin_id: &str, key: &str) -> Result<Option<Vec<u8>>> {
        let org = self.org_id.clone();
        Ok(on_tx!(self, c => sqlx::query_scalar::<_, Vec<u8>>(
            "SELECT value FROM plugin_kv WHERE org_id = $1 AND plugin_id = $2 AND key = $3")
            .bind(&org)
            .bind(plugin_id)
            .bind(key)
            .fetch_optional(&mut **c)
            .await)?)
    }

    /// Stores a value; `Ok(false)` when the plugin already keeps [`MAX_PLUGIN_KV_KEYS`] other keys.
    pub async fn plugin_kv_set(
        &mut self,
        plugin_id: &str,
        key: &str,
        value: &[u8],
    ) -> Result<bool> {
        let org = self.org_id.clone();
        let count = on_tx!(self, c => sqlx::query_scalar::<_, i64>(
            "SELECT COUNT(*) FROM plugin_kv WHERE org_id = $1 AND plugin_id = $2 AND key <> $3")
            .bind(&org)
            .bind(plugin_id)
            .bind(key)
            .fetch_one(&mut **c)
            .await)?;
        if count >= MAX_PLUGIN_KV_KEYS {
            return Ok(false);
        }
        on_tx!(self, c => sqlx::query(
            "INSERT INTO plugin_kv (org_id, plugin_id, key, value) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (org_id, plugin_id, key) DO UPDATE SET value = excluded.value",
        )
        .bind(&org)
        .bind(plugin_id)
        .bind(key)
        .bind(value)
        .execute(&mut **c).await.map(|r| r.rows_affected()))?;
        Ok(true)
    }

    pub async fn plugin_kv_delete(&mut self, plugin_id: &str, key: &str) -> Result<()> {
        let org = self.org_id.clone();
        on_tx!(self, c => sqlx::query(
            "DELETE FROM plugin_kv WHERE org_id = $1 AND plugin_id = $2 AND key = $3")
            .bind(&org)
            .bind(plugin_id)
            .bind(key)
            .execute(&mut **c).await.map(|r| r.rows_affected()))?;
        Ok(())
    }
}
