//! Commands sent to agents and the Docker events agents report.
//!
//! A command is stored before it is sent; its idempotency key is unique per agent, so asking
//! twice with the same key finds the first command instead of making a second one. Commands
//! still `pending` or `delivered` when an agent (re)connects are sent again until they expire;
//! the agent runs each key once.

use crate::{Result, StoreError, Tx, now_ms};

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct CommandRow {
    pub id: String,
    pub agent_id: String,
    pub idempotency_key: String,
    pub kind: String,
    pub target: String,
    pub body: Vec<u8>,
    pub state: String,
    pub deliveries: i64,
    pub error: Option<String>,
    pub result: Option<String>,
    pub requested_by: String,
    pub created_at: i64,
    pub expires_at: i64,
    pub finished_at: Option<i64>,
}

pub struct NewCommand<'a> {
    pub id: &'a str,
    pub agent_id: &'a str,
    pub idempotency_key: &'a str,
    pub kind: &'a str,
    pub target: &'a str,
    pub body: &'a [u8],
    pub requested_by: &'a str,
    pub expires_at: i64,
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct DockerEventRow {
    pub id: i64,
    pub agent_id: String,
    pub time_ms: i64,
    pub container_id: String,
    pub container_name: String,
    pub action: String,
    pub exit_code: Option<i64>,
    /// JSON object text.
    pub attributes: String,
}

pub struct NewDockerEvent<'a> {
    pub agent_id: &'a str,
    pub time_ms: i64,
    pub container_id: &'a str,
    pub container_name: &'a str,
    pub action: &'a str,
    pub exit_code: Option<i64>,
    pub attributes: &'a str,
}

macro_rules! command_query {
    ($tail:literal) => {
        concat!(
            "SELECT id, agent_id, idempotency_key, kind, target, body, state, deliveries, error, result, \
             requested_by, created_at, expires_at, finished_at FROM agent_commands WHERE org_id = $1",
            $tail
        )
    };
}

/// Docker events kept per agent; older ones are pruned as new ones arrive.
pub const DOCKER_EVENTS_KEPT_PER_AGENT: i64 = 10_000;

impl Tx {
    /// Stores a new command, or returns the existing one with the same idempotency key
    /// (`Ok(Err(existing))`).
    pub async fn insert_command(
        &mut self,
        c: &NewCommand<'_>,
    ) -> Result<std::result::Result<(), CommandRow>> {
        if let Some(existing) = self.command_by_key(c.agent_id, c.idempotency_key).await? {
            return Ok(Err(existing));
        }
        let org = self.org_id.clone();
        on_tx!(self, conn => sqlx::query(
            "INSERT INTO agent_commands (id, org_id, agent_id, idempotency_key, kind, target, body, state, \
             requested_by, created_at, expires_at) VALUES ($1, $2, $3, $4, $5, $6, $7, 'pending', $8, $9, $10)",
        )
        .bind(c.id)
        .bind(&org)
        .bind(c.agent_id)
        .bind(c.idempotency_key)
        .bind(c.kind)
        .bind(c.target)
        .bind(c.body)
        .bind(c.requested_by)
        .bind(now_ms())
        .bind(c.expires_at)
        .execute(&mut **conn).await.map(|r| r.rows_affected()))
        .map_err(|e| {
            let e = StoreError::from(e);
            if e.is_unique_violation() {
                StoreError::Conflict("a command with this idempotency key")
            } else {
                e
            }
        })?;
        Ok(Ok(()))
    }

    pub async fn command(&mut self, id: &str) -> Result<Option<CommandRow>> {
        let org = self.org_id.clone();
        Ok(
            on_tx!(self, c => sqlx::query_as::<_, CommandRow>(command_query!(" AND id = $2"))
            .bind(&org)
            .bind(id)
            .fetch_optional(&mut **c)
            .await)?,
        )
    }

    pub async fn command_by_key(
        &mut self,
        agent_id: &str,
        key: &str,
    ) -> Result<Option<CommandRow>> {
        let org = self.org_id.clone();
        Ok(
            on_tx!(self, c => sqlx::query_as::<_, CommandRow>(command_query!(
            " AND agent_id = $2 AND idempotency_key = $3"
        ))
        .bind(&org)
        .bind(agent_id)
        .bind(key)
        .fetch_optional(&mut **c)
        .await)?,
        )
    }

    /// The newest commands of an agent, newest first.
    pub async fn list_commands(&mut self, agent_id: &str, limit: i64) -> Result<Vec<CommandRow>> {
        let org = self.org_id.clone();
        Ok(
            on_tx!(self, c => sqlx::query_as::<_, CommandRow>(command_query!(
            " AND agent_id = $2 ORDER BY created_at DESC, id DESC LIMIT $3"
        ))
        .bind(&org)
        .bind(agent_id)
        .bind(limit)
        .fetch_all(&mut **c)
        .await)?,
        )
    }

