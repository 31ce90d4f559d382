//! Throw-away databases for tests, on both backends.
//!
//! SQLite: a file in a fresh temporary directory. PostgreSQL: a fresh database in the cluster at
//! `INFRAPILOT_TEST_POSTGRES_URL` (a superuser URL; the test script starts such a cluster). When
//! that variable is unset the PostgreSQL half is skipped with a notice, except under `CI=true`,
//! where its absence is an error.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::str::FromStr;

use sqlx::{ConnectOptions, Connection, Executor};

use crate::{Backend, Store};

/// A test database and a way to run raw SQL on it as its owner (to simulate tampering).
pub struct TestDb {
    pub store: Store,
    pub backend: Backend,
    owner_url: String,
    _dir: Option<TempDir>,
}

struct TempDir(PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The backends to run a suite against.
pub fn backends() -> Vec<Backend> {
    let mut v = vec![Backend::Sqlite];
    match std::env::var("INFRAPILOT_TEST_POSTGRES_URL") {
        Ok(url) if !url.is_empty() => v.push(Backend::Postgres),
        _ if std::env::var("CI").is_ok_and(|v| v == "true") => {
            panic!(
                "CI=true but INFRAPILOT_TEST_POSTGRES_URL is not set: the PostgreSQL suite must run"
            )
        }
        _ => eprintln!(
            "INFRAPILOT_TEST_POSTGRES_URL unset: skipping PostgreSQL (run scripts/test.sh)"
        ),
    }
    v
}

static PG_SETUP: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// A database at an earlier release's schema (migrated up to a version), for upgrade tests:
/// fill it as the owner with [`OlderDb::raw_execute`], then [`OlderDb::upgrade`].
pub struct OlderDb {
    backend: Backend,
    owner_url: String,
    dir: Option<TempDir>,
}

impl OlderDb {
    /// A new database of `backend` with the migrations up to `version` applied.
    pub async fn at(backend: Backend, version: i64) -> OlderDb {
        let (owner_url, dir) = empty_database(backend).await;
        match backend {
            Backend::Sqlite => {
                let options = sqlx::sqlite::SqliteConnectOptions::from_str(&owner_url)
                    .expect("url")
                    .create_if_missing(true)
                    .foreign_keys(true);
                let pool = sqlx::SqlitePool::connect_with(options)
                    .await
                    .expect("sqlite");
                crate::SQLITE_MIGRATIONS
                    .run_to(version, &pool)
                    .await
                    .expect("older migrations");
                pool.close().await;
            }
            Backend::Postgres => {
                let pool = sqlx::PgPool::connect(&owner_url).await.expect("pg");
                crate::POSTGRES_MIGRATIONS
                    .run_to(version, &pool)
                    .await
                    .expect("older migrations");
                pool.close().await;
            }
        }
        OlderDb {
            backend,
            owner_url,
            dir,
        }
    }

    pub async fn raw_execute(&self, sql: &str) {
        owner_execute(self.backend, &self.owner_url, sql).await;
    }

    /// Connects the store as a new release would: the remaining migrations run.
    pub async fn upgrade(self) -> TestDb {
        let store = Store::connect(&self.owner_url, 4)
            .await
            .expect("the upgraded store");
        TestDb {
            store,
            backend: self.backend,
            owner_url: self.owner_url,
            _dir: self.dir,
        }
    }
}

/// A new, empty database: its owner URL (and the directory of a SQLite file).
async fn empty_database(backend: Backend) -> (String, Option<TempDir>) {
    let unique = uuid::Uuid::new_v4().simple().to_string();
    match backend {
        Backend::Sqlite => {
            let dir = std::env::temp_dir().join(format!("infrapilot-test-{unique}"));
            std::fs::create_dir_all(&dir).expect("temp dir");
            let url = format!("sqlite://{}", dir.join("test.db").display());
            (url, Some(TempDir(dir)))
        }
        Backend::Postgres => {
            let admin = std::env::var("INFRAPILOT_TEST_POSTGRES_URL").expect("postgres url");
            let name = format!("ip_test_{unique}");
            // Creating databases and the shared role concurrently trips PostgreSQL's catalog
            // locks; one at a time is fast enough.
            let _guard = PG_SETUP.lock().await;
            let mut conn = sqlx::PgConnection::connect(&admin)
                .await
                .expect("postgres admin");
            conn.execute(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
                .await
                .expect("create database");
            conn.close().await.ok();
            let options = sqlx::postgres::PgConnectOptions::from_str(&admin)
                .expect("url")
                .database(&name);
            (options.to_url_lossy().to_string(), None)
        }
    }
}

async fn owner_execute(backend: Backend, owner_url: &str, sql: &str) {
    match backend {
        Backend::Sqlite => {
            let mut c = sqlx::SqliteConnection::connect(owner_url)
                .await
                .expect("sqlite");
            c.execute(sqlx::AssertSqlSafe(sql.to_owned()))
                .await
                .expect("raw sql");
            c.close().await.ok();
        }
        Backend::Postgres => {
            let mut c = sqlx::PgConnection::connect(owner_url).await.expect("pg");
            c.execute(sqlx::AssertSqlSafe(sql.to_owned()))
                .await
                .expect("raw sql");
            c.close().await.ok();
        }
    }
}

impl TestDb {
    /// A new database of `backend` with every migration applied.
    pub async fn new(backend: Backend) -> TestDb {
        let (owner_url, dir) = empty_database(backend).await;
        let store = Store::connect(&owner_url, 4).await.expect("store");
        TestDb {
            store,
            backend,
            owner_url,
            _dir: dir,
        }
    }

    /// Runs SQL as the database owner, bypassing the application role.
    pub async fn raw_execute(&self, sql: &str) {
        owner_execute(self.backend, &self.owner_url, sql).await;
    }

    /// A count (`SELECT COUNT(*) …`) as the database owner, across organisations.
    pub async fn owner_count(&self, sql: &str) -> i64 {
        self.owner_scalar(sql).await
    }

    /// One text value (`SELECT …`) as the database owner, across organisations.
    pub async fn owner_text(&self, sql: &str) -> String {
        self.owner_scalar(sql).await
    }

    async fn owner_scalar<T>(&self, sql: &str) -> T
    where
        T: Send
            + Unpin
            + for<'r> sqlx::Decode<'r, sqlx::Sqlite>
            + sqlx::Type<sqlx::Sqlite>
            + for<'r> sqlx::Decode<'r, sqlx::Postgres>
            + sqlx::Type<sqlx::Postgres>,
    {
        let query = sqlx::AssertSqlSafe(sql.to_owned());
        match self.backend {
            Backend::Sqlite => {
                let mut c = sqlx::SqliteConnection::connect(&self.owner_url)
                    .await
                    .expect("sqlite");
                let v = sqlx::query_scalar::<_, T>(query)
                    .fetch_one(&mut c)
                    .await
                    .expect("owner query");
                c.close().await.ok();
                v
            }
            Backend::Postgres => {
                let mut c = sqlx::PgConnection::connect(&self.owner_url)
                    .await
                    .expect("pg");
                let v = sqlx::query_scalar::<_, T>(query)
                    .fetch_one(&mut c)
                    .await
                    .expect("owner query");
                c.close().await.ok();
                v
            }
        }
    }

    /// The rows of a catalogue query, as the database owner: `sqlite` or `postgres`, whichever
    /// this database is.
    async fn catalogue<T>(&self, sqlite: &'static str, postgres: &'static str) -> Vec<T>
    where
        T: Send
            + Unpin
            + for<'r> sqlx::FromRow<'r, sqlx::sqlite::SqliteRow>
            + for<'r> sqlx::FromRow<'r, sqlx::postgres::PgRow>,
    {
        match self.backend {
            Backend::Sqlite => {
                let mut c = sqlx::SqliteConnection::connect(&self.owner_url)
                    .await
                    .expect("sqlite");
                let rows = sqlx::query_as(sqlite)
                    .fetch_all(&mut c)
                    .await
                    .expect("sqlite catalogue");
                c.close().await.ok();
                rows
            }
            Backend::Postgres => {
                let mut c = sqlx::PgConnection::connect(&self.owner_url)
                    .await
                    .expect("pg");
                let rows = sqlx::query_as(postgres)
                    .fetch_all(&mut c)
                    .await
                    .expect("postgres catalogue");
                c.close().await.ok();
                rows
            }
        }
    }

    /// Every table the migrations made and its columns, each as `name` or `name NOT NULL` (a
    /// primary key counts as NOT NULL), read from the database's own catalogue (the migration
    /// bookkeeping left out).
    pub async fn tables(&self) -> BTreeMap<String, BTreeSet<String>> {
        let rows: Vec<(String, String, bool)> = self
            .catalogue(
                "SELECT m.name, p.name, (p.\"notnull\" = 1 OR p.pk > 0) \
                 FROM sqlite_master m JOIN pragma_table_info(m.name) p \
                 WHERE m.type = 'table' AND m.name NOT LIKE 'sqlite_%' AND m.name NOT LIKE '_sqlx%'",
                "SELECT table_name::text, column_name::text, is_nullable = 'NO' \
                 FROM information_schema.columns \
                 WHERE table_schema = 'public' AND table_name NOT LIKE '_sqlx%'",
            )
            .await;
        let mut tables: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for (table, column, not_null) in rows {
            let column = if not_null {
                format!("{column} NOT NULL")
            } else {
                column
            };
            tables.entry(table).or_default().insert(column);
        }
        tables
    }

    /// Every secondary index the migrations made (primary keys left out: SQLite has none for an
    /// `INTEGER PRIMARY KEY`), as `table(col, col…)` with `UNIQUE ` in front when unique and
    /// ` WHERE …` after it when partial; an expression column reads `<expr>`. Index names are not
    /// compared, only what the index enforces and speeds up.
    pub async fn indexes(&self) -> BTreeSet<String> {
        // (table, index name, unique, partial, position, column or NULL for an expression)
        let rows: Vec<(String, String, bool, bool, i64, Option<String>)> = self
            .catalogue(
                "SELECT m.name, il.name, il.\"unique\" = 1, il.partial = 1, ii.seqno, ii.name \
                 FROM sqlite_master m JOIN pragma_index_list(m.name) il \
                 JOIN pragma_index_info(il.name) ii \
                 WHERE m.type = 'table' AND m.name NOT LIKE 'sqlite_%' \
                 AND m.name NOT LIKE '_sqlx%' AND il.origin <> 'pk'",
                "SELECT t.relname::text, i.relname::text, x.indisunique, x.indpred IS NOT NULL, \
                        k.ord::bigint, a.attname::text \
                 FROM pg_index x \
                 JOIN pg_class t ON t.oid = x.indrelid \
                 JOIN pg_class i ON i.oid = x.indexrelid \
                 JOIN pg_namespace n ON n.oid = t.relnamespace \
                 CROSS JOIN LATERAL unnest(x.indkey) WITH ORDINALITY AS k(attnum, ord) \
                 LEFT JOIN pg_attribute a ON a.attrelid = t.oid AND a.attnum = k.attnum AND k.attnum > 0 \
                 WHERE n.nspname = 'public' AND NOT x.indisprimary AND t.relname NOT LIKE '_sqlx%'",
            )
            .await;
        // (table, index name) → (unique, partial, columns by position)
        type Shape = (bool, bool, BTreeMap<i64, String>);
        let mut indexes: BTreeMap<(String, String), Shape> = BTreeMap::new();
        for (table, index, unique, partial, position, column) in rows {
            indexes
                .entry((table, index))
                .or_insert((unique, partial, BTreeMap::new()))
                .2
                .insert(position, column.unwrap_or_else(|| "<expr>".into()));
        }
        indexes
            .into_iter()
            .map(|((table, _), (unique, partial, columns))| {
                format!(
                    "{}{table}({}){}",
                    if unique { "UNIQUE " } else { "" },
                    columns.into_values().collect::<Vec<_>>().join(", "),
                    if partial { " WHERE …" } else { "" }
                )
            })
            .collect()
    }

    /// PostgreSQL: every table with an `org_id` column (partitioned ones and their partitions
    /// too), whether row-level security is enabled
    /// and forced on it, and its policies' names. Empty on SQLite (no row-level security).
    pub async fn row_security(&self) -> BTreeMap<String, (bool, bool, BTreeSet<String>)> {
        if self.backend == Backend::Sqlite {
            return BTreeMap::new();
        }
        let rows: Vec<(String, bool, bool, Option<String>)> = self
            .catalogue(
                "SELECT 'unused', false, false, NULL",
                "SELECT c.relname::text, c.relrowsecurity, c.relforcerowsecurity, p.polname::text \
                 FROM pg_class c \
                 JOIN pg_namespace n ON n.oid = c.relnamespace \
                 JOIN pg_attribute a ON a.attrelid = c.oid AND a.attname = 'org_id' AND NOT a.attisdropped \
                 LEFT JOIN pg_policy p ON p.polrelid = c.oid \
                 WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p')",
            )
            .await;
        let mut tables: BTreeMap<String, (bool, bool, BTreeSet<String>)> = BTreeMap::new();
        for (table, enabled, forced, policy) in rows {
            let entry = tables
                .entry(table)
                .or_insert((enabled, forced, BTreeSet::new()));
            entry.2.extend(policy);
        }
        tables
    }

    /// PostgreSQL: runs `sql` as the application role in a transaction with
    /// `app.current_org_id` set to `org_id` (`None`: not set), rolled back afterwards; the
    /// number of rows it returned or changed, or the database's error.
    pub async fn app_rows_in_org(&self, org_id: Option<&str>, sql: &str) -> Result<u64, String> {
        match org_id {
            Some(org) => {
                self.app_rows_with(&[("app.current_org_id", org)], sql)
                    .await
            }
            None => self.app_rows_with(&[], sql).await,
        }
    }

    /// PostgreSQL: runs `sql` as the application role in a transaction with these settings
    /// (`app.current_org_id`, `app.credential_hash`, `app.current_user_id` …), rolled back
    /// afterwards; the number of rows it returned or changed, or the database's error.
    pub async fn app_rows_with(&self, settings: &[(&str, &str)], sql: &str) -> Result<u64, String> {
        let crate::Pool::Postgres(pool) = &self.store.pool else {
            panic!("app_rows_with is for PostgreSQL");
        };
        let mut tx = pool.begin().await.map_err(|e| e.to_string())?;
        for (name, value) in settings {
            sqlx::query("SELECT set_config($1, $2, true)")
                .bind(name)
                .bind(value)
                .execute(&mut *tx)
                .await
                .map_err(|e| e.to_string())?;
        }
        let query = sqlx::AssertSqlSafe(sql.to_owned());
        let rows = if sql.trim_start().to_ascii_uppercase().starts_with("SELECT") {
            sqlx::query(query)
                .fetch_all(&mut *tx)
                .await
                .map(|r| r.len() as u64)
        } else {
            sqlx::query(query)
                .execute(&mut *tx)
                .await
                .map(|r| r.rows_affected())
        };
        tx.rollback().await.ok();
        rows.map_err(|e| e.to_string())
    }

    /// Runs a query returning one text value, as the application (through the store's pool)
    /// in the default organisation (on PostgreSQL, row-level security shows no row otherwise).
    pub async fn app_scalar(&self, sql: &'static str) -> String {
        match &self.store.pool {
            crate::Pool::Sqlite(p) => sqlx::query_scalar::<_, String>(sql)
                .fetch_one(p)
                .await
                .expect("query"),
            crate::Pool::Postgres(p) => {
                let mut tx = p.begin().await.expect("begin");
                sqlx::query("SELECT set_config('app.current_org_id', $1, true)")
                    .bind(crate::DEFAULT_ORG_ID)
                    .execute(&mut *tx)
                    .await
                    .expect("organisation");
                let value = sqlx::query_scalar::<_, String>(sql)
                    .fetch_one(&mut *tx)
                    .await
                    .expect("query");
                tx.rollback().await.ok();
                value
            }
        }
    }
}
