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