    /// Commands to (re-)send to an agent that just connected; expired ones are marked so first.
    pub async fn open_commands(&mut self, agent_id: &str) -> Result<Vec<CommandRow>> {
        let org = self.org_id.clone();
        let now = now_ms();
        on_tx!(self, c => sqlx::query(
            "UPDATE agent_commands SET state = 'expired', error = 'the agent did not answer before the command expired', \
             finished_at = $3 WHERE org_id = $1 AND agent_id = $2 AND state IN ('pending', 'delivered') AND expires_at <= $3",
        )
        .bind(&org)
        .bind(agent_id)
        .bind(now)
        .execute(&mut **c).await.map(|r| r.rows_affected()))?;
        Ok(
            on_tx!(self, c => sqlx::query_as::<_, CommandRow>(command_query!(
            " AND agent_id = $2 AND state IN ('pending', 'delivered') ORDER BY created_at, id"
        ))
        .bind(&org)
        .bind(agent_id)
        .fetch_all(&mut **c)
        .await)?,
        )
    }

    /// Counts one more delivery.
    pub async fn mark_command_delivered(&mut self, id: &str) -> Result<()> {
        let org = self.org_id.clone();
        on_tx!(self, c => sqlx::query(
            "UPDATE agent_commands SET deliveries = deliveries + 1, \
             state = CASE WHEN state = 'pending' THEN 'delivered' ELSE state END WHERE org_id = $1 AND id = $2",
        )
        .bind(&org)
        .bind(id)
        .execute(&mut **c).await.map(|r| r.rows_affected()))?;
        Ok(())
    }

    /// Records the outcome once; a second result for a finished command changes nothing.
    pub async fn finish_command(
        &mut self,
        id: &str,
        ok: bool,
        error: Option<&str>,
        result: Option<&str>,
    ) -> Result<bool> {
        let org = self.org_id.clone();
        let n = on_tx!(self, c => sqlx::query(
            "UPDATE agent_commands SET state = $3, error = $4, result = $5, finished_at = $6 \
             WHERE org_id = $1 AND id = $2 AND state IN ('pending', 'delivered')",
        )
        .bind(&org)
        .bind(id)
        .bind(if ok { "succeeded" } else { "failed" })
        .bind(error)
        .bind(result)
        .bind(now_ms())
        .execute(&mut **c).await.map(|r| r.rows_affected()))?;
        Ok(n == 1)
    }

    pub async fn insert_docker_event(&mut self, e: &NewDockerEvent<'_>) -> Result<()> {
        let org = self.org_id.clone();
        on_tx!(self, c => sqlx::query(
            "INSERT INTO docker_events (org_id, agent_id, time_ms, container_id, container_name, action, \
             exit_code, attributes) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(&org)
        .bind(e.agent_id)
        .bind(e.time_ms)
        .bind(e.container_id)
        .bind(e.container_name)
        .bind(e.action)
        .bind(e.exit_code)
        .bind(e.attributes)
        .execute(&mut **c).await.map(|r| r.rows_affected()))?;
        on_tx!(self, c => sqlx::query(
            "DELETE FROM docker_events WHERE org_id = $1 AND agent_id = $2 AND id <= \
             (SELECT MAX(id) FROM docker_events WHERE org_id = $1 AND agent_id = $2) - $3",
        )
        .bind(&org)
        .bind(e.agent_id)
        .bind(DOCKER_EVENTS_KEPT_PER_AGENT)
        .execute(&mut **c).await.map(|r| r.rows_affected()))?;
        Ok(())
    }

    /// Events of an agent, newest first, older than `before` (an event id) when given,
    /// optionally of one container (id or name).
    pub async fn list_docker_events(
        &mut self,
        agent_id: &str,
        before: Option<i64>,
        container: Option<&str>,
        limit: i64,
    ) -> Result<Vec<DockerEventRow>> {
        let org = self.org_id.clone();
        Ok(on_tx!(self, c => sqlx::query_as::<_, DockerEventRow>(
            "SELECT id, agent_id, time_ms, container_id, container_name, action, exit_code, attributes \
             FROM docker_events WHERE org_id = $1 AND agent_id = $2 AND ($3 IS NULL OR id < $3) \
             AND ($4 IS NULL OR container_id = $4 OR container_name = $4) ORDER BY id DESC LIMIT $5",
        )
        .bind(&org)
        .bind(agent_id)
        .bind(before)
        .bind(container)
        .bind(limit)
        .fetch_all(&mut **c)
        .await)?)
    }
}
