//! The account service on a real database (SQLite, and PostgreSQL when configured): sign-in with
//! its throttle and audit trail, refresh-token rotation and reuse, and the administrator's
//! changes that must keep an enabled super_admin. The HTTP side of the same flows is tested in
//! host/api/tests/auth_flows.rs.

use std::sync::Arc;
use std::time::Duration;

use infrapilot_accounts::{
    AccountError, AccountService, Client, LoginOutcome, NewAccount, UserChanges, create_user,
};
use infrapilot_identity::{LoginThrottle, Role, SecretBox};
use infrapilot_store::testing::{TestDb, backends};
use infrapilot_store::{Actor, AuditFilter};
use tokio::sync::Semaphore;

struct Fixture {
    db: TestDb,
    secrets: SecretBox,
    account_throttle: LoginThrottle,
    ip_throttle: LoginThrottle,
    anonymous_checks: Arc<Semaphore>,
}

impl Fixture {
    async fn new(backend: infrapilot_store::Backend) -> Fixture {
        Fixture {
            db: TestDb::new(backend).await,
            secrets: SecretBox::new(&[7u8; 32]).unwrap(),
            account_throttle: LoginThrottle::new(3, Duration::from_secs(60)),
            ip_throttle: LoginThrottle::new(100, Duration::from_secs(60)),
            anonymous_checks: Arc::new(Semaphore::new(2)),
        }
    }

    fn service(&self) -> AccountService<'_> {
        AccountService {
            store: &self.db.store,
            secrets: &self.secrets,
            account_throttle: &self.account_throttle,
            ip_throttle: &self.ip_throttle,
            anonymous_checks: &self.anonymous_checks,
            access_token_ttl: Duration::from_secs(900),
            session_ttl: Duration::from_secs(86_400),
        }
    }

    async fn user(&self, email: &str, role: Role) -> String {
        let mut tx = self
            .db
            .store
            .write(&infrapilot_store::OrgId::default_org())
            .await
            .unwrap();
        let row = create_user(
            &mut tx,
            &cli(),
            NewAccount {
                email: email.into(),
                password: "correct horse battery".into(),
                name: "Someone".into(),
                role,
            },
            "user.create",
        )
        .await
        .unwrap();
        tx.commit().await.unwrap();
        row.id
    }

    /// The audit trail, oldest first, as (action, outcome, detail).
    async fn audit(&self) -> Vec<(String, String, serde_json::Value)> {
        let mut tx = self
            .db
            .store
            .read(&infrapilot_store::OrgId::default_org())
            .await
            .unwrap();
        let page = tx
            .list_audit(&AuditFilter {
                limit: 100,
                ..Default::default()
            })
            .await
            .unwrap();
        let mut events: Vec<_> = page
            .events
            .into_iter()
            .map(|e| {
                let detail = serde_json::from_str(&e.detail).unwrap_or_default();
                (e.seq, e.action, e.outcome, detail)
            })
            .collect();
        events.sort_by_key(|e| e.0);
        events.into_iter().map(|(_, a, o, d)| (a, o, d)).collect()
    }
}

fn cli() -> Actor {
    Actor {
        org_id: infrapilot_store::OrgId::default_org(),
        user_id: None,
        label: "cli".into(),
        ip: "local".into(),
        role: None,
    }
}

