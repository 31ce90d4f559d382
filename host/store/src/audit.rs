//! The hash-chained audit trail.
//!
//! Each organisation has one chain. Event `n` stores the hash of event `n-1` and its own hash over
//! a canonical encoding of every field (sequence number included); `audit_heads` holds the newest
//! link. Appends happen in the same transaction as the change they record, under the write lock
//! (SQLite `BEGIN IMMEDIATE`, a PostgreSQL advisory lock per organisation), so the chain never forks.

use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::{Result, Tx, now_ms};

/// The `prev_hash` of an organisation's first event.
pub const GENESIS_HASH: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// Who acts, as the audit trail and a node's command list name them; services take one.
#[derive(Debug, Clone)]
pub struct Actor {
    pub org_id: crate::OrgId,
    /// The user's id; `None` for the system, the command line or an anonymous caller.
    pub user_id: Option<String>,
    /// The user's e-mail address, or `cli`, `system`, `anonymous` …
    pub label: String,
    /// Where the request came from (`local` for the command line).
    pub ip: String,
    /// The role the caller acts with in the organisation, when a person's request carries one
    /// (an API token's may be narrower than its owner's membership); `None` otherwise.
    pub role: Option<String>,
}

impl Actor {
    /// An event by this actor, to append in the transaction of the change it records.
    pub fn event(
        &self,
        action: &str,
        target: impl Into<String>,
        outcome: &str,
        detail: serde_json::Value,
    ) -> NewAuditEvent {
        NewAuditEvent {
            actor_id: self.user_id.clone(),
            actor: self.label.clone(),
            action: action.to_owned(),
            target: target.into(),
            ip: self.ip.clone(),
            outcome: outcome.to_owned(),
            detail,
        }
    }
}

/// An event to append; the store assigns sequence number, id, time and hashes.
#[derive(Debug, Clone)]
pub struct NewAuditEvent {
    pub actor_id: Option<String>,
    /// Who acted, for people: an email, `anonymous`, `system` or `cli`.
    pub actor: String,
    pub action: String,
    pub target: String,
    pub ip: String,
    /// `success`, `failure` or `denied`.
    pub outcome: String,
    pub detail: serde_json::Value,
}

#[derive(Debug, Clone, Serialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct AuditEvent {
    pub seq: i64,
    pub id: String,
    /// Unix milliseconds.
    pub at: i64,
    pub actor_id: Option<String>,
    pub actor: String,
    pub action: String,
    pub target: String,
    pub ip: String,
    pub outcome: String,
    /// JSON text.
    pub detail: String,
    pub prev_hash: String,
    pub hash: String,
}

#[derive(Debug, Clone, Default)]
pub struct AuditFilter {
    pub actor: Option<String>,
    pub action: Option<String>,
    /// Inclusive lower bound, Unix milliseconds.
    pub since: Option<i64>,
    /// Exclusive upper bound, Unix milliseconds.
    pub until: Option<i64>,
    /// Return events with a sequence number below this one (the page cursor).
    pub before_seq: Option<i64>,
    pub limit: i64,
}

#[derive(Debug, Clone, Serialize)]
pub struct AuditPage {
    pub events: Vec<AuditEvent>,
    /// Pass as `before_seq` for the next (older) page; absent on the last page.
    pub next_cursor: Option<i64>,
}

/// The first event at which verification failed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct BadEvent {
    /// The sequence number where the chain breaks.
    pub seq: i64,
    /// The id of the event found there, if any.
    pub id: Option<String>,
    pub reason: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct ChainReport {
    pub ok: bool,
    pub checked: i64,
    pub first_bad_event: Option<BadEvent>,
}

const VERIFY_BATCH: i64 = 2_000;

/// The hash of one event: SHA-256 over a JSON array of all its fields and the previous hash.
pub fn event_hash(org_id: &str, event: &AuditEvent) -> String {
    let canonical = serde_json::json!([
        event.prev_hash,
        org_id,
        event.seq,
        event.id,
        event.at,
        event.actor_id,
        event.actor,
        event.action,
        event.target,
        event.ip,
        event.outcome,
        event.detail,
    ]);
    hex::encode(Sha256::digest(canonical.to_string().as_bytes()))
}

