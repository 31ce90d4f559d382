//! Policies (issue 18) and the violations they found: every decision of a policy that was not
//! "allow", committed with the audit event of the action it was about.

use crate::{Result, Tx, now_ms};

#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct PolicyRow {
    pub id: String,
    pub name: String,
    pub policy_type: String,
    /// JSON object text.
    pub conditions: String,
    /// `block`, `warn` or `audit`.
    pub action: String,
    pub enabled: bool,
    /// JSON object text: the labels a node must carry for the policy to apply to it.
    pub node_labels: String,
    pub created_by: String,
    pub created_at: i64,
    pub updated_at: i64,
}

/// A policy to store (create or replace).
pub struct NewPolicy<'a> {
    pub id: &'a str,
    pub name: &'a str,
    pub policy_type: &'a str,
    pub conditions: &'a str,
    pub action: &'a str,
    pub enabled: bool,
    pub node_labels: &'a str,
    pub created_by: &'a str,
}

#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct ViolationRow {
    pub id: String,
    pub policy_id: String,
    pub policy_name: String,
    pub action: String,
    pub resource: String,
    pub agent_id: Option<String>,
    pub decision: String,
    /// JSON array text.
    pub reasons: String,
    pub actor: String,
    /// Why the policy's engine could not decide (the decision is then the fail-closed one).
    pub engine_error: Option<String>,
    pub audit_event_id: Option<String>,
    pub created_at: i64,
}

/// A violation to record.
#[derive(Debug, Clone, PartialEq)]
pub struct NewViolation {
    pub policy_id: String,
    pub policy_name: String,
    pub action: String,
    pub resource: String,
    pub agent_id: Option<String>,
    pub decision: String,
    pub reasons: Vec<String>,
    pub actor: String,
    pub engine_error: Option<String>,
}

/// Which violations to list, newest first.
#[derive(Debug, Clone, Default)]
pub struct ViolationFilter {
    pub policy_id: Option<String>,
    pub decision: Option<String>,
    pub action: Option<String>,
    pub agent_id: Option<String>,
    /// Inclusive lower bound, Unix milliseconds.
    pub since: Option<i64>,
    /// Exclusive upper bound, Unix milliseconds.
    pub until: Option<i64>,
    /// Violations strictly older than this one (`created_at`, `id`): the page cursor.
    pub before: Option<(i64, String)>,
    pub limit: i64,
}

const POLICY_COLUMNS: &str = "SELECT id, name, policy_type, conditions, action, enabled, node_labels, \
     created_by, created_at, updated_at FROM policies WHERE org_id = $1";

fn sql(parts: &[&str]) -> sqlx::AssertSqlSafe<String> {
    sqlx::AssertSqlSafe(parts.concat())
}

impl Tx {
    /// Stores a new policy; `false` when the organisation has one of that name.
    pub async fn insert_policy(&mut self, p: &NewPolicy<'_>) -> Result<bool> {
        let org = self.org_id.clone();
        let now = now_ms();
        let n = on_tx!(self, c => sqlx::query(
            "INSERT INTO policies (id, org_id, name, policy_type, conditions, action, enabled, node_labels, \
             created_by, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $10) \
             ON CONFLICT (org_id, name) DO NOTHING",
        )
        .bind(p.id)
        .bind(&org)
        .bind(p.name)
        .bind(p.policy_type)
        .bind(p.conditions)
        .bind(p.action)
        .bind(p.enabled)
        .bind(p.node_labels)
        .bind(p.created_by)
        .bind(now)
        .execute(&mut **c).await.map(|r| r.rows_affected()))?;
        Ok(n == 1)
    }

    /// Replaces a policy's fields (its id, author and creation time stay); `false` when there is
    /// no such policy.
    pub async fn update_policy(&mut self, p: &NewPolicy<'_>) -> Result<bool> {
        let org = self.org_id.clone();
        let n = on_tx!(self, c => sqlx::query(
            "UPDATE policies SET name = $3, policy_type = $4, conditions = $5, action = $6, enabled = $7, \
             node_labels = $8, updated_at = $9 WHERE org_id = $1 AND id = $2",
        )
        .bind(&org)
        .bind(p.id)
        .bind(p.name)
        .bind(p.policy_type)
        .bind(p.conditions)
        .bind(p.action)
        .bind(p.enabled)
        .bind(p.node_labels)
        .bind(now_ms())
        .execute(&mut **c).await.map(|r| r.rows_affected()))?;
        Ok(n == 1)
    }

    pub async fn delete_policy(&mut self, id: &str) -> Result<bool> {
        let org = self.org_id.clone();
        let n = on_tx!(self, c => sqlx::query("DELETE FROM policies WHERE org_id = $1 AND id = $2")
            .bind(&org)
            .bind(id)
            .execute(&mut **c).await.map(|r| r.rows_affected()))?;
        Ok(n == 1)
    }

    pub async fn policy(&mut self, id: &str) -> Result<Option<PolicyRow>> {
        let org = self.org_id.clone();
        let q = sql(&[POLICY_COLUMNS, " AND id = $2"]);
        Ok(on_tx!(self, c => sqlx::query_as::<_, PolicyRow>(q)
            .bind(&org)
            .bind(id)
            .fetch_optional(&mut **c)
            .await)?)
    }

