//! Alerting: channels (configured instances of alert-channel plugins), rules, the history of
//! events (firing → resolved) and per-channel deliveries with their retries.

use crate::{Result, Store, Tx, now_ms};

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct AlertChannelRow {
    pub id: String,
    pub plugin_id: String,
    pub name: String,
    /// Non-secret settings, JSON object text.
    pub settings: String,
    /// Sealed JSON object of the secret settings.
    pub secrets: Option<Vec<u8>>,
    pub enabled: bool,
    pub created_at: i64,
    pub updated_at: i64,
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct AlertRuleRow {
    pub id: String,
    pub name: String,
    pub kind: String,
    /// JSON object text.
    pub params: String,
    pub agent_id: Option<String>,
    pub severity: String,
    pub cooldown_seconds: i64,
    /// JSON array text of channel ids.
    pub channel_ids: String,
    pub enabled: bool,
    pub created_at: i64,
    pub updated_at: i64,
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct AlertEventRow {
    pub id: String,
    pub rule_id: String,
    pub target: String,
    pub state: String,
    pub severity: String,
    pub summary: String,
    pub occurrences: i64,
    pub fired_at: i64,
    pub resolved_at: Option<i64>,
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct AlertDeliveryRow {
    pub id: String,
    pub org_id: crate::OrgId,
    pub event_id: String,
    pub channel_id: String,
    pub transition: String,
    pub state: String,
    pub attempts: i64,
    pub next_attempt_at: i64,
    pub last_error: Option<String>,
    pub detail: Option<String>,
    pub created_at: i64,
    pub updated_at: i64,
}

pub struct NewAlertRule<'a> {
    pub id: &'a str,
    pub name: &'a str,
    pub kind: &'a str,
    pub params: &'a str,
    pub agent_id: Option<&'a str>,
    pub severity: &'a str,
    pub cooldown_seconds: i64,
    pub channel_ids: &'a str,
}

const CHANNEL_COLUMNS: &str = "SELECT id, plugin_id, name, settings, secrets, enabled, created_at, updated_at \
     FROM alert_channels WHERE org_id = $1";
const RULE_COLUMNS: &str = "SELECT id, name, kind, params, agent_id, severity, cooldown_seconds, channel_ids, \
     enabled, created_at, updated_at FROM alert_rules WHERE org_id = $1";
const EVENT_COLUMNS: &str = "SELECT id, rule_id, target, state, severity, summary, occurrences, fired_at, \
     resolved_at FROM alert_events WHERE org_id = $1";
const DELIVERY_COLUMNS: &str = "SELECT id, org_id, event_id, channel_id, transition, state, attempts, \
     next_attempt_at, last_error, detail, created_at, updated_at FROM alert_deliveries";

fn sql(parts: &[&str]) -> sqlx::AssertSqlSafe<String> {
    sqlx::AssertSqlSafe(parts.concat())
}

impl Store {
    /// Deliveries that are due (pending and past their next attempt), the `limit` soonest across
    /// organisations. The delivery worker's system path: it reads each organisation in a tenant
    /// transaction of its own, in turn (ARCHITECTURE.md, "Tenancy").
    pub async fn due_alert_deliveries(&self, limit: i64) -> Result<Vec<AlertDeliveryRow>> {
        let now = now_ms();
        let mut due = Vec::new();
        for org in self.organization_ids().await? {
            let mut tx = self.read(&org).await?;
            let q = sql(&[
                DELIVERY_COLUMNS,
                " WHERE org_id = $1 AND state = 'pending' AND next_attempt_at <= $2 ORDER BY next_attempt_at LIMIT $3",
            ]);
            let rows = on_tx!(tx, c => sqlx::query_as::<_, AlertDeliveryRow>(q)
                .bind(org.as_str())
                .bind(now)
                .bind(limit)
                .fetch_all(&mut **c)
                .await)?;
            tx.commit().await?;
            due.extend(rows);
        }
        due.sort_by_key(|d| d.next_attempt_at);
        due.truncate(usize::try_from(limit).unwrap_or(0));
        Ok(due)
    }

    /// Ids of every organisation.
    pub async fn organization_ids(&self) -> Result<Vec<crate::OrgId>> {
        let mut lookup = self.lookup().await?;
        Ok(lookup
            .organizations()
            .await?
            .into_iter()
            .filter_map(|o| crate::OrgId::parse(&o.id))
            .collect())
    }
}

impl Tx {
    // ----- channels -----

    pub async fn insert_alert_channel(
        &mut self,
        id: &str,
        plugin_id: &str,
        name: &str,
        settings: &str,
        secrets: Option<&[u8]>,
    ) -> Result<()> {
        let org = self.org_id.clone();
        let now = now_ms();
        on_tx!(self, c => sqlx::query(
            "INSERT INTO alert_channels (id, org_id, plugin_id, name, settings, secrets, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $7)",
        )
        .bind(id)
        .bind(&org)
        .bind(plugin_id)
        .bind(name)
        .bind(settings)
        .bind(secrets)
        .bind(now)
        .execute(&mut **c).await.map(|r| r.rows_affected()))?;
        Ok(())
    }

    pub async fn update_alert_channel(
        &mut self,
        id: &str,
        name: &str,
        settings: &str,
        secrets: Option<&[u8]>,
        enabled: bool,
    ) -> Result<bool> {
        let org = self.org_id.clone();
        let n = on_tx!(self, c => sqlx::query(
            "UPDATE alert_channels SET name = $3, settings = $4, secrets = $5, enabled = $6, updated_at = $7 \
             WHERE org_id = $1 AND id = $2",
        )
        .bind(&org)
        .bind(id)
        .bind(name)
        .bind(settings)
        .bind(secrets)
        .bind(enabled)
        .bind(now_ms())
        .execute(&mut **c).await.map(|r| r.rows_affected()))?;
        Ok(n == 1)
    }

    pub async fn list_alert_channels(&mut self) -> Result<Vec<AlertChannelRow>> {
        let org = self.org_id.clone();
        let q = sql(&[CHANNEL_COLUMNS, " ORDER BY name"]);
        Ok(on_tx!(self, c => sqlx::query_as::<_, AlertChannelRow>(q)
            .bind(&org)
            .fetch_all(&mut **c)
            .await)?)
    }

    pub async fn alert_channel(&mut self, id: &str) -> Result<Option<AlertChannelRow>> {
        let org = self.org_id.clone();
        let q = sql(&[CHANNEL_COLUMNS, " AND id = $2"]);
        Ok(on_tx!(self, c => sqlx::query_as::<_, AlertChannelRow>(q)
            .bind(&org)
            .bind(id)
            .fetch_optional(&mut **c)
            .await)?)
    }

    pub async fn delete_alert_channel(&mut self, id: &str) -> Result<bool> {
        let org = self.org_id.clone();
        let n = on_tx!(self, c => sqlx::query("DELETE FROM alert_channels WHERE org_id = $1 AND id = $2")
            .bind(&org)
            .bind(id)
            .execute(&mut **c).await.map(|r| r.rows_affected()))?;
        Ok(n == 1)
    }

    /// Takes a channel out of every rule that notifies it (when the channel is deleted).
    pub async fn remove_channel_from_rules(&mut self, channel_id: &str) -> Result<()> {
        for rule in self.list_alert_rules().await? {
            let ids: Vec<String> = serde_json::from_str(&rule.channel_ids).unwrap_or_default();
            if !ids.iter().any(|c| c == channel_id) {
                continue;
            }
            let kept: Vec<&String> = ids.iter().filter(|c| *c != channel_id).collect();
            let text = serde_json::to_string(&kept).unwrap_or_else(|_| "[]".into());
            let org = self.org_id.clone();
            on_tx!(self, c => sqlx::query(
                "UPDATE alert_rules SET channel_ids = $3, updated_at = $4 WHERE org_id = $1 AND id = $2")
                .bind(&org)
                .bind(&rule.id)
                .bind(&text)
                .bind(now_ms())
                .execute(&mut **c).await.map(|r| r.rows_affected()))?;
        }
        Ok(())
    }

    // ----- rules -----

    pub async fn insert_alert_rule(&mut self, r: &NewAlertRule<'_>) -> Result<()> {
        let org = self.org_id.clone();
        let now = now_ms();
        on_tx!(self, c => sqlx::query(
            "INSERT INTO alert_rules (id, org_id, name, kind, params, agent_id, severity, cooldown_seconds, \
             channel_ids, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $10)",
        )
        .bind(r.id)
        .bind(&org)
        .bind(r.name)
        .bind(r.kind)
        .bind(r.params)
        .bind(r.agent_id)
        .bind(r.severity)
        .bind(r.cooldown_seconds)
        .bind(r.channel_ids)
        .bind(now)
        .execute(&mut **c).await.map(|r| r.rows_affected()))?;
        Ok(())
    }

    pub async fn list_alert_rules(&mut self) -> Result<Vec<AlertRuleRow>> {
        let org = self.org_id.clone();
        let q = sql(&[RULE_COLUMNS, " ORDER BY name"]);
        Ok(on_tx!(self, c => sqlx::query_as::<_, AlertRuleRow>(q)
            .bind(&org)
            .fetch_all(&mut **c)
            .await)?)
    }

    pub async fn alert_rule(&mut self, id: &str) -> Result<Option<AlertRuleRow>> {
        let org = self.org_id.clone();
        let q = sql(&[RULE_COLUMNS, " AND id = $2"]);
        Ok(on_tx!(self, c => sqlx::query_as::<_, AlertRuleRow>(q)
            .bind(&org)
            .bind(id)
            .fetch_optional(&mut **c)
            .await)?)
    }

    /// Sets a rule on or off; turning it off closes its firing events (without notifications), so
    /// that turning it on again starts afresh.
    pub async fn set_alert_rule_enabled(&mut self, id: &str, enabled: bool) -> Result<bool> {
        if !enabled {
            let org = self.org_id.clone();
            on_tx!(self, c => sqlx::query(
                "UPDATE alert_events SET state = 'resolved', resolved_at = $3 WHERE org_id = $1 AND rule_id = $2 AND state = 'firing'")
                .bind(&org)
                .bind(id)
                .bind(now_ms())
                .execute(&mut **c).await.map(|r| r.rows_affected()))?;
        }
        let org = self.org_id.clone();
        let n = on_tx!(self, c => sqlx::query(
            "UPDATE alert_rules SET enabled = $3, updated_at = $4 WHERE org_id = $1 AND id = $2")
            .bind(&org)
            .bind(id)
            .bind(enabled)
            .bind(now_ms())
            .execute(&mut **c).await.map(|r| r.rows_affected()))?;
        Ok(n == 1)
    }

    pub async fn delete_alert_rule(&mut self, id: &str) -> Result<bool> {
        let org = self.org_id.clone();
        let n = on_tx!(self, c => sqlx::query("DELETE FROM alert_rules WHERE org_id = $1 AND id = $2")
            .bind(&org)
            .bind(id)
            .execute(&mut **c).await.map(|r| r.rows_affected()))?;
        Ok(n == 1)
    }

    // ----- events -----

    /// The newest event of a rule about a target, open or not.
    pub async fn latest_alert_event(
        &mut self,
        rule_id: &str,
        target: &str,
    ) -> Result<Option<AlertEventRow>> {
        let org = self.org_id.clone();
        let q = sql(&[
            EVENT_COLUMNS,
            " AND rule_id = $2 AND target = $3 ORDER BY fired_at DESC, id DESC LIMIT 1",
        ]);
        Ok(on_tx!(self, c => sqlx::query_as::<_, AlertEventRow>(q)
            .bind(&org)
            .bind(rule_id)
            .bind(target)
            .fetch_optional(&mut **c)
            .await)?)
    }

    pub async fn alert_event(&mut self, id: &str) -> Result<Option<AlertEventRow>> {
        let org = self.org_id.clone();
        let q = sql(&[EVENT_COLUMNS, " AND id = $2"]);
        Ok(on_tx!(self, c => sqlx::query_as::<_, AlertEventRow>(q)
            .bind(&org)
            .bind(id)
            .fetch_optional(&mut **c)
            .await)?)
    }

    /// Open (firing) events of a rule.
    pub async fn firing_alert_events(&mut self, rule_id: &str) -> Result<Vec<AlertEventRow>> {
        let org = self.org_id.clone();
        let q = sql(&[EVENT_COLUMNS, " AND rule_id = $2 AND state = 'firing'"]);
        Ok(on_tx!(self, c => sqlx::query_as::<_, AlertEventRow>(q)
            .bind(&org)
            .bind(rule_id)
            .fetch_all(&mut **c)
            .await)?)
    }

    pub async fn insert_alert_event(
        &mut self,
        id: &str,
        rule_id: &str,
        target: &str,
        severity: &str,
        summary: &str,
        fired_at: i64,
    ) -> Result<bool> {
        let org = self.org_id.clone();
        // Another replica may have opened the same event a moment ago: then nothing is inserted.
        let n = on_tx!(self, c => sqlx::query(
            "INSERT INTO alert_events (id, org_id, rule_id, target, state, severity, summary, fired_at) \
             VALUES ($1, $2, $3, $4, 'firing', $5, $6, $7) \
             ON CONFLICT (org_id, rule_id, target) WHERE state = 'firing' DO NOTHING",
        )
        .bind(id)
        .bind(&org)
        .bind(rule_id)
        .bind(target)
        .bind(severity)
        .bind(summary)
        .bind(fired_at)
        .execute(&mut **c).await.map(|r| r.rows_affected()))?;
        Ok(n == 1)
    }

    /// Folds one more occurrence into an event (a repeat within the cooldown).
    pub async fn count_alert_occurrence(&mut self, id: &str) -> Result<()> {
        let org = self.org_id.clone();
        on_tx!(self, c => sqlx::query(
            "UPDATE alert_events SET occurrences = occurrences + 1 WHERE org_id = $1 AND id = $2")
            .bind(&org)
            .bind(id)
            .execute(&mut **c).await.map(|r| r.rows_affected()))?;
        Ok(())
    }

    /// Marks a firing event resolved; false when it was not firing.
    pub async fn resolve_alert_event(&mut self, id: &str, at: i64) -> Result<bool> {
        let org = self.org_id.clone();
        let n = on_tx!(self, c => sqlx::query(
            "UPDATE alert_events SET state = 'resolved', resolved_at = $3 WHERE org_id = $1 AND id = $2 AND state = 'firing'")
            .bind(&org)
            .bind(id)
            .bind(at)
            .execute(&mut **c).await.map(|r| r.rows_affected()))?;
        Ok(n == 1)
    }

    /// History, newest first, fired before `before` (ms) when given.
    pub async fn list_alert_events(
        &mut self,
        before: Option<i64>,
        limit: i64,
    ) -> Result<Vec<AlertEventRow>> {
        let org = self.org_id.clone();
        let q = sql(&[
            EVENT_COLUMNS,
            " AND ($2 IS NULL OR fired_at < $2) ORDER BY fired_at DESC, id DESC LIMIT $3",
        ]);
        Ok(on_tx!(self, c => sqlx::query_as::<_, AlertEventRow>(q)
            .bind(&org)
            .bind(before)
            .bind(limit)
            .fetch_all(&mut **c)
            .await)?)
    }

    // ----- deliveries -----

    pub async fn insert_alert_delivery(
        &mut self,
        id: &str,
        event_id: &str,
        channel_id: &str,
        transition: &str,
    ) -> Result<()> {
        let org = self.org_id.clone();
        let now = now_ms();
        on_tx!(self, c => sqlx::query(
            "INSERT INTO alert_deliveries (id, org_id, event_id, channel_id, transition, state, next_attempt_at, \
             created_at, updated_at) VALUES ($1, $2, $3, $4, $5, 'pending', $6, $6, $6)",
        )
        .bind(id)
        .bind(&org)
        .bind(event_id)
        .bind(channel_id)
        .bind(transition)
        .bind(now)
        .execute(&mut **c).await.map(|r| r.rows_affected()))?;
        Ok(())
    }

    /// Takes a due delivery until `claimed_until` (so another worker or replica skips it
    /// meanwhile); false when someone else took it first.
    pub async fn claim_alert_delivery(
        &mut self,
        id: &str,
        seen_next_attempt_at: i64,
        claimed_until: i64,
    ) -> Result<bool> {
        let org = self.org_id.clone();
        let n = on_tx!(self, c => sqlx::query(
            "UPDATE alert_deliveries SET next_attempt_at = $4 WHERE org_id = $1 AND id = $2 \
             AND state = 'pending' AND next_attempt_at = $3")
            .bind(&org)
            .bind(id)
            .bind(seen_next_attempt_at)
            .bind(claimed_until)
            .execute(&mut **c).await.map(|r| r.rows_affected()))?;
        Ok(n == 1)
    }

    /// Records an attempt of the claim that ends at `claimed_until`: `state` is `delivered`,
    /// `failed` (gave up) or `pending` (retry at `next_attempt_at`). A claim that lapsed and was
    /// taken by another worker records nothing.
    pub async fn record_alert_attempt(
        &mut self,
        id: &str,
        claimed_until: i64,
        state: &str,
        next_attempt_at: i64,
        error: Option<&str>,
        detail: Option<&str>,
    ) -> Result<()> {
        let org = self.org_id.clone();
        on_tx!(self, c => sqlx::query(
            "UPDATE alert_deliveries SET state = $3, attempts = attempts + 1, next_attempt_at = $4, \
             last_error = $5, detail = $6, updated_at = $7 WHERE org_id = $1 AND id = $2 AND next_attempt_at = $8")
            .bind(&org)
            .bind(id)
            .bind(state)
            .bind(next_attempt_at)
            .bind(error)
            .bind(detail)
            .bind(now_ms())
            .bind(claimed_until)
            .execute(&mut **c).await.map(|r| r.rows_affected()))?;
        Ok(())
    }

    pub async fn alert_delivery(&mut self, id: &str) -> Result<Option<AlertDeliveryRow>> {
        let org = self.org_id.clone();
        let q = sql(&[DELIVERY_COLUMNS, " WHERE org_id = $1 AND id = $2"]);
        Ok(on_tx!(self, c => sqlx::query_as::<_, AlertDeliveryRow>(q)
            .bind(&org)
            .bind(id)
            .fetch_optional(&mut **c)
            .await)?)
    }

    /// Deliveries of the given events.
    pub async fn alert_deliveries_of(
        &mut self,
        event_ids: &[String],
    ) -> Result<Vec<AlertDeliveryRow>> {
        let mut all = Vec::new();
        let org = self.org_id.clone();
        for event_id in event_ids {
            let q = sql(&[
                DELIVERY_COLUMNS,
                " WHERE org_id = $1 AND event_id = $2 ORDER BY created_at, id",
            ]);
            let rows = on_tx!(self, c => sqlx::query_as::<_, AlertDeliveryRow>(q)
                .bind(&org)
                .bind(event_id)
                .fetch_all(&mut **c)
                .await)?;
            all.extend(rows);
        }
        Ok(all)
    }

    // ----- what the rules engine reads -----

    /// Where the rules engine stopped reading Docker events (`None` before its first run).
    pub async fn alert_cursor(&mut self) -> Result<Option<i64>> {
        let org = self.org_id.clone();
        Ok(on_tx!(self, c => sqlx::query_scalar::<_, i64>(
            "SELECT last_docker_event_id FROM alert_cursors WHERE org_id = $1")
            .bind(&org)
            .fetch_optional(&mut **c)
            .await)?)
    }

    /// Moves the cursor from `seen` (None: not set yet) to `to`; false when another worker moved
    /// it meanwhile.
    pub async fn advance_alert_cursor(&mut self, seen: Option<i64>, to: i64) -> Result<bool> {
        let org = self.org_id.clone();
        let n = match seen {
            None => on_tx!(self, c => sqlx::query(
                "INSERT INTO alert_cursors (org_id, last_docker_event_id) VALUES ($1, $2) ON CONFLICT (org_id) DO NOTHING")
                .bind(&org)
                .bind(to)
                .execute(&mut **c).await.map(|r| r.rows_affected()))?,
            Some(seen) => on_tx!(self, c => sqlx::query(
                "UPDATE alert_cursors SET last_docker_event_id = $3 WHERE org_id = $1 AND last_docker_event_id = $2")
                .bind(&org)
                .bind(seen)
                .bind(to)
                .execute(&mut **c).await.map(|r| r.rows_affected()))?,
        };
        Ok(n == 1)
    }

    /// The newest Docker event id of the organisation (0 when none).
    pub async fn last_docker_event_id(&mut self) -> Result<i64> {
        let org = self.org_id.clone();
        Ok(on_tx!(self, c => sqlx::query_scalar::<_, Option<i64>>(
            "SELECT MAX(id) FROM docker_events WHERE org_id = $1")
            .bind(&org)
            .fetch_one(&mut **c)
            .await)?
        .unwrap_or(0))
    }

    /// Docker events of every node of the organisation after `after` (an event id), oldest first.
    pub async fn docker_events_after(
        &mut self,
        after: i64,
        limit: i64,
    ) -> Result<Vec<crate::DockerEventRow>> {
        let org = self.org_id.clone();
        Ok(
            on_tx!(self, c => sqlx::query_as::<_, crate::DockerEventRow>(
            "SELECT id, agent_id, time_ms, container_id, container_name, action, exit_code, attributes \
             FROM docker_events WHERE org_id = $1 AND id > $2 ORDER BY id LIMIT $3",
        )
        .bind(&org)
        .bind(after)
        .bind(limit)
        .fetch_all(&mut **c)
        .await)?,
        )
    }

    /// How many `action` events a container had from `since_ms` to `until_ms` (inclusive).
    pub async fn count_container_events(
        &mut self,
        agent_id: &str,
        container_id: &str,
        action: &str,
        since_ms: i64,
        until_ms: i64,
    ) -> Result<i64> {
        let org = self.org_id.clone();
        Ok(on_tx!(self, c => sqlx::query_scalar::<_, i64>(
            "SELECT COUNT(*) FROM docker_events WHERE org_id = $1 AND agent_id = $2 AND container_id = $3 \
             AND action = $4 AND time_ms >= $5 AND time_ms <= $6")
            .bind(&org)
            .bind(agent_id)
            .bind(container_id)
            .bind(action)
            .bind(since_ms)
            .bind(until_ms)
            .fetch_one(&mut **c)
            .await)?)
    }
}
