//! The storage suite, run against every backend (SQLite always; PostgreSQL when the test script
//! provides a cluster).

use infrapilot_store::testing::{TestDb, backends};
use infrapilot_store::{Backend, NewAuditEvent, NewSession, NewUser, OrgId, now_ms};

fn event(action: &str, target: &str) -> NewAuditEvent {
    NewAuditEvent {
        actor_id: None,
        actor: "tester@example.com".into(),
        action: action.into(),
        target: target.into(),
        ip: "127.0.0.1".into(),
        outcome: "success".into(),
        detail: serde_json::json!({"n": target}),
    }
}

async fn db_with_events(backend: Backend, n: usize) -> TestDb {
    let db = TestDb::new(backend).await;
    for i in 1..=n {
        let mut tx = db.store.write(&OrgId::default_org()).await.unwrap();
        tx.append_audit(event("test.action", &format!("t{i}")))
            .await
            .unwrap();
        tx.commit().await.unwrap();
    }
    db
}

async fn verify(db: &TestDb) -> infrapilot_store::ChainReport {
    db.store
        .read(&OrgId::default_org())
        .await
        .unwrap()
        .verify_audit_chain()
        .await
        .unwrap()
}

#[tokio::test]
async fn users_memberships_and_uniqueness() {
    for backend in backends() {
        let db = TestDb::new(backend).await;
        let mut tx = db.store.write(&OrgId::default_org()).await.unwrap();
        assert_eq!(tx.count_users().await.unwrap(), 0);
        let user = NewUser {
            id: "11111111-1111-1111-1111-111111111111",
            email: "a@example.com",
            name: "A",
            password_hash: "h",
            role: "admin",
        };
        tx.insert_user(&user).await.unwrap();
        let dup = tx
            .insert_user(&NewUser {
                id: "22222222-2222-2222-2222-222222222222",
                ..user
            })
            .await
            .unwrap_err();
        assert!(dup.is_unique_violation(), "{backend:?}: {dup}");
        tx.commit().await.unwrap();

        let mut tx = db.store.write(&OrgId::default_org()).await.unwrap();
        let row = tx
            .user_by_email("a@example.com")
            .await
            .unwrap()
            .expect("found");
        assert_eq!(
            (row.role.as_str(), row.disabled, row.totp_enabled),
            ("admin", false, false)
        );
        tx.set_role(&row.id, "viewer").await.unwrap();
        tx.update_user_profile(&row.id, "Renamed", true)
            .await
            .unwrap();
        tx.set_pending_totp(&row.id, &[1, 2, 3]).await.unwrap();
        let row = tx.user_by_id(&row.id).await.unwrap().unwrap();
        assert_eq!(
            (row.role.as_str(), row.name.as_str(), row.disabled),
            ("viewer", "Renamed", true)
        );
        assert_eq!(row.totp_secret.as_deref(), Some(&[1u8, 2, 3][..]));
        assert_eq!(tx.list_users().await.unwrap().len(), 1);
        assert!(tx.delete_user(&row.id).await.unwrap());
        assert!(tx.user_by_id(&row.id).await.unwrap().is_none());
        assert_eq!(tx.count_users().await.unwrap(), 0);
        tx.commit().await.unwrap();
    }
}

#[tokio::test]
async fn sessions_rotate_once_and_revoke() {
    for backend in backends() {
        let db = TestDb::new(backend).await;
        let mut tx = db.store.write(&OrgId::default_org()).await.unwrap();
        let user_id = "33333333-3333-3333-3333-333333333333";
        tx.insert_user(&NewUser {
            id: user_id,
            email: "s@example.com",
            name: "S",
            password_hash: "h",
            role: "viewer",
        })
        .await
        .unwrap();
        let far = now_ms() + 3_600_000;
        tx.insert_session(&NewSession {
            id: "44444444-4444-4444-4444-444444444444",
            user_id,
            access_hash: "access-1",
            access_expires_at: far,
            refresh_hash: "refresh-1",
            refresh_expires_at: far,
            ip: "127.0.0.1",
            user_agent: "test",
            sso: None,
        })
        .await
        .unwrap();
        tx.commit().await.unwrap();
        // Sessions are personal: the system path finds them by the access token's hash.
        let session = |hash: &'static str| {
            let store = db.store.clone();
            async move { store.lookup().await.unwrap().session(hash).await.unwrap() }
        };
        assert!(session("access-1").await.is_some());
        let sid = "44444444-4444-4444-4444-444444444444";
        let mut tx = db.store.write(&OrgId::default_org()).await.unwrap();
        assert!(
            tx.rotate_session(sid, "refresh-1", "refresh-2", "access-2", far)
                .await
                .unwrap()
        );
        assert!(
            !tx.rotate_session(sid, "refresh-1", "refresh-3", "access-3", far)
                .await
                .unwrap(),
            "spent token"
        );
        tx.commit().await.unwrap();
        assert!(session("access-1").await.is_none(), "old access token dead");
        let owner = session("access-2").await.expect("new access token");
        assert_eq!(owner.email, "s@example.com");
        let mut tx = db.store.write(&OrgId::default_org()).await.unwrap();
        assert!(
            tx.refresh_token("refresh-1")
                .await
                .unwrap()
                .unwrap()
                .used_at
                .is_some()
        );
        assert!(tx.revoke_session(user_id, sid, "test").await.unwrap());
        tx.commit().await.unwrap();
        assert!(session("access-2").await.is_none());
        let mut tx = db.store.read(&OrgId::default_org()).await.unwrap();
        assert!(tx.list_sessions(user_id).await.unwrap().is_empty());
        tx.commit().await.unwrap();
    }
}

