//! Reverse proxy hosts per node, the domains they claim, and the revisions of each node's proxy
//! configuration (a snapshot of its hosts and the durable command that applies it).

use crate::{Result, Tx, now_ms};

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct ProxyHostRow {
    pub id: String,
    pub agent_id: String,
    /// JSON of the validated host.
    pub spec: String,
    pub created_at: i64,
    pub updated_at: i64,
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct ProxyRevisionRow {
    pub id: String,
    pub agent_id: String,
    pub number: i64,
    /// JSON array of `{"id", "spec"}`.
    pub hosts: String,
    pub command_id: String,
    pub reason: String,
    pub created_by: String,
    pub created_at: i64,
    /// The apply command's state (`pending`, `delivered`, `succeeded`, `failed`, `expired`).
    pub command_state: Option<String>,
    /// The apply command's result (JSON ApplyReport) or error.
    pub command_result: Option<String>,
    pub command_error: Option<String>,
}

pub struct NewProxyRevision<'a> {
    pub id: &'a str,
    pub agent_id: &'a str,
    pub number: i64,
    pub hosts: &'a str,
    pub command_id: &'a str,
    pub reason: &'a str,
    pub created_by: &'a str,
}

const HOST_COLUMNS: &str =
    "SELECT id, agent_id, spec, created_at, updated_at FROM proxy_hosts WHERE org_id = $1";
const REVISION_COLUMNS: &str = "SELECT r.id, r.agent_id, r.number, r.hosts, r.command_id, r.reason, \
     r.created_by, r.created_at, c.state AS command_state, c.result AS command_result, \
     c.error AS command_error FROM proxy_revisions r LEFT JOIN agent_commands c ON c.id = r.command_id \
     WHERE r.org_id = $1";

pub(crate) fn sql(parts: &[&str]) -> sqlx::AssertSqlSafe<String> {
    sqlx::AssertSqlSafe(parts.concat())
}

impl Tx {
    pub async fn list_proxy_hosts(&mut self, agent_id: &str) -> Result<Vec<ProxyHostRow>> {
        let org = self.org_id.clone();
        let q = sql(&[HOST_COLUMNS, " AND agent_id = $2 ORDER BY created_at, id"]);
        Ok(on_tx!(self, c => sqlx::query_as::<_, ProxyHostRow>(q)
            .bind(&org)
            .bind(agent_id)
            .fetch_all(&mut **c)
            .await)?)
    }

    /// Every proxy host of the organisation, on every node.
    pub async fn list_org_proxy_hosts(&mut self) -> Result<Vec<ProxyHostRow>> {
        let org = self.org_id.clone();
        let q = sql(&[HOST_COLUMNS, " ORDER BY agent_id, created_at, id"]);
        Ok(on_tx!(self, c => sqlx::query_as::<_, ProxyHostRow>(q)
            .bind(&org)
            .fetch_all(&mut **c)
            .await)?)
    }

    pub async fn proxy_host(&mut self, agent_id: &str, id: &str) -> Result<Option<ProxyHostRow>> {
        let org = self.org_id.clone();
        let q = sql(&[HOST_COLUMNS, " AND agent_id = $2 AND id = $3"]);
        Ok(on_tx!(self, c => sqlx::query_as::<_, ProxyHostRow>(q)
            .bind(&org)
            .bind(agent_id)
            .bind(id)
            .fetch_optional(&mut **c)
            .await)?)
    }

    /// Inserts or replaces a host and the domains it claims. A domain another host of the same
    /// node claims is a unique violation (`Err(domain)` names it).
    pub async fn put_proxy_host(
        &mut self,
        agent_id: &str,
        id: &str,
        spec: &str,
        domains: &[String],
    ) -> Result<std::result::Result<(), String>> {
        let org = self.org_id.clone();
        let now = now_ms();
        on_tx!(self, c => sqlx::query(
            "INSERT INTO proxy_hosts (id, org_id, agent_id, spec, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $5) \
             ON CONFLICT (id) DO UPDATE SET spec = excluded.spec, updated_at = excluded.updated_at",
        )
        .bind(id)
        .bind(&org)
        .bind(agent_id)
        .bind(spec)
        .bind(now)
        .execute(&mut **c).await.map(|r| r.rows_affected()))?;
        on_tx!(self, c => sqlx::query("DELETE FROM proxy_domains WHERE proxy_id = $1")
            .bind(id)
            .execute(&mut **c).await.map(|r| r.rows_affected()))?;
        for domain in domains {
            let taken = on_tx!(self, c => sqlx::query_scalar::<_, String>(
                "SELECT proxy_id FROM proxy_domains WHERE agent_id = $1 AND domain = $2",
            )
            .bind(agent_id)
            .bind(domain)
            .fetch_optional(&mut **c).await)?;
            if taken.is_some() {
                return Ok(Err(domain.clone()));
            }
            on_tx!(self, c => sqlx::query(
                "INSERT INTO proxy_domains (agent_id, domain, org_id, proxy_id) VALUES ($1, $2, $3, $4)",
            )
            .bind(agent_id)
            .bind(domain)
            .bind(&org)
            .bind(id)
            .execute(&mut **c).await.map(|r| r.rows_affected()))?;
        }
        Ok(Ok(()))
    }

    pub async fn delete_proxy_host(&mut self, agent_id: &str, id: &str) -> Result<bool> {
        let org = self.org_id.clone();
        on_tx!(self, c => sqlx::query("DELETE FROM proxy_domains WHERE proxy_id = $1")
            .bind(id)
            .execute(&mut **c).await.map(|r| r.rows_affected()))?;
        let n = on_tx!(self, c => sqlx::query(
            "DELETE FROM proxy_hosts WHERE org_id = $1 AND agent_id = $2 AND id = $3",
        )
        .bind(&org)
        .bind(agent_id)
        .bind(id)
        .execute(&mut **c).await.map(|r| r.rows_affected()))?;
        Ok(n > 0)
    }

