//! Log storage on both backends (issue 17): lines stored by day, found by text (trigram),
//! level, stream, container and time, paged both ways by cursor; the spool cursor only moves
//! forward; one organisation never sees another's lines; deleting an organisation deletes them.

use infrapilot_store::testing::{TestDb, backends};
use infrapilot_store::{LogCursor, LogQuery, NewLogLine, OrgId};

const DAY_NS: i64 = 86_400_000_000_000;
/// 2026-12-06T00:00:00Z.
const DAY0: i64 = 1_796_515_200 * 1_000_000_000;

fn line<'a>(seq: i64, time_ns: i64, text: &'a str, level: Option<&'a str>) -> NewLogLine<'a> {
    NewLogLine {
        agent_id: "00000000-0000-4000-8000-0000000000aa",
        time_ns,
        seq,
        container_id: "c1",
        container_name: "web",
        compose_project: "shop",
        stream: if level == Some("error") {
            "stderr"
        } else {
            "stdout"
        },
        level,
        line: text,
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn lines_are_stored_by_day_and_found_by_every_filter() {
    for backend in backends() {
        let db = TestDb::new(backend).await;
        let org = OrgId::default_org();
        let texts: Vec<String> = (0..300).map(|n| format!("GET /items/{n} done")).collect();
        let mut tx = db.store.write(&org).await.unwrap();
        let mut lines = Vec::new();
        // 300 lines over three days (100 a day), every tenth an error.
        for (n, text) in texts.iter().enumerate() {
            let n = n as i64;
            let time = DAY0 + (n / 100) * DAY_NS + n * 1_000_000;
            lines.push(line(n + 1, time, text, (n % 10 == 0).then_some("error")));
        }
        tx.insert_log_lines(&lines).await.unwrap();
        assert_eq!(tx.spool_committed("a", 7).await.unwrap(), 0);
        tx.set_spool_committed("a", 7, 300).await.unwrap();
        tx.set_spool_committed("a", 7, 200).await.unwrap();
        assert_eq!(tx.spool_committed("a", 7).await.unwrap(), 300, "never back");
        assert_eq!(tx.spool_committed("a", 8).await.unwrap(), 0, "per epoch");
        tx.commit().await.unwrap();

        let mut tx = db.store.read(&org).await.unwrap();
        let all = |q: LogQuery| LogQuery { limit: 1000, ..q };
        let newest = tx.query_logs(&all(LogQuery::default())).await.unwrap();
        assert_eq!(newest.len(), 300, "{backend:?}");
        assert_eq!(newest[0].seq, 300);
        assert_eq!(newest[299].seq, 1);
        // Text through the trigram index (and short text without it), any case.
        let found = tx
            .query_logs(&all(LogQuery {
                text: Some("items/142 DONE".into()),
                ..Default::default()
            }))
            .await
            .unwrap();
        assert_eq!(found.iter().map(|r| r.seq).collect::<Vec<_>>(), vec![143]);
        let short = tx
            .query_logs(&all(LogQuery {
                text: Some("/7".into()),
                ..Default::default()
            }))
            .await
            .unwrap();
        assert_eq!(short.len(), 11, "/7 and /70../79");
        // A LIKE wildcard in the text is a character, not a pattern.
        let literal = tx
            .query_logs(&all(LogQuery {
                text: Some("%".into()),
                ..Default::default()
            }))
            .await
            .unwrap();
        assert!(literal.is_empty());
        let errors = tx
            .query_logs(&all(LogQuery {
                levels: vec!["error".into()],
                ..Default::default()
            }))
            .await
            .unwrap();
        assert_eq!(errors.len(), 30);
        assert!(errors.iter().all(|r| r.stream == "stderr"));
        let unlevelled = tx
            .query_logs(&all(LogQuery {
                levels: vec!["none".into()],
                ..Default::default()
            }))
            .await
            .unwrap();
        assert_eq!(unlevelled.len(), 270);
        // The second day only, oldest first, in pages of 40 by cursor.
        let mut pages = Vec::new();
        let mut after = None;
        loop {
            let page = tx
                .query_logs(&LogQuery {
                    since_ns: Some(DAY0 + DAY_NS),
                    until_ns: Some(DAY0 + 2 * DAY_NS),
                    oldest_first: true,
                    after: after.clone(),
                    limit: 40,
                    ..Default::default()
                })
                .await
                .unwrap();
            let Some(last) = page.last() else { break };
            after = Some(LogCursor {
                time_ns: last.time_ns,
                agent_id: last.agent_id.clone(),
                seq: last.seq,
            });
            pages.extend(page.into_iter().map(|r| r.seq));
        }
        assert_eq!(pages, (101..=200).collect::<Vec<_>>());
        assert!(
            tx.query_logs(&all(LogQuery {
                container: Some("other".into()),
                ..Default::default()
            }))
            .await
            .unwrap()
            .is_empty()
        );
        assert_eq!(
            tx.query_logs(&all(LogQuery {
                container: Some("web".into()),
                compose_project: Some("shop".into()),
                ..Default::default()
            }))
            .await
            .unwrap()
            .len(),
            300
        );
        drop(tx);

        // Another organisation sees none of it; deleting this one deletes its lines.
        let other = OrgId::parse("00000000-0000-4000-8000-00000000000b").unwrap();
        db.raw_execute(&format!(
            "INSERT INTO organizations (id, name, created_at) VALUES ('{other}', 'Other', 0)"
        ))
        .await;
        let mut tx = db.store.read(&other).await.unwrap();
        assert!(
            tx.query_logs(&all(LogQuery::default()))
                .await
                .unwrap()
                .is_empty()
        );
        drop(tx);
        let mut tx = db.store.write(&other).await.unwrap();
        tx.insert_log_lines(&[line(1, DAY0, "theirs", None)])
            .await
            .unwrap();
        tx.insert_log_gap("a", 1, 5, 9).await.unwrap();
        tx.commit().await.unwrap();
        let mut tx = db.store.write(&other).await.unwrap();
        assert!(tx.delete_organization().await.unwrap());
        tx.commit().await.unwrap();
        let mut tx = db.store.read(&org).await.unwrap();
        assert_eq!(
            tx.query_logs(&all(LogQuery::default()))
                .await
                .unwrap()
                .len(),
            300
        );
        assert!(tx.log_gaps(0, 10).await.unwrap().is_empty());
    }
}
