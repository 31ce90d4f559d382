//! The ClickHouse log sink (issue 17) against a real ClickHouse (Debian's clickhouse-server,
//! `tests/peers/start-clickhouse.sh`): for a fixed data set of two organisations it answers
//! every query, page, volume and count exactly as the host's own database does; a line written
//! twice is kept once; the Logs API, its chart and the CSV export read from it once it is the
//! host's sink; retention removes an organisation's old lines only; bad settings are refused
//! naming the field; a sink that is down answers 503, not 500.

mod common;

use std::sync::Arc;

use axum::http::StatusCode;
use common::TestApp;
use infrapilot_store::Backend;
use infrapilot_store::testing::backends;
use infrapilot_store::{LogCursor, LogLineRow, LogQuery, LogSink, NewLogLine, OrgId};
use serde_json::json;

const DAY_NS: i64 = 86_400_000_000_000;
const MINUTE_NS: i64 = 60_000_000_000;
const PLUGIN: &str = "infrapilot.clickhouse";

/// A ClickHouse of this test, stopped on drop.
struct ClickHouse {
    dir: std::path::PathBuf,
    pid: String,
    http: String,
}

impl ClickHouse {
    fn start() -> ClickHouse {
        let started = common::peers::start("start-clickhouse.sh", &[], &[]);
        ClickHouse {
            pid: started.var("CH_PID"),
            http: started.var("CH_HTTP"),
            dir: started.dir,
        }
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.http)
    }

    fn stop(&self) {
        let _ = std::process::Command::new("kill").arg(&self.pid).status();
        for _ in 0..100 {
            let alive = std::process::Command::new("kill")
                .args(["-0", &self.pid])
                .status()
                .is_ok_and(|s| s.success());
            if !alive {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        let _ = std::process::Command::new("kill")
            .args(["-9", &self.pid])
            .status();
    }
}

impl Drop for ClickHouse {
    fn drop(&mut self) {
        self.stop();
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// The fixed data set (`suffix` on every text): three days of lines of two containers on two
/// nodes, levels and none, access lines of two proxy hosts (5xx among them), texts with quotes,
/// backslashes, percent signs, underscores and letters beyond ASCII in both cases.
fn rows(suffix: &str, day0: i64) -> Vec<LogLineRow> {
    let agents = [
        "00000000-0000-4000-8000-0000000000aa",
        "00000000-0000-4000-8000-0000000000bb",
    ];
    let texts = [
        "GET /items/{n} done",
        "user 'o''brien' logged in from C:\\temp\\{n}",
        "disk 95% full_now {n}",
        "Grüße aus München {n}",
        "GRÜSSE AUS MÜNCHEN {n}",
        "level=error msg=\"db timeout\" attempt={n}",
    ];
    (0..420i64)
        .map(|n| {
            let seq = n + 1;
            let level = match n % 7 {
                0 => Some("error"),
                1 => Some("warn"),
                2 | 3 => Some("info"),
                4 => Some("debug"),
                _ => None,
            };
            let proxied = n % 5 == 1;
            LogLineRow {
                agent_id: agents[(n % 2) as usize].to_owned(),
                // Pairs of lines share a time (the order then goes by node, then sequence).
                time_ns: day0 + (n / 140) * DAY_NS + (n / 2) * 7 * MINUTE_NS / 10,
                seq,
                container_id: if seq % 3 == 0 { "c1" } else { "c2" }.to_owned(),
                container_name: if seq % 3 == 0 { "web" } else { "db" }.to_owned(),
                compose_project: if seq % 4 == 0 { "shop" } else { "" }.to_owned(),
                stream: if level == Some("error") {
                    "stderr"
                } else {
                    "stdout"
                }
                .to_owned(),
                level: level.map(str::to_owned),
                line: format!(
                    "{}{suffix}",
                    texts[(n % 6) as usize].replace("{n}", &n.to_string())
                ),
                proxy_host_id: proxied.then(|| if n % 10 == 1 { "p1" } else { "p2" }.to_owned()),
                status: proxied.then_some(if n % 3 == 0 { 502 } else { 200 }),
            }
        })
        .collect()
}

/// The queries both stores must answer alike.
fn queries(day0: i64) -> Vec<LogQuery> {
    let all = LogQuery {
        limit: 1000,
        ..Default::default()
    };
    let mut qs = vec![
        all.clone(),
        LogQuery {
            oldest_first: true,
            ..all.clone()
        },
        LogQuery {
            agent_id: Some("00000000-0000-4000-8000-0000000000bb".into()),
            ..all.clone()
        },
        LogQuery {
            container: Some("web".into()),
            ..all.clone()
        },
        LogQuery {
            container: Some("c2".into()),
            ..all.clone()
        },
        LogQuery {
            compose_project: Some("shop".into()),
            ..all.clone()
        },
        LogQuery {
            levels: vec!["error".into(), "none".into()],
            ..all.clone()
        },
        LogQuery {
            stream: Some("stderr".into()),
            ..all.clone()
        },
        LogQuery {
            proxy_host_id: Some("p1".into()),
            ..all.clone()
        },
        LogQuery {
            status: Some((500, 599)),
            ..all.clone()
        },
        LogQuery {
            since_ns: Some(day0 + DAY_NS / 2),
            until_ns: Some(day0 + DAY_NS + DAY_NS / 3),
            ..all.clone()
        },
        LogQuery {
            limit: 7,
            ..all.clone()
        },
        LogQuery {
            after: Some(LogCursor {
                time_ns: day0 + DAY_NS,
                agent_id: "00000000-0000-4000-8000-0000000000aa".into(),
                seq: 150,
            }),
            limit: 25,
            ..all.clone()
        },
    ];
    for text in [
        "items/1",
        "ITEMS/1",
        "o''brien",
        "c:\\temp",
        "95% full_",
        "_now",
        "grüße",
        "MÜNCHEN 3",
        "db timeout",
        "e",
        "ü",
        "no such text",
    ] {
        qs.push(LogQuery {
            text: Some(text.into()),
            ..all.clone()
        });
    }
    qs.push(LogQuery {
        text: Some("timeout".into()),
        levels: vec!["error".into()],
        container: Some("web".into()),
        oldest_first: true,
        ..all
    });
    qs
}

/// Every page of `query` (pages of `page` lines, cursor from the last line of each).
async fn all_pages(
    page: i64,
    query: &LogQuery,
    mut read: impl AsyncFnMut(&LogQuery) -> Vec<LogLineRow>,
) -> Vec<LogLineRow> {
    let mut q = LogQuery {
        limit: page,
        ..query.clone()
    };
    let mut out = vec![];
    loop {
        let lines = read(&q).await;
        let full = lines.len() as i64 == page;
        if let Some(last) = lines.last() {
            q.after = Some(LogCursor {
                time_ns: last.time_ns,
                agent_id: last.agent_id.clone(),
                seq: last.seq,
            });
        }
        out.extend(lines);
        if !full {
            return out;
        }
    }
}

fn key(r: &LogLineRow) -> String {
    format!(
        "{} {} {} {} {} {} {} {:?} {} {:?} {:?}",
        r.time_ns,
        r.agent_id,
        r.seq,
        r.container_id,
        r.container_name,
        r.compose_project,
        r.stream,
        r.level,
        r.line,
        r.proxy_host_id,
        r.status
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn the_clickhouse_sink_answers_like_the_database() {
    let clickhouse = ClickHouse::start();
    let now_ns = infrapilot_store::now_ms() * 1_000_000;
    // Three days ending today (the API's default time range is recent).
    let day0 = (now_ns.div_euclid(DAY_NS) - 2) * DAY_NS;
    for backend in backends() {
        let (app, _vendor) = TestApp::with_plugins(backend).await;
        let admin = app.setup_admin().await;
        app.install_test_plugin(&admin, "infrapilot_clickhouse", PLUGIN)
            .await;
        let plugins = app.state.extensions().unwrap().plugins.clone();
        let table = format!("logs_{backend:?}").to_lowercase();

        // Bad settings: refused, naming the field; an unreachable server too.
        for (settings, field) in [
            (json!({"url": "ftp://127.0.0.1:1"}), "url"),
            (
                json!({"url": clickhouse.url(), "table": "x; DROP TABLE y"}),
                "settings.table",
            ),
            (
                json!({"url": clickhouse.url(), "database": "a.b"}),
                "settings.database",
            ),
            (json!({"url": clickhouse.url(), "colour": "red"}), "colour"),
            (json!({}), "settings.url"),
        ] {
            let e = plugins.log_sink(PLUGIN, settings.clone()).await.err();
            let e = e.unwrap_or_else(|| panic!("{settings} was taken"));
            assert!(e.to_string().contains(field), "{settings}: {e}");
        }
        // A store that is away at start: the sink is made (the host starts), and its calls
        // fail until the store answers.
        let away = plugins
            .log_sink(PLUGIN, json!({"url": "http://127.0.0.1:9"}))
            .await
            .unwrap();
        let e = away
            .write(&OrgId::default_org(), &rows("", day0)[..1])
            .await;
        assert!(
            e.as_ref()
                .is_err_and(|e| e.to_string().contains("could not be reached")),
            "{e:?}"
        );
        let sink = Arc::new(
            plugins
                .log_sink(PLUGIN, json!({"url": clickhouse.url(), "table": table}))
                .await
                .unwrap(),
        );
        // Prepared again (a restart): the table is there already.
        plugins
            .log_sink(PLUGIN, json!({"url": clickhouse.url(), "table": table}))
            .await
            .unwrap();

        // The same data set in both, for two organisations; the sink gets org A's twice.
        let org_a = OrgId::default_org();
        let org_b = OrgId::parse("00000000-0000-4000-8000-00000000000b").unwrap();
        for (org, suffix) in [(&org_a, ""), (&org_b, " (b)")] {
            let rows = rows(suffix, day0);
            let lines: Vec<NewLogLine> = rows.iter().map(NewLogLine::from).collect();
            app.db
                .store
                .prepare_log_days(rows.iter().map(|r| r.time_ns))
                .await
                .unwrap();
            let mut tx = app.db.store.write(org).await.unwrap();
            tx.insert_log_lines(&lines).await.unwrap();
            tx.commit().await.unwrap();
            sink.write(org, &rows).await.unwrap();
        }
        sink.write(&org_a, &rows("", day0)[100..250]).await.unwrap();

        for org in [&org_a, &org_b] {
            for query in queries(day0) {
                // PostgreSQL's ILIKE folds case by the database's ctype (ASCII only in the C
                // locale the tests run): texts beyond ASCII are compared with SQLite's answer.
                if backend == Backend::Postgres
                    && query.text.as_deref().is_some_and(|t| !t.is_ascii())
                {
                    continue;
                }
                let mut tx = app.db.store.read(org).await.unwrap();
                let expected = tx.query_logs(&query).await.unwrap();
                drop(tx);
                let got = sink.query(org, &query).await.unwrap();
                assert!(
                    !expected.is_empty() || query.text.as_deref() == Some("no such text"),
                    "{backend:?} {query:?} finds nothing"
                );
                assert_eq!(
                    got.iter().map(key).collect::<Vec<_>>(),
                    expected.iter().map(key).collect::<Vec<_>>(),
                    "{backend:?} {query:?}"
                );
                // Paged through by cursor, both ways.
                let store = &app.db.store;
                let paged_db = all_pages(13, &query, async |q| {
                    let mut tx = store.read(org).await.unwrap();
                    tx.query_logs(q).await.unwrap()
                })
                .await;
                let paged_sink =
                    all_pages(13, &query, async |q| sink.query(org, q).await.unwrap()).await;
                assert_eq!(
                    paged_sink.iter().map(key).collect::<Vec<_>>(),
                    paged_db.iter().map(key).collect::<Vec<_>>(),
                    "{backend:?} paged {query:?}"
                );
                for interval in [MINUTE_NS, 3_600_000_000_000, DAY_NS] {
                    let mut tx = app.db.store.read(org).await.unwrap();
                    let expected = tx.log_volume(&query, interval).await.unwrap();
                    drop(tx);
                    assert_eq!(
                        sink.volume(org, &query, interval).await.unwrap(),
                        expected,
                        "{backend:?} volume {interval} {query:?}"
                    );
                }
            }
            let (since, until) = (day0, day0 + 3 * DAY_NS);
            let mut tx = app.db.store.read(org).await.unwrap();
            let by_container = tx
                .count_log_lines_by_container(since, until, "error")
                .await
                .unwrap();
            let proxied = tx.proxy_status_counts(since, until).await.unwrap();
            drop(tx);
            assert!(!by_container.is_empty() && !proxied.is_empty());
            assert_eq!(
                sink.count_by_container(org, since, until, "error")
                    .await
                    .unwrap(),
                by_container
            );
            assert_eq!(
                sink.proxy_status_counts(org, since, until).await.unwrap(),
                proxied
            );
        }

        // Big lines: 200 lines of 15 KB, mostly characters JSON escapes sixfold, in one write
        // (several INSERTs under the host's request limit) and read back whole (in chunks
        // under its answer limit).
        let org_c = OrgId::parse("00000000-0000-4000-8000-00000000000c").unwrap();
        let big: Vec<LogLineRow> = (0..200)
            .map(|i| LogLineRow {
                line: format!("big {i} {}", "\u{1}\"\\".repeat(5000)),
                seq: 20_000 + i,
                time_ns: now_ns - 2 * MINUTE_NS + i,
                ..rows("", day0)[0].clone()
            })
            .collect();
        sink.write(&org_c, &big).await.unwrap();
        let got = sink
            .query(
                &org_c,
                &LogQuery {
                    limit: 1000,
                    oldest_first: true,
                    ..Default::default()
                },
            )
            .await
            .unwrap();
        assert_eq!(
            got.iter().map(key).collect::<Vec<_>>(),
            big.iter().map(key).collect::<Vec<_>>()
        );

        // The host's sink: the API reads from it (a line only the sink has shows).
        let only_in_sink = LogLineRow {
            line: "only in the sink".into(),
            time_ns: now_ns - MINUTE_NS,
            seq: 10_000,
            ..rows("", day0)[0].clone()
        };
        sink.write(&org_a, std::slice::from_ref(&only_in_sink))
            .await
            .unwrap();
        assert!(app.state.hub().set_log_sink(sink.clone()));
        let r = app
            .get("/api/v1/logs?q=only%20in%20the%20sink", &admin)
            .await;
        assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
        assert_eq!(r.body["items"].as_array().unwrap().len(), 1, "{:?}", r.body);
        let r = app.get("/api/v1/logs?q=GRÜSSE&limit=5", &admin).await;
        assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
        assert_eq!(r.body["items"].as_array().unwrap().len(), 5);
        assert!(r.body["next_cursor"].is_string());
        let r = app
            .get("/api/v1/logs/volume?q=only%20in%20the%20sink", &admin)
            .await;
        assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
        let total: i64 = r.body["buckets"]
            .as_array()
            .unwrap()
            .iter()
            .map(|b| {
                ["error", "warn", "info", "debug", "none"]
                    .iter()
                    .map(|l| b[l].as_i64().unwrap())
                    .sum::<i64>()
            })
            .sum();
        assert_eq!(total, 1, "{:?}", r.body);
        let r = app
            .send_raw(
                "GET",
                "/api/v1/logs/export.csv?q=only%20in%20the%20sink",
                Some(&admin),
                None,
                vec![],
            )
            .await;
        assert_eq!(r.status, StatusCode::OK);
        let csv = String::from_utf8(r.raw.clone()).unwrap();
        assert!(csv.contains("only in the sink"), "{csv}");

        // Retention: org A's lines before day 1 go (ClickHouse deletes in the background),
        // org B's stay.
        sink.drop_before(&org_a, day0 + DAY_NS).await.unwrap();
        let everything = LogQuery {
            limit: 10_000,
            oldest_first: true,
            ..Default::default()
        };
        let mut left = vec![];
        for _ in 0..100 {
            left = sink.query(&org_a, &everything).await.unwrap();
            if left.iter().all(|l| l.time_ns >= day0 + DAY_NS) {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        assert!(left.iter().all(|l| l.time_ns >= day0 + DAY_NS));
        assert_eq!(
            left.len(),
            281,
            "280 lines of days 1 and 2, and the sink's own"
        );
        assert_eq!(sink.query(&org_b, &everything).await.unwrap().len(), 420);

        // The table dropped behind the host's back: the next write fails, the one after makes
        // it again.
        let dropped = std::process::Command::new("curl")
            .args([
                "-sS",
                "--fail-with-body",
                &clickhouse.url(),
                "--data-binary",
            ])
            .arg(format!("DROP TABLE default.{table}"))
            .output()
            .unwrap();
        assert!(dropped.status.success(), "{dropped:?}");
        let again = &rows("", day0)[..3];
        assert!(sink.write(&org_a, again).await.is_err());
        sink.write(&org_a, again).await.unwrap();
        assert_eq!(sink.query(&org_a, &everything).await.unwrap().len(), 3);
    }

    // A table of the name that would not keep a line once (another engine), or without the
    // sink's columns, is refused naming the setting.
    for statement in [
        "CREATE TABLE plain_logs (org_id String, agent_id String, time_ns Int64, seq Int64, \
         container_id String, container_name String, compose_project String, stream String, \
         level Nullable(String), line String, proxy_host_id Nullable(String), \
         status Nullable(Int32)) ENGINE = MergeTree ORDER BY (org_id, time_ns)",
        "CREATE TABLE odd_logs (org_id String) ENGINE = MergeTree ORDER BY org_id",
    ] {
        let made = std::process::Command::new("curl")
            .args([
                "-sS",
                "--fail-with-body",
                &clickhouse.url(),
                "--data-binary",
            ])
            .arg(statement)
            .output()
            .unwrap();
        assert!(made.status.success(), "{made:?}");
    }
    for table in ["plain_logs", "odd_logs"] {
        let (app, _vendor) = TestApp::with_plugins(backends()[0]).await;
        let admin = app.setup_admin().await;
        app.install_test_plugin(&admin, "infrapilot_clickhouse", PLUGIN)
            .await;
        let plugins = app.state.extensions().unwrap().plugins.clone();
        let e = plugins
            .log_sink(PLUGIN, json!({"url": clickhouse.url(), "table": table}))
            .await
            .err()
            .expect("refused");
        assert!(e.to_string().contains("table: exists"), "{e}");
    }

    // The sink down: the Logs API answers 503 naming the log store, not 500.
    let (app, _vendor) = TestApp::with_plugins(backends()[0]).await;
    let admin = app.setup_admin().await;
    app.install_test_plugin(&admin, "infrapilot_clickhouse", PLUGIN)
        .await;
    let plugins = app.state.extensions().unwrap().plugins.clone();
    let sink = plugins
        .log_sink(PLUGIN, json!({"url": clickhouse.url()}))
        .await
        .unwrap();
    app.state.hub().set_log_sink(Arc::new(sink));
    clickhouse.stop();
    for path in [
        "/api/v1/logs",
        "/api/v1/logs/volume",
        "/api/v1/logs/export.csv",
    ] {
        let r = app.get(path, &admin).await;
        assert_eq!(
            r.status,
            StatusCode::SERVICE_UNAVAILABLE,
            "{path}: {:?}",
            r.body
        );
        assert_eq!(r.code(), Some("log_store_unavailable"), "{path}");
    }
}
