//! Upgrade in place: a database made by the release before organisations (migrations up to
//! 0008) with people, sessions, tokens and a pending second step keeps working once the new
//! release connects to it — the data is the default organisation's, its super admin is the host
//! operator (and that organisation's admin), sessions stay signed in.

use infrapilot_store::testing::{OlderDb, backends};
use infrapilot_store::{DEFAULT_ORG_ID, OrgId};

const OPERATOR: &str = "11111111-1111-4111-8111-111111111111";
const VIEWER: &str = "22222222-2222-4222-8222-222222222222";
const SESSION: &str = "33333333-3333-4333-8333-333333333333";

#[tokio::test(flavor = "multi_thread")]
async fn a_database_of_the_previous_release_keeps_working() {
    for backend in backends() {
        let older = OlderDb::at(backend, 8).await;
        let far = infrapilot_store::now_ms() + 3_600_000;
        for sql in [
            format!(
                "INSERT INTO organizations (id, name, created_at) VALUES ('{DEFAULT_ORG_ID}', 'Default', 0) ON CONFLICT (id) DO NOTHING"
            ),
            format!(
                "INSERT INTO users (id, email, name, password_hash, created_at, updated_at) VALUES ('{OPERATOR}', 'op@example.com', 'Op', 'h', 0, 0)"
            ),
            format!(
                "INSERT INTO users (id, email, name, password_hash, created_at, updated_at) VALUES ('{VIEWER}', 'v@example.com', 'V', 'h', 0, 0)"
            ),
            format!(
                "INSERT INTO memberships (org_id, user_id, role, created_at) VALUES ('{DEFAULT_ORG_ID}', '{OPERATOR}', 'super_admin', 0)"
            ),
            format!(
                "INSERT INTO memberships (org_id, user_id, role, created_at) VALUES ('{DEFAULT_ORG_ID}', '{VIEWER}', 'viewer', 1)"
            ),
            format!(
                "INSERT INTO sessions (id, org_id, user_id, access_hash, access_expires_at, refresh_expires_at, ip, user_agent, created_at, last_used_at) VALUES ('{SESSION}', '{DEFAULT_ORG_ID}', '{OPERATOR}', 'access-hash', {far}, {far}, '127.0.0.1', 'test', 0, 0)"
            ),
            format!(
                "INSERT INTO refresh_tokens (token_hash, org_id, session_id, created_at) VALUES ('refresh-hash', '{DEFAULT_ORG_ID}', '{SESSION}', 0)"
            ),
            format!(
                "INSERT INTO mfa_challenges (token_hash, org_id, user_id, expires_at) VALUES ('challenge-hash', '{DEFAULT_ORG_ID}', '{VIEWER}', {far})"
            ),
            format!(
                "INSERT INTO api_tokens (id, org_id, user_id, name, token_hash, role, expires_at, created_at) VALUES ('t1', '{DEFAULT_ORG_ID}', '{VIEWER}', 'ci', 'token-hash', 'viewer', {far}, 0)"
            ),
        ] {
            older.raw_execute(&sql).await;
        }

        let db = older.upgrade().await;
        let mut lookup = db.store.lookup().await.unwrap();
        let owner = lookup
            .session("access-hash")
            .await
            .unwrap()
            .expect("the session survives");
        assert_eq!(owner.user_id, OPERATOR, "{backend:?}");
        let memberships = lookup.memberships(OPERATOR).await.unwrap();
        assert_eq!(memberships.len(), 1);
        assert_eq!(memberships[0].org_id, DEFAULT_ORG_ID);
        assert_eq!(memberships[0].role, "super_admin", "the host operator");
        assert_eq!(
            lookup.org_of_api_token("token-hash").await.unwrap(),
            Some(OrgId::default_org())
        );
        drop(lookup);

        let mut tx = db.store.write(&OrgId::default_org()).await.unwrap();
        let refresh = tx
            .refresh_token("refresh-hash")
            .await
            .unwrap()
            .expect("refresh token kept");
        assert_eq!(refresh.session_id, SESSION);
        assert_eq!(tx.list_sessions(OPERATOR).await.unwrap().len(), 1);
        let challenge = tx
            .mfa_challenge("challenge-hash")
            .await
            .unwrap()
            .expect("second step kept");
        assert_eq!(challenge.user_id, VIEWER);
        let members: Vec<String> = tx
            .list_users()
            .await
            .unwrap()
            .into_iter()
            .map(|u| u.email)
            .collect();
        assert_eq!(members, vec!["op@example.com", "v@example.com"]);
        tx.commit().await.unwrap();
        // A session ended after the upgrade still cascades to its refresh tokens.
        db.raw_execute(&format!("DELETE FROM sessions WHERE id = '{SESSION}'"))
            .await;
        assert_eq!(
            db.owner_count("SELECT COUNT(*) FROM refresh_tokens").await,
            0,
            "{backend:?}: refresh tokens follow their session"
        );
    }
}