fn client() -> Client {
    Client {
        ip: "192.0.2.7".into(),
        user_agent: "test".into(),
        throttle_key: "192.0.2.7".into(),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn sign_in_is_throttled_and_audited_and_a_reused_refresh_token_ends_the_session() {
    for backend in backends() {
        let f = Fixture::new(backend).await;
        f.user("ada@example.com", Role::SuperAdmin).await;
        let accounts = f.service();

        let wrong = accounts
            .login("ada@example.com", "not it".into(), &client())
            .await
            .unwrap_err();
        assert!(
            matches!(wrong, AccountError::Unauthorized { field: None, .. }),
            "{backend:?}: {wrong:?}"
        );
        let LoginOutcome::Signed(first) = accounts
            .login("ada@example.com", "correct horse battery".into(), &client())
            .await
            .unwrap()
        else {
            panic!("{backend:?}: no MFA on this account, a session was expected");
        };
        assert!(first.access_token.starts_with("ipa_"), "{backend:?}");
        assert_eq!(first.expires_in, 900);

        let second = accounts
            .refresh(&first.refresh_token, &client())
            .await
            .unwrap();
        assert_ne!(second.refresh_token, first.refresh_token);
        // The first refresh token again: someone holds a copy, the whole session ends.
        let reuse = accounts
            .refresh(&first.refresh_token, &client())
            .await
            .unwrap_err();
        assert!(
            matches!(&reuse, AccountError::Unauthorized { field: Some(f), .. } if f == "refresh_token"),
            "{backend:?}: {reuse:?}"
        );
        let ended = accounts
            .refresh(&second.refresh_token, &client())
            .await
            .unwrap_err();
        assert!(
            matches!(ended, AccountError::Unauthorized { .. }),
            "{backend:?}"
        );

        let events = f.audit().await;
        let trail: Vec<(&str, &str)> = events
            .iter()
            .map(|(a, o, _)| (a.as_str(), o.as_str()))
            .collect();
        assert_eq!(
            trail,
            [
                ("user.create", "success"),
                ("auth.login", "failure"),
                ("auth.login", "success"),
                ("auth.refresh", "success"),
                ("auth.refresh_reuse", "denied"),
            ],
            "{backend:?}"
        );
        assert_eq!(events[1].2["reason"], "bad credentials");
        assert_eq!(events[2].2["mfa"], false);

        // Three failures on the account (the limit): the next attempt is refused before Argon2,
        // even with the right password.
        for _ in 0..3 {
            let _ = accounts
                .login("ada@example.com", "wrong again".into(), &client())
                .await;
        }
        let throttled = accounts
            .login("ada@example.com", "correct horse battery".into(), &client())
            .await
            .unwrap_err();
        assert!(
            matches!(throttled, AccountError::TooManyAttempts { retry_after_secs } if retry_after_secs >= 1),
            "{backend:?}: {throttled:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn administrators_cannot_remove_the_last_super_admin_or_themselves() {
    for backend in backends() {
        let f = Fixture::new(backend).await;
        let admin = f.user("root@example.com", Role::SuperAdmin).await;
        let other = f.user("op@example.com", Role::Operator).await;
        let accounts = f.service();
        let actor = Actor {
            user_id: Some(admin.clone()),
            label: "root@example.com".into(),
            ..cli()
        };

        let demote = accounts
            .update_user(
                &actor,
                &admin,
                UserChanges {
                    role: Some(Role::Admin),
                    ..Default::default()
                },
            )
            .await
            .unwrap_err();
        assert!(
            matches!(&demote, AccountError::LastSuperAdmin { field } if field == "role"),
            "{backend:?}: {demote:?}"
        );
        let disable = accounts
            .update_user(
                &actor,
                &admin,
                UserChanges {
                    disabled: Some(true),
                    ..Default::default()
                },
            )
            .await
            .unwrap_err();
        assert!(
            matches!(&disable, AccountError::LastSuperAdmin { field } if field == "disabled"),
            "{backend:?}: {disable:?}"
        );
        let own = accounts.delete_user(&actor, &admin).await.unwrap_err();
        assert!(matches!(own, AccountError::CannotDeleteSelf), "{backend:?}");
        let missing = accounts
            .delete_user(&actor, "00000000-0000-4000-8000-000000000000")
            .await
            .unwrap_err();
        assert!(matches!(missing, AccountError::NoSuchUser), "{backend:?}");

        // Promoting the operator makes the demotion possible; nothing of the refusals stayed.
        let promoted = accounts
            .update_user(
                &actor,
                &other,
                UserChanges {
                    role: Some(Role::SuperAdmin),
                    ..Default::default()
                },
            )
            .await
            .unwrap();
        assert_eq!(promoted.role, "super_admin");
        let demoted = accounts
            .update_user(
                &actor,
                &admin,
                UserChanges {
                    role: Some(Role::Admin),
                    ..Default::default()
                },
            )
            .await
            .unwrap();
        assert_eq!(demoted.role, "admin");
        let updates: Vec<_> = f
            .audit()
            .await
            .into_iter()
            .filter(|(a, _, _)| a == "user.update")
            .map(|(_, _, d)| d["role"].as_str().unwrap_or_default().to_owned())
            .collect();
        assert_eq!(updates, ["super_admin", "admin"], "{backend:?}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn an_account_disabled_after_its_password_was_checked_gets_no_session() {
    for backend in backends() {
        let f = Fixture::new(backend).await;
        let admin = f.user("root@example.com", Role::SuperAdmin).await;
        let late = f.user("late@example.com", Role::Viewer).await;
        let accounts = f.service();
        // The row a sign-in read before the administrator's change…
        let mut tx =
            f.db.store
                .read(&infrapilot_store::OrgId::default_org())
                .await
                .unwrap();
        let stale = tx.user_by_id(&late).await.unwrap().unwrap();
        tx.commit().await.unwrap();
        let actor = Actor {
            user_id: Some(admin),
            label: "root@example.com".into(),
            ..cli()
        };
        accounts
            .update_user(
                &actor,
                &late,
                UserChanges {
                    disabled: Some(true),
                    ..Default::default()
                },
            )
            .await
            .unwrap();
        // …does not open a session.
        let tx =
            f.db.store
                .write(&infrapilot_store::OrgId::default_org())
                .await
                .unwrap();
        let refused = accounts
            .sign_in(tx, &stale, &client(), serde_json::json!({"sso": "test"}))
            .await
            .unwrap_err();
        assert!(
            matches!(refused, AccountError::Disabled),
            "{backend:?}: {refused:?}"
        );
        let mut tx =
            f.db.store
                .read(&infrapilot_store::OrgId::default_org())
                .await
                .unwrap();
        assert!(
            tx.list_sessions(&late).await.unwrap().is_empty(),
            "{backend:?}"
        );
        tx.commit().await.unwrap();
        let last = f.audit().await.pop().unwrap();
        assert_eq!(
            (last.0.as_str(), last.1.as_str()),
            ("auth.login", "failure")
        );
        assert_eq!(last.2["reason"], "account disabled");
    }
}