    /// The next revision number of a node (1 for the first).
    pub async fn next_proxy_revision(&mut self, agent_id: &str) -> Result<i64> {
        let n = on_tx!(self, c => sqlx::query_scalar::<_, Option<i64>>(
            "SELECT MAX(number) FROM proxy_revisions WHERE agent_id = $1",
        )
        .bind(agent_id)
        .fetch_one(&mut **c).await)?;
        Ok(n.unwrap_or(0) + 1)
    }

    pub async fn insert_proxy_revision(&mut self, r: &NewProxyRevision<'_>) -> Result<()> {
        let org = self.org_id.clone();
        on_tx!(self, c => sqlx::query(
            "INSERT INTO proxy_revisions (id, org_id, agent_id, number, hosts, command_id, reason, \
             created_by, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        )
        .bind(r.id)
        .bind(&org)
        .bind(r.agent_id)
        .bind(r.number)
        .bind(r.hosts)
        .bind(r.command_id)
        .bind(r.reason)
        .bind(r.created_by)
        .bind(now_ms())
        .execute(&mut **c).await.map(|r| r.rows_affected()))?;
        Ok(())
    }

    /// Revisions of a node, newest first.
    pub async fn list_proxy_revisions(
        &mut self,
        agent_id: &str,
        limit: i64,
    ) -> Result<Vec<ProxyRevisionRow>> {
        let org = self.org_id.clone();
        let q = sql(&[
            REVISION_COLUMNS,
            " AND r.agent_id = $2 ORDER BY r.number DESC LIMIT $3",
        ]);
        Ok(on_tx!(self, c => sqlx::query_as::<_, ProxyRevisionRow>(q)
            .bind(&org)
            .bind(agent_id)
            .bind(limit)
            .fetch_all(&mut **c)
            .await)?)
    }

    pub async fn proxy_revision(
        &mut self,
        agent_id: &str,
        number: i64,
    ) -> Result<Option<ProxyRevisionRow>> {
        let org = self.org_id.clone();
        let q = sql(&[REVISION_COLUMNS, " AND r.agent_id = $2 AND r.number = $3"]);
        Ok(on_tx!(self, c => sqlx::query_as::<_, ProxyRevisionRow>(q)
            .bind(&org)
            .bind(agent_id)
            .bind(number)
            .fetch_optional(&mut **c)
            .await)?)
    }
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct ProxyStatusRow {
    pub revision: i64,
    /// JSON ProxyNodeStatus.
    pub status: String,
    pub checked_at: i64,
}

impl Tx {
    pub async fn set_proxy_status(
        &mut self,
        agent_id: &str,
        revision: i64,
        status: &str,
    ) -> Result<()> {
        let org = self.org_id.clone();
        on_tx!(self, c => sqlx::query(
            "INSERT INTO proxy_status (agent_id, org_id, revision, status, checked_at) \
             VALUES ($1, $2, $3, $4, $5) ON CONFLICT (agent_id) DO UPDATE SET revision = excluded.revision, \
             status = excluded.status, checked_at = excluded.checked_at",
        )
        .bind(agent_id)
        .bind(&org)
        .bind(revision)
        .bind(status)
        .bind(now_ms())
        .execute(&mut **c).await.map(|r| r.rows_affected()))?;
        Ok(())
    }

    /// Records the revision a node said (at hello) it serves, keeping its last report.
    pub async fn note_proxy_serving_revision(
        &mut self,
        agent_id: &str,
        revision: i64,
    ) -> Result<()> {
        let org = self.org_id.clone();
        on_tx!(self, c => sqlx::query(
            "INSERT INTO proxy_status (agent_id, org_id, revision, status, checked_at) \
             VALUES ($1, $2, $3, '{}', $4) ON CONFLICT (agent_id) DO UPDATE SET revision = excluded.revision",
        )
        .bind(agent_id)
        .bind(&org)
        .bind(revision)
        .bind(now_ms())
        .execute(&mut **c).await.map(|r| r.rows_affected()))?;
        Ok(())
    }

    pub async fn proxy_status(&mut self, agent_id: &str) -> Result<Option<ProxyStatusRow>> {
        let org = self.org_id.clone();
        Ok(on_tx!(self, c => sqlx::query_as::<_, ProxyStatusRow>(
            "SELECT revision, status, checked_at FROM proxy_status WHERE org_id = $1 AND agent_id = $2",
        )
        .bind(&org)
        .bind(agent_id)
        .fetch_optional(&mut **c).await)?)
    }

    /// Every node's last proxy status in this organisation (for the certificate-expiry rule).
    pub async fn list_proxy_status(&mut self) -> Result<Vec<(String, ProxyStatusRow)>> {
        let org = self.org_id.clone();
        let rows = on_tx!(self, c => sqlx::query_as::<_, (String, i64, String, i64)>(
            "SELECT agent_id, revision, status, checked_at FROM proxy_status WHERE org_id = $1 ORDER BY agent_id",
        )
        .bind(&org)
        .fetch_all(&mut **c).await)?;
        Ok(rows
            .into_iter()
            .map(|(a, revision, status, checked_at)| {
                (
                    a,
                    ProxyStatusRow {
                        revision,
                        status,
                        checked_at,
                    },
                )
            })
            .collect())
    }
}
