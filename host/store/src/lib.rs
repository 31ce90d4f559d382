//! Storage for the InfraPilot host: one API over SQLite (the embedded default) and PostgreSQL.
//!
//! Every repository method lives on [`Tx`], a transaction bound to one organisation, so that a
//! change and its audit event are always written together. SQL is written once with `$n`
//! placeholders, which both backends accept, and run on whichever backend the [`Store`] holds.

/// Runs the same body against whichever backend a [`Tx`] holds; `$c` is the transaction.
macro_rules! on_tx {
    ($tx:expr, $c:ident => $body:expr) => {
        match &mut $tx.inner {
            $crate::TxInner::Sqlite($c) => $body,
            $crate::TxInner::Postgres($c) => $body,
        }
    };
}

mod agents;
mod alerts;
mod audit;
mod commands;
mod identity;
mod log_sink;
mod logs;
mod node_samples;
mod plugins;
mod policies;
mod proxies;
mod proxy_certificates;
mod sso;
mod tenancy;
#[cfg(feature = "testing")]
pub mod testing;

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{Executor, PgPool, Postgres, Sqlite, SqlitePool};

pub use agents::{AgentRow, EnrollmentTokenRow, NewAgent, NewEnrollmentToken};
pub use alerts::{AlertChannelRow, AlertDeliveryRow, AlertEventRow, AlertRuleRow, NewAlertRule};
pub use audit::{
    Actor, AuditEvent, AuditFilter, AuditPage, BadEvent, ChainReport, GENESIS_HASH, NewAuditEvent,
    event_hash,
};
pub use commands::{
    CommandRow, DOCKER_EVENTS_KEPT_PER_AGENT, DockerEventRow, NewCommand, NewDockerEvent,
};
pub use identity::{
    ApiTokenRow, CredentialOwner, MfaChallengeRow, NewApiToken, NewMfaChallenge, NewSession,
    NewUser, RefreshTokenRow, SessionRow, UserRow,
};
pub use log_sink::{ContainerCounts, LogSink, LogSinkError, ProxyCounts};
pub use logs::{LogCursor, LogGapRow, LogLineRow, LogQuery, NewLogLine, RetentionReport, day_of};
pub use node_samples::{NodeSample, NodeSamplePoint, SAMPLE_HOUR, SAMPLE_MINUTE};
pub use plugins::{MAX_PLUGIN_KV_KEYS, NewPlugin, PluginRow};
pub use policies::{NewPolicy, NewViolation, PolicyRow, ViolationFilter, ViolationRow};
pub use proxies::{NewProxyRevision, ProxyHostRow, ProxyRevisionRow, ProxyStatusRow};
pub use proxy_certificates::{NewProxyCertificate, ProxyCertificateRow};
pub use sso::{NewSsoLogin, NewSsoProvider, SsoIdentityRow, SsoLoginRow, SsoProviderRow};
pub use tenancy::{
    InvitationRow, Lookup, MembershipRow, NewInvitation, OrganizationRow, SessionOwner,
    TENANT_TABLES,
};

/// The organisation every community installation uses (its id as text; [`OrgId::default_org`]).
/// Its chain also records what concerns the host or a person rather than one organisation
/// (sign-ins, second factors, plugins, the licence, organisations made and deleted).
pub const DEFAULT_ORG_ID: &str = "00000000-0000-0000-0000-000000000001";

/// An organisation's id (a UUID in its hyphenated text form). A tenant transaction
/// ([`Store::read`], [`Store::write`]) is opened for one; the API builds it only from the caller's
/// credential or membership (ARCHITECTURE.md, "Tenancy").
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, sqlx::Type)]
#[serde(transparent)]
#[sqlx(transparent)]
pub struct OrgId(String);

impl OrgId {
    /// The default organisation ([`DEFAULT_ORG_ID`]).
    pub fn default_org() -> OrgId {
        OrgId(DEFAULT_ORG_ID.to_owned())
    }

    /// A new organisation's id.
    pub fn generate() -> OrgId {
        OrgId(uuid::Uuid::new_v4().to_string())
    }

