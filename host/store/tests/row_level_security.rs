//! Row-level security on PostgreSQL: every table with an `org_id` column has it enabled and
//! forced, with a policy (read from the catalogue, so a new table without one fails here); and raw
//! SQL as the application role, in another organisation or in none, reads, changes and deletes
//! none of an organisation's rows, nor writes a row into it. SQLite has no row-level security:
//! the API-level isolation tests cover it.

use infrapilot_store::testing::{TestDb, backends};
use infrapilot_store::{Backend, DEFAULT_ORG_ID, NewAuditEvent};

const OTHER_ORG: &str = "00000000-0000-4000-8000-00000000000b";

#[tokio::test(flavor = "multi_thread")]
async fn every_tenant_table_has_row_level_security_forced_with_a_policy() {
    for backend in backends() {
        if backend != Backend::Postgres {
            continue;
        }
        let db = TestDb::new(backend).await;
        let tenant_tables: Vec<String> = db
            .tables()
            .await
            .into_iter()
            .filter(|(_, columns)| {
                columns
                    .iter()
                    .any(|c| c.split(' ').next() == Some("org_id"))
            })
            .map(|(table, _)| table)
            .collect();
        assert!(
            tenant_tables.len() >= 20,
            "only {} tables with org_id: {tenant_tables:?}",
            tenant_tables.len()
        );
        let security = db.row_security().await;
        let unprotected: Vec<String> = tenant_tables
            .iter()
            .filter(|table| match security.get(*table) {
                Some((enabled, forced, policies)) => !enabled || !forced || policies.is_empty(),
                None => true,
            })
            .map(|table| format!("{table}: {:?}", security.get(table)))
            .collect();
        assert!(
            unprotected.is_empty(),
            "tenant tables without forced row-level security and a policy:\n{}",
            unprotected.join("\n")
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn raw_sql_in_another_organisation_touches_none_of_its_rows() {
    for backend in backends() {
        if backend != Backend::Postgres {
            continue;
        }
        let db = TestDb::new(backend).await;
        db.raw_execute(&format!(
            "INSERT INTO organizations (id, name, created_at) VALUES ('{OTHER_ORG}', 'Other', 0)"
        ))
        .await;
        // The default organisation's data: audit events and the chain's head.
        for n in 0..3 {
            db.store
                .record_audit(
                    DEFAULT_ORG_ID,
                    NewAuditEvent {
                        actor_id: None,
                        actor: "cli".into(),
                        action: "test.seed".into(),
                        target: format!("thing:{n}"),
                        ip: "local".into(),
                        outcome: "success".into(),
                        detail: serde_json::json!({}),
                    },
                )
                .await
                .unwrap();
        }
        let seen = |org: Option<&'static str>, sql: &'static str| {
            let db = &db;
            async move { db.app_rows_in_org(org, sql).await }
        };
        assert_eq!(
            seen(Some(DEFAULT_ORG_ID), "SELECT * FROM audit_events").await,
            Ok(3)
        );
        assert_eq!(
            seen(Some(DEFAULT_ORG_ID), "SELECT * FROM audit_heads").await,
            Ok(1)
        );

        let tables: Vec<String> = db.row_security().await.into_keys().collect();
        for table in &tables {
            for org in [Some(OTHER_ORG), None] {
                let select = format!("SELECT * FROM {table}");
                let update = format!("UPDATE {table} SET org_id = org_id");
                let delete = format!("DELETE FROM {table}");
                for sql in [&select, &update, &delete] {
                    assert_eq!(
                        db.app_rows_in_org(org, sql).await,
                        Ok(0),
                        "{sql} with app.current_org_id = {org:?}"
                    );
                }
            }
        }
        // Writing a row into the default organisation from the other one is refused.
        let forged = db
            .app_rows_in_org(
                Some(OTHER_ORG),
                &format!(
                    "INSERT INTO audit_heads (org_id, seq, hash) VALUES ('{DEFAULT_ORG_ID}', 99, 'x')"
                ),
            )
            .await
            .unwrap_err();
        assert!(forged.contains("row-level security"), "{forged}");
        // Nothing of it changed.
        assert_eq!(
            seen(Some(DEFAULT_ORG_ID), "SELECT * FROM audit_events").await,
            Ok(3)
        );
        let mut tx = db.store.read(DEFAULT_ORG_ID).await.unwrap();
        let report = tx.verify_audit_chain().await.unwrap();
        tx.commit().await.unwrap();
        assert!(report.ok && report.checked == 3, "{report:?}");
    }
}