impl Tx {
    /// Appends an event to this organisation's chain. Call it on a write transaction.
    pub async fn append_audit(&mut self, new: NewAuditEvent) -> Result<AuditEvent> {
        let org = self.org_id.clone();
        if let crate::TxInner::Postgres(c) = &mut self.inner {
            sqlx::query("SELECT pg_advisory_xact_lock(hashtext('audit:' || $1))")
                .bind(&org)
                .execute(&mut **c)
                .await?;
        }
        let head = on_tx!(self, c => sqlx::query_as::<_, (i64, String)>(
            "SELECT seq, hash FROM audit_heads WHERE org_id = $1",
        )
        .bind(&org)
        .fetch_optional(&mut **c)
        .await)?;
        let (prev_seq, prev_hash) = head.unwrap_or((0, GENESIS_HASH.to_owned()));
        let mut event = AuditEvent {
            seq: prev_seq + 1,
            id: uuid::Uuid::new_v4().to_string(),
            at: now_ms(),
            actor_id: new.actor_id,
            actor: new.actor,
            action: new.action,
            target: new.target,
            ip: new.ip,
            outcome: new.outcome,
            detail: new.detail.to_string(),
            prev_hash,
            hash: String::new(),
        };
        event.hash = event_hash(&org, &event);
        let e = &event;
        on_tx!(self, c => sqlx::query(
            "INSERT INTO audit_events (org_id, seq, id, at, actor_id, actor, action, target, ip, outcome, \
             detail, prev_hash, hash) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)",
        )
        .bind(&org)
        .bind(e.seq)
        .bind(&e.id)
        .bind(e.at)
        .bind(&e.actor_id)
        .bind(&e.actor)
        .bind(&e.action)
        .bind(&e.target)
        .bind(&e.ip)
        .bind(&e.outcome)
        .bind(&e.detail)
        .bind(&e.prev_hash)
        .bind(&e.hash)
        .execute(&mut **c).await.map(|r| r.rows_affected()))?;
        on_tx!(self, c => sqlx::query(
            "INSERT INTO audit_heads (org_id, seq, hash) VALUES ($1, $2, $3) \
             ON CONFLICT (org_id) DO UPDATE SET seq = excluded.seq, hash = excluded.hash",
        )
        .bind(&org)
        .bind(e.seq)
        .bind(&e.hash)
        .execute(&mut **c).await.map(|r| r.rows_affected()))?;
        Ok(event)
    }

    /// Lists events, newest first.
    pub async fn list_audit(&mut self, filter: &AuditFilter) -> Result<AuditPage> {
        let org = self.org_id.clone();
        let limit = filter.limit.clamp(1, 500);
        let mut events = on_tx!(self, c => sqlx::query_as::<_, AuditEvent>(
            "SELECT seq, id, at, actor_id, actor, action, target, ip, outcome, detail, prev_hash, hash \
             FROM audit_events WHERE org_id = $1 \
             AND ($2 IS NULL OR actor = $2) AND ($3 IS NULL OR action = $3) \
             AND ($4 IS NULL OR at >= $4) AND ($5 IS NULL OR at < $5) AND ($6 IS NULL OR seq < $6) \
             ORDER BY seq DESC LIMIT $7",
        )
        .bind(&org)
        .bind(&filter.actor)
        .bind(&filter.action)
        .bind(filter.since)
        .bind(filter.until)
        .bind(filter.before_seq)
        .bind(limit + 1)
        .fetch_all(&mut **c)
        .await)?;
        let next_cursor = if events.len() as i64 > limit {
            events.truncate(limit as usize);
            events.last().map(|e| e.seq)
        } else {
            None
        };
        Ok(AuditPage {
            events,
            next_cursor,
        })
    }

    /// Walks this organisation's chain and reports the first event that does not fit.
    pub async fn verify_audit_chain(&mut self) -> Result<ChainReport> {
        let org = self.org_id.clone();
        let mut expected_seq = 1_i64;
        let mut prev_hash = GENESIS_HASH.to_owned();
        let mut checked = 0_i64;
        let bad = |seq: i64, id: Option<String>, reason: &str, checked: i64| ChainReport {
            ok: false,
            checked,
            first_bad_event: Some(BadEvent {
                seq,
                id,
                reason: reason.to_owned(),
            }),
        };
        loop {
            let batch = on_tx!(self, c => sqlx::query_as::<_, AuditEvent>(
                "SELECT seq, id, at, actor_id, actor, action, target, ip, outcome, detail, prev_hash, hash \
                 FROM audit_events WHERE org_id = $1 AND seq >= $2 ORDER BY seq LIMIT $3",
            )
            .bind(&org)
            .bind(expected_seq)
            .bind(VERIFY_BATCH)
            .fetch_all(&mut **c)
            .await)?;
            let batch_len = batch.len() as i64;
            for event in batch {
                if event.seq != expected_seq {
                    let reason = format!(
                        "event {expected_seq} is missing (deleted); the chain continues at {}",
                        event.seq
                    );
                    return Ok(bad(expected_seq, None, &reason, checked));
                }
                if event.prev_hash != prev_hash {
                    return Ok(bad(
                        event.seq,
                        Some(event.id),
                        "previous-hash link broken: an event before it was deleted, reordered or rewritten",
                        checked,
                    ));
                }
                if event_hash(&org, &event) != event.hash {
                    return Ok(bad(
                        event.seq,
                        Some(event.id),
                        "contents do not match the stored hash: the event was edited",
                        checked,
                    ));
                }
                prev_hash = event.hash;
                expected_seq += 1;
                checked += 1;
            }
            if batch_len < VERIFY_BATCH {
                break;
            }
        }
        let head = on_tx!(self, c => sqlx::query_as::<_, (i64, String)>(
            "SELECT seq, hash FROM audit_heads WHERE org_id = $1",
        )
        .bind(&org)
        .fetch_optional(&mut **c)
        .await)?;
        let (head_seq, head_hash) = head.unwrap_or((0, GENESIS_HASH.to_owned()));
        if head_seq != expected_seq - 1 || head_hash != prev_hash {
            let reason = format!(
                "the chain head records event {head_seq} but the newest event found is {}: events were removed from the end or rewritten",
                expected_seq - 1
            );
            return Ok(bad(
                expected_seq.min(head_seq.max(1)),
                None,
                &reason,
                checked,
            ));
        }
        Ok(ChainReport {
            ok: true,
            checked,
            first_bad_event: None,
        })
    }
}