    /// `text` when it is a UUID (any case; kept in the lower-case form the database holds).
    pub fn parse(text: &str) -> Option<OrgId> {
        let id = uuid::Uuid::try_parse(text).ok()?;
        Some(OrgId(id.hyphenated().to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn is_default(&self) -> bool {
        self.0 == DEFAULT_ORG_ID
    }
}

impl std::fmt::Display for OrgId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

static SQLITE_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("../../migrations/sqlite");
static POSTGRES_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("../../migrations/postgres");

/// The PostgreSQL role the application runs as (created by the first migration).
pub const POSTGRES_APP_ROLE: &str = "infrapilot_app";

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    #[error("migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("unsupported database URL (expected sqlite:// or postgres://): {0}")]
    UnsupportedUrl(String),
    #[error("{0} already exists")]
    Conflict(&'static str),
}

impl StoreError {
    /// Whether the error is a unique-constraint violation.
    pub fn is_unique_violation(&self) -> bool {
        matches!(self, StoreError::Conflict(_))
            || matches!(self, StoreError::Database(sqlx::Error::Database(e)) if e.is_unique_violation())
    }
}

impl StoreError {
    /// Whether the database could not be reached (as opposed to refusing a statement).
    pub fn is_unavailable(&self) -> bool {
        matches!(
            self,
            StoreError::Database(
                sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed | sqlx::Error::Io(_)
            )
        )
    }
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// Which database engine a store runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

#[derive(Clone)]
enum Pool {
    Sqlite(SqlitePool),
    Postgres(PgPool),
}

/// A handle to the database; cheap to clone.
#[derive(Clone)]
pub struct Store {
    pool: Pool,
    /// SQLite allows one writer at a time. Writers queue here, in order and without sleeping,
    /// instead of in SQLite's busy handler (which backs off in sleeps of up to 25 ms).
    write_gate: Arc<tokio::sync::Mutex<()>>,
    /// Starts of the recent days whose log table exists (see [`Store::prepare_log_days`]).
    known_log_days: Arc<std::sync::Mutex<std::collections::BTreeSet<i64>>>,
}

/// Pool statistics for `/metrics`.
#[derive(Debug, Clone, Copy)]
pub struct PoolStats {
    pub size: u32,
    pub idle: u32,
    pub max: u32,
}

impl Store {
    /// Connects to `url` (`sqlite://…` or `postgres://…`), creating a SQLite file if needed,
    /// and runs the migrations of that backend.
    pub async fn connect(url: &str, max_connections: u32) -> Result<Store> {
        let store = if url.starts_with("sqlite:") {
            let options = SqliteConnectOptions::from_str(url)?
                .create_if_missing(true)
                .journal_mode(SqliteJournalMode::Wal)
                .synchronous(SqliteSynchronous::Normal)
                .foreign_keys(true)
                // REGEXP: text search with Unicode case folding (LIKE folds ASCII only).
                .with_regexp()
                .busy_timeout(Duration::from_secs(10));
            let pool = SqlitePoolOptions::new()
                .max_connections(max_connections.max(1))
                .min_connections(1)
                .connect_with(options)
                .await?;
            SQLITE_MIGRATIONS.run(&pool).await?;
            logs::drop_sqlite_insert_triggers(&pool).await?;
            Store {
                pool: Pool::Sqlite(pool),
                write_gate: Arc::default(),
                known_log_days: Arc::default(),
            }
        } else if url.starts_with("postgres:") || url.starts_with("postgresql:") {
            let options = PgConnectOptions::from_str(url)?;
            // Migrations run as the connecting role; the pool then switches every connection to
            // the unprivileged application role, so row-level security applies to the app.
            {
                let migrator_pool = PgPoolOptions::new()
                    .max_connections(1)
                    .connect_with(options.clone())
                    .await?;
                POSTGRES_MIGRATIONS.run(&migrator_pool).await?;
                migrator_pool.close().await;
            }
            let pool = PgPoolOptions::new()
                .max_connections(max_connections.max(1))
                .after_connect(|conn, _meta| {
                    Box::pin(async move {
                        conn.execute("SET SESSION ROLE infrapilot_app").await?;
                        Ok(())
                    })
                })
                .connect_with(options)
                .await?;
            Store {
                pool: Pool::Postgres(pool),
                write_gate: Arc::default(),
                known_log_days: Arc::default(),
            }
        } else {
            return Err(StoreError::UnsupportedUrl(redact_url(url)));
        };
        store.ensure_default_org().await?;
        Ok(store)
    }

    pub fn backend(&self) -> Backend {
        match self.pool {
            Pool::Sqlite(_) => Backend::Sqlite,
            Pool::Postgres(_) => Backend::Postgres,
        }
    }

    /// Checks that the database answers.
    pub async fn ping(&self) -> Result<()> {
        match &self.pool {
            Pool::Sqlite(p) => sqlx::query("SELECT 1").execute(p).await.map(|_| ())?,
            Pool::Postgres(p) => sqlx::query("SELECT 1").execute(p).await.map(|_| ())?,
        }
        Ok(())
    }

    pub fn pool_stats(&self) -> PoolStats {
        match &self.pool {
            Pool::Sqlite(p) => PoolStats {
                size: p.size(),
                idle: p.num_idle() as u32,
                max: p.options().get_max_connections(),
            },
            Pool::Postgres(p) => PoolStats {
                size: p.size(),
                idle: p.num_idle() as u32,
                max: p.options().get_max_connections(),
            },
        }
    }

    /// Begins a read transaction in the organisation `org`.
    pub async fn read(&self, org: &OrgId) -> Result<Tx> {
        self.begin(org.as_str(), false).await
    }

    /// Begins a write transaction in the organisation `org`. On SQLite it takes the write lock at
    /// once (`BEGIN IMMEDIATE`), so read-then-write sequences such as the audit chain never race.
    pub async fn write(&self, org: &OrgId) -> Result<Tx> {
        self.begin(org.as_str(), true).await
    }

    /// Appends one audit event in a transaction of its own: for events that stand alone (a
    /// failed sign-in, a refused or finished action on a node) whatever becomes of the caller's
    /// change.
    pub async fn record_audit(&self, org: &OrgId, event: NewAuditEvent) -> Result<()> {
        self.record_audit_with_violations(org, event, &[]).await
    }

    /// Appends an audit event and the policy violations found about its action, in one
    /// transaction.
    pub async fn record_audit_with_violations(
        &self,
        org: &OrgId,
        event: NewAuditEvent,
        violations: &[NewViolation],
    ) -> Result<()> {
        let mut tx = self.write(org).await?;
        let event = tx.append_audit(event).await?;
        tx.insert_violations(violations, Some(&event.id)).await?;
        tx.commit().await
    }

    async fn begin(&self, org_id: &str, write: bool) -> Result<Tx> {
        let mut write_gate = None;
        let inner = match &self.pool {
            Pool::Sqlite(p) => {
                if write {
                    write_gate = Some(self.write_gate.clone().lock_owned().await);
                }
                let tx = if write {
                    p.begin_with("BEGIN IMMEDIATE").await?
                } else {
                    p.begin().await?
                };
                TxInner::Sqlite(tx)
            }
            Pool::Postgres(p) => {
                let mut tx = p.begin().await?;
                sqlx::query("SELECT set_config('app.current_org_id', $1, true)")
                    .bind(org_id)
                    .execute(&mut *tx)
                    .await?;
                TxInner::Postgres(tx)
            }
        };
        Ok(Tx {
            inner,
            org_id: org_id.to_owned(),
            _write_gate: write_gate,
        })
    }

    async fn ensure_default_org(&self) -> Result<()> {
        let mut tx = self.write(&OrgId::default_org()).await?;
        on_tx!(tx, c => sqlx::query(
            "INSERT INTO organizations (id, name, created_at) VALUES ($1, 'Default', $2) ON CONFLICT (id) DO NOTHING",
        )
        .bind(DEFAULT_ORG_ID)
        .bind(now_ms())
        .execute(&mut **c).await.map(|r| r.rows_affected()))?;
        tx.commit().await
    }

    pub async fn close(&self) {
        match &self.pool {
            Pool::Sqlite(p) => p.close().await,
            Pool::Postgres(p) => p.close().await,
        }
    }
}

enum TxInner {
    Sqlite(sqlx::Transaction<'static, Sqlite>),
    Postgres(sqlx::Transaction<'static, Postgres>),
}

/// A transaction in one organisation. Dropped without [`Tx::commit`], it rolls back.
pub struct Tx {
    inner: TxInner,
    org_id: String,
    /// Held until the transaction ends (declared after `inner`, so it is released after the
    /// rollback a drop performs).
    _write_gate: Option<tokio::sync::OwnedMutexGuard<()>>,
}

impl Tx {
    pub fn org_id(&self) -> &str {
        &self.org_id
    }

    /// Serialises first-run setup across connections (SQLite write transactions are serialised
    /// already; PostgreSQL takes an advisory lock).
    pub async fn lock_setup(&mut self) -> Result<()> {
        if let TxInner::Postgres(c) = &mut self.inner {
            sqlx::query("SELECT pg_advisory_xact_lock(hashtext('infrapilot:setup'))")
                .execute(&mut **c)
                .await?;
        }
        Ok(())
    }

    /// Serialises the transactions that check-then-change one invariant (the last super_admin,
    /// an MFA challenge's attempts, a licence limit): they take this lock, named after the
    /// invariant, before reading. SQLite write transactions are serialised already; PostgreSQL
    /// takes a transaction-scoped advisory lock in the organisation.
    pub async fn serialize(&mut self, invariant: &str) -> Result<()> {
        if let TxInner::Postgres(c) = &mut self.inner {
            sqlx::query("SELECT pg_advisory_xact_lock(hashtext($1))")
                .bind(format!("infrapilot:{}:{invariant}", self.org_id))
                .execute(&mut **c)
                .await?;
        }
        Ok(())
    }

    /// Like [`Tx::serialize`] for an invariant of one person across organisations (their last
    /// membership, say): transactions of any organisation naming the same person wait here.
    pub async fn serialize_person(&mut self, user_id: &str) -> Result<()> {
        if let TxInner::Postgres(c) = &mut self.inner {
            sqlx::query("SELECT pg_advisory_xact_lock(hashtext($1))")
                .bind(format!("infrapilot:person:{user_id}"))
                .execute(&mut **c)
                .await?;
        }
        Ok(())
    }

    /// Like [`Tx::serialize_person`] for one invariant of a person (`mfa`: their second factor's
    /// steps, enrolments and resets, whichever organisation's transaction makes them).
    pub async fn serialize_for_person(&mut self, user_id: &str, invariant: &str) -> Result<()> {
        if let TxInner::Postgres(c) = &mut self.inner {
            sqlx::query("SELECT pg_advisory_xact_lock(hashtext($1))")
                .bind(format!("infrapilot:person:{user_id}:{invariant}"))
                .execute(&mut **c)
                .await?;
        }
        Ok(())
    }

    pub async fn commit(self) -> Result<()> {
        match self.inner {
            TxInner::Sqlite(tx) => tx.commit().await?,
            TxInner::Postgres(tx) => tx.commit().await?,
        }
        Ok(())
    }
}

/// The current time in Unix milliseconds, the unit of every timestamp column.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// A database URL with its password replaced, for error messages and logs.
pub fn redact_url(url: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (url, None),
    };
    let mut out = match base.find("://") {
        Some(scheme_end) => {
            let rest = &base[scheme_end + 3..];
            let authority_end = rest.find('/').unwrap_or(rest.len());
            let authority = &rest[..authority_end];
            match authority.rfind('@') {
                Some(at) if authority[..at].contains(':') => {
                    let user = authority[..at].split(':').next().unwrap_or("");
                    format!(
                        "{}{user}:***{}{}",
                        &base[..scheme_end + 3],
                        &authority[at..],
                        &rest[authority_end..]
                    )
                }
                _ => base.to_owned(),
            }
        }
        None => base.to_owned(),
    };
    if let Some(query) = query {
        let secret_key = |k: &str| {
            let k = k.to_ascii_lowercase();
            [
                "password", "passwd", "pwd", "secret", "token", "key", "auth",
            ]
            .iter()
            .any(|s| k.contains(s))
        };
        let parts: Vec<String> = query
            .split('&')
            .map(|pair| match pair.split_once('=') {
                Some((k, _)) if secret_key(k) => format!("{k}=***"),
                _ => pair.to_owned(),
            })
            .collect();
        out.push('?');
        out.push_str(&parts.join("&"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redacts_passwords() {
        assert_eq!(
            redact_url("postgres://app:secret@db:5432/x"),
            "postgres://app:***@db:5432/x"
        );
        assert_eq!(redact_url("sqlite://data/x.db"), "sqlite://data/x.db");
        assert_eq!(
            redact_url("postgres://db/x?user=app&password=hunter2&sslmode=require"),
            "postgres://db/x?user=app&password=***&sslmode=require"
        );
        assert_eq!(
            redact_url("postgres://app:p@ss@db/x?sslpassword=k"),
            "postgres://app:***@db/x?sslpassword=***"
        );
        assert!(!redact_url("postgres://app:secret@db/x?options=a@b").contains("secret"));
        assert_eq!(redact_url("postgres://app@db/x"), "postgres://app@db/x");
    }
}