    /// The organisation's policies by name; only the enabled ones with `enabled_only`.
    pub async fn list_policies(&mut self, enabled_only: bool) -> Result<Vec<PolicyRow>> {
        let org = self.org_id.clone();
        let q = sql(&[
            POLICY_COLUMNS,
            " AND ($2 = FALSE OR enabled = TRUE) ORDER BY name, id",
        ]);
        Ok(on_tx!(self, c => sqlx::query_as::<_, PolicyRow>(q)
            .bind(&org)
            .bind(enabled_only)
            .fetch_all(&mut **c)
            .await)?)
    }

    /// Records violations found in one decision, with the audit event they belong to.
    pub async fn insert_violations(
        &mut self,
        violations: &[NewViolation],
        audit_event_id: Option<&str>,
    ) -> Result<()> {
        let org = self.org_id.clone();
        let now = now_ms();
        for v in violations {
            let reasons = serde_json::to_string(&v.reasons).unwrap_or_else(|_| "[]".into());
            on_tx!(self, c => sqlx::query(
                "INSERT INTO policy_violations (id, org_id, policy_id, policy_name, action, resource, agent_id, \
                 decision, reasons, actor, engine_error, audit_event_id, created_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)",
            )
            .bind(uuid::Uuid::new_v4().to_string())
            .bind(&org)
            .bind(&v.policy_id)
            .bind(&v.policy_name)
            .bind(&v.action)
            .bind(&v.resource)
            .bind(&v.agent_id)
            .bind(&v.decision)
            .bind(&reasons)
            .bind(&v.actor)
            .bind(&v.engine_error)
            .bind(audit_event_id)
            .bind(now)
            .execute(&mut **c).await.map(|r| r.rows_affected()))?;
        }
        Ok(())
    }

    /// Whether a violation of `policy_id` by `resource` in `action` was found (not an engine
    /// failure) at `since` or later.
    pub async fn violation_seen_since(
        &mut self,
        policy_id: &str,
        resource: &str,
        action: &str,
        since: i64,
    ) -> Result<bool> {
        let org = self.org_id.clone();
        let n: i64 = on_tx!(self, c => sqlx::query_scalar(
            "SELECT COUNT(*) FROM policy_violations WHERE org_id = $1 AND policy_id = $2 \
             AND resource = $3 AND action = $4 AND created_at >= $5 AND engine_error IS NULL",
        )
        .bind(&org)
        .bind(policy_id)
        .bind(resource)
        .bind(action)
        .bind(since)
        .fetch_one(&mut **c)
        .await)?;
        Ok(n > 0)
    }

    /// Violations recorded with an engine error at `since` or later: their number and the
    /// latest error (none when there are none).
    pub async fn engine_failures_since(&mut self, since: i64) -> Result<Vec<(i64, String)>> {
        let org = self.org_id.clone();
        let count: i64 = on_tx!(self, c => sqlx::query_scalar(
            "SELECT COUNT(*) FROM policy_violations WHERE org_id = $1 AND engine_error IS NOT NULL \
             AND created_at >= $2",
        )
        .bind(&org)
        .bind(since)
        .fetch_one(&mut **c)
        .await)?;
        if count == 0 {
            return Ok(Vec::new());
        }
        let last: Option<String> = on_tx!(self, c => sqlx::query_scalar(
            "SELECT engine_error FROM policy_violations WHERE org_id = $1 AND engine_error IS NOT NULL \
             AND created_at >= $2 ORDER BY created_at DESC LIMIT 1",
        )
        .bind(&org)
        .bind(since)
        .fetch_optional(&mut **c)
        .await)?
        .flatten();
        Ok(vec![(count, last.unwrap_or_default())])
    }

    /// A page of violations, newest first, and the cursor of the next (older) page.
    pub async fn list_violations(
        &mut self,
        filter: &ViolationFilter,
    ) -> Result<(Vec<ViolationRow>, Option<(i64, String)>)> {
        let org = self.org_id.clone();
        let limit = filter.limit.clamp(1, 500);
        let (before_at, before_id) = match &filter.before {
            Some((at, id)) => (Some(*at), Some(id.clone())),
            None => (None, None),
        };
        let mut rows = on_tx!(self, c => sqlx::query_as::<_, ViolationRow>(
            "SELECT id, policy_id, policy_name, action, resource, agent_id, decision, reasons, actor, \
             engine_error, audit_event_id, created_at FROM policy_violations WHERE org_id = $1 \
             AND ($2 IS NULL OR policy_id = $2) AND ($3 IS NULL OR decision = $3) \
             AND ($4 IS NULL OR action = $4) AND ($5 IS NULL OR agent_id = $5) \
             AND ($6 IS NULL OR created_at >= $6) AND ($7 IS NULL OR created_at < $7) \
             AND ($8 IS NULL OR created_at < $8 OR (created_at = $8 AND id < $9)) \
             ORDER BY created_at DESC, id DESC LIMIT $10",
        )
        .bind(&org)
        .bind(&filter.policy_id)
        .bind(&filter.decision)
        .bind(&filter.action)
        .bind(&filter.agent_id)
        .bind(filter.since)
        .bind(filter.until)
        .bind(before_at)
        .bind(before_id)
        .bind(limit + 1)
        .fetch_all(&mut **c)
        .await)?;
        let next = if rows.len() as i64 > limit {
            rows.truncate(limit as usize);
            rows.last().map(|r| (r.created_at, r.id.clone()))
        } else {
            None
        };
        Ok((rows, next))
    }
}
