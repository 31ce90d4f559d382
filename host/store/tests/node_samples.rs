//! The nodes' samples on both backends (issue 17's Health page): heartbeats add into their
//! minute and hour (averages exact over any number of heartbeats, CPU absent on a first one),
//! read back by range; retention keeps minutes two days and hours ninety; one organisation
//! never sees another's; deleting an organisation deletes them.

use infrapilot_store::testing::{TestDb, backends};
use infrapilot_store::{NodeSample, OrgId, SAMPLE_HOUR, SAMPLE_MINUTE};

const AGENT: &str = "00000000-0000-4000-8000-0000000000aa";
/// 2026-12-06T10:00:00Z in ms.
const T0: i64 = 1_796_551_200_000;
const MIN: i64 = 60_000;
const HOUR: i64 = 3_600_000;
const DAY: i64 = 24 * HOUR;

fn sample(cpu: Option<f64>, memory_used: u64, disk_used: u64) -> NodeSample {
    NodeSample {
        cpu_percent: cpu,
        memory_used_bytes: memory_used,
        memory_total_bytes: 1000,
        disk_used_bytes: disk_used,
        disk_total_bytes: 5000,
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn heartbeats_add_into_minutes_and_hours_and_age_out() {
    for backend in backends() {
        let db = TestDb::new(backend).await;
        let org = OrgId::default_org();
        let mut tx = db.store.write(&org).await.unwrap();
        // Minute 0: a first heartbeat (no CPU) and two more; minute 1: one; an hour later: one.
        for (at, s) in [
            (T0 + 1_000, sample(None, 100, 1000)),
            (T0 + 20_000, sample(Some(10.0), 200, 1000)),
            (T0 + 40_000, sample(Some(30.0), 300, 1300)),
            (T0 + MIN + 5_000, sample(Some(90.0), 400, 1400)),
            (T0 + HOUR + 1, sample(Some(50.0), 500, 1500)),
        ] {
            tx.record_node_sample(AGENT, at, &s).await.unwrap();
        }
        tx.commit().await.unwrap();

        let mut tx = db.store.read(&org).await.unwrap();
        let minutes = tx
            .node_samples(AGENT, SAMPLE_MINUTE, T0, T0 + 2 * HOUR)
            .await
            .unwrap();
        assert_eq!(minutes.len(), 3, "{backend:?}: {minutes:?}");
        assert_eq!(minutes[0].at_ms, T0);
        assert_eq!(minutes[0].samples, 3);
        assert_eq!(
            minutes[0].cpu_percent,
            Some(20.0),
            "the first heartbeat had no CPU"
        );
        assert_eq!(minutes[0].cpu_max_percent, Some(30.0));
        assert_eq!(minutes[0].memory_used_bytes, 200.0);
        assert_eq!(minutes[0].disk_used_bytes, 1100.0);
        assert_eq!(minutes[0].memory_total_bytes, 1000);
        assert_eq!(minutes[1].at_ms, T0 + MIN);
        assert_eq!(minutes[1].cpu_percent, Some(90.0));
        assert_eq!(minutes[2].at_ms, T0 + HOUR);
        // The range is [since, until): the first minute alone.
        let first = tx
            .node_samples(AGENT, SAMPLE_MINUTE, T0, T0 + MIN)
            .await
            .unwrap();
        assert_eq!(first.len(), 1);
        let hours = tx
            .node_samples(AGENT, SAMPLE_HOUR, T0 - DAY, T0 + DAY)
            .await
            .unwrap();
        assert_eq!(hours.len(), 2);
        assert_eq!(hours[0].samples, 4);
        assert_eq!(hours[0].cpu_percent, Some((10.0 + 30.0 + 90.0) / 3.0));
        assert_eq!(hours[0].cpu_max_percent, Some(90.0));
        assert_eq!(hours[0].memory_used_bytes, 250.0);
        assert_eq!(hours[1].samples, 1);
        drop(tx);

        // Another organisation sees none of them; its own go with it.
        let other = OrgId::parse("00000000-0000-4000-8000-00000000000d").unwrap();
        db.raw_execute(&format!(
            "INSERT INTO organizations (id, name, created_at) VALUES ('{other}', 'Other', 0)"
        ))
        .await;
        let mut tx = db.store.write(&other).await.unwrap();
        assert!(
            tx.node_samples(AGENT, SAMPLE_MINUTE, 0, i64::MAX)
                .await
                .unwrap()
                .is_empty()
        );
        let theirs = "00000000-0000-4000-8000-0000000000bb";
        tx.record_node_sample(theirs, T0, &sample(Some(5.0), 1, 1))
            .await
            .unwrap();
        tx.commit().await.unwrap();
        let mut tx = db.store.write(&other).await.unwrap();
        assert!(tx.delete_organization().await.unwrap());
        tx.commit().await.unwrap();

        // Two days and a bit later the minutes are gone, the hours kept; after 91 days all.
        let deleted = db
            .store
            .apply_node_sample_retention(T0 + 2 * DAY + 2 * HOUR)
            .await
            .unwrap();
        assert_eq!(deleted, 3, "{backend:?}");
        let mut tx = db.store.read(&org).await.unwrap();
        assert!(
            tx.node_samples(AGENT, SAMPLE_MINUTE, 0, i64::MAX)
                .await
                .unwrap()
                .is_empty()
        );
        assert_eq!(
            tx.node_samples(AGENT, SAMPLE_HOUR, 0, i64::MAX)
                .await
                .unwrap()
                .len(),
            2
        );
        drop(tx);
        let deleted = db
            .store
            .apply_node_sample_retention(T0 + 91 * DAY)
            .await
            .unwrap();
        assert_eq!(deleted, 2);
    }
}