#[tokio::test]
async fn audit_chain_verifies_and_pages() {
    for backend in backends() {
        let db = db_with_events(backend, 7).await;
        let report = verify(&db).await;
        assert!(report.ok, "{backend:?}: {report:?}");
        assert_eq!(report.checked, 7);
        let mut tx = db.store.read(&OrgId::default_org()).await.unwrap();
        let filter = infrapilot_store::AuditFilter {
            limit: 3,
            ..Default::default()
        };
        let page = tx.list_audit(&filter).await.unwrap();
        assert_eq!(
            page.events.iter().map(|e| e.seq).collect::<Vec<_>>(),
            vec![7, 6, 5]
        );
        let next = infrapilot_store::AuditFilter {
            before_seq: page.next_cursor,
            ..filter.clone()
        };
        let page2 = tx.list_audit(&next).await.unwrap();
        assert_eq!(
            page2.events.iter().map(|e| e.seq).collect::<Vec<_>>(),
            vec![4, 3, 2]
        );
        let only = infrapilot_store::AuditFilter {
            action: Some("nothing".into()),
            ..filter
        };
        assert!(tx.list_audit(&only).await.unwrap().events.is_empty());
    }
}

#[tokio::test]
async fn concurrent_appends_keep_one_chain() {
    for backend in backends() {
        let db = TestDb::new(backend).await;
        let mut tasks = Vec::new();
        for i in 0..24 {
            let store = db.store.clone();
            tasks.push(tokio::spawn(async move {
                let mut tx = store.write(&OrgId::default_org()).await.unwrap();
                tx.append_audit(event("concurrent", &i.to_string()))
                    .await
                    .unwrap();
                tx.commit().await.unwrap();
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
        let report = verify(&db).await;
        assert!(report.ok, "{backend:?}: {report:?}");
        assert_eq!(report.checked, 24);
    }
}

#[tokio::test]
async fn tampering_is_detected_and_located() {
    for backend in backends() {
        // An edited event.
        let db = db_with_events(backend, 6).await;
        db.raw_execute("UPDATE audit_events SET target = 'forged' WHERE seq = 3")
            .await;
        let bad = verify(&db).await.first_bad_event.expect("edit detected");
        assert_eq!(bad.seq, 3, "{backend:?}");
        assert!(bad.reason.contains("edited"), "{}", bad.reason);

        // An edited event whose own hash was recomputed by the forger: the next link breaks.
        let db = db_with_events(backend, 6).await;
        db.raw_execute("UPDATE audit_events SET hash = 'f00d' WHERE seq = 3")
            .await;
        let bad = verify(&db).await.first_bad_event.expect("rehash detected");
        assert_eq!(bad.seq, 3);

        // A deleted event in the middle.
        let db = db_with_events(backend, 6).await;
        db.raw_execute("DELETE FROM audit_events WHERE seq = 4")
            .await;
        let bad = verify(&db).await.first_bad_event.expect("delete detected");
        assert_eq!(bad.seq, 4, "{backend:?}");
        assert!(bad.reason.contains("missing"), "{}", bad.reason);

        // Two events swapped (reordered): their sequence numbers exchanged.
        let db = db_with_events(backend, 6).await;
        db.raw_execute("UPDATE audit_events SET seq = -2 WHERE seq = 2")
            .await;
        db.raw_execute("UPDATE audit_events SET seq = 2 WHERE seq = 3")
            .await;
        db.raw_execute("UPDATE audit_events SET seq = 3 WHERE seq = -2")
            .await;
        let bad = verify(&db).await.first_bad_event.expect("reorder detected");
        assert_eq!(bad.seq, 2, "{backend:?}");

        // The newest events removed: the chain head no longer matches.
        let db = db_with_events(backend, 6).await;
        db.raw_execute("DELETE FROM audit_events WHERE seq >= 5")
            .await;
        let report = verify(&db).await;
        let bad = report.first_bad_event.expect("truncation detected");
        assert!(
            bad.reason.contains("removed from the end"),
            "{}",
            bad.reason
        );
        assert_eq!(report.checked, 4);

        // The first event deleted.
        let db = db_with_events(backend, 3).await;
        db.raw_execute("DELETE FROM audit_events WHERE seq = 1")
            .await;
        assert_eq!(verify(&db).await.first_bad_event.expect("detected").seq, 1);
    }
}

#[tokio::test]
async fn postgres_app_role_is_unprivileged() {
    if !backends().contains(&Backend::Postgres) {
        return;
    }
    let db = TestDb::new(Backend::Postgres).await;
    assert_eq!(
        db.app_scalar("SELECT current_user::text").await,
        "infrapilot_app"
    );
    assert_eq!(
        db.app_scalar("SELECT rolsuper::text FROM pg_roles WHERE rolname = current_user")
            .await,
        "false"
    );
    assert_eq!(
        db.app_scalar("SELECT rolbypassrls::text FROM pg_roles WHERE rolname = current_user")
            .await,
        "false"
    );
    assert_eq!(
        db.app_scalar("SELECT COUNT(*)::text FROM pg_tables WHERE tableowner = current_user")
            .await,
        "0"
    );
}