/// A SQLite day table made by the release that kept the text index with an insert trigger: the
/// new release (which fills the index a batch at a time) drops the trigger at start, so a line
/// stored after the upgrade is indexed once, and the lines stored before stay searchable.
#[tokio::test(flavor = "multi_thread")]
async fn a_day_table_of_the_previous_release_indexes_each_line_once() {
    use infrapilot_store::{Backend, LogQuery, NewLogLine};
    let older = OlderDb::at(Backend::Sqlite, 16).await;
    // 2026-12-06, as release 0015's code made it (trigger included).
    let day = 20_261_206;
    for sql in [
        format!(
            "CREATE TABLE log_lines_{day} (id INTEGER PRIMARY KEY, org_id TEXT NOT NULL, agent_id TEXT NOT NULL, \
             time_ns INTEGER NOT NULL, seq INTEGER NOT NULL, container_id TEXT NOT NULL, container_name TEXT NOT NULL, \
             compose_project TEXT NOT NULL, stream TEXT NOT NULL, level TEXT, line TEXT NOT NULL, proxy_host_id TEXT, status INTEGER)"
        ),
        format!("CREATE INDEX log_lines_{day}_org_time ON log_lines_{day} (org_id, time_ns)"),
        format!(
            "CREATE VIRTUAL TABLE log_text_{day} USING fts5(line, content='log_lines_{day}', content_rowid='id', tokenize='trigram')"
        ),
        format!(
            "CREATE TRIGGER log_lines_{day}_added AFTER INSERT ON log_lines_{day} \
             BEGIN INSERT INTO log_text_{day} (rowid, line) VALUES (new.id, new.line); END"
        ),
        format!(
            "CREATE TRIGGER log_lines_{day}_removed AFTER DELETE ON log_lines_{day} \
             BEGIN INSERT INTO log_text_{day} (log_text_{day}, rowid, line) VALUES ('delete', old.id, old.line); END"
        ),
        format!("INSERT INTO log_days (day) VALUES ({day})"),
        format!(
            "INSERT INTO organizations (id, name, created_at) VALUES ('{DEFAULT_ORG_ID}', 'Default', 0) ON CONFLICT (id) DO NOTHING"
        ),
        format!(
            "INSERT INTO log_lines_{day} (org_id, agent_id, time_ns, seq, container_id, container_name, compose_project, stream, level, line) \
             VALUES ('{DEFAULT_ORG_ID}', 'a', 1796515200000000001, 1, 'c1', 'web', '', 'stdout', NULL, 'before the upgrade kiwi')"
        ),
    ] {
        older.raw_execute(&sql).await;
    }
    let db = older.upgrade().await;
    let org = OrgId::default_org();
    let mut tx = db.store.write(&org).await.unwrap();
    tx.insert_log_lines(&[NewLogLine {
        agent_id: "a",
        time_ns: 1_796_515_200_000_000_002,
        seq: 2,
        container_id: "c1",
        container_name: "web",
        compose_project: "",
        stream: "stdout",
        level: None,
        line: "after the upgrade kiwi",
        proxy_host_id: None,
        status: None,
    }])
    .await
    .unwrap();
    tx.commit().await.unwrap();
    let mut tx = db.store.read(&org).await.unwrap();
    let found = tx
        .query_logs(&LogQuery {
            limit: 10,
            text: Some("kiwi".into()),
            ..LogQuery::default()
        })
        .await
        .unwrap();
    let lines: Vec<&str> = found.iter().map(|l| l.line.as_str()).collect();
    assert_eq!(lines, ["after the upgrade kiwi", "before the upgrade kiwi"]);
    drop(tx);
    // The insert trigger is gone (with it, each line was indexed twice: by the trigger and by
    // the batch), the delete trigger kept; the index agrees with the table.
    let triggers = |name: String| {
        format!("SELECT COUNT(*) FROM sqlite_master WHERE type = 'trigger' AND name = '{name}'")
    };
    assert_eq!(
        db.owner_count(&triggers(format!("log_lines_{day}_added")))
            .await,
        0
    );
    assert_eq!(
        db.owner_count(&triggers(format!("log_lines_{day}_removed")))
            .await,
        1
    );
    db.raw_execute(&format!(
        "INSERT INTO log_text_{day} (log_text_{day}) VALUES ('integrity-check')"
    ))
    .await;
}
