//! Log storage on both backends (issue 17): lines stored by day, found by text (trigram),
//! level, stream, container and time, paged both ways by cursor; the spool cursor only moves
//! forward; one organisation never sees another's lines; deleting an organisation deletes them.

use infrapilot_store::testing::{TestDb, backends};
use infrapilot_store::{LogCursor, LogQuery, NewLogLine, OrgId};

const DAY_NS: i64 = 86_400_000_000_000;
/// 2026-12-06T00:00:00Z.
const DAY0: i64 = 1_796_515_200 * 1_000_000_000;

fn line<'a>(seq: i64, time_ns: i64, text: &'a str, level: Option<&'a str>) -> NewLogLine<'a> {
    // Every fifth line an nginx access line of proxy host p1: a 502 on the error lines (every
    // tenth line is one).
    let proxied = seq % 5 == 1;
    NewLogLine {
        proxy_host_id: proxied.then_some("p1"),
        status: proxied.then_some(if level == Some("error") { 502 } else { 200 }),
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
        // Access lines by proxy host and status class.
        let by_host = |status: Option<(i32, i32)>| LogQuery {
            proxy_host_id: Some("p1".into()),
            status,
            limit: 1000,
            ..Default::default()
        };
        assert_eq!(tx.query_logs(&by_host(None)).await.unwrap().len(), 60);
        let failed = tx.query_logs(&by_host(Some((500, 599)))).await.unwrap();
        assert_eq!(failed.len(), 30);
        assert!(failed.iter().all(|r| r.status == Some(502)));
        let counts = tx
            .proxy_status_counts(DAY0, DAY0 + 3 * DAY_NS)
            .await
            .unwrap();
        assert_eq!(counts.len(), 1);
        assert_eq!(
            (counts[0].1.as_str(), counts[0].2, counts[0].3),
            ("p1", 60, failed.len() as i64)
        );
        let by_container = tx
            .count_log_lines_by_container(DAY0, DAY0 + DAY_NS, "error")
            .await
            .unwrap();
        let agent = "00000000-0000-4000-8000-0000000000aa".to_owned();
        assert_eq!(by_container, vec![(agent, "web".to_owned(), 10)]);
        // Volume per day by level.
        let volume = tx
            .log_volume(&all(LogQuery::default()), DAY_NS)
            .await
            .unwrap();
        assert_eq!(volume.iter().map(|(_, _, n)| n).sum::<i64>(), 300);
        assert!(
            volume.contains(&(DAY0 + DAY_NS, "error".to_owned(), 10)),
            "{volume:?}"
        );
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
        // Nor through the text search (on PostgreSQL a function that may use the index).
        for text in ["items/142", "GET"] {
            let query = all(LogQuery {
                text: Some(text.into()),
                ..LogQuery::default()
            });
            assert!(tx.query_logs(&query).await.unwrap().is_empty(), "{text}");
            assert!(
                tx.log_volume(&query, 60_000_000_000)
                    .await
                    .unwrap()
                    .is_empty()
            );
        }
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

#[tokio::test(flavor = "multi_thread")]
async fn retention_drops_whole_days_and_trims_organisations_that_keep_less() {
    for backend in backends() {
        let db = TestDb::new(backend).await;
        let org = OrgId::default_org();
        let other = OrgId::parse("00000000-0000-4000-8000-00000000000c").unwrap();
        db.raw_execute(&format!(
            "INSERT INTO organizations (id, name, created_at) VALUES ('{other}', 'Other', 0)"
        ))
        .await;
        // A line on each of ten days, in both organisations.
        let texts: Vec<String> = (0..10).map(|d| format!("day {d}")).collect();
        for o in [&org, &other] {
            let lines: Vec<NewLogLine> = texts
                .iter()
                .enumerate()
                .map(|(d, t)| line(d as i64 + 1, DAY0 + d as i64 * DAY_NS + 1000, t, None))
                .collect();
            db.store
                .prepare_log_days(lines.iter().map(|l| l.time_ns))
                .await
                .unwrap();
            let mut tx = db.store.write(o).await.unwrap();
            tx.insert_log_lines(&lines).await.unwrap();
            if o == &other {
                tx.set_log_retention_days(Some(2)).await.unwrap();
            }
            tx.commit().await.unwrap();
        }
        // "Now" is the start of day 9: the default keeps 5 days, the other organisation 2.
        let now = DAY0 + 9 * DAY_NS;
        let report = db.store.apply_log_retention(5, now).await.unwrap();
        assert_eq!(
            report.days_dropped, 4,
            "{backend:?}: days 0–3 are older than anyone keeps"
        );
        // SQLite merges the text index of each day that is over (days 4–8), once.
        let optimized = if backend == infrapilot_store::Backend::Sqlite {
            5
        } else {
            0
        };
        assert_eq!(report.days_optimized, optimized, "{backend:?}");
        let mut tx = db.store.read(&org).await.unwrap();
        let found = tx
            .query_logs(&LogQuery {
                limit: 10,
                text: Some("DAY 6".into()),
                ..LogQuery::default()
            })
            .await
            .unwrap();
        assert_eq!(
            found.len(),
            1,
            "{backend:?}: found through the merged index"
        );
        drop(tx);
        let kept = |o: OrgId| {
            let store = db.store.clone();
            async move {
                let mut tx = store.read(&o).await.unwrap();
                let query = LogQuery {
                    limit: 100,
                    oldest_first: true,
                    ..Default::default()
                };
                let lines: Vec<String> = tx
                    .query_logs(&query)
                    .await
                    .unwrap()
                    .into_iter()
                    .map(|r| r.line)
                    .collect();
                lines
            }
        };
        assert_eq!(
            kept(org.clone()).await,
            ["day 4", "day 5", "day 6", "day 7", "day 8", "day 9"]
        );
        assert_eq!(kept(other.clone()).await, ["day 7", "day 8", "day 9"]);
        // Again: nothing more to do.
        let again = db.store.apply_log_retention(5, now).await.unwrap();
        assert_eq!(again, Default::default());
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_batch_larger_than_one_statement_is_stored_whole_and_in_order() {
    for backend in backends() {
        let db = TestDb::new(backend).await;
        let org = OrgId::default_org();
        // 12,345 lines over two days in one call: several multi-row statements per day.
        let texts: Vec<String> = (0..12_345).map(|n| format!("line number {n}")).collect();
        let lines: Vec<NewLogLine> = texts
            .iter()
            .enumerate()
            .map(|(n, t)| {
                let n = n as i64;
                line(n + 1, DAY0 + (n % 2) * DAY_NS + n * 1000, t, None)
            })
            .collect();
        let mut tx = db.store.write(&org).await.unwrap();
        tx.insert_log_lines(&lines).await.unwrap();
        tx.commit().await.unwrap();
        let mut tx = db.store.read(&org).await.unwrap();
        // A page holds at most 10,000: the oldest and the newest pages cover all of them.
        let page = |oldest_first| LogQuery {
            limit: 10_000,
            oldest_first,
            ..LogQuery::default()
        };
        let mut expected: Vec<i64> = (1..=12_345).filter(|s| s % 2 == 1).collect();
        expected.extend((1..=12_345).filter(|s| s % 2 == 0));
        let oldest: Vec<i64> = tx
            .query_logs(&page(true))
            .await
            .unwrap()
            .iter()
            .map(|l| l.seq)
            .collect();
        assert_eq!(
            oldest,
            expected[..10_000],
            "{backend:?}: the first day's, then the second's"
        );
        let mut newest: Vec<i64> = tx
            .query_logs(&page(false))
            .await
            .unwrap()
            .iter()
            .map(|l| l.seq)
            .collect();
        newest.reverse();
        assert_eq!(newest, expected[2_345..], "{backend:?}");
        let found = tx
            .query_logs(&LogQuery {
                limit: 10,
                text: Some("number 12344".into()),
                ..LogQuery::default()
            })
            .await
            .unwrap();
        assert_eq!(found.len(), 1, "the last line is in the text index");
        assert_eq!(found[0].line, "line number 12344");
    }
}

/// Text search folds case beyond ASCII on SQLite (the trigram index does, and REGEXP decides
/// for such texts; LIKE would fold ASCII only). PostgreSQL's ILIKE folds by the database's
/// character type (`C` here: ASCII only), so this is SQLite's.
#[tokio::test(flavor = "multi_thread")]
async fn sqlite_search_folds_case_beyond_ascii() {
    let db = TestDb::new(infrapilot_store::Backend::Sqlite).await;
    let org = OrgId::default_org();
    let texts = [
        "Connexion ÉCHOUÉE au serveur",
        "un échec",
        "ok [a.b] (c) 50%",
    ];
    let lines: Vec<NewLogLine> = texts
        .iter()
        .enumerate()
        .map(|(n, t)| line(n as i64 + 1, DAY0 + n as i64, t, None))
        .collect();
    let mut tx = db.store.write(&org).await.unwrap();
    tx.insert_log_lines(&lines).await.unwrap();
    tx.commit().await.unwrap();
    let mut tx = db.store.read(&org).await.unwrap();
    for (text, expected) in [
        ("échouée", vec!["Connexion ÉCHOUÉE au serveur"]),
        ("ÉCHEC", vec!["un échec"]),
        ("é", vec!["un échec", "Connexion ÉCHOUÉE au serveur"]),
        // Regular-expression characters are literal (a REGEXP needs them escaped).
        ("[a.b] (c) 50%", vec!["ok [a.b] (c) 50%"]),
        ("é.", vec![]),
    ] {
        let found: Vec<String> = tx
            .query_logs(&LogQuery {
                limit: 10,
                text: Some(text.into()),
                ..LogQuery::default()
            })
            .await
            .unwrap()
            .into_iter()
            .map(|l| l.line)
            .collect();
        assert_eq!(found, expected, "{text}");
    }
}
